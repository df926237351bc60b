// Tenants: who the operator lets use the gateway. Active or suspended; a suspended tenant's keys stop working on
// every process within the authenticator's bound (announced on the change bus, key by key, in the suspending
// transaction; and no process trusts a key longer than apiKeyTrustMsMax without asking again).
import { type ChangeBus, type Db, type Sql, transactionAnnouncing } from "../db/index.ts";
import { newId } from "../ids/index.ts";
import { type ApiKeyRecord, createApiKey, type KeyMode, workingKeyDigests } from "./keys.ts";

/** Who a key acts for: what every request's queries are scoped by. */
export type Tenant = { id: string; name: string };

export type TenantStatus = "active" | "suspended";

export type TenantRecord = {
  id: string;
  name: string;
  status: TenantStatus;
  metadata: Record<string, string>;
  createdAt: Date;
  suspendedAt: Date | null;
};

type TenantRow = {
  id: string;
  name: string;
  status: string;
  metadata: Record<string, string> | string;
  created_at: Date | string;
  suspended_at: Date | string | null;
};

const tenantColumns = "id, name, status, metadata, created_at, suspended_at";

const dateOf = (value: Date | string): Date => (value instanceof Date ? value : new Date(value));

function tenantOfRow(row: TenantRow): TenantRecord {
  return {
    id: row.id,
    name: row.name,
    status: row.status as TenantStatus,
    metadata: typeof row.metadata === "string" ? JSON.parse(row.metadata) : row.metadata,
    createdAt: dateOf(row.created_at),
    suspendedAt: row.suspended_at === null ? null : dateOf(row.suspended_at),
  };
}

export async function createTenant(
  sql: Sql,
  params: { name: string; id?: string; metadata?: Record<string, string> },
): Promise<Tenant> {
  const id = params.id ?? newId("ten");
  // Without metadata, only the columns every schema since 0001 has (migrations.test.ts writes an old database).
  if (params.metadata === undefined)
    await sql.query("INSERT INTO tenants (id, name) VALUES ($1, $2)", [id, params.name]);
  else
    await sql.query("INSERT INTO tenants (id, name, metadata) VALUES ($1, $2, $3::jsonb)", [
      id,
      params.name,
      JSON.stringify(params.metadata),
    ]);
  return { id, name: params.name };
}

/** A tenant and its first API key (every scope, the deployment's mode), in one transaction: the operator's route. */
export async function createTenantWithKey(
  deps: { db: Db },
  params: { name: string; metadata: Record<string, string>; mode: KeyMode },
): Promise<{ tenant: TenantRecord; key: ApiKeyRecord; secret: string }> {
  return deps.db.transaction(async (tx) => {
    const { id } = await createTenant(tx, { name: params.name, metadata: params.metadata });
    const made = await createApiKey(tx, { tenantId: id, mode: params.mode, name: "First key" });
    const tenant = await getTenant(tx, id);
    return { tenant: tenant!, key: made.key, secret: made.secret };
  });
}

export async function getTenant(sql: Sql, id: string): Promise<TenantRecord | null> {
  const rows = await sql.query<TenantRow>(`SELECT ${tenantColumns} FROM tenants WHERE id = $1`, [id]);
  return rows[0] === undefined ? null : tenantOfRow(rows[0]);
}

export type TenantListParams = {
  limit: number;
  /** `after`: older than the tenant (starting_after); `before`: newer than it (ending_before). */
  cursor: { direction: "after" | "before"; id: string } | null;
  /** Created at or after this unix second, or no bound. */
  createdFromSeconds: number | null;
  /** Created before this unix second, or no bound. */
  createdUntilSeconds: number | null;
  status: TenantStatus | null;
};

/**
 * A page of tenants, newest first by (created_at, id) — Stripe's list convention, as gateway/http/lists.ts does it
 * for a tenant's own objects. `cursor_not_found`: the cursor names no tenant.
 */
export async function listTenants(
  sql: Sql,
  params: TenantListParams,
): Promise<
  { ok: true; tenants: TenantRecord[]; hasMore: boolean } | { ok: false; refusal: "cursor_not_found" }
> {
  const values: unknown[] = [];
  const where: string[] = ["true"];
  if (params.status !== null) {
    values.push(params.status);
    where.push(`status = $${values.length}`);
  }
  if (params.createdFromSeconds !== null) {
    values.push(params.createdFromSeconds);
    where.push(`created_at >= to_timestamp($${values.length})`);
  }
  if (params.createdUntilSeconds !== null) {
    values.push(params.createdUntilSeconds);
    where.push(`created_at < to_timestamp($${values.length})`);
  }
  const newer = params.cursor?.direction === "before";
  if (params.cursor !== null) {
    const found = await sql.query("SELECT 1 FROM tenants WHERE id = $1", [params.cursor.id]);
    if (found.length === 0) return { ok: false, refusal: "cursor_not_found" };
    values.push(params.cursor.id);
    where.push(
      `(created_at, id) ${newer ? ">" : "<"} (SELECT created_at, id FROM tenants WHERE id = $${values.length})`,
    );
  }
  values.push(params.limit + 1);
  const order = newer ? "ASC" : "DESC";
  const rows = await sql.query<TenantRow>(
    `SELECT ${tenantColumns} FROM tenants WHERE ${where.join(" AND ")}
     ORDER BY created_at ${order}, id ${order} LIMIT $${values.length}`,
    values,
  );
  const page = rows.slice(0, params.limit);
  if (newer) page.reverse();
  return { ok: true, tenants: page.map(tenantOfRow), hasMore: rows.length > params.limit };
}

/**
 * Suspends or reactivates a tenant; null when there is none by that id. Suspending announces each working key of
 * the tenant as revoked (the keys stay as they are: reactivating makes them work again). Setting the status it
 * already has changes nothing and is not an error.
 */
export async function setTenantStatus(
  deps: { db: Db; changes: ChangeBus },
  params: { id: string; status: TenantStatus },
): Promise<TenantRecord | null> {
  return transactionAnnouncing(deps, async (tx, announce) => {
    const rows = await tx.query<TenantRow>(
      `UPDATE tenants SET status = $2,
         suspended_at = CASE WHEN $2 = 'suspended' THEN coalesce(suspended_at, now()) ELSE NULL END
       WHERE id = $1 RETURNING ${tenantColumns}`,
      [params.id, params.status],
    );
    const row = rows[0];
    if (row === undefined) return null;
    if (params.status === "suspended") {
      for (const digest of await workingKeyDigests(tx, params.id))
        await announce({ kind: "api_key_revoked", digest: digest.toString("base64") });
    }
    return tenantOfRow(row);
  });
}
