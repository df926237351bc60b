import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestGateway, type TestGateway } from "./support.ts";

let gw: TestGateway;
let payee: `0x${string}`;
const realNow = Date.now;

beforeAll(async () => {
  gw = await startTestGateway();
  payee = gw.app.demo!.payee!;
});
afterAll(async () => {
  await gw?.app.close();
});

const quoteBody = () => ({
  amount: "3",
  asset: "USDC",
  destination: { type: "evm_address", address: payee },
  ttl_seconds: 60,
});
const paymentBody = (quote: string, amount = "3") => ({
  quote,
  amount,
  asset: "USDC",
  source: { account: "acct_demo_customer" },
  destination: { type: "evm_address", address: payee },
});

describe("quotes", () => {
  it("prices a payment with its route and fee cap, and a payment honours it", async () => {
    const quote = await gw.call("POST", "/v1/quotes", { body: quoteBody() });
    expect(quote.status).toBe(201);
    expect(quote.body).toMatchObject({
      object: "quote",
      rail: "evm",
      rail_amount: "3.000000",
      rail_asset: "USDC",
      amount: "3.000000",
    });
    expect(quote.body.route.candidates[0].rail).toBe("evm");
    expect(Date.parse(quote.body.expires_at) - Date.parse(quote.body.created_at)).toBe(60_000);
    const transfersBefore = await gw.ledgerTransferCount();
    const payment = await gw.call("POST", "/v1/payments", { body: paymentBody(quote.body.id) });
    expect(payment.status).toBe(201);
    expect(payment.body.status).toBe("succeeded");
    expect(payment.body.route.candidates).toEqual(quote.body.route.candidates);
    expect(await gw.ledgerTransferCount()).toBe(transfersBefore + 2n); // the reservation and its posting
  });

  it("refuses a payment on an expired quote with quote_expired, writing nothing", async () => {
    const quote = await gw.call("POST", "/v1/quotes", { body: quoteBody() });
    const transfersBefore = await gw.ledgerTransferCount();
    gw.app.payments.nowMs = () => realNow() + 61_000;
    try {
      const payment = await gw.call("POST", "/v1/payments", { body: paymentBody(quote.body.id) });
      expect(payment.status).toBe(422);
      expect(payment.body.error.code).toBe("quote_expired");
    } finally {
      gw.app.payments.nowMs = realNow;
    }
    expect(await gw.ledgerTransferCount()).toBe(transfersBefore);
  });

  it("refuses a payment that asks for something else than its quote priced", async () => {
    const quote = await gw.call("POST", "/v1/quotes", { body: quoteBody() });
    const payment = await gw.call("POST", "/v1/payments", { body: paymentBody(quote.body.id, "4") });
    expect(payment.status).toBe(422);
    expect(payment.body.error.code).toBe("quote_mismatch");
  });

  it("does not find a quote that is not the tenant's", async () => {
    const payment = await gw.call("POST", "/v1/payments", {
      body: paymentBody("quo_01m7zfckv29pdrb3m0gz9e4j5g"),
    });
    expect(payment.status).toBe(404);
    expect(payment.body.error.code).toBe("quote_not_found");
  });

  it("answers no_route with the reasons when no rail can make the payment", async () => {
    const quote = await gw.call("POST", "/v1/quotes", {
      body: { ...quoteBody(), constraints: { rails: { deny: ["evm"] } } },
    });
    expect(quote.status).toBe(422);
    expect(quote.body.error.code).toBe("no_route");
    expect(quote.body.error.route.excluded).toContainEqual(
      expect.objectContaining({ rail: "evm", reason: "not_allowed" }),
    );
  });
});
