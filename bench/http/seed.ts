// Tenants for the `internal-postgres-many` case of the HTTP bench: 100 tenants with one API key and 10 accounts
// each, every account funded (a transfer from a bench clearing account), written before the gateway starts.
import { evmMigrations } from "../../adapters/evm/index.ts";
import { fiatMigrations } from "../../adapters/fiat/index.ts";
import { assets } from "../../core/index.ts";
import { createAccount } from "../../gateway/accounts/index.ts";
import { gatewayMigrations } from "../../gateway/app.ts";
import { migrate, openPostgres } from "../../gateway/db/index.ts";
import { derivedLedgerId } from "../../gateway/ids/index.ts";
import { createLedger, ledgerHolds, ledgerMigrations, transferCodes } from "../../gateway/ledger/index.ts";
import { gatewayLedgerParams } from "../../gateway/ledger-params.ts";
import { createApiKey, createTenant } from "../../gateway/tenants/index.ts";

export type SeededTenant = { tenantId: string; apiKey: string; accounts: readonly string[] };

export const seedTenantCount = 100;
export const seedAccountsPerTenant = 10;
const fundingPerAccount = 10_000_000n; // 10 USDC: 10 million payments of 0.000001

export async function seedTenants(url: string): Promise<SeededTenant[]> {
  const db = openPostgres({ url, poolSizeMax: 4, statementTimeoutMs: 60_000 });
  const ledger = createLedger({ ...gatewayLedgerParams, db });
  try {
    await migrate(db, [ledgerMigrations, gatewayMigrations, evmMigrations, fiatMigrations]);
    const source = await createAccount(
      { sql: db, ledger },
      { tenantId: null, kind: "clearing", asset: assets.USDC, name: "bench funding", rail: "bench" },
    );
    const tenants: SeededTenant[] = [];
    for (let t = 0; t < seedTenantCount; t += 1) {
      const tenant = await createTenant(db, { name: `bench tenant ${t}` });
      const key = await createApiKey(db, { tenantId: tenant.id, mode: "test" });
      const accounts: string[] = [];
      const transfers = [];
      for (let a = 0; a < seedAccountsPerTenant; a += 1) {
        const account = await createAccount(
          { sql: db, ledger },
          { tenantId: tenant.id, kind: "customer", asset: assets.USDC, name: `bench ${t}.${a}` },
        );
        accounts.push(account.id);
        transfers.push({
          id: derivedLedgerId(account.id, "bench-funding"),
          debitAccountId: source.ledgerAccountId,
          creditAccountId: account.ledgerAccountId,
          amount: fundingPerAccount,
          ledger: assets.USDC.ledger,
          code: transferCodes.payments.funding,
        });
      }
      for (const result of await ledger.createTransfers(transfers))
        if (!ledgerHolds(result.status)) throw new Error(`bench funding refused: ${result.status}`);
      tenants.push({ tenantId: tenant.id, apiKey: key.secret, accounts });
    }
    return tenants;
  } finally {
    await ledger.close();
    await db.close();
  }
}
