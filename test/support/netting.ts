// What tests of netted payouts (gateway/payments/batch-payouts.ts) stand on, on any store: a tenant with a USDC
// customer account, the clearing account of the rail it pays by (the EVM rail's unless named) that funds it,
// payments of that customer left processing, and netting's dependencies with a rail that refuses every batch (a
// test gives its own payer where it pays).
import { assets } from "../../core/index.ts";
import {
  accountCacheDefaults,
  balanceOf,
  createAccount,
  createAccountCache,
  getClearingAccount,
} from "../../gateway/accounts/index.ts";
import type { Db } from "../../gateway/db/index.ts";
import { derivedLedgerId } from "../../gateway/ids/index.ts";
import { idToUuid, type Ledger, transferCodes } from "../../gateway/ledger/index.ts";
import type { accruePayout, NettingDeps } from "../../gateway/payments/batch-payouts.ts";
import { paymentLedgerLink } from "../../gateway/payments/store.ts";
import { createTenant } from "../../gateway/tenants/index.ts";

export type NettingFixture = {
  tenantId: string;
  /** The rail the payouts go by (netting's payer's id): a flush plans, pauses and times each rail on its own. */
  rail: string;
  /** The customer's account id, the source of every payment and payout made here. */
  customerId: string;
  /** Credits the customer `amount` from the rail's clearing account (a funding transfer of its own). */
  fund(amount: bigint): Promise<void>;
  /** What the customer's account holds, posted. */
  customerPosted(): Promise<bigint>;
  /** A payment of the customer's, processing (as its request leaves it before it accrues). */
  insertPayment(id: string): Promise<void>;
  /** The payout of payment `id` to `payee`, as accruePayout takes it. */
  payout(id: string, amount: bigint, payee: `0x${string}`): Parameters<typeof accruePayout>[1];
  /** Netting over `db` and `ledger`, the rail refusing every batch. */
  deps(): NettingDeps;
};

/**
 * Makes the tenant and its accounts (ids prefixed `name`), the customer funded with `funding` from `rail`'s clearing
 * account. A test with a rail of its own sees no payout, batch or refusal another test left on a rail.
 */
export async function nettingFixture(
  db: Db,
  ledger: Ledger,
  name: string,
  funding: bigint,
  rail = "evm",
): Promise<NettingFixture> {
  const tenantId = `ten_${name}`;
  const customerId = `acct_${name}_customer`;
  await createTenant(db, { id: tenantId, name });
  const customer = await createAccount(
    { sql: db, ledger },
    { tenantId, kind: "customer", asset: assets.USDC, name: "c", id: customerId },
  );
  // One clearing account per rail and asset: a second fixture on the same database (another tenant) shares it.
  const clearing =
    (await getClearingAccount(db, { rail, asset: assets.USDC })) ??
    (await createAccount(
      { sql: db, ledger },
      {
        tenantId: null,
        kind: "clearing",
        asset: assets.USDC,
        name: rail,
        rail,
        id: `acct_${name}_clearing`,
      },
    ));
  const accounts = createAccountCache({ sql: db }, accountCacheDefaults);
  let fundings = 0n;
  const fixture: NettingFixture = {
    tenantId,
    rail,
    customerId,
    async fund(amount) {
      fundings += 1n;
      await ledger.createTransfers([
        {
          id: derivedLedgerId(name, `funding ${fundings}`), // each fixture's own, beside another's on the ledger
          debitAccountId: clearing.ledgerAccountId,
          creditAccountId: customer.ledgerAccountId,
          amount,
          ledger: assets.USDC.ledger,
          code: transferCodes.payments.funding,
        },
      ]);
    },
    async customerPosted() {
      const [account] = await ledger.lookupAccounts([customer.ledgerAccountId]);
      return balanceOf("customer", account!).posted;
    },
    async insertPayment(id) {
      await db.query(
        `INSERT INTO payments (id, tenant_id, status, asset, amount, source_account_id, destination, policy, ledger_link)
         VALUES ($1, $2, 'processing', 'USDC', 40, $3, '{}', '{}', $4::uuid)`,
        [id, tenantId, customerId, idToUuid(paymentLedgerLink(id))],
      );
    },
    payout: (id, amount, payee) => ({ id, tenantId, sourceAccountId: customerId, payee, amount }),
    deps: () => ({
      db,
      ledger,
      accounts,
      payer: {
        id: rail,
        asset: assets.USDC,
        payoutBatch: async () => ({
          status: "failed",
          code: "rail_unavailable",
          message: "not in this test",
        }),
      },
      config: { maxFeeShareBps: 1_000, threshold: { total: 1_000n }, intervalMs: 60_000 },
      nowMs: Date.now,
    }),
  };
  await fixture.fund(funding);
  return fixture;
}

/**
 * `ledger`, except that a write carrying a refused payout's return fails, as if the process stopped there: the
 * refusal is kept, the money not yet given back.
 */
export function ledgerStoppingAtReturn(ledger: Ledger): Ledger {
  return {
    ...ledger,
    createTransfersWith: async (...args: Parameters<Ledger["createTransfersWith"]>) => {
      if (args[0].some((transfer) => transfer.code === transferCodes.netting.returned))
        throw new Error("the process stopped");
      return ledger.createTransfersWith(...args);
    },
  };
}
