// What the paywall's payments in flight hold of their payers' balances, in this process. The chain's simulation
// checks each authorization against the payer's balance alone, and settlement comes after the route ran (the batch
// settler may wait seconds more): a payer holding one price could send many authorizations at once, each passing,
// each running the seller's route, all but the first refused at settlement. A payment verified with the balance the
// simulation read (simulate-batch.ts) is held here, from its claim until its completion, and a payment the balance
// less the payer's other holds cannot cover is refused before its route runs.
//
// What it does not close, settlement still refusing what the chain will not pay:
// - Holds are this process's: two gateway processes may each let one balance's worth through.
// - The balance is read before the claim and weighed after it. A hold is released when its payment's completion
//   returns, a moment after its transfer was mined (the booking in between). A payment whose balance was read before
//   another payment's transfer was mined and weighed after that payment's release may get through one too many; one
//   whose balance was read after the mining and weighed before the release may be refused `insufficient_funds`
//   although the balance covers it (tried again a moment later, it passes).
// A hold whose transfer may still be mined (no receipt in time: scheme.ts keeps it) or that nobody completes lapses
// at its authorization's validBefore, after which the transfer can never be mined.

/** Gives a hold back; called again, it does nothing. */
export type ReleaseHold = () => void;

type Hold = { readonly amount: bigint; readonly expiresAtS: bigint };

/** One payer's holds, with their sum and the earliest expiry among them (no later than the true one). */
type PayerHeld = { readonly holds: Set<Hold>; held: bigint; earliestS: bigint };

/** Every this many takes, holds lapsed in every payer's set are dropped, so that memory stays bounded. */
const sweepEvery = 1024;

/**
 * The holds of one process. `nowS`: the clock that lapses them, in seconds (the authorizations' unit). A take costs
 * the same however many payments the payer has in flight (a payer may have thousands while a batch settler waits):
 * the sum is kept, and a payer's holds are walked only once the earliest of them may have lapsed.
 */
export function createPayerHolds(nowS: () => bigint) {
  const byPayer = new Map<string, PayerHeld>();
  let takes = 0;
  /** Drops the payer's lapsed holds if the earliest may have lapsed; then its sum is current. */
  const lapse = (payer: PayerHeld, now: bigint) => {
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
  const sweep = (now: bigint) => {
    for (const [key, payer] of byPayer) {
      lapse(payer, now);
      if (payer.holds.size === 0) byPayer.delete(key);
    }
  };
  return {
    /**
     * Holds `amount` of the payer's `balance` until `expiresAtS`, unless the balance less what the payer's other
     * payments hold is short of it: then `short`, and nothing is held. A balance that was not read (null) is not
     * weighed, but the amount is still held against the payer's later payments. Check and hold are one synchronous
     * step.
     */
    take(
      payer: string,
      amount: bigint,
      balance: bigint | null,
      expiresAtS: bigint,
    ): { release: ReleaseHold } | { short: { balance: bigint; held: bigint } } {
      const now = nowS();
      takes += 1;
      if (takes % sweepEvery === 0) sweep(now);
      let mine = byPayer.get(payer);
      if (mine !== undefined) lapse(mine, now);
      const held = mine?.held ?? 0n;
      if (balance !== null && balance - held < amount) return { short: { balance, held } };
      if (mine === undefined) {
        mine = { holds: new Set(), held: 0n, earliestS: expiresAtS };
        byPayer.set(payer, mine);
      }
      const hold: Hold = { amount, expiresAtS };
      mine.holds.add(hold);
      mine.held += amount;
      if (expiresAtS < mine.earliestS) mine.earliestS = expiresAtS;
      const owner = mine;
      return {
        release() {
          if (!owner.holds.delete(hold)) return;
          owner.held -= amount;
          if (owner.holds.size === 0 && byPayer.get(payer) === owner) byPayer.delete(payer);
        },
      };
    },
    /** What the payer's payments hold now (for tests and metrics). */
    heldBy(payer: string): bigint {
      const mine = byPayer.get(payer);
      if (mine === undefined) return 0n;
      lapse(mine, nowS());
      return mine.held;
    },
    /** How many payers hold anything (lapsed holds may count until swept). */
    payers: () => byPayer.size,
  };
}

export type PayerHolds = ReturnType<typeof createPayerHolds>;
