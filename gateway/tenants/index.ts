// Tenants and their API keys. A key is `sk_<mode>_<43 base64url chars>` (256 random bits), shown once;
// only its SHA-256 is stored, which is enough for a secret of that entropy, and lookups are by digest.
import { createHash, randomBytes } from "node:crypto";
import { type ChangeBus, type ChangeFeed, type Db, type Sql, transactionAnnouncing } from "../db/index.ts";
import { newId } from "../ids/index.ts";

export type Tenant = { id: string; name: string };

export async function createTenant(sql: Sql, params: { name: string; id?: string }): Promise<Tenant> {
  const id = params.id ?? newId("ten");
  await sql.query("INSERT INTO tenants (id, name) VALUES ($1, $2)", [id, params.name]);
  return { id, name: params.name };
}

function digestOf(secret: string): Buffer {
  return createHash("sha256").update(secret, "utf8").digest();
}

/** Makes a key for a tenant and returns the secret: the only time it exists outside the caller's hands. */
export async function createApiKey(
  sql: Sql,
  params: { tenantId: string; mode: "test" | "live" },
): Promise<{ id: string; secret: string }> {
  const secret = `sk_${params.mode}_${randomBytes(32).toString("base64url")}`;
  const id = newId("key");
  await sql.query("INSERT INTO api_keys (id, tenant_id, secret_sha256, hint) VALUES ($1, $2, $3, $4)", [
    id,
    params.tenantId,
    digestOf(secret),
    `${secret.slice(0, 8)}…${secret.slice(-4)}`,
  ]);
  return { id, secret };
}

const secretPattern = /^sk_(test|live)_[A-Za-z0-9_-]{43}$/;

/** The tenant a secret key belongs to, or null for a malformed, unknown or revoked key. Asks the database every time. */
export async function authenticate(sql: Sql, secret: string): Promise<Tenant | null> {
  if (!secretPattern.test(secret)) return null;
  return tenantOfDigest(sql, digestOf(secret));
}

async function tenantOfDigest(sql: Sql, digest: Buffer): Promise<Tenant | null> {
  const rows = await sql.query<{ id: string; name: string }>(
    `SELECT t.id, t.name FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
     WHERE k.secret_sha256 = $1 AND k.revoked_at IS NULL`,
    [digest],
  );
  return rows[0] ?? null;
}

/**
 * Revokes a tenant's key; false when the tenant has no such unrevoked key. The revocation is announced on the
 * change bus in its own transaction: every process's authenticator forgets the key once it commits (this
 * process's before this returns).
 */
export async function revokeApiKey(
  deps: { db: Db; changes: ChangeBus },
  params: { tenantId: string; id: string },
): Promise<boolean> {
  return transactionAnnouncing(deps, async (tx, announce) => {
    const rows = await tx.query<{ secret_sha256: Uint8Array }>(
      `UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL
       RETURNING secret_sha256`,
      [params.id, params.tenantId],
    );
    if (rows.length !== 1) return false;
    await announce({
      kind: "api_key_revoked",
      digest: Buffer.from(rows[0]!.secret_sha256).toString("base64"),
    });
    return true;
  });
}

export type ApiKeyCacheLimits = {
  /** The most keys remembered at once; beyond it the least recently checked is forgotten. */
  entriesMax: number;
  /**
   * How long a key found valid is trusted without asking the database again. Revocations arrive on the change
   * bus at once; this bounds what a revocation the bus could not deliver waits (a safety net).
   */
  ttlMs: number;
};

export const apiKeyCacheDefaults: ApiKeyCacheLimits = { entriesMax: 10_000, ttlMs: 60_000 };

export type Authenticator = {
  /** The tenant a secret key belongs to, or null for a malformed, unknown or revoked key. */
  authenticate(secret: string): Promise<Tenant | null>;
  /** Stops hearing the change bus (the memory is dropped with the authenticator). */
  close(): void;
};

/**
 * Authentication with a per-process memory of valid keys, keyed by the key's SHA-256 (the secret itself is
 * never kept). Only keys found valid are remembered, each for `ttlMs`: an unknown or revoked key always asks
 * the database, so a stream of made-up keys cannot fill the memory. A key revoked by any process is forgotten
 * when its announcement arrives on the change bus, and everything is forgotten on `resync`. Nothing is
 * remembered while the bus is not listening, nor from a lookup that began before something was forgotten (it
 * may have read the key just before its revocation committed).
 */
export function createAuthenticator(
  deps: { sql: Sql; nowMs: () => number; changes: ChangeFeed },
  limits: ApiKeyCacheLimits,
): Authenticator {
  const valid = new Map<string, { tenant: Tenant; expiresAtMs: number }>();
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
  return {
    async authenticate(secret) {
      if (!secretPattern.test(secret)) return null;
      const digest = digestOf(secret);
      const key = digest.toString("base64");
      const cached = valid.get(key);
      if (cached !== undefined) {
        valid.delete(key); // re-inserted below when still valid: the Map's order is least recently checked first
        if (cached.expiresAtMs > deps.nowMs()) {
          valid.set(key, cached);
          return cached.tenant;
        }
      }
      const forgottenBefore = forgotten;
      const tenant = await tenantOfDigest(deps.sql, digest);
      if (tenant === null || limits.entriesMax <= 0) return tenant;
      if (forgotten !== forgottenBefore || !deps.changes.listening()) return tenant;
      while (valid.size >= limits.entriesMax) {
        const oldest = valid.keys().next();
        if (oldest.done === true) break;
        valid.delete(oldest.value);
      }
      valid.set(key, { tenant, expiresAtMs: deps.nowMs() + limits.ttlMs });
      return tenant;
    },
    close() {
      unsubscribe();
      valid.clear();
    },
  };
}

export { type TenancyErrorCode, tenancyErrorStatus } from "./codes.ts";
