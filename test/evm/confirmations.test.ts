// The embedded chain with EVM_CONFIRMATIONS=2: a payout waits for a second block, which nothing but the chain's
// own interval mining (EVM_EMBEDDED_BLOCK_INTERVAL_MS, on by default when confirmations > 1) will make.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Gateway, startGateway } from "./support.ts";

let gw: Gateway;
let splitId: `0x${string}`;

beforeAll(async () => {
  gw = await startGateway({ EVM_CONFIRMATIONS: "2", EVM_EMBEDDED_BLOCK_INTERVAL_MS: "200" });
  const [a, b] = gw.chain.accounts.slice(2, 4);
  ({ splitId } = await gw.createSplit([a!.address, b!.address], [5000, 5000]));
});
afterAll(async () => {
  await gw?.app.close();
});

describe("confirmations on the embedded chain", () => {
  it("a payout succeeds once an interval block has confirmed it, in well under the rail's 60 s wait", async () => {
    const startBlock = await gw.chain.publicClient.getBlockNumber();
    const started = performance.now();
    const response = await gw.call("POST", "/v1/payments", {
      amount: "1.5",
      asset: "USDC",
      source: { account: "acct_demo_customer" },
      destination: { type: "evm_split", split_id: splitId },
    });
    expect(response.status).toBe(201);
    expect(response.body).toMatchObject({ status: "succeeded", rail: "evm" });
    expect(performance.now() - started).toBeLessThan(20_000);
    // The payment's block and at least one more: mined by the interval, not by a transaction of ours.
    expect(await gw.chain.publicClient.getBlockNumber()).toBeGreaterThanOrEqual(startBlock + 2n);
  });
});
