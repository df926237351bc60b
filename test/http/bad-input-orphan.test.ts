// Nothing is left payable on a rail for an invoice that does not exist. When the invoice cannot be written after
// the rail made its offer, the offer is withdrawn (core's cancelReceive) and the client gets the API's 500 — shown
// with a toy rail that records what it is asked, the write refused by a trigger in the database. The fiat rail's
// cancelReceive against stripe-mock: the invoice's own PaymentIntent cancelled, any other refused; and a USD
// invoice above Stripe's maximum is refused before a PaymentIntent is made.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { ReceiveCancellation, ReceiveCancellationOutcome } from "../../core/index.ts";
import { type App, createApp, railModules } from "../../gateway/app.ts";
import {
  ensureStripeMock,
  type StripeMockServer,
  startStripeMock,
  stripeMockBuildTimeoutMs,
} from "../../scripts/stripe-mock.ts";
import { testConfig } from "../support/config.ts";
import { createToyRail } from "../support/toy-rail-module.ts";

const refusedDescription = "the database refuses this write";

/** Every invoice written with `refusedDescription` fails, after the rail has made its offer. */
async function refuseInvoiceWrites(app: App): Promise<void> {
  await app.db.query(
    `CREATE FUNCTION refuse_invoice() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN RAISE EXCEPTION 'invoice writes are refused in this test'; END $$`,
  );
  await app.db.query(
    `CREATE TRIGGER refuse_invoice BEFORE INSERT ON invoices FOR EACH ROW
     WHEN (NEW.description = '${refusedDescription}') EXECUTE FUNCTION refuse_invoice()`,
  );
}

async function post(app: App, url: string, body: unknown) {
  const response = await app.server.inject({
    method: "POST",
    url,
    headers: { authorization: `Bearer ${app.demo!.apiKey}`, "content-type": "application/json" },
    payload: JSON.stringify(body),
  });
  return { status: response.statusCode, body: response.json() };
}

const count = async (app: App, table: string) => {
  const [row] = await app.db.query<{ count: bigint }>(`SELECT count(*) AS count FROM ${table}`);
  return row!.count;
};

describe("an offer whose invoice could not be written", () => {
  let app: App;
  /** What the toy withdrew, and the offers it made (reference → rail reference), in the test running. */
  const withdrawn: ReceiveCancellation[] = [];
  const offers = new Map<string, string>();

  beforeAll(async () => {
    const base = createToyRail({ id: "toy", feeFixed: 1n });
    const toy = {
      ...base,
      receive: async (request: Parameters<NonNullable<typeof base.receive>>[0]) => {
        const offer = await base.receive!(request);
        if (offer.status === "offered") offers.set(request.reference, offer.railReference);
        return offer;
      },
      cancelReceive: async (offer: ReceiveCancellation): Promise<ReceiveCancellationOutcome> => {
        withdrawn.push(offer);
        return { status: "cancelled" };
      },
    };
    app = await createApp(testConfig({ LOG_LEVEL: "silent", PORT: "0" }), {
      railModules: [...railModules, () => ({ rails: [toy] })],
    });
    await refuseInvoiceWrites(app);
  }, 120_000);
  afterAll(async () => {
    await app?.close();
  });
  // Each test sees only its own offers and withdrawals, whichever ran before it.
  beforeEach(() => {
    withdrawn.length = 0;
    offers.clear();
  });

  it("is withdrawn from the rail, and the client gets the API's 500", async () => {
    const before = await count(app, "invoices");
    const answer = await post(app, "/v1/invoices", {
      account: app.demo!.merchant.id,
      amount: "5.00",
      asset: "USDC",
      rail: "toy",
      description: refusedDescription,
    });
    expect(answer).toEqual({
      status: 500,
      body: {
        error: { code: "internal_error", message: expect.not.stringContaining("refused in this test") },
      },
    });
    expect(offers.size).toBe(1);
    const [reference, railReference] = [...offers.entries()][0]!;
    expect(withdrawn).toEqual([{ reference, railReference }]);
    expect(await count(app, "invoices")).toBe(before);
  });

  it("an invoice written is never withdrawn", async () => {
    const answer = await post(app, "/v1/invoices", {
      account: app.demo!.merchant.id,
      amount: "5.00",
      asset: "USDC",
      rail: "toy",
    });
    expect(answer.status).toBe(201);
    // The rail did make an offer, so there was one to withdraw, and none was.
    expect(offers.size).toBe(1);
    expect(withdrawn).toEqual([]);
  });
});

describe("the fiat rail against stripe-mock", () => {
  let stripeMock: StripeMockServer;
  let app: App;
  let customer: string;

  beforeAll(async () => {
    const ensured = await ensureStripeMock({ buildTimeoutMs: stripeMockBuildTimeoutMs });
    stripeMock = await startStripeMock({ binary: ensured.binary });
    app = await createApp(
      testConfig({
        LOG_LEVEL: "silent",
        PORT: "0",
        STRIPE_SECRET_KEY: "sk_test_123",
        STRIPE_WEBHOOK_SECRETS: "whsec_orphan_test",
        STRIPE_API_HOST: "127.0.0.1",
        STRIPE_API_PORT: String(stripeMock.port),
        STRIPE_API_PROTOCOL: "http",
        FIAT_LIQUIDITY: "not_limited",
      }),
    );
    const created = await post(app, "/v1/accounts", {
      asset: "USD",
      kind: "customer",
      name: "card customer",
    });
    if (created.status !== 201) throw new Error(`no USD account: ${JSON.stringify(created.body)}`);
    customer = created.body.id;
  }, 300_000);
  afterAll(async () => {
    await app?.close();
    await stripeMock?.stop();
  });

  const account = () => customer;

  it("refuses a USD invoice above Stripe's maximum (99,999,999 cents) before any PaymentIntent", async () => {
    const before = await count(app, "fiat_stripe_objects");
    const answer = await post(app, "/v1/invoices", {
      account: account(),
      amount: "1000000.00",
      asset: "USD",
    });
    expect(answer.status).toBe(400);
    expect(answer.body.error).toMatchObject({ code: "amount_too_large", param: "amount" });
    expect(await count(app, "fiat_stripe_objects")).toBe(before);
    const atMax = await post(app, "/v1/invoices", { account: account(), amount: "999999.99", asset: "USD" });
    expect(atMax.status).toBe(201);
  });

  it("cancels the invoice's own PaymentIntent, and no other", async () => {
    const invoice = await post(app, "/v1/invoices", { account: account(), amount: "12.00", asset: "USD" });
    expect(invoice.status).toBe(201);
    const fiat = app.rails.get("fiat")!;
    const railReference = invoice.body.instructions.payment_intent as string;
    expect(await fiat.cancelReceive!({ reference: invoice.body.id, railReference })).toEqual({
      status: "cancelled",
    });
    expect(
      await fiat.cancelReceive!({ reference: invoice.body.id, railReference: "pi_someone_else" }),
    ).toMatchObject({ status: "failed", code: "rejected" });
    // An offer never made: nothing to withdraw.
    expect(await fiat.cancelReceive!({ reference: "inv_never_offered", railReference: "pi_x" })).toEqual({
      status: "cancelled",
    });
  });
});
