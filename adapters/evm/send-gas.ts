// The gas of every transaction the hot wallet sent, whoever sent it: the hot wallet pays gas in the native token for
// each send of the journal that is mined, succeeded or reverted, and the rail's ETH clearing account must move with it.
// Most sends' gas is booked by the caller that reads their outcome; the rest is nobody's payment — the splitter's
// approve, a netting batch or a payout that reverted — and would never be booked. A pass over the journal takes each
// open send of this wallet (evm_sends.gas_done false), hands its gas to the caller's booker when no caller books it,
// and marks it done (booked by the pass, or by whom: evm_send_gas.booked_by). A send no transaction of which was
// mined, whose nonce the wallet has passed at a block with the confirmations, is done too: it cost nothing. The open
// sends of a wallet the hot wallet's key rotated from are taken alike, judged by that wallet's count: their gas was
// spent on the rail's behalf (before, the pass read the hot wallet's alone, and such a send's gas was never booked).
//
// A caller books the gas only if the outcome reaches it, which the rail cannot know: a payment whose attempt ended
// failed after its transaction was mined (another outcome applied first), a payout the gateway holds no payment of,
// never book it. So a send whose outcome's owner books its gas (MinedSend.owner) is handed to the booker too, which
// says whether that owner booked it (done, theirs), may still (pending: asked again next pass, and said once when it
// has waited an hour) or never will (it books it). Before, the pass marked such a send theirs once mined, and in those
// cases nobody booked its gas (EVM migration 0018 opens the sends it closed so again).
//
// Who books a send's gas, by the kind its key names (sendKindOf):
//
//   payout attempt (<attempt id>)  succeeded: the payment's or refund's native fee (the outcome's nativeFee), or this
//                                  pass when that never books it (owner "payment"); reverted: this pass
//   approve:<key>                  this pass (the splitter's one-time approve, sent before a pay or settleBatch)
//   settle:<ref>                   succeeded: netting's batch gas (payoutBatch's nativeFee), or this pass when that
//                                  never books it (owner "netting"); reverted: this pass
//   auth:…, distribute:…           this pass (payWithAuthorization, distribute: no caller books their `gas`)
//   sweep:…                        the sweep's booker, succeeded or reverted (sweeps.ts)
//   transfer-auth:…                this pass, under x402's own id and amount (the booker's): x402's settler and
//                                  its reconciliation book the same transfer on a rail of one confirmation, so
//                                  whichever comes first books it and the other changes nothing — also when x402
//                                  lost the transaction (a throw after signing, its record failed); on a rail of
//                                  more, only this pass, once final
//   x402-batch:…                   x402's batch settler or its reconciliation when the rail handed x402 the
//                                  batch's outcome (x402-batch.ts claims the send's gas for x402 first); this
//                                  pass otherwise (the rail threw: no BatchSettled; a crash before the hand-over)
//   receive-auth:…                 this pass (an invoice's authorization: the watcher credits the invoice, no gas)
//
// A kind not in the table is booked by this pass: a new kind of send whose caller books its gas must be named here,
// or it is booked twice (send-gas.test.ts lists every key the rail sends under). Bookings are idempotent by the
// transaction (the booker's id), so a crash between booking and marking books nothing twice.
//
// One send's fault (a node's error on its receipt, the ledger refusing its booking) is logged and ends only its
// turn: it is tried again next pass, behind the sends not tried yet (evm_sends.gas_tried_at).
import { type Hex, recoverTransactionAddress } from "viem";
import { assets, divCeil, type FeePaid, feeWeiOf } from "../../core/index.ts";
import { EvmRailError } from "./errors.ts";
import { gasPaid } from "./payout.ts";
import type { EvmRailState } from "./rail-state.ts";
import {
  type ConfirmedCountOf,
  confirmedCountsOnce,
  confirmedNonceOf,
  hashesOfSend,
  keepOpenSends,
  sendFateOf,
} from "./send-journal.ts";

export type SendKind =
  | "payout"
  | "approve"
  | "settle_batch"
  | "pay_with_authorization"
  | "distribute"
  | "sweep"
  | "x402_batch"
  | "transfer_authorization"
  | "receive_authorization"
  | "unknown";

/** The key prefixes the rail sends under (the part before the first colon). */
export const kindByPrefix: Readonly<Record<string, SendKind>> = {
  approve: "approve",
  settle: "settle_batch",
  auth: "pay_with_authorization",
  distribute: "distribute",
  sweep: "sweep",
  "x402-batch": "x402_batch",
  "transfer-auth": "transfer_authorization",
  "receive-auth": "receive_authorization",
};

/** What a send is, from its key: an attempt id has no colon; every other send's key is prefixed. */
export function sendKindOf(key: string): SendKind {
  const colon = key.indexOf(":");
  if (colon === -1) return "payout";
  return kindByPrefix[key.slice(0, colon)] ?? "unknown";
}

/**
 * Who books a mined send's gas other than this pass, nothing asked (as evm_send_gas.booked_by): the rail's own sweep
 * pass (sweeps.ts). null: this pass's booker, told the send's owner (outcomeOwnerOf).
 */
export function gasBookedBy(kind: SendKind): string | null {
  return kind === "sweep" ? "sweep" : null;
}

/**
 * Whose booking of the send's outcome books its gas when that outcome reaches it (MinedSend.owner): the pass's booker
 * says whether it did. null: nobody's but the booker's.
 */
export function outcomeOwnerOf(kind: SendKind, succeeded: boolean): string | null {
  switch (kind) {
    case "payout":
      return succeeded ? "payment" : null;
    case "settle_batch":
      return succeeded ? "netting" : null;
    // The booker books a single x402 settlement under x402's own id, and a batch only when x402 holds none of it.
    case "x402_batch":
    case "transfer_authorization":
    case "approve":
    case "pay_with_authorization":
    case "distribute":
    case "receive_authorization":
    case "sweep":
    case "unknown":
      return null;
  }
}

/** A mined send whose gas no caller books: handed to the pass's booker. */
export type MinedSend = {
  key: string;
  kind: SendKind;
  /** The transaction mined (the send's first, or a fee bump of it). */
  txHash: Hex;
  /** Every transaction of the send (the one mined among them): whoever holds one of them holds the send. */
  hashes: readonly Hex[];
  reverted: boolean;
  gas: FeePaid;
  /**
   * Whose outcome books its gas when it reaches them (outcomeOwnerOf: "payment", "netting"); null: nobody's. The
   * booker books it only when that owner never will.
   */
  owner: string | null;
};

/**
 * What the booker did with a send's gas: booked it or left it to whom (`bookedBy`, kept in evm_send_gas.booked_by);
 * or nothing yet, its owner's outcome still to come (`waitingFor`): the send stays open, asked about next pass.
 */
export type SendGasBooking = { booked: boolean; bookedBy: string } | { waitingFor: string };

/**
 * Books a mined send's gas, or leaves it to its owner; resolves to what it did. Idempotent: a crash before the send is
 * marked done repeats it.
 */
export type SendGasBooker = (send: MinedSend) => Promise<SendGasBooking>;

export type SendGasPassResult = {
  /** Sends whose gas this pass's booker booked. */
  booked: MinedSend[];
  /**
   * Sends not final yet (not mined, too recent, an x402 batch the rail may still hand over, a send whose owner may
   * still book its gas): the next pass's.
   */
  pending: number;
  /** Sends done as never mined: no gas. */
  neverMined: number;
  /** Sends whose turn threw (logged): tried again next pass, behind the others. */
  failed: number;
};

/** The most sends one query of the pass reads; a pass reads batch after batch while they come back full… */
export const sendGasRowsMax = 100;
/** …until this long has passed since the pass began (the rest is the next pass's), once it followed one send at least. */
export const sendGasPassBudgetMs = 20_000;

/** `booked_by` of a send claimed by the pass's booker, until the booker says what it did. */
const claimedByPass = "send_gas";
/** `booked_by` of an x402 batch whose outcome the rail handed to x402 (x402-batch.ts): x402 books its gas. */
export const handedToX402 = "x402";

/**
 * How long after an x402 batch was signed the pass may claim its gas: past the rail's own wait for its receipt
 * (receiptTimeoutMs), at whose end x402-batch.ts hands the outcome to x402 and claims the gas for it, with a margin.
 * Only a rail that threw (or a process stalled that long) leaves a batch unclaimed after it; either way the claim on
 * the send's evm_send_gas row decides who books, once.
 */
const x402HandoverMarginMs = 60_000;

/**
 * How long after a send was signed its gas may wait for its owner before the pass says so (once a send): an attempt
 * in flight is run again by recovery, a batch sending is finished by netting, well within it; one that never ends
 * holds the send's gas unbooked for good.
 */
export const ownerWaitSaidAfterMs = 60 * 60_000;

type OpenSend = {
  attempt_id: string;
  tx_hash: Hex;
  nonce: number;
  /**
   * The wallet that signed it (lower case): the hot wallet, or one a key rotation retired, whose count sendFateOf then
   * judges it by (one of unknown signer, '', is not read).
   */
  wallet: string;
  /** Milliseconds since the send was last signed (the database's clock). */
  signed_ms_ago: number;
};

type Turn = "booked" | "done" | "pending" | "never_mined";

export async function sendGasPass(
  state: EvmRailState,
  book: SendGasBooker,
  bounds: { rowsMax?: number; budgetMs?: number } = {},
): Promise<SendGasPassResult> {
  const rowsMax = bounds.rowsMax ?? sendGasRowsMax;
  const budgetMs = bounds.budgetMs ?? sendGasPassBudgetMs;
  const { db } = state.params;
  const startedMs = state.nowMs();
  const result: SendGasPassResult = { booked: [], pending: 0, neverMined: 0, failed: 0 };
  await recoverWallets(state);
  // The sends still open are broadcast again first: one whose broadcast failed and whose key nobody sends again
  // would hold every later nonce of the wallet.
  await keepOpenSends(state.journal).catch((error: unknown) =>
    state.logger.warn({ error }, "send gas: broadcasting the open sends again failed; tried again next pass"),
  );
  // Each open send is looked at once a pass: those tried by an earlier pass (or never) before those tried in this one.
  const [{ at: passStartedAt } = { at: new Date() }] = await db.query<{ at: Date }>("SELECT now() AS at");
  let overBudget = false;
  let followed = 0;
  while (!overBudget) {
    // Read before the receipts (sendFateOf): a nonce passed at this block with none of the send's receipts found
    // after is a send never mined. A retired wallet's, at its first send of the batch, for all of them.
    const confirmedNonce = await confirmedNonceOf(state.journal);
    const countOf = confirmedCountsOnce(state.journal);
    const open = await db.query<OpenSend>(
      `SELECT attempt_id, tx_hash, nonce, wallet,
              (extract(epoch FROM now() - signed_at) * 1000)::float8 AS signed_ms_ago
         FROM evm_sends
        WHERE chain_id = $1 AND NOT gas_done AND wallet IS NOT NULL AND wallet <> ''
          AND (gas_tried_at IS NULL OR gas_tried_at < $2)
        ORDER BY gas_tried_at NULLS FIRST, nonce, attempt_id LIMIT $3`,
      [state.chainId, passStartedAt, rowsMax],
    );
    for (const row of open) {
      // Checked each send (each asks the node a few times): those left are the first the next pass looks at. At least
      // one a pass, however long the pass took before it (the keeper's broadcasts on a slow node): before, a pass
      // whose keeper outlasted the budget followed none, and no gas was booked for as long as that lasted.
      if (followed > 0 && state.nowMs() - startedMs >= budgetMs) {
        overBudget = true;
        break;
      }
      followed += 1;
      let turn: Turn | "failed";
      try {
        turn = await followSend(state, book, row, { confirmedNonce, countOf }, result.booked);
      } catch (error) {
        state.logger.error(
          { error, send: row.attempt_id, txHash: row.tx_hash },
          "send gas: following the send failed; tried again next pass",
        );
        turn = "failed";
      }
      if (turn === "pending") result.pending += 1;
      else if (turn === "never_mined") result.neverMined += 1;
      else if (turn === "failed") result.failed += 1;
      if (turn === "pending" || turn === "failed")
        await db.query("UPDATE evm_sends SET gas_tried_at = now() WHERE attempt_id = $1", [row.attempt_id]);
    }
    if (open.length < rowsMax) break;
  }
  if (result.booked.length + result.failed + result.neverMined > 0)
    state.logger.info(
      {
        booked: result.booked.length,
        pending: result.pending,
        neverMined: result.neverMined,
        failed: result.failed,
      },
      "send gas: pass done",
    );
  return result;
}

/** One open send's turn: what became of it, its gas booked or left to its caller, and done when it is final. */
async function followSend(
  state: EvmRailState,
  book: SendGasBooker,
  row: OpenSend,
  counts: { confirmedNonce: number; countOf: ConfirmedCountOf },
  booked: MinedSend[],
): Promise<Turn> {
  const kind = sendKindOf(row.attempt_id);
  // An x402 batch the rail may still hand to x402 (whose settler then books it) is not the pass's to claim yet.
  if (kind === "x402_batch" && row.signed_ms_ago < state.params.receiptTimeoutMs + x402HandoverMarginMs)
    return "pending";
  const fate = await sendFateOf(state.journal, row, counts.confirmedNonce, counts.countOf);
  if (fate.status === "pending") return "pending";
  let tx: MinedTx;
  if (fate.status === "never_mined") {
    // A send an older pass closed once mined and EVM migration 0018 opened again holds what was mined: a node that
    // pruned its transaction index since (geth's --history.transactions, hosted RPCs sooner) has no receipt of it,
    // and the nonce passed long ago. Before, such a send was judged never mined, its gas never booked and what was
    // stored of it wiped.
    const stored = await storedMinedOf(state, row.attempt_id);
    if (stored === null) {
      await claim(state, row.attempt_id, "never_mined");
      await markDone(state, row.attempt_id, null, "never_mined");
      return "never_mined";
    }
    tx = stored;
  } else {
    const { receipt } = fate;
    if (receipt.from.toLowerCase() !== row.wallet)
      throw new EvmRailError(
        `send ${row.attempt_id} is wallet ${row.wallet}'s, but ${receipt.transactionHash} was not`,
      );
    tx = {
      txHash: receipt.transactionHash,
      reverted: receipt.status !== "success",
      gasWei: feeWeiOf(receipt),
      gas: gasPaid(receipt),
      stored: false,
    };
  }
  const { reverted } = tx;
  const caller = gasBookedBy(kind);
  if (caller !== null) {
    await claim(state, row.attempt_id, caller);
    await markDone(state, row.attempt_id, tx, caller);
    return "done";
  }
  // Claimed before it is booked: an x402 batch's outcome handed to x402 meanwhile finds the claim (and refuses to
  // hand it over), and x402's claim found here leaves the gas to x402. A crash after the claim repeats the booking.
  const owner = await claim(state, row.attempt_id, claimedByPass);
  if (owner !== claimedByPass) {
    await markDone(state, row.attempt_id, tx, owner);
    return "done";
  }
  const mined: MinedSend = {
    key: row.attempt_id,
    kind,
    txHash: tx.txHash,
    hashes: await hashesOfSend(state.params.db, row),
    reverted,
    gas: tx.gas,
    owner: outcomeOwnerOf(kind, !reverted),
  };
  const outcome = await book(mined);
  // Left open, claimed by the pass: its next turn asks the booker again (no one else claims such a send). Before, an
  // owner that never ended left it so with nothing said.
  if ("waitingFor" in outcome) {
    if (row.signed_ms_ago >= ownerWaitSaidAfterMs && !state.ownerWaitsSaid.has(row.attempt_id)) {
      state.ownerWaitsSaid.add(row.attempt_id);
      state.logger.warn(
        {
          send: row.attempt_id,
          txHash: tx.txHash,
          owner: outcome.waitingFor,
          signedMinutesAgo: Math.floor(row.signed_ms_ago / 60_000),
        },
        "send gas: a mined send's gas still waits for its owner's outcome, which has not ended; its gas stays unbooked until it does",
      );
    }
    return "pending";
  }
  if (outcome.booked) booked.push(mined);
  await markDone(state, row.attempt_id, tx, outcome.bookedBy);
  // Booked as the hot wallet's gas is (spent on the rail's behalf), and said: the hot wallet's balance does not show it.
  if (outcome.booked && row.wallet !== state.account.address.toLowerCase())
    state.logger.info(
      { send: row.attempt_id, txHash: tx.txHash, paidBy: row.wallet, hotWallet: state.account.address },
      "send gas: a send mined from a wallet the hot wallet's key rotated from; its gas, booked, was paid by that wallet",
    );
  // Said as a warning, for the operator to check against the chain: a pass before the L1 data fee was counted (an
  // OP-stack chain's, ac492c7) stored the L2 gas alone, and the row cannot say which pass stored it.
  if (tx.stored)
    state.logger.warn(
      { send: row.attempt_id, txHash: tx.txHash, gasWei: tx.gasWei.toString(), bookedBy: outcome.bookedBy },
      "send gas: the node has no receipt of a mined send's transaction (its index pruned); its gas was judged from the transaction and the gas stored when it was mined, which on an OP-stack chain may leave out its L1 data fee if an older version stored it",
    );
  return outcome.booked ? "booked" : "done";
}

/** What was mined of a send: from its receipt, or as stored when it was mined (`stored`: the node has no receipt). */
type MinedTx = { txHash: Hex; reverted: boolean; gasWei: bigint; gas: FeePaid; stored: boolean };

const weiPerGwei = 1_000_000_000n;

/**
 * The mined transaction and gas an earlier turn stored of the send (evm_send_gas, as an older pass stored them when
 * it closed the send once mined); null when none was stored. Its gas is booked as gasPaid books a receipt's, in gwei
 * rounded up, under the same id (the booker's, from the chain and the transaction hash); only the wei is known, which
 * is all the booker's evidence names of a receipt's gas too (a booking repeated the other way is the same).
 */
async function storedMinedOf(state: EvmRailState, key: string): Promise<MinedTx | null> {
  const [row] = await state.params.db.query<{
    tx_hash: Hex | null;
    reverted: boolean | null;
    gas_wei: string | null;
  }>("SELECT tx_hash, reverted, gas_wei::text AS gas_wei FROM evm_send_gas WHERE attempt_id = $1", [key]);
  if (row === undefined || row.tx_hash === null || row.reverted === null || row.gas_wei === null) return null;
  const wei = BigInt(row.gas_wei);
  return {
    txHash: row.tx_hash,
    reverted: row.reverted,
    gasWei: wei,
    gas: { asset: assets.ETH, amount: divCeil(wei, weiPerGwei), detail: { wei: wei.toString() } },
    stored: true,
  };
}

/**
 * Claims who books the send's gas (its evm_send_gas row, made once): `by`, unless the row says another already.
 * Returns whose it is.
 */
export async function claim(state: EvmRailState, key: string, by: string): Promise<string> {
  const { db } = state.params;
  await db.query(
    `INSERT INTO evm_send_gas (attempt_id, chain_id, booked_by) VALUES ($1, $2, $3)
     ON CONFLICT (attempt_id) DO NOTHING`,
    [key, state.chainId, by],
  );
  const [row] = await db.query<{ booked_by: string }>(
    "SELECT booked_by FROM evm_send_gas WHERE attempt_id = $1",
    [key],
  );
  if (row === undefined) throw new EvmRailError(`the gas claim of send ${key} vanished`);
  return row.booked_by;
}

/**
 * The send is done: what was mined (null: nothing) and who booked its gas, then off the open sends. A mined
 * transaction and its gas stored before are never wiped by nothing mined.
 */
async function markDone(
  state: EvmRailState,
  key: string,
  mined: Pick<MinedTx, "txHash" | "reverted" | "gasWei"> | null,
  bookedBy: string,
): Promise<void> {
  await state.params.db.transaction(async (tx) => {
    await tx.query(
      `UPDATE evm_send_gas
          SET tx_hash = COALESCE($2::text, tx_hash), reverted = COALESCE($3::boolean, reverted),
              gas_wei = CASE WHEN $2::text IS NULL AND tx_hash IS NOT NULL THEN gas_wei ELSE $4::numeric END,
              booked_by = $5, done_at = now()
        WHERE attempt_id = $1`,
      [key, mined?.txHash.toLowerCase() ?? null, mined?.reverted ?? null, mined?.gasWei ?? 0n, bookedBy],
    );
    await tx.query("UPDATE evm_sends SET gas_done = true WHERE attempt_id = $1", [key]);
  });
  state.ownerWaitsSaid.delete(key);
}

/** How many sends without a wallet (journaled before evm migration 0011) get theirs per query. */
const walletsRecoveredMax = 100;

/**
 * The signer of each open send journaled before its wallet was (evm migration 0011), from its signed bytes: no
 * node asked, and the right wallet whichever rail signed it. A send whose bytes name no signer is logged and left
 * out of every pass (wallet '').
 */
async function recoverWallets(state: EvmRailState): Promise<void> {
  const { db } = state.params;
  for (;;) {
    const rows = await db.query<{ attempt_id: string; raw_tx: Hex }>(
      `SELECT attempt_id, raw_tx FROM evm_sends WHERE chain_id = $1 AND wallet IS NULL AND NOT gas_done
        ORDER BY nonce LIMIT $2`,
      [state.chainId, walletsRecoveredMax],
    );
    for (const row of rows) {
      let wallet = "";
      try {
        wallet = (
          await recoverTransactionAddress({ serializedTransaction: row.raw_tx as never })
        ).toLowerCase();
      } catch (error) {
        state.logger.error(
          { error, send: row.attempt_id },
          "send gas: the send's signer cannot be recovered",
        );
      }
      await db.query("UPDATE evm_sends SET wallet = $2 WHERE attempt_id = $1", [row.attempt_id, wallet]);
    }
    if (rows.length < walletsRecoveredMax) return;
  }
}
