// SQL for payments and attempts. Every read of a payment is scoped to its tenant. Status changes are
// conditional updates: the first writer wins and a repeated event finds nothing left to change.
import { causeWhere, isUniqueViolation, type SettlementEvidence } from "../../core/index.ts";
import { type Row, type Sql, type Statement, textArrayLiteral } from "../db/index.ts";
import { derivedLedgerId, ownLedgerId } from "../ids/index.ts";
import { idToUuid } from "../ledger/index.ts";
import type { Quote } from "../router/index.ts";
import type { Candidate, RouteDecision, RoutePolicy } from "../router/types.ts";
import { PaymentInvariantError } from "./errors.ts";
import {
  type Attempt,
  type AttemptStatus,
  attemptStatusesBefore,
  type NetworkFee,
  networkFeeOfRow,
  type Payment,
  type PaymentDestination,
  type PaymentFailureCode,
  type PaymentStatus,
} from "./types.ts";

/**
 * A flat object's keys in the order a jsonb column gives them back (shorter keys first, then by their UTF-8
 * bytes), so that what is answered from memory when a payment is made reads the same as what a repeat answers from
 * the stored row.
 */
export function inJsonbKeyOrder(record: Readonly<Record<string, string>>): Record<string, string> {
  const keys = Object.keys(record).map((key) => ({ key, bytes: Buffer.from(key, "utf8") }));
  keys.sort((a, b) => a.bytes.length - b.bytes.length || Buffer.compare(a.bytes, b.bytes));
  return Object.fromEntries(keys.map(({ key }) => [key, record[key] as string])); // own keys, even "__proto__"
}

/**
 * JSON with bigints as `{ "$bigint": "<decimal>" }`, for jsonb columns. The bigints are tagged in a copy first, so
 * that JSON.stringify runs without a replacer: a replacer sends every key through a call into JavaScript, which made
 * this a fifth slower on a payment's routing decision.
 */
export function toJson(value: unknown): string {
  return JSON.stringify(bigintsTagged(value));
}

/** The value with every bigint as `{ $bigint }`, as JSON.stringify would visit it (toJSON first, own enumerable keys). */
function bigintsTagged(value: unknown): unknown {
  if (typeof value === "bigint") return { $bigint: value.toString() };
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map(bigintsTagged);
  if (typeof (value as { toJSON?: unknown }).toJSON === "function")
    return bigintsTagged((value as { toJSON: () => unknown }).toJSON());
  const tagged: Record<string, unknown> = {};
  for (const key in value)
    if (Object.hasOwn(value, key)) tagged[key] = bigintsTagged((value as Record<string, unknown>)[key]);
  return tagged;
}

/** Reverses toJson: `{ $bigint: "…" }` back to bigint. */
export function fromJson<T>(value: unknown): T {
  const revive = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(revive);
    if (v !== null && typeof v === "object") {
      const entries = Object.entries(v as Record<string, unknown>);
      if (entries.length === 1 && entries[0]![0] === "$bigint" && typeof entries[0]![1] === "string")
        return BigInt(entries[0]![1]);
      return Object.fromEntries(entries.map(([k, inner]) => [k, revive(inner)]));
    }
    return v;
  };
  return revive(typeof value === "string" ? JSON.parse(value) : value) as T;
}

/**
 * The id a payment's ledger transfers carry in user_data_128, which an account's transactions are linked to it by:
 * kept on the payment (ledger_link, migration 0039), equal to SQL's switchyard_derived_ledger_id('payment', id). An
 * internal payment written in a batch links by its id's own bits instead, and keeps none (ownLedgerId).
 */
export const paymentLedgerLink = (paymentId: string): bigint => derivedLedgerId(paymentId, "payment");

/**
 * A routing decision as a payment keeps it: its chosen candidate is always the first (route.ts, routing.ts), so it is
 * not written a second time — a third of the decision — and is put back when read. A payment to a tenant's account
 * pays that account whichever candidate it takes: its candidates do not name it either (put back from the payment's
 * destination when read, as for rows from before candidates named one), so payments to different accounts routed
 * alike keep the same JSON (sent once in a batch: payments/internal.ts).
 */
export function decisionJson(decision: RouteDecision | null, destination: PaymentDestination): string {
  if (decision === null) return "null";
  const made = decisionJsons.get(decision);
  if (made !== undefined) return made;
  const { chosen: _chosen, ...rest } = decision;
  const json = toJson(
    destination.kind === "account"
      ? { ...rest, candidates: rest.candidates.map(({ destination: _to, ...candidate }) => candidate) }
      : rest,
  );
  decisionJsons.set(decision, json);
  return json;
}

/** Each decision's JSON, made once: payments routed alike share one decision object (routing.ts's memo). */
const decisionJsons = new WeakMap<RouteDecision, string>();

/**
 * Gives `decision` the JSON of `like`, made once for both: two decisions to accounts that differ only in the account
 * their candidates pay (routing.ts's retargeted), which the JSON of a decision to an account does not name.
 */
export function shareDecisionJson(
  decision: RouteDecision,
  like: RouteDecision,
  destination: Extract<PaymentDestination, { kind: "account" }>,
): void {
  decisionJsons.set(decision, decisionJson(like, destination));
}

function decisionFromJson(value: unknown, destination: PaymentDestination): RouteDecision {
  const stored = fromJson<Omit<RouteDecision, "chosen"> & { chosen?: RouteDecision["chosen"] }>(value);
  // Rows written before each candidate named the destination it pays went to one destination: that one.
  const candidates =
    destination.kind === "payee" ||
    stored.candidates.every((candidate) => candidate.destination !== undefined)
      ? stored.candidates
      : stored.candidates.map((candidate) => ({
          ...candidate,
          destination: candidate.destination ?? destination,
        }));
  // Rows written before the chosen candidate was left out carry it.
  return { ...stored, candidates, chosen: stored.chosen ?? candidates[0] ?? null };
}

type PaymentRow = {
  id: string;
  tenant_id: string;
  status: PaymentStatus;
  asset: string;
  amount: bigint;
  source_account_id: string;
  destination: unknown;
  policy: unknown;
  decision: unknown;
  rail: string | null;
  failure_code: PaymentFailureCode | null;
  failure_message: string | null;
  metadata: Record<string, string>;
  created_at: Date;
  updated_at: Date;
};

export type AttemptRow = {
  id: string;
  payment_id: string;
  seq: number;
  rail: string;
  status: AttemptStatus;
  amount: bigint;
  fee_max: bigint;
  fee: bigint | null;
  network_fee: bigint | null;
  network_fee_asset: string | null;
  amount_reversed: bigint;
  reserve_transfer_id: string;
  evidence: unknown;
  failure_code: PaymentFailureCode | null;
  failure_message: string | null;
};

export function attemptFromRow(row: AttemptRow): Attempt {
  return {
    id: row.id,
    paymentId: row.payment_id,
    seq: row.seq,
    rail: row.rail,
    status: row.status,
    amount: row.amount,
    feeMax: row.fee_max,
    fee: row.fee,
    networkFee: networkFeeOfRow(row),
    amountReversed: row.amount_reversed,
    reserveTransferId: BigInt(row.reserve_transfer_id),
    evidence: row.evidence === null ? null : fromJson<SettlementEvidence>(row.evidence),
    failureCode: row.failure_code,
    failureMessage: row.failure_message,
  };
}

export const attemptColumns =
  "id, payment_id, seq, rail, status, amount, fee_max, fee, network_fee, network_fee_asset, amount_reversed, reserve_transfer_id::text AS reserve_transfer_id, evidence, failure_code, failure_message";

export type NewAttempt = {
  id: string;
  paymentId: string;
  seq: number;
  rail: string;
  amount: bigint;
  feeMax: bigint;
  reserveTransferId: bigint;
};

/**
 * An attempt is written as `reserving` before its reservation is made and stays so while its rail runs: whether
 * the reservation exists is the ledger's to say (recovery looks it up by the id written here), and no rail is
 * asked to pay before it does. (An earlier version wrote `executing` once it had reserved; migration 0009 turned
 * such rows into `reserving`, which recovery resumes alike, and the database now refuses the status.)
 */
function newAttempt(attempt: NewAttempt): Attempt {
  return {
    ...attempt,
    status: "reserving",
    fee: null,
    networkFee: null,
    amountReversed: 0n,
    evidence: null,
    failureCode: null,
    failureMessage: null,
  };
}

/**
 * How long an Idempotency-Key's record (idempotency_keys) is kept: a key whose record is older is a new key's, for
 * the payment written under it as for the HTTP layer (http/idempotency.ts), and the prune deletes it. 24 h, as Stripe.
 */
export const idempotencyRecordTtlMs = 24 * 60 * 60 * 1000;

/** SQL: whether the idempotency_keys row in scope is past its 24 hours (a new key's, not pruned yet). */
export const idempotencyRecordExpired = `idempotency_keys.created_at < now() - make_interval(secs => ${idempotencyRecordTtlMs / 1000})`;

/** SQLSTATE raised by payment_key_taken(): the payment's Idempotency-Key is another payment's; nothing was written. */
export const paymentKeyTakenCode = "SYP01";

/** The unique index of a tenant's Idempotency-Keys on payments (migration 0001). */
const idempotencyIndex = "payments_idempotency";

/**
 * Whether `error` (or the error it wraps, as the ledger's LedgerStoreError does) says the payment's Idempotency-Key is
 * another payment's: payment_key_taken()'s, or a unique violation of that index (the internal batch's insert, which
 * takes no ON CONFLICT: internal.ts). Either way nothing was written.
 */
export function isPaymentKeyTaken(error: unknown): boolean {
  return (
    causeWhere(error, (e) => (e as { code?: unknown }).code === paymentKeyTakenCode) !== undefined ||
    isUniqueViolation(error, idempotencyIndex)
  );
}

/** The unique index that lets a quote pay one payment (migration 0014). */
const quoteOnceIndex = "payments_quote_once";

/** Whether an error is the database refusing a second payment on one quote (a unique violation of that index). */
export function isQuoteTaken(error: unknown): boolean {
  return isUniqueViolation(error, quoteOnceIndex);
}

export type NewPayment = {
  id: string;
  tenantId: string;
  assetCode: string;
  amount: bigint;
  sourceAccountId: string;
  destination: PaymentDestination;
  policy: RoutePolicy;
  decision: RouteDecision;
  metadata: Record<string, string>;
  idempotencyKey: string | null;
  /** The digest of the request that made it under its key, or null (kept only with a key: migration 0030). */
  requestSha256: Buffer | null;
  quoteId: string | null;
};

/**
 * Writes a payment and, when given, its first attempt, in one statement: both or neither. When the Idempotency-Key
 * is already another payment's, the statement raises paymentKeyTakenCode instead (and, run in a transaction,
 * rolls back whatever else it holds: the payment's reservation). Read its row with paymentInserted.
 */
export function insertPaymentStatement(
  payment: NewPayment,
  firstAttempt: Omit<NewAttempt, "paymentId" | "seq"> | null,
  /** The HTTP request's idempotency record (its answer still to come), written with the payment or neither. */
  record: { requestSha256: Buffer } | null = null,
): Statement {
  const params: unknown[] = [
    payment.id,
    payment.tenantId,
    payment.assetCode,
    payment.amount,
    payment.sourceAccountId,
    toJson(payment.destination),
    toJson(payment.policy),
    decisionJson(payment.decision, payment.destination),
    JSON.stringify(payment.metadata),
    payment.idempotencyKey,
    payment.quoteId,
  ];
  let attempt = "";
  if (firstAttempt !== null) {
    params.push(
      firstAttempt.id,
      firstAttempt.rail,
      firstAttempt.amount,
      firstAttempt.feeMax,
      firstAttempt.reserveTransferId.toString(),
    );
    attempt = `,
     a AS (INSERT INTO attempts (id, payment_id, seq, rail, status, amount, fee_max, reserve_transfer_id)
       SELECT $12::text, p.id, 0, $13::text, 'reserving', $14::bigint, $15::bigint, $16::numeric FROM p)`;
  }
  let keyed = "";
  let keyTaken = "";
  // The request's digest, kept on the payment too (migration 0030): its record does not live as long.
  let digest = "NULL";
  const sha256 = record?.requestSha256 ?? payment.requestSha256;
  if (sha256 !== null && payment.idempotencyKey !== null) {
    params.push(sha256.toString("hex"));
    digest = `decode($${params.length}, 'hex')`;
  }
  if (record !== null && payment.idempotencyKey !== null) {
    // A record past its 24 hours is a new key's (not pruned yet): taken over here, as a claimed-first route's claim
    // takes it, rather than refusing the key, which would roll back every request written in the ledger's batch with
    // this one for a key that is free. A live record refuses it (another request's); a payment holding the key
    // refuses it whatever its record (p is empty: the takeover goes back with the rest).
    keyed = `,
     k AS (INSERT INTO idempotency_keys (tenant_id, key, request_sha256) VALUES ($2, $10, decode($${params.length}, 'hex'))
       ON CONFLICT (tenant_id, key) DO UPDATE SET created_at = now(), request_sha256 = EXCLUDED.request_sha256,
         response_status = NULL, response_body = NULL, payment_id = NULL
         WHERE ${idempotencyRecordExpired}
       RETURNING 1)`;
    keyTaken = " AND EXISTS (SELECT 1 FROM k)";
  }
  const link = `$${params.push(idToUuid(paymentLedgerLink(payment.id)))}::uuid`;
  return {
    text: `WITH p AS (INSERT INTO payments (id, tenant_id, status, asset, amount, source_account_id, destination, policy, decision, metadata, idempotency_key, quote_id, request_sha256, ledger_link)
       VALUES ($1, $2, 'processing', $3, $4, $5, $6, $7, $8, $9, $10, $11, ${digest}, ${link})
       ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING id, created_at, updated_at)${attempt}${keyed}
     SELECT CASE WHEN EXISTS (SELECT 1 FROM p)${keyTaken} THEN true ELSE payment_key_taken() END AS inserted,
       (SELECT created_at FROM p) AS created_at, (SELECT updated_at FROM p) AS updated_at`,
    params,
  };
}

/** What the database added to a payment insertPaymentStatement wrote. */
export function paymentInserted(rows: readonly Row[]): { createdAt: Date; updatedAt: Date } {
  const row = rows[0] as { created_at: Date; updated_at: Date } | undefined;
  if (row === undefined) throw new PaymentInvariantError("payment insert returned no row");
  return { createdAt: row.created_at, updatedAt: row.updated_at };
}

/** The attempt insertPaymentStatement wrote with its payment, as written. */
export function firstAttemptOf(paymentId: string, attempt: Omit<NewAttempt, "paymentId" | "seq">): Attempt {
  return newAttempt({ ...attempt, paymentId, seq: 0 });
}

/** Writes a payment without an attempt; raises paymentKeyTakenCode when its Idempotency-Key is taken. */
export async function insertPayment(
  sql: Sql,
  payment: NewPayment,
  record: { requestSha256: Buffer } | null = null,
): Promise<{ createdAt: Date; updatedAt: Date }> {
  const statement = insertPaymentStatement(payment, null, record);
  return paymentInserted(await sql.query(statement.text, statement.params));
}

/**
 * The digest of the request that made the payment holding an Idempotency-Key (migration 0030), or null: no payment
 * holds the key, or it was made without a record of its request (before that column).
 */
export async function paymentRequestDigest(
  sql: Sql,
  tenantId: string,
  idempotencyKey: string,
): Promise<Buffer | null> {
  const [row] = await sql.query<{ request_sha256: Uint8Array | null }>(
    "SELECT request_sha256 FROM payments WHERE tenant_id = $1 AND idempotency_key = $2",
    [tenantId, idempotencyKey],
  );
  return row?.request_sha256 == null ? null : Buffer.from(row.request_sha256);
}

/** The payment that holds an Idempotency-Key, if one does. */
export async function paymentIdHolding(
  sql: Sql,
  tenantId: string,
  idempotencyKey: string,
): Promise<string | null> {
  const existing = await sql.query<{ id: string }>(
    "SELECT id FROM payments WHERE tenant_id = $1 AND idempotency_key = $2",
    [tenantId, idempotencyKey],
  );
  return existing[0]?.id ?? null;
}

/** The payment that holds an Idempotency-Key (one must). */
export async function paymentIdForKey(sql: Sql, tenantId: string, idempotencyKey: string): Promise<string> {
  const existing = await paymentIdHolding(sql, tenantId, idempotencyKey);
  if (existing === null)
    throw new PaymentInvariantError(
      `payment insert for key ${idempotencyKey} neither inserted nor conflicted`,
    );
  return existing;
}

export async function getPayment(
  sql: Sql,
  params: { tenantId: string; id: string },
): Promise<Payment | null> {
  // Its decision kept with it, or shared with the payments routed alike (route_decisions, migration 0041).
  const rows = await sql.query<PaymentReadRow>(
    `SELECT ${paymentReadColumns} FROM payments WHERE id = $1 AND tenant_id = $2`,
    [params.id, params.tenantId],
  );
  const row = rows[0];
  if (row === undefined) return null;
  const attemptRows = await sql.query<AttemptRow>(
    `SELECT ${attemptColumns} FROM attempts WHERE payment_id = $1 ORDER BY seq`,
    [row.id],
  );
  return paymentFromRows(row, attemptRows);
}

/** A payment's row as getPayment reads it: its decision (kept with it or shared), whether its ledger link is its own. */
export type PaymentReadRow = PaymentRow & { own_linked: boolean };

/**
 * A payment's select list from `payments` alone (getPayment's, and a page of the payments' list:
 * http/resources/lists.ts): a shared decision is read by its digest.
 */
export const paymentReadColumns = `id, tenant_id, status, asset, amount, source_account_id, destination, policy,
  COALESCE(decision, (SELECT d.decision FROM route_decisions d WHERE d.digest = payments.decision_digest)) AS decision,
  rail, failure_code, failure_message, metadata, created_at, updated_at, ledger_link IS NULL AS own_linked`;

/**
 * The payments of `rows` (read with paymentReadColumns), in their order, each as getPayment makes it. With
 * `attempts`, the attempts of them all are read in one statement, each payment's in order of seq as getPayment reads
 * them; without, none is read and each payment's are left empty (for a view that leaves them out).
 */
export async function paymentsFromRows(
  sql: Sql,
  rows: readonly PaymentReadRow[],
  options: { attempts: boolean },
): Promise<Payment[]> {
  if (!options.attempts || rows.length === 0) return rows.map((row) => paymentFromRows(row, null));
  const attemptRows = await sql.query<AttemptRow>(
    `SELECT ${attemptColumns} FROM attempts WHERE payment_id = ANY($1::text[]) ORDER BY payment_id, seq`,
    [textArrayLiteral(rows.map((row) => row.id))],
  );
  const byPayment = new Map<string, AttemptRow[]>();
  for (const attempt of attemptRows) {
    const own = byPayment.get(attempt.payment_id);
    if (own === undefined) byPayment.set(attempt.payment_id, [attempt]);
    else own.push(attempt);
  }
  return rows.map((row) => paymentFromRows(row, byPayment.get(row.id) ?? []));
}

/** The payment of its row and its attempts' rows (in order of seq); null: its attempts not read, left empty. */
function paymentFromRows(row: PaymentReadRow, attemptRows: readonly AttemptRow[] | null): Payment {
  const destination = fromJson<PaymentDestination>(row.destination);
  const decision = row.decision === null ? null : decisionFromJson(row.decision, destination);
  const attempts = (attemptRows ?? []).map(attemptFromRow);
  // An internal payment written in a batch has no attempt row (internalAttemptOf); one written before that has.
  const first = decision?.candidates[0];
  if (
    attemptRows !== null &&
    attempts.length === 0 &&
    row.own_linked &&
    row.status !== "processing" &&
    first !== undefined
  )
    attempts.push(
      internalAttemptOf(
        {
          id: row.id,
          status: row.status,
          failureCode: row.failure_code,
          failureMessage: row.failure_message,
        },
        first,
        ownLedgerId(row.id),
      ),
    );
  return {
    id: row.id,
    tenantId: row.tenant_id,
    status: row.status,
    assetCode: row.asset,
    amount: row.amount,
    sourceAccountId: row.source_account_id,
    destination,
    policy: fromJson<RoutePolicy>(row.policy),
    decision,
    rail: row.rail,
    failureCode: row.failure_code,
    failureMessage: row.failure_message,
    metadata: row.metadata,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    attempts,
  };
}

/**
 * The one attempt of an internal payment written in a batch (payments/internal.ts), which has no row of its own:
 * everything it says is the final payment's or its decision's first candidate's, and its id and its transfer's id are
 * the payment id's own bits (`bits`, ownLedgerId). The batch answers the payment with it, and a read makes it again
 * from the same parts — the same attempt, field for field.
 */
export function internalAttemptOf(
  payment: Pick<Payment, "id" | "failureCode" | "failureMessage"> & { status: "succeeded" | "failed" },
  candidate: Pick<Candidate, "rail" | "amount" | "feeMax">,
  bits: bigint,
): Attempt {
  const succeeded = payment.status === "succeeded";
  return {
    id: `att_${payment.id.slice(payment.id.indexOf("_") + 1)}`,
    paymentId: payment.id,
    seq: 0,
    rail: candidate.rail,
    status: payment.status,
    amount: candidate.amount,
    feeMax: candidate.feeMax,
    fee: succeeded ? 0n : null,
    networkFee: null,
    amountReversed: 0n,
    reserveTransferId: bits,
    evidence: succeeded ? { rail: "internal" } : null,
    failureCode: payment.failureCode,
    failureMessage: payment.failureMessage,
  };
}

/**
 * Writes a new attempt; null when the payment has one of that seq already: another process's recovery (a process
 * starting recovers every open payment, those another process is driving too) took the same fallback first, and that
 * attempt is the one that goes. Before, the unique violation was a 500 to the request driving the payment.
 */
export async function insertAttempt(sql: Sql, attempt: NewAttempt): Promise<Attempt | null> {
  const inserted = await sql.query(
    `INSERT INTO attempts (id, payment_id, seq, rail, status, amount, fee_max, reserve_transfer_id)
     VALUES ($1, $2, $3, $4, 'reserving', $5, $6, $7)
     ON CONFLICT (payment_id, seq) DO NOTHING RETURNING id`,
    [
      attempt.id,
      attempt.paymentId,
      attempt.seq,
      attempt.rail,
      attempt.amount,
      attempt.feeMax,
      attempt.reserveTransferId.toString(),
    ],
  );
  return inserted.length === 0 ? null : newAttempt(attempt);
}

export async function getAttempt(sql: Sql, id: string): Promise<Attempt | null> {
  const rows = await sql.query<AttemptRow>(`SELECT ${attemptColumns} FROM attempts WHERE id = $1`, [id]);
  return rows[0] === undefined ? null : attemptFromRow(rows[0]);
}

/**
 * Attempts started and not finished, untouched for `quietMs`, those a pass looked at least recently first (never,
 * first; migration 0049): what recovery resumes after a stop or a crash. Untouched
 * for 0 ms is every one, even one written in the clock's current tick (`<=`: PGlite's clock is coarse, and an attempt
 * written the same tick as the pass's now() was left out of the pass at start).
 */
export async function listOpenAttempts(
  sql: Sql,
  params: { quietMs: number; limit: number; rails?: readonly string[] },
): Promise<Attempt[]> {
  // Only rails this process runs: a thousand attempts on another's (Lightning runs in one process) listed and
  // skipped every pass would hold back the attempts after them for good.
  const rows = await sql.query<AttemptRow>(
    `SELECT ${attemptColumns} FROM attempts
     WHERE status IN ('reserving', 'in_flight') AND updated_at <= now() - make_interval(secs => $1::double precision / 1000)
       AND ($3::text[] IS NULL OR rail = ANY($3::text[]))
     ORDER BY recovery_tried_at NULLS FIRST, created_at LIMIT $2`,
    [params.quietMs, params.limit, params.rails === undefined ? null : textArrayLiteral(params.rails)],
  );
  return rows.map(attemptFromRow);
}

/**
 * Moves the open attempts a recovery pass looked at and left open behind the others (migration 0049): the next pass
 * takes those it has not looked at first, so that attempts no pass can end never hold back the ones after them.
 */
export async function touchOpenAttempts(sql: Sql, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  await sql.query(
    "UPDATE attempts SET recovery_tried_at = now() WHERE id = ANY($1::text[]) AND status IN ('reserving', 'in_flight')",
    [textArrayLiteral(ids)],
  );
}

/**
 * Moves the stranded payments a recovery pass looked at behind the others (migration 0052), as touchOpenAttempts
 * does attempts: those a pass could not end never hold back the ones after them.
 */
export async function touchStrandedPayments(sql: Sql, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  await sql.query(
    "UPDATE payments SET recovery_tried_at = now() WHERE id = ANY($1::text[]) AND status = 'processing'",
    [textArrayLiteral(ids)],
  );
}

/**
 * Processing payments with no attempt open, untouched for `quietMs`, those no pass has looked at (or looked at
 * longest ago) first: a process stopped after the payment was
 * written and before its first attempt, or after an attempt failed over and before the next one was written.
 * Returns each with the next candidate index to try.
 */
export async function listStrandedPayments(
  sql: Sql,
  params: { quietMs: number; limit: number; rails?: readonly string[] },
): Promise<Array<{ id: string; tenantId: string; nextSeq: number }>> {
  // With `rails`, those whose next candidate is on one of them (or who have none left: they end failed): a thousand
  // whose next rail is another process's, listed and skipped every pass, would hold back the others for good.
  const rows = await sql.query<{ id: string; tenant_id: string; next_seq: number }>(
    `SELECT p.id, p.tenant_id, next.seq AS next_seq
     FROM payments p
     CROSS JOIN LATERAL (
       SELECT COALESCE((SELECT max(a.seq) + 1 FROM attempts a WHERE a.payment_id = p.id), 0)::int AS seq) next
     CROSS JOIN LATERAL (
       SELECT COALESCE((SELECT d.decision FROM route_decisions d WHERE d.digest = p.decision_digest), p.decision)
         -> 'candidates' -> next.seq ->> 'rail' AS rail) candidate
     WHERE p.status = 'processing'
       AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.payment_id = p.id AND a.status IN ('reserving', 'in_flight'))
       AND NOT EXISTS (SELECT 1 FROM netted_payouts n WHERE n.payment_id = p.id)
       AND GREATEST(p.updated_at, COALESCE((SELECT max(a.updated_at) FROM attempts a WHERE a.payment_id = p.id), p.updated_at))
           <= now() - make_interval(secs => $1::double precision / 1000)
       AND ($3::text[] IS NULL OR candidate.rail IS NULL OR candidate.rail = ANY($3::text[]))
     ORDER BY p.recovery_tried_at NULLS FIRST, p.created_at LIMIT $2`,
    [params.quietMs, params.limit, params.rails === undefined ? null : textArrayLiteral(params.rails)],
  );
  return rows.map((row) => ({ id: row.id, tenantId: row.tenant_id, nextSeq: row.next_seq }));
}

/** Moves an attempt to `to` if it is in a status that may move there; false when another writer got there first. */
export type AttemptMove = {
  id: string;
  to: AttemptStatus;
  fee?: bigint;
  /** What it paid in another asset than its rail's (gas), as the ledger books it; null or absent: none. */
  networkFee?: NetworkFee | null;
  evidence?: SettlementEvidence;
  failureCode?: PaymentFailureCode;
  failureMessage?: string;
};

/** Moves an attempt to `to` if its status comes before it; read whether it moved with attemptMoved. */
export function moveAttemptStatement(params: AttemptMove): Statement {
  return {
    text: `UPDATE attempts SET status = $2, fee = COALESCE($3, fee), evidence = COALESCE($4, evidence),
       failure_code = COALESCE($5, failure_code), failure_message = COALESCE($6, failure_message),
       network_fee = COALESCE($8::bigint, network_fee), network_fee_asset = COALESCE($9::text, network_fee_asset),
       updated_at = now()
     WHERE id = $1 AND status = ANY($7::text[]) RETURNING id`,
    params: [
      params.id,
      params.to,
      params.fee ?? null,
      params.evidence === undefined ? null : toJson(params.evidence),
      params.failureCode ?? null,
      params.failureMessage ?? null,
      attemptStatusesBefore(params.to),
      params.networkFee?.amount ?? null,
      params.networkFee?.assetCode ?? null,
    ],
  };
}

export const attemptMoved = (rows: readonly Row[]): boolean => rows.length === 1;

export async function moveAttempt(sql: Sql, params: AttemptMove): Promise<boolean> {
  const statement = moveAttemptStatement(params);
  return attemptMoved(await sql.query(statement.text, statement.params));
}

/** The columns of a payment row its end's event is made of: RETURN these from the statement that ends it. */
export const paymentEventColumns = "id, tenant_id, status";

/**
 * The event that tells a payment's end (`payment.succeeded`, `payment.failed`), as `(tenant_id, type, payload)` to
 * select from rows holding paymentEventColumns. Only the payment's id is stored: the `events` view (migration 0056)
 * joins the payment's facts at its end (status, asset, amount, source account, rail or failure code), which never
 * change once it has ended, so a payment pays no bytes for them on the hot path. Every writer of a payment's end
 * takes it from here, so the event is the same whichever path ended the payment.
 */
export const paymentEventSql = `tenant_id,
  CASE WHEN status = 'succeeded' THEN 'payment.succeeded' ELSE 'payment.failed' END, jsonb_build_object('payment_id', id)`;

export type AttemptFinish = {
  attempt: AttemptMove & { to: "succeeded" | "failed" };
  payment: {
    id: string;
    status: "succeeded" | "failed";
    rail: string | null;
    failureCode?: PaymentFailureCode;
    failureMessage?: string;
    /** The Idempotency-Key of the request waiting for this payment, answered in the same statement (its status). */
    answering?: { key: string; status: number };
  };
};

/** `keyAnswered`: the `answering` key took the answer (false without one, or with an answer there already). */
export type AttemptFinished = { attemptMoved: boolean; paymentFinishedAt: Date | null; keyAnswered: boolean };

/**
 * An attempt's final status, and with it its payment's end and the event that announces it, in one statement:
 * all or nothing, without a transaction's round trips. Each move is conditional exactly as in moveAttempt and
 * finishPayment; the event is written only when the payment ended here. Read it with attemptFinished.
 */
export function finishAttemptStatement(params: AttemptFinish): Statement {
  const { attempt, payment } = params;
  const key = payment.answering;
  // The request's Idempotency-Key answered with the payment it ended (its id, the answer's status; a repeat reads
  // the payment back), unless an answer is there already (a 202 given while it was processing).
  const answered =
    key === undefined
      ? ""
      : `,
     k AS (UPDATE idempotency_keys SET response_status = $16::int, payment_id = $8
       WHERE tenant_id = (SELECT tenant_id FROM p) AND key = $15 AND response_status IS NULL RETURNING 1)`;
  const answeredColumn = key === undefined ? "" : ", (SELECT count(*) FROM k)::int AS answered";
  return {
    text: `WITH a AS (
       UPDATE attempts SET status = $2, fee = COALESCE($3::bigint, fee), evidence = COALESCE($4::jsonb, evidence),
         failure_code = COALESCE($5::text, failure_code), failure_message = COALESCE($6::text, failure_message),
         network_fee = COALESCE($13::bigint, network_fee), network_fee_asset = COALESCE($14::text, network_fee_asset),
         updated_at = now()
       WHERE id = $1 AND status = ANY($7::text[]) RETURNING id),
     p AS (
       UPDATE payments SET status = $9, rail = COALESCE($10::text, rail), failure_code = $11::text, failure_message = $12::text, updated_at = now()
       WHERE id = $8 AND status = 'processing' AND EXISTS (SELECT 1 FROM a) RETURNING ${paymentEventColumns}, updated_at),
     o AS (INSERT INTO outbox (tenant_id, type, payload) SELECT ${paymentEventSql} FROM p)${answered}
     SELECT (SELECT count(*) FROM a)::int AS moved, (SELECT updated_at FROM p) AS finished_at${answeredColumn}`,
    params: [
      attempt.id,
      attempt.to,
      attempt.fee ?? null,
      attempt.evidence === undefined ? null : toJson(attempt.evidence),
      attempt.failureCode ?? null,
      attempt.failureMessage ?? null,
      attemptStatusesBefore(attempt.to),
      payment.id,
      payment.status,
      payment.rail,
      payment.failureCode ?? null,
      payment.failureMessage ?? null,
      attempt.networkFee?.amount ?? null,
      attempt.networkFee?.assetCode ?? null,
      ...(key === undefined ? [] : [key.key, key.status]),
    ],
  };
}

export function attemptFinished(rows: readonly Row[]): AttemptFinished {
  const row = rows[0] as { moved: number; finished_at: Date | null; answered?: number } | undefined;
  return {
    attemptMoved: row?.moved === 1,
    paymentFinishedAt: row?.finished_at ?? null,
    keyAnswered: row?.answered === 1,
  };
}

export async function finishAttempt(sql: Sql, params: AttemptFinish): Promise<AttemptFinished> {
  const statement = finishAttemptStatement(params);
  return attemptFinished(await sql.query(statement.text, statement.params));
}

/** Ends a processing payment, with the event that tells it, in one statement; null when it had already ended. */
export async function finishPayment(
  sql: Sql,
  params: {
    id: string;
    status: "succeeded" | "failed";
    rail: string | null;
    failureCode?: PaymentFailureCode;
    failureMessage?: string;
  },
): Promise<Date | null> {
  const rows = await sql.query<{ updated_at: Date }>(
    `WITH p AS (
       UPDATE payments SET status = $2, rail = COALESCE($3, rail), failure_code = $4, failure_message = $5, updated_at = now()
       WHERE id = $1 AND status = 'processing' RETURNING ${paymentEventColumns}, updated_at),
     o AS (INSERT INTO outbox (tenant_id, type, payload) SELECT ${paymentEventSql} FROM p)
     SELECT updated_at FROM p`,
    [params.id, params.status, params.rail, params.failureCode ?? null, params.failureMessage ?? null],
  );
  return rows[0]?.updated_at ?? null;
}

export async function getPaymentById(sql: Sql, id: string): Promise<{ tenantId: string } | null> {
  const rows = await sql.query<{ tenant_id: string }>("SELECT tenant_id FROM payments WHERE id = $1", [id]);
  return rows[0] === undefined ? null : { tenantId: rows[0].tenant_id };
}

export async function insertOutboxEvent(
  sql: Sql,
  event: { tenantId: string; type: string; payload: unknown },
): Promise<void> {
  await sql.query("INSERT INTO outbox (tenant_id, type, payload) VALUES ($1, $2, $3)", [
    event.tenantId,
    event.type,
    toJson(event.payload),
  ]);
}

export async function insertQuote(
  sql: Sql,
  params: { id: string; tenantId: string; quote: Quote },
): Promise<void> {
  await sql.query("INSERT INTO quotes (id, tenant_id, quote, expires_at) VALUES ($1, $2, $3, $4)", [
    params.id,
    params.tenantId,
    toJson(params.quote),
    new Date(params.quote.expiresAtMs),
  ]);
}

export async function getQuote(sql: Sql, params: { tenantId: string; id: string }): Promise<Quote | null> {
  const rows = await sql.query<{ quote: unknown }>(
    "SELECT quote FROM quotes WHERE id = $1 AND tenant_id = $2",
    [params.id, params.tenantId],
  );
  return rows[0] === undefined ? null : fromJson<Quote>(rows[0].quote);
}
