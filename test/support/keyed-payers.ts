// Tenants with a funded payer and a payee each, on a database of their own with the real ledger, whose requests that
// fail on an Idempotency-Key taken are counted: for the tests of keys taken in the internal settler's batches and the
// ledger's (test/ledger internal-taken-keys, expired-key-records).
import { inject } from "vitest";
import { assets } from "../../core/index.ts";
import { createAccount } from "../../gateway/accounts/index.ts";
import { gatewayMigrations } from "../../gateway/app.ts";
import { type Db, migrate, openPostgres } from "../../gateway/db/index.ts";
import { createLedger, type Ledger, ledgerMigrations, transferCodes } from "../../gateway/ledger/index.ts";
import { gatewayLedgerParams } from "../../gateway/ledger-params.ts";
import { isPaymentKeyTaken } from "../../gateway/payments/store.ts";
import { createTenant } from "../../gateway/tenants/index.ts";
import { createTestDatabase } from "./postgres.ts";

export type KeyedPayers = {
  db: Db;
  ledger: Ledger;
  /** How many ledger requests (an internal batch, a payment's first write) failed on a taken key so far. */
  refusedOnKey(): number;
  close(): Promise<void>;
};

/**
 * Each of `tenants` gets `acct_<tenant>_payer` holding `funded` and `acct_<tenant>_payee`, funded from the clearing
 * account of the rail `fundingRail` (`acct_<fundingRail>`): what the payers hold there, that rail can pay out.
 */
export async function keyedPayers(params: {
  database: string;
  tenants: readonly string[];
  fundingRail: string;
  funded: bigint;
}): Promise<KeyedPayers> {
  const url = await createTestDatabase(inject("postgresUrl"), params.database);
  const db = openPostgres({ url, poolSizeMax: 4, statementTimeoutMs: 30_000 });
  await migrate(db, [ledgerMigrations, gatewayMigrations]);
  const real = createLedger({ ...gatewayLedgerParams, db });
  let refusedOnKey = 0;
  const ledger: Ledger = {
    ...real,
    async createTransfersWith(transfers, alongside) {
      try {
        return await real.createTransfersWith(transfers, alongside);
      } catch (error) {
        if (isPaymentKeyTaken(error)) refusedOnKey += 1;
        throw error;
      }
    },
  };
  const funding = await createAccount(
    { sql: db, ledger },
    {
      tenantId: null,
      kind: "clearing",
      asset: assets.USDC,
      name: params.fundingRail,
      rail: params.fundingRail,
      id: `acct_${params.fundingRail}`,
    },
  );
  for (const [i, tenantId] of params.tenants.entries()) {
    await createTenant(db, { id: tenantId, name: tenantId });
    const payer = await createAccount(
      { sql: db, ledger },
      { tenantId, kind: "customer", asset: assets.USDC, name: "payer", id: `acct_${tenantId}_payer` },
    );
    await createAccount(
      { sql: db, ledger },
      { tenantId, kind: "merchant", asset: assets.USDC, name: "payee", id: `acct_${tenantId}_payee` },
    );
    const [funded] = await ledger.createTransfers([
      {
        id: 900n + BigInt(i),
        debitAccountId: funding.ledgerAccountId,
        creditAccountId: payer.ledgerAccountId,
        amount: params.funded,
        ledger: assets.USDC.ledger,
        code: transferCodes.payments.funding,
      },
    ]);
    if (funded?.status !== "created") throw new Error(`funding ${tenantId}: ${funded?.status}`);
  }
  return {
    db,
    ledger,
    refusedOnKey: () => refusedOnKey,
    close: async () => {
      await ledger.close();
      await db.close();
    },
  };
}
