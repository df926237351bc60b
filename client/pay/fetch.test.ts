// wrapFetch's L402 token reuse against a toy shop: a fetch function that sells counted tokens as Switchyard's
// scheme does (each bought for `requestsPerToken` requests, then a 402 `l402_requests_exhausted` with a fresh
// challenge), and a Lightning payer that pays the shop's invoices from its own book. Paying Switchyard's real scheme
// on the regtest network is test/lightning/pay-l402.test.ts.
import { createHash, randomBytes } from "node:crypto";
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import v8 from "node:v8";
import vm from "node:vm";
import { privateKeyToAccount } from "viem/accounts";
import { describe, expect, it } from "vitest";
import { bolt11Field, bytesToWords, signBolt11 } from "../../test/support/bolt11.ts";
import { usdcRequirement } from "../../test/support/x402-requirement.ts";
import { createBudget } from "./budget.ts";
import { BudgetExceededError, PaymentOutcomeUnknownError, PaymentRefusedError } from "./errors.ts";
import { type PaymentRecord, wrapFetch } from "./fetch.ts";
import { lightningAssetId } from "./l402.ts";
import { lndPaymentFailed } from "./lnd.ts";
import { type LightningPayer, viemPayer, weblnPayer } from "./payers.ts";
import { encodeBase64Json } from "./x402.ts";

const priceMsat = 2_000_000n;
const asset = lightningAssetId("regtest");
const accept = [{ scheme: "l402" as const, network: "regtest" as const, amountMsatMax: priceMsat }];
const url = "http://shop.test/weather";

type Token = { paymentHash: string; left: number };

/** The shop's node key, which signs its invoices. */
const shopKey = Buffer.alloc(32, 9);

/** The shop: 402 with a new invoice and macaroon, or 200 while the presented token has requests left. */
function toyShop(params: { requestsPerToken: number }) {
  const tokens = new Map<string, Token>();
  const invoices = new Map<string, string>(); // invoice → preimage, for the payer
  const refusals: string[] = [];
  const revoked = new Set<string>();
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
    const invoice = signBolt11({
      network: "bcrt",
      amount: "20u",
      timestampSeconds: Math.floor(Date.now() / 1000),
      fields: [[bolt11Field.paymentHash, bytesToWords(Buffer.from(paymentHash, "hex"))]],
      privateKey: shopKey,
    });
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
    if (revoked.has(credential[1]!))
      return new Response(JSON.stringify({ error: "l402_revoked" }), { status: 401 });
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
    /** Every token sold so far answers 401 from now on. */
    revokeAll: () => {
      for (const macaroon of tokens.keys()) revoked.add(macaroon);
    },
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
    // A shop whose tokens serve nothing: each paid retry is refused.
    const shop = toyShop({ requestsPerToken: 0 });
    const paidFetch = wrapFetch(shop.fetch, { accept, lightning: shop.payer });
    const refused = await caught(paidFetch(url));
    expect(refused).toBeInstanceOf(PaymentRefusedError);
    expect(refused).toMatchObject({
      code: "payment_refused",
      status: 402,
      reason: "l402_requests_exhausted",
    });
    expect(shop.payments()).toBe(1);
  });

  it("a payer that paid but answers without the invoice's preimage: outcome unknown, counted, never a bad token", async () => {
    const shop = toyShop({ requestsPerToken: 1 });
    const budget = createBudget({ [asset]: priceMsat });
    const wrong = "11".repeat(32);
    const lying: LightningPayer = {
      feeMsatMax: () => 0n,
      async payInvoice(params) {
        await shop.payer.payInvoice(params);
        return { preimage: wrong, feeMsat: 0n };
      },
    };
    const paidFetch = wrapFetch(shop.fetch, { accept, lightning: lying, budget });
    const unknown = await caught(paidFetch(url));
    expect(unknown).toBeInstanceOf(PaymentOutcomeUnknownError);
    expect((unknown as Error).message).not.toContain(wrong);
    // The shop never saw a credential (no refusal), and the payment stays counted: the next is refused.
    expect(shop.refusals).toEqual([]);
    expect(budget.remaining(asset)).toBe(0n);
    expect(await caught(paidFetch(url))).toBeInstanceOf(BudgetExceededError);
    expect(shop.payments()).toBe(1);
  });

  it("takes the invoice's preimage as 0x-prefixed hex or base64, as wallets give it", async () => {
    for (const encode of [
      (hex: string) => `0x${hex}`,
      (hex: string) => Buffer.from(hex, "hex").toString("base64"),
    ]) {
      const shop = toyShop({ requestsPerToken: 1 });
      const payer: LightningPayer = {
        feeMsatMax: () => 0n,
        async payInvoice(params) {
          const paid = await shop.payer.payInvoice(params);
          return { preimage: encode(paid.preimage), feeMsat: 0n };
        },
      };
      expect((await wrapFetch(shop.fetch, { accept, lightning: payer })(url)).status).toBe(200);
      expect(shop.served()).toBe(1);
    }
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

/**
 * The shop's fetch, with the answers to the 2nd to `held`th requests sent kept back until the first payment has begun,
 * and a payer whose first `failing` payments fail after a pause (the held requests wait on them by then).
 */
function failingFirstPayments(shop: ReturnType<typeof toyShop>, params: { held: number; failing: number }) {
  let release: () => void = () => {};
  const firstAsked = new Promise<void>((resolve) => {
    release = resolve;
  });
  let sends = 0;
  const transport = async (request: Request) => {
    sends += 1;
    const n = sends;
    const answer = await shop.fetch(request);
    if (n >= 2 && n <= params.held) await firstAsked;
    return answer;
  };
  let asked = 0;
  const payer: LightningPayer = {
    feeMsatMax: () => 0n,
    async payInvoice(invoice) {
      asked += 1;
      if (asked > params.failing) return shop.payer.payInvoice(invoice);
      release();
      await new Promise((resolve) => setTimeout(resolve, 20));
      throw new Error("no route");
    },
  };
  return { transport, payer, firstAsked, asked: () => asked };
}

describe("wrapFetch's edges", () => {
  it("requests that waited on a payment that failed pay once between them, not once each", async () => {
    const shop = toyShop({ requestsPerToken: 10 });
    const { transport, payer } = failingFirstPayments(shop, { held: 3, failing: 1 });
    const paidFetch = wrapFetch(transport, { accept, lightning: payer });
    const [first, second, third] = await Promise.allSettled([paidFetch(url), paidFetch(url), paidFetch(url)]);
    expect(first).toMatchObject({ status: "rejected", reason: { code: "payer_failed" } });
    for (const other of [second, third]) expect(other.status === "fulfilled" && other.value.status).toBe(200);
    expect(shop.payments()).toBe(1);
  });

  it("fails with the payments it waited on when two in a row failed; a request aborted while it waited pays nothing", async () => {
    const shop = toyShop({ requestsPerToken: 10 });
    const { transport, payer, firstAsked, asked } = failingFirstPayments(shop, {
      held: 4,
      failing: Infinity,
    });
    const aborted = new AbortController();
    const paidFetch = wrapFetch(transport, { accept, lightning: payer });
    const outcomes = Promise.allSettled([
      paidFetch(url),
      paidFetch(url),
      paidFetch(url),
      paidFetch(url, { signal: aborted.signal }),
    ]);
    await firstAsked;
    aborted.abort();
    const [first, second, third, fourth] = await outcomes;
    for (const outcome of [first, second, third])
      expect(outcome).toMatchObject({ status: "rejected", reason: { code: "payer_failed" } });
    expect(fourth).toMatchObject({ status: "rejected", reason: { name: "AbortError" } });
    // The first's payment and one waiter's after it; the third request, having waited on both, fails with them
    // rather than pay a third time (or wait on a third).
    expect(asked()).toBe(2);
  });

  it("a cached token answered 401 is dropped and the request paid afresh, not refused until it expires", async () => {
    const shop = toyShop({ requestsPerToken: 10 });
    const paidFetch = wrapFetch(shop.fetch, { accept, lightning: shop.payer });
    expect((await paidFetch(url)).status).toBe(200);
    shop.revokeAll();
    expect((await paidFetch(url)).status).toBe(200);
    expect((await paidFetch(url)).status).toBe(200);
    expect(shop.payments()).toBe(2);
    expect(shop.served()).toBe(3);
  });

  it("a 402 reached through a redirect to another origin is returned unpaid", async () => {
    const shop = toyShop({ requestsPerToken: 1 });
    const elsewhere = "http://elsewhere.test/weather";
    const transport = async (request: Request) => {
      const answer = await shop.fetch(request);
      if (answer.status !== 402) return answer;
      // What fetch hands back after following a redirect: the final answer, marked redirected, with its URL.
      const redirected = new Response(answer.body, answer);
      Object.defineProperties(redirected, { redirected: { value: true }, url: { value: elsewhere } });
      return redirected;
    };
    const answer = await wrapFetch(transport, { accept, lightning: shop.payer })(url);
    expect(answer.status).toBe(402);
    expect(shop.payments()).toBe(0);
  });

  it("a WebLN wallet that paid but gave no usable preimage keeps its payment counted", async () => {
    const shop = toyShop({ requestsPerToken: 1 });
    const budget = createBudget({ [asset]: priceMsat * 2n });
    let sent = 0;
    const paidFetch = wrapFetch(shop.fetch, {
      accept,
      budget,
      lightning: weblnPayer({
        async sendPayment(invoice) {
          sent += 1;
          await shop.payer.payInvoice({ invoice, amountMsat: priceMsat, feeMsatMax: 0n });
          return { preimage: "" }; // a wallet reporting a payment still pending
        },
      }),
    });
    expect(await caught(paidFetch(url))).toMatchObject({ code: "payment_outcome_unknown" });
    expect(budget.remaining(asset)).toBe(priceMsat);
    expect(await caught(paidFetch(url))).toMatchObject({ code: "payment_outcome_unknown" });
    expect(await caught(paidFetch(url))).toBeInstanceOf(BudgetExceededError);
    expect(sent).toBe(2);
  });

  it("LND's failures that leave nothing sent give the reservation back; a broken stream does not", () => {
    expect(lndPaymentFailed([503, "PaymentPathfindingFailedToFindPossibleRoute"])).toBe(true);
    expect(lndPaymentFailed([503, "PaymentRejectedByDestination"])).toBe(true);
    expect(lndPaymentFailed([400, "ExpectedPaymentRequestToPayViaPaymentRequest"])).toBe(true);
    expect(lndPaymentFailed([503, "UnexpectedPaymentError", { err: { details: "EOF" } }])).toBe(false);
    expect(lndPaymentFailed({ message: "socket hang up" })).toBe(false);
    // No connection when the call began: it never reached the node.
    expect(
      lndPaymentFailed([
        503,
        "UnexpectedPaymentError",
        { err: { code: 14, details: "No connection established" } },
      ]),
    ).toBe(true);
    expect(
      lndPaymentFailed([503, "UnexpectedPaymentError", { err: { code: 14, details: "Connection dropped" } }]),
    ).toBe(false);
  });
});

describe("wrapFetch's own checks", () => {
  it("a token just paid and refused as unpaid (the server's node slow or out of reach) is kept: the next request offers it, one payment", async () => {
    const shop = toyShop({ requestsPerToken: 5 });
    let unpaidAnswered = false;
    const transport = async (request: Request): Promise<Response> => {
      if (!unpaidAnswered && request.headers.has("authorization")) {
        unpaidAnswered = true;
        await Promise.resolve();
        return new Response(JSON.stringify({ error: "l402_invoice_unpaid" }), { status: 402 });
      }
      return shop.fetch(request);
    };
    const paidFetch = wrapFetch(transport, { accept, lightning: shop.payer });
    const refused = await caught(paidFetch(url));
    expect(refused).toBeInstanceOf(PaymentRefusedError);
    expect((refused as PaymentRefusedError).reason).toBe("l402_invoice_unpaid");
    const again = await paidFetch(url);
    expect(again.status).toBe(200);
    // Before: the token was dropped and the second request paid a new invoice.
    expect(shop.payments()).toBe(1);
  });

  it("refuses a cap that is not a bigint when it is made: compared with an amount it is always false, which paid any amount", () => {
    for (const amountMsatMax of [undefined, Number.NaN, "1e4", 10_000, -1n])
      expect(() =>
        wrapFetch(fetch, { accept: [{ ...accept[0]!, amountMsatMax: amountMsatMax as unknown as bigint }] }),
      ).toThrow(TypeError);
    expect(() => wrapFetch(fetch, { accept })).not.toThrow();
  });
});

describe("wrapFetch and the caller's signal, over Node's own fetch", () => {
  it("an abort after a garbage collection still reaches the paid retry in flight: outcome unknown at once, not the server's answer", async () => {
    // A Request's clone follows its source's signal through a WeakRef only (nodejs/undici#4068): the paid retry, a
    // clone, lost the caller's abort after a collection, and the call waited for the server — in CI, the gateway
    // holding the retry while its payment settled, a minute (expected PaymentRefusedError to be an instance of
    // PaymentOutcomeUnknownError).
    v8.setFlagsFromString("--expose-gc");
    const collectGarbage = vm.runInNewContext("gc") as () => void;
    const requirement = usdcRequirement;
    let paidArrived: () => void = () => {};
    const paidRequest = new Promise<void>((resolve) => {
      paidArrived = resolve;
    });
    const held: ServerResponse[] = [];
    const server = createServer((incoming, response) => {
      // The paid retry is held, as a gateway holds it while its payment settles; anything else is challenged.
      if (incoming.headers["payment-signature"] !== undefined) {
        held.push(response);
        paidArrived();
        return;
      }
      const challenge = { x402Version: 2, resource: { url: incoming.url }, accepts: [requirement] };
      response
        .writeHead(402, {
          "payment-required": encodeBase64Json(challenge),
          "content-type": "application/json",
        })
        .end("{}");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    try {
      const paidFetch = wrapFetch(fetch, {
        accept: [
          { scheme: "x402", network: requirement.network, asset: requirement.asset, amountMax: 10_000n },
        ],
        evm: viemPayer(privateKeyToAccount(`0x${"11".repeat(32)}`)),
      });
      const leaving = new AbortController();
      const call = paidFetch(`http://127.0.0.1:${port}/report`, { signal: leaving.signal }).then(
        () => "answered",
        (error: unknown) => error,
      );
      await paidRequest;
      collectGarbage();
      collectGarbage();
      leaving.abort();
      const outcome = await Promise.race([
        call,
        new Promise((resolve) => setTimeout(() => resolve("still waiting for the server"), 5_000)),
      ]);
      expect(outcome).toBeInstanceOf(PaymentOutcomeUnknownError);
      expect((outcome as PaymentOutcomeUnknownError).payment?.name.toLowerCase()).toBe("payment-signature");
    } finally {
      for (const response of held) response.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
