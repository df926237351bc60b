// The L402 tokens' rows (migration 0022): a root key per token under sha256(identifier), the invoice it was
// minted with, and its request count. Every statement is scoped to the tenant: another tenant's token is not
// found. Counting locks the row and adds what its bound leaves, so that processes sharing the database never serve
// beyond the count; the requests of concurrent callers are counted by one statement (takeRequests, group commit).
// Rows expired for a day are pruned (every 10 minutes, beside the idempotency prune), with their invoice when unpaid
// and its rail knows it was never paid (rail_invoices_known, migration 0061; not one it holds set aside, migration
// 0064).
import type { Logger } from "../../core/index.ts";
import { type Sql, textArrayLiteral } from "../db/index.ts";
import { type Periodic, startPeriodic } from "../periodic/index.ts";

export type TokenRecord = {
  keyId: string;
  tenantId: string;
  rootKey: Uint8Array;
  paymentHash: string;
  invoiceId: string;
  paywallId: string;
  service: string;
  /** Null: any number of requests until it expires. */
  requestsMax: number | null;
  validUntil: Date;
};

export async function insertToken(sql: Sql, token: TokenRecord): Promise<void> {
  await sql.query(
    `INSERT INTO l402_tokens (key_id, tenant_id, root_key, payment_hash, invoice_id, paywall_id, service, requests_max, valid_until)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
    [
      token.keyId,
      token.tenantId,
      Buffer.from(token.rootKey).toString("hex"),
      token.paymentHash,
      token.invoiceId,
      token.paywallId,
      token.service,
      token.requestsMax,
      token.validUntil,
    ],
  );
}

/** A token as verification reads it: its row and whether its invoice is paid. */
export type StoredToken = Omit<TokenRecord, "validUntil"> & { invoicePaid: boolean };

type TokenRow = {
  root_key: string;
  payment_hash: string;
  invoice_id: string;
  paywall_id: string;
  service: string;
  requests_max: number | null;
  invoice_status: string | null;
};

/**
 * The tenant's token under `keyId`, with its invoice's state: paid means the invoice of that payment hash, on
 * this tenant, was paid — booked in the ledger with its evidence. Null: never minted here, another tenant's, or
 * revoked.
 */
export async function readToken(
  sql: Sql,
  params: { tenantId: string; keyId: string },
): Promise<StoredToken | null> {
  const [row] = await sql.query<TokenRow>(
    `SELECT t.root_key, t.payment_hash, t.invoice_id, t.paywall_id, t.service, t.requests_max, i.status AS invoice_status
       FROM l402_tokens t
       LEFT JOIN invoices i ON i.id = t.invoice_id AND i.tenant_id = t.tenant_id AND i.rail_reference = t.payment_hash
      WHERE t.key_id = $1 AND t.tenant_id = $2`,
    [params.keyId, params.tenantId],
  );
  if (row === undefined) return null;
  return {
    keyId: params.keyId,
    tenantId: params.tenantId,
    rootKey: new Uint8Array(Buffer.from(row.root_key, "hex")),
    paymentHash: row.payment_hash,
    invoiceId: row.invoice_id,
    paywallId: row.paywall_id,
    service: row.service,
    requestsMax: row.requests_max === null ? null : Number(row.requests_max),
    invoicePaid: row.invoice_status === "paid",
  };
}

/** `leased`: requests counted beyond this one for the caller to serve later (counter.ts), on one ask a group. */
export type TakeRequestResult =
  | { ok: true; requestsUsed: number; leased?: number }
  | { ok: false; reason: "exhausted" | "revoked" };

/**
 * One request to count: the token's key and the most requests it may have used (null: no count). `lease`: how many
 * more to count at once for the caller to hand out itself (counter.ts), granted only from what the bound leaves
 * beyond this statement's requests, and at most a quarter of that, so that a lease never strands the last requests
 * of a counted token in one process while another is refused. The first ask of a token's group names the lease.
 */
export type TakeRequestAsk = { tenantId: string; keyId: string; requestsMax: number | null; lease?: number };

/**
 * Counts one request against the token, atomically: taken only while fewer than `requestsMax` (the smallest of
 * the row's and the presented caveats'; null: no count) were used. Two processes racing for the last request:
 * one wins. Every request is counted, also on an uncounted token, so that revocation is seen at once.
 */
export async function takeRequest(sql: Sql, ask: TakeRequestAsk): Promise<TakeRequestResult> {
  const [result] = await takeRequests(sql, [ask]);
  return result!;
}

/** The most tokens one counting statement names (5 parameters each). */
export const takeRequestsBatchTokensMax = 500;

/**
 * Counts many requests, as `takeRequest` would one after another in the order given, with one statement per
 * round: each token's requests of a round are counted together (n at once, granted up to what its bound leaves),
 * under a row lock (taken in key order, so two processes' batches never deadlock), so processes sharing the
 * database never serve beyond the count. An uncounted token's count stops at the column's most (2^31 − 1) rather
 * than failing the statement, and every token in it. Asks for one token with
 * different bounds (attenuated macaroons) go to further rounds, so each is judged against its own bound.
 */
export async function takeRequests(sql: Sql, asks: readonly TakeRequestAsk[]): Promise<TakeRequestResult[]> {
  const results: (TakeRequestResult | undefined)[] = asks.map(() => undefined);
  let pending = asks.map((_, i) => i);
  while (pending.length > 0) {
    // This round: per token, the asks with the same bound as its first pending ask (in order).
    const round = new Map<string, { ask: TakeRequestAsk; indexes: number[] }>();
    const later: number[] = [];
    for (const i of pending) {
      const ask = asks[i]!;
      const name = `${ask.tenantId}\u0000${ask.keyId}`;
      const group = round.get(name);
      if (group === undefined && round.size < takeRequestsBatchTokensMax)
        round.set(name, { ask, indexes: [i] });
      else if (group !== undefined && group.ask.requestsMax === ask.requestsMax) group.indexes.push(i);
      else later.push(i);
    }
    const groups = [...round.values()];
    const params = groups.flatMap((g) => [
      g.ask.keyId,
      g.ask.tenantId,
      g.indexes.length,
      g.ask.requestsMax,
      leaseOf(g.ask),
    ]);
    const values = groups
      .map(
        (_, g) =>
          `($${5 * g + 1}::text, $${5 * g + 2}::text, $${5 * g + 3}::integer, $${5 * g + 4}::integer, $${5 * g + 5}::integer)`,
      )
      .join(", ");
    const rows = await sql.query<{ key_id: string; tenant_id: string; before: number; granted: number }>(
      `WITH asked (key_id, tenant_id, n, cap, lease) AS (VALUES ${values}),
       locked AS (
         SELECT t.key_id, t.tenant_id, t.requests_used AS before,
                CASE WHEN a.cap IS NULL THEN a.n + a.lease
                     ELSE greatest(0, least(
                       a.n + least(a.lease, greatest(0, (a.cap - t.requests_used - a.n) / 4)),
                       a.cap - t.requests_used)) END AS granted
           FROM l402_tokens t JOIN asked a ON a.key_id = t.key_id AND a.tenant_id = t.tenant_id
          ORDER BY t.tenant_id, t.key_id
            FOR UPDATE OF t)
       UPDATE l402_tokens t SET requests_used = least(t.requests_used::int8 + c.granted, 2147483647)
         FROM locked c WHERE t.key_id = c.key_id AND t.tenant_id = c.tenant_id
       RETURNING t.key_id, t.tenant_id, c.before, c.granted`,
      params,
    );
    const counted = new Map(rows.map((row) => [`${row.tenant_id}\u0000${row.key_id}`, row]));
    for (const [name, group] of round) {
      const row = counted.get(name);
      const granted = row === undefined ? 0 : Number(row.granted);
      const leased = Math.max(0, granted - group.indexes.length);
      group.indexes.forEach((index, j) => {
        if (row === undefined) results[index] = { ok: false, reason: "revoked" };
        else if (j < granted)
          results[index] = {
            ok: true,
            requestsUsed: Number(row.before) + j + 1,
            ...(j === 0 && leased > 0 ? { leased } : {}),
          };
        else results[index] = { ok: false, reason: "exhausted" };
      });
    }
    pending = later;
  }
  return results as TakeRequestResult[];
}

/** An ask's lease as the statement takes it: a whole number from 0 to leaseAskMax. */
function leaseOf(ask: TakeRequestAsk): number {
  const lease = ask.lease ?? 0;
  return Number.isSafeInteger(lease) ? Math.min(Math.max(lease, 0), leaseAskMax) : 0;
}

/** The largest lease one ask may name. */
export const leaseAskMax = 10_000;

/** Requests to give back to a token's count: leased and not served (counter.ts). */
export type ReturnedRequests = { tenantId: string; keyId: string; requests: number };

/**
 * Gives back many tokens' unserved requests in one statement (never below zero; a token revoked meanwhile is
 * skipped).
 */
export async function returnRequests(sql: Sql, returned: readonly ReturnedRequests[]): Promise<void> {
  const byToken = new Map<string, ReturnedRequests>();
  for (const r of returned) {
    if (!Number.isSafeInteger(r.requests) || r.requests <= 0) continue;
    const name = `${r.tenantId}\u0000${r.keyId}`;
    const known = byToken.get(name);
    byToken.set(name, { ...r, requests: (known?.requests ?? 0) + r.requests });
  }
  const rows = [...byToken.values()];
  if (rows.length === 0) return;
  // Locked in key order, as takeRequests does, so the two never deadlock.
  await sql.query(
    `WITH r (key_id, tenant_id, n) AS (SELECT * FROM unnest($1::text[], $2::text[], $3::integer[])),
     locked AS (
       SELECT t.key_id, t.tenant_id, r.n FROM l402_tokens t JOIN r ON r.key_id = t.key_id AND r.tenant_id = t.tenant_id
        ORDER BY t.tenant_id, t.key_id
          FOR UPDATE OF t)
     UPDATE l402_tokens t SET requests_used = greatest(0, t.requests_used - l.n)
       FROM locked l WHERE t.key_id = l.key_id AND t.tenant_id = l.tenant_id`,
    [rows.map((r) => r.keyId), rows.map((r) => r.tenantId), rows.map((r) => r.requests)],
  );
}

/** Gives back one counted request (its handler failed, nothing was served). */
export async function giveBackRequest(sql: Sql, params: { tenantId: string; keyId: string }): Promise<void> {
  await sql.query(
    "UPDATE l402_tokens SET requests_used = requests_used - 1 WHERE key_id = $1 AND tenant_id = $2 AND requests_used > 0",
    [params.keyId, params.tenantId],
  );
}

/** Revokes a token: its root key is deleted, so nothing presented under it verifies again. */
export async function revokeToken(sql: Sql, params: { tenantId: string; keyId: string }): Promise<boolean> {
  const rows = await sql.query<{ key_id: string }>(
    "DELETE FROM l402_tokens WHERE key_id = $1 AND tenant_id = $2 RETURNING key_id",
    [params.keyId, params.tenantId],
  );
  return rows.length > 0;
}

/**
 * How long a token's row is kept after its expiry: within it, the expired token is refused as expired
 * (l402_expired) rather than unknown, and its count can still be read. 24 h, as idempotency records.
 */
export const l402TokenGraceMs = 24 * 60 * 60 * 1000;
/** How often expired tokens are pruned, and how many one statement deletes. */
export const l402TokenPruneEveryMs = 10 * 60 * 1000;
export const l402TokenPruneBatchMax = 5_000;
/** The most time one pass spends deleting: what is left waits for the next pass. */
const l402TokenPrunePassMsMax = 30_000;

/**
 * An invoice nothing was paid into and no row refers to (each by its invoice_id index: a delete of one that is
 * referred to would fail the pass): a challenge's, deleted with its token once it is known never to be paid.
 */
const unpaidInvoice = `i.status = 'open' AND i.received_amount IS NULL
  AND NOT EXISTS (SELECT 1 FROM invoice_receipts r WHERE r.invoice_id = i.id)
  AND NOT EXISTS (SELECT 1 FROM invoice_reversals v WHERE v.invoice_id = i.id)
  AND NOT EXISTS (SELECT 1 FROM refunds f WHERE f.invoice_id = i.id)`;
/**
 * The invoice expired more than the grace ago, and before the moment up to which its rail knows every invoice's fate
 * (null, so never, while it has told none: no process follows that rail's provider), and its rail does not hold it set
 * aside (paid, its settlement refused so far: the point moves past it, and its settlement needs it; by the primary
 * key, the rail and the invoice's id). An L402 challenge's invoice is always the Lightning rail's (createL402Scheme's
 * default rail, "lightning", the id the Lightning rail takes and records its point under in gateway/app/rails.ts), so
 * a challenge's invoice on a rail without a point is none.
 */
const knownNeverPaid = `i.expires_at < now() - make_interval(secs => $1::double precision / 1000)
  AND i.expires_at < (SELECT k.expired_before FROM rail_invoices_known k WHERE k.rail = i.rail)
  AND NOT EXISTS (SELECT 1 FROM rail_invoices_set_aside a WHERE a.rail = i.rail AND a.reference = i.id)`;

/**
 * One batch of the prune: the next `$2` tokens expired past the grace after the cursor ($3, $4), in the order of
 * l402_tokens_valid_until (migration 0063), and of those each one that can go, with its challenge's invoice when that
 * goes too; tells how many it read and deleted, and the cursor past the last it read (as text: a Date keeps
 * milliseconds, the column microseconds, and a cursor short of the last row read would read it again).
 */
const pruneBatch = `WITH scanned AS MATERIALIZED (
    SELECT t.key_id, t.valid_until FROM l402_tokens t
     WHERE t.valid_until < now() - make_interval(secs => $1::double precision / 1000)
       AND (t.valid_until, t.key_id) > ($3::timestamptz, $4::text)
     ORDER BY t.valid_until, t.key_id
     LIMIT $2),
  tokens AS (
    DELETE FROM l402_tokens d USING scanned s, invoices i
     WHERE d.key_id = s.key_id AND i.id = d.invoice_id
       AND (NOT (${unpaidInvoice}) OR i.expires_at IS NULL OR (${knownNeverPaid}))
    RETURNING d.key_id, d.invoice_id),
  unpaid AS (
    DELETE FROM invoices i USING tokens t
     WHERE i.id = t.invoice_id AND ${unpaidInvoice} AND ${knownNeverPaid}),
  last AS (SELECT valid_until, key_id FROM scanned ORDER BY valid_until DESC, key_id DESC LIMIT 1)
  SELECT (SELECT count(*) FROM scanned)::int AS scanned, (SELECT count(*) FROM tokens)::int AS deleted,
         (SELECT valid_until::text FROM last) AS valid_until, (SELECT key_id FROM last) AS key_id`;

/**
 * Deletes the rows of tokens that expired more than `graceMs` ago (every tenant's: an expired token serves no
 * one), and with each the invoice of its challenge when nothing was paid into it and it is known never to be; returns
 * how many tokens. Before, the invoices stayed: every request without a token makes one, so a paywall's unpaid
 * challenges piled up in invoices for good. In batches of `batchMax` tokens read, each after the last one's, until one
 * reads fewer (none are left) or the pass's time is up (deleteInBatches' bounds): the tokens that wait for their rail
 * are the oldest, and a batch that asked for the first `batchMax` deletable ones read every waiting one again (a join
 * and three lookups each) before it found any, so that a point held back for days made each batch cost every
 * challenge of those days; now each is read once a pass.
 */
export async function pruneL402Tokens(
  sql: Sql,
  params: { graceMs: number; batchMax: number; nowMs?: () => number },
): Promise<number> {
  // An invoice paid (or with any receipt) stays: it is money in. An unpaid one goes once it expired a day ago and
  // before the moment its rail has told every invoice's fate up to (rail_invoices_known): LND settles nothing past
  // expiry, but one it settled just before, while the gateway could not hear of it (LND out of reach, or the process
  // following it down, for longer than the grace), is delivered when the stream resumes and must find its invoice,
  // else the payer paid and the tenant is never credited. One the rail holds set aside (paid, its settlement refused
  // so far: rail_invoices_set_aside) stays while it is, the point past it. Until then its token waits with it: the
  // invoice is found only through its token, which its foreign key needs gone first, in the same statement
  // (l402_tokens_invoice, migration 0059, finds the token of each invoice). A token whose invoice stays for good goes
  // at once.
  const batchMax = Math.max(1, params.batchMax);
  const nowMs = params.nowMs ?? Date.now;
  const untilMs = nowMs() + l402TokenPrunePassMsMax;
  let after = { validUntil: "-infinity", keyId: "" };
  let deleted = 0;
  for (;;) {
    const [batch] = await sql.query<{
      scanned: number;
      deleted: number;
      valid_until: string | null;
      key_id: string | null;
    }>(pruneBatch, [params.graceMs, batchMax, after.validUntil, after.keyId]);
    const { scanned, valid_until: validUntil, key_id: keyId } = batch!;
    deleted += batch!.deleted;
    if (scanned < batchMax || validUntil === null || keyId === null || nowMs() >= untilMs) return deleted;
    after = { validUntil, keyId };
  }
}

/**
 * Records that every invoice of `rail` that expired before `expiredBeforeMs` is known: paid and delivered, set aside
 * (`setAside`, the references of the invoices the rail holds so: the Lightning rail's invoicesSetAside), or never to
 * be paid (its invoicesKnownBeforeMs). Never moves the point back: a lower one (a clock set back, a process restarted
 * on an older look) changes nothing. The set aside ones replace those recorded before, in the same statement: the
 * prune reads both in one snapshot, so it never sees a point past an invoice set aside without the invoice listed. One
 * that left the list was delivered (its invoice paid: kept as money in) or is known never to be paid.
 */
export async function recordInvoicesKnown(
  sql: Sql,
  params: { rail: string; expiredBeforeMs: number; setAside: readonly string[] },
): Promise<void> {
  await sql.query(
    `WITH listed AS (SELECT DISTINCT unnest($3::text[]) AS reference),
       gone AS (
         DELETE FROM rail_invoices_set_aside a
          WHERE a.rail = $1 AND a.reference NOT IN (SELECT reference FROM listed)),
       added AS (
         INSERT INTO rail_invoices_set_aside (rail, reference) SELECT $1::text, reference FROM listed
         ON CONFLICT DO NOTHING)
     INSERT INTO rail_invoices_known (rail, expired_before) VALUES ($1, $2)
     ON CONFLICT (rail) DO UPDATE
       SET expired_before = excluded.expired_before, updated_at = now()
       WHERE rail_invoices_known.expired_before < excluded.expired_before`,
    [params.rail, new Date(params.expiredBeforeMs), textArrayLiteral(params.setAside)],
  );
}

/** How often the process that follows a rail's provider records up to when its invoices are known. */
export const invoicesKnownRecordEveryMs = 60_000;

/**
 * Records, every minute, up to when a rail knows its invoices' fate (`expiredBeforeMs`, null: not yet) and the
 * invoices it holds set aside (`setAside`), where every process's prune reads them; for the composition root, beside
 * the rail that knows them (gateway/app/rails.ts). Both are read at once, the point first: an invoice the point moved
 * past set aside stays set aside until it leaves the rail (adapters/lightning/invoices.ts noteInvoicesKnown), so the
 * list read then names it.
 */
export function startInvoicesKnownRecord(deps: {
  sql: Sql;
  rail: string;
  expiredBeforeMs: () => number | null;
  setAside: () => readonly string[];
  logger: Logger;
}): Periodic {
  let recorded: { expiredBeforeMs: number; setAside: string } | null = null;
  return startPeriodic({
    name: "invoices known record",
    intervalMs: invoicesKnownRecordEveryMs,
    pass: async () => {
      const expiredBeforeMs = deps.expiredBeforeMs();
      if (expiredBeforeMs === null) return;
      const setAside = [...deps.setAside()].sort();
      const listed = setAside.join("\n");
      if (recorded?.expiredBeforeMs === expiredBeforeMs && recorded.setAside === listed) return;
      await recordInvoicesKnown(deps.sql, { rail: deps.rail, expiredBeforeMs, setAside });
      recorded = { expiredBeforeMs, setAside: listed };
    },
    logger: deps.logger,
  });
}

/**
 * How far behind now a rail's point (rail_invoices_known) may be before the prune says so. While LND answers it trails
 * by the pass over long-expired invoices, minutes; days behind, LND or the process following it has been out of reach
 * that long, or one invoice holds it for good (a lookup that keeps failing otherwise than "unable to locate":
 * adapters/lightning/invoices.ts noteInvoicesKnown). A settlement set aside that the gateway keeps refusing holds it
 * no more: the point moves past it, its invoice listed in rail_invoices_set_aside and kept. Until it moves no unpaid
 * challenge is deleted, and every request without a token leaves a token and an invoice more, silently.
 */
export const invoicesKnownLagMsMax = 2 * 24 * 60 * 60 * 1000;

/** Warns of each rail whose point lags now by more than invoicesKnownLagMsMax: once a prune pass, in every process. */
async function warnInvoicesKnownLagging(sql: Sql, logger: Logger): Promise<void> {
  const rows = await sql.query<{ rail: string; expired_before: Date; updated_at: Date; now: Date }>(
    `SELECT rail, expired_before, updated_at, now() AS now FROM rail_invoices_known
      WHERE expired_before < now() - make_interval(secs => $1::double precision / 1000)`,
    [invoicesKnownLagMsMax],
  );
  for (const row of rows)
    logger.warn(
      {
        rail: row.rail,
        behindHours: Math.floor((row.now.getTime() - row.expired_before.getTime()) / 3_600_000),
        expiredBefore: row.expired_before.toISOString(),
        movedAt: row.updated_at.toISOString(),
      },
      "l402 prune: the rail has known its invoices' fate only up to long ago; its unpaid challenges since are kept, a token and an invoice each, until it knows more",
    );
}

/** The periodic prune of expired L402 tokens, for the composition root (beside the idempotency prune). */
export function startL402TokenPrune(deps: { sql: Sql; logger: Logger }): Periodic {
  return startPeriodic({
    name: "l402 token prune",
    intervalMs: l402TokenPruneEveryMs,
    pass: async () => {
      await warnInvoicesKnownLagging(deps.sql, deps.logger);
      return pruneL402Tokens(deps.sql, { graceMs: l402TokenGraceMs, batchMax: l402TokenPruneBatchMax });
    },
    logger: deps.logger,
  });
}
