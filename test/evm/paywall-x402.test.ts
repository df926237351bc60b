import { decodePaymentResponseHeader, wrapFetchWithPayment, x402HTTPClient } from "@x402/fetch";
import Fastify, { type FastifyInstance } from "fastify";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testUsdAbi } from "../../adapters/evm/index.ts";
import { switchyardPaywall } from "../../gateway/paywall/index.ts";
import { ledgerInvariantProblems } from "../support/ledger-invariants.ts";
import { type Gateway, officialX402Client, startGateway } from "./support.ts";

describe("x402 v2 (@x402/fetch) pays the paywall", () => {
  let gw: Gateway;
  let shop: FastifyInstance;
  let base: string;
  /** How many requests /report and /held have served, each its own: a test counts only its own route's. */
  const served = { report: 0, held: 0 };
  let splitPayeeAccount: string;
  /**
   * Each paywall's seller, by resource: a merchant account of its own. The watcher runs on, so a payment another
   * test leaves uncredited (the last one of the gate's, say) is credited during the next test: on one shared
   * merchant it would be counted as that test's.
   */
  const sellers = new Map<string, string>();
  /** While set, the next request into GET /held says it entered, then waits for `hold.released` before serving. */
  let hold: { entered: () => void; released: Promise<void> } | null = null;
  /** Every request into GET /gate counts itself in, then waits for `gate.opened`. */
  const gate = { entered: 0, served: 0, open: () => {}, opened: Promise.resolve() };

  beforeAll(async () => {
    gw = await startGateway();
    /** A paywall of the demo tenant at 0.01 USD by x402 on the EVM rail, crediting a seller of its own. */
    const paywall = async (resource: string, description: string, extra: Record<string, unknown> = {}) => {
      const seller = await gw.merchantAccount(`seller of ${resource}`);
      sellers.set(resource, seller.id);
      const created = await gw.call("POST", "/v1/paywalls", {
        resource,
        description,
        price: { amount: "0.01", asset: "USD" },
        offers: [{ scheme: "x402", rail: "evm" }],
        accounts: [seller.id],
        ...extra,
      });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
    };
    await paywall("/report", "a paid report");
    const account = await gw.call("POST", "/v1/accounts", {
      asset: "USDC",
      kind: "customer",
      name: "partner",
    });
    expect(account.status, JSON.stringify(account.body)).toBe(201);
    splitPayeeAccount = account.body.id;
    const payee = await gw.call("POST", "/v1/payees", {
      name: "Partner",
      methods: [{ type: "account", account: splitPayeeAccount }],
    });
    expect(payee.status, JSON.stringify(payee.body)).toBe(201);
    await paywall("/split-report", "a paid report, a quarter to the partner", {
      split: [{ payee: payee.body.id, basis_points: 2_500 }],
    });
    await paywall("/held", "a paid report served slowly");
    await paywall("/gate", "a paid report served when the gate opens");
    shop = Fastify();
    await shop.register(switchyardPaywall, { paywall: gw.app.paywalls.forTenant(gw.app.demo!.tenantId) });
    shop.get("/report", async () => {
      served.report += 1;
      return { report: "the goods" };
    });
    shop.get("/split-report", async () => ({ report: "the shared goods" }));
    shop.get("/held", async () => {
      // Only the first request in is held: a copy let through is served at once, and the test sees it.
      const held = hold;
      hold = null;
      held?.entered();
      await held?.released;
      served.held += 1;
      return { report: "the held goods" };
    });
    shop.get("/gate", async () => {
      gate.entered += 1;
      await gate.opened;
      gate.served += 1;
      return { report: "the gated goods" };
    });
    base = await shop.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => {
    await shop?.close();
    await gw?.app.close();
  });

  const postedOf = async (id: string) =>
    BigInt((await gw.call("GET", `/v1/accounts/${id}/balance`)).body.posted.replace(".", ""));
  const sellerOf = (resource: string) => sellers.get(resource)!;
  const sellerPosted = (resource: string) => postedOf(sellerOf(resource));

  const payingClient = (privateKey?: `0x${string}`) => officialX402Client(gw, privateKey);

  it("is served once and credits the seller once; the payment replayed is refused", async () => {
    const client = payingClient();
    const sent: Headers[] = [];
    const recording: typeof fetch = async (input, init) => {
      sent.push(new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined)));
      return fetch(input, init);
    };
    const before = await sellerPosted("/report");

    const paidFetch = wrapFetchWithPayment(recording, client);
    const response = await paidFetch(`${base}/report`);
    expect(response.status, await response.clone().text()).toBe(200);
    expect(await response.json()).toEqual({ report: "the goods" });
    expect(served.report).toBe(1);
    const receipt = decodePaymentResponseHeader(response.headers.get("payment-response")!);
    expect(receipt).toMatchObject({ success: true, network: `eip155:${gw.chain.chain.id}` });
    expect(receipt.transaction).toMatch(/^0x[0-9a-f]{64}$/);

    // 0.01 USD at the peg is 10 000 µUSDC, credited once (the settlement's booking may follow the receipt).
    const deadline = Date.now() + 15_000;
    while ((await sellerPosted("/report")) === before && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    expect((await sellerPosted("/report")) - before).toBe(10_000n);

    const signature = sent.at(-1)!.get("payment-signature");
    expect(signature).not.toBeNull();
    const replay = await fetch(`${base}/report`, { headers: { "PAYMENT-SIGNATURE": signature! } });
    expect(replay.status).toBe(402);
    const refusal = ((await replay.json()) as { error: string }).error;
    expect(refusal).toMatch(/^[a-z0-9_]+$/);
    // x402 v2 puts the refusal in the PaymentRequired object: the same stable code as the body's.
    const required = JSON.parse(Buffer.from(replay.headers.get("payment-required")!, "base64").toString());
    expect(required).toMatchObject({ x402Version: 2, error: refusal });
    expect(required.accepts.length).toBeGreaterThan(0);
    expect(served.report).toBe(1);
    await new Promise((r) => setTimeout(r, 500));
    expect((await sellerPosted("/report")) - before).toBe(10_000n);
  });

  it("with a 25% split: the seller gets 75% and the payee 25%, exactly, both named after the invoice", async () => {
    const merchant = sellerOf("/split-report");
    const before = { seller: await postedOf(merchant), payee: await postedOf(splitPayeeAccount) };
    const response = await wrapFetchWithPayment(fetch, payingClient())(`${base}/split-report`);
    expect(response.status, await response.clone().text()).toBe(200);
    expect(await response.json()).toEqual({ report: "the shared goods" });
    // 0.01 USD is 10 000 µUSDC: 2 500 to the payee, 7 500 stay with the seller (the booking may follow the receipt).
    const deadline = Date.now() + 15_000;
    while ((await postedOf(splitPayeeAccount)) === before.payee && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    expect((await postedOf(merchant)) - before.seller).toBe(7_500n);
    expect((await postedOf(splitPayeeAccount)) - before.payee).toBe(2_500n);
    const transactions = await gw.call("GET", `/v1/accounts/${splitPayeeAccount}/transactions`);
    expect(transactions.status).toBe(200);
    expect(transactions.body.data).toEqual([
      expect.objectContaining({
        kind: "invoices.share",
        amount: "0.002500",
        invoice: expect.stringMatching(/^inv_/),
        counterparty: expect.objectContaining({ account: merchant }),
      }),
    ]);
    expect(await ledgerInvariantProblems(gw.app.db)).toEqual([]);
  });

  it("refuses the authorization of a request still being served, sent again at once or after: served once", async () => {
    // The paywall reads no "already claimed?" before its claim: the claim itself refuses the copies.
    const client = new x402HTTPClient(payingClient());
    const challenge = await fetch(`${base}/held`);
    expect(challenge.status).toBe(402);
    const required = client.getPaymentRequiredResponse(
      (name) => challenge.headers.get(name),
      await challenge.json(),
    );
    const header = client.encodePaymentSignatureHeader(await client.createPaymentPayload(required));
    const before = { served: served.held, posted: await sellerPosted("/held") };
    let release = () => {};
    let entered = () => {};
    const inHandler = new Promise<void>((resolve) => {
      entered = resolve;
    });
    hold = {
      entered,
      released: new Promise((resolve) => {
        release = resolve;
      }),
    };
    const first = fetch(`${base}/held`, { headers: header });
    // Past verification, its claim made (or answered already, which fails below): the copies, at once, find the
    // authorization taken.
    await Promise.race([inHandler, first]);
    let codes: (string | undefined)[];
    try {
      const copies = await Promise.all([1, 2, 3].map(() => fetch(`${base}/held`, { headers: header })));
      codes = await Promise.all(copies.map(async (c) => ((await c.json()) as { error?: string }).error));
    } finally {
      release();
      hold = null;
    }
    const answer = await first;
    expect(answer.status, await answer.clone().text()).toBe(200);
    expect(codes).toEqual(Array(3).fill("invalid_exact_evm_nonce_already_used"));
    // Settled by now (the answer carries the receipt): the token has used the nonce.
    const after = await fetch(`${base}/held`, { headers: header });
    expect(after.status).toBe(402);
    expect(((await after.json()) as { error: string }).error).toBe("invalid_exact_evm_nonce_already_used");
    expect(served.held - before.served).toBe(1);
    const settled = Date.now() + 15_000;
    while ((await sellerPosted("/held")) === before.posted && Date.now() < settled)
      await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 300));
    expect((await sellerPosted("/held")) - before.posted).toBe(10_000n);
  });

  it("runs the route only for the payments the payer's balance covers together: the others are refused first", async () => {
    // A payer holding two prices (0.01 USD is 10 000 units) signs four authorizations, each of which the chain
    // alone would take, and sends them at once while the route is slow: two are served and settled, two refused
    // before their route runs (each simulated against the balance alone, all four would have run it).
    const key = generatePrivateKey();
    const payer = privateKeyToAccount(key);
    const mint = async (amount: bigint) =>
      await gw.send(gw.chain.accounts[0]!, {
        address: gw.chain.contracts.testUsd,
        abi: testUsdAbi,
        functionName: "mint",
        args: [payer.address, amount],
      });
    await mint(20_000n);
    const client = new x402HTTPClient(payingClient(key));
    const challenge = await fetch(`${base}/gate`);
    expect(challenge.status).toBe(402);
    const required = client.getPaymentRequiredResponse(
      (name) => challenge.headers.get(name),
      await challenge.json(),
    );
    const headers = await Promise.all(
      [1, 2, 3, 4].map(async () =>
        client.encodePaymentSignatureHeader(await client.createPaymentPayload(required)),
      ),
    );
    const before = await sellerPosted("/gate");
    gate.entered = 0;
    gate.served = 0;
    gate.opened = new Promise((resolve) => {
      gate.open = resolve;
    });
    const answered: { index: number; status: number; body: { error?: string } }[] = [];
    const requests = headers.map(async (header, index) => {
      const response = await fetch(`${base}/gate`, { headers: header });
      const answer = { index, status: response.status, body: (await response.json()) as { error?: string } };
      answered.push(answer);
      return answer;
    });
    try {
      // Each request either reaches the route or is answered; wait until all four have done one or the other.
      const deadline = Date.now() + 20_000;
      while (gate.entered + answered.length < 4 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      expect(gate.entered).toBe(2);
      expect(answered).toEqual(
        Array(2).fill({
          index: expect.any(Number),
          status: 402,
          body: expect.objectContaining({ error: "insufficient_funds" }),
        }),
      );
    } finally {
      gate.open();
    }
    const answers = await Promise.all(requests);
    expect(answers.filter((a) => a.status === 200)).toHaveLength(2);
    expect(gate.served).toBe(2);
    const deadline = Date.now() + 15_000;
    while ((await sellerPosted("/gate")) - before < 20_000n && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    expect((await sellerPosted("/gate")) - before).toBe(20_000n);

    // The served payments' holds went with their completion, and a refused payment's claim was given back: funded
    // again, the payer is served at once with an authorization refused above.
    await mint(10_000n);
    gate.opened = Promise.resolve();
    const refusedOne = answers.find((a) => a.status === 402)!;
    const again = await fetch(`${base}/gate`, { headers: headers[refusedOne.index]! });
    expect(again.status, await again.clone().text()).toBe(200);
    expect(gate.served).toBe(3);
  });
});
