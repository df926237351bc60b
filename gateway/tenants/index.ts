// Tenants and their API keys. A key is `sk_<mode>_<43 base64url chars>` (256 random bits), shown once;
// only its SHA-256 is stored, which is enough for a secret of that entropy, and lookups are by digest.
import { createHash, randomBytes } from "node:crypto";
import type { Sql } from "../db/index.ts";
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

/** The tenant a secret key belongs to, or null for a malformed, unknown or revoked key. */
export async function authenticate(sql: Sql, secret: string): Promise<Tenant | null> {
  if (!secretPattern.test(secret)) return null;
  const rows = await sql.query<{ id: string; name: string }>(
    `SELECT t.id, t.name FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
     WHERE k.secret_sha256 = $1 AND k.revoked_at IS NULL`,
    [digestOf(secret)],
  );
  return rows[0] ?? null;
}
