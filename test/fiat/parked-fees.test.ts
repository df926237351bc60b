// The fiat rail's pass over the fees Stripe refused to tell (delivery.ts bookParkedFees), on the SQL store (PGlite) and
// against stripe-mock, behind a proxy that answers GET /v1/refunds/:id and /v1/payouts/:id as each test says: a key
// Stripe refuses costs one request a pass, a pass ends when the rail stops and after its time, and a balance transaction
// answered unexpanded keeps the fee, at a try and at an event's lookup. The settlement is the rail's handler here, each
// event it is given kept.
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it, onTestFinished, vi } from "vitest";
import {
  createFiatRail,
  createMemoryStripeObjectStore,
  createSqlStripeWebhookStore,
  createStripeClient,
  defaultFiatFeeSchedule,
  fiatMigrations,
  type ParkedFee,
  type StripeWebhookStore,
} from "../../adapters/fiat/index.ts";
import { assets, type RailEvent } from "../../core/index.ts";
import { type Db, migrate, openPglite } from "../../gateway/db/index.ts";
import { type CuttingProxy, ProxyAnswer, startCuttingProxy } from "./cutting-proxy.ts";
import { signEvent } from "./stripe-events.ts";

let db: Db;
let store: StripeWebhookStore;
let proxy: CuttingProxy;
/** What the proxy answers for a refund or a payout, by id: its object, or Stripe's refusal; stripe-mock's otherwise. */
const answers = new Map<string, unknown>();
/** The refunds and payouts read (GET), in order. */
let reads: string[] = [];

beforeAll(async () => {
  db = await openPglite(undefined);
  await migrate(db, [fiatMigrations]);
  store = createSqlStripeWebhookStore(db);
  proxy = await startCuttingProxy(
    inject("stripeMockPort"),
    () => false,
    (method, url) => {
      const id = /^\/v1\/(?:refunds|payouts)\/((?:re|po)_[^/]+)$/.exec(
        new URL(url, "http://stripe").pathname,
      )?.[1];
      if (method !== "GET" || id === undefined) return null;
      reads.push(id);
      return answers.get(id) ?? null;
    },
  );
});
afterAll(async () => {
  await proxy?.close();
  await db?.close();
});
beforeEach(async () => {
  await db.query("DELETE FROM fiat_parked_fees");
  answers.clear();
  reads = [];
});

const keyRefused = new ProxyAnswer(403, {
  error: {
    type: "invalid_request_error",
    message: "The provided key 'rk_test_***' does not have the required permissions for this endpoint.",
  },
});
const missing = (id: string) =>
  new ProxyAnswer(404, {
    error: {
      type: "invalid_request_error",
      code: "resource_missing",
      param: "id",
      message: `No such object: '${id}'`,
    },
  });
const txn = (id: string, amount: number, fee: number) => ({
  id,
  object: "balance_transaction",
  amount,
  currency: "usd",
  fee,
  net: amount - fee,
  type: "refund",
});
const refundAnswer = (id: string, balanceTransaction: unknown) => ({
  id,
  object: "refund",
  amount: 1000,
  currency: "usd",
  status: "succeeded",
  balance_transaction: balanceTransaction,
  failure_balance_transaction: null,
});
const payoutAnswer = (id: string, balanceTransaction: unknown) => ({
  id,
  object: "payout",
  amount: 1300,
  arrival_date: 1_800_000_000,
  automatic: false,
  balance_transaction: balanceTransaction,
  currency: "usd",
  failure_balance_transaction: null,
  method: "instant",
  status: "paid",
});

const refundFee = (objectId: string): ParkedFee => ({
  rail: "fiat",
  kind: "refund",
  objectId,
  failure: false,
  invoice: `inv_${objectId}`,
  paymentIntent: `pi_${objectId}`,
});
const payoutMovements = (objectId: string) => [
  {
    direction: "out" as const,
    amount: 1300n,
    reference: `stripe_payout:${objectId}`,
    description: `Stripe payout ${objectId}`,
  },
];
const payoutFee = (objectId: string): ParkedFee => ({
  rail: "fiat",
  kind: "payout",
  objectId,
  failure: false,
  movements: payoutMovements(objectId),
});

/** Keeps `fees`, each due a try now. */
async function keptDue(...fees: ParkedFee[]) {
  for (const fee of fees) await store.parkFee(fee);
  await db.query("UPDATE fiat_parked_fees SET next_try_at = now()");
}
/** Each kept fee's tries, and its next try as the database's epoch milliseconds, by object id. */
const keptTries = async () =>
  Object.fromEntries(
    (
      await db.query<{ object_id: string; tries: number; next_try_ms: number }>(
        "SELECT object_id, tries, (extract(epoch FROM next_try_at) * 1000)::float8 AS next_try_ms FROM fiat_parked_fees",
      )
    ).map((row) => [row.object_id, { tries: row.tries, nextTryMs: row.next_try_ms }]),
  );
const keptIds = async () =>
  (await db.query<{ object_id: string }>("SELECT object_id FROM fiat_parked_fees ORDER BY object_id")).map(
    (row) => row.object_id,
  );

/** A fiat rail on the proxy and the SQL store, its pass's own timer every `passMs` (null: none), started. */
async function startedRail(options: { passMs?: number | null; nowMs?: () => number } = {}) {
  const stripe = createStripeClient({
    apiKey: "sk_test_switchyard",
    host: "127.0.0.1",
    port: proxy.port,
    protocol: "http",
    requestTimeoutMs: 5_000,
    networkRetriesMax: 0,
  });
  const rail = createFiatRail({
    stripe,
    store: createMemoryStripeObjectStore(),
    asset: assets.USD,
    feeSchedule: defaultFiatFeeSchedule,
    liquidity: "not_limited",
    parkedFeesPassMs: options.passMs ?? null,
    ...(options.nowMs === undefined ? {} : { nowMs: options.nowMs }),
    webhooks: { secrets: ["whsec_parked_fees"], toleranceSeconds: 300, bodyLimitBytes: 1_000_000, store },
  });
  const events: RailEvent[] = [];
  rail.onEvent(async (event) => {
    events.push(event);
  });
  await rail.start();
  onTestFinished(() => rail.stop());
  return { rail, stripe, events };
}

describe("the pass over the fees Stripe refused to tell", () => {
  it("asks no more of a kind once Stripe refuses the key, so a key that may not read refunds costs one request a pass", async () => {
    // Before, each kept fee was asked, one after the other: a key that may never read refunds had every refund's fee
    // asked every hour for ever, in every process.
    const { rail, events } = await startedRail();
    const refunds = ["re_k1", "re_k2", "re_k3"];
    for (const id of refunds) answers.set(id, keyRefused);
    answers.set("po_k1", payoutAnswer("po_k1", txn("txn_po_k1", -1300, 13)));
    await keptDue(...refunds.map(refundFee), payoutFee("po_k1"));
    expect(await rail.bookParkedFees()).toEqual({ booked: 1, waiting: 1 });
    // One refund asked, and the payout read (and booked) though the key may not read refunds.
    expect(reads).toHaveLength(2);
    expect(reads.filter((id) => refunds.includes(id))).toHaveLength(1);
    expect(events).toEqual([
      {
        kind: "capital",
        movements: payoutMovements("po_k1"),
        fees: [{ id: "stripe_payout_fee:po_k1", amount: 13n }],
      },
    ]);
    expect(await keptIds()).toEqual(refunds);
    // The two not asked were not taken: their tries as they were, due still.
    expect(
      Object.values(await keptTries())
        .map((kept) => kept.tries)
        .sort(),
    ).toEqual([0, 0, 1]);
    // Refunds Stripe does not find (404) are the objects', not the key's: each is asked.
    for (const id of refunds) answers.set(id, missing(id));
    await db.query("UPDATE fiat_parked_fees SET next_try_at = now()");
    reads = [];
    expect(await rail.bookParkedFees()).toEqual({ booked: 0, waiting: 3 });
    expect(reads.sort()).toEqual(refunds);
  });

  it("ends a pass at the fee it is asking when the rail stops", async () => {
    // Before, a pass asked for every fee due, however long, and stop() waited for all of it.
    const { rail, stripe } = await startedRail();
    const ids = ["re_s1", "re_s2", "re_s3"];
    for (const id of ids) answers.set(id, missing(id));
    let stopped: Promise<void> | null = null;
    stripe.on("request", (request: { path: string }) => {
      if (request.path.startsWith("/v1/refunds/") && stopped === null) stopped = rail.stop();
    });
    await keptDue(...ids.map(refundFee));
    expect(await rail.bookParkedFees()).toEqual({ booked: 0, waiting: 1 });
    await stopped;
    expect(reads).toHaveLength(1);
    expect(await keptIds()).toEqual(ids);
  });

  it("runs its own pass every parkedFeesPassMs, which stop() ends at the fee it is asking", async () => {
    const { rail, stripe } = await startedRail({ passMs: 20 });
    const ids = ["re_o1", "re_o2", "re_o3"];
    for (const id of ids) answers.set(id, missing(id));
    let stopped: Promise<void> | null = null;
    stripe.on("request", (request: { path: string }) => {
      if (request.path.startsWith("/v1/refunds/") && stopped === null) stopped = rail.stop();
    });
    await keptDue(...ids.map(refundFee));
    await vi.waitUntil(() => stopped !== null, { timeout: 10_000 });
    await stopped;
    expect(reads).toHaveLength(1);
    // Stopped, its timer asks nothing more.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(reads).toHaveLength(1);
    expect(await keptIds()).toEqual(ids);
  });

  it("ends a pass after its time, the fees it did not ask for keeping their place for the next pass", async () => {
    // Every request to Stripe takes 20 s here: a pass of 30 s asks two.
    let clock = 1_800_000_000_000;
    const { rail, stripe } = await startedRail({ nowMs: () => clock });
    stripe.on("request", (request: { path: string }) => {
      if (request.path.startsWith("/v1/refunds/")) clock += 20_000;
    });
    const ids = ["re_t1", "re_t2", "re_t3", "re_t4", "re_t5"];
    for (const id of ids) answers.set(id, missing(id));
    await keptDue(...ids.map(refundFee));
    const before = await keptTries();
    const pass = await rail.bookParkedFees();
    // Oldest first, and those due at once by id: the first two.
    expect(reads).toEqual(["re_t1", "re_t2"]);
    expect(await keptIds()).toEqual(ids);
    // Before, the pass took 20 at once and put each off as if asked: the three not asked waited two minutes.
    const after = await keptTries();
    for (const id of ["re_t3", "re_t4", "re_t5"]) expect(after[id], id).toEqual(before[id]);
    expect(after.re_t1?.tries).toBe(1);
    expect(pass).toEqual({ booked: 0, waiting: 2 });
    // The next pass asks them, the asked ones waiting their next try.
    reads = [];
    expect(await rail.bookParkedFees()).toEqual({ booked: 0, waiting: 2 });
    expect(reads).toEqual(["re_t3", "re_t4"]);
  });

  it("leaves the fees behind a 403 where they were, and the next pass asks them", async () => {
    // Two payouts' fees due, the key refused at the first: the second is not asked, and keeps its tries and its next
    // try. Before, the pass had taken it with the first and put it off as if asked (tries 1, two minutes on).
    const { rail, events } = await startedRail();
    answers.set("po_a1", keyRefused);
    answers.set("po_a2", keyRefused);
    await keptDue(payoutFee("po_a1"), payoutFee("po_a2"));
    const before = await keptTries();
    const pass = await rail.bookParkedFees();
    expect(reads).toEqual(["po_a1"]);
    const after = await keptTries();
    expect(after.po_a2).toEqual(before.po_a2);
    expect(after.po_a1?.tries).toBe(1);
    expect(after.po_a1?.nextTryMs).toBeGreaterThan(before.po_a1!.nextTryMs);
    expect(pass).toEqual({ booked: 0, waiting: 1 });
    // The key may read payouts now: the next pass asks the one left (the first waits its next try), and books it.
    answers.set("po_a2", payoutAnswer("po_a2", txn("txn_po_a2", -1300, 13)));
    reads = [];
    expect(await rail.bookParkedFees()).toEqual({ booked: 1, waiting: 0 });
    expect(reads).toEqual(["po_a2"]);
    expect(events).toEqual([
      {
        kind: "capital",
        movements: payoutMovements("po_a2"),
        fees: [{ id: "stripe_payout_fee:po_a2", amount: 13n }],
      },
    ]);
    expect(await keptIds()).toEqual(["po_a1"]);
  });

  it("asks a fee kept again past its week, before a pass gave it up, and books it", async () => {
    // Before, kept again past its week it was said kept still: the next pass gave it up first, as if no event of it had
    // come, and did not ask it.
    const { rail, events } = await startedRail();
    await keptDue(refundFee("re_w1"));
    await db.query("UPDATE fiat_parked_fees SET parked_at = now() - interval '7 days 1 minute'");
    expect(await store.parkFee(refundFee("re_w1"))).toEqual({ parked: true });
    expect(await keptTries()).toMatchObject({ re_w1: { tries: 0 } });
    answers.set("re_w1", refundAnswer("re_w1", txn("txn_re_w1", -1000, 45)));
    await db.query("UPDATE fiat_parked_fees SET next_try_at = now()");
    expect(await rail.bookParkedFees()).toEqual({ booked: 1, waiting: 0 });
    expect(reads).toEqual(["re_w1"]);
    expect(events).toEqual([
      {
        kind: "fee",
        reference: "inv_re_w1",
        evidence: { rail: "fiat", pspId: "pi_re_w1" },
        fees: [{ id: "stripe_refund_fee:re_w1", amount: 45n }],
      },
    ]);
    expect(await keptIds()).toEqual([]);
  });

  it("keeps a fee whose balance transaction Stripe answers unexpanded, and books it once Stripe tells it", async () => {
    // Before, the pass took an id for a fee of 0 and forgot the fee for good.
    const { rail, events } = await startedRail();
    answers.set("re_u1", refundAnswer("re_u1", "txn_re_u1"));
    answers.set("po_u1", payoutAnswer("po_u1", "txn_po_u1"));
    await keptDue(refundFee("re_u1"), payoutFee("po_u1"));
    expect(await rail.bookParkedFees()).toEqual({ booked: 0, waiting: 2 });
    expect(reads.sort()).toEqual(["po_u1", "re_u1"]);
    expect(events).toEqual([]);
    expect(await keptIds()).toEqual(["po_u1", "re_u1"]);

    answers.set("re_u1", refundAnswer("re_u1", txn("txn_re_u1", -1000, 45)));
    answers.set("po_u1", payoutAnswer("po_u1", txn("txn_po_u1", -1300, 13)));
    await db.query("UPDATE fiat_parked_fees SET next_try_at = now()");
    expect(await rail.bookParkedFees()).toEqual({ booked: 2, waiting: 0 });
    expect(events.flatMap((event) => ("fees" in event ? (event.fees ?? []) : []))).toEqual(
      expect.arrayContaining([
        { id: "stripe_payout_fee:po_u1", amount: 13n },
        { id: "stripe_refund_fee:re_u1", amount: 45n },
      ]),
    );
    expect(events).toHaveLength(2);
    expect(await keptIds()).toEqual([]);
  });

  it("keeps a refund's failure fee while its failure's balance transaction is not there, unless the refund took nothing", async () => {
    // As an event's lookup counts it (failureFeeTold): a failed refund that took money without its failure's balance
    // transaction (yet) tells nothing of what the failure gave back; one canceled before it took anything gives nothing
    // back, and waiting for it would keep the fee a week, given up. Before, the pass booked a missing one as 0.
    const { rail, events } = await startedRail();
    const undone = (id: string, status: string, balanceTransaction: unknown, failure: unknown) => ({
      ...refundAnswer(id, balanceTransaction),
      status,
      failure_balance_transaction: failure,
    });
    answers.set("re_f1", undone("re_f1", "failed", txn("txn_re_f1", -1000, 45), null));
    answers.set("re_c1", undone("re_c1", "canceled", null, null));
    await keptDue({ ...refundFee("re_f1"), failure: true }, { ...refundFee("re_c1"), failure: true });
    expect(await rail.bookParkedFees()).toEqual({ booked: 1, waiting: 1 });
    expect(events).toEqual([]);
    expect(await keptIds()).toEqual(["re_f1"]);

    answers.set(
      "re_f1",
      undone("re_f1", "failed", txn("txn_re_f1", -1000, 45), txn("txn_re_f1_back", 1000, -45)),
    );
    await db.query("UPDATE fiat_parked_fees SET next_try_at = now()");
    expect(await rail.bookParkedFees()).toEqual({ booked: 1, waiting: 0 });
    expect(events).toEqual([
      {
        kind: "fee",
        reference: "inv_re_f1",
        evidence: { rail: "fiat", pspId: "pi_re_f1" },
        fees: [
          { id: "stripe_refund_fee:re_f1", amount: 45n },
          { id: "stripe_refund_failure_fee:re_f1", amount: -45n },
        ],
      },
    ]);
    expect(await keptIds()).toEqual([]);
  });
});

describe("an event whose lookup Stripe answers without telling its fee", () => {
  it("keeps a payout's fee its balance transaction answered unexpanded, and books it once Stripe tells it", async () => {
    // Before, the event booked it as 0 and kept nothing: the fee was never booked.
    const { rail, events } = await startedRail();
    answers.set("po_e1", payoutAnswer("po_e1", "txn_po_e1"));
    const paid = {
      id: "evt_po_e1_paid",
      object: "event",
      type: "payout.paid",
      created: 1_800_000_000,
      livemode: false,
      api_version: "2026-10-28.clover",
      data: { object: payoutAnswer("po_e1", "txn_po_e1") },
    };
    const { payload, header } = signEvent(paid, {
      secret: "whsec_parked_fees",
      timestamp: Math.floor(Date.now() / 1000),
    });
    const answer = await rail.routes![0]!.handle({
      headers: { "stripe-signature": header },
      rawBody: Buffer.from(payload),
    });
    expect(answer).toMatchObject({ status: 200, body: { outcome: "applied" } });
    expect(events).toEqual([{ kind: "capital", movements: [expect.objectContaining({ amount: 1300n })] }]);
    expect(await keptIds()).toEqual(["po_e1"]);

    answers.set("po_e1", payoutAnswer("po_e1", txn("txn_po_e1", -1300, 13)));
    await db.query("UPDATE fiat_parked_fees SET next_try_at = now()");
    expect(await rail.bookParkedFees()).toEqual({ booked: 1, waiting: 0 });
    expect(events[1]).toMatchObject({
      kind: "capital",
      fees: [{ id: "stripe_payout_fee:po_e1", amount: 13n }],
    });
    expect(await keptIds()).toEqual([]);
  });
});
