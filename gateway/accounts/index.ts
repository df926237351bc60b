// Named accounts over ledger accounts. A tenant's accounts (customer and merchant balances) are
// liabilities: credit-normal, never overdrawn. A rail's clearing account holds what sits on that rail:
// an asset, debit-normal, never below zero. Every read is scoped to its tenant.

import { type Asset, assetByCode, SwitchyardError, setBounded } from "../../core/index.ts";
import type { ChangeFeed, Sql } from "../db/index.ts";
import { derivedLedgerId, newId } from "../ids/index.ts";
import {
  accountCodes,
  type BalanceRule,
  type Ledger,
  type Account as LedgerAccount,
  openAccounts,
} from "../ledger/index.ts";

export type AccountKind = "customer" | "merchant" | "clearing" | "fee" | "payable" | "capital";

/** The accounts a rail has of its own, one per kind and asset. */
export type RailAccountKind = "clearing" | "payable" | "fee" | "capital";

export type AccountRecord = {
  id: string;
  tenantId: string | null;
  kind: AccountKind;
  asset: Asset;
  ledgerAccountId: bigint;
  name: string;
  rail: string | null;
};

/** TigerBeetle `code` of each kind of account (the registry in gateway/ledger/codes.ts). */
const kindCodes: Record<AccountKind, number> = accountCodes.gateway;

const creditNormal: Record<AccountKind, boolean> = {
  customer: true,
  merchant: true,
  clearing: false,
  fee: true,
  payable: true,
  capital: true,
};

/**
 * What each kind's balance may never do. A rail's fee account records fees charged (credits) and fees paid
 * (debits) and may show a loss; the operator's capital records what it put on a rail: neither refuses anything.
 */
const balanceRules: Record<AccountKind, BalanceRule> = {
  customer: "debits_within_credits",
  merchant: "debits_within_credits",
  clearing: "credits_within_debits",
  fee: "none",
  payable: "debits_within_credits",
  capital: "none",
};

export class AccountSetupError extends SwitchyardError {
  override name = "AccountSetupError";
}

export async function createAccount(
  deps: { sql: Sql; ledger: Ledger },
  params: {
    tenantId: string | null;
    kind: AccountKind;
    asset: Asset;
    name: string;
    rail?: string;
    id?: string;
    /** Overrides the kind's rule: a clearing account for gas records what the wallet pays even unopened. */
    balance?: BalanceRule;
    /** The tenant's own key-value pairs (an account created over the API); absent: none. */
    metadata?: Readonly<Record<string, string>>;
  },
): Promise<AccountRecord & { createdAt: Date | null }> {
  const id = params.id ?? newId("acct");
  const ledgerAccountId = derivedLedgerId(id, "account");
  await openAccounts(
    deps.ledger,
    [
      {
        id: ledgerAccountId,
        ledger: params.asset.ledger,
        code: kindCodes[params.kind],
        balance: params.balance ?? balanceRules[params.kind],
      },
    ],
    () => `account ${id}`,
  );
  const values = [
    id,
    params.tenantId,
    params.kind,
    params.asset.code,
    ledgerAccountId.toString(),
    params.name,
    params.rail ?? null,
  ];
  // Without metadata the row is written as before migration 0018 (which added the column) could read it.
  const inserted = await deps.sql.query<{ created_at: Date }>(
    params.metadata === undefined
      ? `INSERT INTO accounts (id, tenant_id, kind, asset, ledger_account_id, name, rail)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING RETURNING created_at`
      : `INSERT INTO accounts (id, tenant_id, kind, asset, ledger_account_id, name, rail, metadata)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING RETURNING created_at`,
    params.metadata === undefined ? values : [...values, JSON.stringify(params.metadata)],
  );
  return {
    // null: the row was there before (an id given again).
    createdAt: inserted[0]?.created_at ?? null,
    id,
    tenantId: params.tenantId,
    kind: params.kind,
    asset: params.asset,
    ledgerAccountId,
    name: params.name,
    rail: params.rail ?? null,
  };
}

type AccountRow = {
  id: string;
  tenant_id: string | null;
  kind: AccountKind;
  asset: string;
  ledger_account_id: string;
  name: string;
  rail: string | null;
};

function fromRow(row: AccountRow): AccountRecord {
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
  };
}

const columns = "id, tenant_id, kind, asset, ledger_account_id::text AS ledger_account_id, name, rail";

/** A tenant's own account, or null: another tenant's account is as unknown as one that does not exist. */
export async function getTenantAccount(
  sql: Sql,
  params: { tenantId: string; id: string },
): Promise<AccountRecord | null> {
  const rows = await sql.query<AccountRow>(
    `SELECT ${columns} FROM accounts WHERE id = $1 AND tenant_id = $2`,
    [params.id, params.tenantId],
  );
  return rows[0] === undefined ? null : fromRow(rows[0]);
}

/**
 * A rail's own account of one kind and asset: what sits on the rail (clearing), what it owes payees (payable), its
 * fees charged and paid (fee), the operator's capital put on it (capital).
 */
export async function getRailAccount(
  sql: Sql,
  params: { kind: RailAccountKind; rail: string; asset: Asset },
): Promise<AccountRecord | null> {
  const rows = await sql.query<AccountRow>(
    `SELECT ${columns} FROM accounts WHERE kind = $1 AND rail = $2 AND asset = $3 AND tenant_id IS NULL`,
    [params.kind, params.rail, params.asset.code],
  );
  return rows[0] === undefined ? null : fromRow(rows[0]);
}

export function getClearingAccount(
  sql: Sql,
  params: { rail: string; asset: Asset },
): Promise<AccountRecord | null> {
  return getRailAccount(sql, { kind: "clearing", ...params });
}

export type AccountCache = {
  /** As getTenantAccount: another tenant's account is as unknown as one that does not exist. */
  tenantAccount(params: { tenantId: string; id: string }): Promise<AccountRecord | null>;
  /** As getRailAccount. */
  railAccount(params: { kind: RailAccountKind; rail: string; asset: Asset }): Promise<AccountRecord | null>;
};

export type AccountCacheLimits = {
  /**
   * The most accounts remembered at once; beyond it the least recently used is forgotten (recency is kept from when
   * the cache is half full: a record not read since then goes first, in the order records were read in).
   */
  entriesMax: number;
};

export const accountCacheDefaults: AccountCacheLimits = { entriesMax: 100_000 };

/**
 * Account lookups remembered per process. Today a row of `accounts` is never updated or deleted, so a record
 * once read stays true in every process; only records found are remembered (an account may be created later).
 * Records are kept by account id, which is the table's primary key: a record remembered for one tenant
 * answers "not found" to any other, exactly as the tenant-scoped query would.
 * With a change bus, an `account_changed` announced by any process makes it forget that account (under its id
 * and as a rail's account) and `resync` everything; nothing is remembered while the bus is not listening, nor
 * from a read that began before something was forgotten. Nothing announces `account_changed` yet: whatever
 * first changes an account row must, in the transaction that changes it.
 */
export function createAccountCache(
  deps: { sql: Sql; changes?: ChangeFeed },
  limits: AccountCacheLimits,
): AccountCache {
  const records = new Map<string, AccountRecord>();
  /** Counts what the bus made us forget: a read remembers its record only if this did not move meanwhile. */
  let forgotten = 0;
  deps.changes?.subscribe((event) => {
    if (event.kind === "account_changed") {
      records.delete(`id:${event.id}`);
      // A rail's few accounts are also kept by (kind, rail, asset); a change is rare: look through them all.
      for (const [key, record] of records) if (record.id === event.id) records.delete(key);
      forgotten += 1;
    } else if (event.kind === "resync") {
      records.clear();
      forgotten += 1;
    }
  });
  const recall = (key: string): AccountRecord | undefined => {
    const record = records.get(key);
    // Re-inserted, the Map's order being least recently used first — once the cache is half full: below that nothing
    // will be forgotten before entriesMax / 2 more accounts are read, and every record used meanwhile moves behind
    // them. Moving each record on every read cost a delete and an insert in a table of every account the gateway
    // serves, two a payment (issue #19, 100 tenants × 10 accounts: recall went from 3–4 µs a payment in the gateway's
    // profile to about 1.5).
    if (record !== undefined && records.size >= limits.entriesMax / 2) {
      records.delete(key);
      records.set(key, record);
    }
    return record;
  };
  const remember = (key: string, record: AccountRecord, forgottenBefore: number): void => {
    if (limits.entriesMax <= 0) return;
    if (forgotten !== forgottenBefore || deps.changes?.listening() === false) return;
    setBounded(records, key, record, limits.entriesMax);
  };
  return {
    async tenantAccount(params) {
      const key = `id:${params.id}`;
      const cached = recall(key);
      if (cached !== undefined) return cached.tenantId === params.tenantId ? cached : null;
      const forgottenBefore = forgotten;
      const record = await getTenantAccount(deps.sql, params);
      if (record !== null) remember(key, record, forgottenBefore);
      return record;
    },
    async railAccount(params) {
      const key = `rail:${params.kind}:${params.rail}:${params.asset.code}`;
      const cached = recall(key);
      if (cached !== undefined) return cached;
      const forgottenBefore = forgotten;
      const record = await getRailAccount(deps.sql, params);
      if (record !== null) remember(key, record, forgottenBefore);
      return record;
    },
  };
}

export type Balance = {
  /** Settled balance, in the account's normal direction. */
  posted: bigint;
  /** Reserved for payments out that have not settled yet. */
  pendingOut: bigint;
  /** Expected from payments in that have not settled yet. */
  pendingIn: bigint;
  /** What can be spent now: posted less pendingOut. */
  available: bigint;
};

export function balanceOf(kind: AccountKind, account: LedgerAccount): Balance {
  if (creditNormal[kind]) {
    const posted = account.creditsPosted - account.debitsPosted;
    return {
      posted,
      pendingOut: account.debitsPending,
      pendingIn: account.creditsPending,
      available: posted - account.debitsPending,
    };
  }
  const posted = account.debitsPosted - account.creditsPosted;
  return {
    posted,
    pendingOut: account.creditsPending,
    pendingIn: account.debitsPending,
    available: posted - account.creditsPending,
  };
}

export {
  accountNameLengthMax,
  createTenantAccount,
  getTenantAccountDetail,
  type TenantAccount,
  type TenantAccountKind,
  type TenantAccountRow,
  tenantAccountAsset,
  tenantAccountAssets,
  tenantAccountColumns,
  tenantAccountFromRow,
  tenantAccountKinds,
} from "./tenant-accounts.ts";
export {
  type AccountTransaction,
  accountTransactions,
  type TransactionPhase,
  type TransactionStatus,
  type TransactionsPage,
  type TransactionsParams,
} from "./transactions.ts";
