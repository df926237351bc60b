// Slow rails never hold the line (issue #19): a payment on a rail slower than the request's bound is answered 202
// `processing` once its reservation is durable, and goes on; its outcome follows by GET (and the webhook's event).
// `Prefer: respond-async` asks for that at once, `Prefer: wait=N` bounds the wait; internal payments stay synchronous.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RequestBody } from "../../client/index.ts";
import { type App, createApp, railModules } from "../../gateway/app.ts";
import { answerOf, keptStatusOf, preferredWaitMs } from "../../gateway/http/resources/payments.ts";
import { getPayment } from "../../gateway/payments/index.ts";
import { typedClient } from "../support/api.ts";
import { testConfig } from "../support/config.ts";
import { createToyRail, fundToy } from "../support/toy-rail-module.ts";

let app: App;
let key: string;
let open: () => void = () => undefined;
let gate = Promise.resolve();
const hold = () => {
  gate = new Promise((resolve) => {
    open = resolve;
  });
};

beforeAll(async () => {
  const toy = createToyRail({ id: "toy", feeFixed: 1n, gate: () => gate });
  app = await createApp(testConfig({ LOG_LEVEL: "silent", PORT: "0" }), {
    railModules: [...railModules, () => ({ rails: [toy] })],
  });
  key = app.demo!.apiKey;
  // The toy pays out of what it took in: money in first, through its own provider route.
  await fundToy(app, key, "100");
}, 120_000);

afterAll(async () => {
  open();
  await app?.close();
});

const payout = {
  amount: "1.00",
  asset: "USDC",
  source: { account: "acct_demo_customer" },
  destination: { type: "evm_address", address: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC" },
} satisfies RequestBody<"/v1/payments", "post">;

/** A payment through the typed client; Prefer is not in the document, so it goes as a plain header. */
const post = (
  body: RequestBody<"/v1/payments", "post">,
  options: { prefer?: string; idempotencyKey?: string },
) =>
  typedClient(app, key).POST("/v1/payments", {
    body,
    ...(options.idempotencyKey === undefined
      ? {}
      : { params: { header: { "Idempotency-Key": options.idempotencyKey } } }),
    ...(options.prefer === undefined ? {} : { headers: { prefer: options.prefer } }),
  });

const get = async (id: string) =>
  (await typedClient(app, key).GET("/v1/payments/{id}", { params: { path: { id } } })).data!;

async function until<T>(read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  for (let i = 0; i < 200; i += 1) {
    const value = await read();
    if (done(value)) return value;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error("timed out");
}

describe("a payment on a slow rail", () => {
  it("answers 202 processing with the reservation held under Prefer: respond-async, then succeeds", async () => {
    hold();
    const response = await post(payout, { prefer: "respond-async", idempotencyKey: "slow-1" });
    expect(response.response.status).toBe(202);
    expect(response.response.headers.get("preference-applied")).toBe("respond-async");
    const payment = response.data!;
    expect(payment).toMatchObject({ status: "processing", attempts: [{ rail: "toy", status: "reserving" }] });
    // The reservation is durable before the answer: the ledger holds the amount pending.
    const [held] = await app.db.query<{ pending: bigint }>(
      "SELECT count(*) AS pending FROM ledger_pending_open", // the reservation's open pending transfer
    );
    expect(held!.pending).toBeGreaterThan(0n);
    // A repeat while it works answers how it stands now.
    const early = await post(payout, { prefer: "respond-async", idempotencyKey: "slow-1" });
    expect(early.response.status).toBe(202);
    expect(early.response.headers.get("idempotent-replayed")).toBe("true");
    open();
    const done = await until(
      () => get(payment.id),
      (p) => p.status !== "processing",
    );
    expect(done).toMatchObject({ status: "succeeded", rail: "toy", attempts: [{ status: "succeeded" }] });
    const [event] = await app.db.query<{ type: string }>(
      "SELECT type FROM outbox WHERE payload->>'payment_id' = $1",
      [payment.id],
    );
    expect(event?.type).toBe("payment.succeeded");
    // Once it has ended, a repeat of the key answers the end.
    const later = await post(payout, { prefer: "respond-async", idempotencyKey: "slow-1" });
    expect(later.response.status).toBe(201);
    expect(later.response.headers.get("idempotent-replayed")).toBe("true");
    expect(later.data!.id).toBe(payment.id);
  });

  it("waits at most Prefer: wait=N seconds, and answers 201 when the rail is done within it", async () => {
    hold();
    const started = performance.now();
    const slow = await post(payout, { prefer: "wait=1" });
    const waited = performance.now() - started;
    expect(slow.response.status).toBe(202);
    expect(slow.response.headers.get("preference-applied")).toBe("wait=1");
    expect(waited).toBeGreaterThanOrEqual(900);
    open();
    await until(
      () => get(slow.data!.id),
      (p) => p.status === "succeeded",
    );
    const fast = await post(payout, { prefer: "wait=1" });
    expect(fast.response.status).toBe(201);
    expect(fast.response.headers.get("preference-applied")).toBeNull();
  });

  it("keeps the answer of a payment the rail ends while its request waits in the write that ends it", async () => {
    const key = `fast-${Date.now()}`;
    const first = await post(payout, { idempotencyKey: key });
    expect(first.response.status).toBe(201);
    const payment = first.data!;
    expect(payment).toMatchObject({ status: "succeeded", rail: "toy" });
    // Kept as the payment's answer (its id and status, no body: a repeat reads the payment back), not as a body
    // written after the answer went out.
    const [record] = await app.db.query<{ response_status: number; payment_id: string; body: string | null }>(
      `SELECT response_status, payment_id, response_body::text AS body FROM idempotency_keys
       WHERE tenant_id = $1 AND key = $2`,
      [app.demo!.tenantId, key],
    );
    expect(record).toEqual({ response_status: 201, payment_id: payment.id, body: null });
    const again = await post(payout, { idempotencyKey: key });
    expect(again.response.status).toBe(201);
    expect(again.response.headers.get("idempotent-replayed")).toBe("true");
    expect(again.data).toEqual(payment);
    const other = await post({ ...payout, amount: "2.00" }, { idempotencyKey: key });
    expect(other.response.status).toBe(409);
    expect(other.error).toMatchObject({ error: { code: "idempotency_key_reused" } });
  });

  it("answers a repeat from the stored payment with the same bytes, metadata in any key order", async () => {
    // A repeat in another process (or once this one forgot the key) answers answerOf(the payment read back); jsonb
    // gives metadata back in its own key order (shorter first, then bytewise), which the first answer must match.
    const metadata = { zz_long_key: "1", a: "2", é: "3", b: "4", "10": "5", ab: "6" };
    const response = await app.server.inject({
      method: "POST",
      url: "/v1/payments",
      headers: {
        authorization: `Bearer ${key}`,
        "content-type": "application/json",
        "idempotency-key": `bytes-${Date.now()}`,
      },
      payload: JSON.stringify({ ...payout, metadata }),
    });
    expect(response.statusCode).toBe(201);
    const id = (response.json() as { id: string }).id;
    const stored = await getPayment(app.db, { tenantId: app.demo!.tenantId, id });
    expect(answerOf(stored!)).toEqual({ status: 201, body: response.body });
  });

  it("keeps internal payments synchronous whatever the preference", async () => {
    hold();
    const response = await post(
      { ...payout, amount: "0.01", destination: { type: "account", account: "acct_demo_merchant" } },
      { prefer: "respond-async" },
    );
    open();
    expect(response.response.status).toBe(201);
    expect(response.data!.status).toBe("succeeded");
  });
});

describe("the status an Idempotency-Key keeps for a payment ending so", () => {
  it("is the answer's: 201 succeeded, the failure code's (402) failed, 202 processing", () => {
    expect(keptStatusOf({ status: "succeeded", failureCode: null })).toBe(201);
    expect(keptStatusOf({ status: "failed", failureCode: "rail_unavailable" })).toBe(402);
    expect(keptStatusOf({ status: "failed", failureCode: "fee_above_max" })).toBe(402);
    expect(keptStatusOf({ status: "processing", failureCode: null })).toBe(202);
  });
});

describe("Prefer header", () => {
  it("reads respond-async and wait=N (seconds, bounded), and ignores the rest", () => {
    expect(preferredWaitMs(undefined)).toBeUndefined();
    expect(preferredWaitMs("return=minimal")).toBeUndefined();
    expect(preferredWaitMs("respond-async")).toBe(0);
    expect(preferredWaitMs("respond-async, wait=3")).toBe(3_000);
    expect(preferredWaitMs("wait=100000")).toBe(25_000);
    expect(preferredWaitMs("wait=-1")).toBeUndefined();
    expect(preferredWaitMs(["Respond-Async"])).toBe(0);
  });
});
