// Settlement of verified x402 payments many per transaction (X402BatchSettler, contracts/X402BatchSettler.sol),
// behind the same `X402Settler` as the single settler (settle.ts), so that a sub-cent payment does not pay a whole
// transaction's gas. Each payment is booked as the single settler books it — an invoice of the seller's account on
// the chain's EVM rail, credited by the deposit watcher when the token's AuthorizationUsed log is final — and then
// waits in its chain's queue. A queue is sent when `batchSizeMax` payments wait or when its oldest has waited
// `batchWaitMsMax`, as one transaction from the rail's hot wallet through its send journal (the rail's
// settleAuthorizationBatch: one signer, the database's nonce, sent once per key). Each caller gets its own item's
// outcome from the receipt: one refused authorization fails alone (one refused as spent, or for a reason the token did
// not name, or its window shut, whose spend was a copy of it that someone submitted first and that paid the hot wallet,
// is settled by that copy: spends.ts; while the node cannot say whether one did, or while one refused for a reason the
// token did not name, or a batch reverted whole, left the authorization unused within its window for whoever holds it
// to submit, it is answered pending and left `submitted` for reconciliation). Reconciliation concludes an item the
// settler left `submitted` the same way
// (concludeItem), so its record, and a retried settle's answer, are the ones the settler would have given.
//
// The bound a seller waits: its payment is sent at most `batchWaitMsMax` after `settle` booked it (sooner when the
// batch fills), and its outcome is known at most the chain's `receiptTimeoutMs` later; past that, the caller is
// answered `unexpected_settle_error` and the invoice is still credited if the transaction is mined.
//
// Never twice: the caller has claimed the authorization in x402_authorizations (store.claim: one row per chain,
// token, payer and nonce, across every process), the rail binds the payer's nonce to one invoice (evm_deposits'
// unique auth_nonce and auth_from), the queue refuses a second copy of an authorization it holds, and the token spends
// a payer's nonce once.
//
// Gas: the transaction's gas (used × effective price, in gwei rounded up) is booked once per batch, as the rail's
// fee against its ETH clearing account, split into one share per payment sent: each share is the total divided by
// the payments, rounded down, and the remainder goes to the payment whose invoice id is smallest
// (`splitEvenlyRemainderToFirst` over the invoices in id order, so the reconciler books the same shares). It is booked
// before the rows are concluded, as reconciliation books it: a booking the settler gives up on (afterSent's tries
// spent) leaves every row of the batch `submitted` with its transaction, whatever each caller was answered, and
// reconciliation books the gas, then concludes them. Concluded first, `settled` or `failed`, nothing read the rows
// again, and the gas of a mined batch — reverted too — stayed unbooked for good: the rail hands a batch's gas to x402
// (adapters/evm x402-batch.ts), so its send-gas pass books none of it.
//
// A settler that dies between the send and its record (the rail has sent the batch, and perhaps handed its gas to x402,
// but no row names its transaction): before the rail sends, each row of the batch is marked with the batch's key
// (store.ts sendingInBatch), under which the rail's send journal holds the transaction (`x402-batch:<key>`).
// Reconciliation adopts the rows left `claimed` under a key the journal holds, every row of the batch at once (its gas
// is split over them all), and concludes them from the receipt, booking the gas as above; the send-gas pass leaves the
// gas of a batch whose rows carry its key to x402 (settlement/evm-send-gas.ts), so it is booked once, by x402. Before,
// such rows stayed `claimed` for good — never given back (something was sent), never read by reconciliation (which
// read only rows with a transaction) — and the gas the rail had handed to x402 was never booked.
//
// What does not fit a packed item (a value above 2^128 − 1, a window past 2^48 − 1, an ERC-1271 signature that is
// not 65 bytes), or a chain without a batch sender, goes to the single settler.
import type { Hex } from "viem";
import { divCeil, divFloor, type Logger, silentLogger } from "../../core/index.ts";
import { derivedLedgerId } from "../ids/index.ts";
import type { SettlementDeps } from "../settlement/index.ts";
import type { X402Chain } from "./chains.ts";
import type { X402Refusal } from "./refusals.ts";
import {
  afterSent,
  bookGasEntries,
  bookInvoice,
  type ClaimedPayment,
  type SettleResult,
  type X402Settler,
} from "./settle.ts";
import { type ChainHead, chainHead, unspentByOurs } from "./spends.ts";
import { record, release, sendingInBatch } from "./store.ts";
import type { Eip3009Authorization, ExactRequirements } from "./verify.ts";

// ---- the port to the chain (the EVM rail's settleAuthorizationBatch, wired by the composition root)

/** Why the token (or the invoice) refused one item; the EVM rail's AuthorizationBatchItemRefusal. */
export type BatchItemRefusal =
  | "signature_invalid"
  | "authorization_expired"
  | "authorization_used"
  | "payer_insufficient_funds"
  | "authorization_mismatch"
  | "rejected";

export type BatchItemOutcome =
  | { status: "settled"; logIndex: number }
  | { status: "refused"; refusal: BatchItemRefusal; revert: Hex | null };

/** What sending one batch came to; the EVM rail's AuthorizationBatchOutcome. */
export type BatchSendOutcome =
  | {
      status: "mined";
      txHash: Hex;
      blockNumber: bigint;
      /** What the transaction cost the hot wallet, in wei. */
      gasWei: bigint;
      /** In the order of the items sent. */
      items: BatchItemOutcome[];
    }
  /** No item could be bound to its invoice: nothing was sent. */
  | { status: "none_sent"; items: BatchItemOutcome[] }
  | { status: "in_flight"; txHash: Hex }
  /** Not sent (txHash, gasWei null), or reverted as a whole: gasWei is what it cost. */
  | { status: "failed"; message: string; revert: string | null; txHash: Hex | null; gasWei: bigint | null };

export type BatchItem = {
  /** The invoice the item pays (the rail's reference is the invoice id). */
  reference: string;
  authorization: Eip3009Authorization & { signature: Hex };
};

/** Sends one batch under `key` (the same key never sends twice) from the chain's hot wallet. */
export type AuthorizationBatchSender = (batch: {
  key: string;
  items: readonly BatchItem[];
}) => Promise<BatchSendOutcome>;

// ---- settings

export type BatchSettlerSettings = {
  /** A queue is sent when this many payments wait (1 to batchItemsMax). */
  readonly batchSizeMax: number;
  /** …or when its oldest payment has waited this long. */
  readonly batchWaitMsMax: number;
};

/** The contract's ITEMS_MAX: its bitmap is one word. */
export const batchItemsMax = 256;

export const batchSettlerDefaults: BatchSettlerSettings = { batchSizeMax: 100, batchWaitMsMax: 2_000 };

export type BatchSettlerDeps = {
  readonly settlement: SettlementDeps;
  /** The chain's batch sender; null: that chain's payments go to `single`. */
  readonly senderOf: (chain: X402Chain) => AuthorizationBatchSender | null;
  /** What a batch cannot carry goes here (settle.ts's single settler). */
  readonly single: X402Settler;
  readonly settings?: Partial<BatchSettlerSettings>;
  readonly logger?: Logger;
};

export type BatchSettler = X402Settler & {
  /** Sends every waiting queue now and waits for the batches in flight (shutdown, tests). */
  close(): Promise<void>;
};

// ---- helpers

const uint128Max = (1n << 128n) - 1n;
const uint48Max = (1n << 48n) - 1n;
const ecdsaSignatureHexChars = 132; // 0x + 65 bytes

/** Whether the authorization fits X402BatchSettler's packed item. */
export function fitsBatch(authorization: Eip3009Authorization, signature: Hex): boolean {
  return (
    authorization.value <= uint128Max &&
    authorization.validAfter <= uint48Max &&
    authorization.validBefore <= uint48Max &&
    signature.length === ecdsaSignatureHexChars
  );
}

/** `total` in `count` shares: each the total divided by the count, rounded down; the remainder to the first. */
export function splitEvenlyRemainderToFirst(total: bigint, count: number): bigint[] {
  if (count <= 0) throw new RangeError("splitEvenlyRemainderToFirst: no shares");
  const share = divFloor(total, BigInt(count));
  const shares = Array.from({ length: count }, () => share);
  shares[0] = share + (total - share * BigInt(count));
  return shares;
}

/** How each refused item reads in x402's terms. */
const itemRefusal: Record<BatchItemRefusal, X402Refusal> = {
  signature_invalid: "invalid_exact_evm_payload_signature",
  authorization_expired: "invalid_exact_evm_payload_authorization_valid_before",
  authorization_used: "invalid_exact_evm_nonce_already_used",
  payer_insufficient_funds: "insufficient_funds",
  // the nonce is bound to another invoice: another payment took this authorization
  authorization_mismatch: "invalid_exact_evm_nonce_already_used",
  rejected: "invalid_transaction_state",
};

/**
 * How a failure recorded for a sent authorization (x402_authorizations.failure) reads in x402's terms, as its settler
 * answered it: a batch item's refusal (concludeItem's, whoever concluded it), a transaction that reverted (settle.ts,
 * a batch reverted whole) or was mined without spending it. For a retried settle (facilitator.ts priorSettlement),
 * which was answered "nonce already used" whatever the first answer said. Null for a failure no settler answered
 * (`dropped`: never mined, its caller heard it pending) or not known here.
 */
export function refusalOfFailure(failure: string | null): X402Refusal | null {
  if (failure === null) return null;
  if (Object.hasOwn(itemRefusal, failure)) return itemRefusal[failure as BatchItemRefusal];
  return failure === "reverted" || failure === "not_spent" ? "invalid_transaction_state" : null;
}

/**
 * The refusals under which the payer's nonce may have been spent by the batch's block: the token said so, or named no
 * reason, or found the window shut (which it checks before the nonce). A copy of the payer's signed transfer may then
 * have paid the hot wallet, and is looked for; without one, the value may still have left the payer's balance by that
 * block (spentBlock), or, refused for no reason named, the authorization may be unused and still open to whoever holds
 * it (spends.ts unspentByOurs). So may one refused for the payer's short balance: the token marks the nonce before it
 * moves the value, and the refusal undid the mark; once the payer's balance is back, whoever holds the authorization
 * may submit it until its validBefore (before, it was failed at once, and the seller credited when someone did while
 * the payer was refused). A bad signature can never be taken, and an item the batch did not carry was not sent.
 */
const nonceMaybeSpent: ReadonlySet<BatchItemRefusal> = new Set([
  "authorization_used",
  "rejected",
  "authorization_expired",
  "payer_insufficient_funds",
]);

/** What one item of a mined batch came to: settled (by ours, or by a copy someone mined first), failed, or unknown. */
export type ItemConclusion =
  | { readonly status: "settled"; readonly spentBlock: bigint; readonly spentTxHash?: Hex }
  | {
      readonly status: "failed";
      /** What is recorded (x402_authorizations.failure): the item's refusal, or the batch's whole revert. */
      readonly failure: BatchItemRefusal | "reverted";
      /** What its caller is answered, in x402's terms. */
      readonly refusal: X402Refusal;
      readonly spentBlock?: bigint;
    }
  /** Refused, and the node cannot say now whether a copy paid: left `submitted` to look at again, never failed. */
  | { readonly status: "unknown" }
  /**
   * Refused (or reverted whole) without its authorization spent, which may still be mined until its validBefore by
   * whoever holds it: left `submitted`, answered pending, never failed (spends.ts unspentByOurs).
   */
  | { readonly status: "open"; readonly unusedAt: bigint };

/**
 * One item of batch `ours` mined in its block, concluded from its outcome in the receipt — by the settler that sent
 * it, and by reconciliation for the items the settler left `submitted` (reconcile.ts, the outcome read by the rail as
 * the settler's was): one conclusion, one record and one answer for one fact on the chain. Before, reconciliation
 * recorded every item the batch refused `not_spent` (the settler, its refusal: `signature_invalid`, …), and looked for
 * copies of items no copy could have paid. `head`, the chain's head read once for all the items (spends.ts chainHead).
 */
export async function concludeItem(
  chain: X402Chain,
  authorization: Pick<Eip3009Authorization, "from" | "to" | "value" | "nonce"> & {
    readonly validBefore: bigint | null;
  },
  item: BatchItemOutcome,
  ours: { readonly txHash: Hex; readonly block: bigint; readonly unusedAt?: bigint | null },
  logger: Logger,
  head?: ChainHead,
): Promise<ItemConclusion> {
  if (item.status === "settled") return { status: "settled", spentBlock: ours.block };
  const { refusal } = item;
  if (!nonceMaybeSpent.has(refusal))
    return { status: "failed", failure: refusal, refusal: itemRefusal[refusal] };
  const missed = await unspentByOurs(chain, authorization, ours, logger, head);
  if (missed.status === "unknown") return { status: "unknown" };
  if (missed.status === "copy")
    return { status: "settled", spentBlock: missed.block, spentTxHash: missed.txHash };
  if (missed.status === "open") return missed;
  const spentBlock = missed.status === "spent" ? missed.block : ours.block;
  return { status: "failed", failure: refusal, refusal: itemRefusal[refusal], spentBlock };
}

const weiPerGwei = 1_000_000_000n;

type Waiting = {
  readonly payment: ClaimedPayment;
  readonly requirements: ExactRequirements;
  readonly invoiceId: string;
  readonly resolve: (result: SettleResult) => void;
};

type Queue = { readonly chain: X402Chain; items: Waiting[]; timer: NodeJS.Timeout | undefined };

const authorizationKey = (chain: X402Chain, a: Eip3009Authorization) =>
  `${chain.chainId}:${chain.token.toLowerCase()}:${a.from.toLowerCase()}:${a.nonce.toLowerCase()}`;

// ---- the settler

export function createBatchSettler(deps: BatchSettlerDeps): BatchSettler {
  const settings = { ...batchSettlerDefaults, ...deps.settings };
  if (
    !Number.isInteger(settings.batchSizeMax) ||
    settings.batchSizeMax < 1 ||
    settings.batchSizeMax > batchItemsMax
  )
    throw new RangeError(`batchSizeMax must be 1 to ${batchItemsMax} (got ${settings.batchSizeMax})`);
  if (!Number.isInteger(settings.batchWaitMsMax) || settings.batchWaitMsMax < 0)
    throw new RangeError(`batchWaitMsMax must be a whole number of ms ≥ 0 (got ${settings.batchWaitMsMax})`);
  const logger = deps.logger ?? silentLogger;
  const queues = new Map<string, Queue>();
  /** Authorizations waiting or in flight in this process. */
  const held = new Set<string>();
  const inFlight = new Set<Promise<void>>();

  const flush = (queue: Queue) => {
    if (queue.timer !== undefined) clearTimeout(queue.timer);
    queue.timer = undefined;
    const items = queue.items.splice(0, settings.batchSizeMax);
    if (queue.items.length > 0) arm(queue);
    if (items.length === 0) return;
    const sending = sendBatch(queue.chain, items).finally(() => inFlight.delete(sending));
    inFlight.add(sending);
  };
  const arm = (queue: Queue) => {
    queue.timer = setTimeout(() => flush(queue), settings.batchWaitMsMax);
    queue.timer.unref();
  };

  const sendBatch = async (chain: X402Chain, items: Waiting[]): Promise<void> => {
    const answer = (waiting: Waiting, result: SettleResult) => {
      held.delete(authorizationKey(chain, waiting.payment.authorization));
      waiting.resolve(result);
    };
    try {
      const outcome = await sendOnChain(deps, chain, items, logger);
      for (const [i, waiting] of items.entries()) answer(waiting, outcome[i]!);
    } catch (error) {
      // A bug or a chain out of reach mid-way: something may have been sent, so the claims stay (the watcher
      // credits what is mined, and reconciliation concludes them from the send their batch key names); each caller
      // hears that its payment's fate is unknown.
      logger.error({ error, rail: chain.rail, count: items.length }, "x402 batch settlement failed");
      for (const waiting of items)
        answer(waiting, {
          ok: false,
          refusal: "unexpected_settle_error",
          message: "the batch settlement failed; the payment is credited if its transaction is mined",
          payer: waiting.payment.payer,
          pending: true,
        });
    }
  };

  return {
    async settle(payment, requirements) {
      const { chain } = requirements;
      const a = payment.authorization;
      const sender = deps.senderOf(chain);
      if (sender === null || !fitsBatch(a, payment.signature))
        return deps.single.settle(payment, requirements);
      const key = authorizationKey(chain, a);
      if (held.has(key))
        return {
          ok: false,
          refusal: "invalid_exact_evm_nonce_already_used",
          message: "this authorization is already waiting to be settled",
          payer: payment.payer,
        };
      held.add(key);
      const invoiceId = await bookInvoice(deps.settlement, payment, requirements, Date.now, logger).catch(
        (error: unknown) => {
          held.delete(key);
          throw error;
        },
      );
      if (typeof invoiceId !== "string") {
        held.delete(key);
        return invoiceId;
      }
      return new Promise<SettleResult>((resolve) => {
        let queue = queues.get(chain.rail);
        if (queue === undefined) {
          queue = { chain, items: [], timer: undefined };
          queues.set(chain.rail, queue);
        }
        queue.items.push({ payment, requirements, invoiceId, resolve });
        if (queue.items.length >= settings.batchSizeMax) flush(queue);
        else if (queue.timer === undefined) arm(queue);
      });
    },
    async close() {
      for (const queue of queues.values()) while (queue.items.length > 0) flush(queue);
      while (inFlight.size > 0) await Promise.all([...inFlight]);
    },
  };
}

/** Sends the batch and turns its outcome into each payment's result, in order; books the gas once. */
async function sendOnChain(
  deps: BatchSettlerDeps,
  chain: X402Chain,
  items: readonly Waiting[],
  logger: Logger,
): Promise<SettleResult[]> {
  const sender = deps.senderOf(chain);
  if (sender === null) throw new RangeError(`no batch sender for rail ${chain.rail}`);
  const db = deps.settlement.db;
  const refused = (
    w: Waiting,
    refusal: X402Refusal,
    message: string,
    pending = false,
    inFlight?: Hex,
  ): SettleResult => ({
    ok: false,
    refusal,
    message,
    ...(pending ? { pending: true as const } : {}),
    ...(inFlight === undefined ? {} : { inFlight }),
    payer: w.payment.payer,
  });
  /** Nothing was sent: the claims (of `of`) are given back, and the same authorizations may come again. */
  const notSent = async (message: string, of: readonly Waiting[] = items) => {
    for (const w of of)
      await afterSent(logger, "giving the claim back", { invoiceId: w.invoiceId }, () =>
        release(db, chain, w.payment.authorization, { invoiceId: w.invoiceId }),
      );
    return of.map((w) => refused(w, "unexpected_settle_error", `the batch was not sent: ${message}`));
  };
  // Each invoice is in one batch only, so its first invoice names the batch (a retry sends nothing new).
  const key = `${chain.rail}:${items[0]!.invoiceId}`;
  // Named on its rows before it is sent: a process that dies once the rail has sent it leaves rows reconciliation can
  // find its transaction from (the header's "A settler that dies"). Every row, or it is not sent: reconciliation
  // adopts the rows carrying the key, and splits the gas over them, so a row left unnamed (its claim no longer as
  // this caller left it) would have the batch adopted in part and its gas split over fewer payments than it carried.
  let named: string[];
  try {
    named = await sendingInBatch(
      db,
      chain,
      key,
      items.map((w) => ({ authorization: w.payment.authorization, invoiceId: w.invoiceId })),
    );
  } catch (error) {
    logger.error(
      { error, rail: chain.rail, key },
      "x402 batch settlement: naming the batch on its claims failed",
    );
    return notSent("the gateway could not record it");
  }
  if (named.length !== items.length) {
    // A claim not named is not its caller's now (given back, concluded, or bound to another payment's invoice, as a
    // settle by a caller that did not claim it binds it): its caller hears so, as the rail's binding would have
    // answered it. The others' claims are given back, for their payments to come again.
    logger.error(
      { rail: chain.rail, key, named: named.length, count: items.length },
      "x402 batch settlement: some claims of the batch were no longer this settler's; nothing sent",
    );
    const held = items.filter((w) => named.includes(w.invoiceId));
    const givenBack = await notSent("the claim of another of its payments was no longer held", held);
    return items.map((w) => {
      const i = held.indexOf(w);
      if (i >= 0) return givenBack[i]!;
      return refused(
        w,
        "invalid_exact_evm_nonce_already_used",
        "the authorization's claim is not this payment's",
      );
    });
  }
  const outcome = await sender({
    key,
    items: items.map((w) => ({
      reference: w.invoiceId,
      authorization: { ...w.payment.authorization, signature: w.payment.signature },
    })),
  });
  if (outcome.status === "failed") {
    // Nothing was sent (the rail gave each nonce back to no invoice).
    if (outcome.txHash === null) return notSent(outcome.message);
    // A revert costs its gas as a success does: booked the same way, over the payments it carried, before the rows
    // are concluded (a gas not booked, or not known, leaves them `submitted` for reconciliation, which reads it from
    // the receipt).
    const { txHash, gasWei } = outcome;
    const gasBooked =
      gasWei !== null &&
      (await afterSent(logger, "booking the reverted batch's gas", { txHash }, () =>
        bookBatchGas(
          deps.settlement,
          chain,
          { txHash, gasWei },
          items.map((w) => w.invoiceId),
          logger,
        ),
      ));
    // Reverted whole, it spent none of them: each authorization is concluded as the single settler concludes its own
    // revert (spends.ts unspentByOurs), left open to whoever holds it until its validBefore unless a copy paid, its
    // nonce was used otherwise or its window shut. Searched all at once, from the latest block (the outcome names
    // none): every caller of the batch waits for the last. The chain's head read once for all (each reads it again
    // should this read fail, and answers unknown if that fails too).
    const head = await chainHead(chain).catch(() => undefined);
    const conclusions = await Promise.all(
      items.map(async (w): Promise<ItemConclusion> => {
        const missed = await unspentByOurs(
          chain,
          w.payment.authorization,
          { txHash, block: null },
          logger,
          head,
        );
        if (missed.status === "copy")
          return { status: "settled", spentBlock: missed.block, spentTxHash: missed.txHash };
        if (missed.status === "unknown" || missed.status === "open") return missed;
        return {
          status: "failed",
          failure: "reverted",
          refusal: "invalid_transaction_state",
          ...(missed.status === "spent" ? { spentBlock: missed.block } : {}),
        };
      }),
    );
    return await answerEach(txHash, gasBooked, conclusions, true);
  }
  if (outcome.status === "none_sent") {
    // Each nonce is another invoice's: another payment took these authorizations (their claims are its own).
    return items.map((w, i) => {
      const item = outcome.items[i];
      const refusal = item?.status === "refused" ? item.refusal : "authorization_mismatch";
      return refused(w, itemRefusal[refusal], `the authorization was not sent: ${refusal}`);
    });
  }
  if (outcome.status === "in_flight") {
    for (const w of items)
      await afterSent(
        logger,
        "recording the submission",
        { txHash: outcome.txHash, invoiceId: w.invoiceId },
        () => record(db, chain, w.payment.authorization, { status: "submitted", txHash: outcome.txHash }),
      );
    return items.map((w) =>
      refused(
        w,
        "unexpected_settle_error",
        `transaction ${outcome.txHash} was not mined in time; the invoice is credited if it is`,
        true,
        outcome.txHash,
      ),
    );
  }
  if (outcome.items.length !== items.length)
    throw new RangeError(`a batch of ${items.length} came back with ${outcome.items.length} outcomes`);
  // Mined: each item's outcome is the receipt's; the ledger's and the database's faults from here on are logged
  // and retried (afterSent), never the payer's answer.
  const gasBooked = await afterSent(logger, "booking the batch's gas", { txHash: outcome.txHash }, () =>
    bookBatchGas(
      deps.settlement,
      chain,
      { txHash: outcome.txHash, gasWei: outcome.gasWei },
      items.map((w) => w.invoiceId),
      logger,
    ),
  );
  // Each item concluded as reconciliation concludes one (concludeItem): one refused as spent — or for a reason the token
  // did not name, or its window shut — perhaps by a copy of the payer's signed transfer (someone who saw it submitted it
  // first), as the single settler looks for one whatever made its transaction revert. Searched all at once, the
  // chain's head read once for them (not at all when every item settled): every caller of the batch waits for the last.
  const ours = { txHash: outcome.txHash, block: outcome.blockNumber };
  const head = outcome.items.every((item) => item.status === "settled")
    ? undefined
    : await chainHead(chain).catch(() => undefined);
  const conclusions = await Promise.all(
    items.map((w, i) => concludeItem(chain, w.payment.authorization, outcome.items[i]!, ours, logger, head)),
  );
  return await answerEach(outcome.txHash, gasBooked, conclusions, false);

  /**
   * Records each item's conclusion, `submitted` with the batch while its gas is not booked; their answers. `whole`:
   * the batch reverted whole, else the token refused the items not settled in it.
   */
  async function answerEach(
    txHash: Hex,
    gasBooked: boolean,
    conclusions: readonly ItemConclusion[],
    whole: boolean,
  ): Promise<SettleResult[]> {
    /** The item's outcome; `submitted` with the batch while its gas is not booked, for reconciliation to conclude. */
    const concluded = (w: Waiting, what: string, change: Parameters<typeof record>[3]) =>
      afterSent(logger, what, { txHash, invoiceId: w.invoiceId }, () =>
        record(db, chain, w.payment.authorization, gasBooked ? change : { status: "submitted", txHash }),
      );
    const befell = whole
      ? `transaction ${txHash} reverted`
      : `the token refused the authorization in batch ${txHash}`;
    const results: SettleResult[] = [];
    for (const [i, w] of items.entries()) {
      const conclusion = conclusions[i]!;
      const a = w.payment.authorization;
      const context = { txHash, invoiceId: w.invoiceId };
      if (conclusion.status === "settled") {
        // By ours, or by a copy: the copy's value came to the hot wallet all the same, and the invoice is credited from
        // it.
        const { spentBlock, spentTxHash } = conclusion;
        await concluded(
          w,
          spentTxHash === undefined ? "recording the settlement" : "recording the settlement by a copy",
          { status: "settled", txHash, spentBlock, ...(spentTxHash === undefined ? {} : { spentTxHash }) },
        );
        results.push({
          ok: true,
          transaction: spentTxHash ?? txHash,
          payer: w.payment.payer,
          network: w.requirements.network,
          amount: a.value,
          invoiceId: w.invoiceId,
        });
      } else if (conclusion.status === "unknown" || conclusion.status === "open") {
        // Refused (as spent, or for no reason named) or reverted, and the node cannot say now whether a copy paid, or
        // its authorization may still be mined by whoever holds it: left `submitted` for reconciliation to look again,
        // never taken for a failure (the payer may have paid, or yet pay), and answered pending.
        await afterSent(logger, "recording the refusal to look at again", context, () =>
          record(db, chain, a, {
            status: "submitted",
            txHash,
            ...(conclusion.status === "open" ? { unusedBlock: conclusion.unusedAt } : {}),
          }),
        );
        results.push(
          refused(
            w,
            "unexpected_settle_error",
            conclusion.status === "open"
              ? `${befell} without spending it, which may still be mined until its validBefore; it is credited if it is`
              : `${befell}, and whether a copy of it paid could not be read now`,
            true,
          ),
        );
      } else {
        const { failure, spentBlock } = conclusion;
        await concluded(w, "recording the refusal", {
          status: "failed",
          txHash,
          failure,
          ...(spentBlock === undefined ? {} : { spentBlock }),
        });
        results.push(refused(w, conclusion.refusal, whole ? befell : `${befell}: ${failure}`));
      }
    }
    return results;
  }
}

/**
 * The batch's gas, booked once: its total in gwei (rounded up) split across the payments it carried (their invoices)
 * by splitEvenlyRemainderToFirst, one ledger transfer per payment (ids derived from the transaction and the invoice,
 * so booking again changes nothing). The shares go by invoice id, the remainder to the smallest, whatever order the
 * invoices are named in: the settler knows the batch's order, reconcile.ts (which books a batch it concludes through
 * this) only the set, and both must book the same amount under each id. With the remainder on the batch's first, a
 * reconciler finishing a booking the settler left half done, naming the invoices in another order, booked the rest by
 * another split (an id already booked with another amount is skipped): the gas booked missed or doubled the remainder.
 */
export async function bookBatchGas(
  settlement: SettlementDeps,
  chain: X402Chain,
  tx: { readonly txHash: Hex; readonly gasWei: bigint },
  invoiceIds: readonly string[],
  logger: Logger,
): Promise<void> {
  const totalGwei = divCeil(tx.gasWei, weiPerGwei);
  if (totalGwei === 0n) return;
  const ordered = [...invoiceIds].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const shares = splitEvenlyRemainderToFirst(totalGwei, ordered.length);
  await bookGasEntries(
    settlement,
    chain,
    logger,
    ordered.map((invoiceId, i) => ({
      amount: shares[i]!,
      id: derivedLedgerId(`${chain.chainId}:${tx.txHash.toLowerCase()}:${invoiceId}`, "x402-batch-gas"),
      reference: tx.txHash,
      detail: {
        kind: "x402_batch_gas",
        wei: tx.gasWei.toString(),
        payments: ordered.length.toString(),
        invoice: invoiceId,
      },
      label: `payment ${i + 1} of ${ordered.length}'s share of the gas of x402 batch ${tx.txHash}`,
    })),
  );
}
