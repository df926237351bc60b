// A tenant's API keys. A key is `sk_<mode>_<43 base64url chars>`: 36 random (216 bits) and a 7-character checksum
// of everything before it (apiKeyChecksumOf), so that a mistyped, truncated or made-up key is refused without a
// database query (authenticator.ts). Shown once; only its SHA-256 is stored, which is enough for a secret of that
// entropy, and lookups are by digest. A key has a name, scopes
// (scopes.ts), a mode (test or live: the deployment takes only its own), the API version it is pinned to, and an
// expiry once it is rolled (the overlap during which the old and the new key both work).
//
// Revoking a key, and rolling one without overlap, is announced on the change bus in the changing transaction:
// every process's authenticator forgets the key once it commits. A key's expiry needs no announcement: no process
// trusts a key past its expires_at (authenticator.ts).
import { hash, randomBytes, timingSafeEqual } from "node:crypto";
import { type ChangeBus, type Db, type Sql, textArrayLiteral, transactionAnnouncing } from "../db/index.ts";
import { newId } from "../ids/index.ts";
import { scopes as allScopes, normalizedScopes, type Scope, scopesBeyond } from "./scopes.ts";
import { currentApiVersion } from "./versions.ts";

export type KeyMode = "test" | "live";

export type ApiKeyRecord = {
  id: string;
  tenantId: string;
  name: string | null;
  mode: KeyMode;
  scopes: Scope[];
  apiVersion: string;
  /** The secret's first 8 and last 4 characters: enough to tell keys apart, never enough to use one. */
  hint: string;
  createdAt: Date;
  /** When a rolled key stops working; null: until revoked. */
  expiresAt: Date | null;
  revokedAt: Date | null;
  /** The key a roll made in this one's place. */
  rolledTo: string | null;
};

/** The most keys a tenant may have that work (neither revoked nor expired). */
export const apiKeysActiveMax = 100;
/** The longest overlap a roll may give the old key. */
export const rollOverlapSecondsMax = 7 * 24 * 3600;
/** The overlap a roll gives the old key when the request names none. */
export const rollOverlapSecondsDefault = 24 * 3600;

/** A key's shape: what the mode is read from (modeOfSecret). Its checksum is checked apart (hasValidChecksum). */
export const secretPattern = /^sk_(test|live)_[A-Za-z0-9_-]{43}$/;

/** The random part of a secret: 27 bytes, 36 base64url characters. */
const secretRandomBytes = 27;
/** The checksum's characters at the end of a secret: 42 bits, so a made-up key passes once in 4 × 10^12. */
export const apiKeyChecksumLength = 7;

/** The checksum of a secret's beginning (`sk_<mode>_` and its random part): SHA-256's first 42 bits, base64url. */
export function apiKeyChecksumOf(body: string): string {
  return hash("sha256", body, "base64url").slice(0, apiKeyChecksumLength);
}

/** A secret of this mode with this random part (36 base64url characters) and its checksum. */
export function apiKeySecretOf(mode: KeyMode, random: string): string {
  const body = `sk_${mode}_${random}`;
  return `${body}${apiKeyChecksumOf(body)}`;
}

/** Whether a secret has a key's shape and its checksum matches: only then can it be a key (no query needed). */
export function hasValidChecksum(secret: string): boolean {
  if (!secretPattern.test(secret)) return false;
  const body = secret.slice(0, -apiKeyChecksumLength);
  return timingSafeEqual(
    Buffer.from(secret.slice(-apiKeyChecksumLength), "utf8"),
    Buffer.from(apiKeyChecksumOf(body), "utf8"),
  );
}

/** A secret's SHA-256, as stored (api_keys.secret_sha256), or as text. */
export function digestOf(secret: string): Buffer;
export function digestOf(secret: string, encoding: "base64"): string;
export function digestOf(secret: string, encoding: "buffer" | "base64" = "buffer"): Buffer | string {
  return encoding === "base64" ? hash("sha256", secret, "base64") : hash("sha256", secret, "buffer");
}

/** The mode a secret's prefix says (sk_test_ / sk_live_), or null for a secret of neither form. */
export function modeOfSecret(secret: string): KeyMode | null {
  const match = secretPattern.exec(secret);
  return match === null ? null : (match[1] as KeyMode);
}

export type ApiKeyRow = {
  id: string;
  tenant_id: string;
  name: string | null;
  mode: string;
  scopes: string[] | string;
  api_version: string;
  hint: string;
  created_at: Date | string;
  expires_at: Date | string | null;
  revoked_at: Date | string | null;
  rolled_to: string | null;
};

/** The columns an ApiKeyRecord is read from (apiKeyOfRow). */
export const apiKeyColumns =
  "id, tenant_id, name, mode, scopes, api_version, hint, created_at, expires_at, revoked_at, rolled_to";

const dateOf = (value: Date | string): Date => (value instanceof Date ? value : new Date(value));

/** A text[] as either driver hands it: an array, or PostgreSQL's literal `{a,b}`. */
function textArrayOf(value: string[] | string): string[] {
  if (Array.isArray(value)) return value;
  const inner = value.replace(/^\{|\}$/g, "");
  return inner === "" ? [] : inner.split(",");
}

export function apiKeyOfRow(row: ApiKeyRow): ApiKeyRecord {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    name: row.name,
    mode: row.mode as KeyMode,
    scopes: normalizedScopes(textArrayOf(row.scopes) as Scope[]),
    apiVersion: row.api_version,
    hint: row.hint,
    createdAt: dateOf(row.created_at),
    expiresAt: row.expires_at === null ? null : dateOf(row.expires_at),
    revokedAt: row.revoked_at === null ? null : dateOf(row.revoked_at),
    rolledTo: row.rolled_to,
  };
}

export type CreateApiKeyParams = {
  tenantId: string;
  mode: KeyMode;
  name?: string | null;
  /** Default: every scope. */
  scopes?: readonly Scope[];
  /** Default: the current version. */
  apiVersion?: string;
  /** Development only: the secret is also kept (demo.ts's key, which survives a restart). Never a live key. */
  keepSecret?: boolean;
};

/** Makes a key for a tenant and returns the secret: the only time it exists outside the caller's hands. */
export async function createApiKey(
  sql: Sql,
  params: CreateApiKeyParams,
): Promise<{ id: string; secret: string; key: ApiKeyRecord }> {
  const secret = apiKeySecretOf(params.mode, randomBytes(secretRandomBytes).toString("base64url"));
  const id = newId("key");
  const scopes = normalizedScopes(params.scopes ?? allScopes);
  const rows = await sql.query<ApiKeyRow>(
    `INSERT INTO api_keys (id, tenant_id, secret_sha256, hint, name, mode, scopes, api_version, demo_secret)
     VALUES ($1, $2, $3, $4, $5, $6, $7::text[], $8, $9)
     RETURNING ${apiKeyColumns}`,
    [
      id,
      params.tenantId,
      digestOf(secret),
      `${secret.slice(0, 8)}…${secret.slice(-4)}`,
      params.name ?? null,
      params.mode,
      textArrayLiteral(scopes),
      params.apiVersion ?? currentApiVersion,
      params.keepSecret === true ? secret : null,
    ],
  );
  return { id, secret, key: apiKeyOfRow(rows[0]!) };
}

export type IssueRefusal = "tenant_not_found" | "tenant_suspended" | "api_keys_too_many";

/**
 * A new key for an active tenant with fewer than apiKeysActiveMax working keys (the tenant's row is locked, so
 * two at once cannot both take the last place).
 */
export async function issueApiKey(
  deps: { db: Db },
  params: CreateApiKeyParams,
): Promise<{ ok: true; secret: string; key: ApiKeyRecord } | { ok: false; refusal: IssueRefusal }> {
  return deps.db.transaction(async (tx) => {
    const refusal = await activeKeysRefusal(tx, params.tenantId);
    if (refusal !== null) return { ok: false, refusal };
    const made = await createApiKey(tx, params);
    return { ok: true, secret: made.secret, key: made.key };
  });
}

/** Locks the tenant's row; why no key may be added now, or null. */
async function activeKeysRefusal(tx: Sql, tenantId: string): Promise<IssueRefusal | null> {
  const [tenant] = await tx.query<{ status: string }>("SELECT status FROM tenants WHERE id = $1 FOR UPDATE", [
    tenantId,
  ]);
  if (tenant === undefined) return "tenant_not_found";
  if (tenant.status !== "active") return "tenant_suspended";
  return (await workingKeysOf(tx, tenantId)) >= apiKeysActiveMax ? "api_keys_too_many" : null;
}

/** How many of the tenant's keys work now (not revoked, not expired). */
async function workingKeysOf(tx: Sql, tenantId: string): Promise<number> {
  const [count] = await tx.query<{ count: number }>(
    `SELECT count(*)::int AS count FROM api_keys
     WHERE tenant_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())`,
    [tenantId],
  );
  return Number(count!.count);
}

/** One of the tenant's keys (revoked and expired ones too), or null when the tenant has none by that id. */
export async function getApiKey(
  sql: Sql,
  params: { tenantId: string; id: string },
): Promise<ApiKeyRecord | null> {
  const rows = await sql.query<ApiKeyRow>(
    `SELECT ${apiKeyColumns} FROM api_keys WHERE id = $1 AND tenant_id = $2`,
    [params.id, params.tenantId],
  );
  return rows[0] === undefined ? null : apiKeyOfRow(rows[0]);
}

export type RevokeResult =
  | { ok: true; key: ApiKeyRecord }
  | { ok: false; refusal: "api_key_not_found" | "api_key_revoked" }
  | { ok: false; refusal: "scope_missing"; scopes: Scope[] };

/**
 * Revokes one of the tenant's keys, announced on the change bus in the same transaction (every process forgets it
 * once it commits; this process's memory before this returns). A key revoked or past its expiry is refused
 * `api_key_revoked`; another tenant's key is not found. `grantedScopes`: the calling key's, when a key asks (not the
 * operator): it cannot revoke a key with a scope it lacks, as it cannot roll one (a key allowed to manage keys would
 * otherwise lock the tenant out of its broader keys).
 */
export async function revokeTenantApiKey(
  deps: { db: Db; changes: ChangeBus },
  params: { tenantId: string; id: string; grantedScopes?: readonly Scope[] },
): Promise<RevokeResult> {
  return transactionAnnouncing(deps, async (tx, announce): Promise<RevokeResult> => {
    if (params.grantedScopes !== undefined) {
      const [target] = await tx.query<ApiKeyRow & { working: boolean }>(
        `SELECT ${apiKeyColumns}, revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) AS working
         FROM api_keys WHERE id = $1 AND tenant_id = $2 FOR UPDATE`,
        [params.id, params.tenantId],
      );
      // A key that no longer works is api_key_revoked to every caller, as to a key with every scope (before, a
      // narrower key was told scope_missing about a key that was dead already).
      const beyond =
        target === undefined || !target.working
          ? []
          : scopesBeyond(params.grantedScopes, apiKeyOfRow(target).scopes);
      if (beyond.length > 0) return { ok: false, refusal: "scope_missing", scopes: beyond };
    }
    const rows = await tx.query<ApiKeyRow & { secret_sha256: Uint8Array }>(
      `UPDATE api_keys SET revoked_at = now(), demo_secret = NULL
       WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
       RETURNING ${apiKeyColumns}, secret_sha256`,
      [params.id, params.tenantId],
    );
    const revoked = rows[0];
    if (revoked === undefined) {
      const existing = await getApiKey(tx, params);
      return { ok: false, refusal: existing === null ? "api_key_not_found" : "api_key_revoked" };
    }
    await announce({
      kind: "api_key_revoked",
      digest: Buffer.from(revoked.secret_sha256).toString("base64"),
    });
    return { ok: true, key: apiKeyOfRow(revoked) };
  });
}

/** Revokes a tenant's key; false when the tenant has no such working key. (revokeTenantApiKey says which.) */
export async function revokeApiKey(
  deps: { db: Db; changes: ChangeBus },
  params: { tenantId: string; id: string },
): Promise<boolean> {
  return (await revokeTenantApiKey(deps, params)).ok;
}

export type RollResult =
  | { ok: true; secret: string; key: ApiKeyRecord; rolled: ApiKeyRecord }
  | {
      ok: false;
      refusal:
        | "api_key_not_found"
        | "api_key_revoked"
        | "api_key_rolled"
        | "tenant_suspended"
        | "api_keys_too_many";
    }
  | { ok: false; refusal: "scope_missing"; scopes: Scope[] };

/**
 * Rolls one of the tenant's keys: a new key with the same name, scopes, mode and API version, and the old one
 * working `overlapSeconds` more (0: revoked now, announced). `grantedScopes`: the caller's own — a key cannot roll
 * (and so obtain the secret of) a key with a scope it lacks. A key is rolled once.
 */
export async function rollApiKey(
  deps: { db: Db; changes: ChangeBus },
  params: { tenantId: string; id: string; overlapSeconds: number; grantedScopes: readonly Scope[] },
): Promise<RollResult> {
  return transactionAnnouncing(deps, async (tx, announce): Promise<RollResult> => {
    const [tenant] = await tx.query<{ status: string }>(
      "SELECT status FROM tenants WHERE id = $1 FOR UPDATE",
      [params.tenantId],
    );
    if (tenant === undefined) return { ok: false, refusal: "api_key_not_found" };
    if (tenant.status !== "active") return { ok: false, refusal: "tenant_suspended" };
    const rows = await tx.query<ApiKeyRow & { working: boolean }>(
      `SELECT ${apiKeyColumns}, revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) AS working
       FROM api_keys WHERE id = $1 AND tenant_id = $2 FOR UPDATE`,
      [params.id, params.tenantId],
    );
    const row = rows[0];
    if (row === undefined) return { ok: false, refusal: "api_key_not_found" };
    const old = apiKeyOfRow(row);
    if (!row.working) return { ok: false, refusal: "api_key_revoked" };
    if (old.rolledTo !== null) return { ok: false, refusal: "api_key_rolled" };
    const beyond = scopesBeyond(params.grantedScopes, old.scopes);
    if (beyond.length > 0) return { ok: false, refusal: "scope_missing", scopes: beyond };
    // The old key working through an overlap is one more working key: rolled again and again, the overlaps
    // gave a tenant any number of them (each with its own rate limit).
    if (params.overlapSeconds > 0 && (await workingKeysOf(tx, params.tenantId)) >= apiKeysActiveMax)
      return { ok: false, refusal: "api_keys_too_many" };
    const made = await createApiKey(tx, {
      tenantId: params.tenantId,
      mode: old.mode,
      name: old.name,
      scopes: old.scopes,
      apiVersion: old.apiVersion,
    });
    const now = params.overlapSeconds === 0;
    const updated = await tx.query<ApiKeyRow & { secret_sha256: Uint8Array }>(
      `UPDATE api_keys SET rolled_to = $3, demo_secret = NULL,
         revoked_at = CASE WHEN $4::boolean THEN now() ELSE NULL END,
         expires_at = CASE WHEN $4::boolean THEN NULL ELSE now() + make_interval(secs => $5::double precision) END
       WHERE id = $1 AND tenant_id = $2
       RETURNING ${apiKeyColumns}, secret_sha256`,
      [params.id, params.tenantId, made.id, now, params.overlapSeconds],
    );
    const rolled = updated[0]!;
    if (now)
      await announce({
        kind: "api_key_revoked",
        digest: Buffer.from(rolled.secret_sha256).toString("base64"),
      });
    return { ok: true, secret: made.secret, key: made.key, rolled: apiKeyOfRow(rolled) };
  });
}

/** The digests of a tenant's working keys, for announcing that none of them works any more. */
export async function workingKeyDigests(sql: Sql, tenantId: string): Promise<Buffer[]> {
  const rows = await sql.query<{ secret_sha256: Uint8Array }>(
    `SELECT secret_sha256 FROM api_keys
     WHERE tenant_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())`,
    [tenantId],
  );
  return rows.map((row) => Buffer.from(row.secret_sha256));
}

/**
 * Development only: the tenant's demo key, made the first time with its secret kept, and the same secret at every
 * later start on the same database. A test key always (the table refuses to keep a live key's secret). A kept key
 * made before keys had a checksum (it could never authenticate now) is revoked and a new one made in its place.
 */
export async function ensureDemoApiKey(
  deps: { db: Db },
  params: { tenantId: string; name?: string },
): Promise<{ id: string; secret: string; created: boolean }> {
  return deps.db.transaction(async (tx) => {
    await tx.query("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", [params.tenantId]);
    const [kept] = await tx.query<{ id: string; demo_secret: string }>(
      `SELECT id, demo_secret FROM api_keys
       WHERE tenant_id = $1 AND demo_secret IS NOT NULL AND revoked_at IS NULL
         AND (expires_at IS NULL OR expires_at > now())`,
      [params.tenantId],
    );
    if (kept !== undefined && hasValidChecksum(kept.demo_secret))
      return { id: kept.id, secret: kept.demo_secret, created: false };
    if (kept !== undefined)
      await tx.query("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND tenant_id = $2", [
        kept.id,
        params.tenantId,
      ]);
    // A kept key that was revoked or rolled out keeps its secret no longer.
    await tx.query(
      "UPDATE api_keys SET demo_secret = NULL WHERE tenant_id = $1 AND demo_secret IS NOT NULL",
      [params.tenantId],
    );
    const made = await createApiKey(tx, {
      tenantId: params.tenantId,
      mode: "test",
      name: params.name ?? "Demo key",
      keepSecret: true,
    });
    return { id: made.id, secret: made.secret, created: true };
  });
}
