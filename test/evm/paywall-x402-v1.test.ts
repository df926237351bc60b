// The official x402 v1 client pays Switchyard's paywall: `x402-fetch` 1.x knows only named public networks, so the
// gateway runs one more embedded Hardhat chain under Base Sepolia's chain id (EVM_CHAINS entry without rpc_url,
// chain_id 84532: v1 name "base-sepolia"). A tenant paywall offers x402 on that rail; a shop route behind
// switchyardPaywall is paid by wrapFetchWithPayment with a viem wallet client for base-sepolia (it signs the
// EIP-3009 authorization locally; the RPC is the embedded chain's). The resource is served once, the seller's
// account credited once with the transaction's hash as evidence, and the same X-PAYMENT sent again is a 402.
import Fastify, { type FastifyInstance } from "fastify";
import { createWalletClient, custom } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { baseSepolia } from "viem/chains";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeXPaymentResponse, wrapFetchWithPayment } from "x402-fetch";
import { switchyardPaywall } from "../../gateway/paywall/index.ts";
import { ledgerInvariantProblems } from "../support/ledger-invariants.ts";
import { type Gateway, startGateway } from "./support.ts";

const rail = "evm-base";
const baseSepoliaChainId = 84_532;
const bookingWaitMs = 15_000;

describe("x402 v1 (x402-fetch) pays the paywall on a Hardhat chain under Base Sepolia's id", () => {
  let gw: Gateway;
  let shop: FastifyInstance;
  let base: string;
  let served = 0;

  beforeAll(async () => {
    gw = await startGateway({ EVM_CHAINS: JSON.stringify([{ id: rail, chain_id: baseSepoliaChainId }]) });
    const created = await gw.call("POST", "/v1/paywalls", {
      resource: "/report",
      description: "a paid report",
      price: { amount: "0.01", asset: "USD" },
      offers: [{ scheme: "x402", rail }],
      accounts: [gw.app.demo!.merchant.id],
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    shop = Fastify();
    await shop.register(switchyardPaywall, { paywall: gw.app.paywalls.forTenant(gw.app.demo!.tenantId) });
    shop.get("/report", async () => {
      served += 1;
      return { report: "the goods" };
    });
    base = await shop.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => {
    await shop?.close();
    await gw?.app.close();
  });

  const merchantPosted = async () =>
    BigInt(
      (await gw.call("GET", `/v1/accounts/${gw.app.demo!.merchant.id}/balance`)).body.posted.replace(".", ""),
    );

  it("is served once, credits the seller once with the transaction as evidence; the X-PAYMENT replayed is a 402", async () => {
    const demoChain = gw.app.demo!.chains.find((chain) => chain.rail === rail);
    expect(demoChain?.payer).toBeTruthy();
    // The client signs locally and reads nothing from the chain; its transport is still the embedded chain's.
    const embedded = gw.app.chains.get(rail)!;
    expect(embedded.chain.id).toBe(baseSepoliaChainId);
    const wallet = createWalletClient({
      account: privateKeyToAccount(demoChain!.payer!.privateKey),
      chain: baseSepolia,
      transport: custom(embedded.publicClient),
    });
    const sent: Headers[] = [];
    const recording: typeof fetch = async (input, init) => {
      sent.push(new Headers(init?.headers));
      return fetch(input, init);
    };
    const before = await merchantPosted();

    const challenge = await fetch(`${base}/report`);
    expect(challenge.status).toBe(402);
    const offered = (await challenge.json()) as { x402Version: number; accepts: { network: string }[] };
    expect(offered.x402Version).toBe(1);
    expect(offered.accepts.map((accept) => accept.network)).toEqual(["base-sepolia"]);

    const response = await wrapFetchWithPayment(recording, wallet as never)(`${base}/report`);
    expect(response.status, await response.clone().text()).toBe(200);
    expect(await response.json()).toEqual({ report: "the goods" });
    expect(served).toBe(1);
    const receipt = decodeXPaymentResponse(response.headers.get("x-payment-response")!);
    expect(receipt).toMatchObject({ success: true, network: "base-sepolia" });
    expect(receipt.transaction).toMatch(/^0x[0-9a-f]{64}$/);

    // 0.01 USD at the peg is 10 000 µUSDC, credited once (the booking may follow the receipt).
    const deadline = Date.now() + bookingWaitMs;
    while ((await merchantPosted()) === before && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    expect((await merchantPosted()) - before).toBe(10_000n);
    const transactions = await gw.call("GET", `/v1/accounts/${gw.app.demo!.merchant.id}/transactions`);
    const credits = transactions.body.data.filter(
      (entry: { kind: string }) => entry.kind === "invoices.received",
    );
    expect(credits).toEqual([
      expect.objectContaining({
        amount: "0.010000",
        direction: "credit",
        counterparty: expect.objectContaining({ rail }),
        evidence: expect.objectContaining({
          reference: `${receipt.transaction}:0`,
          detail: expect.objectContaining({ payer: receipt.payer, chainId: String(baseSepoliaChainId) }),
        }),
      }),
    ]);

    const payment = sent.at(-1)!.get("x-payment");
    expect(payment).not.toBeNull();
    const replay = await fetch(`${base}/report`, { headers: { "X-PAYMENT": payment! } });
    expect(replay.status).toBe(402);
    const refused = (await replay.json()) as { x402Version: number; error: string };
    expect(refused.x402Version).toBe(1);
    expect(refused.error).toMatch(/nonce|used|settled/);
    expect(served).toBe(1);
    await new Promise((r) => setTimeout(r, 500));
    expect((await merchantPosted()) - before).toBe(10_000n);
    expect(await ledgerInvariantProblems(gw.app.db)).toEqual([]);
  });
});
