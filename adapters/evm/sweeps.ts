// Sweeps: the forwarders that received confirmed deposits, deployed (when not yet) and emptied into the hot wallet
// by one ForwarderFactory.sweep call per batch of up to `sweepSaltsMax`, sent through the send journal. Each sweep
// is written (its salts) before it is sent and followed on every pass until its receipt has the confirmations;
// then its gas is handed to the caller to book (a fee of the rail, in the native token) and only after that is
// the sweep done and its forwarders no longer due. Moving tokens from a forwarder to the hot wallet moves nothing
// in the ledger: both are the rail's clearing account (what the rail holds on chain).
import { randomUUID } from "node:crypto";
import { encodeFunctionData, type Hex, parseEventLogs } from "viem";
import type { FeePaid } from "../../core/index.ts";
import { forwarderFactoryAbi } from "./abi.generated.ts";
import type { DepositState } from "./deposits.ts";
import { chainRefused, viemDetails } from "./errors.ts";
import { gasPaid } from "./payout.ts";
import type { EvmRailState } from "./rail-state.ts";
import { confirmedNonceOf, type SendFate, sendFateOf, sendOnce } from "./send-journal.ts";

/** One sweep whose transaction is final: what it moved and the gas it cost. */
export type DepositSweep = {
  key: string;
  txHash: Hex;
  blockNumber: bigint;
  /** Tokens moved to the hot wallet (0 when it reverted). */
  amount: bigint;
  forwarders: number;
  reverted: boolean;
  gas: FeePaid;
};

export type SweepPassResult = {
  /** Sweeps that ended in this pass (their gas booked by the caller). */
  swept: DepositSweep[];
  /** Sweeps sent and not final yet: followed by the next pass. */
  pending: number;
  /** A sweep the journal refused to send (gas above the cap, the node out of reach): tried again next pass. */
  refused: string | null;
};

/** An open sweep: its forwarders' salts, and when it was started. */
type OpenSweep = { key: string; salts: Hex[]; started_at: Date };

/** Books a sweep's gas; resolves once booked (idempotent: a crash before the sweep is marked done repeats it). */
export type SweepBooker = (sweep: DepositSweep) => Promise<void>;

/**
 * How long a forwarder the token will not move out of (a blacklisted address, a paused token) is left out of sweeps
 * before it is tried again: a sweep moves all its forwarders or none, so one such forwarder in it stopped every
 * sweep of the chain's token for good, every later deposit left in its forwarder.
 */
export const unsweepableRetryMs = 24 * 60 * 60 * 1000;

export async function sweepDeposits(
  state: EvmRailState,
  deposits: DepositState,
  book: SweepBooker,
): Promise<SweepPassResult> {
  const factory = deposits.params.factory;
  const result: SweepPassResult = { swept: [], pending: 0, refused: null };
  if (factory === undefined) return result;
  const token = state.params.token.address.toLowerCase();
  const { db } = state.params;
  // The open sweep, or a new one of the salts due, decided under a lock of the chain's token: two processes' passes
  // at once each started one of the same forwarders (the second, mined after, swept nothing and cost its gas).
  const open = await db.transaction(async (tx) => {
    await tx.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [
      `evm_sweeps:${state.chainId}:${token}`,
    ]);
    const opened = await tx.query<OpenSweep>(
      "SELECT key, salts, started_at FROM evm_sweeps WHERE chain_id = $1 AND token = $2 AND done_at IS NULL ORDER BY started_at",
      [state.chainId, token],
    );
    if (opened.length > 0) return opened;
    const due = await tx.query<{ salt: Hex }>(
      `SELECT salt FROM evm_deposits WHERE chain_id = $1 AND token = $2 AND sweep_due_at <= now()
       ORDER BY sweep_due_at LIMIT $3`,
      [state.chainId, token, deposits.params.sweepSaltsMax],
    );
    if (due.length === 0) return [];
    return tx.query<OpenSweep>(
      `INSERT INTO evm_sweeps (key, chain_id, token, salts) VALUES ($1, $2, $3, $4)
       RETURNING key, salts, started_at`,
      [
        `sweep:${state.chainId}:${randomUUID()}`,
        state.chainId,
        token,
        JSON.stringify(due.map((d) => d.salt)),
      ],
    );
  });
  for (const sweep of open) {
    try {
      await followSweep(state, factory, sweep, book, result);
    } catch (error) {
      // Its own turn only (a node out of reach while it was replaced, its gas's booking refused): the other open
      // sweeps are still looked at, and this one again next pass. Before, one sweep's throw skipped those after it.
      state.logger.error(
        { error, key: sweep.key },
        "a sweep could not be followed this pass; the next pass tries again",
      );
      result.pending += 1;
    }
  }
  return result;
}

/** One open sweep's turn: sent (again), followed, and once final its gas booked and the sweep done. */
async function followSweep(
  state: EvmRailState,
  factory: Hex,
  sweep: OpenSweep,
  book: SweepBooker,
  result: SweepPassResult,
): Promise<void> {
  const token = state.params.token.address.toLowerCase();
  const { db } = state.params;
  const sent = await sendOnce(state.journal, sweep.key, async () => ({
    to: factory,
    data: encodeFunctionData({
      abi: forwarderFactoryAbi,
      functionName: "sweep",
      args: [state.params.token.address, sweep.salts],
    }),
  }));
  if ("status" in sent) {
    result.refused = sent.message;
    // Gas above the cap, or a node out of reach: the same sweep next pass. Anything else is the chain refusing the
    // call: the forwarders it would not sweep are left out for a while, and this sweep closes (nothing was sent)
    // so that the next pass starts one of the others.
    if (sent.code !== "rail_unavailable" && sent.code !== "fee_above_max") {
      const aside = await setAsideUnsweepable(state, factory, sweep.salts);
      if (aside > 0)
        await db.query(
          `UPDATE evm_sweeps SET done_at = now()
           WHERE key = $1 AND NOT EXISTS (SELECT 1 FROM evm_sends WHERE attempt_id = $1)`,
          [sweep.key],
        );
    }
    state.logger.warn(
      { key: sweep.key, message: sent.message },
      "a sweep was not sent; the next pass tries again",
    );
    return;
  }
  let fate: SendFate;
  try {
    fate = await sendFateOf(state.journal, sent, await confirmedNonceOf(state.journal));
  } catch (error) {
    // The node cannot say now (an older block's state it no longer keeps, a transport error): pending, as a sweep
    // whose receipt has not come is; the other open sweeps are still looked at.
    state.logger.warn(
      { error: viemDetails(error), key: sweep.key },
      "whether a sweep was mined is unknown now",
    );
    result.pending += 1;
    return;
  }
  if (fate.status === "never_mined") {
    // Its nonce went to another transaction at a final depth: this sweep never will be mined. Done, its salts
    // still due for the next one (before, it stayed open, and no forwarder was swept again). Its gas is none: the
    // send-gas pass marks the send never mined.
    state.logger.warn({ key: sweep.key }, "a sweep was never mined; its forwarders go in the next one");
    await db.query("UPDATE evm_sweeps SET done_at = now() WHERE key = $1", [sweep.key]);
    return;
  }
  if (fate.status === "pending") {
    result.pending += 1;
    return;
  }
  const { receipt } = fate;
  const swept = parseEventLogs({ abi: forwarderFactoryAbi, eventName: "Swept", logs: receipt.logs });
  const done: DepositSweep = {
    key: sweep.key,
    txHash: receipt.transactionHash,
    blockNumber: receipt.blockNumber,
    amount: swept.reduce((sum, log) => sum + log.args.amount, 0n),
    forwarders: sweep.salts.length,
    reverted: receipt.status !== "success",
    gas: gasPaid(receipt),
  };
  await book(done);
  await db.transaction(async (tx) => {
    await tx.query("UPDATE evm_sweeps SET done_at = now() WHERE key = $1", [sweep.key]);
    // A forwarder that received again after this sweep started stays due for the next one.
    if (!done.reverted)
      await tx.query(
        `UPDATE evm_deposits SET sweep_due_at = NULL
         WHERE chain_id = $1 AND token = $2 AND salt = ANY($3::text[]) AND sweep_due_at <= $4`,
        [state.chainId, token, sweep.salts, sweep.started_at],
      );
  });
  result.swept.push(done);
  // Reverted on chain: its forwarders stay due, and the next sweep would take the same ones and revert again, its
  // gas paid every pass. Those the token will not move out of are left out for a while.
  if (done.reverted) await setAsideUnsweepable(state, factory, sweep.salts);
}

/**
 * Asks the chain (eth_call, nothing sent) whether each forwarder of `salts` can be swept alone, and leaves those it
 * refuses out of sweeps for unsweepableRetryMs (logged, with their addresses: money the hot wallet does not get). A node
 * that does not answer ends the asking: the forwarders not asked stay due. Returns how many were left out.
 */
async function setAsideUnsweepable(
  state: EvmRailState,
  factory: Hex,
  salts: readonly Hex[],
): Promise<number> {
  const token = state.params.token.address;
  const refused: Hex[] = [];
  for (const salt of salts) {
    try {
      await state.params.publicClient.call({
        account: state.journal.account.address,
        to: factory,
        data: encodeFunctionData({ abi: forwarderFactoryAbi, functionName: "sweep", args: [token, [salt]] }),
      });
    } catch (error) {
      if (!chainRefused(error)) break;
      refused.push(salt);
      state.logger.error(
        { salt, token, error: viemDetails(error) },
        "a deposit forwarder cannot be swept (the token refuses to move its balance): left out of sweeps for a day",
      );
    }
  }
  if (refused.length > 0)
    await state.params.db.query(
      `UPDATE evm_deposits SET sweep_due_at = now() + $4::bigint * interval '1 millisecond'
       WHERE chain_id = $1 AND token = $2 AND salt = ANY($3::text[]) AND sweep_due_at IS NOT NULL`,
      [state.chainId, token.toLowerCase(), refused, unsweepableRetryMs],
    );
  return refused.length;
}
