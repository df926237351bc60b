// An amount above a rail's maximum for one payment (its snapshot's amountMax: Stripe's 99,999,999 minor units,
// a Lightning invoice's ceiling, …) is refused 400 `amount_too_large` naming `amount` before the rail is asked
// (an invoice below its minimum, 400 `amount_too_small`):
// an invoice on a rail that takes less creates nothing on it, and a payment whose only reachable rails all take
// less is refused the same way instead of a bare `no_route`. Shown with a toy rail built from core's contract
// alone, so the check is the gateway's and not any one adapter's.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type App, createApp, railModules } from "../../gateway/app.ts";
import { testConfig } from "../support/config.ts";
import { createToyRail, type ToyRail } from "../support/toy-rail-module.ts";

/** The toy takes at most 1,000.000000 USDC in one payment, and at least 0.000050 (as Stripe: 50 cents). */
const toyAmountMax = 1_000_000_000n;
const toyAmountMin = 50n;

let app: App;
let toy: ToyRail;
/** How many times the toy was asked for an offer in the test running: each test counts its own. */
let offersAsked = 0;
/** While set, the toy refuses every offer as a rail whose provider is out of reach does. */
let toyDown = false;

beforeAll(async () => {
  const base = createToyRail({ id: "toy", feeFixed: 1n });
  toy = {
    ...base,
    snapshot: () => ({ ...base.snapshot(), amountMin: toyAmountMin, amountMax: toyAmountMax }),
    receive: async (request) => {
      offersAsked += 1;
      if (toyDown)
        return { status: "refused", code: "rail_unavailable", message: "the provider did not answer" };
      return base.receive!(request);
    },
    execute: (attempt) => base.execute(attempt),
  };
  app = await createApp(testConfig({ LOG_LEVEL: "silent", PORT: "0" }), {
    railModules: [...railModules, () => ({ rails: [toy] })],
  });
}, 120_000);

afterAll(async () => {
  await app?.close();
});

// One test's offer (the one at the maximum) must not count as another's: "the rail never asked" holds per test.
beforeEach(() => {
  offersAsked = 0;
  toyDown = false;
});

async function call(url: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await app.server.inject({
    method: "POST",
    url,
    headers: {
      authorization: `Bearer ${app.demo!.apiKey}`,
      "content-type": "application/json",
      ...headers,
    },
    payload: JSON.stringify(body),
  });
  return { status: response.statusCode, body: response.json() };
}

const count = async (table: string) => {
  const [row] = await app.db.query<{ count: bigint }>(`SELECT count(*) AS count FROM ${table}`);
  return row!.count;
};

describe("an amount above a rail's maximum", () => {
  // Below the least, before this check, the rail was asked, and its refusal (Stripe's minimum charge) answered 402
  // rail_unavailable, kept under the key: the request's own mistake told as the rail's.
  it.each([
    { amount: "1000.000001", code: "amount_too_large", says: "at most 1000000000", key: "over-max-invoice" },
    { amount: "0.000049", code: "amount_too_small", says: "at least 50", key: "under-min-invoice" },
  ])(
    "an invoice of $amount: 400 $code, the rail never asked, nothing written",
    async ({ amount, code, says, key }) => {
      const invoicesBefore = await count("invoices");
      for (const headers of [{}, { "idempotency-key": key }] as Record<string, string>[]) {
        const answer = await call(
          "/v1/invoices",
          { account: app.demo!.merchant.id, amount, asset: "USDC", rail: "toy" },
          headers,
        );
        expect(answer).toEqual({
          status: 400,
          body: {
            error: { code, message: expect.stringMatching(new RegExp(`^toy .*${says}`)), param: "amount" },
          },
        });
      }
      expect(offersAsked).toBe(0);
      expect(await count("invoices")).toBe(invoicesBefore);
    },
  );

  it("an invoice on a rail that receives another asset: 400 asset_mismatch naming the rail, nothing written", async () => {
    const invoicesBefore = await count("invoices");
    const answer = await call("/v1/invoices", {
      account: app.demo!.btc.id,
      amount: "0.0001",
      asset: "BTC",
      rail: "toy",
    });
    // Before: 402 rail_unavailable, as if the deployment lacked the rail (and kept under a key as such).
    expect(answer).toEqual({
      status: 400,
      body: { error: { code: "asset_mismatch", message: "rail toy receives USDC, not BTC", param: "rail" } },
    });
    expect(offersAsked).toBe(0);
    expect(await count("invoices")).toBe(invoicesBefore);
  });

  it.each(["1000.000000", "0.000050"])("an invoice at the rail's bound (%s) is offered", async (amount) => {
    const answer = await call("/v1/invoices", {
      account: app.demo!.merchant.id,
      amount,
      asset: "USDC",
      rail: "toy",
    });
    expect(answer.status).toBe(201);
    expect(offersAsked).toBe(1);
  });

  it("a payment whose every reachable rail takes less: 400 amount_too_large with the route, nothing moved", async () => {
    const transfersBefore = await count("ledger_transfers");
    const paymentsBefore = await count("payments");
    // The same key twice: a 400 is not kept under its key, so the second runs again (and is refused again).
    for (const headers of [
      { "idempotency-key": "over-max-payment" },
      { "idempotency-key": "over-max-payment" },
    ]) {
      const answer = await call(
        "/v1/payments",
        {
          amount: "1000.000001",
          asset: "USDC",
          source: { account: "acct_demo_customer" },
          destination: { type: "evm_address", address: app.demo!.payee! },
          constraints: { rails: { allow: ["toy"] } },
        },
        headers,
      );
      expect(answer.status).toBe(400);
      expect(answer.body.error).toMatchObject({ code: "amount_too_large", param: "amount" });
      expect(answer.body.error.route.excluded).toContainEqual(
        expect.objectContaining({ rail: "toy", reason: "above_maximum" }),
      );
    }
    expect(toy.payouts.size).toBe(0);
    expect(await count("ledger_transfers")).toBe(transfersBefore);
    expect(await count("payments")).toBe(paymentsBefore);
  });

  it("a quote the same way", async () => {
    const answer = await call("/v1/quotes", {
      amount: "1000.000001",
      asset: "USDC",
      destination: { type: "evm_address", address: app.demo!.payee! },
      constraints: { rails: { allow: ["toy"] } },
    });
    expect(answer.status).toBe(400);
    expect(answer.body.error).toMatchObject({ code: "amount_too_large", param: "amount" });
  });
});

describe("an invoice while its rail's provider is out of reach", () => {
  it("is 503 rail_unreachable with Retry-After, kept under no key: the same key sent again later makes it", async () => {
    // Before: 402 rail_unavailable, kept under the Idempotency-Key for 24 hours, so the retry the answer invites,
    // with the same key, was answered the outage again.
    const invoicesBefore = await count("invoices");
    const body = { account: app.demo!.merchant.id, amount: "1.000000", asset: "USDC", rail: "toy" };
    const headers = { "idempotency-key": `invoice-while-down-${Date.now()}` };
    toyDown = true;
    const down = await app.server.inject({
      method: "POST",
      url: "/v1/invoices",
      headers: {
        authorization: `Bearer ${app.demo!.apiKey}`,
        "content-type": "application/json",
        ...headers,
      },
      payload: JSON.stringify(body),
    });
    expect(down.statusCode).toBe(503);
    expect(down.headers["retry-after"]).toBe("5");
    expect(down.json().error).toMatchObject({ code: "rail_unreachable" });
    expect(await count("invoices")).toBe(invoicesBefore);
    toyDown = false;
    const later = await call("/v1/invoices", body, headers);
    expect(later.status, JSON.stringify(later.body)).toBe(201);
    expect(offersAsked).toBe(2);
    expect(await count("invoices")).toBe(invoicesBefore + 1n);
  });
});
