// The SQL object store on PGlite: the first object recorded for a key wins, and the rail answers retries
// from it (here with stripe-mock, which creates a new object for every request).
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  createFiatRail,
  createSqlStripeObjectStore,
  createStripeClient,
  defaultFiatFeeSchedule,
  fiatMigrations,
} from "../../adapters/fiat/index.ts";
import { assets } from "../../core/index.ts";
import { type Db, migrate, openPglite } from "../../gateway/db/index.ts";

let db: Db;
beforeAll(async () => {
  db = await openPglite(undefined);
  expect(await migrate(db, [fiatMigrations])).toEqual([
    "fiat/001_fiat_stripe.sql",
    "fiat/002_withdrawn_reversals.sql",
    "fiat/003_fees.sql",
  ]);
  expect(await migrate(db, [fiatMigrations])).toEqual([]); // once
});
afterAll(async () => {
  await db.close();
});

describe("SQL stripe object store", () => {
  it("keeps the first object recorded for a key", async () => {
    const store = createSqlStripeObjectStore(db);
    expect(await store.find("k1")).toBeNull();
    const first = {
      idempotencyKey: "k1",
      kind: "transfer" as const,
      objectId: "tr_a",
      paymentId: "p",
      attemptId: "a",
      amount: 10n,
    };
    expect(await store.record(first)).toEqual(first);
    expect(await store.record({ ...first, objectId: "tr_b" })).toEqual(first);
    expect(await store.find("k1")).toEqual(first);
  });

  it("lets concurrent retries of one payout on two rails (two processes, one database) agree on one transfer", async () => {
    const makeRail = () =>
      createFiatRail({
        stripe: createStripeClient({
          apiKey: "sk_test_switchyard",
          host: "127.0.0.1",
          port: inject("stripeMockPort"),
          protocol: "http",
          requestTimeoutMs: 5_000,
          networkRetriesMax: 0,
        }),
        store: createSqlStripeObjectStore(db),
        asset: assets.USD,
        feeSchedule: defaultFiatFeeSchedule,
        liquidity: "not_limited",
      });
    const attempt = {
      id: "att_sql_1",
      paymentId: "pay_sql_1",
      tenantId: "ten_test",
      amount: 5_000n,
      destination: { kind: "stripe_account" as const, accountId: "acct_1Merchant" },
      feeMax: 1_000n,
    };
    const [a, b] = await Promise.all([makeRail().execute(attempt), makeRail().execute(attempt)]);
    expect(a.status).toBe("succeeded");
    expect(b).toEqual(a);
    const again = await makeRail().execute(attempt);
    expect(again).toEqual(a);
  });
});
