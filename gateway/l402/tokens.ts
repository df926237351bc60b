// The L402 tokens' rows (migration 0022): a root key per token under sha256(identifier), the invoice it was
// minted with, and its request count. Every statement is scoped to the tenant: another tenant's token is not
// found. Counting is one conditional UPDATE, so that processes sharing the database never serve beyond the count.
// Rows expired for a day are pruned (every 10 minutes, beside the idempotency prune).
import type { Logger } from "../../core/index.ts";
import type { Sql } from "../db/index.ts";
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

export type TakeRequestResult =
  | { ok: true; requestsUsed: number }
  | { ok: false; reason: "exhausted" | "revoked" };

/**
 * Counts one request against the token, atomically: taken only while fewer than `requestsMax` (the smallest of
 * the row's and the presented caveats'; null: no count) were used. Two processes racing for the last request:
 * one wins. Every request is counted, also on an uncounted token, so that revocation is seen at once.
 */
export async function takeRequest(
  sql: Sql,
  params: { tenantId: string; keyId: string; requestsMax: number | null },
): Promise<TakeRequestResult> {
  const [row] = await sql.query<{ requests_used: number }>(
    `UPDATE l402_tokens SET requests_used = requests_used + 1
      WHERE key_id = $1 AND tenant_id = $2 AND ($3::integer IS NULL OR requests_used < $3::integer)
      RETURNING requests_used`,
    [params.keyId, params.tenantId, params.requestsMax],
  );
  if (row !== undefined) return { ok: true, requestsUsed: Number(row.requests_used) };
  const [exists] = await sql.query("SELECT 1 FROM l402_tokens WHERE key_id = $1 AND tenant_id = $2", [
    params.keyId,
    params.tenantId,
  ]);
  return { ok: false, reason: exists === undefined ? "revoked" : "exhausted" };
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

/**
 * Deletes the rows of tokens that expired more than `graceMs` ago (every tenant's: an expired token serves no
 * one), up to `batchMax` at a time until none is left, by the valid_until index; returns how many.
 */
export async function pruneL402Tokens(
  sql: Sql,
  params: { graceMs: number; batchMax: number },
): Promise<number> {
  let total = 0;
  for (;;) {
    const deleted = await sql.query<{ key_id: string }>(
      `DELETE FROM l402_tokens WHERE key_id IN (
         SELECT key_id FROM l402_tokens
         WHERE valid_until < now() - make_interval(secs => $1::double precision / 1000) LIMIT $2)
       RETURNING key_id`,
      [params.graceMs, params.batchMax],
    );
    total += deleted.length;
    if (deleted.length < params.batchMax) return total;
  }
}

/** The periodic prune of expired L402 tokens, for the composition root (beside the idempotency prune). */
export function startL402TokenPrune(deps: { sql: Sql; logger: Logger }): Periodic {
  return startPeriodic({
    name: "l402 token prune",
    intervalMs: l402TokenPruneEveryMs,
    pass: () => pruneL402Tokens(deps.sql, { graceMs: l402TokenGraceMs, batchMax: l402TokenPruneBatchMax }),
    logger: deps.logger,
  });
}
