import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { destinationFromBody, policyFrom } from "../../gateway/http/present.ts";
import { derivedLedgerId } from "../../gateway/ids/index.ts";
import { credit, transferCodes } from "../../gateway/ledger/index.ts";
import { createPayment } from "../../gateway/payments/index.ts";
import { pruneQuotes } from "../../gateway/payments/quote-prune.ts";
import { railAccountOpened } from "../../gateway/payments/reservations.ts";
import { errorOf, startTestGateway, type TestGateway } from "./support.ts";

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
  asset: "USDC" as const,
  destination: { type: "evm_address" as const, address: payee },
  ttl_seconds: 60,
});
const paymentBody = (quote: string, amount = "3") => ({
  quote,
  amount,
  asset: "USDC" as const,
  source: { account: "acct_demo_customer" },
  destination: { type: "evm_address" as const, address: payee },
});

describe("quotes", () => {
  it("prices a payment with its route and fee cap, and a payment honours it", async () => {
    const quote = await gw.client.POST("/v1/quotes", { body: quoteBody() });
    expect(quote.response.status).toBe(201);
    expect(quote.data!).toMatchObject({
      object: "quote",
      rail: "evm",
      rail_amount: "3.000000",
      rail_asset: "USDC",
      amount: "3.000000",
    });
    expect(quote.data!.route.candidates[0]!.rail).toBe("evm");
    expect(Date.parse(quote.data!.expires_at) - Date.parse(quote.data!.created_at)).toBe(60_000);
    const transfersBefore = await gw.ledgerTransferCount();
    const payment = await gw.client.POST("/v1/payments", { body: paymentBody(quote.data!.id) });
    expect(payment.response.status).toBe(201);
    expect(payment.data!.status).toBe("succeeded");
    expect(payment.data!.route!.candidates).toEqual(quote.data!.route.candidates);
    // The reservation and its fee hold, their posts, and the gas the payout really cost.
    expect(await gw.ledgerTransferCount()).toBe(transfersBefore + 5n);
  });

  it("pays one payment: a second payment on the same quote is refused with quote_used, writing nothing", async () => {
    const quote = await gw.client.POST("/v1/quotes", { body: quoteBody() });
    const first = await gw.client.POST("/v1/payments", {
      body: paymentBody(quote.data!.id),
      params: { header: { "Idempotency-Key": `q-once-${quote.data!.id}-1` } },
    });
    expect(first.response.status).toBe(201);
    // The same request again under its own key is a replay, not a second use.
    const replay = await gw.client.POST("/v1/payments", {
      body: paymentBody(quote.data!.id),
      params: { header: { "Idempotency-Key": `q-once-${quote.data!.id}-1` } },
    });
    expect(replay.response.status).toBe(201);
    expect(replay.data!.id).toBe(first.data!.id);
    const transfersBefore = await gw.ledgerTransferCount();
    const second = await gw.client.POST("/v1/payments", {
      body: paymentBody(quote.data!.id),
      params: { header: { "Idempotency-Key": `q-once-${quote.data!.id}-2` } },
    });
    expect(second.response.status).toBe(409);
    expect(errorOf(second)).toMatchObject({ code: "quote_used", param: "quote" });
    const third = await gw.client.POST("/v1/payments", { body: paymentBody(quote.data!.id) });
    expect(errorOf(third).code).toBe("quote_used");
    expect(await gw.ledgerTransferCount()).toBe(transfersBefore);
    const [row] = await gw.app.db.query<{ count: string }>(
      "SELECT count(*)::text AS count FROM payments WHERE quote_id = $1",
      [quote.data!.id],
    );
    expect(row?.count).toBe("1");
  });

  it("a retry of a payment whose answer was lost (a 5xx is not kept) answers the payment, though its quote has expired since", async () => {
    const quote = await gw.client.POST("/v1/quotes", { body: quoteBody() });
    const key = `q-lost-${quote.data!.id}`;
    const body = paymentBody(quote.data!.id);
    const first = await gw.client.POST("/v1/payments", {
      body,
      params: { header: { "Idempotency-Key": key } },
    });
    expect(first.response.status).toBe(201);
    const transfersBefore = await gw.ledgerTransferCount();
    // The retry as the route runs it when no answer is kept for its key (a 5xx drops it): the service, without
    // the request's record. Run again after the quote's expiry, the request would be refused quote_expired.
    gw.app.payments.nowMs = () => realNow() + 61_000;
    try {
      const retried = await createPayment(gw.app.payments, {
        tenantId: gw.app.demo!.tenantId,
        asset: body.asset,
        amount: body.amount,
        sourceAccountId: body.source.account,
        destination: destinationFromBody(body.destination),
        policy: policyFrom(undefined),
        metadata: {},
        idempotencyKey: key,
        quoteId: body.quote,
      });
      expect(retried.ok && [retried.payment.id, retried.payment.status]).toEqual([
        first.data!.id,
        "succeeded",
      ]);
    } finally {
      gw.app.payments.nowMs = realNow;
    }
    expect(await gw.ledgerTransferCount()).toBe(transfersBefore);
  });

  it("two payments racing for one quote: one is paid, the other refused", async () => {
    const quote = await gw.client.POST("/v1/quotes", { body: quoteBody() });
    const answers = await Promise.all(
      [1, 2, 3].map(() => gw.client.POST("/v1/payments", { body: paymentBody(quote.data!.id) })),
    );
    expect(answers.map((answer) => answer.response.status).sort()).toEqual([201, 409, 409]);
  });

  it("a payment on a quote still obeys its own constraints, or fails with quote_constraints_unmet", async () => {
    const denied = await gw.client.POST("/v1/quotes", { body: quoteBody() });
    const refused = await gw.client.POST("/v1/payments", {
      body: { ...paymentBody(denied.data!.id), constraints: { rails: { deny: ["evm"] } } },
    });
    expect(refused.response.status).toBe(422);
    expect(errorOf(refused)).toMatchObject({ code: "quote_constraints_unmet", param: "constraints" });
    expect(errorOf(refused).route.excluded).toContainEqual(
      expect.objectContaining({ rail: "evm", reason: "not_allowed" }),
    );
    const tooDear = await gw.client.POST("/v1/payments", {
      body: { ...paymentBody(denied.data!.id), constraints: { max_fee_usd: "0" } },
    });
    expect(tooDear.response.status).toBe(422);
    expect(errorOf(tooDear).route.excluded).toContainEqual(
      expect.objectContaining({ rail: "evm", reason: "fee_above_max" }),
    );
    // Refused payments did not use the quote up: it still pays, under constraints it meets.
    const paid = await gw.client.POST("/v1/payments", { body: paymentBody(denied.data!.id) });
    expect(paid.response.status).toBe(201);
  });

  it("a payment's lower fee cap than its quote's is the one the rail is held to", async () => {
    const quote = await gw.client.POST("/v1/quotes", { body: quoteBody() });
    const candidate = quote.data!.route.candidates[0]!;
    const fee = Number(candidate.cost.fee_usd);
    const cap = Number(candidate.fee_cap_usd);
    expect(cap).toBeGreaterThan(fee);
    const between = ((fee + cap) / 2).toFixed(6);
    const payment = await gw.client.POST("/v1/payments", {
      body: { ...paymentBody(quote.data!.id), constraints: { max_fee_usd: between } },
    });
    expect(payment.response.status).toBe(201);
    expect(payment.data!.route!.candidates[0]!.fee_cap_usd).toBe(between);
  });

  it("refuses a payment on an expired quote with quote_expired, writing nothing", async () => {
    const quote = await gw.client.POST("/v1/quotes", { body: quoteBody() });
    const transfersBefore = await gw.ledgerTransferCount();
    gw.app.payments.nowMs = () => realNow() + 61_000;
    try {
      const payment = await gw.client.POST("/v1/payments", { body: paymentBody(quote.data!.id) });
      expect(payment.response.status).toBe(422);
      expect(errorOf(payment).code).toBe("quote_expired");
    } finally {
      gw.app.payments.nowMs = realNow;
    }
    expect(await gw.ledgerTransferCount()).toBe(transfersBefore);
  });

  it("refuses a payment that asks for something else than its quote priced", async () => {
    const quote = await gw.client.POST("/v1/quotes", { body: quoteBody() });
    const payment = await gw.client.POST("/v1/payments", { body: paymentBody(quote.data!.id, "4") });
    expect(payment.response.status).toBe(422);
    expect(errorOf(payment).code).toBe("quote_mismatch");
  });

  it("takes the quote's address in any case, but not with a chain id the quote did not name: that is another destination", async () => {
    const quote = await gw.client.POST("/v1/quotes", { body: quoteBody() });
    const transfersBefore = await gw.ledgerTransferCount();
    const balanceBefore = await gw.tokenBalance(payee);
    // Before: paid on the gateway's chain, the payment recording chain 999999.
    const elsewhere = await gw.call("POST", "/v1/payments", {
      body: {
        ...paymentBody(quote.data!.id),
        destination: { type: "evm_address", address: payee, chain_id: 999_999 },
      },
    });
    expect(elsewhere.status).toBe(422);
    expect(elsewhere.body.error.code).toBe("quote_mismatch");
    expect(await gw.ledgerTransferCount()).toBe(transfersBefore);
    expect(await gw.tokenBalance(payee)).toBe(balanceBefore);
    const lower = await gw.call("POST", "/v1/payments", {
      body: {
        ...paymentBody(quote.data!.id),
        destination: { type: "evm_address", address: payee.toLowerCase() },
      },
    });
    expect(lower.status).toBe(201);
    expect(await gw.tokenBalance(payee)).toBe(balanceBefore + 3_000_000n);
  });

  it("does not pay a payee's method removed after the quote", async () => {
    const [removed, kept] = [`0x${"5a".repeat(20)}`, `0x${"5b".repeat(20)}`] as const;
    const created = await gw.call("POST", "/v1/payees", {
      body: { name: "Moved wallet", methods: [{ type: "evm_address", address: removed }] },
    });
    const payeeId = created.body.id as string;
    const quote = await gw.call("POST", "/v1/quotes", {
      body: {
        amount: "2",
        asset: "USDC",
        destination: { type: "payee", payee: payeeId },
        ttl_seconds: 60,
      },
    });
    expect(quote.status).toBe(201);
    const updated = await gw.call("PATCH", `/v1/payees/${payeeId}`, {
      body: { methods: [{ type: "evm_address", address: kept }] },
    });
    expect(updated.status).toBe(200);
    const transfersBefore = await gw.ledgerTransferCount();
    // Before: 201, and the removed address got the 2 USDC.
    const paid = await gw.call("POST", "/v1/payments", {
      body: {
        quote: quote.body.id,
        amount: "2",
        asset: "USDC",
        source: { account: "acct_demo_customer" },
        destination: { type: "payee", payee: payeeId },
      },
    });
    expect(paid.status).toBe(422);
    expect(paid.body.error).toMatchObject({ code: "quote_mismatch", param: "quote" });
    expect(await gw.tokenBalance(removed)).toBe(0n);
    expect(await gw.tokenBalance(kept)).toBe(0n);
    expect(await gw.ledgerTransferCount()).toBe(transfersBefore);
  });

  it("charges a payer in cents no more than the quote's fee cap beyond the amount, the spread and the fee together", async () => {
    const usd = gw.app.demo!.usd;
    const capital = await railAccountOpened(gw.app.payments, {
      kind: "capital",
      rail: "test-funding",
      asset: usd.asset,
    });
    await credit(
      gw.app.ledger,
      {
        debitAccountId: capital.ledgerAccountId,
        creditAccountId: usd.ledgerAccountId,
        amount: 10_000n,
        ledger: usd.asset.ledger,
        code: transferCodes.payments.funding,
      },
      { id: derivedLedgerId("quotes-test-usd", "funding") },
    );
    const quote = await gw.call("POST", "/v1/quotes", {
      body: { ...quoteBody(), amount: "3.00", asset: "USD" },
    });
    expect(quote.status).toBe(201);
    const capMicroUsd = BigInt((quote.body.fee_cap_usd as string).replace(".", ""));
    // Gas far dearer than when quoted (ETH at 300 USD a wei): the payout costs more than its fee hold, which is charged whole.
    const snapshot = gw.app.payments.snapshot;
    let patched: { base: ReturnType<typeof snapshot>; value: ReturnType<typeof snapshot> } | null = null;
    gw.app.payments.snapshot = () => {
      const base = snapshot();
      if (patched?.base !== base)
        patched = {
          base,
          value: {
            ...base,
            usdRates: { ...base.usdRates, ETH: { microUsd: 300n, perMinorUnits: 1n } },
          },
        };
      return patched.value;
    };
    const before = await gw.app.ledger.lookupAccounts([usd.ledgerAccountId]);
    try {
      const paid = await gw.call("POST", "/v1/payments", {
        body: {
          quote: quote.body.id,
          amount: "3.00",
          asset: "USD",
          source: { account: usd.id },
          destination: { type: "evm_address", address: payee },
        },
      });
      expect(paid.status).toBe(201);
    } finally {
      gw.app.payments.snapshot = snapshot;
    }
    const after = await gw.app.ledger.lookupAccounts([usd.ledgerAccountId]);
    const beyond = after[0]!.debitsPosted - before[0]!.debitsPosted - 300n;
    // Before: 56 cents beyond the amount (a 55-cent fee hold, each leg rounded up, and a cent of spread) on a
    // 54.9-cent cap.
    expect(beyond).toBeGreaterThan(0n);
    expect(beyond * 10_000n).toBeLessThanOrEqual(capMicroUsd);
  });

  it("keeps an unused quote 30 days past its expiry, then prunes it; one a payment was made on stays", async () => {
    const ask = async () => (await gw.client.POST("/v1/quotes", { body: quoteBody() })).data!.id;
    const [unused, recent, paid] = [await ask(), await ask(), await ask()];
    expect((await gw.client.POST("/v1/payments", { body: paymentBody(paid) })).response.status).toBe(201);
    const expiredDaysAgo = (id: string, days: number) =>
      gw.app.db.query("UPDATE quotes SET expires_at = now() - make_interval(days => $2::int) WHERE id = $1", [
        id,
        days,
      ]);
    await expiredDaysAgo(unused, 31);
    await expiredDaysAgo(recent, 29);
    await expiredDaysAgo(paid, 31);
    // Before: no prune; every quote asked for was kept for good.
    const { deleted } = await pruneQuotes(gw.app.db);
    expect(deleted).toBeGreaterThanOrEqual(1);
    const kept = async (id: string) =>
      (await gw.app.db.query("SELECT 1 FROM quotes WHERE id = $1", [id])).length === 1;
    expect([await kept(unused), await kept(recent), await kept(paid)]).toEqual([false, true, true]);
  });

  it("does not find a quote that is not the tenant's", async () => {
    const payment = await gw.client.POST("/v1/payments", {
      body: paymentBody("quo_01m7zfckv29pdrb3m0gz9e4j5g"),
    });
    expect(payment.response.status).toBe(400);
    expect(errorOf(payment)).toMatchObject({ code: "quote_not_found", param: "quote" });
  });

  it("prices a payment to one of the tenant's accounts only, as a payment would take it", async () => {
    const toAccount = (account: string, asset = "USDC") =>
      gw.call("POST", "/v1/quotes", {
        body: { amount: "1", asset, destination: { type: "account", account }, ttl_seconds: 60 },
      });
    expect((await toAccount("acct_demo_merchant")).status).toBe(201);
    // Before: 201, a quote naming an account the tenant does not have (another tenant's was priced the same).
    const unknown = await toAccount("acct_nobody_here");
    expect(unknown.status).toBe(400);
    expect(unknown.body.error).toMatchObject({ code: "destination_not_found", param: "destination.account" });
    const otherAsset = await toAccount("acct_demo_merchant", "BTC");
    expect(otherAsset.status).toBe(400);
    expect(otherAsset.body.error.code).toBe("asset_mismatch");
  });

  it("answers no_route with the reasons when no rail can make the payment", async () => {
    const quote = await gw.client.POST("/v1/quotes", {
      body: { ...quoteBody(), constraints: { rails: { deny: ["evm"] } } },
    });
    expect(quote.response.status).toBe(422);
    expect(errorOf(quote).code).toBe("no_route");
    expect(errorOf(quote).route.excluded).toContainEqual(
      expect.objectContaining({ rail: "evm", reason: "not_allowed" }),
    );
  });
});
