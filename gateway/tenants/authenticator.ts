// Authentication of API keys, with a per-process memory of valid keys keyed by the key's SHA-256 (the secret itself
// is never kept).
//
// The bound: a key revoked, rolled out, past its expiry, or whose tenant is suspended — by any process — is refused
// by every process within apiKeyTrustMsMax (1 s). Two mechanisms give it: the change is announced on the change bus
// in the changing transaction, and every process forgets the key when the announcement arrives (typically within a
// millisecond or two of the commit); and no process trusts a remembered key longer than `ttlMs` (at most 1 s by
// default) nor past the key's own expires_at, whether the bus delivered or not.
//
// Nothing is looked up twice at once: checks of a key while its lookup runs await that lookup's answer (so the memory
// of a busy key expiring costs one query, not one per request in flight), unless something was forgotten since that
// lookup began — it may have read the key just before its revocation committed — and then they start a fresh one.
//
// A secret without a key's shape and checksum (keys.ts) is refused before any lookup: a mistyped or made-up key
// costs no query. Nothing remembers unknown keys: the checksum already refuses what a guess would produce, a forger
// who computes checksums can make endless distinct keys that no bounded memory would hold, and the per-IP rate limit
// (gateway/http/rate-limit.ts) bounds how many such lookups one address can cause.
import { setBounded } from "../../core/index.ts";
import type { ChangeFeed, Sql } from "../db/index.ts";
import {
  type ApiKeyRecord,
  type ApiKeyRow,
  apiKeyColumns,
  apiKeyOfRow,
  digestOf,
  hasValidChecksum,
} from "./keys.ts";
import type { Tenant } from "./tenants.ts";

/** The longest any process trusts a key it found valid without asking the database again. */
export const apiKeyTrustMsMax = 1_000;

export type ApiKeyCacheLimits = {
  /** The most keys remembered at once; beyond it the least recently checked is forgotten. */
  entriesMax: number;
  /**
   * How long a key found valid is trusted without asking the database again (never past the key's expires_at).
   * Revocations arrive on the change bus at once; this bounds what a revocation the bus could not deliver waits.
   */
  ttlMs: number;
};

export const apiKeyCacheDefaults: ApiKeyCacheLimits = { entriesMax: 10_000, ttlMs: apiKeyTrustMsMax };

/** What a valid key says: its tenant, and the key (id, mode, scopes, pinned API version). */
export type ApiKeyPrincipal = { tenant: Tenant; key: ApiKeyRecord };

export type KeyCheck =
  | { ok: true; principal: ApiKeyPrincipal }
  /** `api_key_invalid`: malformed, unknown, revoked or expired; `tenant_suspended`: a working key of a suspended tenant. */
  | { ok: false; refusal: "api_key_invalid" | "tenant_suspended" };

const invalid: KeyCheck = { ok: false, refusal: "api_key_invalid" };

async function checkDigest(sql: Sql, digest: Buffer): Promise<KeyCheck> {
  const rows = await sql.query<ApiKeyRow & { tenant_name: string; tenant_status: string }>(
    `SELECT ${apiKeyColumns
      .split(", ")
      .map((column) => `k.${column}`)
      .join(", ")}, t.name AS tenant_name, t.status AS tenant_status
     FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
     WHERE k.secret_sha256 = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())`,
    [digest],
  );
  const row = rows[0];
  if (row === undefined) return invalid;
  if (row.tenant_status !== "active") return { ok: false, refusal: "tenant_suspended" };
  return {
    ok: true,
    principal: { tenant: { id: row.tenant_id, name: row.tenant_name }, key: apiKeyOfRow(row) },
  };
}

/** The tenant a secret key belongs to, or null for a malformed, unknown, revoked or expired key, or a suspended tenant's. Asks the database every time. */
export async function authenticate(sql: Sql, secret: string): Promise<Tenant | null> {
  if (!hasValidChecksum(secret)) return null;
  const check = await checkDigest(sql, digestOf(secret));
  return check.ok ? check.principal.tenant : null;
}

export type Authenticator = {
  /** The tenant a secret key belongs to, or null for a malformed, unknown, revoked or expired key, or a suspended tenant's. */
  authenticate(secret: string): Promise<Tenant | null>;
  /** What the key is and who it acts for, or why it is refused. */
  check(secret: string): Promise<KeyCheck>;
  /** check's answer, given at once (no promise) when it needs no query: a key remembered, or a made-up one. */
  checkNow(secret: string): KeyCheck | Promise<KeyCheck>;
  /** Stops hearing the change bus (the memory is dropped with the authenticator). */
  close(): void;
};

/**
 * Authentication with a per-process memory of valid keys. Only keys found valid are remembered, each until the
 * earlier of `ttlMs` from now and the key's expiry: an unknown, revoked or suspended key always asks the database, so
 * a stream of made-up keys cannot fill the memory. A key revoked by any process is forgotten when its announcement
 * arrives on the change bus, and everything is forgotten on `resync`. Nothing is remembered while the bus is not
 * listening, nor from a lookup that began before something was forgotten (it may have read the key just before its
 * revocation committed). Concurrent checks of one key share its lookup, refusals and failures included, unless
 * something was forgotten since it began.
 */
export function createAuthenticator(
  deps: { sql: Sql; nowMs: () => number; changes: ChangeFeed },
  limits: ApiKeyCacheLimits,
): Authenticator {
  const valid = new Map<string, { principal: ApiKeyPrincipal; expiresAtMs: number }>();
  /** Counts what the bus made us forget: a lookup remembers its answer only if this did not move meanwhile. */
  let forgotten = 0;
  const unsubscribe = deps.changes.subscribe((event) => {
    if (event.kind === "api_key_revoked") {
      valid.delete(event.digest);
      forgotten += 1;
    } else if (event.kind === "resync") {
      valid.clear();
      forgotten += 1;
    }
  });
  /**
   * Lookups under way, by digest (one entry per key being looked up; only keys with a valid checksum get here), each
   * with the `forgotten` count when it began; an entry leaves when its lookup settles, answered or failed.
   */
  const lookups = new Map<string, { forgottenBefore: number; checked: Promise<KeyCheck> }>();
  const lookUp = async (key: string, forgottenBefore: number): Promise<KeyCheck> => {
    const checked = await checkDigest(deps.sql, Buffer.from(key, "base64"));
    if (!checked.ok || limits.entriesMax <= 0) return checked;
    if (forgotten !== forgottenBefore || !deps.changes.listening()) return checked;
    const expiresAt = checked.principal.key.expiresAt;
    const trustedUntilMs = deps.nowMs() + limits.ttlMs;
    const expiresAtMs = expiresAt === null ? trustedUntilMs : Math.min(trustedUntilMs, expiresAt.getTime());
    setBounded(valid, key, { principal: checked.principal, expiresAtMs }, limits.entriesMax);
    return checked;
  };
  const checkNow = (secret: string): KeyCheck | Promise<KeyCheck> => {
    // The digest as the memory's key (base64, as the bus announces a revoked one): hashed straight to text, a fifth of
    // the cost of a Buffer turned into text, on every request.
    const key = digestOf(secret, "base64");
    // A key remembered passed its checksum when it was looked up: only one that is not is checked (no query for a
    // made-up key).
    const cached = valid.get(key);
    if (cached !== undefined) {
      valid.delete(key); // re-inserted below when still valid: the Map's order is least recently checked first
      if (cached.expiresAtMs > deps.nowMs()) {
        valid.set(key, cached);
        return { ok: true, principal: cached.principal };
      }
    }
    if (cached === undefined && !hasValidChecksum(secret)) return invalid;
    const running = lookups.get(key);
    if (running !== undefined && running.forgottenBefore === forgotten) return running.checked;
    const lookup = { forgottenBefore: forgotten, checked: lookUp(key, forgotten) };
    lookups.set(key, lookup);
    const settled = () => {
      if (lookups.get(key) === lookup) lookups.delete(key);
    };
    lookup.checked.then(settled, settled);
    return lookup.checked;
  };
  const check = async (secret: string): Promise<KeyCheck> => checkNow(secret);
  return {
    check,
    checkNow,
    async authenticate(secret) {
      const checked = await check(secret);
      return checked.ok ? checked.principal.tenant : null;
    },
    close() {
      unsubscribe();
      forgotten += 1; // a lookup still under way remembers nothing, and no later check joins it
      valid.clear();
      lookups.clear();
    },
  };
}
