// The payer SDK (client/pay) paying Switchyard's L402 scheme (gateway/l402) on the regtest network: a plain
// node:http server puts the scheme in front of a resource (challenge when unpaid, verify and complete when a
// credential comes), the gateway's node makes the invoices, and the payer node pays them — through the LND payer
// (`lightning`'s pay) and through a WebLN provider backed by the same node. Tokens are reused until the server
// refuses them; budgets and limits are checked before anything is paid.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { fetchWithL402 } from "@getalby/lightning-tools/402/l402";
import { authenticatedLndGrpc, getChannelBalance, pay } from "lightning";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  AmountOverLimitError,
  BudgetExceededError,
  createBudget,
  lightningAssetId,
  lndPayer,
  PaymentOutcomeUnknownError,
  type PaymentRecord,
  PaymentRefusedError,
  parseL402Challenge,
  type WebLnProvider,
  weblnPayer,
  wrapFetch,
} from "../../client/pay/index.ts";
import { assets } from "../../core/index.ts";
import { createL402Scheme } from "../../gateway/l402/index.ts";
import type { PaymentScheme, PaywallRequest, PricedResource } from "../../gateway/paywall/scheme.ts";
import { waitFor } from "../../scripts/lightning/index.ts";
import { apiClient } from "../support/api.ts";
import { btcAccount, startLightningGateway } from "../support/lightning-gateway.ts";

const cluster = inject("lightningCluster");
const payerLnd = authenticatedLndGrpc(cluster.nodes.payer).lnd;
const sellerAccount = "acct_pay_l402_seller";
const requestsPerToken = 3;
const pricePerRequestMsat = 2_000n;
const asset = lightningAssetId("regtest");

let gateway: Awaited<ReturnType<typeof startLightningGateway>>;
let scheme: PaymentScheme;
let site: { url: string; served: () => number; close(): Promise<void> };

const offers = [{ rail: "lightning", price: { asset: assets.BTC, amount: pricePerRequestMsat } }];

/** The scheme in front of every path: 402 with its challenge, or the resource once its credential is paid. */
async function startSite(): Promise<typeof site> {
  let served = 0;
  const resource = (): PricedResource => ({
    tenantId: gateway.app.demo!.tenantId,
    paywallId: "pw_pay_l402",
    accountId: sellerAccount,
    service: "weather",
    description: "today's weather",
    mimeType: "application/json",
  });
  const handle = async (incoming: IncomingMessage, response: ServerResponse) => {
    const request: PaywallRequest = {
      method: incoming.method ?? "GET",
      url: `http://${incoming.headers.host}${incoming.url}`,
      headers: incoming.headers,
      rawHeaders: incoming.rawHeaders,
    };
    const challenge = async (body: Record<string, unknown>) => {
      const part = await scheme.challenge(resource(), offers, request);
      const lines = new Map<string, string[]>();
      for (const [name, value] of part.headers) lines.set(name, [...(lines.get(name) ?? []), value]);
      for (const [name, values] of lines) response.setHeader(name, values);
      response
        .writeHead(402, { "content-type": "application/json" })
        .end(JSON.stringify({ ...part.body, ...body }));
    };
    if (!scheme.carries(request)) return challenge({ error: "payment_required" });
    const verdict = await scheme.verify(resource(), offers, request);
    if (verdict.kind === "refused") return challenge({ refusal: verdict.refusal });
    served += 1;
    const completed = await verdict.complete({ served: true });
    if (!completed.settled) return challenge({ refusal: completed.refusal });
    response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ weather: "sunny" }));
  };
  const server = createServer((incoming, response) => {
    handle(incoming, response).catch((error: unknown) => {
      response.writeHead(500).end(String(error));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    served: () => served,
    close: () => new Promise<void>((done) => server.close(() => done())),
  };
}

beforeAll(async () => {
  gateway = await startLightningGateway(cluster, { EVM_EMBEDDED_RPC_PORT: "off" });
  await btcAccount(gateway.app, { id: sellerAccount });
  scheme = createL402Scheme({
    settlement: gateway.app.settlement,
    limits: { tokenRequestsMax: requestsPerToken },
  });
  site = await startSite();
});

afterAll(async () => {
  await site?.close();
  await gateway?.close();
});

/** A WebLN provider backed by the regtest payer node (what a browser wallet does, without the browser). */
function regtestWebln(): WebLnProvider & { payments: number } {
  const provider = {
    payments: 0,
    enabled: false,
    async enable() {
      provider.enabled = true;
    },
    async sendPayment(invoice: string) {
      if (!provider.enabled) throw new Error("enable() first");
      provider.payments += 1;
      const paid = await pay({ lnd: payerLnd, request: invoice });
      return { preimage: paid.secret };
    },
  };
  return provider;
}

/** What the scheme charges for one token (its invoice's amount), read from a challenge as the SDK reads it. */
async function tokenPriceMsat(path: string): Promise<bigint> {
  const response = await fetch(`${site.url}${path}`);
  expect(response.status).toBe(402);
  return parseL402Challenge(response.headers.get("www-authenticate"))!.amountMsat;
}

/** The seller's posted balance, in millisatoshi (BTC's minor unit). */
const sellerPosted = async () =>
  BigInt(
    (
      (await apiClient(gateway.app)("GET", `/v1/accounts/${sellerAccount}/balance`)).body.posted as string
    ).replace(".", ""),
  );

async function caught(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}

const rule = (amountMsatMax = 1_000_000n) => ({
  scheme: "l402" as const,
  network: "regtest" as const,
  amountMsatMax,
});

describe("wrapFetch paying Switchyard's L402 on regtest", () => {
  it("the LND payer pays once; the token serves the requests it bought, then is refused and paid afresh", async () => {
    const payments: PaymentRecord[] = [];
    const paidFetch = wrapFetch(fetch, {
      accept: [rule()],
      lightning: lndPayer({ lnd: payerLnd }),
      onPayment: (payment) => payments.push(payment),
    });
    const before = (await getChannelBalance({ lnd: payerLnd })).channel_balance;
    const servedBefore = site.served();
    for (let i = 0; i < requestsPerToken; i += 1) {
      const response = await paidFetch(`${site.url}/weather/today`);
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({ weather: "sunny" });
    }
    expect(site.served()).toBe(servedBefore + requestsPerToken);
    expect(payments).toHaveLength(1);
    expect(payments[0]).toMatchObject({ scheme: "l402", version: null, asset, status: 200 });
    const after = (await getChannelBalance({ lnd: payerLnd })).channel_balance;
    expect(BigInt(before - after) * 1000n).toBe(payments[0]!.amount - (payments[0]!.amount % 1000n));
    // The token is spent: the server refuses it, the SDK forgets it and pays a new challenge, once.
    const response = await paidFetch(`${site.url}/weather/today`);
    expect(response.status).toBe(200);
    expect(payments).toHaveLength(2);
  });

  it("a WebLN provider backed by the payer node pays; the budget of exactly the price pays once, then refuses", async () => {
    const price = await tokenPriceMsat("/weather/webln");
    const provider = regtestWebln();
    const budget = createBudget({ [asset]: price });
    const paidFetch = wrapFetch(fetch, { accept: [rule()], lightning: weblnPayer(provider), budget });
    expect((await paidFetch(`${site.url}/weather/webln`)).status).toBe(200);
    expect(provider.payments).toBe(1);
    expect(budget.remaining(asset)).toBe(0n);
    // The token of /weather/webln is reused (no payment); another path needs its own, which the budget refuses.
    expect((await paidFetch(`${site.url}/weather/webln`)).status).toBe(200);
    const refused = await caught(paidFetch(`${site.url}/weather/elsewhere`));
    expect(refused).toBeInstanceOf(BudgetExceededError);
    expect(refused).toMatchObject({ code: "budget_exceeded", asset, amount: price, remaining: 0n });
    expect(provider.payments).toBe(1);
  });

  it("concurrent first requests to one scope pay one invoice and share its token", async () => {
    const provider = regtestWebln();
    const paidFetch = wrapFetch(fetch, { accept: [rule()], lightning: weblnPayer(provider) });
    const responses = await Promise.all(
      Array.from({ length: requestsPerToken }, () => paidFetch(`${site.url}/weather/concurrent`)),
    );
    expect(responses.map((response) => response.status)).toEqual(Array(requestsPerToken).fill(200));
    expect(provider.payments).toBe(1);
  });

  it("a request whose 402 arrives after another request to its scope has paid uses that token: one payment", async () => {
    const provider = regtestWebln();
    let releaseLate: () => void = () => {};
    const late = new Promise<void>((resolve) => {
      releaseLate = resolve;
    });
    let sends = 0;
    // The second request's first answer (a 402) is held until the first request has paid and been served.
    const transport = async (request: Request) => {
      sends += 1;
      const held = sends === 2;
      const response = await fetch(request);
      if (held) await late;
      return response;
    };
    const paidFetch = wrapFetch(transport, { accept: [rule()], lightning: weblnPayer(provider) });
    const first = paidFetch(`${site.url}/weather/late-402`);
    const second = paidFetch(`${site.url}/weather/late-402`);
    expect((await first).status).toBe(200);
    releaseLate();
    expect((await second).status).toBe(200);
    expect(provider.payments).toBe(1);
  });

  it("concurrent requests to many scopes under one budget never spend more than it holds", async () => {
    const price = await tokenPriceMsat("/weather/budget-0");
    const provider = regtestWebln();
    const budget = createBudget({ [asset]: 2n * price });
    const paidFetch = wrapFetch(fetch, { accept: [rule()], lightning: weblnPayer(provider), budget });
    const outcomes = await Promise.allSettled(
      Array.from({ length: 5 }, (_, i) => paidFetch(`${site.url}/weather/budget-${i}`)),
    );
    expect(outcomes.filter((o) => o.status === "fulfilled" && o.value.status === 200)).toHaveLength(2);
    expect(
      outcomes.filter((o) => o.status === "rejected" && o.reason instanceof BudgetExceededError),
    ).toHaveLength(3);
    expect(provider.payments).toBe(2);
    expect(budget.remaining(asset)).toBe(0n);
  });

  it("an invoice over the per-request limit is not paid; the LND payer's fee ceiling is reserved with the amount", async () => {
    const price = await tokenPriceMsat("/weather/limit");
    const provider = regtestWebln();
    const refused = await caught(
      wrapFetch(fetch, { accept: [rule(price - 1n)], lightning: weblnPayer(provider) })(
        `${site.url}/weather/limit`,
      ),
    );
    expect(refused).toBeInstanceOf(AmountOverLimitError);
    expect(refused).toMatchObject({ code: "amount_over_limit", amount: price, amountMax: price - 1n });
    expect(provider.payments).toBe(0);
    // The budget holds the price but not the LND payer's fee ceiling on top: nothing is paid.
    const budget = createBudget({ [asset]: price });
    const lnd = wrapFetch(fetch, { accept: [rule()], lightning: lndPayer({ lnd: payerLnd }), budget });
    expect(await caught(lnd(`${site.url}/weather/limit`))).toBeInstanceOf(BudgetExceededError);
    expect(budget.remaining(asset)).toBe(price);
  });

  it("a request carrying its own L402 credential is sent as it is: its 402 comes back, nothing is paid", async () => {
    const provider = regtestWebln();
    const paidFetch = wrapFetch(fetch, { accept: [rule()], lightning: weblnPayer(provider) });
    const forged = await paidFetch(`${site.url}/weather/forged`, {
      headers: { authorization: `L402 AgEEbHNhdAJCAAA=:${"00".repeat(32)}` },
    });
    expect(forged.status).toBe(402);
    expect(provider.payments).toBe(0);
  });

  it("a credential the server refuses throws PaymentRefusedError with its code, and is not paid twice", async () => {
    // Something between the payer and the server changes the preimage of the paid retry: the server's check of
    // sha256(preimage) fails.
    const provider = regtestWebln();
    const tampering: typeof fetch = (input, init) => {
      const request = new Request(input, init);
      const credential = request.headers.get("authorization");
      if (credential !== null)
        request.headers.set("authorization", credential.replace(/:[0-9a-f]{64}$/, `:${"11".repeat(32)}`));
      return fetch(request);
    };
    const paidFetch = wrapFetch(tampering, { accept: [rule()], lightning: weblnPayer(provider) });
    const refused = await caught(paidFetch(`${site.url}/weather/refused`));
    expect(refused).toBeInstanceOf(PaymentRefusedError);
    expect(refused).toMatchObject({ code: "payment_refused", status: 402 });
    expect((refused as PaymentRefusedError).reason).toMatch(/^l402_/);
    expect(provider.payments).toBe(1);
  });

  it("a wallet that pays but hands back another preimage: outcome unknown, counted, no bad credential sent", async () => {
    const provider = regtestWebln();
    const lying: WebLnProvider = {
      enable: () => provider.enable!(),
      async sendPayment(invoice) {
        await provider.sendPayment(invoice);
        return { preimage: "11".repeat(32) };
      },
    };
    const sent: string[] = [];
    const recording: typeof fetch = (input, init) => {
      const request = new Request(input, init);
      sent.push(request.headers.get("authorization") ?? "");
      return fetch(request);
    };
    const paidFetch = wrapFetch(recording, { accept: [rule()], lightning: weblnPayer(lying) });
    const unknown = await caught(paidFetch(`${site.url}/weather/refused`));
    expect(unknown).toBeInstanceOf(PaymentOutcomeUnknownError);
    expect(provider.payments).toBe(1);
    expect(sent).toEqual([""]);
  });
});

// Alby's client (@getalby/lightning-tools, the most used L402 client on npm): its own challenge parser (token or
// macaroon, the first line's scheme kept) and credential, paid by a wallet backed by the regtest payer node.
describe("@getalby/lightning-tools' fetchWithL402 paying Switchyard's L402 on regtest", () => {
  it("pays the challenge once and is served; its credential serves the token's other requests without paying, then its 402 comes back", async () => {
    const paid: { invoice: string; feeMsat: bigint }[] = [];
    const wallet = {
      async payInvoice({ invoice }: { invoice: string }) {
        const payment = await pay({ lnd: payerLnd, request: invoice });
        paid.push({ invoice, feeMsat: BigInt(payment.fee_mtokens) });
        return { preimage: payment.secret, fees_paid: Number(payment.fee_mtokens) };
      },
    };
    const url = `${site.url}/weather/alby`;
    const priceMsat = await tokenPriceMsat("/weather/alby");
    const servedBefore = site.served();
    const sellerBefore = await sellerPosted();

    const first = await fetchWithL402(url, {}, { wallet });
    expect(first.status).toBe(200);
    expect(await first.json()).toEqual({ weather: "sunny" });
    expect(paid).toHaveLength(1);
    expect(first.payment).toMatchObject({ paid: true, amountSat: Number(priceMsat / 1000n) });
    expect(first.payment!.preimage).toMatch(/^[0-9a-f]{64}$/);
    const credentials = first.payment!.credentials;
    expect(credentials.header.toLowerCase()).toBe("authorization");
    expect(credentials.value).toMatch(/^(LSAT|L402) [A-Za-z0-9+/=_-]+:[0-9a-f]{64}$/);

    // The token bought requestsPerToken requests: the credential serves the rest, nothing paid again.
    for (let i = 1; i < requestsPerToken; i += 1) {
      const again = await fetchWithL402(url, {}, { wallet, credentials });
      expect([i, again.status]).toEqual([i, 200]);
    }
    // Spent: the server's 402 comes back as it is (the client never pays when handed a credential).
    const spent = await fetchWithL402(url, {}, { wallet, credentials });
    expect(spent.status).toBe(402);
    expect(paid).toHaveLength(1);
    expect(site.served()).toBe(servedBefore + requestsPerToken);
    // The seller is credited the token's price once, the preimage the evidence.
    await waitFor(
      "the seller's credit",
      async () => ((await sellerPosted()) === sellerBefore ? undefined : true),
      {
        timeoutMs: 15_000,
      },
    );
    expect((await sellerPosted()) - sellerBefore).toBe(priceMsat);
  });
});
