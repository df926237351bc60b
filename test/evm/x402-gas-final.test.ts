// On a rail that waits for 3 confirmations, an x402 settlement's gas is booked once its transaction is final, by the
// send-gas pass, not by the settler from its first receipt: a reorg may mine the transaction again at another price,
// or drop it, and the gas booked from one block's receipt would then stay wrong (the pass failing on its terms every
// minute after). With one confirmation the settler books it at once, as before.
import { x402HTTPClient } from "@x402/fetch";
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assets, divCeil } from "../../core/index.ts";
import { switchyardPaywall } from "../../gateway/paywall/index.ts";
import { sendGasPassOnce } from "../../gateway/settlement/index.ts";
import { type Gateway, officialX402Client, startGateway } from "./support.ts";

describe("an x402 settlement's gas on a rail of 3 confirmations", () => {
  let gw: Gateway;
  let shop: FastifyInstance;
  let base: string;

  beforeAll(async () => {
    gw = await startGateway({ EVM_CONFIRMATIONS: "3", EVM_EMBEDDED_BLOCK_INTERVAL_MS: "0" });
    await gw.x402Paywall("/report");
    shop = Fastify();
    await shop.register(switchyardPaywall, { paywall: gw.app.paywalls.forTenant(gw.app.demo!.tenantId) });
    shop.get("/report", async () => ({ report: "the goods" }));
    base = await shop.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => {
    await shop?.close();
    await gw?.app.close();
  });

  /** The gwei the rail's ETH fee account has paid out (every gas booking debits it). */
  const gasBooked = async () => {
    const fees = await gw.app.settlement.accounts.railAccount({
      kind: "fee",
      rail: "evm",
      asset: assets.ETH,
    });
    return fees === null ? 0n : (await gw.ledgerAccount(fees.ledgerAccountId)).debitsPosted;
  };

  it("is booked by the send-gas pass once final, once", async () => {
    const client = new x402HTTPClient(officialX402Client(gw));
    const challenge = await fetch(`${base}/report`);
    const required = client.getPaymentRequiredResponse(
      (name) => challenge.headers.get(name),
      await challenge.json(),
    );
    const header = client.encodePaymentSignatureHeader(await client.createPaymentPayload(required));
    const before = await gasBooked();
    const paid = await fetch(`${base}/report`, { headers: header });
    expect(paid.status, await paid.clone().text()).toBe(200);
    const { transaction } = client.getPaymentSettleResponse((name) => paid.headers.get(name));
    const receipt = await gw.chain.publicClient.getTransactionReceipt({ hash: transaction as `0x${string}` });
    // Before: booked here, from the receipt of one block.
    expect(await gasBooked()).toBe(before);
    await gw.chain.networkHelpers.mine(3);
    await sendGasPassOnce(gw.app.settlement, gw.rail, gw.chain.chain.id);
    const gwei = divCeil(receipt.gasUsed * receipt.effectiveGasPrice, 1_000_000_000n);
    expect((await gasBooked()) - before).toBe(gwei);
    // Once: the next pass books nothing more.
    await sendGasPassOnce(gw.app.settlement, gw.rail, gw.chain.chain.id);
    expect((await gasBooked()) - before).toBe(gwei);
  });
});
