// An account's transactions: the ledger's view of one tenant account — every transfer that debits or credits
// it, newest first, each with what became of it (a hold pending, posted, voided or expired), what kind of
// movement it is (its code's name), the account on the other side, the payment, invoice or refund it belongs to
// where the gateway can tell, and the rail's evidence (a transaction hash, a preimage, a PSP id).
//
// The link to a payment or an invoice: their transfers carry derivedLedgerId(id, "payment" | "invoice") in
// user_data_128 (a payout's post and fee post carry the reservation's id instead: an attempt's
// reserve_transfer_id), found through the indexes of migration 0018. An internal payment's transfer carries the
// payment id's own bits (ownLedgerId, migration 0040), which spell the payment id: found by it. A refund's hold is
// its hold_transfer_id, and its post or void names that hold.
import type { Sql } from "../db/index.ts";
import { idOfBits } from "../ids/index.ts";
import {
  type Ledger,
  namedCodes,
  selectTransfersWithStatus,
  type Transfer,
  type TransferEvidence,
  TransferFlags,
  transferCodes,
} from "../ledger/index.ts";
import type { AccountKind, AccountRecord } from "./index.ts";

/** A single-phase transfer, a hold (pending), or the post or void of a hold. */
export type TransactionPhase = "single" | "pending" | "post_pending" | "void_pending";
/** What the transfer did: moved money (posted), holds it (pending), or held it and let go (voided, expired). */
export type TransactionStatus = "posted" | "pending" | "voided" | "expired";

export type AccountTransaction = {
  transferId: bigint;
  /** A debit takes from a customer's or merchant's balance, a credit adds to it. */
  direction: "debit" | "credit";
  amount: bigint;
  phase: TransactionPhase;
  status: TransactionStatus;
  /** The hold a post or void resolves. */
  pendingTransferId: bigint | null;
  code: number;
  /** The code's name in gateway/ledger/codes.ts ("payments.payment"), or null for a code not in it. */
  kind: string | null;
  /** The other side: its kind and rail; its id only when it is the same tenant's account. */
  counterparty: { kind: AccountKind | "ledger"; accountId: string | null; rail: string | null };
  paymentId: string | null;
  invoiceId: string | null;
  refundId: string | null;
  evidence: TransferEvidence | null;
  /** The ledger's timestamp, nanoseconds since the epoch. */
  timestampNs: bigint;
};

export type TransactionsPage = { transactions: AccountTransaction[]; hasMore: boolean };

export type TransactionsParams = {
  account: AccountRecord & { tenantId: string };
  /** 1..100 */
  limit: number;
  /** `after`: older than this transfer; `before`: newer than it (the page still newest first). */
  cursor: { direction: "after" | "before"; transferId: bigint } | null;
  /** Created at or after (inclusive), nanoseconds. */
  createdFromNs: bigint | null;
  /** Created before (exclusive), nanoseconds. */
  createdUntilNs: bigint | null;
};

const transferKinds = new Map(namedCodes(transferCodes).map(({ name, code }) => [code, name]));

const hex = (id: bigint) => id.toString(16).padStart(32, "0");

function phaseOf(flags: number): TransactionPhase {
  if ((flags & TransferFlags.pending) !== 0) return "pending";
  if ((flags & TransferFlags.postPendingTransfer) !== 0) return "post_pending";
  if ((flags & TransferFlags.voidPendingTransfer) !== 0) return "void_pending";
  return "single";
}

/** The transfers of the page, by the ledger's account index: newest first (or oldest first after `before`). */
async function pageTransfers(
  ledger: Ledger,
  params: TransactionsParams,
  cursorTimestamp: bigint | null,
): Promise<{ transfers: Transfer[]; hasMore: boolean }> {
  const older = params.cursor?.direction !== "before";
  // The bound the ledger takes ("strictly after `after`", or before it when reversed) is the tighter of the
  // cursor's and the creation filter's; the filter's other end is applied to what comes back.
  let after: bigint | null = cursorTimestamp;
  if (older && params.createdUntilNs !== null)
    after = after === null || params.createdUntilNs < after ? params.createdUntilNs : after;
  if (!older && params.createdFromNs !== null) {
    const from = params.createdFromNs - 1n;
    after = after === null || from > after ? from : after;
  }
  const page = await ledger.getAccountTransfers({
    accountId: params.account.ledgerAccountId,
    limit: params.limit + 1,
    reversed: older,
    ...(after === null ? {} : { after }),
  });
  const within = page.transfers.filter((transfer) =>
    older
      ? params.createdFromNs === null || transfer.timestamp >= params.createdFromNs
      : params.createdUntilNs === null || transfer.timestamp < params.createdUntilNs,
  );
  const transfers = within.slice(0, params.limit);
  if (!older) transfers.reverse();
  return { transfers, hasMore: within.length > params.limit };
}

/** What each transfer belongs to: candidate ledger ids (uuid hex) → payment, invoice or refund id. */
async function linksOf(
  sql: Sql,
  tenantId: string,
  transfers: readonly Transfer[],
): Promise<{ payments: Map<string, string>; invoices: Map<string, string>; refunds: Map<string, string> }> {
  const candidates = new Set<bigint>();
  for (const transfer of transfers)
    for (const id of [transfer.id, transfer.pendingId, transfer.userData128])
      if (id !== 0n) candidates.add(id);
  const ids = [...candidates];
  const decimal = ids.map(String);
  const uuids = ids.map(hex);
  /** Each candidate as the payment id it spells (an internal payment's link is its id's own bits), and back. */
  const spelled = new Map(ids.map((id) => [idOfBits("pay", id), id]));
  const [reserved, payments, ownLinked, invoices, refunds] = await Promise.all([
    // An attempt with its own transfer id (internal) is found through its payment's link instead.
    sql.query<{ link: string; id: string }>(
      `SELECT a.reserve_transfer_id::text AS link, a.payment_id AS id FROM attempts a
         JOIN payments p ON p.id = a.payment_id
        WHERE a.reserve_transfer_id = ANY($2::numeric[]) AND NOT a.own_transfer_id AND p.tenant_id = $1`,
      [tenantId, decimal],
    ),
    sql.query<{ link: string; id: string }>(
      `SELECT replace(ledger_link::text, '-', '') AS link, id FROM payments
        WHERE tenant_id = $1 AND ledger_link = ANY($2::uuid[])`,
      [tenantId, uuids],
    ),
    sql.query<{ id: string }>(
      "SELECT id FROM payments WHERE tenant_id = $1 AND id = ANY($2::text[]) AND ledger_link IS NULL",
      [tenantId, [...spelled.keys()]],
    ),
    sql.query<{ link: string; id: string }>(
      `SELECT replace(switchyard_derived_ledger_id('invoice', id)::text, '-', '') AS link, id FROM invoices
        WHERE tenant_id = $1 AND switchyard_derived_ledger_id('invoice', id) = ANY($2::uuid[])`,
      [tenantId, uuids],
    ),
    refundLinks(sql, tenantId, decimal),
  ]);
  const byHex = (rows: { link: string; id: string }[]) => new Map(rows.map((row) => [row.link, row.id]));
  const paymentLinks = byHex(payments);
  for (const row of ownLinked) paymentLinks.set(hex(spelled.get(row.id)!), row.id);
  for (const row of reserved) paymentLinks.set(hex(BigInt(row.link)), row.id);
  return { payments: paymentLinks, invoices: byHex(invoices), refunds: refunds };
}

/** Refunds by their hold's id (hex): a refund's hold is its hold_transfer_id, its post or void names it. */
async function refundLinks(
  sql: Sql,
  tenantId: string,
  decimal: readonly string[],
): Promise<Map<string, string>> {
  const rows = await sql.query<{ link: string; id: string }>(
    `SELECT hold_transfer_id::text AS link, id FROM refunds
      WHERE tenant_id = $1 AND hold_transfer_id = ANY($2::numeric[])`,
    [tenantId, decimal],
  );
  return new Map(rows.map((row) => [hex(BigInt(row.link)), row.id]));
}

type CounterpartyRow = {
  ledger_account_id: string;
  id: string;
  tenant_id: string | null;
  kind: AccountKind;
  rail: string | null;
};

async function counterpartiesOf(
  sql: Sql,
  account: TransactionsParams["account"],
  transfers: readonly Transfer[],
): Promise<Map<bigint, AccountTransaction["counterparty"]>> {
  const others = [
    ...new Set(
      transfers.map((transfer) =>
        transfer.debitAccountId === account.ledgerAccountId
          ? transfer.creditAccountId
          : transfer.debitAccountId,
      ),
    ),
  ];
  const rows = await sql.query<CounterpartyRow>(
    `SELECT ledger_account_id::text AS ledger_account_id, id, tenant_id, kind, rail FROM accounts
      WHERE ledger_account_id = ANY($1::numeric[])`,
    [others.map(String)],
  );
  return new Map(
    rows.map((row) => [
      BigInt(row.ledger_account_id),
      {
        kind: row.kind,
        accountId: row.tenant_id === account.tenantId ? row.id : null,
        rail: row.rail,
      },
    ]),
  );
}

/**
 * A page of the account's transactions, or `cursor_not_found` when the cursor is not a transfer of this account.
 * The account must be the tenant's (the caller looked it up scoped to the tenant).
 */
export async function accountTransactions(
  deps: { sql: Sql; ledger: Ledger },
  params: TransactionsParams,
): Promise<TransactionsPage | "cursor_not_found"> {
  const { account } = params;
  let cursorTimestamp: bigint | null = null;
  if (params.cursor !== null) {
    const [transfer] = await deps.ledger.lookupTransfers([params.cursor.transferId]);
    if (
      transfer === undefined ||
      (transfer.debitAccountId !== account.ledgerAccountId &&
        transfer.creditAccountId !== account.ledgerAccountId)
    )
      return "cursor_not_found";
    cursorTimestamp = transfer.timestamp;
  }
  const page = await pageTransfers(deps.ledger, params, cursorTimestamp);
  if (page.transfers.length === 0) return { transactions: [], hasMore: page.hasMore };
  const [withStatus, links, counterparties] = await Promise.all([
    selectTransfersWithStatus(
      deps.sql,
      page.transfers.map((transfer) => transfer.id),
    ),
    linksOf(deps.sql, account.tenantId, page.transfers),
    counterpartiesOf(deps.sql, account, page.transfers),
  ]);
  const holdStatus = new Map(withStatus.map((entry) => [entry.transfer.id, entry.status]));
  const transactions = page.transfers.map((transfer): AccountTransaction => {
    const phase = phaseOf(transfer.flags);
    const debit = transfer.debitAccountId === account.ledgerAccountId;
    const other = debit ? transfer.creditAccountId : transfer.debitAccountId;
    const link = (map: Map<string, string>) =>
      [transfer.id, transfer.pendingId, transfer.userData128]
        .filter((id) => id !== 0n)
        .map((id) => map.get(hex(id)))
        .find((id) => id !== undefined) ?? null;
    return {
      transferId: transfer.id,
      direction: debit ? "debit" : "credit",
      amount: transfer.amount,
      phase,
      status:
        phase === "pending"
          ? (holdStatus.get(transfer.id) ?? "pending")
          : phase === "void_pending"
            ? "voided"
            : "posted",
      pendingTransferId: transfer.pendingId === 0n ? null : transfer.pendingId,
      code: transfer.code,
      kind: transferKinds.get(transfer.code) ?? null,
      counterparty: counterparties.get(other) ?? { kind: "ledger", accountId: null, rail: null },
      paymentId: link(links.payments),
      invoiceId: link(links.invoices),
      refundId: link(links.refunds),
      evidence: transfer.evidence,
      timestampNs: transfer.timestamp,
    };
  });
  return { transactions, hasMore: page.hasMore };
}
