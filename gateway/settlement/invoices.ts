// Money in. An invoice asks a rail for a way to be paid into a tenant's account; when the rail reports the
// money as received, it is mirrored once into the ledger — the rail's clearing account (what now sits on that
// rail) against the tenant's account — with the rail's evidence, and counted on the invoice in the same database
// transaction. A reversal (a dispute, a refund of a top-up) takes it back. Both are keyed by ids derived from the
// invoice, so a repeated event changes nothing.
//
// A rail that names its receipts (the EVM rail: one per token transfer or authorization, `key` on the event) can
// bring several for one invoice; each is credited once, as it comes, and the outcomes are:
// - under-payment: what came is credited; the invoice stays open (received_amount < amount) and a further receipt
//   can complete it. At expiry nothing is undone: it stays open, partially paid, its money in the account, and the
//   merchant refunds the payer (`payer`) or asks for the rest; the deposit address is still watched for 30 days.
// - over-payment: all of it is credited; the invoice is paid with received_amount > amount, the excess refundable.
// - a further payment to a paid invoice (a second transfer to its address): credited the same way, received_amount
//   grows, an `invoice.payment_received` event says so; the merchant refunds it if it is not owed.
// - a receipt a reorg took back (applyReversed, `takes`): the invoice is `reversed` when what it still holds without
//   it (less what its refunds not failed took of it, a discount not counted) falls below the amount, and stays `paid`
//   (over-paid: its other receipts cover it) otherwise; `invoice.reversed` says what was taken back either way, and
//   the status it left (`invoice_status`).
// - late payment (arrived after the expiry, only possible by deposit address: an authorization's validBefore is the
//   expiry): credited and counted like any other, flagged `late` on its receipt and event. The money is on the
//   rail's address already; the ledger mirrors the chain, and a refund is the merchant's call.
// Every receipt emits `invoice.payment_received`; the one that brings the total to the amount also `invoice.paid`.
import {
  type Asset,
  assetByCode,
  type Logger,
  parseAmount,
  type Rail,
  type RailCheck,
  type SettlementEvidence,
  type SignedPaymentRefusal,
  SwitchyardError,
  setBounded,
} from "../../core/index.ts";
import type { AccountCache, AccountRecord } from "../accounts/index.ts";
import { type Db, type Row, type Sql, type Statement, serverRaised } from "../db/index.ts";
import { derivedLedgerId, newId } from "../ids/index.ts";
import {
  type ChainMember,
  type Ledger,
  LedgerPostingError,
  type Leg,
  type Posting,
  type PostingTransfer,
  type TransferEvidence,
  TransferFlags,
  transferCodes,
  writeChainWith,
} from "../ledger/index.ts";
import { evidenceForLedger, fromJson, insertOutboxEvent, toJson } from "../payments/index.ts";
import {
  claimableOf,
  disputedSql,
  heldSql,
  invoiceReceived,
  isInvoiceMoved,
  isRefundExceeding,
  isReversalWithdrawn,
  pauseAfterMovedVersion,
} from "../payments/refunds-store.ts";
import { splitShares } from "../paywall/scheme.ts";
import {
  collectionStatement,
  collectShortfalls,
  type GivenBack,
  isShortfallCollectionMoved,
  type LegShortfall,
  legShortfalls,
  outstandingShortfalls,
  shortfallCollectionAttemptsMax,
  shortfallCollectionGivenBackLedgerId,
} from "./shortfalls.ts";
import {
  mergedSplit,
  type PayeeShare,
  receiptLedgerId,
  receiptShareLedgerId,
  reversalShareLedgerId,
  splitPayees,
  type TakeBackLeg,
  takeBackChain,
  takeBackShares,
  takenBackBefore,
} from "./split-reversal.ts";

/** What the settlement needs of a rail to take money in: its id, its asset, its `receive`, and signed payments. */
export type ReceivingRail = Pick<Rail, "id" | "asset" | "receive" | "submitSignedPayment"> &
  /**
   * Its snapshot's amountMax bounds an invoice; cancelReceive withdraws an offer no invoice was written for;
   * lookupReceived asks whether an offer was paid before its event is booked (L402).
   */
  Partial<Pick<Rail, "snapshot" | "cancelReceive" | "lookupReceived">>;

export type SettlementDeps = {
  db: Db;
  ledger: Ledger;
  /** Account lookups, remembered per process (accounts/createAccountCache). */
  accounts: AccountCache;
  /** Invoices this process made, remembered until paid (createOpenInvoiceMemory). */
  openInvoices: OpenInvoiceMemory;
  /** The configured rails; those with a `receive` take money in for invoices. */
  rails: ReadonlyMap<string, ReceivingRail>;
  /**
   * Told after the commit that paid an invoice, by the path that paid it (invoicePaid): the process's listeners (a
   * paywall waiting on it). Should not throw: what it tells has committed. One that does is logged (`logger`) by
   * invoicePaid, not thrown at the path that paid.
   */
  onInvoicePaid?: (invoiceId: string) => void;
  /** Where a throw of onInvoicePaid is reported (invoicePaid); unset: it is dropped. */
  logger?: Logger;
};

/**
 * A paywall's split carried by its invoice: of each receipt, each account gets its basis points (floored, see
 * paywall/scheme.ts splitShares), moved from the invoice's account in the same ledger request as the credit.
 */
export type InvoiceSplit = readonly { readonly accountId: string; readonly basisPoints: number }[];

/** What applying a rail's event to an invoice needs of it: fields that never change once it is written. */
type InvoiceTarget = {
  id: string;
  tenantId: string;
  accountId: string;
  assetCode: string;
  rail: string;
  /** What the rail offered for it (a PaymentIntent, a payment hash, …); null when it named nothing. */
  railReference: string | null;
  /** null: no split, all to accountId. */
  split: InvoiceSplit | null;
};

/**
 * The invoices this process made, so that the money arriving for one needs no query to find it. Only fields
 * that never change are kept; whether the invoice is still open is the conditional update's to say. Bounded:
 * beyond `entriesMax` the oldest is forgotten, and an invoice not remembered (made by another process, before
 * a restart, or forgotten) is read from the database.
 */
export type OpenInvoiceMemory = {
  remember(invoice: InvoiceTarget): void;
  recall(id: string): InvoiceTarget | undefined;
  forget(id: string): void;
};

export const openInvoiceMemoryDefaults = { entriesMax: 100_000 };

export function createOpenInvoiceMemory(limits: { entriesMax: number }): OpenInvoiceMemory {
  const invoices = new Map<string, InvoiceTarget>();
  return {
    remember(invoice) {
      if (limits.entriesMax <= 0) return;
      setBounded(invoices, invoice.id, invoice, limits.entriesMax);
    },
    recall: (id) => invoices.get(id),
    forget(id) {
      invoices.delete(id);
    },
  };
}

/**
 * An invoice paid by a commit of this process (a receipt, a give-back, the mark a removal finished, a refund's failure:
 * payments/refunds.ts through app.ts): forgotten as open, no receipt pays it now, and told to the process's listeners,
 * once, right after that commit, where it is made. Before, the rail's event that paid it told them (rail-events.ts)
 * from what its path returned: a removal whose give-back threw after the mark it finished paid the invoice told none,
 * and redelivered found the mark made, `invoice.paid` gone to webhooks alone.
 */
export function invoicePaid(
  deps: Pick<SettlementDeps, "openInvoices" | "onInvoicePaid" | "logger">,
  invoiceId: string,
): void {
  deps.openInvoices.forget(invoiceId);
  // What it tells has committed: a hook that throws is logged, not thrown at the path that paid. Its event
  // redelivered finds the receipt applied and tells nothing again; a refund's request would answer 500.
  try {
    deps.onInvoicePaid?.(invoiceId);
  } catch (error) {
    deps.logger?.error({ err: error, invoiceId }, "onInvoicePaid threw after the invoice was paid");
  }
}

export type InvoiceStatus = "open" | "paid" | "reversed";

export type Invoice = {
  id: string;
  tenantId: string;
  accountId: string;
  assetCode: string;
  amount: bigint;
  rail: string;
  status: InvoiceStatus;
  description: string;
  railReference: string | null;
  instructions: Record<string, string>;
  receivedAmount: bigint | null;
  evidence: SettlementEvidence | null;
  /** Who paid (the first receipt's payer, when the rail knows): where a refund goes back to. */
  payer: string | null;
  expiresAt: Date | null;
  createdAt: Date;
  paidAt: Date | null;
};

export type InvoiceRefusal =
  | "unknown_asset"
  | "account_not_found"
  | "asset_mismatch"
  | "rail_unavailable"
  | "rail_unreachable"
  | "amount_not_a_decimal"
  | "amount_not_positive"
  | "amount_too_precise"
  | "amount_too_large"
  | "amount_too_small";

export type CreateInvoiceResult =
  | { ok: true; invoice: Invoice }
  | { ok: false; refusal: InvoiceRefusal; message: string; param?: string };

export class SettlementInvariantError extends SwitchyardError {
  override name = "SettlementInvariantError";
}

export type CreateInvoiceParams = {
  tenantId: string;
  accountId: string;
  asset: string;
  amount: string;
  rail: string | null;
  description: string;
  expirySeconds: number;
  /**
   * Shares of what is received for the paywall's payees: accounts of the tenant in the invoice's asset, basis
   * points summing to at most 10,000 (the paywall checked both; the accounts are checked again here).
   */
  split?: InvoiceSplit;
};

/** The most basis points a split may give away: all of it. */
const splitBasisPointsMax = 10_000;

type InvoiceRefused = Extract<CreateInvoiceResult, { ok: false }>;

/** Checks an invoice request against the tenant's accounts and the configured rails. Writes nothing. */
async function checkInvoiceRequest(
  deps: SettlementDeps,
  params: CreateInvoiceParams,
): Promise<
  | InvoiceRefused
  | {
      ok: true;
      asset: Asset;
      amount: bigint;
      account: AccountRecord;
      /** The rail that takes the money in, and its `receive`. */
      rail: string;
      receive: NonNullable<ReceivingRail["receive"]>;
    }
> {
  const asset = assetByCode(params.asset);
  if (asset === null)
    return { ok: false, refusal: "unknown_asset", message: `no asset "${params.asset}"`, param: "asset" };
  const amount = parseAmount(params.amount, asset);
  if (!amount.ok)
    return {
      ok: false,
      refusal: amount.error,
      message: `amount "${params.amount}" is not a valid ${asset.code} amount`,
      param: "amount",
    };
  const account = await deps.accounts.tenantAccount({ tenantId: params.tenantId, id: params.accountId });
  if (account === null)
    return {
      ok: false,
      refusal: "account_not_found",
      message: `no account "${params.accountId}"`,
      param: "account",
    };
  if (account.asset.code !== asset.code)
    return {
      ok: false,
      refusal: "asset_mismatch",
      message: `account ${account.id} holds ${account.asset.code}`,
      param: "asset",
    };
  for (const share of params.split ?? []) {
    const payee = await deps.accounts.tenantAccount({ tenantId: params.tenantId, id: share.accountId });
    if (payee === null)
      return {
        ok: false,
        refusal: "account_not_found",
        message: `no account "${share.accountId}"`,
        param: "split",
      };
    if (payee.asset.code !== asset.code)
      return {
        ok: false,
        refusal: "asset_mismatch",
        message: `account ${payee.id} holds ${payee.asset.code}`,
        param: "split",
      };
  }
  const splitBasisPoints = (params.split ?? []).reduce((sum, share) => sum + share.basisPoints, 0);
  if (
    (params.split ?? []).some((share) => !Number.isInteger(share.basisPoints) || share.basisPoints < 0) ||
    splitBasisPoints > splitBasisPointsMax
  )
    throw new SettlementInvariantError(`a split gives away ${splitBasisPoints} basis points of an invoice`);
  const receiver = [...deps.rails.values()].find(
    (r) =>
      r.receive !== undefined &&
      r.asset.code === asset.code &&
      (params.rail === null || r.id === params.rail),
  );
  // A rail named that receives another asset is the request's own mistake (400), not this deployment's want (402).
  const named = params.rail === null ? undefined : deps.rails.get(params.rail);
  if (receiver === undefined && named?.receive !== undefined && named.asset.code !== asset.code)
    return {
      ok: false,
      refusal: "asset_mismatch",
      message: `rail ${named.id} receives ${named.asset.code}, not ${asset.code}`,
      param: "rail",
    };
  if (receiver?.receive === undefined) {
    return {
      ok: false,
      refusal: "rail_unavailable",
      message: `no configured rail receives ${asset.code}${params.rail === null ? "" : ` on ${params.rail}`}`,
      param: "rail",
    };
  }
  // The rail's least and most for one payment (core/rail.ts: Stripe's 50 cents and 99,999,999 minor units, a
  // Lightning invoice's ceiling), checked before the provider is asked: outside them, nothing is made on the rail or
  // written here. Before, the least was left to the rail, whose refusal answered 402 rail_unavailable (Stripe's
  // minimum) for an amount that is the request's own mistake.
  const limits = receiver.snapshot?.();
  if (limits !== undefined && amount.value > limits.amountMax)
    return {
      ok: false,
      refusal: "amount_too_large",
      message: `${receiver.id} takes at most ${limits.amountMax} ${asset.code} minor units in one payment`,
      param: "amount",
    };
  if (limits !== undefined && amount.value < limits.amountMin)
    return {
      ok: false,
      refusal: "amount_too_small",
      message: `${receiver.id} takes at least ${limits.amountMin} ${asset.code} minor units in one payment`,
      param: "amount",
    };
  const receive = receiver.receive.bind(receiver);
  return { ok: true, asset, amount: amount.value, account, rail: receiver.id, receive };
}

/**
 * The invoice could not be written after the rail made its offer: the offer reached nobody, so it is withdrawn
 * (core's cancelReceive: a Stripe PaymentIntent cancelled) before the write's error goes on. A withdrawal that
 * fails is said in the error thrown, the write's error its cause.
 */
async function withdrawOffer(
  deps: SettlementDeps,
  offer: { rail: string; reference: string; railReference: string },
  cause: unknown,
): Promise<never> {
  const receiver = deps.rails.get(offer.rail);
  const withdrawn = await receiver?.cancelReceive?.({
    reference: offer.reference,
    railReference: offer.railReference,
  });
  if (withdrawn?.status === "failed")
    throw new SettlementInvariantError(
      `invoice ${offer.reference} was not written, and its offer ${offer.railReference} on ${offer.rail} was not withdrawn: ${withdrawn.message}`,
      { cause },
    );
  throw cause;
}

/**
 * Asks a rail for a way to be paid `amount` into a tenant's account, and writes the invoice with the rail's offer;
 * a rail's refusal writes nothing.
 */
export async function createInvoice(
  deps: SettlementDeps,
  params: CreateInvoiceParams,
): Promise<CreateInvoiceResult> {
  const checked = await checkInvoiceRequest(deps, params);
  if (!checked.ok) return checked;
  const { asset, amount, account, rail, receive } = checked;
  const id = newId("inv");
  // The rail is asked first and the invoice written once, whole. Money cannot arrive for it before the row
  // exists: only the answer to this request, sent after the write, tells a payer how to pay it. When the rail
  // refuses, nothing is written; when the process stops between the two, the rail's offer reached nobody.
  const offer = await receive({
    reference: id,
    amount,
    description: params.description,
    expirySeconds: params.expirySeconds,
  });
  if (offer.status === "refused") {
    // The provider out of reach (LND, the chain's node, Stripe): nothing was made, and the same request may be sent
    // again shortly under its key (503, kept under none). Before, a 402 rail_unavailable kept the outage's answer
    // under the Idempotency-Key for 24 hours.
    if (offer.code === "rail_unavailable")
      return {
        ok: false,
        refusal: "rail_unreachable",
        message: `${rail} cannot be reached now; nothing was made: send the request again later (${offer.message})`,
      };
    return {
      ok: false,
      refusal: offer.code === "amount_too_large" ? "amount_too_large" : "rail_unavailable",
      message: `${rail} cannot take this payment: ${offer.message}`,
      param: offer.code === "amount_too_large" ? "amount" : "rail",
    };
  }
  const expiresAt = offer.expiresAtMs === null ? null : new Date(offer.expiresAtMs);
  const split = params.split === undefined || params.split.length === 0 ? null : mergedSplit(params.split);
  const [written] = await deps.db
    .query<{ created_at: Date }>(
      `INSERT INTO invoices (id, tenant_id, account_id, asset, amount, rail, status, description, rail_reference, instructions, expires_at, split)
     VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8, $9, $10, $11) RETURNING created_at`,
      [
        id,
        params.tenantId,
        account.id,
        asset.code,
        amount,
        rail,
        params.description,
        offer.railReference,
        JSON.stringify(offer.instructions),
        expiresAt,
        split === null ? null : toJson(split),
      ],
    )
    .catch((error: unknown) =>
      withdrawOffer(deps, { rail, reference: id, railReference: offer.railReference }, error),
    );
  if (written === undefined) throw new SettlementInvariantError(`invoice ${id} was not written`);
  deps.openInvoices.remember({
    id,
    tenantId: params.tenantId,
    accountId: account.id,
    assetCode: asset.code,
    rail,
    railReference: offer.railReference,
    split,
  });
  // The answer is what was written, not read back.
  return {
    ok: true,
    invoice: {
      id,
      tenantId: params.tenantId,
      accountId: account.id,
      assetCode: asset.code,
      amount,
      rail,
      status: "open",
      description: params.description,
      railReference: offer.railReference,
      instructions: offer.instructions,
      receivedAmount: null,
      evidence: null,
      payer: null,
      expiresAt,
      createdAt: written.created_at,
      paidAt: null,
    },
  };
}

/** An invoice's row as `SELECT *` reads it (getInvoice, and the invoices' list: lists.ts). */
export type InvoiceRow = {
  id: string;
  tenant_id: string;
  account_id: string;
  asset: string;
  amount: bigint;
  rail: string;
  status: InvoiceStatus;
  description: string;
  rail_reference: string | null;
  instructions: Record<string, string>;
  received_amount: bigint | null;
  evidence: unknown;
  payer: string | null;
  expires_at: Date | null;
  created_at: Date;
  paid_at: Date | null;
};

export function invoiceFromRow(row: InvoiceRow): Invoice {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    accountId: row.account_id,
    assetCode: row.asset,
    amount: row.amount,
    rail: row.rail,
    status: row.status,
    description: row.description,
    railReference: row.rail_reference,
    instructions: row.instructions,
    receivedAmount: row.received_amount,
    evidence: row.evidence === null ? null : fromJson<SettlementEvidence>(row.evidence),
    payer: row.payer,
    expiresAt: row.expires_at,
    createdAt: row.created_at,
    paidAt: row.paid_at,
  };
}

export async function getInvoice(db: Db, params: { tenantId: string; id: string }): Promise<Invoice | null> {
  const rows = await db.query<InvoiceRow>("SELECT * FROM invoices WHERE id = $1 AND tenant_id = $2", [
    params.id,
    params.tenantId,
  ]);
  return rows[0] === undefined ? null : invoiceFromRow(rows[0]);
}

/**
 * Whether money for invoice `id` came in on rail `rail` as offered: its later fees (rail-events.ts, kind fee) are
 * then the platform's to book. Another rail's, or an invoice of another payment (a stranger's PaymentIntent naming
 * it), is not.
 */
export async function receivedOn(
  db: Db,
  params: { id: string; rail: string; evidence: SettlementEvidence },
): Promise<boolean> {
  const invoice = await invoiceTarget(db, params.id);
  return (
    invoice !== null &&
    invoice.rail === params.rail &&
    invoice.status !== "open" &&
    offeredFor(invoice, params.evidence)
  );
}

async function invoiceTarget(
  db: Db,
  id: string,
): Promise<(InvoiceTarget & { status: InvoiceStatus }) | null> {
  const rows = await db.query<
    Pick<InvoiceRow, "tenant_id" | "account_id" | "asset" | "rail" | "status" | "rail_reference"> & {
      split: unknown;
    }
  >("SELECT tenant_id, account_id, asset, rail, status, rail_reference, split FROM invoices WHERE id = $1", [
    id,
  ]);
  const row = rows[0];
  if (row === undefined) return null;
  return {
    id,
    tenantId: row.tenant_id,
    accountId: row.account_id,
    assetCode: row.asset,
    rail: row.rail,
    railReference: row.rail_reference,
    status: row.status,
    // Merged as createInvoice merges it: a split written before with one account twice (never credited: its shares
    // were one ledger id twice) is credited once read again.
    split: row.split === null ? null : mergedSplit(fromJson<InvoiceSplit>(row.split)),
  };
}

async function accountsFor(
  deps: SettlementDeps,
  invoice: InvoiceTarget,
): Promise<{ account: AccountRecord; clearing: AccountRecord }> {
  const account = await deps.accounts.tenantAccount({ tenantId: invoice.tenantId, id: invoice.accountId });
  const asset = assetByCode(invoice.assetCode);
  const clearing =
    asset === null ? null : await deps.accounts.railAccount({ kind: "clearing", rail: invoice.rail, asset });
  if (account === null || clearing === null)
    throw new SettlementInvariantError(`invoice ${invoice.id} has no account or clearing account`);
  return { account, clearing };
}

/**
 * Credits a receipt (`posting`, clearing to the invoice's account) and, when the invoice carries a split, moves each
 * payee's share of the receipt (splitShares: floored, the remainder stays) from the invoice's account to the payee's,
 * all in one linked ledger chain, with `record` (the receipt counted on the invoice: received_amount, its row, its
 * events) in the chain's database transaction: one request, all or none. Each share's id is derived from the
 * receipt's, so a redelivered receipt moves nothing twice; each carries the invoice in userData128 (an account's
 * transactions name the invoice) and the receipt's evidence. Returns `record`'s rows: written with the chain
 * (`record(true)`: a first credit, which the statement must count or refuse with receipt_unrecorded(), the chain rolled
 * back with it: `unrecorded`), or on its own when the ledger has the chain whole already (`record(false)`: a
 * redelivery, or a receipt an earlier version credited apart from its record), where it counts nothing twice;
 * `conflict`: a member exists with other terms.
 *
 * Before, the record was written in a transaction after the chain: a crash between the two left the receipt credited
 * and its shares moved with nothing counting it, and a reorg's reversal of it then (splitPayees and what the invoice
 * received read the records) took all of it from the invoice's account and none of the payees' shares.
 */
async function creditWithShares(
  deps: SettlementDeps,
  invoice: InvoiceTarget,
  amount: bigint,
  transfer: PostingTransfer & { id: bigint },
  record: (first: boolean) => Statement,
): Promise<{ outcome: "credited"; rows: Row[] } | { outcome: "conflict" } | { outcome: "unrecorded" }> {
  const { account, clearing } = await accountsFor(deps, invoice);
  const posting: Posting = {
    debitAccountId: clearing.ledgerAccountId,
    creditAccountId: account.ledgerAccountId,
    amount,
    ledger: account.asset.ledger,
    code: transferCodes.invoices.received,
  };
  const shares =
    invoice.split === null
      ? []
      : splitShares(posting.amount, { accountId: invoice.accountId, split: invoice.split }).filter(
          (share) => share.accountId !== invoice.accountId,
        );
  const legs: Leg[] = [{ posting, transfer }];
  for (const share of shares) {
    const payee = await deps.accounts.tenantAccount({ tenantId: invoice.tenantId, id: share.accountId });
    if (payee === null)
      throw new SettlementInvariantError(
        `invoice ${invoice.id} splits to account ${share.accountId}, which is gone`,
      );
    legs.push({
      posting: {
        debitAccountId: posting.creditAccountId,
        creditAccountId: payee.ledgerAccountId,
        amount: share.amount,
        ledger: posting.ledger,
        code: transferCodes.invoices.share,
      },
      transfer: {
        id: receiptShareLedgerId(transfer.id, share.accountId),
        ...(transfer.userData128 === undefined ? {} : { userData128: transfer.userData128 }),
        ...(transfer.evidence === undefined ? {} : { evidence: transfer.evidence }),
        label: `the share of account ${share.accountId} in ${transfer.label ?? `invoice ${invoice.id}`}`,
      },
    });
  }
  // The record raises invoice_moved() when another writer changed the invoice's row after the statement's reads
  // (receiptRecordStatement): the credit is rolled back with it, and written again from new reads.
  const label = transfer.label ?? `the receipt of invoice ${invoice.id}`;
  return whileInvoiceMoved(
    receiptMovedAttemptsMax,
    () => creditedOnce(deps, legs, label, record),
    `the invoice's row changed under the record of ${label} ${receiptMovedAttemptsMax} times; nothing of it was written`,
  );
}

/**
 * `once` tried again, after a pause, while it raises invoice_moved() (another writer changed the invoice's row after
 * its statement's reads: what it wrote was rolled back with it), at most `attemptsMax` times; then `contended`.
 */
async function whileInvoiceMoved<T>(
  attemptsMax: number,
  once: () => Promise<T>,
  contended: string,
): Promise<T> {
  for (let attempt = 1; attempt <= attemptsMax; attempt++) {
    try {
      return await once();
    } catch (error) {
      if (!isInvoiceMoved(error)) throw error;
    }
    await pauseAfterMovedVersion(attempt);
  }
  throw new SettlementContendedError(contended);
}

/** How many times a receipt is credited again because the invoice's row changed under its record. */
const receiptMovedAttemptsMax = 8;

/** One try of creditWithShares: the legs written with the receipt's record, or found with it written alone. */
async function creditedOnce(
  deps: SettlementDeps,
  legs: readonly Leg[],
  label: string,
  record: (first: boolean) => Statement,
): Promise<{ outcome: "credited"; rows: Row[] } | { outcome: "conflict" } | { outcome: "unrecorded" }> {
  // ledger/postings.ts creditChain with a statement, which it does not take yet: that is where this belongs.
  let written: Awaited<ReturnType<typeof deps.ledger.createTransfersWith>>;
  try {
    written = await deps.ledger.createTransfersWith(
      legs.map(({ posting: leg, transfer: made }, i) => ({
        id: made.id,
        debitAccountId: leg.debitAccountId,
        creditAccountId: leg.creditAccountId,
        amount: leg.amount,
        ledger: leg.ledger,
        code: leg.code,
        flags: i < legs.length - 1 ? TransferFlags.linked : 0,
        ...(made.userData128 === undefined ? {} : { userData128: made.userData128 }),
        ...(made.evidence === undefined ? {} : { evidence: made.evidence }),
      })),
      { statement: (made) => (made.every((result) => result.status === "created") ? record(true) : null) },
    );
  } catch (error) {
    if (isReceiptUnrecorded(error)) return { outcome: "unrecorded" };
    throw error;
  }
  const { results, rows } = written;
  if (results.length === legs.length && results.every((result) => result.status === "created"))
    return { outcome: "credited", rows: rows ?? [] };
  if (results.some((result) => result.status.startsWith("exists_with_different_")))
    return { outcome: "conflict" };
  const found = await deps.ledger.lookupTransfers(legs.map((leg) => leg.transfer.id));
  if (found.length === legs.length) {
    const alone = record(false);
    return { outcome: "credited", rows: await deps.db.query(alone.text, alone.params) };
  }
  const refusal = results.find(
    (result) => result.status !== "linked_event_failed" && result.status !== "exists",
  )?.status;
  throw new LedgerPostingError(label, refusal ?? "no result");
}

/**
 * Money came in for `reference` (an invoice id). Credits the invoice's account with what was received, once.
 * An unknown reference is not ours (another gateway on the same node, a test payment): it is reported back.
 */
export type ReceivedEvent = {
  rail: string;
  reference: string;
  amount: bigint;
  evidence: SettlementEvidence;
  /** The receipt's name among the invoice's receipts; absent: the invoice's one receipt. */
  key?: string;
  payer?: string;
  receivedAtMs?: number;
  /** The rail's check that what the event tells still stands, made in the credit's transaction (core/rail.ts). */
  stands?: RailCheck;
};

/**
 * Throws unless the rail's check names an SQL function as it is written into a statement. Made before anything is
 * handed to the ledger's writer: a statement written alongside must not throw (ledger/types.ts Alongside), and one
 * refused by the server fails the batch it went in.
 */
function checkedRailCheck(stands: RailCheck | undefined): void {
  if (stands !== undefined && !/^[a-z_][a-z0-9_]*$/.test(stands.check))
    throw new SettlementInvariantError(`a rail's check "${stands.check}" is no SQL function's name`);
}

/** The call of the rail's check (its name checked: checkedRailCheck), its arguments the parameters from `$first`. */
const railCheckSql = (stands: RailCheck, first: number): string =>
  `${stands.check}(${stands.args.map((_, i) => `$${first + i}`).join(", ")})`;

/** Whether an error is the rail's check finding that what its event told no longer stands (EVM migration 0021). */
const isRailEventGone = (error: unknown): boolean => serverRaised(error, "SYE01");

/**
 * Whether the evidence of money in is of what the rail offered for the invoice, where the evidence names it: the
 * invoice's PaymentIntent, its payment hash. A signed provider event names its object truly, but the reference it
 * carries (a PaymentIntent's metadata) is whatever its creator wrote: another PaymentIntent naming the invoice is
 * not its payment, however much it received.
 */
function offeredFor(invoice: InvoiceTarget, evidence: SettlementEvidence): boolean {
  if (invoice.railReference === null) return true;
  switch (evidence.rail) {
    case "fiat":
      return evidence.pspId === invoice.railReference;
    case "lightning":
      return evidence.paymentHash === invoice.railReference;
    default:
      return true;
  }
}

/**
 * `applied`: the invoice is paid by this event; `received`: credited, the invoice not (or already) paid by it.
 */
export async function applyReceived(
  deps: SettlementDeps,
  event: ReceivedEvent,
): Promise<"applied" | "received" | "duplicate" | "unknown_reference"> {
  if (event.key !== undefined) return applyReceipt(deps, { ...event, key: event.key });
  // Only a named receipt's statement makes the rail's check (receiptRecordStatement): credited without it, the
  // receipt could stand once what it tells no longer does.
  if (event.stands !== undefined)
    throw new SettlementInvariantError(
      `a receipt of ${event.reference} with a rail's check (${event.stands.check}) names no key`,
    );
  let invoice: InvoiceTarget | null | undefined = deps.openInvoices.recall(event.reference);
  if (invoice === undefined) {
    const read = await invoiceTarget(deps.db, event.reference);
    // The invoice is marked paid only after the ledger credited it: a paid (or since reversed) one is done, for
    // its own payment. Another's (a stranger's PaymentIntent naming it) is not ours, paid or not: as a duplicate,
    // the rail would count it as credited, and a dispute of it would take back from the invoice.
    if (
      read !== null &&
      read.rail === event.rail &&
      read.status !== "open" &&
      offeredFor(read, event.evidence)
    )
      return "duplicate";
    invoice = read;
  }
  if (invoice === null || invoice.rail !== event.rail || !offeredFor(invoice, event.evidence))
    return "unknown_reference";
  // The status move and its events in one statement, written with the credit: all or none. The receipt's event
  // first, as a named receipt's (applyReceipt): what came, in what, and the invoice's total. A first credit (`first`)
  // that moves nothing (the invoice no longer open, or gone: the L402 prune deletes an unpaid challenge's invoice,
  // which this process may still remember open) raises receipt_unrecorded(), and the credit is rolled back with it.
  // Before, the credit committed with nothing counting it, no event, and the receipt was answered `duplicate`.
  const marked = (first: boolean): Statement => ({
    text: `WITH moved AS (
       UPDATE invoices SET status = 'paid', received_amount = $2, evidence = $3, paid_at = now(), payer = $5
       WHERE id = $1 AND status = 'open' RETURNING tenant_id),
     announced AS (
       INSERT INTO outbox (tenant_id, type, payload)
       SELECT tenant_id, e.type, e.payload FROM moved
         CROSS JOIN (VALUES (1, 'invoice.payment_received', $6::jsonb), (2, 'invoice.paid', $4::jsonb))
           AS e (place, type, payload)
       ORDER BY e.place RETURNING id)
     SELECT CASE WHEN EXISTS (SELECT 1 FROM moved) THEN true
                 WHEN $7::boolean THEN receipt_unrecorded() ELSE false END AS moved`,
    params: [
      invoice.id,
      event.amount,
      toJson(event.evidence),
      toJson({ invoice_id: invoice.id }),
      event.payer ?? null,
      toJson({
        invoice_id: invoice.id,
        asset: invoice.assetCode,
        amount: event.amount.toString(),
        received_amount: event.amount.toString(),
        ...(event.payer === undefined ? {} : { payer: event.payer }),
        late: false,
      }),
      first,
    ],
  });
  const credited = await creditWithShares(
    deps,
    invoice,
    event.amount,
    {
      id: receiptLedgerId(invoice.id),
      userData128: derivedLedgerId(invoice.id, "invoice"),
      evidence: evidenceForLedger(event.evidence),
      label: `the receipt of invoice ${invoice.id}`,
    },
    marked,
  );
  if (credited.outcome === "unrecorded")
    return await unrecordedReceipt(deps, invoice.id, `the receipt of invoice ${invoice.id}`);
  if (credited.outcome === "conflict") {
    // Remembered as open here, but another process may have credited it already (with other evidence): then this
    // is a duplicate, not a failure to retry for ever.
    const read = await invoiceTarget(deps.db, invoice.id);
    if (read !== null && read.status !== "open") {
      deps.openInvoices.forget(invoice.id);
      return "duplicate";
    }
    throw new SettlementInvariantError(
      `invoice ${invoice.id} is open but the ledger holds another receipt for it`,
    );
  }
  const [row] = credited.rows as { moved: boolean }[];
  if (row?.moved !== true) {
    deps.openInvoices.forget(invoice.id);
    return "duplicate";
  }
  invoicePaid(deps, invoice.id);
  return "applied";
}

/** Whether an error is receipt_unrecorded() (migration 0066), along its causes. */
const isReceiptUnrecorded = (error: unknown): boolean => serverRaised(error, "SYR06");

/**
 * A first credit of a receipt that its record found nothing to count on (receipt_unrecorded(): the credit was rolled
 * back with it, nothing of the receipt written). The invoice gone (the L402 prune deleted it after this process found
 * it in its memory) is not ours, as a process that did not remember it answers: `unknown_reference`. Otherwise the
 * invoice is not as any receipt leaves it (an unnamed receipt's invoice paid or reversed, its receipt never credited;
 * a named receipt counted, never credited): a bug or broken data, raised.
 */
async function unrecordedReceipt(
  deps: SettlementDeps,
  invoiceId: string,
  what: string,
): Promise<"unknown_reference"> {
  deps.openInvoices.forget(invoiceId);
  const read = await invoiceTarget(deps.db, invoiceId);
  if (read === null) return "unknown_reference";
  throw new SettlementInvariantError(
    `${what} was never credited, yet invoice ${invoiceId} (${read.status}) could not count it: nothing of it was written`,
  );
}

/**
 * One named receipt of an invoice (see the outcomes at the top): credited once under an id derived from the
 * invoice and the key and counted once (invoice_receipts) in the same transaction (receiptRecordStatement), the
 * invoice paid when the total reaches its amount.
 */
async function applyReceipt(
  deps: SettlementDeps,
  event: ReceivedEvent & { key: string },
): Promise<"applied" | "received" | "duplicate" | "unknown_reference"> {
  const invoice =
    deps.openInvoices.recall(event.reference) ?? (await invoiceTarget(deps.db, event.reference));
  if (invoice === null || invoice.rail !== event.rail || !offeredFor(invoice, event.evidence))
    return "unknown_reference";
  checkedRailCheck(event.stands);
  const credited = await creditWithShares(
    deps,
    invoice,
    event.amount,
    {
      id: receiptLedgerId(invoice.id, event.key),
      userData128: derivedLedgerId(invoice.id, "invoice"),
      evidence: receiptEvidence(event),
      label: `receipt ${event.key} of invoice ${invoice.id}`,
    },
    (first) => receiptRecordStatement(invoice, event, first),
  );
  if (credited.outcome === "unrecorded")
    return await unrecordedReceipt(deps, invoice.id, `receipt ${event.key} of invoice ${invoice.id}`);
  if (credited.outcome === "conflict")
    throw new SettlementInvariantError(
      `receipt ${event.key} of invoice ${invoice.id} is in the ledger with other terms`,
    );
  const [counted] = credited.rows as { paid_now: boolean | null }[];
  const paidNow = counted?.paid_now ?? null;
  const outcome = paidNow === null ? "duplicate" : paidNow ? "applied" : "received";
  if (outcome === "applied") invoicePaid(deps, invoice.id);
  return outcome;
}

/**
 * The record of a named receipt, written with its credit (creditWithShares): its `invoice_receipts` row (once per
 * key: a receipt recorded already adds nothing, its `paid_now` null), `late` if it arrived after the invoice's
 * expiry, the invoice's running total, payer and evidence, `paid` when what it holds reaches the amount, and
 * `invoice.payment_received` (then `invoice.paid`). The invoice's row is locked after its `refundable` row (below), so
 * that receipts of one invoice count one after another. Returns one row, `paid_now`. An invoice gone refuses the row (its foreign key), and the
 * credit with it; so does, with receipt_unrecorded(), a row already there on a `first` credit (written with the
 * chain: counted, never credited), rather than let the credit commit with nothing counting it.
 *
 * What it holds is what its receipts brought less the receipts reversals took back and what its refunds not failed
 * took of it (heldSql): a deposit a reorg removed pays nothing, nor does what was refunded of it. Before, a receipt counted
 * against the amount all that came, so an open invoice whose first deposit was reorganised away was paid by a second of
 * less than its amount; and it moved only an open invoice, so one reversed by a reorg stayed reversed however much the
 * payer sent again. A reversed invoice is paid again only when no dispute stands (a reversal of its money:
 * disputedSql). An open or reversed invoice is counted only as its row was read: a reversal recorded after this
 * statement's reads marks the row (which this waits for) and is not in what it counts, nor is a receipt counted
 * meanwhile, nor a reversal given back (applyReinstated writes the row too); then invoice_moved() is raised
 * (migration 0067), the credit rolled back with it, and the receipt credited again from new reads (creditWithShares).
 * Before, a reversal left an open row as it was, and a receipt that had read the invoice before it counted the receipt
 * it took back: an invoice of 10 was paid by 6 over a reorganised 4. Two receipts at once both count: the second,
 * finding the row moved by the first, is credited again after it.
 *
 * What its refunds took is read from the invoice's `refundable` row as it stands, touched (locked, its version moved)
 * before the invoice's row, the order a reversal and a reinstatement take the two: a refund's claim never writes the
 * invoice's row, so neither its lock nor its version showed one committed after this statement's snapshot, and the
 * invoice was paid while the payer had got back part of what it counted. A refund that read the row before is refused
 * its claim and computed again (payments/refunds-store.ts claimStatement).
 *
 * The rail's check that the event still stands (`stands`: an EVM deposit's log not removed by a reorg meanwhile) is
 * made in it too, so that the credit commits only while it does, and whatever would make it raise waits for the commit
 * (then finds the credit). Before, a reorg's removal applied while the credit was on its way found nothing to take
 * back, and the credit then stood with nothing on chain unless the watcher that made it lived to look again.
 */
function receiptRecordStatement(
  invoice: InvoiceTarget,
  event: ReceivedEvent & { key: string },
  first: boolean,
): Statement {
  // Its name checked by applyReceipt, before the ledger's writer calls this.
  const stands = event.stands;
  // `(SELECT count(*) FROM touched) >= 0` is always true. It is there so that `before` reads `touched`: the refundable
  // row is then written (and locked) before the invoice's row is locked FOR UPDATE, the order a reversal and a
  // reinstatement take the two. A data-modifying WITH that no part reads runs in no set order beside the rest.
  return {
    text: `WITH
     stands AS (SELECT ${stands === undefined ? "true" : railCheckSql(stands, 11)} AS stands),
     touched AS (
       INSERT INTO refundable AS r (target_id, paid, refunded)
       SELECT id, received_amount, 0 FROM invoices WHERE id = $1 AND received_amount > 0
       ON CONFLICT (target_id) DO UPDATE SET paid = GREATEST(r.paid, EXCLUDED.paid)
       RETURNING r.refunded, r.discounted),
     before AS (
       SELECT i.status, i.amount, i.received_amount, coalesce(i.received_amount, 0) AS received,
         ${disputedSql("$1")} AS disputed,
         i.xmin::text = (SELECT xmin::text FROM invoices WHERE id = $1) AS as_read,
         i.expires_at IS NOT NULL AND $7::timestamptz > i.expires_at AS late
       FROM invoices i WHERE i.id = $1 AND (SELECT count(*) FROM touched) >= 0 FOR UPDATE),
     inserted AS (
       INSERT INTO invoice_receipts (invoice_id, key, amount, payer, late, evidence, received_at)
       VALUES ($1, $2, $3::bigint, $4::text, coalesce((SELECT late FROM before), false), $5::jsonb, $7::timestamptz)
       ON CONFLICT (invoice_id, key) DO NOTHING RETURNING late),
     counted AS (
       SELECT before.received + $3::bigint AS total, inserted.late,
         (before.status = 'open' OR (before.status = 'reversed' AND NOT before.disputed)) AND before.as_read
           AND ${heldSql("before", "$1", "touched")} + $3::bigint
             >= before.amount AS paid_now,
         NOT before.as_read AND (before.status = 'open' OR (before.status = 'reversed' AND NOT before.disputed))
           AS read_moved
       FROM before, inserted),
     moved AS (
       UPDATE invoices SET received_amount = counted.total, payer = coalesce(invoices.payer, $4::text),
         evidence = coalesce(invoices.evidence, $5::jsonb),
         status = CASE WHEN counted.paid_now THEN 'paid' ELSE invoices.status END,
         paid_at = CASE WHEN counted.paid_now THEN coalesce(invoices.paid_at, now()) ELSE invoices.paid_at END
       FROM counted WHERE invoices.id = $1 RETURNING 1),
     announced AS (
       INSERT INTO outbox (tenant_id, type, payload)
       SELECT $6, e.type, e.payload FROM counted
         CROSS JOIN LATERAL (VALUES
           (1, 'invoice.payment_received',
             $8::jsonb || jsonb_build_object('received_amount', counted.total::text, 'late', counted.late)),
           (2, 'invoice.paid', $9::jsonb)) AS e (place, type, payload)
       WHERE e.place = 1 OR counted.paid_now
       ORDER BY e.place RETURNING 1)
     SELECT counted.paid_now,
       CASE WHEN counted.paid_now IS NULL AND $10::boolean THEN receipt_unrecorded() ELSE true END AS recorded,
       CASE WHEN counted.read_moved THEN invoice_moved() ELSE true END AS as_read,
       (SELECT stands FROM stands) AS stands
     FROM (SELECT 1) AS one LEFT JOIN counted ON true`,
    params: [
      invoice.id,
      event.key,
      event.amount,
      event.payer ?? null,
      toJson(event.evidence),
      invoice.tenantId,
      new Date(event.receivedAtMs ?? Date.now()),
      toJson({
        invoice_id: invoice.id,
        receipt: event.key,
        asset: invoice.assetCode,
        amount: event.amount.toString(),
        ...(event.payer === undefined ? {} : { payer: event.payer }),
      }),
      toJson({ invoice_id: invoice.id }),
      first,
      ...(stands?.args ?? []),
    ],
  };
}

/** The ledger's evidence of a receipt: the rail's, with the payer (where a refund goes) in its detail. */
function receiptEvidence(event: ReceivedEvent) {
  const evidence = evidenceForLedger(event.evidence);
  if (event.payer === undefined) return evidence;
  return { ...evidence, detail: { ...evidence.detail, payer: event.payer } };
}

/** Why a payer's signed payment for an invoice was refused: the rail's reasons, or the invoice's own state. */
export type InvoicePaymentRefusal = SignedPaymentRefusal | "invoice_not_found";

export type SubmitInvoicePaymentResult =
  | { ok: true; invoice: Invoice; railReference: string; taken?: boolean }
  | { ok: false; refusal: InvoicePaymentRefusal; message: string };

/**
 * A payer's signed payment (an EIP-3009 authorization) for a tenant's invoice, handed to the invoice's rail, which
 * checks it and submits it; credited when the rail reports it received. A paid or expired invoice takes none. A
 * reversed one takes one as an open one does when it is due again: the reversals that stand are of receipts a reorg
 * took back (none a dispute, over which no receipt pays) and what it still holds is below its amount (heldSql), so
 * that the receipt pays it again (receiptRecordStatement), with invoice.paid. Before, only an open invoice took one,
 * though a deposit to its address paid a reversed one again, and so did the rail's own route (its client secret), which
 * asks nothing of the invoice's status. The rail takes the invoice's amount, whatever it holds (its instructions' terms,
 * as of an open invoice part-paid by deposit): what is over is refundable.
 */
export async function submitInvoicePayment(
  deps: SettlementDeps,
  params: { tenantId: string; id: string; fields: Readonly<Record<string, string>> },
): Promise<SubmitInvoicePaymentResult> {
  const invoice = await getInvoice(deps.db, { tenantId: params.tenantId, id: params.id });
  if (invoice === null)
    return { ok: false, refusal: "invoice_not_found", message: `no invoice "${params.id}"` };
  if (invoice.status === "reversed") {
    const due = await dueAgain(deps.db, invoice.id);
    if (due !== null)
      return {
        ok: false,
        refusal: "invoice_not_payable",
        message: `invoice ${invoice.id} is reversed: ${due}`,
      };
  } else if (invoice.status !== "open")
    return {
      ok: false,
      refusal: "invoice_not_payable",
      message: `invoice ${invoice.id} is ${invoice.status}`,
    };
  if (invoice.expiresAt !== null && invoice.expiresAt.getTime() <= Date.now())
    return { ok: false, refusal: "authorization_expired", message: `invoice ${invoice.id} has expired` };
  const submit = deps.rails.get(invoice.rail)?.submitSignedPayment;
  if (submit === undefined)
    return {
      ok: false,
      refusal: "invoice_not_payable",
      message: `rail ${invoice.rail} takes no signed payments`,
    };
  const outcome = await submit({ reference: invoice.id, fields: params.fields });
  if (outcome.status === "refused") return { ok: false, refusal: outcome.code, message: outcome.message };
  // `taken` as the rail says it (false: no receipt can come before its next broadcast, so the x402 settler waits none).
  return {
    ok: true,
    invoice,
    railReference: outcome.railReference,
    ...(outcome.taken === undefined ? {} : { taken: outcome.taken }),
  };
}

/**
 * Why reversed invoice `id` is not due again (null: it is): a dispute stands, or what it still holds covers its amount
 * (a receipt counted while a reorg of another was being recorded: receiptRecordStatement pays only from reads of the
 * row as it stands).
 */
async function dueAgain(sql: Sql, id: string): Promise<string | null> {
  const [row] = await sql.query<{ disputed: boolean; held: bigint; amount: bigint }>(
    `SELECT ${disputedSql("$1")} AS disputed, (${heldSql("i", "$1")})::bigint AS held, i.amount
     FROM invoices i WHERE i.id = $1`,
    [id],
  );
  if (row === undefined) return "it is gone";
  if (row.disputed) return "a reversal of its payment stands";
  if (row.held >= row.amount) return `it holds ${row.held} of its ${row.amount} already`;
  return null;
}

/** The HTTP status of each refusal of a signed payment (the API's errors map them with this). */
export const invoicePaymentRefusalStatus: Record<InvoicePaymentRefusal, number> = {
  invoice_not_found: 404,
  signature_invalid: 400,
  authorization_mismatch: 400,
  authorization_expired: 400,
  authorization_used: 409,
  payer_insufficient_funds: 402,
  invoice_not_payable: 409,
  rail_unavailable: 402,
  rail_unreachable: 503,
};

/**
 * Money that came in was taken back (a dispute, a refund of a top-up, a reorg of a credited deposit). The account
 * gives back what it still has, up to the amount (a balancing debit: never below zero); the rest is the reversal's
 * shortfall, reported, recorded per account with its record and collected from what is given back to that account
 * later (shortfalls.ts). An invoice with a split takes back from each payee its part of the reversal (split-reversal.ts
 * takeBackShares: proportional to the shares the invoice's receipts credited it, floored, of all that its refunds and
 * reversals took back with this one, less what they took from it before, never more than what is left of them, read
 * at one version of the invoice's `refundable` row: takeBackReversal), and the rest from the invoice's account; each
 * payee, too, gives back at most what it holds. The legs are one linked ledger chain: all of them or none, written in
 * one transaction with the reversal's record (reversalRecordStatement).
 * Each reversal (by `key`) is recorded once with its own `invoice.reversed` event, so a second partial refund is
 * announced too; a reversal withdrawn before it arrived (see applyReinstated) takes nothing. From its record on, every
 * refund of the invoice counts it (a dispute: none passes until it is withdrawn): the record's statement touches the
 * invoice's `refundable` row, which every refund's claim of an invoice is checked against (payments/refunds.ts
 * holdAndClaim), split or not. A reversal that names the one credit it takes back (`takes`: a receipt, or what a
 * reinstatement gave back) takes nothing when that credit was never made: `not_received` (creditedBy); otherwise its
 * record names the receipt (reversalRecordStatement), and it is counted as that receipt taken back rather than as a
 * dispute: refunds go on, of what is left (payments/refunds.ts holdAndClaim), a paid invoice that still holds its
 * amount without the receipt stays paid (reversalRecordStatement), and further receipts pay the invoice again once
 * what it holds reaches the amount (receiptRecordStatement).
 */
export async function applyReversed(
  deps: SettlementDeps,
  event: {
    rail: string;
    reference: string;
    key: string;
    amount: bigint;
    evidence: SettlementEvidence;
    takes?: ReversalTakes;
  },
): Promise<{
  status: "applied" | "duplicate" | "withdrawn" | "unknown_reference" | "not_received";
  shortfall: bigint;
}> {
  const invoice = await invoiceTarget(deps.db, event.reference);
  if (invoice === null || invoice.rail !== event.rail) return { status: "unknown_reference", shortfall: 0n };
  if (event.takes !== undefined) {
    const credited = await creditedBy(deps, invoice, event.takes);
    if (credited === "none") return { status: "not_received", shortfall: 0n };
    // Given back on the ledger and not marked (the giving process died between its chain and its mark, or marks after
    // this): marked first, as its own run would, so that this reversal takes back from the accounts given back to
    // (takeBackShares counts every reversal not marked) and the one it takes again is not counted beside it. Before,
    // that reversal stood unmarked for good once its log was removed (no run of it came again), the deposit counted as
    // taken back twice. The mark does not pay the invoice when this reversal is to take the deposit again: its
    // `invoice.paid` would tell of money known gone, this reversal's record marking it reversed a moment later. One
    // withdrawn already takes nothing, and the mark pays as its own run would; told by it, as its run's is. Before,
    // what it paid was dropped: `invoice.paid` went out, and the process's listeners never heard it. Whether this
    // reversal is withdrawn is read in the mark's statement, the invoice's row locked (paidIfDue). Before, it was read
    // here: a withdrawal committed between that read and the mark found the mark not made (the invoice not due), and
    // the mark, told "not withdrawn", paid nothing either: the invoice reversed for good with the deposit credited.
    if (credited === "unmarked" && "reinstated" in event.takes) {
      await applyReinstated(
        deps,
        {
          rail: event.rail,
          reference: event.reference,
          key: event.takes.reinstated,
          evidence: event.evidence,
        },
        { finishing: event.key },
      );
    }
  }
  // Given back already, or withdrawn before it came: it takes nothing (or gives back at once what a run of this
  // that raced the withdrawal took).
  const withdrawn = async () => {
    await giveBack(deps, invoice, event.key, event.evidence);
    return { status: "withdrawn" as const, shortfall: 0n };
  };
  if ((await reversalRecord(deps.db, invoice.id, event.key))?.reinstated === true) return await withdrawn();
  try {
    const chain = await takeBackReversal(deps, invoice, event);
    const taken = chain.taken.reduce((sum, amount) => sum + amount, 0n);
    // Recorded with the legs; or the legs were there already (a redelivery, a run that raced this one, a chain an
    // earlier version wrote apart from its record) or there were none to write: recorded now, unless it is.
    let rows = chain.rows;
    if (rows === null) {
      const record = reversalRecordStatement(
        invoice,
        event,
        { taken, shortfalls: legShortfalls(chain.legs, chain.taken) },
        null,
      );
      rows = await recordedAlone(deps.db, record, `reversal ${event.key} of invoice ${invoice.id}`);
    }
    const [row] = rows;
    const status = row?.recorded === true ? ("applied" as const) : ("duplicate" as const);
    return { status, shortfall: event.amount - taken };
  } catch (error) {
    // Withdrawn since the check above: its legs, if this wrote them, were rolled back with the statement; legs an
    // earlier run left are given back.
    if (isReversalWithdrawn(error)) return await withdrawn();
    throw error;
  }
}

/**
 * A reversal's record written on its own, its legs there before it: written again, from new reads, while the invoice's
 * row changes under it (invoice_moved(): reversalRecordStatement).
 */
function recordedAlone(db: Db, record: Statement, label: string): Promise<Row[]> {
  return whileInvoiceMoved(
    reversalClaimAttemptsMax,
    () => db.query(record.text, record.params),
    `the invoice's row changed under the record of ${label} ${reversalClaimAttemptsMax} times; it is not recorded`,
  );
}

/** The one credit a reversal takes back, when it names one (core/rail.ts, the `reversed` event's `takes`). */
type ReversalTakes = { readonly receipt: string } | { readonly reinstated: string };

/**
 * Whether the one credit a reversal takes back was made (the rail's event for it may have been delivered and failed
 * before it was): the receipt's ledger transfer, not its invoice_receipts row (written with it now, but after it by
 * an earlier version: a crash between the two left the money credited without the row); or the reversal given back,
 * by its record or by any ledger transfer that gave it back (applyReinstated marks the record after them:
 * givenBackOnLedger): "unmarked", for applyReversed to mark. Before, only the invoice's leg was looked for: a
 * give-back of the payees' shares alone (a split of 100%) that committed before the removal was found not given back,
 * and stood with nothing on chain.
 */
async function creditedBy(
  deps: SettlementDeps,
  invoice: InvoiceTarget,
  takes: ReversalTakes,
): Promise<"credited" | "unmarked" | "none"> {
  if ("receipt" in takes)
    return (await deps.ledger.lookupTransfers([receiptLedgerId(invoice.id, takes.receipt)])).length > 0
      ? "credited"
      : "none";
  if ((await reversalRecord(deps.db, invoice.id, takes.reinstated))?.reinstated === true) return "credited";
  return (await givenBackOnLedger(deps, invoice, takes.reinstated)) ? "unmarked" : "none";
}

/**
 * The record of reversal `key` of an invoice that took `taken`: the `invoice_reversals` row (once per key: `recorded`
 * says whether this statement wrote it; one recorded as given back raises reversal_withdrawn(), isReversalWithdrawn,
 * so that legs written with it are rolled back), with its `shortfalls` (what each leg could not take, per account:
 * shortfalls.ts, collected from what is given back to the account later), the invoice `reversed` (a paid one that
 * still holds its amount stays paid: see below), the `invoice.reversed` event, and a touch of the
 * invoice's `refundable` row (created if no refund made it yet; none for an invoice that received nothing: no refund
 * of it can be) that moves its version, so that a refund that read the row before is refused its claim and reads
 * again, finding the record (payments/refunds.ts holdAndClaim). Written in the transaction of the reversal's legs
 * (takeBackReversal), so no refund ever sees the legs without the record. `readAt` (claimableOf's version, with a
 * split, with what the invoice had received then): the touch passes only if the row is still that version and the
 * invoice received nothing more since (a further receipt credits the payees again), so that what the legs were
 * computed from is of one state with the refunds' claims; otherwise refund_exceeds_remaining() is raised
 * (isRefundExceeding) and the transaction, legs and all, is rolled back. null: any version passes (the touch waits
 * for a claim holding the row's lock: that refund came first). The record names the receipt the reversal takes back
 * (`takes`: that receipt, or the one the reversal given back that it takes again took; migration 0065), null for a
 * reversal of the invoice's money.
 *
 * A reversal of a receipt leaves a paid invoice paid when what it still holds without that receipt (heldSql, its
 * refunds not failed read from the touched `refundable` row, less what this one asked: what it took and its
 * shortfalls) is its amount or more and no dispute stands, as a receipt and a reinstatement pay it
 * (receiptRecordStatement, applyReinstated): an over-paid invoice one of whose deposits a reorg removed is still paid.
 * Before, the refunds were left out: an over-paid invoice whose excess the merchant refunded stayed paid when a reorg
 * took the receipt that had paid it, its account holding nothing of it. What they refunded is read from the row the
 * touch locked, as it stands, not from the statement's snapshot: a refund claimed after the snapshot (its claim holds
 * the row until it commits, and the touch waits for it) counts too. Its `invoice.reversed` goes out all the same: it
 * tells what was taken back, as it does of an open invoice, whose status no reversal changes, and says the status it left
 * (`invoice_status`), so that a consumer tells a paid invoice that stays paid from one that does not. Before, every
 * reversal marked a paid invoice `reversed`. What it holds is read from the statement's snapshot, so the invoice's
 * row is locked last (`standing`, read by the last column: after the record and the touch of `refundable`, the order
 * applyReinstated takes the three), the row is changed whenever a record is written (an open one too, its status as
 * it was: a receipt that read it before then finds it moved, receiptRecordStatement), and when a paid row was changed
 * since the snapshot (another reversal of a receipt recorded meanwhile, which this one's reads left out, or a
 * receipt) invoice_moved() is raised (migration 0067, isInvoiceMoved), the legs rolled back with it, and the reversal
 * computed again (takeBackReversal). Otherwise two reorgs at once could each leave the invoice paid on the receipt the
 * other took back.
 */
function reversalRecordStatement(
  invoice: InvoiceTarget,
  event: { key: string; amount: bigint; takes?: ReversalTakes },
  took: { taken: bigint; shortfalls: readonly LegShortfall[] },
  readAt: { version: string; received: bigint } | null,
): Statement {
  const { taken, shortfalls } = took;
  const payload = {
    invoice_id: invoice.id,
    reversal: event.key,
    asset: invoice.assetCode,
    amount: taken.toString(),
    shortfall: (event.amount - taken).toString(),
  };
  return {
    text: `WITH
     received AS (SELECT coalesce(received_amount, 0) AS amount FROM invoices WHERE id = $1),
     touched AS (
       INSERT INTO refundable AS r (target_id, paid, refunded) SELECT $1, amount, 0 FROM received WHERE amount > 0
       ON CONFLICT (target_id) DO UPDATE SET paid = GREATEST(r.paid, EXCLUDED.paid)
         WHERE $2::text IS NULL OR r.xmin::text = $2::text
       RETURNING r.refunded, r.discounted),
     recorded AS (
       INSERT INTO invoice_reversals (invoice_id, key, amount, receipt)
       VALUES ($1, $3, $4, coalesce($10::text,
         (SELECT receipt FROM invoice_reversals WHERE invoice_id = $1 AND key = $11::text)))
       ON CONFLICT (invoice_id, key) DO UPDATE SET amount = invoice_reversals.amount
         WHERE invoice_reversals.reinstated_at IS NOT NULL
       RETURNING xmax = 0 AS inserted, receipt),
     standing AS (
       SELECT i.status, i.amount, ${disputedSql("$1")} AS disputed,
         ${heldSql("i", "$1", "touched")} - $4::bigint
           - (SELECT coalesce(sum(s.amount::bigint), 0) FROM unnest($9::text[]) AS s (amount)) AS held,
         i.xmin::text = (SELECT xmin::text FROM invoices WHERE id = $1) AS as_read
       FROM invoices i WHERE i.id = $1 AND EXISTS (SELECT 1 FROM recorded WHERE inserted) FOR UPDATE),
     kept AS (
       SELECT standing.status = 'paid' AND recorded.receipt IS NOT NULL AND NOT standing.disputed
           AND standing.held >= standing.amount AS paid,
         standing.status = 'paid' AND recorded.receipt IS NOT NULL AND NOT standing.as_read AS moved
       FROM standing, recorded WHERE recorded.inserted),
     marked AS (
       UPDATE invoices SET status = CASE WHEN kept.paid OR invoices.status = 'open' THEN invoices.status
                                         ELSE 'reversed' END
       FROM kept WHERE invoices.id = $1
       RETURNING invoices.status),
     announced AS (
       INSERT INTO outbox (tenant_id, type, payload)
       SELECT $5, 'invoice.reversed', $6::jsonb || jsonb_build_object('invoice_status', marked.status)
       FROM recorded, marked WHERE recorded.inserted
       RETURNING 1),
     short AS (
       INSERT INTO reversal_shortfalls (invoice_id, reversal_key, account_id, amount)
       SELECT $1, $3, s.account_id, s.amount::bigint FROM unnest($8::text[], $9::text[]) AS s (account_id, amount)
       WHERE EXISTS (SELECT 1 FROM recorded WHERE inserted)
       RETURNING 1)
     SELECT EXISTS (SELECT 1 FROM recorded WHERE inserted) AS recorded,
       CASE WHEN EXISTS (SELECT 1 FROM recorded WHERE NOT inserted) THEN reversal_withdrawn() ELSE true
         END AS standing,
       CASE WHEN $7::bigint IS NOT NULL AND NOT EXISTS (SELECT 1 FROM received WHERE amount = $7::bigint)
              THEN refund_exceeds_remaining()
            WHEN NOT EXISTS (SELECT 1 FROM received WHERE amount > 0) OR EXISTS (SELECT 1 FROM touched) THEN true
            ELSE refund_exceeds_remaining() END AS touched,
       CASE WHEN EXISTS (SELECT 1 FROM kept WHERE moved) THEN invoice_moved() ELSE true END AS as_read`,
    params: [
      invoice.id,
      readAt?.version ?? null,
      event.key,
      taken,
      invoice.tenantId,
      toJson(payload),
      readAt?.received ?? null,
      shortfalls.map((shortfall) => shortfall.accountId),
      shortfalls.map((shortfall) => shortfall.amount.toString()),
      event.takes !== undefined && "receipt" in event.takes ? event.takes.receipt : null,
      event.takes !== undefined && "reinstated" in event.takes ? event.takes.reinstated : null,
    ],
  };
}

/**
 * How many times a reversal is computed again because a refund of its (split) invoice was claimed meanwhile, or the
 * invoice's row changed under its record.
 */
export const reversalClaimAttemptsMax = 8;

/**
 * Takes the reversal back from the invoice's account and its split's payees, with its record
 * (reversalRecordStatement); returns what each leg took, and the record statement's rows when this call wrote the
 * legs. Each payee's part (split-reversal.ts takeBackShares: proportional to what the invoice credited it, floored,
 * of all that the invoice's refunds and reversals took back with this one, less what they took from it before, never
 * more than what is left of that), the rest from the invoice's account; each gives back at most what it holds
 * (a balancing debit), all in one linked chain, each leg under an id of its own derived from the reversal: a
 * redelivery after a crash takes nothing twice and finds what each leg took.
 *
 * With a split, the reversal and the invoice's refunds see each other through the invoice's `refundable` row, as
 * refunds see one another (payments/refunds.ts holdAndClaim): its version is read first, then what refunds and other
 * reversals took of each credit and of the invoice (split-reversal.ts takenBackBefore), and the chain is written with
 * a touch of the row that passes only if the row is still that version. So a refund claimed after those reads refuses
 * the chain (nothing written; computed again from new reads), and a refund that read the row before the chain is
 * refused its claim by the touch and computed again, finding the reversal.
 */
async function takeBackReversal(
  deps: SettlementDeps,
  invoice: InvoiceTarget,
  event: { key: string; amount: bigint; evidence: SettlementEvidence; takes?: ReversalTakes },
): Promise<{ taken: bigint[]; rows: Row[] | null; legs: { accountId: string; asked: bigint }[] }> {
  const split = invoice.split !== null && invoice.split.length > 0;
  for (let attempt = 1; attempt <= reversalClaimAttemptsMax; attempt++) {
    // The version first, then every read the legs are computed from.
    const readAt = split ? (await claimableOf(deps.db, invoice.id)).version : null;
    const whole = await invoiceReceived(deps.db, invoice.id);
    const payees = await splitPayees(deps, invoice, { exceptReversal: event.key });
    const before = split ? await takenBackBefore(deps.db, invoice, { exceptReversal: event.key }) : 0n;
    const shares = takeBackShares(event.amount, whole, payees, before);
    const legs = reversalLegs(invoice, event, { ...(await accountsFor(deps, invoice)), shares });
    // Whose each leg is, in the legs' order (the payees', then the invoice's account), and what it asked.
    const owners = [...shares.map((share) => share.accountId), invoice.accountId];
    const asked = legs.map((leg, i) => ({ accountId: owners[i]!, asked: leg.posting.amount }));
    try {
      const chain = await takeBackChain(
        deps.ledger,
        legs,
        `reversal ${event.key} of invoice ${invoice.id}`,
        (taken) =>
          reversalRecordStatement(
            invoice,
            event,
            {
              taken: taken.reduce((sum, amount) => sum + amount, 0n),
              shortfalls: legShortfalls(asked, taken),
            },
            readAt === null ? null : { version: readAt, received: whole },
          ),
      );
      return { ...chain, legs: asked };
    } catch (error) {
      if (!isRefundExceeding(error) && !isInvoiceMoved(error)) throw error;
    }
    // A refund of the invoice was claimed or given back since the reads, or the invoice's row changed under the
    // record (reversalRecordStatement): a random pause, then new reads.
    await pauseAfterMovedVersion(attempt);
  }
  throw new SettlementContendedError(
    `refunds of invoice ${invoice.id}, or its row, moved under reversal ${event.key} ${reversalClaimAttemptsMax} times; ` +
      "nothing of it was written",
  );
}

/** Refunds of an invoice kept being claimed while a reversal of it was computed: nothing was written (redeliver). */
export class SettlementContendedError extends SwitchyardError {
  override name = "SettlementContendedError";
}

/** The reversal's legs: each payee's share, then the rest from the invoice's account; each to the rail's clearing. */
function reversalLegs(
  invoice: InvoiceTarget,
  event: { key: string; amount: bigint; evidence: SettlementEvidence },
  from: { account: AccountRecord; clearing: AccountRecord; shares: readonly PayeeShare[] },
): TakeBackLeg[] {
  const fromPayees = from.shares.reduce((sum, share) => sum + share.amount, 0n);
  const leg = (accountLedgerId: bigint, amount: bigint, id: bigint, label: string): TakeBackLeg => ({
    posting: {
      debitAccountId: accountLedgerId,
      creditAccountId: from.clearing.ledgerAccountId,
      amount,
      ledger: from.account.asset.ledger,
      code: transferCodes.invoices.reversed,
    },
    transfer: {
      id,
      userData128: derivedLedgerId(invoice.id, "invoice"),
      evidence: evidenceForLedger(event.evidence),
      label,
    },
  });
  return [
    ...from.shares.map((share) =>
      leg(
        share.ledgerAccountId,
        share.amount,
        reversalShareLedgerId(invoice.id, event.key, share.accountId, "reversed"),
        `account ${share.accountId}'s share of reversal ${event.key} of invoice ${invoice.id}`,
      ),
    ),
    leg(
      from.account.ledgerAccountId,
      event.amount - fromPayees,
      reversalLedgerId(invoice.id, event.key, "reversed"),
      `reversal ${event.key} of invoice ${invoice.id}`,
    ),
  ];
}

/** The ledger transfer that took reversal `key` of an invoice, or the one that gave it back. */
const reversalLedgerId = (invoiceId: string, key: string, which: "reversed" | "reinstated") =>
  derivedLedgerId(`${invoiceId}:${key}`, which);

/**
 * Gives back what the reversal `key` took, from the invoice's account and each payee's, where its ledger transfers
 * exist, and what was collected of its shortfall since (shortfalls.ts); returns the amount given back, and of it what
 * the collections were (the record's shortfalls are closed only if that is all of them). Of what each account gets
 * back, the outstanding shortfalls of the invoice's other reversals on it are collected first (a refund made at the
 * provider that failed gives back to an account a dispute of the same payment could not take all of). The moves
 * back and the collections are one linked chain, their record written in its transaction: all or none. Each move
 * back is written once (its id derived from what it gives back); computed again when the shortfalls moved under it.
 *
 * The rail's check that what gives the reversal back still stands (`stands`: an EVM deposit's log mined again, not
 * removed by a reorg since; its name checked by the caller) is made in that transaction too, as a receipt's credit
 * makes it (receiptRecordStatement): a removal marked first refuses the chain, and one marked after waits for its
 * commit and finds it (creditedBy). Before, a give-back that committed after a removal had found nothing given back
 * stood with nothing on chain.
 */
async function giveBack(
  deps: SettlementDeps,
  invoice: InvoiceTarget,
  key: string,
  evidence: SettlementEvidence,
  stands?: RailCheck,
): Promise<{ given: bigint; collected: bigint }> {
  const onLedger = evidenceForLedger(evidence);
  for (let attempt = 1; attempt <= shortfallCollectionAttemptsMax; attempt++) {
    const back = await movesBack(deps, invoice, key, onLedger);
    if (back.clearing === null) return { given: 0n, collected: 0n };
    const collection = collectShortfalls({
      invoiceId: invoice.id,
      source: back.source,
      givenBack: back.givenBackNow,
      outstanding: await outstandingShortfalls(deps.db, invoice.id),
      clearingLedgerAccountId: back.clearing.ledgerAccountId,
      ledger: back.clearing.ledger,
      evidence: onLedger,
      exceptReversal: key,
    });
    const chain = [...back.members, ...collection.members];
    if (chain.length === 0) return { given: back.given, collected: back.collected };
    const label = `the giving back of reversal ${key} of invoice ${invoice.id}`;
    const collecting = collectionStatement(collection);
    // collectionStatement ends in its select list: the rail's check is one more column of it (a CTE nothing reads
    // would not run).
    const statement =
      stands === undefined
        ? collecting
        : {
            text: `${collecting.text}, ${railCheckSql(stands, collecting.params.length + 1)} AS stands`,
            params: [...collecting.params, ...stands.args],
          };
    try {
      const { outcome } = await writeChainWith(
        deps.ledger,
        chain,
        // Its check runs under the ledger's lock (shortfalls.ts).
        { statement, when: "held", sql: deps.db, underLock: true },
        label,
      );
      // Money back onto accounts, then collections of at most that: no account of the chain can fall short.
      if (outcome !== "reserved")
        throw new SettlementInvariantError(`the ledger refused ${label}: ${outcome}`);
      return { given: back.given, collected: back.collected };
    } catch (error) {
      // Refused by the rail's check: nothing written, unless the ledger had the chain whole already (an earlier run
      // wrote it, checked then; the statement written alone again records nothing). Then a removal since found it (any
      // of its moves back: creditedBy) and took it back with a reversal of its own, and this reversal is still marked
      // given back (applyReinstated): left standing in its record, it would be counted with that one, the deposit
      // taken back twice.
      if (
        isRailEventGone(error) &&
        (await deps.ledger.lookupTransfers(chain.map((member) => member.transfer.id))).length === chain.length
      )
        return { given: back.given, collected: back.collected };
      if (!isShortfallCollectionMoved(error)) throw error;
    }
    await pauseAfterMovedVersion(attempt);
  }
  throw new SettlementContendedError(
    `the shortfalls of invoice ${invoice.id} moved under the giving back of reversal ${key} ` +
      `${shortfallCollectionAttemptsMax} times; nothing of it was written`,
  );
}

/**
 * What giving back reversal `key` moves: each transfer it made (its legs, the collections of its shortfall) moved
 * back under an id derived from it, those not moved back yet as chain members; `given` and `collected` count them
 * all, `givenBackNow` only those moved now (what an earlier run gave back is not collected from again: it may be
 * spent); `clearing` is where its legs went (null: it took nothing).
 *
 * `source` names what this look gives back, for the collections made from it: `key` when it gives back the legs,
 * `key/<transfer id>` when it gives back only collections made since (its first). A reversal can be looked at more
 * than once (its chain committed and its mark rolled back: a crash, or a collection of its shortfall in between,
 * which the next look gives back), and each look moves other money: under one source for all of them, a later
 * look's collection took the ledger id of an earlier one's with another amount (the chain refused on every
 * redelivery, the reversal never given back), or went unrecorded on another account.
 */
async function movesBack(
  deps: SettlementDeps,
  invoice: InvoiceTarget,
  key: string,
  evidence: TransferEvidence,
): Promise<{
  members: ChainMember[];
  givenBackNow: GivenBack[];
  given: bigint;
  collected: bigint;
  clearing: { ledgerAccountId: bigint; ledger: number } | null;
  source: string;
}> {
  const parts = await givenBackParts(deps, invoice, key);
  const found = new Map(
    (await deps.ledger.lookupTransfers(parts.flatMap((part) => [part.of, part.id]))).map((t) => [t.id, t]),
  );
  const members: ChainMember[] = [];
  const givenBackNow: GivenBack[] = [];
  let given = 0n;
  let collected = 0n;
  let clearing: { ledgerAccountId: bigint; ledger: number } | null = null;
  let source: string | null = null;
  for (const part of parts) {
    const original = found.get(part.of);
    if (original === undefined || original.amount === 0n) continue;
    given += original.amount;
    if (part.collection) collected += original.amount;
    clearing = { ledgerAccountId: original.creditAccountId, ledger: original.ledger };
    if (found.has(part.id)) continue;
    // The legs come first in `parts`, and each collection is given back once (its id derived from it): no two looks
    // that move anything share a source.
    source ??= part.collection ? `${key}/${part.of}` : key;
    givenBackNow.push({
      accountId: part.accountId,
      ledgerAccountId: original.debitAccountId,
      amount: original.amount,
    });
    members.push({
      kind: "move",
      posting: {
        debitAccountId: original.creditAccountId,
        creditAccountId: original.debitAccountId,
        amount: original.amount,
        ledger: original.ledger,
        code: transferCodes.invoices.reinstated,
      },
      transfer: {
        id: part.id,
        userData128: derivedLedgerId(invoice.id, "invoice"),
        evidence,
        label: part.label,
      },
    });
  }
  return { members, givenBackNow, given, collected, clearing, source: source ?? key };
}

/**
 * What giving back reversal `key` moves back (movesBack), each transfer it made under the id of its move back: the
 * invoice's leg, each payee's share, each collection of its shortfall.
 */
async function givenBackParts(
  deps: SettlementDeps,
  invoice: InvoiceTarget,
  key: string,
): Promise<{ accountId: string; of: bigint; id: bigint; label: string; collection: boolean }[]> {
  return [
    {
      accountId: invoice.accountId,
      of: reversalLedgerId(invoice.id, key, "reversed"),
      id: reversalLedgerId(invoice.id, key, "reinstated"),
      label: `the giving back of reversal ${key} of invoice ${invoice.id}`,
      collection: false,
    },
    ...(invoice.split ?? []).map((share) => ({
      accountId: share.accountId,
      of: reversalShareLedgerId(invoice.id, key, share.accountId, "reversed"),
      id: reversalShareLedgerId(invoice.id, key, share.accountId, "reinstated"),
      label: `the giving back of account ${share.accountId}'s share of reversal ${key} of invoice ${invoice.id}`,
      collection: false,
    })),
    ...(await shortfallCollections(deps.db, invoice.id, key)).map((collection) => ({
      accountId: collection.accountId,
      of: collection.transferId,
      id: shortfallCollectionGivenBackLedgerId(collection.transferId),
      label: `the giving back of what ${collection.source} collected of reversal ${key}'s shortfall on account ${collection.accountId}`,
      collection: true,
    })),
  ];
}

/**
 * Whether the ledger has any move back of reversal `key` (givenBackParts): one chain wrote them all (giveBack), so
 * any of them says it committed. Not the invoice's leg alone: a reversal that took all of a split invoice's money
 * from the payees (a split of 100%), or found the invoice's account empty, is given back by the payees' shares and
 * the collections only.
 */
async function givenBackOnLedger(
  deps: SettlementDeps,
  invoice: InvoiceTarget,
  key: string,
): Promise<boolean> {
  const parts = await givenBackParts(deps, invoice, key);
  return (await deps.ledger.lookupTransfers(parts.map((part) => part.id))).length > 0;
}

async function reversalRecord(
  sql: Sql,
  invoiceId: string,
  key: string,
): Promise<{ amount: bigint; reinstated: boolean } | null> {
  const [row] = await sql.query<{ amount: bigint; reinstated: boolean }>(
    "SELECT amount, reinstated_at IS NOT NULL AS reinstated FROM invoice_reversals WHERE invoice_id = $1 AND key = $2",
    [invoiceId, key],
  );
  return row ?? null;
}

/** How many times a withdrawal looks again for what its reversal took, recorded after it first looked. */
const reinstateAttemptsMax = 3;

/**
 * A reversal was undone: a dispute won (Stripe gave the funds back), a refund that failed or was canceled. The
 * account gets back exactly what the reversal took (its ledger transfers say how much). One not applied yet is
 * withdrawn instead: recorded as given back, so that if it arrives later (Stripe does not order its events) it
 * takes nothing. A reversed or open invoice is paid, with `invoice.paid` (`paidNow`), once no dispute stands and what
 * it still holds reaches its amount (heldSql), as a receipt pays it: a reorg that removed one deposit may stand for
 * good once the payer paid again (receiptRecordStatement), and what was refunded while it was not paid counts whole.
 * A reversed one no reversal of a receipt was ever recorded for is paid once no dispute stands, whatever it holds.
 *
 * What is given back is read before the record is marked; a reversal whose legs and record commit in between (they
 * commit together: applyReversed) left a record saying it took more than was given back, so the mark does not pass
 * and the legs are looked for again. A record marked is never one whose legs still stand.
 *
 * The mark moves the version of the invoice's `refundable` row, as a reversal's record does, so that a refund or a
 * reversal of a split invoice computed while this one stood computes again. One written before the mark is left as it
 * was computed: a reversal of the invoice's money applied while a dispute of all of it stood took nothing of the
 * payees (their shares were all taken back already), the seller gave all of it, and so it stays once the dispute is
 * given back. Catching it up would take transfers of their own from each payee, given back with that reversal and
 * counted by every refund and reversal after it; it is a known limit (README, Refunds).
 */
export async function applyReinstated(
  deps: SettlementDeps,
  event: { rail: string; reference: string; key: string; evidence: SettlementEvidence; stands?: RailCheck },
  /**
   * `finishing`: the key of the removal whose mark this finishes before it takes the give-back again (applyReversed);
   * it pays nothing unless that removal was withdrawn (paidIfDue).
   */
  options: { finishing?: string } = {},
): Promise<{
  status: "applied" | "duplicate" | "withdrawn" | "unknown_reference";
  amount: bigint;
  /** Whether this paid the invoice (open or reversed before), with `invoice.paid`. */
  paidNow: boolean;
}> {
  const invoice = await invoiceTarget(deps.db, event.reference);
  if (invoice === null || invoice.rail !== event.rail)
    return { status: "unknown_reference", amount: 0n, paidNow: false };
  const recorded = await reversalRecord(deps.db, invoice.id, event.key);
  if (recorded?.reinstated === true) return { status: "duplicate", amount: 0n, paidNow: false };
  const stands = event.stands;
  checkedRailCheck(stands);
  for (let attempt = 1; attempt <= reinstateAttemptsMax; attempt++) {
    const { given: amount, collected } = await giveBack(deps, invoice, event.key, event.evidence, stands);
    // The rail's check is made by the mark too when the ledger has no move back of the reversal: one that took
    // nothing (the accounts were empty) is given back by its mark alone, which a removal of what gave it back looks
    // for (creditedBy) as it looks for those moves. Not when any is there (the invoice's leg, a payee's share, a
    // collection: givenBackOnLedger): they were checked as they were written, and a removal since took them back with
    // a reversal of its own; refused, the mark would leave this reversal standing in its record beside that one, the
    // deposit counted as taken back twice.
    const markChecked = stands !== undefined && !(await givenBackOnLedger(deps, invoice, event.key));
    // Whether the mark paid the invoice (read in its transaction, which commits it or nothing).
    let paidNow = false;
    const status = await deps.db
      .transaction(async (tx) => {
        if (markChecked) await tx.query(`SELECT ${railCheckSql(stands, 1)} AS stands`, [...stands.args]);
        // A reversal whose ledger transfers exist but whose record a crash lost (written apart by an earlier version)
        // is recorded here, as given back.
        const marked = await tx.query<{ inserted: boolean }>(
          `INSERT INTO invoice_reversals (invoice_id, key, amount, reinstated_at) VALUES ($1, $2, $3, now())
         ON CONFLICT (invoice_id, key) DO UPDATE SET reinstated_at = now()
           WHERE invoice_reversals.reinstated_at IS NULL AND invoice_reversals.amount <= EXCLUDED.amount
         RETURNING xmax = 0 AS inserted`,
          [invoice.id, event.key, amount],
        );
        if (marked.length === 0)
          return (await reversalRecord(tx, invoice.id, event.key))?.reinstated === true
            ? ("duplicate" as const)
            : ("recorded_since" as const);
        // Nothing recorded and nothing taken: the reversal never came. One recorded that took nothing (the account
        // was empty) still ends here, with its event, so the invoice is paid again. Withdrawn, it pays an invoice
        // that is due all the same: a removal whose finishing mark (`finishing`) gave back the reversal it takes, left
        // the invoice reversed and failed before its own record is withdrawn by its reinstatement, and takes nothing
        // when retried. Before, nothing paid it then: the deposit on chain and credited, the invoice reversed for
        // good. A Stripe reversal withdrawn before it came finds the invoice paid or open, paid here only if due.
        if (marked[0]!.inserted === true && amount === 0n) {
          paidNow = await paidIfDue(tx, invoice, options);
          return "withdrawn" as const;
        }
        // What stands of the invoice's reversals changed: the version of its `refundable` row moves (the row created as
        // a reversal's record creates it), after the record, as a reversal's record statement takes the two, so that a
        // refund or a reversal computed from reads made while this one stood (takeBackShares counts every reversal
        // that stands) is refused its claim or its legs and computed again without it. Before, nothing here moved the
        // version: a refund made at the provider computed while a dispute of all of it stood (each payee's part
        // nothing, the seller giving all of it) was written after this gave every payee its share back in full.
        await tx.query(
          `INSERT INTO refundable AS r (target_id, paid, refunded)
           SELECT id, received_amount, 0 FROM invoices WHERE id = $1 AND received_amount > 0
           ON CONFLICT (target_id) DO UPDATE SET paid = GREATEST(r.paid, EXCLUDED.paid)`,
          [invoice.id],
        );
        // Its shortfall is owed no more: the rail gives back the reversal's whole amount. Closed only if what was
        // collected of it is what was given back above (the update waits for a collection holding its rows, and
        // reads the row that collection left); a collection since is given back on the next look, this one rolled
        // back. A collection after this finds the shortfall closed and is computed again without it.
        const closed = await tx.query<{ collected: bigint }>(
          `UPDATE reversal_shortfalls SET closed_at = now()
         WHERE invoice_id = $1 AND reversal_key = $2 AND closed_at IS NULL RETURNING collected`,
          [invoice.id, event.key],
        );
        if (closed.reduce((sum, row) => sum + BigInt(row.collected), 0n) !== collected)
          throw new ShortfallCollectedSinceError(`reversal ${event.key} of invoice ${invoice.id}`);
        // Then the invoice's row, in the order a reversal's record statement takes the two (its record, then the
        // invoice): a reversal recorded meanwhile either committed before, and the status below sees its record, or
        // marks the invoice after this. (The other order deadlocked a reversal with its own withdrawal.)
        // An open or reversed invoice is paid once no dispute stands and it holds its amount (heldSql), as a receipt
        // and a refund's failure pay it (receiptRecordStatement, failedStatement). The row is written whatever it is
        // left, so that its version moves: a refund's failure or a receipt that read this reversal standing finds the
        // row moved (invoice_moved(): failedStatement, receiptRecordStatement) and is written again from new reads.
        // Before, a row left as it was passed their check: a refund that failed while r0 was mined again, each
        // computed with the other's money out (this with the refund pending, the failure with r0's reversal
        // standing), left the invoice reversed holding its amount; and an open invoice whose part-payment was mined
        // again after the payer paid the rest stayed open holding it, and took an authorization of all its amount.
        // And one a reorg reversed was paid once no reversal stood, whatever it held: of 10, paid by r0 = 6 and r1 = 4,
        // r0 reorganised away and the 4 it held refunded (whole: it was not paid), it was paid holding 6 once r0 was
        // mined again, where the same money in another order left it open. A reversed one no reversal of a receipt was
        // ever recorded for is paid once no dispute stands, whatever it holds: it was paid (only a paid invoice is
        // marked reversed) and nothing since took a receipt, so its refunds (none made while a dispute stands) gave
        // back of it paid, what the merchant agreed. Counted by heldSql, a refund claimed before migration 0069 counts
        // whole: of 10,000, 3,000 refunded so, then a dispute of 7,000 lost and won, it held 7,000 and stayed reversed,
        // its payer asked for what the merchant had given back.
        // Paid by this give-back, open or reversed before: `invoice.paid` told after its own event, as a receipt and a
        // refund's failure tell it, so that what is told does not depend on which of them commits first. Before, a
        // give-back told none, though the same money's failure tells it.
        paidNow = await paidIfDue(tx, invoice, options, async (invoiceStatus) => {
          // `amount` is all that goes back, the collections of this reversal's own shortfall included; the event also
          // says what of it settled other reversals' shortfalls and what stayed on the accounts, so that a consumer
          // mirroring a balance from the events does not count that money twice.
          const collectedOfOthers = await collectedByGiveBack(tx, invoice.id, event.key);
          await insertOutboxEvent(tx, {
            tenantId: invoice.tenantId,
            type: "invoice.reinstated",
            payload: {
              invoice_id: invoice.id,
              reversal: event.key,
              asset: invoice.assetCode,
              amount: amount.toString(),
              shortfall_collected: collectedOfOthers.toString(),
              net: (amount - collectedOfOthers).toString(),
              invoice_status: invoiceStatus,
            },
          });
        });
        return "applied" as const;
      })
      .catch((error: unknown) => {
        if (error instanceof ShortfallCollectedSinceError) return "recorded_since" as const;
        throw error;
      });
    if (status === "applied" || status === "withdrawn") {
      // Paid now: no receipt pays it (a process that remembers it open would try to credit one), and its listeners
      // hear it here, whoever called: the mark a removal finishes (applyReversed) goes on to its own give-back, which
      // may throw after this commit.
      if (paidNow) invoicePaid(deps, invoice.id);
      return { status, amount, paidNow };
    }
    if (status !== "recorded_since") return { status, amount: 0n, paidNow: false };
  }
  throw new SettlementContendedError(
    `reversal ${event.key} of invoice ${invoice.id} is recorded as taking more than its ledger transfers give back, ` +
      `after ${reinstateAttemptsMax} looks; nothing was marked given back`,
  );
}

/**
 * The invoice paid if it is due (applyReinstated, which says when: an open or reversed invoice that holds its amount
 * with no dispute standing), in the transaction of a reversal's mark as given back or withdrawn, after the mark; the
 * row locked first, and written whatever it is left. Returns whether it paid it, with `invoice.paid` told after what
 * `told` tells (the give-back's own event, given the status the invoice is left in). Not by a mark a removal finishes
 * (`finishing`, applyReversed) while that removal is not withdrawn: the deposit is known gone, and the removal's record
 * marks it reversed a moment later. Whether it is withdrawn is read after the row's lock, which the withdrawal's own
 * paidIfDue takes too: whichever of the two comes second sees the other's commit (the withdrawal sees this mark, and
 * pays if due; this sees the withdrawal, and pays if due).
 */
async function paidIfDue(
  tx: Sql,
  invoice: InvoiceTarget,
  options: { finishing?: string },
  told: (status: InvoiceStatus | null) => Promise<void> = async () => {},
): Promise<boolean> {
  await tx.query("SELECT 1 FROM invoices WHERE id = $1 FOR UPDATE", [invoice.id]);
  const [standing] = await tx.query<{ status: InvoiceStatus; paid_now: boolean }>(
    `WITH due AS (
       SELECT ($2::text IS NULL OR EXISTS (SELECT 1 FROM invoice_reversals w
           WHERE w.invoice_id = $1 AND w.key = $2 AND w.reinstated_at IS NOT NULL))
         AND i.status IN ('open', 'reversed') AND NOT ${disputedSql("$1")}
         AND (${heldSql("i", "$1")} >= i.amount OR (i.status = 'reversed' AND NOT EXISTS (
           SELECT 1 FROM invoice_reversals v WHERE v.invoice_id = $1 AND v.receipt IS NOT NULL))) AS paid
       FROM invoices i WHERE i.id = $1)
     UPDATE invoices i SET status = CASE WHEN due.paid THEN 'paid' ELSE i.status END,
       paid_at = CASE WHEN due.paid THEN coalesce(i.paid_at, now()) ELSE i.paid_at END
     FROM due WHERE i.id = $1
     RETURNING i.status, due.paid AS paid_now`,
    [invoice.id, options.finishing ?? null],
  );
  await told(standing?.status ?? null);
  const paidNow = standing?.paid_now === true;
  if (paidNow)
    await insertOutboxEvent(tx, {
      tenantId: invoice.tenantId,
      type: "invoice.paid",
      payload: { invoice_id: invoice.id },
    });
  return paidNow;
}

/**
 * Thrown inside applyReinstated's mark to roll it back: more was collected of the reversal's shortfall than the
 * look before it gave back. Never leaves applyReinstated (it looks again).
 */
class ShortfallCollectedSinceError extends SwitchyardError {
  override name = "ShortfallCollectedSinceError";
}

/**
 * What the give-back of reversal `key` collected of the other reversals' shortfalls, over all its looks: each look
 * collects under `key` or `key/<transfer id>` (movesBack). The suffix must be a transfer id, so that another
 * reversal whose key merely starts with `key/` is not counted.
 */
async function collectedByGiveBack(sql: Sql, invoiceId: string, key: string): Promise<bigint> {
  const [row] = await sql.query<{ collected: string }>(
    `SELECT coalesce(sum(amount), 0)::text AS collected FROM reversal_shortfall_collections
     WHERE invoice_id = $1 AND (source = $2
       OR (left(source, length($2) + 1) = $2 || '/' AND substr(source, length($2) + 2) ~ '^[0-9]+$'))`,
    [invoiceId, key],
  );
  return BigInt(row?.collected ?? "0");
}

/** The collections of reversal `key`'s shortfall (shortfalls.ts), each with its ledger transfer. */
async function shortfallCollections(
  sql: Sql,
  invoiceId: string,
  key: string,
): Promise<{ accountId: string; source: string; transferId: bigint }[]> {
  const rows = await sql.query<{ account_id: string; source: string; transfer_id: string }>(
    `SELECT account_id, source, transfer_id::text AS transfer_id FROM reversal_shortfall_collections
     WHERE invoice_id = $1 AND reversal_key = $2 ORDER BY account_id, source`,
    [invoiceId, key],
  );
  return rows.map((row) => ({
    accountId: row.account_id,
    source: row.source,
    transferId: BigInt(row.transfer_id),
  }));
}
