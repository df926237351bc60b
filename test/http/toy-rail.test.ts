// Adding a rail is one module line in the composition root: a rail built only from core's contract, registered
// through createApp's rail modules, takes money in (an invoice, paid through its own provider route), pays money
// out (the router picks it as the cheapest), and shows on /healthz — with nothing in the gateway knowing it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type App, createApp, railModules } from "../../gateway/app.ts";
import { typedClient } from "../support/api.ts";
import { testConfig } from "../support/config.ts";
import { createToyRail, type ToyRail, toyWebhookPath, toyWebhookSecret } from "../support/toy-rail-module.ts";

let app: App;
let toy: ToyRail;
let key: string;

beforeAll(async () => {
  toy = createToyRail({ id: "toy", feeFixed: 1n });
  app = await createApp(testConfig({ LOG_LEVEL: "silent", PORT: "0" }), {
    railModules: [...railModules, () => ({ rails: [toy] })],
  });
  if (app.demo === null) throw new Error("development mode was expected");
  key = app.demo.apiKey;
}, 120_000);

afterAll(async () => {
  await app?.close();
});

const client = () => typedClient(app, key);

const balance = async (account: string) =>
  (await client().GET("/v1/accounts/{id}/balance", { params: { path: { id: account } } })).data!.available;

/** A toy invoice of the demo merchant's for `amount`, paid through the toy provider's route: the toy then holds it. */
async function takeIn(amount: string, key: string) {
  const invoice = await client().POST("/v1/invoices", {
    body: { account: app.demo!.merchant.id, asset: "USDC", amount, rail: "toy" },
    params: { header: { "Idempotency-Key": key } },
  });
  expect(invoice.response.status).toBe(201);
  const paid = await app.server.inject({
    method: "POST",
    url: toyWebhookPath,
    headers: { "content-type": "application/json", "x-toy-secret": toyWebhookSecret },
    payload: JSON.stringify({
      reference: invoice.data!.id,
      amount: toy.offers.get(invoice.data!.id)!.toString(),
    }),
  });
  expect(paid.statusCode).toBe(200);
}

describe("a toy rail registered through the composition root's rail modules", () => {
  it("is wired like every rail: health, snapshot, clearing account", async () => {
    const health = await app.server.inject({ method: "GET", url: "/healthz" });
    expect(health.json().rails.toy).toEqual({ available: true });
    const [clearing] = await app.db.query<{ id: string }>(
      "SELECT id FROM accounts WHERE kind = 'clearing' AND rail = 'toy' AND asset = 'USDC'",
    );
    expect(clearing?.id).toBe("acct_clearing_toy_usdc");
  });

  it("takes money in: an invoice on the toy, paid through the toy's own provider route", async () => {
    const merchant = app.demo!.merchant.id;
    const before = await balance(merchant);
    const invoice = await client().POST("/v1/invoices", {
      body: { account: merchant, asset: "USDC", amount: "2.50", rail: "toy" },
      params: { header: { "Idempotency-Key": "toy-invoice-1" } },
    });
    expect(invoice.response.status).toBe(201);
    expect(invoice.data!).toMatchObject({ rail: "toy", status: "open", instructions: { method: "toy" } });
    expect(toy.offers.get(invoice.data!.id)).toBe(2_500_000n);

    // The toy's provider calls its route: mounted by the server without an API key, refused without its secret.
    const refused = await app.server.inject({
      method: "POST",
      url: toyWebhookPath,
      headers: { "content-type": "application/json" },
      payload: JSON.stringify({ reference: invoice.data!.id, amount: "2500000" }),
    });
    expect(refused.statusCode).toBe(401);
    const paid = await app.server.inject({
      method: "POST",
      url: toyWebhookPath,
      headers: { "content-type": "application/json", "x-toy-secret": toyWebhookSecret },
      payload: JSON.stringify({ reference: invoice.data!.id, amount: "2500000" }),
    });
    expect(paid.statusCode).toBe(200);
    const after = await client().GET("/v1/invoices/{id}", { params: { path: { id: invoice.data!.id } } });
    expect(after.data!).toMatchObject({ status: "paid", received_amount: "2.500000" });
    expect(BigInt((await balance(merchant)).replace(".", ""))).toBe(
      BigInt(before.replace(".", "")) + 2_500_000n,
    );
  });

  it("pays money out: the router picks the toy as the cheapest rail to an address, and the payment shows its evidence", async () => {
    // The gateway sends on the toy only what the toy's clearing account holds (more: its reservation fails as
    // insufficient_liquidity, and the payment falls back to evm): money taken in on it first, whatever ran before.
    await takeIn("2.50", "toy-invoice-for-payout");
    const customer = app.demo!.customer.id;
    const before = await balance(customer);
    const payment = await client().POST("/v1/payments", {
      body: {
        amount: "1.25",
        asset: "USDC",
        source: { account: customer },
        destination: { type: "evm_address", address: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC" },
      },
      params: { header: { "Idempotency-Key": "toy-payment-1" } },
    });
    expect(payment.response.status).toBe(201);
    expect(payment.data!).toMatchObject({ status: "succeeded", rail: "toy" });
    expect(payment.data!.route!.candidates.map((c: { rail: string }) => c.rail)).toContain("evm");
    expect(payment.data!.attempts[0]!.evidence).toEqual({
      rail: "external",
      rail_id: "toy",
      reference: expect.stringMatching(/^toy_out_/),
    });
    expect([...toy.payouts.values()]).toEqual([
      { amount: 1_250_000n, to: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC" },
    ]);
    // The payer pays the amount and the fee the toy reports having paid (passed through, within the fee cap).
    const fee = BigInt(payment.data!.attempts[0]!.fee!.replace(".", ""));
    expect(fee).toBeGreaterThan(0n);
    expect(BigInt((await balance(customer)).replace(".", ""))).toBe(
      BigInt(before.replace(".", "")) - 1_250_000n - fee,
    );
  });
});
