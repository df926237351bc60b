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
    "fiat/006_parked_fees_by_kind.sql",
    "fiat/007_parked_fees_revision_sequence.sql",
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
    // Revisions from one sequence (migration 007): each keeping a new one, larger than every one given before.
    const [refundRead, payoutRead, euRead] = [
      await store.keptFeeRevision({ rail: "fiat", objectId: "re_kept" }),
      await store.keptFeeRevision({ rail: "fiat", objectId: "po_kept" }),
      await store.keptFeeRevision({ rail: "fiat_eu", objectId: "po_kept" }),
    ];
    expect((refundRead ?? -1) < (payoutRead ?? -1) && (payoutRead ?? -1) < (euRead ?? -1)).toBe(true);
    expect(taken.sort((x, y) => x.objectId.localeCompare(y.objectId))).toEqual([
      { ...payout, tries: 1, revision: payoutRead },
      { ...refund, failure: true, tries: 1, revision: refundRead },
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
    const keptAgain = (await store.keptFeeRevision({ rail: "fiat", objectId: "re_kept" })) ?? -1;
    expect(keptAgain).toBeGreaterThan(euRead ?? 0);
    await store.unparkFee({ rail: "fiat", objectId: "re_kept", revision: refundRead ?? -1 });
    await store.unparkFee({ rail: "fiat", objectId: "po_kept", revision: payoutRead ?? -1 });
    await due();
    expect(await store.takeDueFees({ rail: "fiat", max: 10 })).toEqual([
      { ...refund, failure: true, tries: 8, revision: keptAgain },
    ]);
    await store.unparkFee({ rail: "fiat", objectId: "re_kept", revision: keptAgain });
    await due();
    expect(await store.takeDueFees({ rail: "fiat", max: 10 })).toEqual([]);
    // Another rail's is its own.
    await db.query("UPDATE fiat_parked_fees SET next_try_at = now()");
    expect(await store.takeDueFees({ rail: "fiat_eu", max: 10 })).toEqual([
      { ...payout, rail: "fiat_eu", tries: 1, revision: euRead },
    ]);
  });

  it("gives a fee kept longer than a week up, once, takes it no more, and keeps it anew when it is kept again", async () => {
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
    // Given up, it is taken no more, however recently kept.
    await db.query("UPDATE fiat_parked_fees SET parked_at = now() WHERE rail = $1", [rail]);
    await due();
    expect((await store.takeDueFees({ rail, max: 10 })).map((fee) => fee.objectId)).toEqual(["re_new"]);
    // Kept again (another event of its refund, Stripe still refusing): kept anew, said so, its tries from none, its
    // first try a minute on and its week from now. Before, it stayed given up until the operator's SQL.
    await db.query(
      "UPDATE fiat_parked_fees SET tries = 3, parked_at = now() - interval '8 days' WHERE rail = $1 AND object_id = 're_old'",
      [rail],
    );
    const oldRead = await store.keptFeeRevision({ rail, objectId: "re_old" });
    expect(await store.parkFee({ ...kept("re_old"), failure: true })).toEqual({ parked: true });
    const anew = (await store.keptFeeRevision({ rail, objectId: "re_old" })) ?? -1;
    expect(anew).toBeGreaterThan(oldRead ?? 0);
    const row = async () =>
      (
        await db.query<{
          failure: boolean;
          given_up: boolean;
          tries: number;
          revision: number;
          wait: number;
          fresh: boolean;
        }>(
          `SELECT failure, gave_up_at IS NOT NULL AS given_up, tries, revision,
             round(extract(epoch FROM next_try_at - parked_at))::float8 AS wait, parked_at > now() - interval '1 minute' AS fresh
           FROM fiat_parked_fees WHERE rail = $1 AND object_id = 're_old'`,
          [rail],
        )
      )[0];
    expect(await row()).toEqual({
      failure: true,
      given_up: false,
      tries: 0,
      revision: anew,
      wait: 60,
      fresh: true,
    });
    expect(await store.takeDueFees({ rail, max: 10 })).toEqual([]);
    await due();
    expect((await store.takeDueFees({ rail, max: 10 })).filter((fee) => fee.objectId === "re_old")).toEqual([
      { ...kept("re_old"), failure: true, tries: 1, revision: anew },
    ]);
    expect(await store.giveUpFees({ rail, max: 10 })).toEqual([]);
    // Kept again while asked for, it is said kept once, and keeps its tries.
    expect(await store.parkFee(kept("re_old"))).toEqual({ parked: false });
    expect(await row()).toMatchObject({ given_up: false, tries: 1 });
    expect((await row())?.revision).toBeGreaterThan(anew);
  });

  it("keeps anew a fee past its week that no pass gave up yet, when it is kept again", async () => {
    // Before, only one given up was: one past its week (no pass since, or giveUpFees skipping the row parkFee locked)
    // was said kept still (not logged), no pass took it, and the next gave it up as if no event of it had come.
    const store = createSqlStripeWebhookStore(db);
    const rail = "fiat_past_week";
    const kept = {
      rail,
      kind: "refund",
      objectId: "re_past",
      failure: false,
      invoice: "inv_past",
      paymentIntent: "pi_past",
    } as const;
    await store.parkFee(kept);
    const read = await store.keptFeeRevision({ rail, objectId: "re_past" });
    await db.query(
      "UPDATE fiat_parked_fees SET tries = 3, parked_at = now() - interval '7 days 1 minute', next_try_at = now() WHERE rail = $1",
      [rail],
    );
    expect(await store.takeDueFees({ rail, max: 10 })).toEqual([]);
    expect(await store.parkFee({ ...kept, failure: true })).toEqual({ parked: true });
    const anew = (await store.keptFeeRevision({ rail, objectId: "re_past" })) ?? -1;
    expect(anew).toBeGreaterThan(read ?? 0);
    const [row] = await db.query<{ given_up: boolean; tries: number; wait: number; fresh: boolean }>(
      `SELECT gave_up_at IS NOT NULL AS given_up, tries, round(extract(epoch FROM next_try_at - parked_at))::float8 AS wait,
         parked_at > now() - interval '1 minute' AS fresh
       FROM fiat_parked_fees WHERE rail = $1`,
      [rail],
    );
    expect(row).toEqual({ given_up: false, tries: 0, wait: 60, fresh: true });
    expect(await store.giveUpFees({ rail, max: 10 })).toEqual([]);
    await db.query("UPDATE fiat_parked_fees SET next_try_at = now() WHERE rail = $1", [rail]);
    expect(await store.takeDueFees({ rail, max: 10 })).toEqual([
      { ...kept, failure: true, tries: 1, revision: anew },
    ]);
  });

  it("forgets a fee its event booked, given up or not, unless it asks for its failure's fee and that was not booked", async () => {
    const store = createSqlStripeWebhookStore(db);
    const rail = "fiat_forget";
    const refund = {
      rail,
      kind: "refund",
      objectId: "re_forget",
      failure: false,
      invoice: "inv_f",
      paymentIntent: "pi_f",
    } as const;
    const payout = { rail, kind: "payout", objectId: "po_forget", failure: true, movements: [] } as const;
    const keptIds = async () =>
      (
        await db.query<{ object_id: string }>(
          "SELECT object_id FROM fiat_parked_fees WHERE rail = $1 ORDER BY object_id",
          [rail],
        )
      ).map((row) => row.object_id);
    await store.parkFee(refund);
    await store.parkFee(payout);
    await store.parkFee({ ...refund, rail: "fiat_forget_eu" });
    const read = async (objectId: string) => (await store.keptFeeRevision({ rail, objectId })) ?? -1;
    const [payoutRead, refundRead] = [await read("po_forget"), await read("re_forget")];
    await store.forgetBookedFee({ rail, objectId: "po_forget", revision: payoutRead, failure: false });
    await store.forgetBookedFee({ rail, objectId: "re_forget", revision: refundRead, failure: false });
    expect(await keptIds()).toEqual(["po_forget"]);
    await db.query("UPDATE fiat_parked_fees SET gave_up_at = now() WHERE rail = $1", [rail]);
    // Only as the event's lookup read it: kept again since, it stays.
    await store.forgetBookedFee({ rail, objectId: "po_forget", revision: payoutRead - 1, failure: true });
    expect(await keptIds()).toEqual(["po_forget"]);
    await store.forgetBookedFee({ rail, objectId: "po_forget", revision: payoutRead, failure: true });
    expect(await keptIds()).toEqual([]);
    expect(await store.keptFeeRevision({ rail, objectId: "po_forget" })).toBeNull();
    const [other] = await db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM fiat_parked_fees WHERE rail = 'fiat_forget_eu'",
    );
    expect(other).toEqual({ n: 1 });
  });

  it("never gives a revision twice: a try's booking leaves a fee forgotten and kept anew since it read it", async () => {
    // A pass's try reads the fee; another event of its refund is told it and forgets it; a refund.failed, Stripe
    // refusing it, keeps it anew asking for its failure's fee. Before, that row began at revision 0 again, and the try's
    // unparkFee (revision 0) deleted it: stripe_refund_failure_fee was never booked.
    const store = createSqlStripeWebhookStore(db);
    const rail = "fiat_revisions";
    const kept = {
      rail,
      kind: "refund",
      objectId: "re_anew",
      failure: false,
      invoice: "inv_anew",
      paymentIntent: "pi_anew",
    } as const;
    expect(await store.parkFee(kept)).toEqual({ parked: true });
    await db.query("UPDATE fiat_parked_fees SET next_try_at = now() WHERE rail = $1", [rail]);
    const [taken] = await store.takeDueFees({ rail, max: 10 });
    expect(taken).toMatchObject({ objectId: "re_anew", failure: false, tries: 1 });
    // The event's lookup read the row as the try did (keptFeeRevision).
    const read = taken?.revision ?? -1;
    await store.forgetBookedFee({ rail, objectId: "re_anew", revision: read, failure: false });
    const [count] = await db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM fiat_parked_fees WHERE rail = $1",
      [rail],
    );
    expect(count).toEqual({ n: 0 });
    expect(await store.parkFee({ ...kept, failure: true })).toEqual({ parked: true });
    await store.unparkFee({ rail, objectId: "re_anew", revision: read });
    // Nor does an event's forgetting, its revision read before the row was kept anew.
    await store.forgetBookedFee({ rail, objectId: "re_anew", revision: read, failure: true });
    const [row] = await db.query<{ failure: boolean; tries: number; fresh: boolean }>(
      "SELECT failure, tries, revision > $2 AS fresh FROM fiat_parked_fees WHERE rail = $1",
      [rail, read],
    );
    expect(row).toEqual({ failure: true, tries: 0, fresh: true });
  });

  it("takes only the kinds it is asked for", async () => {
    const store = createSqlStripeWebhookStore(db);
    const rail = "fiat_kinds";
    await store.parkFee({
      rail,
      kind: "refund",
      objectId: "re_kind",
      failure: false,
      invoice: "inv_k",
      paymentIntent: "pi_k",
    });
    await store.parkFee({ rail, kind: "payout", objectId: "po_kind", failure: false, movements: [] });
    await db.query("UPDATE fiat_parked_fees SET next_try_at = now() WHERE rail = $1", [rail]);
    expect(
      (await store.takeDueFees({ rail, max: 10, kinds: ["refund"] })).map((fee) => fee.objectId),
    ).toEqual(["re_kind"]);
    expect(await store.takeDueFees({ rail, max: 10, kinds: ["refund"] })).toEqual([]);
    expect((await store.takeDueFees({ rail, max: 10 })).map((fee) => fee.objectId)).toEqual(["po_kind"]);
  });
});
