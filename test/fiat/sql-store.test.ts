// The SQL object store on PGlite: the first object recorded for a key wins, and the rail answers retries
// from it (here with stripe-mock, which creates a new object for every request).
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  createFiatRail,
  createSqlStripeObjectStore,
  createSqlStripeWebhookStore,
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
    "fiat/004_parked_fees.sql",
    "fiat/005_parked_fees_given_up.sql",
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

describe("SQL webhook store: the fees Stripe refused to tell", () => {
  it("keeps each once, takes one due for one try at a time, its wait doubling up to an hour, and forgets it only as read", async () => {
    const store = createSqlStripeWebhookStore(db);
    const refund = {
      rail: "fiat",
      kind: "refund",
      objectId: "re_kept",
      failure: false,
      invoice: "inv_kept",
      paymentIntent: "pi_kept",
    } as const;
    const payout = {
      rail: "fiat",
      kind: "payout",
      objectId: "po_kept",
      failure: true,
      movements: [
        {
          direction: "out",
          amount: 1_300n,
          reference: "stripe_payout:po_kept",
          description: "Stripe payout po_kept",
        },
      ],
    } as const;
    expect(await store.parkFee(refund)).toEqual({ parked: true });
    // Its event delivered again, a refund undone since: its failure's fee is asked too, and it is said kept once.
    expect(await store.parkFee({ ...refund, failure: true })).toEqual({ parked: false });
    expect(await store.parkFee(payout)).toEqual({ parked: true });
    expect(await store.parkFee({ ...payout, rail: "fiat_eu" })).toEqual({ parked: true });
    // The first try is a minute on.
    expect(await store.takeDueFees({ rail: "fiat", max: 10 })).toEqual([]);
    const due = () => db.query("UPDATE fiat_parked_fees SET next_try_at = now() WHERE rail = 'fiat'");
    await due();
    const taken = await store.takeDueFees({ rail: "fiat", max: 10 });
    expect(taken.sort((x, y) => x.objectId.localeCompare(y.objectId))).toEqual([
      { ...payout, tries: 1, revision: 0 },
      { ...refund, failure: true, tries: 1, revision: 1 },
    ]);
    // Taken, not again before its next try (another process's pass finds nothing).
    expect(await store.takeDueFees({ rail: "fiat", max: 10 })).toEqual([]);
    const waitMinutes = async () => {
      const [row] = await db.query<{ wait: number }>(
        "SELECT extract(epoch FROM next_try_at - now())::float8 / 60 AS wait FROM fiat_parked_fees WHERE rail = 'fiat' AND object_id = 're_kept'",
      );
      return Math.round(row!.wait);
    };
    const waits = [await waitMinutes()];
    for (let each = 0; each < 6; each += 1) {
      await due();
      expect(await store.takeDueFees({ rail: "fiat", max: 1 })).toHaveLength(1);
      expect(await store.takeDueFees({ rail: "fiat", max: 1 })).toHaveLength(1);
      waits.push(await waitMinutes());
    }
    expect(waits).toEqual([2, 4, 8, 16, 32, 60, 60]);

    // Kept again after its try read it: that try's booking leaves it, for the next try to book what came since.
    expect(await store.parkFee(refund)).toEqual({ parked: false });
    await store.unparkFee({ rail: "fiat", objectId: "re_kept", revision: 1 });
    await store.unparkFee({ rail: "fiat", objectId: "po_kept", revision: 0 });
    await due();
    expect(await store.takeDueFees({ rail: "fiat", max: 10 })).toEqual([
      { ...refund, failure: true, tries: 8, revision: 2 },
    ]);
    await store.unparkFee({ rail: "fiat", objectId: "re_kept", revision: 2 });
    await due();
    expect(await store.takeDueFees({ rail: "fiat", max: 10 })).toEqual([]);
    // Another rail's is its own.
    await db.query("UPDATE fiat_parked_fees SET next_try_at = now()");
    expect(await store.takeDueFees({ rail: "fiat_eu", max: 10 })).toEqual([
      { ...payout, rail: "fiat_eu", tries: 1, revision: 0 },
    ]);
  });

  it("gives a fee kept longer than a week up, once, and takes it no more", async () => {
    const store = createSqlStripeWebhookStore(db);
    const rail = "fiat_given_up";
    const kept = (objectId: string) =>
      ({
        rail,
        kind: "refund",
        objectId,
        failure: false,
        invoice: "inv_gu",
        paymentIntent: "pi_gu",
      }) as const;
    await store.parkFee(kept("re_old"));
    await store.parkFee(kept("re_new"));
    // Nothing is a week old yet.
    expect(await store.giveUpFees({ rail, max: 10 })).toEqual([]);
    await db.query(
      "UPDATE fiat_parked_fees SET parked_at = now() - interval '7 days 1 minute' WHERE rail = $1 AND object_id = 're_old'",
      [rail],
    );
    const due = () => db.query("UPDATE fiat_parked_fees SET next_try_at = now() WHERE rail = $1", [rail]);
    // Past its week it is not taken, even before it is given up.
    await due();
    expect((await store.takeDueFees({ rail, max: 10 })).map((fee) => fee.objectId)).toEqual(["re_new"]);
    expect(await store.giveUpFees({ rail, max: 10 })).toEqual([
      { rail, objectId: "re_old", kind: "refund", tries: 0 },
    ]);
    // Once: a pass after, in this process or another, finds nothing more to give up.
    expect(await store.giveUpFees({ rail, max: 10 })).toEqual([]);
    // Kept again (another event of its refund) it stays given up, and it is said kept no more.
    expect(await store.parkFee({ ...kept("re_old"), failure: true })).toEqual({ parked: false });
    await db.query("UPDATE fiat_parked_fees SET parked_at = now() WHERE rail = $1", [rail]);
    await due();
    expect((await store.takeDueFees({ rail, max: 10 })).map((fee) => fee.objectId)).toEqual(["re_new"]);
    const [row] = await db.query<{ failure: boolean; given_up: boolean }>(
      "SELECT failure, gave_up_at IS NOT NULL AS given_up FROM fiat_parked_fees WHERE rail = $1 AND object_id = 're_old'",
      [rail],
    );
    expect(row).toEqual({ failure: true, given_up: true });
  });
});
