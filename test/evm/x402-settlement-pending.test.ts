// A facilitator settle whose transaction is sent and not mined within the settler's wait: Switchyard answers x402's
// `settlement_pending` with the transaction sent, as the reference facilitator does, and the official resource server
// (@x402/core's x402ResourceServer over HTTPFacilitatorClient) settles the same payment once more at once
// (settleWithPendingRetry), answered from the gateway's row: pending (unexpected_settle_error) while the transaction is
// not mined, settled with it once it is. Before, the first answer was `unexpected_settle_error` with no transaction,
// which the official server does not retry.
import { HTTPFacilitatorClient, x402ResourceServer } from "@x402/core/server";
import { ExactEvmScheme } from "@x402/evm/exact/server";
import { getAddress, type Hex } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testUsdAbi } from "../../adapters/evm/index.ts";
import { type Gateway, officialX402Client, startGateway } from "./support.ts";

let gw: Gateway;
let gatewayUrl: string;

beforeAll(async () => {
  // The settler waits 300 ms for a receipt: with the chain not mining, the settlement is in flight when it answers.
  gw = await startGateway({}, { x402ReceiptTimeoutMs: 300 });
  gatewayUrl = await gw.app.server.listen({ port: 0, host: "127.0.0.1" });
});
afterAll(async () => {
  await gw?.setAutomine(true);
  await gw?.app.close();
});

describe("a facilitator settle whose transaction is not mined within the settler's wait", () => {
  it("is answered settlement_pending with it, settled once more at once by the official resource server, then settled once mined", async () => {
    const merchant = await gw.merchantAccount("x402 settlement pending merchant");
    const network = `eip155:${gw.chain.chain.id}` as const;
    const token = getAddress(gw.chain.contracts.testUsd);
    const read = (functionName: "name" | "version") =>
      gw.chain.publicClient.readContract({ address: token, abi: testUsdAbi, functionName });
    const requirements = {
      scheme: "exact",
      network,
      amount: "10000",
      asset: token,
      payTo: getAddress(gw.chain.walletClient.account.address),
      maxTimeoutSeconds: 300,
      extra: { name: await read("name"), version: await read("version") },
    };
    const auth = { Authorization: `Bearer ${gw.key}`, "Switchyard-Account": merchant.id };
    const server = new x402ResourceServer(
      new HTTPFacilitatorClient({
        url: `${gatewayUrl}/v1/x402`,
        createAuthHeaders: async () => ({ verify: auth, settle: auth, supported: auth }),
      }),
    ).register(network, new ExactEvmScheme());
    await server.initialize();
    const payload = await officialX402Client(gw).createPaymentPayload({
      x402Version: 2,
      resource: { url: "http://127.0.0.1/report", description: "a report", mimeType: "application/json" },
      accepts: [requirements],
    });
    // The answers to the settle calls the official client makes, read on their way back.
    const settles: Record<string, unknown>[] = [];
    const fetched = globalThis.fetch;
    globalThis.fetch = (async (input: Parameters<typeof fetch>[0], init?: RequestInit) => {
      const url = input instanceof Request ? input.url : String(input);
      const response = await fetched(input, init);
      if (url.endsWith("/v1/x402/settle"))
        settles.push((await response.clone().json()) as Record<string, unknown>);
      return response;
    }) as typeof fetch;
    try {
      await gw.setAutomine(false);
      let pending: Awaited<ReturnType<typeof server.settlePayment>>;
      try {
        pending = await server.settlePayment(payload, requirements);
      } finally {
        await gw.chain.publicClient.request({ method: "evm_mine" as never, params: [] as never });
        await gw.setAutomine(true);
      }
      // Answered settlement_pending with the transaction sent, then settled once more at once: its transaction still
      // not mined, pending. Before: one settle, answered unexpected_settle_error with no transaction.
      expect(settles).toHaveLength(2);
      expect(settles[0]).toMatchObject({
        success: false,
        errorReason: "settlement_pending",
        transaction: expect.stringMatching(/^0x[0-9a-f]{64}$/),
        network,
      });
      const sent = settles[0]!.transaction as Hex;
      expect(pending).toMatchObject({
        success: false,
        errorReason: "unexpected_settle_error",
        errorMessage: expect.stringContaining(`transaction ${sent} has not spent this authorization yet`),
      });
      const receipt = await gw.chain.publicClient.waitForTransactionReceipt({ hash: sent });
      expect(receipt.status).toBe("success");
      // Mined: the same payment settled again is answered settled, with that transaction, at the first call.
      const settled = await server.settlePayment(payload, requirements);
      expect(settled).toMatchObject({ success: true, transaction: sent, network, amount: "10000" });
      expect(settles).toHaveLength(3);
    } finally {
      globalThis.fetch = fetched;
    }
  });
});
