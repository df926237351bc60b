// Payees: whom a tenant pays, by name, with its ways to be paid. Every read and write is scoped to its tenant:
// another tenant's payee is as unknown as one that does not exist. Expected refusals are values (PayeeRefusal),
// checked in a fixed order: a repeated method first (no store asked), then each method in turn: an `account` method's
// account exists, any other method is not one of the gateway's own addresses.
import type { Sql } from "../db/index.ts";
import { newId } from "../ids/index.ts";
import {
  firstDuplicate,
  normalizeMethod,
  type PayeeDestination,
  type PayeeMethod,
  splitMethods,
} from "./methods.ts";

export type Payee = {
  id: string;
  tenantId: string;
  name: string;
  metadata: Record<string, string>;
  methods: PayeeMethod[];
  createdAt: Date;
  updatedAt: Date;
};

/** Why a create or update wrote nothing. */
export type PayeeRefusal =
  | "payee_not_found"
  | "payee_method_duplicate"
  | "account_not_found"
  | "destination_is_gateway";

export type PayeeResult =
  | { ok: true; payee: Payee }
  | { ok: false; refusal: PayeeRefusal; message: string; param?: string };

export type PayeesDeps = {
  sql: Sql;
  /** The tenant's own account, or null (the account cache's tenantAccount). */
  accounts: { tenantAccount(params: { tenantId: string; id: string }): Promise<{ id: string } | null> };
  /**
   * Whether a destination is an address of the gateway's own (a hot wallet, a contract, a deposit address: the
   * rails' ownsDestination). Such a method is refused when it is written, not only when it is paid.
   */
  ownsDestination: (destination: PayeeDestination) => Promise<boolean>;
  nowMs: () => number;
};

/** How many payees a list returns when the request does not say, and the most it returns. */
export const payeesListLimitDefault = 10;
export const payeesListLimitMax = 100;

/** A payee's row as payeeColumns reads it (getPayee, and the payees' list: http/resources/lists.ts). */
export type PayeeRow = {
  id: string;
  tenant_id: string;
  name: string;
  methods: unknown;
  metadata: unknown;
  created_at: Date;
  updated_at: Date;
};

export const payeeColumns = "id, tenant_id, name, methods, metadata, created_at, updated_at";

/** A json column as the driver hands it: parsed already (pg, PGlite) or as text. */
function fromJson<T>(value: unknown): T {
  return (typeof value === "string" ? JSON.parse(value) : value) as T;
}

export function payeeFromRow(row: PayeeRow): Payee {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    name: row.name,
    metadata: fromJson<Record<string, string>>(row.metadata),
    methods: fromJson<PayeeMethod[]>(row.methods),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** The methods as stored, or why they cannot be: a repeated method, an account that is not the tenant's. */
async function checkMethods(
  deps: PayeesDeps,
  params: { tenantId: string; methods: readonly PayeeMethod[] },
): Promise<{ ok: true; methods: PayeeMethod[] } | Extract<PayeeResult, { ok: false }>> {
  const methods = params.methods.map(normalizeMethod);
  const duplicate = firstDuplicate(methods);
  if (duplicate !== null)
    return {
      ok: false,
      refusal: "payee_method_duplicate",
      message: `methods.${duplicate.index} is the same as methods.${duplicate.sameAs}`,
      param: `methods.${duplicate.index}`,
    };
  for (const [index, method] of methods.entries()) {
    if (method.kind !== "account") {
      if (await deps.ownsDestination(method))
        return {
          ok: false,
          refusal: "destination_is_gateway",
          message: `methods.${index} is an address of the gateway's own: paying it would move nothing out`,
          param: `methods.${index}`,
        };
      continue;
    }
    const account = await deps.accounts.tenantAccount({ tenantId: params.tenantId, id: method.accountId });
    if (account === null)
      return {
        ok: false,
        refusal: "account_not_found",
        message: `no account "${method.accountId}"`,
        param: `methods.${index}.account`,
      };
  }
  return { ok: true, methods };
}

/** Creates a payee. `methods` is non-empty and at most payeeMethodsMax long (the caller's schema bounds it). */
export async function createPayee(
  deps: PayeesDeps,
  params: {
    tenantId: string;
    name: string;
    metadata: Record<string, string>;
    methods: readonly PayeeMethod[];
  },
): Promise<PayeeResult> {
  const checked = await checkMethods(deps, params);
  if (!checked.ok) return checked;
  const nowMs = deps.nowMs();
  const at = new Date(nowMs).toISOString();
  const rows = await deps.sql.query<PayeeRow>(
    `INSERT INTO payees (id, tenant_id, name, methods, metadata, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING ${payeeColumns}`,
    [
      newId("pye", nowMs),
      params.tenantId,
      params.name,
      JSON.stringify(checked.methods),
      JSON.stringify(params.metadata),
      at,
    ],
  );
  return { ok: true, payee: payeeFromRow(rows[0]!) };
}

/** The tenant's payee, or null. */
export async function getPayee(sql: Sql, params: { tenantId: string; id: string }): Promise<Payee | null> {
  const rows = await sql.query<PayeeRow>(
    `SELECT ${payeeColumns} FROM payees WHERE id = $1 AND tenant_id = $2`,
    [params.id, params.tenantId],
  );
  return rows[0] === undefined ? null : payeeFromRow(rows[0]);
}

/**
 * The tenant's payees, newest first, `limit` at most (1 to payeesListLimitMax); after `startingAfter`, those
 * older than that id — any id works as a cursor, so another tenant's tells nothing.
 */
export async function listPayees(
  sql: Sql,
  params: { tenantId: string; limit: number; startingAfter: string | null },
): Promise<{ payees: Payee[]; hasMore: boolean }> {
  const limit = Math.min(Math.max(1, Math.trunc(params.limit)), payeesListLimitMax);
  const rows = await sql.query<PayeeRow>(
    `SELECT ${payeeColumns} FROM payees WHERE tenant_id = $1 AND ($2::text IS NULL OR id < $2::text)
     ORDER BY id DESC LIMIT $3`,
    [params.tenantId, params.startingAfter, limit + 1],
  );
  return { payees: rows.slice(0, limit).map(payeeFromRow), hasMore: rows.length > limit };
}

/** Replaces what is given (each of name, metadata and methods as a whole) and leaves the rest. */
export async function updatePayee(
  deps: PayeesDeps,
  params: {
    tenantId: string;
    id: string;
    name?: string;
    metadata?: Record<string, string>;
    methods?: readonly PayeeMethod[];
  },
): Promise<PayeeResult> {
  let methods: PayeeMethod[] | null = null;
  if (params.methods !== undefined) {
    // The payee the path names first: a method naming an account the tenant lacks is not the answer for a payee
    // that is not there (404, as every other route answers for the object of its path).
    const [found] = await deps.sql.query("SELECT 1 FROM payees WHERE id = $1 AND tenant_id = $2", [
      params.id,
      params.tenantId,
    ]);
    if (found === undefined)
      return { ok: false, refusal: "payee_not_found", message: `no payee "${params.id}"` };
    const checked = await checkMethods(deps, { tenantId: params.tenantId, methods: params.methods });
    if (!checked.ok) return checked;
    methods = checked.methods;
  }
  const rows = await deps.sql.query<PayeeRow>(
    `UPDATE payees SET name = coalesce($3, name), metadata = coalesce($4::json, metadata),
       methods = coalesce($5::json, methods), updated_at = $6
     WHERE id = $1 AND tenant_id = $2 RETURNING ${payeeColumns}`,
    [
      params.id,
      params.tenantId,
      params.name ?? null,
      params.metadata === undefined ? null : JSON.stringify(params.metadata),
      methods === null ? null : JSON.stringify(methods),
      new Date(deps.nowMs()).toISOString(),
    ],
  );
  if (rows[0] === undefined)
    return { ok: false, refusal: "payee_not_found", message: `no payee "${params.id}"` };
  return { ok: true, payee: payeeFromRow(rows[0]) };
}

/**
 * For payments: the tenant's payee's methods, those a rail can pay today as core Destinations and its Lightning
 * Addresses apart (no core kind yet), each in the order the payee lists them; null when there is no such payee.
 */
export async function payeeMethods(
  sql: Sql,
  params: { tenantId: string; id: string },
): Promise<{ destinations: PayeeDestination[]; lightningAddresses: string[] } | null> {
  const rows = await sql.query<{ methods: unknown }>(
    "SELECT methods FROM payees WHERE id = $1 AND tenant_id = $2",
    [params.id, params.tenantId],
  );
  return rows[0] === undefined ? null : splitMethods(fromJson<PayeeMethod[]>(rows[0].methods));
}
