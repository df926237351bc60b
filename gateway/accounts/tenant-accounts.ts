// A tenant's accounts as the API shows them: created by the tenant (customer or merchant, in an asset tenants
// hold), read back with their metadata and creation time. A rail's own accounts (clearing, fee, payable,
// capital) are the operator's: no tenant creates or sees them.
import { type Asset, assetByCode, assets } from "../../core/index.ts";
import type { Sql } from "../db/index.ts";
import type { Ledger } from "../ledger/index.ts";
import { type AccountKind, type AccountRecord, AccountSetupError, createAccount } from "./index.ts";

/** The kinds a tenant creates. */
export const tenantAccountKinds = ["customer", "merchant"] as const;
export type TenantAccountKind = (typeof tenantAccountKinds)[number];

/** The assets a tenant's account may hold: not ETH, the gas the operator's hot wallets pay. */
export const tenantAccountAssets: readonly Asset[] = [assets.USDC, assets.USD, assets.BTC];

export const accountNameLengthMax = 256;

export type TenantAccount = AccountRecord & {
  tenantId: string;
  metadata: Record<string, string>;
  createdAt: Date;
};

/** The asset of that code a tenant's account may hold, or null. */
export function tenantAccountAsset(code: string): Asset | null {
  const asset = assetByCode(code);
  return asset !== null && tenantAccountAssets.includes(asset) ? asset : null;
}

/** The columns tenantAccountFromRow reads. */
export const tenantAccountColumns =
  "id, tenant_id, kind, asset, ledger_account_id::text AS ledger_account_id, name, rail, metadata, created_at";

export type TenantAccountRow = {
  id: string;
  tenant_id: string;
  kind: AccountKind;
  asset: string;
  ledger_account_id: string;
  name: string;
  rail: string | null;
  metadata: unknown;
  created_at: Date;
};

export function tenantAccountFromRow(row: TenantAccountRow): TenantAccount {
  const asset = assetByCode(row.asset);
  if (asset === null) throw new AccountSetupError(`account ${row.id} has unknown asset ${row.asset}`);
  return {
    id: row.id,
    tenantId: row.tenant_id,
    kind: row.kind,
    asset,
    ledgerAccountId: BigInt(row.ledger_account_id),
    name: row.name,
    rail: row.rail,
    metadata: (typeof row.metadata === "string" ? JSON.parse(row.metadata) : row.metadata) as Record<
      string,
      string
    >,
    createdAt: row.created_at,
  };
}

/** The tenant's account with its metadata and creation time, or null (another tenant's is not found either). */
export async function getTenantAccountDetail(
  sql: Sql,
  params: { tenantId: string; id: string },
): Promise<TenantAccount | null> {
  const rows = await sql.query<TenantAccountRow>(
    `SELECT ${tenantAccountColumns} FROM accounts WHERE id = $1 AND tenant_id = $2`,
    [params.id, params.tenantId],
  );
  return rows[0] === undefined ? null : tenantAccountFromRow(rows[0]);
}

/**
 * Opens the ledger account and writes the row; the account is empty. Nothing is read back once the row is written:
 * a read that failed there would answer an error for an account made, and the Idempotency-Key's retry (its claim
 * given back on an error) would make a second one.
 */
export async function createTenantAccount(
  deps: { sql: Sql; ledger: Ledger },
  params: {
    tenantId: string;
    kind: TenantAccountKind;
    asset: Asset;
    name: string;
    metadata: Readonly<Record<string, string>>;
  },
): Promise<TenantAccount> {
  const record = await createAccount(deps, {
    tenantId: params.tenantId,
    kind: params.kind,
    asset: params.asset,
    name: params.name,
    metadata: params.metadata,
  });
  if (record.createdAt === null) throw new AccountSetupError(`account ${record.id} was there already`);
  return {
    id: record.id,
    tenantId: params.tenantId,
    kind: record.kind,
    asset: record.asset,
    ledgerAccountId: record.ledgerAccountId,
    name: record.name,
    rail: record.rail,
    metadata: { ...params.metadata },
    createdAt: record.createdAt,
  };
}
