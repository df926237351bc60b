// SQL for refunds. Every read a tenant asks for is scoped to it; the rail's events find a refund by its id or its
// rail reference. Status changes are conditional updates written beside the ledger's post or void (the first
// writer wins; a repeated event finds nothing left to change), each with its event in the outbox.
import type { SettlementEvidence } from "../../core/index.ts";
import { type Sql, type Statement, serverRaised, textArrayLiteral } from "../db/index.ts";
import { collectionSql, type ShortfallCollection } from "../settlement/shortfalls.ts";
import {
  providerRefundKeyPrefix,
  type Refund,
  type RefundDestination,
  type RefundFailureCode,
  type RefundReason,
  type RefundStatus,
} from "./refunds-types.ts";
import { fromJson, toJson } from "./store.ts";
import { type NetworkFee, networkFeeOfRow } from "./types.ts";

/** A row of `refunds`, as lists read it. */
export type RefundRow = {
  id: string;
  tenant_id: string;
  invoice_id: string | null;
  payment_id: string | null;
  account_id: string;
  asset: string;
  amount: bigint;
  rail: string;
  status: RefundStatus;
  reason: RefundReason | null;
  metadata: Record<string, string>;
  destination: unknown;
  hold_transfer_id: bigint | string;
  rail_reference: string | null;
  evidence: unknown;
  fee: bigint | null;
  network_fee: bigint | null;
  network_fee_asset: string | null;
  failure_code: RefundFailureCode | null;
  failure_message: string | null;
  created_at: Date;
  updated_at: Date;
  /** The digest of the request that made it under its Idempotency-Key (migration 0031), or null. */
  request_sha256?: Uint8Array | null;
};

export function refundFromRow(row: RefundRow): Refund {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    target:
      row.invoice_id !== null
        ? { kind: "invoice", invoiceId: row.invoice_id }
        : { kind: "payment", paymentId: row.payment_id ?? "" },
    accountId: row.account_id,
    assetCode: row.asset,
    amount: row.amount,
    rail: row.rail,
    status: row.status,
    reason: row.reason,
    metadata: row.metadata,
    destination: row.destination === null ? null : fromJson<RefundDestination>(row.destination),
    railReference: row.rail_reference,
    evidence: row.evidence === null ? null : fromJson<SettlementEvidence>(row.evidence),
    fee: row.fee,
    networkFee: networkFeeOfRow(row),
    failureCode: row.failure_code,
    failureMessage: row.failure_message,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export async function getRefund(sql: Sql, params: { tenantId: string; id: string }): Promise<Refund | null> {
  const [row] = await sql.query<RefundRow>("SELECT * FROM refunds WHERE id = $1 AND tenant_id = $2", [
    params.id,
    params.tenantId,
  ]);
  return row === undefined ? null : refundFromRow(row);
}

/** A refund by its id alone: for the rail's events, which carry no tenant. */
export async function getRefundById(sql: Sql, id: string): Promise<Refund | null> {
  const [row] = await sql.query<RefundRow>("SELECT * FROM refunds WHERE id = $1", [id]);
  return row === undefined ? null : refundFromRow(row);
}

/** The refund written under an Idempotency-Key, with the digest of the request that made it (null: not kept). */
export async function getRefundByKey(
  sql: Sql,
  params: { tenantId: string; key: string },
): Promise<{ refund: Refund; requestSha256: Buffer | null } | null> {
  const [row] = await sql.query<RefundRow>(
    "SELECT * FROM refunds WHERE tenant_id = $1 AND idempotency_key = $2",
    [params.tenantId, params.key],
  );
  if (row === undefined) return null;
  const digest = row.request_sha256;
  return { refund: refundFromRow(row), requestSha256: digest == null ? null : Buffer.from(digest) };
}

/**
 * Refunds still pending on one of `rails` (those this process runs) and untouched for `quietMs`, those a pass looked
 * at least recently first (never, first; migration 0045): what the recovery pass drives on. One on a rail this process
 * lacks is another process's.
 */
export async function listPendingRefunds(
  sql: Sql,
  params: { quietMs: number; limit: number; rails: readonly string[] },
): Promise<Refund[]> {
  const rows = await sql.query<RefundRow>(
    `SELECT * FROM refunds WHERE status = 'pending' AND rail = ANY($3::text[])
       AND updated_at <= now() - make_interval(secs => $1::double precision / 1000)
     ORDER BY recovery_tried_at NULLS FIRST, updated_at LIMIT $2`,
    [params.quietMs, params.limit, textArrayLiteral(params.rails)],
  );
  return rows.map(refundFromRow);
}

/**
 * Moves the refunds a recovery pass looked at and left pending behind the others: the next pass takes those it has
 * not looked at first, so that a batch of refunds no pass can end never holds back the ones after it.
 */
export async function touchPendingRefunds(sql: Sql, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  await sql.query(
    "UPDATE refunds SET recovery_tried_at = now() WHERE id = ANY($1::text[]) AND status = 'pending'",
    [textArrayLiteral(ids)],
  );
}

/**
 * The refunds of an invoice on a rail that a rail's reversal may be about: the one whose rail reference it names,
 * and whether any is still waiting for its provider's answer (no reference yet).
 */
export async function refundsOfInvoice(
  sql: Sql,
  params: { invoiceId: string; rail: string; railReference: string },
): Promise<{ named: Refund | null; unanswered: boolean }> {
  const rows = await sql.query<RefundRow>(
    `SELECT * FROM refunds WHERE invoice_id = $1 AND rail = $2
       AND (rail_reference = $3 OR (rail_reference IS NULL AND status = 'pending'))`,
    [params.invoiceId, params.rail, params.railReference],
  );
  const named = rows.find((row) => row.rail_reference === params.railReference);
  return {
    named: named === undefined ? null : refundFromRow(named),
    unanswered: rows.some((row) => row.rail_reference === null),
  };
}

/**
 * What has been refunded of an invoice or payment (what is left is what it paid less this), and the version of its
 * `refundable` row this was read from: PostgreSQL's `xmin`, the transaction that last wrote the row, which every
 * claim and every amount given back changes (never back to an earlier value), or `none` while there is no row. A
 * claim made with `readAt` passes only if the row is still that version. A reversal of the invoice's money moves the
 * version too, in the transaction of its legs and its record (settlement/invoices.ts reversalRecordStatement), and so
 * does its giving back, in its mark (applyReinstated).
 */
export async function claimableOf(
  sql: Sql,
  targetId: string,
): Promise<{ refunded: bigint; version: string }> {
  const [row] = await sql.query<{ refunded: bigint; version: string }>(
    "SELECT refunded, xmin::text AS version FROM refundable WHERE target_id = $1",
    [targetId],
  );
  return { refunded: row?.refunded ?? 0n, version: row?.version ?? noRefundableRow };
}

/**
 * What an invoice has received (0: nothing). A refund reads it after the version of the invoice's `refundable` row,
 * with the credits; a further receipt after it refuses the refund's claim (claimStatement), which is then computed
 * again: what is left and each payee's credit are of one state.
 */
export async function invoiceReceived(sql: Sql, invoiceId: string): Promise<bigint> {
  const [row] = await sql.query<{ received_amount: bigint | null }>(
    "SELECT received_amount FROM invoices WHERE id = $1",
    [invoiceId],
  );
  return row?.received_amount ?? 0n;
}

/**
 * The reversals of an invoice's payment that stand (recorded and not withdrawn: settlement/invoices.ts applyReversed,
 * applyReinstated): whether a reversal of its money stands (`disputed`: a dispute lost; one that names no receipt
 * and is no refund made at the provider outside the API, whose keys are `refund:…`, providerRefundKeyPrefix), and
 * what the reversals that name the receipt they take took back (`receipts`: a deposit a reorg removed, migration
 * 0065) — each all of its amount, what its legs took and its shortfalls, since its receipt is gone from the chain.
 * What all of them took back with the refunds is settlement/split-reversal.ts takenBackBefore, the one count of it. A
 * refund reads it after claimableOf's version and claims with that version: a reversal recorded or given back after
 * the read moves the row's version (settlement/invoices.ts reversalRecordStatement, applyReinstated), so the claim is
 * refused and the next try reads this again.
 */
export async function standingReversals(
  sql: Sql,
  invoiceId: string,
): Promise<{ disputed: boolean; receipts: bigint }> {
  const [row] = await sql.query<{ disputed: boolean; receipts: bigint }>(
    `WITH standing AS (
       SELECT starts_with(r.key, $2) AS refund, r.receipt IS NOT NULL AS named,
         r.amount + coalesce((SELECT sum(s.amount) FROM reversal_shortfalls s
                              WHERE s.invoice_id = r.invoice_id AND s.reversal_key = r.key), 0) AS asked
       FROM invoice_reversals r WHERE r.invoice_id = $1 AND r.reinstated_at IS NULL)
     SELECT EXISTS (SELECT 1 FROM standing WHERE NOT refund AND NOT named) AS disputed,
       (SELECT coalesce(sum(asked), 0) FROM standing WHERE named AND NOT refund)::bigint AS receipts`,
    [invoiceId, providerRefundKeyPrefix],
  );
  return { disputed: row?.disputed === true, receipts: row?.receipts ?? 0n };
}

/**
 * SQL: what invoice row `alias` (its id the parameter `id`) still holds of what its receipts brought: less what the
 * reversals that stand and name the receipt they take (a deposit a reorg removed) asked, each all of it (what its legs
 * took and its shortfalls: the receipt is gone from the chain whatever the accounts held), and less what its refunds
 * not failed took of what it holds (refundsHeldSql). Below zero when a refund paid back an excess a reorg then took
 * away with its receipt: further receipts make that up first. Every decision of whether an invoice holds its amount is
 * this one count: a receipt's, a reversal's, a reinstatement's, dueAgain's (settlement/invoices.ts), a refund's
 * failure's (failedStatement), and what a refund's claim discounts (claimStatement). A reversal of the invoice's
 * money (a dispute) is not counted here: it stands apart (disputedSql), and no receipt pays over
 * it.
 */
/** SQL: whether a reversal of invoice `id`'s money stands (one that names no receipt: a dispute lost, a refund). */
export const disputedSql = (id: string) =>
  `EXISTS (SELECT 1 FROM invoice_reversals r WHERE r.invoice_id = ${id} AND r.reinstated_at IS NULL
     AND r.receipt IS NULL)`;

export const heldSql = (alias: string, id: string, refundable?: string, failing?: string) =>
  `(coalesce(${alias}.received_amount, 0) - (SELECT coalesce(sum(r.amount + coalesce((SELECT sum(s.amount)
     FROM reversal_shortfalls s WHERE s.invoice_id = r.invoice_id AND s.reversal_key = r.key), 0)), 0)
   FROM invoice_reversals r WHERE r.invoice_id = ${id} AND r.reinstated_at IS NULL AND r.receipt IS NOT NULL)
   - ${refundsHeldSql(id, refundable, failing)})`;

/**
 * SQL: what invoice `id`'s refunds not failed took of what it holds: what they refunded less what of it was a discount
 * (`discounted`, migration 0069: of a refund of a paid invoice, what it gave back beyond the excess; claimStatement).
 * Both are read from `refundable`, a relation of one row with `refunded` and `discounted` (a statement that locked the
 * invoice's `refundable` row passes what it read there; none given, the row as the statement's snapshot sees it), the
 * discount no more than what the refunds not failed say of theirs (less `failing`, the id of the refund the statement
 * fails), and what is taken never below 0. Before, every refund not failed counted whole: a paid invoice discounted by
 * a refund, whose receipt a reorg then took, was not paid again by a receipt of its amount, and a stray deposit's
 * reorg marked it reversed.
 *
 * Each of the two discounts is too high only where the other is not, so the least keeps every writer on the side
 * where an invoice is not paid short: the row's, after a failure by the code before migration 0069, which lowers
 * `refunded` alone (that code claims a refund whole, `discounted` 0, which is safe); the refunds', while a failure
 * that committed after the snapshot (the locked row saw it) still stands in it. A refund claimed after the snapshot is
 * in the row and not in the refunds: counted whole. Both are too high only for a statement that a failure of a
 * discounted refund by the code before 0069 committed during, while both versions run: a known limit of the deploy.
 */
const refundsHeldSql = (
  id: string,
  refundable = `(SELECT f.refunded, f.discounted FROM refundable f WHERE f.target_id = ${id})`,
  failing?: string,
) =>
  `coalesce((SELECT greatest(0, t.refunded - least(t.discounted, (SELECT coalesce(sum(d.discounted), 0)
     FROM refunds d WHERE d.invoice_id = ${id} AND d.status <> 'failed'
       ${failing === undefined ? "" : `AND d.id <> ${failing}`})))
   FROM ${refundable} AS t), 0)`;

/**
 * After a write refused because the `refundable` row moved (a refund's claim, a reversal's legs): a random pause of
 * up to 2^attempt ms, so that writers computing again do not meet again in step.
 */
export function pauseAfterMovedVersion(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.random() * 2 ** attempt));
}

/** The version of a `refundable` row that is not there (no xmin is this). */
const noRefundableRow = "none";

export type NewRefund = Omit<
  Refund,
  | "status"
  | "railReference"
  | "evidence"
  | "fee"
  | "networkFee"
  | "failureCode"
  | "failureMessage"
  | "createdAt"
  | "updatedAt"
> & {
  holdTransferId: bigint;
  idempotencyKey: string | null;
  /** The digest of the request that made it under its key (kept on the refund: migration 0031), or null. */
  requestSha256: Buffer | null;
  paid: bigint;
  /**
   * The version of the target's `refundable` row (claimableOf) that the refund was computed from (what it takes
   * from each payee; of an invoice, that no reversal of it stands): the claim passes only if no other refund of the
   * target was claimed or given back since, nor a reversal of it written. Absent (an internal payment's refund):
   * nothing of the refund depends on it, any version passes.
   */
  readAt?: string;
};

/**
 * The statement written with a refund's ledger hold, in its transaction: the refund `pending`, its claim on what is
 * left of its invoice or payment, and `refund.created`. The claim is one upsert of the target's `refundable` row, whose
 * condition a concurrent claim on the same row waits for and checks again (on the row as that one left it); what was
 * paid only grows (a further receipt for an invoice), so the row keeps the most it has been told. Less left than the
 * amount, the row no longer the version `readAt` names (no row: `none`), or an invoice that received more than the
 * `paid` the refund was computed from (a further receipt since its reads), raises refund_exceeds_remaining(); a key
 * another refund holds, refund_key_taken(): the transaction, hold and all, is rolled back (isRefundExceeding,
 * isRefundKeyTaken). Returns the refund's row.
 *
 * The refund keeps, and adds to the row's, what of it is a discount (`discounted`, migration 0069: heldSql), counted
 * from what the invoice held at the version `readAt` names: of a paid invoice, what it gave back beyond the excess over
 * the amount (amount − min(amount, max(0, held − invoice amount))), a price the payer owes nothing for; of one not
 * paid, nothing, since the payer got it all back before anything was settled. A reversed invoice that still holds its
 * amount (heldSql, which counts no reversal of the invoice's money: what stands is a refund made at the provider, as no
 * refund is made while a dispute stands) is paid but for that reversal, and its refund is counted as a paid one's, so
 * that what of it is a discount does not depend on whether the provider's refund stands when it is claimed: once that
 * refund fails, the invoice is paid again whatever it holds (no reversal of a receipt was recorded for it), and its
 * `discounted` is what a paid one's refund would have kept. One a reorg reversed holds less: all of its refund counts.
 */
export function claimStatement(refund: NewRefund): Statement {
  const targetId = refund.target.kind === "invoice" ? refund.target.invoiceId : refund.target.paymentId;
  return {
    text: `WITH
     discount AS (
       SELECT CASE WHEN h.status = 'paid' OR (h.status = 'reversed' AND h.held >= h.amount)
                   THEN $7::bigint - least($7::bigint, greatest(0, h.held - h.amount)) ELSE 0 END::bigint AS discounted
       FROM (SELECT i.status, i.amount, ${heldSql("i", "$3")} AS held FROM invoices i WHERE i.id = $3) AS h),
     claim AS (
       INSERT INTO refundable AS r (target_id, paid, refunded, discounted)
       SELECT $14, $15, $7, coalesce((SELECT discounted FROM discount), 0)
       WHERE $3::text IS NULL OR EXISTS (SELECT 1 FROM invoices WHERE id = $3 AND received_amount = $15)
       ON CONFLICT (target_id) DO UPDATE SET paid = GREATEST(r.paid, EXCLUDED.paid), refunded = r.refunded + EXCLUDED.refunded,
         discounted = r.discounted + EXCLUDED.discounted
         WHERE GREATEST(r.paid, EXCLUDED.paid) - r.refunded >= EXCLUDED.refunded
           AND ($16::text IS NULL OR r.xmin::text = $16::text)
       RETURNING 1),
     written AS (
       INSERT INTO refunds (id, tenant_id, invoice_id, payment_id, account_id, asset, amount, rail, status, reason,
         metadata, destination, hold_transfer_id, idempotency_key, request_sha256, discounted)
       SELECT $1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10::jsonb, $11::jsonb, $12::numeric, $13,
         decode($17::text, 'hex'), coalesce((SELECT discounted FROM discount), 0)
       WHERE EXISTS (SELECT 1 FROM claim)
       ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING *),
     announced AS (
       INSERT INTO outbox (tenant_id, type, payload)
       SELECT tenant_id, 'refund.created', ${payloadSql("pending")} FROM written RETURNING 1)
     SELECT written.*,
       CASE WHEN NOT EXISTS (SELECT 1 FROM claim) THEN refund_exceeds_remaining()
            WHEN NOT EXISTS (SELECT 1 FROM announced) THEN refund_key_taken() ELSE true END AS claimed
     FROM (SELECT 1) AS one LEFT JOIN written ON true`,
    params: [
      refund.id,
      refund.tenantId,
      refund.target.kind === "invoice" ? refund.target.invoiceId : null,
      refund.target.kind === "payment" ? refund.target.paymentId : null,
      refund.accountId,
      refund.assetCode,
      refund.amount,
      refund.rail,
      refund.reason,
      JSON.stringify(refund.metadata),
      refund.destination === null ? null : toJson(refund.destination),
      refund.holdTransferId.toString(),
      refund.idempotencyKey,
      targetId,
      refund.paid,
      refund.readAt ?? null,
      refund.idempotencyKey === null ? null : (refund.requestSha256?.toString("hex") ?? null),
    ],
  };
}

/** Whether an error is refund_exceeds_remaining() (migration 0017), along its causes. */
export const isRefundExceeding = (error: unknown): boolean => serverRaised(error, "SYR01");
/** Whether an error is refund_key_taken() (migration 0017), along its causes. */
export const isRefundKeyTaken = (error: unknown): boolean => serverRaised(error, "SYR02");
/** Whether an error is reversal_withdrawn() (migration 0033: settlement/invoices.ts), along its causes. */
export const isReversalWithdrawn = (error: unknown): boolean => serverRaised(error, "SYR03");
/**
 * Whether an error is invoice_moved() (migration 0067: settlement/invoices.ts reversalRecordStatement, a receipt's
 * record, a refund's failure: failedStatement), along its causes.
 */
export const isInvoiceMoved = (error: unknown): boolean => serverRaised(error, "SYR07");

/** The JSON of an event's payload, built in SQL from the refund's row (`moved`). */
const payloadSql = (status: RefundStatus) =>
  `jsonb_strip_nulls(jsonb_build_object('refund_id', id, 'invoice_id', invoice_id, 'payment_id', payment_id,
     'asset', asset, 'amount', amount::text, 'status', '${status}'))`;

/** pending → succeeded, with the rail's proof and fee, and `refund.succeeded`; nothing when it is not pending. */
export function succeededStatement(
  id: string,
  outcome: {
    evidence: SettlementEvidence;
    railReference: string | null;
    fee: bigint;
    networkFee: NetworkFee | null;
  },
): Statement {
  return {
    text: `WITH moved AS (
       UPDATE refunds SET status = 'succeeded', evidence = $2, rail_reference = coalesce($3, rail_reference), fee = $4,
         network_fee = $5::bigint, network_fee_asset = $6::text, updated_at = now()
       WHERE id = $1 AND status = 'pending' RETURNING *)
     INSERT INTO outbox (tenant_id, type, payload)
     SELECT tenant_id, 'refund.succeeded', ${payloadSql("succeeded")} FROM moved RETURNING id`,
    params: [
      id,
      toJson(outcome.evidence),
      outcome.railReference,
      outcome.fee,
      outcome.networkFee?.amount ?? null,
      outcome.networkFee?.assetCode ?? null,
    ],
  };
}

/**
 * `from` → failed, with the rail's reason, its amount given back to what is left to refund (and what of it was a
 * discount: its `discounted`, claimStatement), and `refund.failed`; nothing when it is not in `from`. With
 * `collection`, the reversals' shortfalls that what the refund gives back
 * settles are recorded too when it moves now (settlement/shortfalls.ts collectionSql: shortfalls no longer as they
 * were read raise shortfall_collection_moved(), and the transaction, give-back and all, is rolled back).
 *
 * The event says what the give-back collected (`shortfall_collected`) and what of the amount stayed on the accounts
 * (`net`), as a balance transaction does: a consumer that mirrors a balance from `invoice.reversed` and
 * `refund.failed` would otherwise count the collected money twice, once on the account and once in the shortfall
 * that the rail already took. Its takes are written in this statement, and only when the refund moves now, so they
 * are what this event's give-back collected.
 *
 * An open or reversed invoice that holds its amount again once the refund is given back is paid, with `invoice.paid`,
 * as a receipt and applyReinstated pay it (settlement/invoices.ts: no dispute stands, and heldSql, read with what is
 * left on the `refundable` row this locked, is its amount or more), the invoice's row locked after that row, the
 * order a receipt, a reversal and a reinstatement take the two. Before, nothing decided it again: a refund still
 * pending counted against it when a reorg took a receipt, and once the refund failed it stayed reversed holding its
 * amount; and an open invoice part-paid, whose part a pending refund gave back, stayed open once the refund failed
 * and the payer paid the rest, and took an authorization of all its amount (its payer paying twice). The reversals
 * are read from the statement's snapshot: when an open or reversed invoice's row changed since (a reorg's reversal
 * committed while this waited for the `refundable` row, or a reinstatement, which writes the row whatever it leaves:
 * settlement/invoices.ts applyReinstated), invoice_moved() is raised (migration 0067, isInvoiceMoved),
 * the give-back rolled back with it, and the failure written again from new reads (payments/refunds.ts
 * refundGivesBack), as a receipt's record is. Before, such a reversal was left out: an invoice of 10 whose refund of
 * 6 failed was paid holding 6, the 4 that paid the rest reorganised away. Its one row says whether it paid the invoice
 * (`paid_now`), for the process's listeners to be told after the commit, as of a receipt that pays it.
 */
export function failedStatement(
  id: string,
  from: "pending" | "succeeded",
  failure: { code: RefundFailureCode; message: string; evidence: SettlementEvidence | null },
  collection: ShortfallCollection | null = null,
): Statement {
  const collected = (collection?.takes ?? []).reduce((sum, take) => sum + take.amount, 0n);
  const params = [
    id,
    from,
    failure.code,
    failure.message,
    failure.evidence === null ? null : toJson(failure.evidence),
    collected.toString(),
  ];
  const collecting =
    collection === null
      ? { ctes: "", check: "true", params: [] }
      : collectionSql(collection, "EXISTS (SELECT 1 FROM moved)", params.length + 1);
  return {
    text: `WITH moved AS (
       UPDATE refunds SET status = 'failed', failure_code = $3, failure_message = $4,
         evidence = coalesce($5, evidence), updated_at = now()
       WHERE id = $1 AND status = $2 RETURNING *),
     released AS (
       UPDATE refundable SET refunded = refundable.refunded - moved.amount,
         discounted = refundable.discounted - moved.discounted FROM moved
       WHERE refundable.target_id = coalesce(moved.invoice_id, moved.payment_id)
       RETURNING refundable.refunded, refundable.discounted),
     locked AS (
       SELECT i.status IN ('open', 'reversed')
           AND i.xmin::text <> (SELECT xmin::text FROM invoices WHERE id = i.id) AS read_moved
       FROM invoices i, moved WHERE i.id = moved.invoice_id AND EXISTS (SELECT 1 FROM released) FOR UPDATE OF i),
     repaid AS (
       -- Reversals as of the snapshot: one recorded or given back since moved the row (locked.read_moved).
       UPDATE invoices i SET status = 'paid', paid_at = coalesce(i.paid_at, now()) FROM moved, locked
       WHERE i.id = moved.invoice_id AND i.status IN ('open', 'reversed') AND NOT locked.read_moved
         AND NOT ${disputedSql("i.id")}
         AND ${heldSql("i", "i.id", "released", "$1")} >= i.amount
       RETURNING i.id, i.tenant_id),
     repaid_told AS (
       INSERT INTO outbox (tenant_id, type, payload)
       SELECT tenant_id, 'invoice.paid', jsonb_build_object('invoice_id', id) FROM repaid RETURNING 1),
     announced AS (
       INSERT INTO outbox (tenant_id, type, payload)
       SELECT tenant_id, 'refund.failed', ${payloadSql("failed")} || jsonb_build_object('shortfall_collected',
         $6::bigint::text, 'net', (amount - $6::bigint)::text) FROM moved RETURNING id)${collecting.ctes}
     SELECT announced.id, ${collecting.check} AS collected, EXISTS (SELECT 1 FROM repaid) AS paid_now,
       CASE WHEN EXISTS (SELECT 1 FROM locked WHERE read_moved) THEN invoice_moved() ELSE true END AS as_read
     FROM (SELECT 1) AS one LEFT JOIN announced ON true`,
    params: [...params, ...collecting.params],
  };
}

/** A refund the rail took and works on: its reference and proof so far, so that its events find it. */
export async function markInFlight(
  sql: Sql,
  id: string,
  outcome: { railReference: string; evidence: SettlementEvidence | null },
): Promise<void> {
  await sql.query(
    `UPDATE refunds SET rail_reference = $2, evidence = coalesce($3, evidence), updated_at = now()
     WHERE id = $1 AND status = 'pending'`,
    [id, outcome.railReference, outcome.evidence === null ? null : toJson(outcome.evidence)],
  );
}
