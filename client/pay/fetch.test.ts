// wrapFetch's L402 token reuse against a toy shop: a fetch function that sells counted tokens as Switchyard's
// scheme does (each bought for `requestsPerToken` requests, then a 402 `l402_requests_exhausted` with a fresh
// challenge), and a Lightning payer that pays the shop's invoices from its own book. Paying Switchyard's real scheme
// on the regtest network is test/lightning/pay-l402.test.ts.
import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createBudget } from "./budget.ts";
import { BudgetExceededError, PaymentRefusedError } from "./errors.ts";
import { type PaymentRecord, wrapFetch } from "./fetch.ts";
import { lightningAssetId } from "./l402.ts";
import type { LightningPayer } from "./payers.ts";

const priceMsat = 2_000_000n;
const asset = lightningAssetId("regtest");
const accept = [{ scheme: "l402" as const, network: "regtest" as const, amountMsatMax: priceMsat }];
const url = "http://shop.test/weather";

type Token = { paymentHash: string; left: number };

/** The shop: 402 with a new invoice and macaroon, or 200 while the presented token has requests left. */
function toyShop(params: { requestsPerToken: number }) {
  const tokens = new Map<string, Token>();
  const invoices = new Map<string, string>(); // invoice → preimage, for the payer
  const refusals: string[] = [];
  let served = 0;
  let payments = 0;
  let paymentStarted: () => void = () => {};
  const firstPayment = new Promise<void>((resolve) => {
    paymentStarted = resolve;
  });
  const challenge = (code: string) => {
    const preimage = randomBytes(32).toString("hex");
    const paymentHash = createHash("sha256").update(Buffer.from(preimage, "hex")).digest("hex");
    const macaroon = randomBytes(16).toString("base64");
    // BOLT11's data part has no digit 1: the id in letters.
    const invoice = `lnbcrt20u1p${paymentHash.slice(0, 16).replace(/[0-9]/g, (d) => "acdefghjkl"[Number(d)]!)}`;
    tokens.set(macaroon, { paymentHash, left: params.requestsPerToken });
    invoices.set(invoice, preimage);
    if (code !== "payment_required") refusals.push(code);
    return new Response(JSON.stringify({ error: code }), {
      status: 402,
      headers: {
        "content-type": "application/json",
        "www-authenticate": `L402 macaroon="${macaroon}", invoice="${invoice}"`,
      },
    });
  };
  const fetch = async (request: Request): Promise<Response> => {
    await Promise.resolve(); // an answer is never in the same turn as its request
    const credential = /^L402 ([^:\s]+):([0-9a-f]{64})$/.exec(request.headers.get("authorization") ?? "");
    if (credential === null) return challenge("payment_required");
    const token = tokens.get(credential[1]!);
    const hash = createHash("sha256").update(Buffer.from(credential[2]!, "hex")).digest("hex");
    if (token === undefined || token.paymentHash !== hash) return challenge("l402_preimage_mismatch");
    if (token.left === 0) return challenge("l402_requests_exhausted");
    token.left -= 1;
    served += 1;
    return Response.json({ weather: "sunny" });
  };
  const payer: LightningPayer = {
    feeMsatMax: () => 0n,
    async payInvoice({ invoice }) {
      const preimage = invoices.get(invoice);
      if (preimage === undefined) throw new Error(`no such invoice ${invoice}`);
      payments += 1;
      paymentStarted();
      return { preimage, feeMsat: 0n };
    },
  };
  return {
    fetch,
    payer,
    /** Resolved when the payer is first asked to pay. */
    firstPayment,
    refusals,
    served: () => served,
    payments: () => payments,
  };
}

/**
 * The shop's fetch with the answers to the 2nd to `held`th requests sent kept back until the first payment has
 * begun: their 402s arrive while another request to their scope is paying.
 */
function heldTransport(shop: ReturnType<typeof toyShop>, held: number) {
  let sends = 0;
  return async (request: Request): Promise<Response> => {
    sends += 1;
    const hold = sends > 1 && sends <= held;
    const response = await shop.fetch(request);
    if (hold) await shop.firstPayment;
    return response;
  };
}

/** `transport` with the first request that carries an L402 token (the paid retry) failing as a network error does. */
function failingPaidRetry(transport: (request: Request) => Promise<Response>) {
  let failed = false;
  return async (request: Request): Promise<Response> => {
    if (!failed && request.headers.has("authorization")) {
      failed = true;
      await Promise.resolve();
      throw new TypeError("fetch failed");
    }
    return transport(request);
  };
}

async function caught(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}

describe("wrapFetch and a counted L402 token used up", () => {
  it("forgets the cached token and pays the fresh challenge once; the new token serves the requests after", async () => {
    const shop = toyShop({ requestsPerToken: 2 });
    const payments: PaymentRecord[] = [];
    const paidFetch = wrapFetch(shop.fetch, {
      accept,
      lightning: shop.payer,
      onPayment: (payment) => payments.push(payment),
    });
    for (let i = 0; i < 4; i += 1) expect((await paidFetch(url)).status).toBe(200);
    expect(shop.refusals).toEqual(["l402_requests_exhausted"]);
    expect(shop.payments()).toBe(2);
    expect(payments.map((payment) => payment.amount)).toEqual([priceMsat, priceMsat]);
    expect(shop.served()).toBe(4);
  });

  it("a request whose borrowed token another request used up pays the fresh challenge, once", async () => {
    // Two first requests: one pays a token good for one request, the other borrows it, finds it used up by the
    // request that bought it, and pays for itself.
    const shop = toyShop({ requestsPerToken: 1 });
    const paidFetch = wrapFetch(heldTransport(shop, 2), { accept, lightning: shop.payer });
    const responses = await Promise.all([paidFetch(url), paidFetch(url)]);
    expect(responses.map((response) => response.status)).toEqual([200, 200]);
    expect(shop.refusals).toEqual(["l402_requests_exhausted"]);
    expect(shop.payments()).toBe(2);
    expect(shop.served()).toBe(2);
  });

  it("concurrent borrowers never leave the request that bought the token without its request", async () => {
    const shop = toyShop({ requestsPerToken: 2 });
    const payments: PaymentRecord[] = [];
    const paidFetch = wrapFetch(heldTransport(shop, 5), {
      accept,
      lightning: shop.payer,
      onPayment: (payment) => payments.push(payment),
    });
    const responses = await Promise.all(Array.from({ length: 5 }, () => paidFetch(url)));
    expect(responses.map((response) => response.status)).toEqual(Array(5).fill(200));
    expect(shop.served()).toBe(5);
    // The first token serves its buyer and one borrower; the three borrowers left out pay a token each.
    expect(shop.refusals).toEqual(Array(3).fill("l402_requests_exhausted"));
    expect(shop.payments()).toBe(4);
    expect(payments.map((payment) => payment.status)).toEqual(Array(4).fill(200));
  });

  it("the fresh challenge is paid within the budget: a budget spent refuses it, nothing paid", async () => {
    const shop = toyShop({ requestsPerToken: 1 });
    const budget = createBudget({ [asset]: priceMsat });
    const paidFetch = wrapFetch(shop.fetch, { accept, lightning: shop.payer, budget });
    expect((await paidFetch(url)).status).toBe(200);
    const refused = await caught(paidFetch(url));
    expect(refused).toBeInstanceOf(BudgetExceededError);
    expect(refused).toMatchObject({ code: "budget_exceeded", amount: priceMsat, remaining: 0n });
    expect(shop.payments()).toBe(1);
  });

  it("a 402 to the paid retry is refused, not paid again", async () => {
    const shop = toyShop({ requestsPerToken: 1 });
    // A payer whose preimages the shop does not take (another's): each paid retry is refused.
    const lying: LightningPayer = {
      feeMsatMax: () => 0n,
      async payInvoice(params) {
        await shop.payer.payInvoice(params);
        return { preimage: "11".repeat(32), feeMsat: 0n };
      },
    };
    const paidFetch = wrapFetch(shop.fetch, { accept, lightning: lying });
    const refused = await caught(paidFetch(url));
    expect(refused).toBeInstanceOf(PaymentRefusedError);
    expect(refused).toMatchObject({ code: "payment_refused", status: 402, reason: "l402_preimage_mismatch" });
    expect(shop.payments()).toBe(1);
  });

  it("a paid retry that fails to send keeps its token: the borrower and the next request use it, one payment", async () => {
    // The token is paid for whatever happens to the request carrying it; only the server's 402/401 drops it.
    const shop = toyShop({ requestsPerToken: 3 });
    const payments: PaymentRecord[] = [];
    const paidFetch = wrapFetch(failingPaidRetry(heldTransport(shop, 2)), {
      accept,
      lightning: shop.payer,
      onPayment: (payment) => payments.push(payment),
    });
    const [paying, borrowing] = await Promise.allSettled([paidFetch(url), paidFetch(url)]);
    expect(paying).toMatchObject({ status: "rejected", reason: new TypeError("fetch failed") });
    expect(borrowing.status === "fulfilled" && borrowing.value.status).toBe(200);
    expect((await paidFetch(url)).status).toBe(200);
    expect(shop.payments()).toBe(1);
    expect(shop.refusals).toEqual([]);
    expect(shop.served()).toBe(2);
    // The server never answered the request that paid: no payment is reported as taken.
    expect(payments).toEqual([]);
  });
});
