// Reconciliation of x402 authorizations whose transaction was sent but whose outcome was never recorded: a row left
// `submitted` (settle.ts, batch.ts: the receipt was not seen within the chain's receiptTimeoutMs, or recording it
// failed, or the settler saw its transaction revert, or its batch item refused, and could not search for a copy, or
// the batch settler could not book its batch's gas, which it books before it concludes the rows, as a pass does). A
// pass, every `x402ReconcileEveryMs`, takes per chain at most `rowsPerPassMax` such rows quiet for `submittedQuietMs`
// (well past any settler's wait), and asks the chain for each distinct transaction's receipt once:
//
//   - mined, successful, with the token's AuthorizationUsed log for the row's (payer, nonce) → `settled`;
//   - a batch that refused the row's item (the rail reads why from the receipt, as it does for the batch's settler)
//     → concluded as the settler concludes it (batch.ts concludeItem): `failed` with the item's refusal
//     ("signature_invalid", …), or `settled` by a copy, or left — the record, and a retried settle's answer, the
//     settler's for the same fact;
//   - mined but not spending it, while a copy of the payer's signed transfer (another's transaction, before ours or
//     after it, spends.ts spentByAnother) moved its value from the payer to the hot wallet → `settled`: the invoice is
//     credited from it;
//   - mined but not spending it, the authorization unused and its window still open (ours reverted for another
//     reason: whoever holds it may still submit it, spends.ts unspentByOurs) → left, for the next pass, until it is
//     spent or its window shuts;
//   - mined but not spending it otherwise (the payer's nonce spent on other terms, or unused past its validBefore) →
//     `failed` ("reverted" / "not_spent"). As when a settler sees it: the claim stays (the authorization cannot pay
//     again), the invoice stays open, bound to the nonce, until it expires — the deposit watcher credits an invoice
//     only from the token's log, so nothing is taken back;
//   - mined but not spending it while the node cannot say whether a copy paid → left, for the next pass;
//
// A row's transaction is one of its send's (the EVM rail's send journal, adapters/evm send-journal.ts: the send
// first signed, then each fee bump — same call, same nonce, another hash — of which at most one is mined). Every
// transaction of the send is asked for its receipt; the one mined concludes the rows as above, and every row of
// the hash they named carries the mined one from then on (its gas booked under the mined hash). None mined:
//
//   - one of them still pending on the node → left;
//   - else the token says, read at the latest block: the nonce used (by a transaction not ours, as none of ours
//     was mined) → left for a person, logged — even when that transaction is a copy of these very terms, which a
//     mined transaction of ours would settle (above): ours, not mined, may still be (its send is broadcast again),
//     and its gas is booked only from a row still `submitted`; unused once the time of the chain's last confirmed
//     block has reached the row's validBefore (the token refuses it from then on, on whatever branch) → `failed`
//     ("dropped"), no gas (nothing was mined); unused within its window, or no validBefore recorded (rows claimed
//     before migration 0027) → left.
//
// Every row left is touched (its updated_at moved on), so the next passes take the rows behind it: the pass reads
// the oldest first, and rows that are never concluded (a dropped transaction before its window ends, an authorization
// ours left open until its window ends, a spender not ours, a copy the node cannot search for now: spentByAnother's
// "unknown") would otherwise fill every pass. A transaction whose reads or booking fail is logged and its rows left,
// touched; the pass goes on with the next — also after a transport fault (a timeout, an HTTP error) of one of its
// reads while the node still answers. Only the node out of reach (the fault, then the node not answering the
// latest block's number) ends the chain's pass, and so does a failed read of the chain's head (chainHead) at its start.
//
// The gas of every mined transaction is booked before its rows are concluded, through the settlers' own booking
// (settle.ts bookGas for a transaction to the token — on a rail of more than one confirmation left to the rail's
// send-gas pass, once final — batch.ts bookBatchGas for one to a batch settler, split over
// every row of its batch as batch.ts splits it), under ids derived from the transaction: booking it
// again books nothing, and a booking that fails leaves the rows `submitted` for the next pass. A row is concluded
// only while it is still `submitted` with that transaction (a retried settle may have concluded it meanwhile).
//
// A `claimed` row never carries a transaction here (settle.ts records the hash with `submitted`), so only
// `submitted` rows are read — after those left `claimed` by a settler that threw or died once its transaction was
// stored are adopted from the rail's send journal (adoptSentClaims: a single settlement by its authorization, a batch
// by the key batch.ts marks its rows with before it sends). The rows are read across tenants: each statement names
// the chain and token, and a row is written by its full key.
import {
  BaseError,
  type Hex,
  HttpRequestError,
  isAddressEqual,
  SocketClosedError,
  TimeoutError,
  TransactionNotFoundError,
  TransactionReceiptNotFoundError,
  WebSocketRequestError,
} from "viem";
import { feeWeiOf, type Logger, transferSendKeysSql, x402BatchSendKeyPrefix } from "../../core/index.ts";
import type { Db } from "../db/index.ts";
import { type Periodic, startPeriodic } from "../periodic/index.ts";
import type { SettlementDeps } from "../settlement/index.ts";
import { type BatchItemRefusal, bookBatchGas, concludeItem } from "./batch.ts";
import { type ChainRegistry, nonceUsed, type X402Chain } from "./chains.ts";
import { bookGas } from "./settle.ts";
import {
  type ChainHead,
  chainHead,
  type MinedReceipt,
  sameHash,
  sendJournalOf,
  spentIn,
  unspentByOurs,
} from "./spends.ts";
import { boundDepositJoinSql, recordUnusedAt } from "./store.ts";

/** The transaction's receipt; null while it is not mined (a node out of reach throws). */
async function minedReceipt(chain: X402Chain, txHash: Hex): Promise<MinedReceipt | null> {
  try {
    return await chain.publicClient.getTransactionReceipt({ hash: txHash });
  } catch (error) {
    if (error instanceof TransactionReceiptNotFoundError) return null;
    throw error;
  }
}

/** Whether the node holds the transaction (pending, as it is not mined): false for one it dropped or never saw. */
async function pending(chain: X402Chain, txHash: Hex): Promise<boolean> {
  try {
    await chain.publicClient.getTransaction({ hash: txHash });
    return true;
  } catch (error) {
    if (error instanceof TransactionNotFoundError) return false;
    throw error;
  }
}

/** A fault of the node's transport (every read would fail alike), not of one transaction's reads. */
function nodeUnreachable(error: unknown): boolean {
  if (!(error instanceof BaseError)) return false;
  const transport = error.walk(
    (cause) =>
      cause instanceof HttpRequestError ||
      cause instanceof TimeoutError ||
      cause instanceof WebSocketRequestError ||
      cause instanceof SocketClosedError,
  );
  return transport !== null && transport !== undefined;
}

/** Whether the node answers now (the latest block's number): a transport fault of one read may be that read's. */
async function nodeAnswers(chain: X402Chain): Promise<boolean> {
  try {
    await chain.publicClient.getBlockNumber({ cacheTime: 0 });
    return true;
  } catch {
    return false;
  }
}

// ---- the pass

export type ReconcileSettings = {
  /** A `submitted` row is reconciled once it has not changed for this long (past every settler's receipt wait). */
  readonly submittedQuietMs: number;
  /** At most this many rows per chain per pass (the oldest first). */
  readonly rowsPerPassMax: number;
};

export const reconcileDefaults: ReconcileSettings = {
  submittedQuietMs: 5 * 60_000,
  rowsPerPassMax: 500,
};

/** How often the periodic pass runs. */
export const x402ReconcileEveryMs = 60_000;

export type ReconcileDeps = {
  readonly db: Db;
  readonly settlement: SettlementDeps;
  readonly chains: Pick<ChainRegistry, "chains">;
  readonly logger: Logger;
};

/** What one pass did: rows concluded settled or failed, and rows left (not concluded, or erred). */
export type ReconcileCounts = { settled: number; failed: number; left: number };

/**
 * A row read: its transaction, its authorization's validBefore (unix seconds; null if not recorded), the latest
 * block its nonce was read unused at after ours did not spend it (null if never: migration 0068), and its `to`.
 */
type SubmittedRow = {
  payer: Hex;
  /**
   * The authorization's `to`: the hot wallet its invoice was bound with (evm_deposits.auth_to, evm migration 0023),
   * else the chain's hot wallet now (a binding before it). Before, always the hot wallet now: after the operator
   * rotated its key, an authorization sent before (its `to` the old wallet) read as spent on other terms once mined.
   */
  to: Hex;
  nonce: Hex;
  amount: bigint;
  txHash: Hex;
  validBefore: bigint | null;
  unusedBlock: bigint | null;
};

/** One pass over every chain; a chain whose node or rows fail is logged and left to the next pass. */
export async function reconcileX402(
  deps: ReconcileDeps,
  settings: Partial<ReconcileSettings> = {},
): Promise<ReconcileCounts> {
  const bounds = { ...reconcileDefaults, ...settings };
  const counts: ReconcileCounts = { settled: 0, failed: 0, left: 0 };
  for (const chain of deps.chains.chains) {
    try {
      await reconcileChain(deps, chain, bounds, counts);
    } catch (error) {
      deps.logger.error(
        { error, rail: chain.rail },
        "x402 reconcile: the chain's pass failed; retried next pass",
      );
    }
  }
  if (counts.settled + counts.failed > 0)
    deps.logger.info(counts, "x402 reconcile: sent authorizations concluded");
  return counts;
}

/** The periodic pass, for the composition root (beside the settlers). */
export function startX402Reconcile(deps: ReconcileDeps): Periodic {
  return startPeriodic({
    name: "x402 reconcile",
    intervalMs: x402ReconcileEveryMs,
    pass: () => reconcileX402(deps),
    logger: deps.logger,
  });
}

async function reconcileChain(
  deps: ReconcileDeps,
  chain: X402Chain,
  bounds: ReconcileSettings,
  counts: ReconcileCounts,
): Promise<void> {
  await adoptSentClaims(deps.db, chain, bounds);
  const rows = await submittedRows(deps.db, chain, bounds);
  if (rows.length === 0) return;
  // The chain's head, read once for the pass: whether each row's window shut is read at its last confirmed block.
  // Before, each row read the latest block, unconfirmed: a row failed by it could still be mined by a reorganisation.
  const head = await chainHead(chain);
  const byTx = new Map<Hex, SubmittedRow[]>();
  for (const row of rows) {
    const ofTx = byTx.get(row.txHash);
    if (ofTx === undefined) byTx.set(row.txHash, [row]);
    else ofTx.push(row);
  }
  for (const [txHash, ofTx] of byTx) {
    // A transaction's own fault (its reads, its booking) ends only its turn; the node out of reach (a transport
    // fault, and the node not answering the question after) ends the chain's pass: every read would fail alike.
    let left: readonly SubmittedRow[];
    try {
      left = await reconcileTx(deps, chain, head, txHash, ofTx, counts);
    } catch (error) {
      if (nodeUnreachable(error) && !(await nodeAnswers(chain))) throw error;
      deps.logger.error(
        { error, txHash, rail: chain.rail },
        "x402 reconcile: concluding a transaction failed; its rows are left",
      );
      left = ofTx;
    }
    counts.left += left.length;
    await touch(deps.db, chain, left);
  }
}

/**
 * Concludes what it can of the rows of `txHash`; returns the rows left. The send journal names every transaction
 * of the send (`txHash` and its fee bumps); the mined one, if any, concludes the rows, which carry it from then on.
 */
async function reconcileTx(
  deps: ReconcileDeps,
  chain: X402Chain,
  head: ChainHead,
  txHash: Hex,
  rows: readonly SubmittedRow[],
  counts: ReconcileCounts,
): Promise<readonly SubmittedRow[]> {
  const ofSend = (await sendJournalOf(deps.settlement.rails, chain)?.(txHash)) ?? [];
  const hashes = ofSend.some((hash) => sameHash(hash, txHash)) ? ofSend : [txHash, ...ofSend];
  for (const hash of hashes) {
    const receipt = await minedReceipt(chain, hash);
    if (receipt === null) continue;
    if (sameHash(hash, txHash)) return concludeTx(deps, chain, head, txHash, receipt, rows, counts);
    await replaced(deps.db, chain, txHash, hash);
    const moved = rows.map((row) => ({ ...row, txHash: hash }));
    return concludeTx(deps, chain, head, hash, receipt, moved, counts);
  }
  for (const hash of hashes) if (await pending(chain, hash)) return rows;
  return concludeUnmined(deps, chain, head, txHash, rows, counts);
}

/** Books the mined transaction's gas, then concludes each of its rows read in this pass; returns the rows left. */
async function concludeTx(
  deps: ReconcileDeps,
  chain: X402Chain,
  head: ChainHead,
  txHash: Hex,
  receipt: MinedReceipt,
  rows: readonly SubmittedRow[],
  counts: ReconcileCounts,
): Promise<readonly SubmittedRow[]> {
  if (!(await bookTxGas(deps, chain, txHash, receipt))) return rows;
  const refusalOf = batchRefusalOf(deps.settlement.rails, chain);
  const left: SubmittedRow[] = [];
  for (const row of rows) {
    const outcome = await outcomeOf(deps, chain, head, receipt, row, refusalOf);
    if (outcome === null) {
      // The node cannot say now whether a copy paid (spentByAnother said why): never taken for none (the payer may
      // have paid). Left, each pass: a node that can never answer (its logs pruned) leaves the row for a person. Or
      // the authorization, unused, may still be mined until its validBefore: left until it is, or its window shuts.
      left.push(row);
      continue;
    }
    if (!(await conclude(deps.db, chain, row, outcome))) continue;
    if (outcome.status === "settled") counts.settled += 1;
    else counts.failed += 1;
  }
  return left;
}

type Outcome =
  | { status: "settled"; spentBlock: bigint; spentTxHash?: Hex }
  | { status: "failed"; failure: string; spentBlock?: bigint };

/**
 * What the mined `receipt` came to for the row's authorization; null while the node cannot say whether a copy paid, or
 * while the authorization, unused, may still be mined (spends.ts unspentByOurs): left to whoever holds it, never
 * submitted again by the gateway, since its payer, answered 402, signs a new one with a new nonce (the reference
 * clients do not send the old one again) that is settled and served, and the old one mined too would charge the payer
 * twice. An item a batch refused, as the rail reads it from the receipt (the settler's reading), is concluded as the
 * settler concludes it (batch.ts concludeItem): one record for one fact, whoever concludes it. Otherwise spent by ours,
 * or else by a copy of the payer's signed transfer mined before or after ours that paid the hot wallet (the invoice is
 * credited from it), as the settler answers it (settle.ts): settled; by neither, the nonce used otherwise or the window
 * shut: failed.
 */
async function outcomeOf(
  deps: ReconcileDeps,
  chain: X402Chain,
  head: ChainHead,
  receipt: MinedReceipt,
  row: SubmittedRow,
  refusalOf: BatchRefusalOf | null,
): Promise<Outcome | null> {
  const a = { from: row.payer, to: row.to, value: row.amount, nonce: row.nonce };
  if (spentIn(chain, receipt, a)) return { status: "settled", spentBlock: receipt.blockNumber };
  const refusal = refusalOf === null ? null : await refusalOf(receipt, a);
  if (refusal !== null) {
    const item = { status: "refused" as const, refusal, revert: null };
    const concluded = await concludeItem(
      chain,
      { ...a, validBefore: row.validBefore },
      item,
      { txHash: row.txHash, block: receipt.blockNumber, unusedAt: row.unusedBlock },
      deps.logger,
      head,
    );
    if (concluded.status === "open") await recordUnusedAt(deps.db, chain, a, concluded.unusedAt);
    if (concluded.status === "unknown" || concluded.status === "open") return null;
    if (concluded.status === "settled") return concluded;
    return { status: "failed", failure: concluded.failure, spentBlock: concluded.spentBlock };
  }
  // A row claimed before its validBefore was kept (migration 0027) is concluded as before: never open.
  const missed = await unspentByOurs(
    chain,
    { ...a, validBefore: row.validBefore },
    { txHash: row.txHash, block: receipt.blockNumber, unusedAt: row.unusedBlock },
    deps.logger,
    head,
  );
  // Open: the next pass searches for a copy from the block after this reading's, not from ours's again.
  if (missed.status === "open") await recordUnusedAt(deps.db, chain, a, missed.unusedAt);
  if (missed.status === "unknown" || missed.status === "open") return null;
  if (missed.status === "copy")
    return { status: "settled", spentBlock: missed.block, spentTxHash: missed.txHash };
  // A failure mined too carries a block: another's spend of the authorization, if that is why, is in the one read or
  // before; unused and lapsed, ours's.
  const failure = receipt.status === "success" ? "not_spent" : "reverted";
  return {
    status: "failed",
    failure,
    spentBlock: missed.status === "spent" ? missed.block : receipt.blockNumber,
  };
}

/** Why a mined batch did not settle an authorization, as the chain's rail reads it; null when it settled it. */
type BatchRefusalOf = (
  receipt: MinedReceipt,
  authorization: { from: Hex; nonce: Hex },
) => Promise<BatchItemRefusal | null>;

/**
 * The reading of a batch item's refusal by `chain`'s rail among `rails` (the EVM rail's authorizationBatchRefusalOf,
 * beyond the Rail contract, as spends.ts reaches its send journal); null for a rail without one, whose batch items are
 * concluded as any other row.
 */
function batchRefusalOf(
  rails: { get(id: string): unknown },
  chain: Pick<X402Chain, "rail">,
): BatchRefusalOf | null {
  const rail = rails.get(chain.rail);
  const read = (rail as { authorizationBatchRefusalOf?: unknown } | undefined)?.authorizationBatchRefusalOf;
  return typeof read === "function" ? (read as BatchRefusalOf).bind(rail) : null;
}

// ---- a send none of whose transactions was mined or is pending: what the token says

/**
 * The rows of `txHash`, no transaction of its send mined nor pending: concluded from the token at the latest
 * block. A row whose nonce is unused past its validBefore by the last confirmed block's time (as unspentByOurs reads a
 * lapse) is failed ("dropped"); one whose nonce is used (by a transaction not ours: none of ours was mined) is left
 * for a person, logged. Returns the rows left.
 */
async function concludeUnmined(
  deps: ReconcileDeps,
  chain: X402Chain,
  head: ChainHead,
  txHash: Hex,
  rows: readonly SubmittedRow[],
  counts: ReconcileCounts,
): Promise<readonly SubmittedRow[]> {
  const { latest, confirmed } = head;
  const left: SubmittedRow[] = [];
  for (const row of rows) {
    const used = await nonceUsed(chain, row.payer, row.nonce, latest.number);
    if (used) {
      deps.logger.error(
        { txHash, rail: chain.rail, payer: row.payer, nonce: row.nonce },
        "x402 reconcile: the authorization was spent, not by a transaction of ours; left for a person",
      );
      left.push(row);
    } else if (row.validBefore === null || confirmed.timestamp < row.validBefore) left.push(row);
    else if (await conclude(deps.db, chain, row, { status: "failed", failure: "dropped" }))
      counts.failed += 1;
  }
  return left;
}

/**
 * Every row of transaction `from` now carries `to`, the transaction of ours that replaced it (the send journal's
 * fee bump: the same call, so the same rows — batch.ts records each item of a batch with its transaction, those it
 * refused too, and the gas is split over them all).
 */
async function replaced(db: Db, chain: X402Chain, from: Hex, to: Hex): Promise<void> {
  await db.query(
    `UPDATE x402_authorizations SET tx_hash = $4, updated_at = now()
     WHERE chain_id = $1 AND token = $2 AND tx_hash = $3`,
    [chain.chainId, chain.token.toLowerCase(), from, to],
  );
}

/**
 * The rows left moved behind the others (updated_at now): the next passes read the rows after them first. By
 * (payer, nonce) whatever their transaction now (a row moved to its send's mined one before its turn failed).
 */
async function touch(db: Db, chain: X402Chain, rows: readonly SubmittedRow[]): Promise<void> {
  if (rows.length === 0) return;
  await db.query(
    `UPDATE x402_authorizations SET updated_at = now()
     WHERE chain_id = $1 AND token = $2 AND status = 'submitted'
       AND (payer, nonce) IN (SELECT * FROM unnest($3::text[], $4::text[]))`,
    [chain.chainId, chain.token.toLowerCase(), rows.map((row) => row.payer), rows.map((row) => row.nonce)],
  );
}

/**
 * Rows left `claimed`, bound to an invoice, with no transaction, though the rail's send journal holds one for their
 * authorization (transfer-auth:<chain id>:<payer>:<nonce>, or the key before the chain id was in it), or for the
 * batch they were marked with before it was sent (x402-batch:<batch key>: batch.ts): the settler threw after the
 * transaction was signed and stored (a broadcast the node refused; the send-gas pass broadcasts it again), or
 * crashed before its record. They become `submitted` with that transaction, and are concluded below as any other,
 * in this pass once quiet as long; before, nothing ever concluded them, a retried settle of the payment was refused
 * as taken, and a batch's gas, handed to x402 by the rail, was never booked.
 */
async function adoptSentClaims(db: Db, chain: X402Chain, bounds: ReconcileSettings): Promise<void> {
  await adoptSentBatches(db, chain, bounds);
  await db.query(
    `WITH adoptable AS (
       SELECT a.payer, a.nonce, s.tx_hash FROM x402_authorizations a
       JOIN evm_sends s ON s.chain_id = $1 AND s.attempt_id IN (${transferSendKeysSql("$1", "a.payer", "a.nonce")})
       WHERE a.chain_id = $1 AND a.token = $2 AND a.status = 'claimed' AND a.tx_hash IS NULL
         AND a.invoice_id IS NOT NULL
         AND a.updated_at < now() - make_interval(secs => $3::double precision / 1000)
         -- The send is this invoice's: the rail bound the invoice to the payer and nonce before it signed (the key
         -- names neither the invoice nor the token, and a row left claimed may be bound to an invoice the rail
         -- refused because another invoice holds the authorization).
         AND EXISTS (SELECT 1 FROM evm_deposits d
                     WHERE d.chain_id = $1 AND d.token = $2 AND d.reference = a.invoice_id
                       AND d.auth_from = a.payer AND d.auth_nonce = a.nonce)
       ORDER BY a.updated_at LIMIT $4)
     UPDATE x402_authorizations a SET status = 'submitted', tx_hash = adoptable.tx_hash
     FROM adoptable
     WHERE a.chain_id = $1 AND a.token = $2 AND a.payer = adoptable.payer AND a.nonce = adoptable.nonce
       AND a.status = 'claimed' AND a.tx_hash IS NULL`,
    [chain.chainId, chain.token.toLowerCase(), bounds.submittedQuietMs, bounds.rowsPerPassMax],
  );
}

/**
 * adoptSentClaims for batches: every row still `claimed` under a batch key the journal holds a send for, a batch
 * whole (the rows the pass takes are counted by batch). A batch's gas is split over every row of the batch
 * (bookBatchGas, as batch.ts splits it over its items; batchInvoiceIds): a batch adopted in part would book its shares
 * over some of them, other amounts than the rest later named under the same ids. Its rows were marked in one
 * statement (store.ts sendingInBatch, which sends nothing unless it marked every one), so they turn quiet together.
 * Quiet from the send's signing too (evm_sends.signed_at, moved on by each fee bump): the rows were marked before the
 * batch waited for the hot wallet's turn, then for its receipt, and a live settler's batch would be adopted, and
 * concluded twice, while it still waits. They take the transaction the batch's rows its settler recorded already
 * carry (it died part way through), else the send's latest: one transaction on every row of a batch, as `replaced`
 * moves them. No binding to check, as for a single settlement: the key was written on exactly these rows, each bound
 * to its invoice, before the rail sent them.
 */
async function adoptSentBatches(db: Db, chain: X402Chain, bounds: ReconcileSettings): Promise<void> {
  await db.query(
    `WITH adoptable AS (
       SELECT a.batch_key, coalesce(recorded.tx_hash, s.tx_hash) AS tx_hash FROM x402_authorizations a
       JOIN evm_sends s ON s.chain_id = $1 AND s.attempt_id = $5::text || a.batch_key
       LEFT JOIN LATERAL (SELECT o.tx_hash FROM x402_authorizations o
                          WHERE o.chain_id = $1 AND o.token = $2 AND o.batch_key = a.batch_key
                            AND o.tx_hash IS NOT NULL
                          ORDER BY o.tx_hash LIMIT 1) recorded ON true
       WHERE a.chain_id = $1 AND a.token = $2 AND a.status = 'claimed' AND a.tx_hash IS NULL
         AND a.invoice_id IS NOT NULL AND a.batch_key IS NOT NULL
         AND greatest(a.updated_at, s.signed_at) < now() - make_interval(secs => $3::double precision / 1000)
       GROUP BY a.batch_key, s.tx_hash, recorded.tx_hash
       ORDER BY min(a.updated_at) LIMIT $4)
     UPDATE x402_authorizations a SET status = 'submitted', tx_hash = adoptable.tx_hash
     FROM adoptable
     WHERE a.chain_id = $1 AND a.token = $2 AND a.batch_key = adoptable.batch_key
       AND a.status = 'claimed' AND a.tx_hash IS NULL`,
    [
      chain.chainId,
      chain.token.toLowerCase(),
      bounds.submittedQuietMs,
      bounds.rowsPerPassMax,
      x402BatchSendKeyPrefix,
    ],
  );
}

/** The chain's `submitted` rows quiet for `submittedQuietMs`, the oldest first, at most `rowsPerPassMax`. */
async function submittedRows(db: Db, chain: X402Chain, bounds: ReconcileSettings): Promise<SubmittedRow[]> {
  const rows = await db.query<{
    payer: Hex;
    nonce: Hex;
    amount: string;
    tx_hash: Hex;
    valid_before: string | null;
    unused_block: string | null;
    auth_to: Hex | null;
  }>(
    // The `to` of the invoice's binding (store.ts boundDepositJoinSql, as adoptSentClaims reads it).
    `SELECT a.payer, a.nonce, a.amount::text AS amount, a.tx_hash, a.valid_before,
            a.unused_block::text AS unused_block, d.auth_to
     FROM x402_authorizations a
     ${boundDepositJoinSql}
     WHERE a.chain_id = $1 AND a.token = $2 AND a.status = 'submitted' AND a.tx_hash IS NOT NULL
       AND a.updated_at < now() - make_interval(secs => $3::double precision / 1000)
     ORDER BY a.updated_at LIMIT $4`,
    [chain.chainId, chain.token.toLowerCase(), bounds.submittedQuietMs, bounds.rowsPerPassMax],
  );
  return rows.map((row) => ({
    payer: row.payer,
    to: row.auth_to ?? chain.hotWallet,
    nonce: row.nonce,
    amount: BigInt(row.amount),
    txHash: row.tx_hash,
    validBefore: row.valid_before === null ? null : BigInt(row.valid_before),
    unusedBlock: row.unused_block === null ? null : BigInt(row.unused_block),
  }));
}

/** Records the outcome while the row is still `submitted` with this transaction; true when it was. */
async function conclude(db: Db, chain: X402Chain, row: SubmittedRow, outcome: Outcome): Promise<boolean> {
  const updated = await db.query(
    `UPDATE x402_authorizations
     SET status = $6, failure = coalesce($7, failure), spent_block = coalesce($8, spent_block),
         spent_tx_hash = coalesce($9, spent_tx_hash), updated_at = now()
     WHERE chain_id = $1 AND token = $2 AND payer = $3 AND nonce = $4 AND status = 'submitted' AND tx_hash = $5
     RETURNING 1`,
    [
      chain.chainId,
      chain.token.toLowerCase(),
      row.payer,
      row.nonce,
      row.txHash,
      outcome.status,
      outcome.status === "failed" ? outcome.failure : null,
      outcome.spentBlock?.toString() ?? null,
      outcome.status === "settled" ? (outcome.spentTxHash ?? null) : null,
    ],
  );
  return updated.length === 1;
}

// ---- the gas of a mined transaction

/**
 * Books the gas of our transaction `txHash` as a pass does before it concludes the rows: for a settle retried before a
 * pass concluded them (facilitator.ts priorSettlement), which concludes its row only once this is true. From `read`,
 * its receipt as the caller read it already (its search for what spent the authorization), else read now: before, a
 * retry read the same receipt twice. False, the row left to the pass, while the transaction is not mined, a row of it
 * has no invoice, or the node or the ledger fails (logged).
 */
export async function bookMinedTxGas(
  deps: ReconcileDeps,
  chain: X402Chain,
  txHash: Hex,
  read?: MinedReceipt,
): Promise<boolean> {
  try {
    const receipt = read ?? (await minedReceipt(chain, txHash));
    return receipt !== null && (await bookTxGas(deps, chain, txHash, receipt));
  } catch (error) {
    deps.logger.warn(
      { txHash, rail: chain.rail, error },
      "x402: the gas of a retried settlement's transaction was not booked; reconciliation books it",
    );
    return false;
  }
}

/**
 * Books the transaction's gas as the settler that sent it does: a transaction to the token is one payment's
 * (bookGas); one to a batch settler is split over every row of its batch (bookBatchGas, by invoice id). False
 * (logged) when the rows cannot name their shares.
 */
async function bookTxGas(deps: ReconcileDeps, chain: X402Chain, txHash: Hex, receipt: MinedReceipt) {
  const gasWei = feeWeiOf(receipt);
  if (receipt.to !== null && isAddressEqual(receipt.to, chain.token)) {
    await bookGas(deps.settlement, chain, txHash, gasWei, deps.logger);
    return true;
  }
  const invoiceIds = await batchInvoiceIds(deps.db, chain, txHash);
  if (invoiceIds === null) {
    deps.logger.error({ txHash, rail: chain.rail }, "x402 reconcile: a batch row without its invoice; left");
    return false;
  }
  await bookBatchGas(deps.settlement, chain, { txHash, gasWei }, invoiceIds, deps.logger);
  return true;
}

/**
 * The invoices of every row of the batch sent as transaction `txHash` (whatever its status: batch.ts records each item
 * of a batch with it, those refused too): the rows carrying the batch key of a row carrying `txHash`, whatever
 * transaction of the send each carries, and the rows carrying `txHash` (a batch sent before its rows were marked,
 * migration 0060). Their order does not matter: bookBatchGas splits by invoice id. Null when a row has no invoice
 * (batch.ts queues none without one). By hash alone, the rows of a batch carrying different transactions of its send
 * (a settler that recorded some rows with one and died, the rest adopted with another: its fee bump) were split over
 * as two batches — the first concluded booked the whole gas over its rows, the second, moved to the same transaction,
 * its share of every row again under the ids not booked yet.
 */
async function batchInvoiceIds(db: Db, chain: X402Chain, txHash: Hex): Promise<string[] | null> {
  const rows = await db.query<{ invoice_id: string | null }>(
    `WITH carrying AS (
       SELECT invoice_id, batch_key FROM x402_authorizations WHERE chain_id = $1 AND token = $2 AND tx_hash = $3)
     SELECT invoice_id FROM carrying WHERE batch_key IS NULL
     UNION ALL
     SELECT a.invoice_id FROM x402_authorizations a
     WHERE a.chain_id = $1 AND a.token = $2
       AND a.batch_key IN (SELECT batch_key FROM carrying WHERE batch_key IS NOT NULL)`,
    [chain.chainId, chain.token.toLowerCase(), txHash],
  );
  const invoiceIds = rows.flatMap((row) => (row.invoice_id === null ? [] : [row.invoice_id]));
  return invoiceIds.length === rows.length ? invoiceIds : null;
}
