// Two EVM chains at once, each its own rail: the embedded "L1" (rail evm, chain 31337, base fee 25 gwei) and
// "L2" (rail evm-l2, chain 31338, base fee 0.01 gwei), as `npm start` runs them. Each snapshot names its chain
// and prices gas live (latest base fee + the rail's tip); an address naming the L2 is paid on the L2 and its gas
// booked out of the L2 rail's own native clearing account; a base fee above the rail's cap refuses the payout
// (fee_above_max), nothing sent.
import type { Hex } from "viem";
import { generatePrivateKey } from "viem/accounts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serveChainRpc, startEmbeddedChain } from "../../adapters/evm/dev-chain.ts";
import { createEvmRail, type EmbeddedChain, type EvmRail } from "../../adapters/evm/index.ts";
import { assets, divCeil, type RailSnapshot } from "../../core/index.ts";
import { getRailAccount } from "../../gateway/accounts/index.ts";
import { embeddedL1L2 } from "../../gateway/app/config.ts";
import { createApp } from "../../gateway/app.ts";
import { derivedLedgerId } from "../../gateway/ids/index.ts";
import { transferCodes } from "../../gateway/ledger/index.ts";
import { deployPriceFeed } from "../../gateway/rates/index.ts";
import { buildSnapshot, route, staticRateSource } from "../../gateway/router/index.ts";
import { testConfig } from "../support/config.ts";
import { type Gateway, startGateway } from "./support.ts";

const gwei = 1_000_000_000n;
let gw: Gateway;
let l1: EmbeddedChain;
let l2: EmbeddedChain;
let l2Rail: EvmRail;

beforeAll(async () => {
  gw = await startGateway({ ...embeddedL1L2 });
  l1 = gw.chain;
  l2 = gw.app.chains.get("evm-l2")!;
  l2Rail = gw.app.rails.get("evm-l2") as EvmRail;
});
afterAll(async () => {
  await gw?.app.close();
});

async function railAccountId(rail: string, kind: "clearing" | "fee" | "capital") {
  const account = await getRailAccount(gw.app.db, { kind, rail, asset: assets.ETH });
  if (account === null) throw new Error(`no ${kind} account for ${rail} in ETH`);
  return account.ledgerAccountId;
}

/** The network fee the router prices a rail's snapshot at (USD micro-units), with ETH at `ethMicroUsdPerGwei`. */
function pricedNetworkFee(rail: RailSnapshot, ethMicroUsdPerGwei: bigint): bigint {
  const snapshot = buildSnapshot({
    rails: [rail],
    rateSource: staticRateSource({
      usdRates: {
        USDC: { microUsd: 1n, perMinorUnits: 1n },
        ETH: { microUsd: ethMicroUsdPerGwei, perMinorUnits: 1n },
      },
    }),
    assetCodes: ["USDC"],
    takenAtMs: Date.now(),
  });
  const decision = route(
    {
      asset: assets.USDC,
      amount: 1_000_000n,
      destination: { kind: "evm_address", address: l1.accounts[7]!.address },
    },
    snapshot,
    {},
  );
  const candidate = decision.candidates.find((each) => each.rail === rail.rail);
  if (candidate === undefined)
    throw new Error(`no candidate on ${rail.rail}: ${JSON.stringify(decision.excluded)}`);
  return candidate.cost.networkMicroUsd;
}

const pendingNonce = (chain: EmbeddedChain) =>
  chain.publicClient.getTransactionCount({
    address: chain.walletClient.account.address,
    blockTag: "pending",
  });

/** Mines a block at the chain's held base fee, so that "latest" shows it. */
async function mineAtHeldFee(chain: EmbeddedChain) {
  await chain.provider.request({ method: "evm_mine", params: [] } as never);
}

describe("two EVM chains, each its own rail", () => {
  it("each snapshot names its chain and prices gas at its latest base fee + tip: the L1's far above the L2's", async () => {
    await Promise.all([gw.rail.refresh(), l2Rail.refresh()]);
    const [l1Block, l2Block] = await Promise.all([
      l1.publicClient.getBlock({ blockTag: "latest" }),
      l2.publicClient.getBlock({ blockTag: "latest" }),
    ]);
    expect(l1Block.baseFeePerGas).toBe(25n * gwei);
    expect(l2Block.baseFeePerGas).toBe(10_000_000n);
    const [evm, evmL2] = [gw.rail.snapshot(), l2Rail.snapshot()];
    expect(evm).toMatchObject({ rail: "evm", chainId: 31_337, available: true });
    expect(evmL2).toMatchObject({ rail: "evm-l2", chainId: 31_338, available: true });
    // 60,000 gas × (base fee + tip) wei, priced by the router at ETH's rate: $3,000 an ETH (3 µUSD a gwei), rounded up.
    const [l1Fee, l2Fee] = [pricedNetworkFee(evm, 3n), pricedNetworkFee(evmL2, 3n)];
    expect(l1Fee).toBe(divCeil(60_000n * (25n * gwei + 1n * gwei) * 3n, gwei));
    expect(l2Fee).toBe(divCeil(60_000n * (10_000_000n + 1_000_000n) * 3n, gwei));
    expect(l1Fee).toBeGreaterThan(1_000n * l2Fee);
  });

  it("prices its gas at ETH's rate as the rates say it now, not at a fixed $3,000", async () => {
    await gw.rail.refresh();
    const snapshot = gw.rail.snapshot();
    // Before: the rail priced its gas itself at $3,000 an ETH, whatever the price feed said.
    expect(snapshot.networkFee).toMatchObject({ kind: "evm_gas", nativeAsset: "ETH", gasUnits: 60_000n });
    expect(pricedNetworkFee(snapshot, 4n)).toBe(divCeil(60_000n * 26n * gwei * 4n, gwei));
  });

  it("an address naming the L2 is paid on the L2, with the policy's fees, and its gas booked on the L2 rail", async () => {
    const payee = l2.accounts[5]!.address;
    const l1Nonce = await pendingNonce(l1);
    const clearingBefore = await gw.ledgerAccount(await railAccountId("evm-l2", "clearing"));
    const response = await gw.call("POST", "/v1/payments", {
      amount: "3",
      asset: "USDC",
      source: { account: "acct_demo_customer" },
      destination: { type: "evm_address", address: payee, chain_id: 31_338 },
    });
    expect(response.status).toBe(201);
    expect(response.body).toMatchObject({ status: "succeeded", rail: "evm-l2" });
    const [attempt] = response.body.attempts;
    const evidence = attempt.evidence as { tx_hash: Hex; chain_id: number };
    expect(evidence.chain_id).toBe(31_338);

    // The transaction is the L2's: its receipt is there, the payee holds the tokens there, the L1 sent nothing.
    const receipt = await l2.publicClient.getTransactionReceipt({ hash: evidence.tx_hash });
    expect(receipt.status).toBe("success");
    await expect(l1.publicClient.getTransactionReceipt({ hash: evidence.tx_hash })).rejects.toThrow();
    expect(await pendingNonce(l1)).toBe(l1Nonce);
    const tx = await l2.publicClient.getTransaction({ hash: evidence.tx_hash });
    expect(tx.type).toBe("eip1559");
    expect(tx.maxPriorityFeePerGas).toBe(1_000_000n); // the L2 rail's tip, 0.001 gwei
    expect(tx.maxFeePerGas).toBe(2n * 10_000_000n + 1_000_000n); // twice the base fee + tip, under the 1 gwei cap
    expect(receipt.effectiveGasPrice).toBe(11_000_000n);

    // Its gas leaves the evm-l2 rail's native clearing account, with the L2 receipt's figures.
    const wei = receipt.gasUsed * receipt.effectiveGasPrice;
    const [paid] = await gw.app.ledger.lookupTransfers([derivedLedgerId(attempt.id, "native-fee-paid")]);
    expect(paid).toMatchObject({
      amount: divCeil(wei, gwei),
      ledger: assets.ETH.ledger,
      code: transferCodes.payments.feePaid,
      debitAccountId: await railAccountId("evm-l2", "fee"),
      creditAccountId: await railAccountId("evm-l2", "clearing"),
    });
    expect(paid?.evidence?.detail).toMatchObject({ wei: wei.toString() });
    const clearingAfter = await gw.ledgerAccount(await railAccountId("evm-l2", "clearing"));
    expect(clearingAfter.creditsPosted - clearingBefore.creditsPosted).toBe(divCeil(wei, gwei));
    // Each rail's gas capital is its own chain's wallet.
    const [l1Capital, l2Capital] = await Promise.all([
      gw.ledgerAccount(await railAccountId("evm", "capital")),
      gw.ledgerAccount(await railAccountId("evm-l2", "capital")),
    ]);
    expect(l1Capital.creditsPosted).toBeGreaterThan(0n);
    expect(l2Capital.creditsPosted).toBeGreaterThan(0n);
    expect(l1Capital.id).not.toBe(l2Capital.id);
  });

  it("an address naming no chain goes to the cheaper L2, the L1 ranked behind it", async () => {
    const response = await gw.call("POST", "/v1/payments", {
      amount: "1",
      asset: "USDC",
      source: { account: "acct_demo_customer" },
      destination: { type: "evm_address", address: l1.accounts[6]!.address },
    });
    expect(response.status).toBe(201);
    expect(response.body).toMatchObject({ status: "succeeded", rail: "evm-l2" });
    expect(response.body.route.candidates.map((c: { rail: string }) => c.rail)).toEqual(["evm-l2", "evm"]);
  });

  it("a split that lives on the L1 only: the L2 finds it unknown (no payout sent there) and the L1 pays it", async () => {
    const [a, b] = l1.accounts.slice(2, 4);
    const { splitId } = await gw.createSplit([a!.address, b!.address], [5000, 5000]);
    const response = await gw.call("POST", "/v1/payments", {
      amount: "1",
      asset: "USDC",
      source: { account: "acct_demo_customer" },
      destination: { type: "evm_split", split_id: splitId },
    });
    expect(response.status).toBe(201);
    expect(response.body).toMatchObject({ status: "succeeded", rail: "evm" });
    const [onL2, onL1] = response.body.attempts;
    expect(onL2).toMatchObject({
      rail: "evm-l2",
      status: "failed",
      failure: { code: "unreachable_destination" },
    });
    expect(onL1).toMatchObject({ rail: "evm", status: "succeeded" });
    // The L2's pay was refused in gas estimation: nothing stored for its attempt (only the splitter's one-time
    // approve went out there).
    const sends = await gw.app.db.query("SELECT chain_id FROM evm_sends WHERE attempt_id = $1", [onL2.id]);
    expect(sends).toHaveLength(0);
  });
});

describe("an address the API now refuses, stored before it did", () => {
  it("a wrong EIP-55 checksum fails the attempt for good, nothing sent (encoding the call threw out of execute)", async () => {
    const nonce = await pendingNonce(l2);
    const attempt = {
      id: "att_bad_checksum",
      paymentId: "pay_bad_checksum",
      tenantId: "ten_test",
      amount: 1_000_000n,
      destination: { kind: "evm_address", address: "0xAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAa" },
      feeMax: 1_000_000n,
    } as const;
    for (const _ of [1, 2])
      expect(await l2Rail.execute(attempt)).toMatchObject({
        status: "failed",
        code: "unreachable_destination",
        retryElsewhere: false,
        final: true,
      });
    expect(await pendingNonce(l2)).toBe(nonce);
    const sends = await gw.app.db.query("SELECT 1 FROM evm_sends WHERE attempt_id = $1", [attempt.id]);
    expect(sends).toHaveLength(0);
  });
});

describe("a base fee above the rail's cap", () => {
  it("the rail refuses to send: fee_above_max, another rail may pay, no transaction signed or sent", async () => {
    await l2.setBaseFeePerGas(2n * gwei); // the L2 rail's cap is 1 gwei
    await mineAtHeldFee(l2);
    try {
      const nonce = await pendingNonce(l2);
      const outcome = await l2Rail.execute({
        id: "att_fee_spike",
        paymentId: "pay_fee_spike",
        tenantId: "ten_test",
        amount: 1_000_000n,
        destination: { kind: "evm_address", address: l2.accounts[7]!.address, chainId: 31_338 },
        feeMax: 1_000_000n,
      });
      expect(outcome).toMatchObject({ status: "failed", code: "fee_above_max", retryElsewhere: true });
      expect(outcome.status === "failed" && outcome.message).toMatch(
        /2 gwei.*above the rail's max fee \(1 gwei\)/,
      );
      expect(await pendingNonce(l2)).toBe(nonce);
      const sends = await gw.app.db.query("SELECT 1 FROM evm_sends WHERE attempt_id = $1", ["att_fee_spike"]);
      expect(sends).toHaveLength(0);
      // The snapshot prices the spike as it is (base fee 2 gwei + tip): the router sees what the rail would refuse.
      await l2Rail.refresh();
      expect(pricedNetworkFee(l2Rail.snapshot(), 3n)).toBe(
        divCeil(60_000n * (2n * gwei + 1_000_000n) * 3n, gwei),
      );

      // Through the API, a payment the L2 alone may pay fails with that code, nothing sent.
      const response = await gw.call("POST", "/v1/payments", {
        amount: "1",
        asset: "USDC",
        source: { account: "acct_demo_customer" },
        destination: { type: "evm_address", address: l2.accounts[7]!.address, chain_id: 31_338 },
      });
      expect(response.status).toBe(402);
      expect(response.body.error.code).toBe("fee_above_max");
      expect(await pendingNonce(l2)).toBe(nonce);
    } finally {
      await l2.setBaseFeePerGas(10_000_000n);
      await mineAtHeldFee(l2);
    }
  });
});

describe("a token that no longer answers balanceOf", () => {
  it("leaves the rail unavailable as token_unreadable, a configuration to fix, not a node out of reach", async () => {
    // The node answers; at the token's address there is no contract (the RPC now serves another chain, say): the
    // start's check of its decimals passed once, the refresh's balanceOf comes back empty. Before: node_unreachable.
    const rail = createEvmRail({
      db: gw.app.db,
      publicClient: l1.publicClient,
      walletClient: l1.walletClient,
      token: { address: l1.accounts[8]!.address, asset: assets.USDC },
      confirmations: 1,
      gas: { priorityFeeWei: gwei, maxFeeWei: 100n * gwei },
      transferGasEstimate: 60_000n,
      snapshotRefreshMs: 60_000,
      receiptTimeoutMs: 1_000,
      replaceAfterMs: 60_000,
      expectedLatencyMs: 1_000,
    });
    await rail.refresh();
    expect(rail.snapshot()).toMatchObject({
      available: false,
      unavailable: {
        code: "token_unreadable",
        message:
          "the configured token did not answer balanceOf for the hot wallet: no contract at its address on this chain, or one that reverts",
      },
    });
  });
});

/** A gateway on the chain at `rpcUrl` (an embedded one served over JSON-RPC), its token `token`. */
const startOn = (rpcUrl: string, token: string) =>
  createApp(
    testConfig({
      LOG_LEVEL: "silent",
      PORT: "0",
      EVM_RPC_URL: rpcUrl,
      EVM_HOT_WALLET_KEY: generatePrivateKey(),
      EVM_TOKEN_ADDRESS: token,
      EVM_EMBEDDED_RPC_PORT: "off",
    }),
  );

describe("a chain whose gas is not ETH", () => {
  it("is refused at start, naming its coin: its gas would be booked and charged as ETH", async () => {
    // A node that says it is Polygon (chain 137): an embedded chain under that id, served over JSON-RPC.
    const polygon = await startEmbeddedChain({ chainId: 137 });
    const served = await serveChainRpc(polygon.provider, { host: "127.0.0.1", port: 0 });
    try {
      await expect(startOn(served.url, polygon.contracts.testUsd)).rejects.toThrow(
        /chain 137 pays its gas in POL/,
      );
    } finally {
      await served.close();
      await polygon.close();
    }
  });
});

describe("a token whose decimals are not USDC's", () => {
  it("is refused at start: its amounts would be read as USDC's 6 decimals", async () => {
    const chain = await startEmbeddedChain({ chainId: 31_391 });
    const served = await serveChainRpc(chain.provider, { host: "127.0.0.1", port: 0 });
    try {
      // A contract answering decimals() with 18 (a PriceFeed of 18 decimals), as DAI's would.
      const token = await deployPriceFeed(
        { walletClient: chain.walletClient, publicClient: chain.publicClient },
        { assetCode: "ETH", usd: "1", decimals: 18 },
      );
      await expect(startOn(served.url, token)).rejects.toThrow(
        /has 18 decimals; its amounts are kept as USDC's, with 6/,
      );
    } finally {
      await served.close();
      await chain.close();
    }
  });
});
