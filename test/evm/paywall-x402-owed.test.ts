// An x402 payment whose settlement is still in flight when the paywall must answer (its transaction not mined within
// the settler's wait): the payer hears 402 with the outcome unknown, the route's answer is not sent. Once the
// transaction is mined, the same payment sent again is served — once — with the receipt of that transaction, and
// nothing more is settled or credited. Before, the same payment was refused as a nonce already used, for good: the
// payer was charged and the merchant credited, and the payer never got what it paid for.
import { registerExactEvmScheme } from "@x402/evm/exact/client";
import { decodePaymentResponseHeader, x402Client, x402HTTPClient } from "@x402/fetch";
import Fastify, { type FastifyInstance } from "fastify";
import { privateKeyToAccount } from "viem/accounts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PaymentRefusedError, viemPayer, wrapFetch } from "../../client/pay/index.ts";
import { switchyardPaywall } from "../../gateway/paywall/index.ts";
import { type Gateway, startGateway } from "./support.ts";

describe("an x402 payment settled after the paywall answered", () => {
  let gw: Gateway;
  let shop: FastifyInstance;
  let base: string;
  let served = 0;

  beforeAll(async () => {
    // A settler that waits 300 ms for its receipt: with the chain not mining, the settlement is in flight.
    gw = await startGateway({}, { x402ReceiptTimeoutMs: 300 });
    for (const resource of ["/owed", "/elsewhere"]) {
      const created = await gw.call("POST", "/v1/paywalls", {
        resource,
        description: "a report paid while the chain was slow",
        price: { amount: "0.01", asset: "USD" },
        offers: [{ scheme: "x402", rail: "evm" }],
        accounts: [gw.app.demo!.merchant.id],
      });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
    }
    shop = Fastify();
    await shop.register(switchyardPaywall, { paywall: gw.app.paywalls.forTenant(gw.app.demo!.tenantId) });
    shop.get("/owed", async () => {
      served += 1;
      return { report: "the goods" };
    });
    shop.get("/elsewhere", async () => {
      served += 1;
      return { report: "other goods at the same price" };
    });
    base = await shop.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => {
    await setAutomine(true);
    await shop?.close();
    await gw?.app.close();
  });

  const setAutomine = (on: boolean) =>
    gw?.chain.publicClient.request({ method: "evm_setAutomine" as never, params: [on] as never });
  /** The merchant's posted balance in USDC minor units. */
  const merchantPosted = async () =>
    BigInt(
      (
        (await gw.call("GET", `/v1/accounts/${gw.app.demo!.merchant.id}/balance`)).body.posted as string
      ).replace(".", ""),
    );

  /** The demo payer's signed payment of the paywall at `path` (a fresh authorization each time). */
  async function paymentFor(path: string) {
    const payer = gw.app.demo!.chains[0]!.payer!;
    const client = new x402HTTPClient(
      registerExactEvmScheme(
        x402Client.fromConfig({
          schemes: [],
          spendControls: {
            allowedAssets: [
              {
                network: `eip155:${gw.chain.chain.id}`,
                asset: gw.chain.contracts.testUsd,
                maxAmountPerPayment: "100000",
              },
            ],
          },
        }),
        { signer: privateKeyToAccount(payer.privateKey) },
      ),
    );
    const challenge = await fetch(`${base}${path}`);
    expect(challenge.status).toBe(402);
    const required = client.getPaymentRequiredResponse(
      (name) => challenge.headers.get(name),
      await challenge.json(),
    );
    return {
      payer,
      header: client.encodePaymentSignatureHeader(await client.createPaymentPayload(required)),
    };
  }

  it("serves the same payment sent again once it is mined, once, and settles nothing more", async () => {
    const { payer, header } = await paymentFor("/owed");
    const before = await merchantPosted();

    await setAutomine(false);
    let pending: Response;
    try {
      pending = await fetch(`${base}/owed`, { headers: header });
      // Not mined in time: 402, its outcome unknown, and what to do about it.
      expect(pending.status).toBe(402);
      const body = (await pending.json()) as { error: string; message: string };
      expect(body.error).toBe("unexpected_settle_error");
      expect(body.message).toMatch(/send the same payment again once it is mined/);
      // Sent again before it is mined: still not served.
      expect((await fetch(`${base}/owed`, { headers: header })).status).toBe(402);
    } finally {
      await gw.chain.publicClient.request({ method: "evm_mine" as never, params: [] as never });
      await setAutomine(true);
    }
    const servedBefore = served;
    // Owed where it was paid, not at another paywall of the same account and price.
    const elsewhere = await fetch(`${base}/elsewhere`, { headers: header });
    expect(elsewhere.status).toBe(402);
    expect(served).toBe(servedBefore);
    const again = await fetch(`${base}/owed`, { headers: header });
    expect(again.status, await again.clone().text()).toBe(200);
    expect(await again.json()).toEqual({ report: "the goods" });
    expect(served).toBe(servedBefore + 1);
    const receipt = decodePaymentResponseHeader(again.headers.get("payment-response")!);
    expect(receipt).toMatchObject({ success: true, network: `eip155:${gw.chain.chain.id}` });
    const [row] = await gw.app.db.query<{ tx_hash: string }>(
      "SELECT tx_hash FROM x402_authorizations WHERE payer = $1 ORDER BY created_at DESC LIMIT 1",
      [payer.address.toLowerCase()],
    );
    expect(receipt.transaction).toBe(row!.tx_hash);
    // Once: the third time is refused as used, and the merchant was credited the price once.
    const third = await fetch(`${base}/owed`, { headers: header });
    expect(third.status).toBe(402);
    expect(served).toBe(servedBefore + 1);
    await expect.poll(async () => (await merchantPosted()) - before, { timeout: 15_000 }).toBe(10_000n);
  });

  it("serves it when a fee bump's replacement of the transaction sent was mined instead, naming that one", async () => {
    const { payer, header } = await paymentFor("/owed");
    await setAutomine(false);
    let replacement: `0x${string}`;
    try {
      expect((await fetch(`${base}/owed`, { headers: header })).status).toBe(402);
      const [row] = await gw.app.db.query<{ tx_hash: `0x${string}` }>(
        "SELECT tx_hash FROM x402_authorizations WHERE payer = $1 ORDER BY created_at DESC LIMIT 1",
        [payer.address.toLowerCase()],
      );
      const sent = await gw.chain.publicClient.getTransaction({ hash: row!.tx_hash });
      replacement = await gw.chain.walletClient.sendTransaction({
        account: gw.chain.walletClient.account,
        chain: gw.chain.walletClient.chain,
        to: sent.to!,
        data: sent.input,
        nonce: sent.nonce,
        gas: sent.gas,
        maxFeePerGas: sent.maxFeePerGas! * 2n,
        maxPriorityFeePerGas: sent.maxPriorityFeePerGas! * 2n,
      });
    } finally {
      await gw.chain.publicClient.request({ method: "evm_mine" as never, params: [] as never });
      await setAutomine(true);
    }
    const again = await fetch(`${base}/owed`, { headers: header });
    expect(again.status, await again.clone().text()).toBe(200);
    expect(decodePaymentResponseHeader(again.headers.get("payment-response")!).transaction).toBe(replacement);
  });

  it("the paying SDK's refusal carries the payment's header: sent again once mined, it is served and pays nothing more", async () => {
    const payer = gw.app.demo!.chains[0]!.payer!;
    const paidFetch = wrapFetch(fetch, {
      accept: [
        {
          scheme: "x402",
          network: `eip155:${gw.chain.chain.id}`,
          asset: gw.chain.contracts.testUsd,
          amountMax: 10_000n,
        },
      ],
      evm: viemPayer(privateKeyToAccount(payer.privateKey)),
    });
    const before = await merchantPosted();
    await setAutomine(false);
    let refused: unknown;
    try {
      refused = await paidFetch(`${base}/owed`).catch((error: unknown) => error);
    } finally {
      await gw.chain.publicClient.request({ method: "evm_mine" as never, params: [] as never });
      await setAutomine(true);
    }
    expect(refused).toBeInstanceOf(PaymentRefusedError);
    const { reason, payment } = refused as PaymentRefusedError;
    expect(reason).toBe("unexpected_settle_error");
    expect(payment?.name.toLowerCase()).toBe("payment-signature");
    expect((refused as Error).message).not.toContain(payment!.value);
    // A request that carries a payment is sent as it is: served, and nothing is signed or paid again.
    const again = await paidFetch(`${base}/owed`, { headers: { [payment!.name]: payment!.value } });
    expect(again.status, await again.clone().text()).toBe(200);
    await expect.poll(async () => (await merchantPosted()) - before, { timeout: 15_000 }).toBe(10_000n);
  });
});
