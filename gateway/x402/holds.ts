// What the paywall's payments in flight hold of their payers' balances, in this process. The chain's simulation
// checks each authorization against the payer's balance alone, and settlement comes after the route ran (the batch
// settler may wait seconds more): a payer holding one price could send many authorizations at once, each passing,
// each running the seller's route, all but the first refused at settlement. A payment verified with the balance the
// simulation read (simulate-batch.ts) is held here, from its claim until its completion, and a payment the balance
// less the payer's other holds cannot cover is refused before its route runs.
//
// The balance is read during verification and weighed after the claim. A payment of the same payer settled in
// between may or may not show in that balance (mined before or after the read): its release is kept, numbered, while
// any verification that began before it is under way, and such a verification counts it as held, so that no payment
// gets through on a balance another has spent (within what the list below leaves open).
//
// What it does not close, settlement still refusing what the chain will not pay:
// - Holds are this process's: two gateway processes may each let one balance's worth through.
// - A hold is released when its payment's completion returns, a moment after its transfer was mined (the booking in
//   between), and a release counts for the verifications that began before it: a payment weighed in either moment
//   may be refused `insufficient_funds` although the balance covers it (tried again a moment later, it passes).
// - The node that answers the simulation is taken to be no further behind than the one that reported the receipts:
//   a load-balanced RPC serving an older block may read a balance that predates a released transfer.
// A hold whose transfer may still be mined (no receipt in time: scheme.ts keeps it) or that nobody completes lapses
// a minute after its authorization's validBefore by this process's clock (lapseAfterValidBeforeS), past which the
// chain's clock, which decides, is taken to be too.

/** Gives a hold back, saying whether its transfer was mined (`settled`: the payer's balance shows it from now on). */
export type ReleaseHold = (outcome: { readonly settled: boolean }) => void;

/** A verification under way: how many settled holds had been released when it began (before its balance was read). */
export type Reading = { readonly mark: number };

type Hold = { readonly amount: bigint; readonly expiresAtS: bigint };

/** A settled hold's release, numbered in the order of releases. */
type Released = { readonly seq: number; readonly amount: bigint };

/**
 * One payer's holds, with their sum and the earliest expiry among them (no later than the true one), and the
 * settled holds released while a verification that began before was still under way.
 */
type PayerHeld = { readonly holds: Set<Hold>; held: bigint; earliestS: bigint; released: Released[] };

/**
 * How long after its authorization's validBefore a hold lapses: the token compares validBefore with the block's
 * time, which may run behind this process's clock.
 */
export const lapseAfterValidBeforeS = 60n;

/** Every this many takes, holds lapsed in every payer's set are dropped, so that memory stays bounded. */
const sweepEvery = 1024;

/**
 * The holds of one process. `nowS`: the clock that lapses them, in seconds (the authorizations' unit). A take does
 * not grow with the payments the payer has in flight (a payer may have thousands while a batch settler waits): the
 * sum is kept, a payer's holds are walked only once the earliest of them may have lapsed, and of its releases only
 * those since the take's verification began are read.
 */
export function createPayerHolds(nowS: () => bigint) {
  const byPayer = new Map<string, PayerHeld>();
  /** Verifications under way, in the order they began: their marks never decrease along it. */
  const readings = new Set<Reading>();
  let settledReleases = 0;
  let takes = 0;
  /** The mark of the oldest verification under way: releases numbered up to it concern no one any more. */
  const oldestMark = () => readings.values().next().value?.mark ?? settledReleases;
  /** Drops the payer's lapsed holds if the earliest may have lapsed, and releases no verification needs. */
  const tidy = (payer: PayerHeld, now: bigint) => {
    const oldest = oldestMark();
    const needed = payer.released.findIndex((r) => r.seq > oldest);
    payer.released.splice(0, needed === -1 ? payer.released.length : needed);
    if (payer.earliestS > now) return;
    let earliest: bigint | null = null;
    for (const hold of payer.holds) {
      if (hold.expiresAtS <= now) {
        payer.holds.delete(hold);
        payer.held -= hold.amount;
      } else if (earliest === null || hold.expiresAtS < earliest) earliest = hold.expiresAtS;
    }
    payer.earliestS = earliest ?? now + 1n;
  };
  const unused = (payer: PayerHeld) => payer.holds.size === 0 && payer.released.length === 0;
  const sweep = (now: bigint) => {
    for (const [key, payer] of byPayer) {
      tidy(payer, now);
      if (unused(payer)) byPayer.delete(key);
    }
  };
  return {
    /** Begins a verification: call before its balance is read, and `end` it however it ends. */
    begin(): Reading {
      const reading = { mark: settledReleases };
      readings.add(reading);
      return reading;
    },
    end(reading: Reading): void {
      readings.delete(reading);
    },
    /**
     * Holds `amount` of the payer's `balance` until `expiresAtS`, unless the balance less what the payer's other
     * payments hold is short of it: then `short`, and nothing is held. The balance was read during `reading`: the
     * payer's settled holds released since it began count as held too, since the balance may have been read before
     * their transfers were mined. A balance that was not read (null) is not weighed, but the amount is still held
     * against the payer's later payments. Check and hold are one synchronous step.
     */
    take(
      payer: string,
      amount: bigint,
      balance: bigint | null,
      expiresAtS: bigint,
      reading: Reading,
    ): { release: ReleaseHold } | { short: { balance: bigint; held: bigint } } {
      const now = nowS();
      takes += 1;
      if (takes % sweepEvery === 0) sweep(now);
      let mine = byPayer.get(payer);
      let held = 0n;
      if (mine !== undefined) {
        tidy(mine, now);
        held = mine.held;
        for (let i = mine.released.length - 1; i >= 0 && mine.released[i]!.seq > reading.mark; i -= 1)
          held += mine.released[i]!.amount;
      }
      if (balance !== null && balance - held < amount) return { short: { balance, held } };
      if (mine === undefined) {
        mine = { holds: new Set(), held: 0n, earliestS: expiresAtS, released: [] };
        byPayer.set(payer, mine);
      }
      const hold: Hold = { amount, expiresAtS };
      mine.holds.add(hold);
      mine.held += amount;
      if (expiresAtS < mine.earliestS) mine.earliestS = expiresAtS;
      const owner = mine;
      return {
        release({ settled }) {
          if (!owner.holds.delete(hold)) return;
          owner.held -= amount;
          if (settled && readings.size > 0) {
            settledReleases += 1;
            owner.released.push({ seq: settledReleases, amount });
          }
          if (unused(owner) && byPayer.get(payer) === owner) byPayer.delete(payer);
        },
      };
    },
    /** What the payer's payments hold now (for tests and metrics). */
    heldBy(payer: string): bigint {
      const mine = byPayer.get(payer);
      if (mine === undefined) return 0n;
      tidy(mine, nowS());
      return mine.held;
    },
    /** How many payers hold anything (lapsed holds may count until swept). */
    payers: () => byPayer.size,
  };
}
