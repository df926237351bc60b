// Refunds: money given back to whoever paid. Against an invoice that was paid, on the rail it came in by (Stripe
// refunds its PaymentIntent; Lightning pays an invoice the payer supplies; EVM pays an address that paid — the first,
// or the one `destination` names — at most what it paid, its gas booked as the rail's fee), or
// against an internal payment that succeeded (moved back between the two accounts). A payout on a rail that cannot
// pull money back (on-chain, Lightning) is refused `refund_unsupported`.
//
// One refund's life, each step keyed by ids derived from the refund's, so a repeat changes nothing:
//   1. checks that write nothing: the target, what is left of it, the rail's limits, the destination;
//   2. in one transaction: the ledger's holds for the amount, linked (all or none) — of an invoice whose receipts
//      were split among payees, one on each payee's account for its part (settlement/split-reversal.ts
//      takeBackShares: its proportion of all the invoice's refunds so far, less what they took from it before,
//      floored; the refund that empties the invoice takes all that is left of it; as Stripe's reverse_transfer) and
//      one on the tenant's account for the rest, otherwise one on the tenant's account for all of it; of a Lightning
//      refund, one more on the tenant's account for the most its route may cost (routingFeeHold); the refund row
//      `pending`, its claim on what is left of the target (one upsert of the
//      target's `refundable` row: two refunds racing for the last of it cannot both pass) and `refund.created` —
//      refused `insufficient_funds` (the tenant's account, or a payee's, short of its part) or
//      `refund_exceeds_remaining` (or its Idempotency-Key another refund's: that one is the answer), none of it is
//      written. What is left is read with its row's version, then (of an invoice) its reversals that stand — a
//      refund made at the provider outside the API (Stripe's dashboard) counts as refunded, and a receipt reversed by
//      name (a deposit a reorg removed) as never paid; any other (a dispute) refuses
//      `invoice_not_paid` — and then the payees' credits; the claim passes only if the
//      row is still that version, so they are of one state, as if read under the claim's lock. Another refund of the
//      target claimed or given back in between, or a reversal of the invoice's money written (its legs touch the row
//      with a split, and its record always does: settlement/invoices.ts applyReversed): nothing is written and the
//      refund is computed again from new reads (holdAndClaim, refundClaimAttemptsMax), so a reversal recorded before
//      the claim is never refunded on top;
//   3. the rail: a provider refund, a payout, or nothing (internal);
//   4. succeeded → every hold posted (the rail's fee booked from its fee account; a routing fee charged from its
//      hold, at most all of it), `refund.succeeded`; failed →
//      every hold voided, the claim given back, `refund.failed`; in flight → the rail's event ends it later
//      (applyRefundEvent, called by the settlement before anything else looks at the event).
// The ledger's post or void and the status change with its event are one transaction (writeChainWith's statement).
import { isAddress } from "viem";
import { bolt11ErrorText, parseBolt11 } from "../../core/bolt11.ts";
import {
  type Asset,
  type AttemptOutcome,
  assetByCode,
  divFloor,
  type FeePaid,
  formatAmount,
  parseAmount,
  type RailEvent,
  type SettlementEvidence,
  SwitchyardError,
  storableText,
} from "../../core/index.ts";
import type { AccountRecord } from "../accounts/index.ts";
import type { Row, Statement } from "../db/index.ts";
import { derivedLedgerId, newId } from "../ids/index.ts";
import {
  type ChainMember,
  findReservation,
  type Posting,
  type Reservation,
  type TransferEvidence,
  transferCodes,
  writeChainWith,
} from "../ledger/index.ts";
import {
  collectShortfalls,
  type GivenBack,
  isShortfallCollectionMoved,
  outstandingShortfalls,
  type ShortfallCollection,
  shortfallCollectionAttemptsMax,
} from "../settlement/shortfalls.ts";
import {
  mergedSplit,
  type PayeeShare,
  refundShareLedgerId,
  type SplitShareSpec,
  splitPayees,
  takeBackShares,
  takenBackBefore,
} from "../settlement/split-reversal.ts";
import type { PaymentsDeps } from "./deps.ts";
import {
  claimableOf,
  claimStatement,
  failedStatement,
  getRefundById,
  getRefundByKey,
  invoiceReceived,
  isInvoiceMoved,
  isRefundExceeding,
  isRefundKeyTaken,
  listPendingRefunds,
  markInFlight,
  pauseAfterMovedVersion,
  type RefundRow,
  refundFromRow,
  refundsOfInvoice,
  standingReversals,
  succeededStatement,
  touchPendingRefunds,
} from "./refunds-store.ts";
import {
  providerRefundKeyPrefix,
  type Refund,
  type RefundDestination,
  type RefundFailureCode,
  type RefundMode,
  type RefundReason,
  type RefundRefusal,
  type RefundTarget,
  referenceOf,
  refundCanMove,
} from "./refunds-types.ts";
import { capitalFundingLeg, evidenceForLedger, railAccountOpened } from "./reservations.ts";
import { fromJson, getPayment } from "./store.ts";
import { attemptDestination, networkFeeOf } from "./types.ts";

/** What refunds need of the payments' dependencies: the stores, the ledger and the rails, and who hears of a payment. */
export type RefundsDeps = Pick<
  PaymentsDeps,
  "db" | "ledger" | "accounts" | "rails" | "logger" | "onInvoicePaid"
>;

export type CreateRefundParams = {
  tenantId: string;
  target: RefundTarget;
  /** A decimal in the asset's major unit; null: all that is left. */
  amount: string | null;
  reason: RefundReason | null;
  metadata: Record<string, string>;
  destination: RefundDestination | null;
  /** The caller's Idempotency-Key: a refund written under it is answered again, never made twice. */
  idempotencyKey: string | null;
  /**
   * The digest of the request (method, URL, body) the key came with, kept on the refund: a later request under the
   * key with another is refused idempotency_key_reused, also once the key's record is gone (24 hours).
   */
  requestSha256?: Buffer | null;
};

export type CreateRefundResult =
  | { ok: true; refund: Refund }
  | { ok: false; refusal: RefundRefusal; message: string; param?: string };

type Refused = Extract<CreateRefundResult, { ok: false }>;

const refuse = (refusal: RefundRefusal, message: string, param?: string): Refused =>
  param === undefined ? { ok: false, refusal, message } : { ok: false, refusal, message, param };

/** A bug or broken data around a refund (a hold the ledger refused for no shortfall, a row missing). */
export class RefundInvariantError extends SwitchyardError {
  override name = "RefundInvariantError";
}

/**
 * A provider's answer about a refund of an invoice arrived while a refund of that invoice was still waiting for the
 * provider's reply to its request: it cannot be told whose it is yet. Thrown so that the rail delivers it again.
 */
export class RefundNotYetKnownError extends SwitchyardError {
  override name = "RefundNotYetKnownError";
}

/**
 * The most a Lightning refund may spend on routing, in parts per million of its amount, and at least this much: the
 * node's cap, and what is held on the tenant's account for it (routingFeeHold).
 */
export const lightningRefundFeePpmMax = 10_000n;
export const lightningRefundFeeMsatMin = 10_000n;

/** The most a Lightning refund of `amount` msat may spend on routing. */
function lightningFeeMax(amount: bigint): bigint {
  const fromPpm = divFloor(amount * lightningRefundFeePpmMax, 1_000_000n);
  return fromPpm > lightningRefundFeeMsatMin ? fromPpm : lightningRefundFeeMsatMin;
}

/** What a refund is taken from and given to, and how its rail moves it. */
type Source = {
  targetId: string;
  asset: Asset;
  /** All that came in or was paid, in the asset. */
  paid: bigint;
  /** The tenant's account the money leaves, and where it goes in the ledger (the rail's clearing, or the payer). */
  account: AccountRecord;
  counter: AccountRecord;
  rail: string;
  mode: RefundMode;
  /** The payees of an invoice's split (what each part of a refund is computed from is read when it is claimed). */
  split: SplitShareSpec | null;
};

// ---- checks (write nothing)

async function invoiceSource(
  deps: RefundsDeps,
  params: { tenantId: string; invoiceId: string; destination: RefundDestination | null },
): Promise<Source | Refused> {
  const [invoice] = await deps.db.query<{
    account_id: string;
    asset: string;
    rail: string;
    received_amount: bigint | null;
    rail_reference: string | null;
    payer: string | null;
    split: unknown;
  }>(
    `SELECT account_id, asset, rail, received_amount, rail_reference, payer, split FROM invoices
     WHERE id = $1 AND tenant_id = $2`,
    [params.invoiceId, params.tenantId],
  );
  if (invoice === undefined)
    return refuse("invoice_not_found", `no invoice "${params.invoiceId}"`, "invoice");
  // What came in is refundable, also of an invoice still open because it was paid in part.
  if (invoice.received_amount === null || invoice.received_amount <= 0n)
    return refuse("invoice_not_paid", `nothing has been paid for invoice ${params.invoiceId}`, "invoice");
  // A payment taken back is refused in holdAndClaim, after the version its claim is checked against is read.
  const asset = assetByCode(invoice.asset);
  const rail = deps.rails.get(invoice.rail);
  if (asset === null || rail === undefined)
    return refuse("rail_unavailable", `the rail ${invoice.rail} is not configured here`, "invoice");
  let mode: RefundMode;
  if (rail.refundReceived !== undefined && invoice.rail_reference !== null) {
    if (params.destination !== null)
      return refuse(
        "parameter_invalid",
        `a refund on ${rail.id} goes back the way it was paid: leave out destination`,
        "destination",
      );
    mode = { kind: "provider", rail, reference: params.invoiceId, railReference: invoice.rail_reference };
  } else if (rail.kind === "lightning") {
    if (params.destination === null)
      return refuse(
        "parameter_missing",
        "a Lightning refund is paid to an invoice the payer gives: destination {type: bolt11, invoice}",
        "destination",
      );
    if (params.destination.kind !== "bolt11")
      return refuse("parameter_invalid", "a Lightning refund pays a bolt11 invoice", "destination.type");
    mode = { kind: "payout", rail, destination: params.destination };
  } else if (rail.kind === "evm") {
    if (params.destination !== null && params.destination.kind !== "evm_address")
      return refuse(
        "parameter_invalid",
        "a USDC refund goes back to an address that paid the invoice: destination {type: evm_address, address}, or none for the first",
        "destination.type",
      );
    const payer = await refundedPayer(deps, {
      invoiceId: params.invoiceId,
      firstPayer: invoice.payer,
      asked: params.destination?.address ?? null,
    });
    if (typeof payer !== "string") return payer;
    const chainId = rail.snapshot().chainId;
    mode = {
      kind: "payout",
      rail,
      destination: { kind: "evm_address", address: payer, ...(chainId === undefined ? {} : { chainId }) },
    };
  } else {
    return refuse("refund_unsupported", `invoices paid on ${rail.id} cannot be refunded`, "invoice");
  }
  const accounts = await ledgerAccounts(deps, {
    tenantId: params.tenantId,
    accountId: invoice.account_id,
    rail: rail.id,
    asset,
  });
  return {
    targetId: params.invoiceId,
    asset,
    paid: invoice.received_amount,
    ...accounts,
    rail: rail.id,
    mode,
    split: invoice.split === null ? null : mergedSplit(fromJson<SplitShareSpec>(invoice.split)),
  };
}

async function ledgerAccounts(
  deps: RefundsDeps,
  params: { tenantId: string; accountId: string; rail: string; asset: Asset },
): Promise<{ account: AccountRecord; counter: AccountRecord }> {
  const account = await deps.accounts.tenantAccount({ tenantId: params.tenantId, id: params.accountId });
  if (account === null)
    throw new RefundInvariantError(`the account ${params.accountId} of a refund's invoice is missing`);
  const counter = await railAccountOpened(deps, { kind: "clearing", rail: params.rail, asset: params.asset });
  return { account, counter };
}

async function paymentSource(
  deps: RefundsDeps,
  params: { tenantId: string; paymentId: string; destination: RefundDestination | null },
): Promise<Source | Refused> {
  const payment = await getPayment(deps.db, { tenantId: params.tenantId, id: params.paymentId });
  if (payment === null) return refuse("payment_not_found", `no payment "${params.paymentId}"`, "payment");
  if (payment.status !== "succeeded")
    return refuse(
      "payment_not_succeeded",
      `payment ${params.paymentId} is ${payment.status}; only a payment that succeeded is refunded`,
      "payment",
    );
  const attempt = payment.attempts.find((a) => a.status === "succeeded");
  const paidTo = attempt === undefined ? null : attemptDestination(payment, attempt.seq);
  const internal = attempt !== undefined && deps.rails.get(attempt.rail)?.kind === "internal";
  if (attempt === undefined || !internal || paidTo?.kind !== "account")
    return refuse(
      "refund_unsupported",
      `payment ${params.paymentId} was paid out on ${attempt?.rail ?? "a rail"}, which cannot pull money back; ` +
        "only a payment between two accounts is refunded",
      "payment",
    );
  if (params.destination !== null)
    return refuse(
      "parameter_invalid",
      "a refund of an internal payment goes back to its source account: leave out destination",
      "destination",
    );
  const asset = assetByCode(payment.assetCode);
  const account = await deps.accounts.tenantAccount({ tenantId: params.tenantId, id: paidTo.accountId });
  const counter = await deps.accounts.tenantAccount({
    tenantId: params.tenantId,
    id: payment.sourceAccountId,
  });
  if (asset === null || account === null || counter === null)
    throw new RefundInvariantError(`payment ${params.paymentId} has no asset or accounts to refund between`);
  return {
    targetId: params.paymentId,
    asset,
    paid: payment.amount,
    account,
    counter,
    rail: attempt.rail,
    mode: { kind: "ledger" },
    split: null,
  };
}

/**
 * The address a USDC refund of an invoice pays: the one asked, if it paid the invoice (the first payer, or the payer
 * of any receipt, in any case of its letters), written as the chain reported it; absent, the first payer. Money is
 * only ever given back to an address it came from.
 */
async function refundedPayer(
  deps: RefundsDeps,
  params: { invoiceId: string; firstPayer: string | null; asked: `0x${string}` | null },
): Promise<`0x${string}` | Refused> {
  const first =
    params.firstPayer !== null && isAddress(params.firstPayer, { strict: false }) ? params.firstPayer : null;
  if (params.asked === null || (first !== null && first.toLowerCase() === params.asked.toLowerCase())) {
    if (first === null)
      return refuse(
        "refund_unsupported",
        `the address that paid invoice ${params.invoiceId} is not known, so it cannot be paid back`,
        "invoice",
      );
    return first as `0x${string}`;
  }
  const [receipt] = await deps.db.query<{ payer: string }>(
    "SELECT payer FROM invoice_receipts WHERE invoice_id = $1 AND lower(payer) = lower($2) LIMIT 1",
    [params.invoiceId, params.asked],
  );
  if (receipt === undefined || !isAddress(receipt.payer, { strict: false }))
    return refuse(
      "parameter_invalid",
      `${params.asked} did not pay invoice ${params.invoiceId}: a USDC refund goes back only to an address that paid it`,
      "destination.address",
    );
  return receipt.payer as `0x${string}`;
}

/**
 * What is left to give back to the address a USDC refund pays: what it paid, less what was refunded to it (refunds
 * not failed whose destination is that address) and its receipts a reorg took back (the reversals that stand and name
 * them: that money never reached us). Receipts from other addresses are theirs: a sender of dust first,
 * then the customer's whole payment, must not make a refund of "all that is left" pay the customer's money to that
 * sender; nor a sender whose deposit was reorganised away get the money of the one that paid since. A receipt with no
 * row, or no payer, is counted as the first payer's (invoice.payer). Read after the
 * claim's version (holdAndClaim), so a refund claimed meanwhile, to any payer, makes the claim compute again.
 * Null for other refunds.
 */
async function payerLeftOf(
  deps: RefundsDeps,
  source: Source,
): Promise<{ payer: string; left: bigint } | null> {
  if (source.mode.kind !== "payout" || source.mode.destination.kind !== "evm_address") return null;
  const payer = source.mode.destination.address;
  const [row] = await deps.db.query<{ payer_left: bigint | null }>(
    `SELECT (CASE WHEN lower(i.payer) = lower($2)
              THEN i.received_amount - COALESCE((SELECT sum(r.amount) FROM invoice_receipts r
                     WHERE r.invoice_id = i.id AND r.payer IS NOT NULL AND lower(r.payer) <> lower($2)), 0)
              ELSE COALESCE((SELECT sum(r.amount) FROM invoice_receipts r
                     WHERE r.invoice_id = i.id AND lower(r.payer) = lower($2)), 0) END
          - COALESCE((SELECT sum(f.amount) FROM refunds f
              WHERE f.invoice_id = i.id AND f.status <> 'failed' AND lower(f.destination->>'address') = lower($2)), 0)
          - COALESCE((SELECT sum(v.amount + COALESCE((SELECT sum(s.amount) FROM reversal_shortfalls s
                                                      WHERE s.invoice_id = v.invoice_id AND s.reversal_key = v.key), 0))
              FROM invoice_reversals v
                LEFT JOIN invoice_receipts r ON r.invoice_id = v.invoice_id AND r.key = v.receipt
              WHERE v.invoice_id = i.id AND v.reinstated_at IS NULL AND v.receipt IS NOT NULL
                AND lower(COALESCE(r.payer, i.payer)) = lower($2)), 0)
          )::bigint AS payer_left
       FROM invoices i WHERE i.id = $1`,
    [source.targetId, payer],
  );
  return { payer, left: row?.payer_left ?? 0n };
}

/** An amount as the API writes it, in a refusal's text: "1.500000 USDC", not minor units. */
const inAsset = (amount: bigint, asset: Asset): string => `${formatAmount(amount, asset)} ${asset.code}`;

/** A refusal of an amount above what the paying address may get back, said as such. */
function payerCapped(
  amount: bigint | Refused,
  source: Source,
  payerLeft: { payer: string; left: bigint },
): bigint | Refused {
  if (typeof amount === "bigint" || amount.refusal !== "refund_exceeds_remaining") return amount;
  return refuse(
    "refund_exceeds_remaining",
    payerLeft.left <= 0n
      ? `what ${payerLeft.payer} paid of ${source.targetId} is refunded in full, or was taken back by a reorg; a USDC refund gives each address back at most what it paid (name another in destination)`
      : `the refund is above what ${payerLeft.payer} paid of ${source.targetId} and was not refunded (${inAsset(payerLeft.left, source.asset)}); a USDC refund gives each address back at most what it paid`,
    "amount",
  );
}

/**
 * The refund's amount: the one asked, or all that is left (a Lightning invoice that names one: that one); `left`:
 * what is left to refund of the target.
 */
function amountOf(source: Source, params: CreateRefundParams, left: bigint): bigint | Refused {
  let named: bigint | null = null;
  if (source.mode.kind === "payout" && source.mode.destination.kind === "bolt11") {
    const invoice = parseBolt11(source.mode.destination.invoice);
    if (!invoice.ok)
      return refuse(
        "parameter_invalid",
        `destination.invoice ${bolt11ErrorText[invoice.error]}`,
        "destination.invoice",
      );
    named = invoice.value.amountMsat;
    // An invoice of zero (`lnbc0…`) taken as the amount broke the refunds table's check: a 500.
    if (named === 0n)
      return refuse(
        "parameter_invalid",
        "destination.invoice asks for 0 msat; a refund moves more than nothing",
        "destination.invoice",
      );
  }
  let amount: bigint;
  if (params.amount === null) amount = named ?? left;
  else {
    const parsed = parseAmount(params.amount, source.asset);
    if (!parsed.ok)
      return refuse(
        parsed.error,
        `amount "${params.amount}" is not a valid ${source.asset.code} amount`,
        "amount",
      );
    amount = parsed.value;
  }
  if (amount > left || left <= 0n)
    return refuse(
      "refund_exceeds_remaining",
      left <= 0n
        ? `${source.targetId} is refunded in full`
        : `the refund is above what is left to refund of ${source.targetId} (${inAsset(left, source.asset)})`,
      "amount",
    );
  if (named !== null && named !== amount)
    return refuse(
      "parameter_invalid",
      `destination.invoice asks ${inAsset(named, source.asset)}; the refund is ${inAsset(amount, source.asset)}`,
      "destination.invoice",
    );
  if (source.mode.kind !== "ledger") {
    const snapshot = source.mode.rail.snapshot();
    if (amount > snapshot.amountMax)
      return refuse(
        "amount_too_large",
        `${source.rail} moves at most ${inAsset(snapshot.amountMax, source.mode.rail.asset)} at once`,
        "amount",
      );
  }
  return amount;
}

// ---- create

/**
 * The answer of the refund already written under the request's Idempotency-Key, or null (no key, or none written):
 * that refund, or — when another request made it (the digest each keeps, migration 0031) — idempotency_key_reused.
 */
async function refundUnderKey(
  deps: RefundsDeps,
  params: CreateRefundParams,
): Promise<CreateRefundResult | null> {
  if (params.idempotencyKey === null) return null;
  const earlier = await getRefundByKey(deps.db, { tenantId: params.tenantId, key: params.idempotencyKey });
  if (earlier === null) return null;
  const asked = params.requestSha256 ?? null;
  if (earlier.requestSha256 !== null && asked !== null && !earlier.requestSha256.equals(asked))
    return refuse(
      "idempotency_key_reused",
      "this Idempotency-Key was used with another request; use a new key for a new request",
    );
  return { ok: true, refund: earlier.refund };
}

/**
 * How many times a refund is computed and claimed again because another refund of its target was claimed or given
 * back between its reads and its claim (each time, that other refund moved on: this one is not starved by nothing).
 */
export const refundClaimAttemptsMax = 8;

/** Checks, holds, writes and asks the rail; answers the refund as its rail left it, or a refusal with nothing moved. */
export async function createRefund(
  deps: RefundsDeps,
  params: CreateRefundParams,
): Promise<CreateRefundResult> {
  const earlier = await refundUnderKey(deps, params);
  if (earlier !== null) return earlier;
  const result = await refundAnew(deps, params);
  if (result.ok || params.idempotencyKey === null || result.refusal === "idempotency_key_reused")
    return result;
  // Refused, nothing written — but a refund may have been written under the key since it was looked up: its request,
  // taken for dead past the in-progress timeout (this one its retry), finished meanwhile, leaving less to refund. That
  // refund is the answer, not a refusal of what the request would be now. Looked up only on a refusal.
  return (await refundUnderKey(deps, params)) ?? result;
}

/** createRefund once the key holds no refund. */
async function refundAnew(deps: RefundsDeps, params: CreateRefundParams): Promise<CreateRefundResult> {
  const source =
    params.target.kind === "invoice"
      ? await invoiceSource(deps, {
          tenantId: params.tenantId,
          invoiceId: params.target.invoiceId,
          destination: params.destination,
        })
      : await paymentSource(deps, {
          tenantId: params.tenantId,
          paymentId: params.target.paymentId,
          destination: params.destination,
        });
  if ("ok" in source) return source;
  for (let attempt = 1; attempt <= refundClaimAttemptsMax; attempt++) {
    const claimed = await holdAndClaim(deps, source, params);
    if (claimed.outcome === "moved") {
      // Another refund of the target won this round: a random pause spreads the next tries.
      await pauseAfterMovedVersion(attempt);
      continue;
    }
    if (claimed.outcome === "answered") return claimed.answer;
    await runRail(deps, claimed.refund, source.mode, "first");
    const after = await getRefundById(deps.db, claimed.refund.id);
    if (after === null) throw new RefundInvariantError(`refund ${claimed.refund.id} was not written`);
    return { ok: true, refund: after };
  }
  throw new RefundContendedError(
    `other refunds of ${source.targetId} moved what is left of it under this one ${refundClaimAttemptsMax} times; ` +
      "nothing of it was written",
  );
}

/** Other refunds of one target kept being claimed or given back while a refund was computed: nothing was written. */
export class RefundContendedError extends SwitchyardError {
  override name = "RefundContendedError";
}

/** One try at writing a refund: written (held and claimed), answered without writing, or to be computed again. */
type Claimed =
  | { outcome: "written"; refund: Refund }
  /** A refusal, or the refund its Idempotency-Key names. */
  | { outcome: "answered"; answer: CreateRefundResult }
  /**
   * Another refund of the target was claimed or given back, or a reversal of it written, since this one read what is
   * left: nothing written.
   */
  | { outcome: "moved" };

/**
 * Reads what is left of the target, then the reversals of an invoice's payment that stand (a refund made at the
 * provider outside the API is refunded, and a receipt a reorg removed is gone: less left, each counted before this
 * refund's parts; any other refuses `invoice_not_paid`: nothing written), then the
 * payees' credits, computes each payee's part and writes the holds
 * with the claim. The claim is the one place refunds of a target are serialised (its `refundable` row's lock), and,
 * of an invoice, it passes only if that row is still the version read first (readAt): no refund of the target was
 * claimed or given back since, nor a reversal of the invoice's money written, so what is left, the reversals and
 * every credit read after it (the holds of its refunds not failed, written in the claims' and give-backs'
 * transactions; the legs of its reversals, written with a touch of the row with a split; the record of every
 * reversal, written with a touch of the row: settlement/invoices.ts applyReversed) are of one state, as if read
 * under that lock. Otherwise nothing is written and the refund is computed again from new reads (`moved`). A
 * reversal recorded after the claim waits for its lock: the refund came first.
 */
async function holdAndClaim(deps: RefundsDeps, source: Source, params: CreateRefundParams): Promise<Claimed> {
  const read = await claimableOf(deps.db, source.targetId);
  // What an invoice received, read again after the version: a further receipt since the first read counts, and one
  // after this read refuses the claim (claimStatement), so what is left and the credits read below are of one state.
  const paid =
    params.target.kind === "invoice" ? await invoiceReceived(deps.db, source.targetId) : source.paid;
  // A refund made at the provider outside the API (Stripe's dashboard) reaches us as a reversal of the invoice's
  // money, taken from the tenant (and the payees) as any: it is refunded, and only the rest is left. Before, it was
  // taken for a dispute, and nothing of an invoice partly refunded from the dashboard was refundable again.
  const reversals =
    params.target.kind === "invoice"
      ? await standingReversals(deps.db, source.targetId)
      : { disputed: false, receipts: 0n };
  // A payment taken back (a dispute lost) is not refunded on top, as Stripe refuses to refund a disputed charge:
  // until every such reversal of it is withdrawn, nothing is refundable.
  if (reversals.disputed)
    return {
      outcome: "answered",
      answer: refuse(
        "invoice_not_paid",
        `invoice ${source.targetId}'s payment was reversed (a dispute): nothing of it is refundable unless the reversal is withdrawn`,
        "invoice",
      ),
    };
  if (paid - reversals.receipts <= 0n)
    return {
      outcome: "answered",
      answer: refuse(
        "invoice_not_paid",
        `what was paid for invoice ${source.targetId} was taken back (a reorganised deposit): nothing of it is refundable unless it is mined again`,
        "invoice",
      ),
    };
  // What was taken back of an invoice before this refund: its refunds not failed, the refunds made at the provider and
  // the receipts reversed by name (a deposit a reorg removed: gone, as if never paid, and taken back of the payees'
  // shares by its reversal already), counted by the one rule a reversal's parts are computed with too
  // (takenBackBefore), so that the two never count the same refunds and reversals two ways. Of a payment, its refunds.
  const takenBack =
    params.target.kind === "invoice"
      ? await takenBackBefore(deps.db, { id: source.targetId, tenantId: params.tenantId })
      : read.refunded;
  const left = paid - takenBack;
  const payerLeft = await payerLeftOf(deps, source);
  const amount =
    payerLeft !== null && payerLeft.left < left
      ? payerCapped(amountOf(source, params, payerLeft.left), source, payerLeft)
      : amountOf(source, params, left);
  if (typeof amount !== "bigint") return { outcome: "answered", answer: amount };
  const payees = await splitPayees(deps, {
    id: source.targetId,
    tenantId: params.tenantId,
    split: source.split,
  });
  const id = newId("rfd");
  const shares = takeBackShares(amount, paid, payees, takenBack);
  const fromPayees = shares.reduce((sum, share) => sum + share.amount, 0n);
  const hold = holdOf(id, source, amount - fromPayees);
  const feeHold = await routingFeeHold(deps, id, source, amount);
  const claim = claimStatement({
    id,
    tenantId: params.tenantId,
    target: params.target,
    accountId: source.account.id,
    assetCode: source.asset.code,
    amount,
    rail: source.rail,
    reason: params.reason,
    metadata: params.metadata,
    destination: source.mode.kind === "payout" ? source.mode.destination : null,
    holdTransferId: hold.pendingId,
    idempotencyKey: params.idempotencyKey,
    requestSha256: params.requestSha256 ?? null,
    paid,
    ...(params.target.kind === "invoice" ? { readAt: read.version } : {}),
  });
  // The hold, the row, its claim on what is left and its event: one transaction, all or nothing.
  let held: Awaited<ReturnType<typeof writeChainWith>>;
  try {
    held = await writeChainWith(
      deps.ledger,
      [
        { kind: "hold", posting: hold, transfer: holdTransfer(id, source) },
        ...shares.map((share) => payeeHold(id, source, share)),
        ...(feeHold === null ? [] : [feeHold]),
      ],
      { statement: claim, when: "held", sql: deps.db },
      `the hold of refund ${id}`,
    );
  } catch (error) {
    // Less is left than the amount now, or the row moved since it was read: the next try says which.
    if (isRefundExceeding(error)) return { outcome: "moved" };
    if (!isRefundKeyTaken(error) || params.idempotencyKey === null) throw error;
    const earlier = await refundUnderKey(deps, params);
    if (earlier === null)
      throw new RefundInvariantError(`refund ${id}'s key is taken by no refund`, { cause: error });
    return { outcome: "answered", answer: earlier };
  }
  if (held.outcome === "insufficient_funds") {
    const feeMax = feeHold?.posting.amount ?? 0n;
    const short = await shortAccount(deps, [
      {
        accountId: source.account.id,
        ledgerAccountId: source.account.ledgerAccountId,
        amount: hold.amount + feeMax,
      },
      ...shares,
    ]);
    return {
      outcome: "answered",
      answer: refuse(
        "insufficient_funds",
        short === source.account.id || short === null
          ? feeMax > 0n
            ? `account ${source.account.id} holds less than the refund and the most its routing may cost (${inAsset(feeMax, source.asset)}, charged to the account as the fee the route takes); nothing was refunded`
            : `account ${source.account.id} holds less than the refund; nothing was refunded`
          : `account ${short}, a payee of the invoice's split, holds less than its part of the refund; nothing was refunded`,
        "amount",
      ),
    };
  }
  if (held.outcome === "insufficient_liquidity")
    // The rail's clearing account holds less than the refund: the rail really holds that much less (paid out for
    // other payments, cross-asset ones included). A condition of the moment, as for a payment: refused, not a 500.
    return {
      outcome: "answered",
      answer: refuse(
        "insufficient_liquidity",
        `rail ${source.rail} does not hold enough to pay this refund now; nothing was refunded`,
      ),
    };
  const [row] = (held.rows ?? []) as RefundRow[];
  if (held.outcome !== "reserved" || row === undefined)
    throw new RefundInvariantError(`the ledger refused the hold of refund ${id}: ${held.outcome}`);
  return { outcome: "written", refund: refundFromRow(row) };
}

/** The hold's transfer: its id derived from the refund's, the target it is for, the refund's id as its evidence. */
function holdTransfer(id: string, source: Source) {
  return {
    id: derivedLedgerId(id, "refund-hold"),
    userData128: derivedLedgerId(source.targetId, "refund"),
    evidence: { rail: source.rail, reference: id, detail: { refund: id } },
    label: `the hold of refund ${id}`,
  };
}

/**
 * A payee's part of the refund held on its account, beside the tenant's hold: to the same account, under the same
 * code and target, its id derived from the refund's and the payee's.
 */
function payeeHold(id: string, source: Source, share: PayeeShare): ChainMember {
  return {
    kind: "hold",
    posting: {
      debitAccountId: share.ledgerAccountId,
      creditAccountId: source.counter.ledgerAccountId,
      amount: share.amount,
      ledger: source.asset.ledger,
      code: transferCodes.refunds.refund,
    },
    transfer: {
      id: refundShareLedgerId(id, share.accountId, "hold"),
      userData128: derivedLedgerId(source.targetId, "refund"),
      evidence: { rail: source.rail, reference: id, detail: { refund: id, payee: share.accountId } },
      label: `account ${share.accountId}'s part of the hold of refund ${id}`,
    },
  };
}

/** The first of the refund's accounts that holds less than its part now (null: none does, any more). */
async function shortAccount(
  deps: RefundsDeps,
  parts: readonly { accountId: string; ledgerAccountId: bigint; amount: bigint }[],
): Promise<string | null> {
  const found = await deps.ledger.lookupAccounts(parts.map((part) => part.ledgerAccountId));
  const available = new Map(
    found.map((account) => [
      account.id,
      account.creditsPosted - account.debitsPosted - account.debitsPending,
    ]),
  );
  return parts.find((part) => (available.get(part.ledgerAccountId) ?? 0n) < part.amount)?.accountId ?? null;
}

/** The refund's hold: from the tenant's account to where the money goes in the ledger, in the asset. */
function holdOf(id: string, source: Source, amount: bigint): Reservation {
  return {
    pendingId: derivedLedgerId(id, "refund-hold"),
    debitAccountId: source.account.ledgerAccountId,
    creditAccountId: source.counter.ledgerAccountId,
    amount,
    ledger: source.asset.ledger,
    code: transferCodes.refunds.refund,
  };
}

/** The hold on the tenant for a Lightning refund's routing fee, beside the refund's hold. */
const refundFeeHoldId = (refundId: string): bigint => derivedLedgerId(refundId, "refund-fee-hold");

/**
 * A Lightning refund pays an invoice the tenant names, and its route's fee with it: the tenant's to pay, as a
 * payout's is (payments/reservations.ts), held on its account beside the refund at the most the rail may spend
 * (lightningFeeMax, the rail's cap), to the rail's fee account, and charged what the route took when it succeeds
 * (the rest released). Before, the platform paid every route, so a tenant could have it pay fees at will (many tiny
 * refunds to invoices of its choosing). Null for every other refund: a provider's refund costs the tenant nothing
 * more, as Stripe's does, and an on-chain one's gas is the platform's (it pays an address that paid).
 */
async function routingFeeHold(
  deps: RefundsDeps,
  id: string,
  source: Source,
  amount: bigint,
): Promise<Extract<ChainMember, { kind: "hold" | "move" }> | null> {
  if (source.mode.kind !== "payout" || source.mode.destination.kind !== "bolt11") return null;
  const fees = await railAccountOpened(deps, { kind: "fee", rail: source.rail, asset: source.asset });
  return {
    kind: "hold",
    posting: {
      debitAccountId: source.account.ledgerAccountId,
      creditAccountId: fees.ledgerAccountId,
      amount: lightningFeeMax(amount),
      ledger: source.asset.ledger,
      code: transferCodes.payments.feeCharged,
    },
    transfer: {
      id: refundFeeHoldId(id),
      userData128: derivedLedgerId(id, "refund-hold"),
      evidence: { rail: source.rail, reference: id, detail: { kind: "fee_hold", refund: id } },
      label: `the routing fee hold of refund ${id}`,
    },
  };
}

/**
 * Asks the rail and applies what it answered; a rail that throws leaves the refund pending (its event, or the
 * recovery pass, ends it).
 */
async function runRail(
  deps: RefundsDeps,
  refund: Refund,
  mode: RefundMode,
  how: "first" | "again",
): Promise<void> {
  let outcome: RailRefundOutcome;
  try {
    outcome = await askRail(refund, mode);
  } catch (error) {
    deps.logger?.error(
      { err: error, refund: refund.id },
      "the rail failed to answer a refund; it stays pending",
    );
    return;
  }
  // Asked again, a rail that is down cannot say what became of what it was asked before: it stays pending. Unless
  // its answer is final (the EVM rail keeps a refusal, the node's included, and never pays that id afterwards).
  if (
    how === "again" &&
    outcome.status === "failed" &&
    outcome.code === "rail_unavailable" &&
    outcome.final !== true
  )
    return;
  // A failure that paid the invoice again (failedStatement) is told by its give-back, after its commit.
  await applyOutcome(deps, refund, outcome);
}

type RailRefundOutcome =
  | { status: "succeeded"; evidence: SettlementEvidence; fee: bigint; nativeFee?: FeePaid }
  | { status: "in_flight"; railReference: string; evidence: SettlementEvidence | null }
  | { status: "failed"; code: RefundFailureCode; message: string; final?: boolean };

async function askRail(refund: Refund, mode: RefundMode): Promise<RailRefundOutcome> {
  switch (mode.kind) {
    case "ledger":
      return { status: "succeeded", evidence: { rail: "internal" }, fee: 0n };
    case "provider": {
      const answered = await mode.rail.refundReceived!({
        id: refund.id,
        reference: mode.reference,
        railReference: mode.railReference,
        amount: refund.amount,
      });
      if (answered.status !== "in_flight") return answered;
      return {
        status: "in_flight",
        railReference: referenceOf(answered.evidence) ?? refund.id,
        evidence: answered.evidence,
      };
    }
    case "payout": {
      const outcome = await mode.rail.execute({
        id: refund.id,
        paymentId: refund.id,
        tenantId: refund.tenantId,
        amount: refund.amount,
        destination: mode.destination,
        // Lightning's routing-fee cap; on a chain the gas is the platform's and the rail takes no cap.
        feeMax: mode.destination.kind === "bolt11" ? lightningFeeMax(refund.amount) : 0n,
      });
      return fromAttemptOutcome(outcome);
    }
  }
}

function fromAttemptOutcome(outcome: AttemptOutcome): RailRefundOutcome {
  switch (outcome.status) {
    case "succeeded":
      return {
        status: "succeeded",
        evidence: outcome.evidence,
        fee: outcome.fee,
        ...(outcome.nativeFee === undefined ? {} : { nativeFee: outcome.nativeFee }),
      };
    case "in_flight":
      return { status: "in_flight", railReference: outcome.reference, evidence: null };
    case "failed":
      return {
        status: "failed",
        code: outcome.code,
        message: outcome.message,
        ...(outcome.final === true ? { final: true } : {}),
      };
  }
}

/** Applies the rail's answer. A failure that paid the refund's invoice again is told by its give-back (finishFailed). */
async function applyOutcome(deps: RefundsDeps, refund: Refund, outcome: RailRefundOutcome): Promise<void> {
  switch (outcome.status) {
    case "succeeded":
      await finishSucceeded(deps, refund, outcome);
      return;
    case "failed":
      await finishFailed(deps, refund, {
        code: outcome.code,
        message: storableText(outcome.message),
        evidence: null,
      });
      return;
    case "in_flight":
      await markInFlight(deps.db, refund.id, outcome);
      return;
  }
}

// ---- finish

/** The hold as the ledger has it: the refund's accounts, amount and asset. */
async function reservationOf(deps: RefundsDeps, refund: Refund): Promise<Reservation> {
  const found = await findReservation(deps.ledger, derivedLedgerId(refund.id, "refund-hold"));
  if (found === null) throw new RefundInvariantError(`refund ${refund.id} has no hold in the ledger`);
  return found;
}

/**
 * The holds on the payees of the invoice's split, as the ledger has them: none for a refund of anything else, or
 * one made before a split's payees gave their part.
 */
async function payeeHoldsOf(
  deps: RefundsDeps,
  refund: Refund,
): Promise<{ accountId: string; reservation: Reservation }[]> {
  if (refund.target.kind !== "invoice") return [];
  const [invoice] = await deps.db.query<{ split: unknown }>("SELECT split FROM invoices WHERE id = $1", [
    refund.target.invoiceId,
  ]);
  if (invoice === undefined || invoice.split === null) return [];
  const holds = [];
  for (const share of mergedSplit(fromJson<SplitShareSpec>(invoice.split))) {
    const reservation = await findReservation(
      deps.ledger,
      refundShareLedgerId(refund.id, share.accountId, "hold"),
    );
    if (reservation !== null) holds.push({ accountId: share.accountId, reservation });
  }
  return holds;
}

/** The ledger's evidence of a refund: the rail's proof, with the refund's id beside it. */
function ledgerEvidence(refund: Refund, evidence: SettlementEvidence) {
  const onLedger = evidenceForLedger(evidence);
  return { ...onLedger, detail: { ...onLedger.detail, refund: refund.id } };
}

/**
 * Posts every hold (and books the rail's fee, charged to the tenant from its hold where it has one) with
 * `refund.succeeded`, once.
 */
async function finishSucceeded(
  deps: RefundsDeps,
  refund: Refund,
  outcome: { evidence: SettlementEvidence; fee: bigint; nativeFee?: FeePaid },
): Promise<void> {
  const reservation = await reservationOf(deps, refund);
  const members: ChainMember[] = [
    {
      kind: "post",
      reservation,
      transfer: {
        id: derivedLedgerId(refund.id, "refund-post"),
        userData128: reservation.pendingId,
        evidence: ledgerEvidence(refund, outcome.evidence),
        label: `refund ${refund.id}`,
      },
    },
    ...(await payeeHoldsOf(deps, refund)).map(
      ({ accountId, reservation }): ChainMember => ({
        kind: "post",
        reservation,
        transfer: {
          id: refundShareLedgerId(refund.id, accountId, "post"),
          userData128: reservation.pendingId,
          evidence: ledgerEvidence(refund, outcome.evidence),
          label: `account ${accountId}'s part of refund ${refund.id}`,
        },
      }),
    ),
  ];
  const feeHold = await findReservation(deps.ledger, refundFeeHoldId(refund.id));
  const write = async (funded: "uncharged" | "all") =>
    await writeChainWith(
      deps.ledger,
      [...members, ...(await feeLegs(deps, refund, outcome, feeHold, funded))],
      {
        statement: succeededStatement(refund.id, {
          evidence: outcome.evidence,
          railReference: referenceOf(outcome.evidence),
          fee: outcome.fee,
          networkFee: networkFeeOf(outcome.nativeFee),
        }),
        when: "held",
        sql: deps.db,
      },
      `refund ${refund.id}`,
    );
  let { outcome: written } = await write("uncharged");
  // The tenant paid the routing fee, but the rail's clearing account holds less than the refund and the fee (the
  // tenant's balance came in on another rail, or others' reservations took it): the node really paid it from its own
  // liquidity, which the ledger does not hold, so the operator's capital funds all of it, as for a payout
  // (payments/reservations.ts resolveReservation). Only then, so that the clearing account otherwise follows the node.
  if (written === "insufficient_liquidity" && outcome.fee > 0n) ({ outcome: written } = await write("all"));
  // The rail paid it: a refusal here leaves the refund pending with nothing said. Thrown, it is logged, and the
  // rail's event is delivered again (recovery asks again) rather than taken as applied.
  if (written !== "reserved")
    throw new RefundInvariantError(
      `the ledger refused the post of refund ${refund.id}, which the rail paid: ${written}`,
    );
}

/**
 * What the rail paid to move the refund (a routing fee in its asset, gas in the native token): from the rail's fee
 * account to the account it left (its clearing account), as payments book theirs. A routing fee is charged to the
 * tenant from its fee hold (routingFeeHold: at most the hold, the rest released; none paid, the hold voided); what
 * the tenant is not charged (a fee above the hold, a refund written before fee holds) is the platform's cost, funded by
 * the operator's capital first, as are all of it when `funded` is `all` (finishSucceeded). Gas is the platform's.
 */
async function feeLegs(
  deps: RefundsDeps,
  refund: Refund,
  outcome: { evidence: SettlementEvidence; fee: bigint; nativeFee?: FeePaid },
  feeHold: Reservation | null,
  funded: "uncharged" | "all",
): Promise<ChainMember[]> {
  const rail = deps.rails.get(refund.rail);
  const paid: Array<{
    asset: Asset;
    amount: bigint;
    purpose: string;
    detail: Readonly<Record<string, string>>;
  }> = [];
  if (rail !== undefined && outcome.fee > 0n)
    paid.push({
      asset: rail.asset,
      amount: outcome.fee,
      purpose: "refund-fee-paid",
      detail: { kind: "fee" },
    });
  const native = outcome.nativeFee;
  if (rail !== undefined && native !== undefined && native.amount > 0n)
    paid.push({
      asset: native.asset,
      amount: native.amount,
      purpose: "refund-native-fee-paid",
      detail: { kind: "native_fee", ...native.detail },
    });
  const reference = referenceOf(outcome.evidence) ?? refund.id;
  const routingFee = paid.find((fee) => fee.purpose === "refund-fee-paid")?.amount ?? 0n;
  const charged = feeHold === null ? 0n : routingFee < feeHold.amount ? routingFee : feeHold.amount;
  const legs: ChainMember[] = [];
  for (const fee of paid) {
    const fees = await railAccountOpened(deps, { kind: "fee", rail: refund.rail, asset: fee.asset });
    const from = await railAccountOpened(deps, { kind: "clearing", rail: refund.rail, asset: fee.asset });
    // A routing fee the tenant is not charged is funded by the operator's capital first, as a provider's fees are
    // (settlement/rail-fees.ts): the clearing account holds the customers' money, and a refund of all of it plus the
    // fee was refused there (exceeds_debits) — the refund left pending for good, its holds with it. Gas comes out of
    // the native token the operator put on the rail, booked as capital when first seen, as a payment's does.
    const fromCapital =
      fee.purpose !== "refund-fee-paid" ? 0n : funded === "all" ? fee.amount : fee.amount - charged;
    if (fromCapital > 0n) {
      const capital = await railAccountOpened(deps, { kind: "capital", rail: refund.rail, asset: fee.asset });
      legs.push(
        capitalFundingLeg(
          {
            clearingAccountId: from.ledgerAccountId,
            capitalAccountId: capital.ledgerAccountId,
            amount: fromCapital,
            ledger: fee.asset.ledger,
          },
          {
            id: derivedLedgerId(refund.id, "refund-fee-funded"),
            userData128: derivedLedgerId(refund.id, "refund-hold"),
            evidence: { rail: refund.rail, reference, detail: { kind: "fee_funded", refund: refund.id } },
          },
        ),
      );
    }
    const posting: Posting = {
      debitAccountId: fees.ledgerAccountId,
      creditAccountId: from.ledgerAccountId,
      amount: fee.amount,
      ledger: fee.asset.ledger,
      code: transferCodes.payments.feePaid,
    };
    legs.push({
      kind: "move",
      posting,
      transfer: {
        id: derivedLedgerId(refund.id, fee.purpose),
        userData128: derivedLedgerId(refund.id, "refund-hold"),
        evidence: { rail: refund.rail, reference, detail: { ...fee.detail, refund: refund.id } },
      },
    });
  }
  if (feeHold !== null) {
    // Charged what the route took, the rest released; nothing taken, all of it released.
    const transfer = { userData128: derivedLedgerId(refund.id, "refund-hold") };
    legs.push(
      charged > 0n
        ? {
            kind: "post",
            reservation: feeHold,
            amount: charged,
            transfer: { ...transfer, id: derivedLedgerId(refund.id, "refund-fee-post") },
          }
        : {
            kind: "void",
            reservation: feeHold,
            transfer: { ...transfer, id: derivedLedgerId(refund.id, "refund-fee-void") },
          },
    );
  }
  return legs;
}

/**
 * Voids every hold with `refund.failed` and gives the claim back, once: nothing moved. What the holds release first
 * settles the shortfalls of the invoice's reversals on those accounts (a dispute applied while the refund was held
 * could take only what was not held; the provider took all of it): refundGivesBack, which tells an invoice that paid
 * again.
 */
async function finishFailed(
  deps: RefundsDeps,
  refund: Refund,
  failure: { code: RefundFailureCode; message: string; evidence: SettlementEvidence | null },
): Promise<void> {
  await refundGivesBack(deps, refund, {
    label: `the release of refund ${refund.id}`,
    evidence:
      failure.evidence === null
        ? { rail: refund.rail, reference: refund.id, detail: { refund: refund.id } }
        : ledgerEvidence(refund, failure.evidence),
    statement: (collection) => failedStatement(refund.id, "pending", failure, collection),
    members: async () => {
      const reservation = await reservationOf(deps, refund);
      const payees = await payeeHoldsOf(deps, refund);
      const released = (accountId: string, held: Reservation, id: bigint): GiveBackMember => ({
        givenBack: { accountId, ledgerAccountId: held.debitAccountId, amount: held.amount },
        member: { kind: "void", reservation: held, transfer: { id, userData128: held.pendingId } },
      });
      const feeHold = await findReservation(deps.ledger, refundFeeHoldId(refund.id));
      return [
        released(refund.accountId, reservation, derivedLedgerId(refund.id, "refund-void")),
        ...payees.map(({ accountId, reservation: held }) =>
          released(accountId, held, refundShareLedgerId(refund.id, accountId, "void")),
        ),
        ...(feeHold === null
          ? []
          : [released(refund.accountId, feeHold, derivedLedgerId(refund.id, "refund-fee-void"))]),
      ];
    },
  });
}

/**
 * A refund that succeeded and that its provider then failed (Stripe's refund.failed): what it took goes back to the
 * accounts, the claim is given back, `refund.failed`; of what goes back, the shortfalls of the invoice's reversals on
 * those accounts are settled first (refundGivesBack). The posts moved back, the collections and the status in one
 * linked chain and its transaction: a crash leaves all of it to the redelivered event, or none. An invoice that paid
 * again is told by refundGivesBack.
 */
async function undoSucceeded(deps: RefundsDeps, refund: Refund, evidence: SettlementEvidence): Promise<void> {
  await refundGivesBack(deps, refund, {
    label: `the undoing of refund ${refund.id}`,
    evidence: ledgerEvidence(refund, evidence),
    statement: (collection) =>
      failedStatement(
        refund.id,
        "succeeded",
        {
          code: "rejected",
          // The give-back settles the invoice's reversals' shortfalls first: "the amount is back on the account"
          // was wrong whenever it collected any, and the event says how much it did.
          message:
            "the provider failed the refund after it succeeded; the amount is given back, less what settles the " +
            "shortfalls of the invoice's reversals (the event's shortfall_collected)",
          evidence,
        },
        collection,
      ),
    members: async () => {
      const posts = [
        {
          accountId: refund.accountId,
          post: derivedLedgerId(refund.id, "refund-post"),
          undone: derivedLedgerId(refund.id, "refund-undone"),
          userData128: derivedLedgerId(refund.id, "refund-hold"),
          label: `the undoing of refund ${refund.id}`,
        },
        ...(await payeeHoldsOf(deps, refund)).map(({ accountId, reservation }) => ({
          accountId,
          post: refundShareLedgerId(refund.id, accountId, "post"),
          undone: refundShareLedgerId(refund.id, accountId, "undone"),
          userData128: reservation.pendingId,
          label: `the undoing of account ${accountId}'s part of refund ${refund.id}`,
        })),
      ];
      const found = new Map(
        (await deps.ledger.lookupTransfers(posts.flatMap((post) => [post.post, post.undone]))).map((t) => [
          t.id,
          t,
        ]),
      );
      return posts.map((post) => {
        const posted = found.get(post.post);
        if (posted === undefined)
          throw new RefundInvariantError(
            `refund ${refund.id} succeeded but has no post ${post.post} in the ledger`,
          );
        const givenBack = {
          accountId: post.accountId,
          ledgerAccountId: posted.debitAccountId,
          amount: posted.amount,
        };
        // Moved back already by an earlier version, which did so apart from the status: nothing to write, and
        // nothing collected from it (that money may be spent since).
        if (found.has(post.undone)) return { givenBack, member: null };
        return {
          givenBack,
          member: {
            kind: "move" as const,
            posting: {
              debitAccountId: posted.creditAccountId,
              creditAccountId: posted.debitAccountId,
              amount: posted.amount,
              ledger: posted.ledger,
              code: transferCodes.refunds.refundUndone,
            },
            transfer: {
              id: post.undone,
              userData128: post.userData128,
              evidence: ledgerEvidence(refund, evidence),
              label: post.label,
            },
          },
        };
      });
    },
  });
}

/**
 * One member of a refund's give-back (the void of a hold, a post moved back) and what it gives back to whom; null: in
 * the ledger already.
 */
type GiveBackMember = { givenBack: GivenBack; member: ChainMember | null };

/**
 * Writes a failed refund's give-back (`members`, read afresh each try) as one linked chain with `statement`, the
 * refund's status move: of what each member gives back to its account, the outstanding shortfalls of the invoice's
 * reversals on that account are collected first (settlement/shortfalls.ts), by moves at the end of the chain whose
 * record the statement writes when the refund moves now. Computed again when the shortfalls moved under it (another
 * give-back, a reversal recorded or given back, here or in another process), or the invoice's row did (failedStatement
 * decides from new reads whether it is paid again); a refund of a payment collects nothing. An invoice the statement
 * paid again (its `paid_now`; not when the refund had moved already) is told to the process's listeners here, after
 * the commit and outside the retry (deps.onInvoicePaid, as a receipt that pays it tells them), whichever path failed
 * the refund (the rail's answer to its request or to the recovery pass, the rail's event). A hook that throws is
 * logged: the refund has failed, and its request answers so.
 */
async function refundGivesBack(
  deps: RefundsDeps,
  refund: Refund,
  write: {
    label: string;
    evidence: TransferEvidence;
    members: () => Promise<GiveBackMember[]>;
    statement: (collection: ShortfallCollection | null) => Statement;
  },
): Promise<void> {
  for (let attempt = 1; attempt <= shortfallCollectionAttemptsMax; attempt++) {
    const members = await write.members();
    // Collected only from what moves back in this chain, before the collections: the chain holds the money taken.
    const moving = members.filter((member) => member.member !== null);
    const collection =
      refund.target.kind === "invoice"
        ? await collectionFrom(deps, refund, refund.target.invoiceId, moving, write.evidence)
        : null;
    const chain = [
      ...members.flatMap(({ member }) => (member === null ? [] : [member])),
      ...(collection?.members ?? []),
    ];
    const statement = write.statement(collection);
    let rows: Row[] | null;
    try {
      if (chain.length === 0) rows = await deps.db.query(statement.text, statement.params);
      else {
        // A collection's check runs under the ledger's lock (shortfalls.ts).
        const written = await writeChainWith(
          deps.ledger,
          chain,
          { statement, when: "held", sql: deps.db, underLock: collection !== null },
          write.label,
        );
        // Each collection takes at most what the chain gave back to its account before it: none can fall short.
        if (written.outcome !== "reserved")
          throw new RefundInvariantError(`the ledger refused ${write.label}: ${written.outcome}`);
        rows = written.rows;
      }
    } catch (error) {
      if (!isShortfallCollectionMoved(error) && !isInvoiceMoved(error)) throw error;
      await pauseAfterMovedVersion(attempt);
      continue;
    }
    // Committed: told here, outside the retry, so that a hook's throw is not taken for a failed write. Before, it ran
    // inside it, and a throw left the loop after the commit, the refund's request answering 500.
    const paid = (rows as { paid_now: boolean }[] | null)?.[0]?.paid_now === true;
    const invoiceId = invoiceOf(refund);
    if (paid && invoiceId !== null) {
      try {
        deps.onInvoicePaid?.(invoiceId);
      } catch (error) {
        deps.logger?.error(
          { err: error, invoiceId, refund: refund.id },
          "onInvoicePaid threw after the invoice was paid",
        );
      }
    }
    return;
  }
  throw new RefundContendedError(
    `the shortfalls or the row of refund ${refund.id}'s invoice moved under its give-back ${shortfallCollectionAttemptsMax} times; ` +
      "nothing of it was written",
  );
}

/**
 * What a refund's give-back collects of the invoice's outstanding shortfalls, from what each member gives back, into
 * the account the refund's hold went to (the rail's clearing account, where the reversals' legs went).
 */
async function collectionFrom(
  deps: RefundsDeps,
  refund: Refund,
  invoiceId: string,
  members: readonly GiveBackMember[],
  evidence: TransferEvidence,
): Promise<ShortfallCollection> {
  const reservation = await reservationOf(deps, refund);
  return collectShortfalls({
    invoiceId,
    source: refund.id,
    givenBack: members.map((member) => member.givenBack),
    outstanding: await outstandingShortfalls(deps.db, invoiceId),
    clearingLedgerAccountId: reservation.creditAccountId,
    ledger: reservation.ledger,
    evidence,
  });
}

// ---- recovery

/**
 * How a written refund's rail moves it, as createRefund chose: null when its rail is not configured in this process
 * (it stays pending for one that has it).
 */
async function modeOf(deps: RefundsDeps, refund: Refund): Promise<RefundMode | null> {
  const rail = deps.rails.get(refund.rail);
  if (rail === undefined) return null;
  if (rail.kind === "internal") return { kind: "ledger" };
  if (refund.destination !== null) return { kind: "payout", rail, destination: refund.destination };
  if (refund.target.kind !== "invoice" || rail.refundReceived === undefined) return null;
  const [invoice] = await deps.db.query<{ rail_reference: string | null }>(
    "SELECT rail_reference FROM invoices WHERE id = $1",
    [refund.target.invoiceId],
  );
  if (invoice?.rail_reference == null) return null;
  return {
    kind: "provider",
    rail,
    reference: refund.target.invoiceId,
    railReference: invoice.rail_reference,
  };
}

/** The most pending refunds one recovery pass asks their rails about. */
export const refundRecoveryBatchMax = 500;

/**
 * Drives on the refunds left pending (a stop or a crash between the write and the rail's answer, an answer lost),
 * untouched for `quietMs`: each rail is asked again under the refund's id — Stripe's refund is found by its
 * idempotency key and read back, a payout attempt reports its first outcome — and what it answers is applied, as at
 * creation. Every step is idempotent and every status move conditional, so a live request on the same refund is
 * harmless. Returns how many were looked at; one that cannot be driven does not keep the others pending.
 */
export async function recoverPendingRefunds(
  deps: RefundsDeps,
  options: { quietMs: number },
): Promise<number> {
  const pending = await listPendingRefunds(deps.db, {
    quietMs: options.quietMs,
    limit: refundRecoveryBatchMax,
    rails: [...deps.rails.keys()],
  });
  const failures: Array<{ id: string; error: unknown }> = [];
  for (const refund of pending) {
    try {
      const mode = await modeOf(deps, refund);
      if (mode !== null) await runRail(deps, refund, mode, "again");
    } catch (error) {
      failures.push({ id: refund.id, error });
    }
  }
  await touchPendingRefunds(
    deps.db,
    pending.map((refund) => refund.id),
  );
  if (failures.length > 0)
    throw new RefundInvariantError(`${failures.length} pending refund(s) could not be driven on`, {
      details: failures.map((f) => f.id).join(", "),
      cause: failures[0]?.error,
    });
  return pending.length;
}

// ---- the rails' events

/**
 * Applies a rail's event that is about a refund, and says whether it was one: false, the caller applies it as usual.
 * An invoice its failure paid again (failedStatement) is told by its give-back, after the commit (refundGivesBack). A
 * payout refund's end comes as its attempt's event (the refund's id is the attempt id); a provider refund's as a
 * reversal of its invoice (`reversed`: effective; `reinstated`: failed) whose evidence names the provider's refund.
 * Applying one again changes nothing.
 */
export async function applyRefundEvent(deps: RefundsDeps, rail: string, event: RailEvent): Promise<boolean> {
  switch (event.kind) {
    case "attempt_succeeded":
    case "attempt_failed": {
      if (!event.attemptId.startsWith("rfd_")) return false;
      const refund = await getRefundById(deps.db, event.attemptId);
      if (refund === null || refund.rail !== rail) return false;
      if (refund.status !== "pending") return true;
      await applyOutcome(
        deps,
        refund,
        event.kind === "attempt_succeeded"
          ? {
              status: "succeeded",
              evidence: event.evidence,
              fee: event.fee,
              ...(event.nativeFee === undefined ? {} : { nativeFee: event.nativeFee }),
            }
          : { status: "failed", code: event.code, message: event.message },
      );
      return true;
    }
    case "reversed":
    case "reinstated": {
      const railReference = referenceOf(event.evidence);
      if (railReference === null) return false;
      const { named, unanswered } = await refundsOfInvoice(deps.db, {
        invoiceId: event.reference,
        rail,
        railReference,
      });
      if (named === null) {
        // Only a refund's reversal may be the one awaited (a dispute's is not): the others are applied as usual.
        if (unanswered && event.key.startsWith(providerRefundKeyPrefix))
          throw new RefundNotYetKnownError(
            `a reversal of invoice ${event.reference} arrived while a refund of it awaits its provider's reply`,
          );
        return false;
      }
      if (event.kind === "reversed") {
        // The provider's fee for it (a Stripe refund's balance transaction) is the event's `fees`, booked as the rail's
        // fees are once the event is applied (settlement/rail-events.ts), as on the refund's answer: not the refund's.
        if (refundCanMove(named.status, "succeeded"))
          await finishSucceeded(deps, named, { evidence: event.evidence, fee: 0n });
        return true;
      }
      if (!refundCanMove(named.status, "failed")) return true;
      if (named.status === "succeeded") await undoSucceeded(deps, named, event.evidence);
      else
        await finishFailed(deps, named, {
          code: "rejected",
          message: "the provider failed the refund",
          evidence: event.evidence,
        });
      return true;
    }
    case "received":
    case "fee":
    case "capital":
      return false;
  }
}

/** The invoice a refund is of; null for a refund of a payment. */
const invoiceOf = (refund: Refund): string | null =>
  refund.target.kind === "invoice" ? refund.target.invoiceId : null;
