// The rate sources against a real in-process Hardhat chain: PriceFeed contracts deployed through the helper the
// gateway's development chain uses (ETH at $3,000, BTC at $100,000), read with viem as Chainlink feeds, moved
// by `npm run price-feed`'s own functions, and aged past maxAgeMs with evm_increaseTime: stale, not missing; and
// checked against an HTTP source over a real local server: far enough apart, neither is used.
import { type Address, createWalletClient, custom, numberToHex } from "viem";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { type EmbeddedChain, startEmbeddedChain } from "../../adapters/evm/index.ts";
import {
  aggregatorV3Abi,
  chainlinkFeedSource,
  createRateFeed,
  deployPriceFeed,
  deployPriceFeeds,
  httpRateSource,
  PriceFeedError,
  priceFeedAbi,
  type RateFeed,
  readPriceFeedArtifact,
  updatePriceFeed,
} from "../../gateway/rates/index.ts";
import { parsePriceFeedArgs, runPriceFeedCommand } from "../../scripts/price-feed.ts";
import { type RatesServer, startRatesServer } from "../support/rates-server.ts";

const maxAgeMs = 60 * 60 * 1000;
let chain: EmbeddedChain;

const clients = () => ({ walletClient: chain.walletClient, publicClient: chain.publicClient });

beforeAll(async () => {
  chain = await startEmbeddedChain({ chainId: 31_390 });
});
afterAll(async () => {
  await chain?.close();
});

/**
 * Feeds of the test's own, as the development chain deploys them (ETH $3,000, BTC $100,000, in rounds of the chain's
 * time now), and a rate feed reading them: a test moves or ages its feeds, never another test's.
 */
async function ownFeeds(): Promise<{ feeds: Record<string, Address>; rateFeed: RateFeed }> {
  const feeds = await deployPriceFeeds(clients());
  const rateFeed = createRateFeed({
    sources: [
      chainlinkFeedSource({
        client: chain.publicClient,
        feeds: [
          { assetCode: "ETH", address: feeds.ETH! },
          { assetCode: "BTC", address: feeds.BTC! },
        ],
      }),
    ],
    staticRates: { USDC: { microUsd: 1n, perMinorUnits: 1n } },
    maxAgeMs,
    refreshMs: 60_000,
  });
  onTestFinished(() => rateFeed.stop());
  return { feeds, rateFeed };
}

describe("PriceFeed on a Hardhat chain, read as a Chainlink feed", () => {
  it("the ABIs gateway/rates uses are the compiled contract's", async () => {
    const { abi } = (await readPriceFeedArtifact()) as unknown as { abi: { name?: string; type: string }[] };
    for (const item of priceFeedAbi)
      expect(abi.find((compiled) => compiled.name === item.name && compiled.type === item.type)).toEqual(
        item,
      );
    expect(aggregatorV3Abi.map((item) => item.name)).toEqual([
      "decimals",
      "description",
      "version",
      "getRoundData",
      "latestRoundData",
    ]);
  });

  it("deploys ETH at $3,000 and BTC at $100,000, read back as the development table's rates", async () => {
    const { feeds, rateFeed } = await ownFeeds();
    const description = await chain.publicClient.readContract({
      address: feeds.ETH!,
      abi: priceFeedAbi,
      functionName: "description",
    });
    expect(description).toBe("ETH / USD");
    await rateFeed.refresh();
    expect(rateFeed.usdRate("ETH")).toEqual({ microUsd: 3n, perMinorUnits: 1n });
    expect(rateFeed.usdRate("BTC")).toEqual({ microUsd: 1n, perMinorUnits: 1n });
    expect(rateFeed.usdRate("USDC")).toEqual({ microUsd: 1n, perMinorUnits: 1n });
    expect(rateFeed.rateStatus("ETH")).toBe("fresh");
    expect(rateFeed.rateOrigin("ETH")?.source).toBe("chainlink");
  });

  it("npm run price-feed -- ETH 3100.25 posts round 2, and the feed reads it exactly", async () => {
    const { feeds, rateFeed } = await ownFeeds();
    const command = parsePriceFeedArgs(["ETH", "3100.25"], { PRICE_FEEDS: JSON.stringify(feeds) });
    if ("error" in command) throw new Error(command.error);
    const result = await runPriceFeedCommand(clients(), command);
    expect(result).toMatchObject({ asset: "ETH", roundId: "2", answer: "310025000000" });
    await rateFeed.refresh();
    expect(rateFeed.usdRate("ETH")).toEqual({ microUsd: 12_401n, perMinorUnits: 4_000n });
    expect(rateFeed.usdRate("BTC")).toEqual({ microUsd: 1n, perMinorUnits: 1n });
  });

  it("refuses a price finer than the feed's decimals, and an account that does not own the feed", async () => {
    const { feeds, rateFeed } = await ownFeeds();
    await expect(updatePriceFeed(clients(), { feed: feeds.ETH!, usd: "3000.000000001" })).rejects.toThrow(
      PriceFeedError,
    );
    const stranger = createWalletClient({
      chain: chain.chain,
      transport: custom(chain.provider),
      account: chain.accounts[0]!,
    });
    const refused = updatePriceFeed(
      { walletClient: stranger, publicClient: chain.publicClient },
      { feed: feeds.ETH!, usd: "1" },
    );
    const error = await refused.then(
      () => null,
      (reason: unknown) => reason,
    );
    expect(error).toBeInstanceOf(PriceFeedError);
    const revert = (error as PriceFeedError).walk(
      (e) => (e as { data?: { errorName?: string } }).data?.errorName !== undefined,
    );
    expect((revert as { data: { errorName: string } }).data.errorName).toBe("PriceFeedUnauthorized");
    await rateFeed.refresh();
    expect(rateFeed.usdRate("ETH")).toEqual({ microUsd: 3n, perMinorUnits: 1n });
    // Neither refused update made a round: the feed still answers its first.
    const [round, answer] = await chain.publicClient.readContract({
      address: feeds.ETH!,
      abi: priceFeedAbi,
      functionName: "latestRoundData",
    });
    expect([round, answer]).toEqual([1n, 300_000_000_000n]);
  });

  it("a feed not updated for longer than maxAgeMs on the chain's clock is stale, and fresh again once updated", async () => {
    const { feeds, rateFeed } = await ownFeeds();
    await rateFeed.refresh();
    expect(rateFeed.rateStatus("ETH")).toBe("fresh");
    await chain.provider.request({ method: "evm_increaseTime", params: [numberToHex(2 * 60 * 60)] } as never);
    await chain.provider.request({ method: "evm_mine", params: [] } as never);
    await rateFeed.refresh();
    expect(rateFeed.usdRate("ETH")).toBeNull();
    expect(rateFeed.rateStatus("ETH")).toBe("stale");
    expect(rateFeed.rateStatus("BTC")).toBe("stale");
    expect(rateFeed.staleAssets()).toEqual(["BTC", "ETH"]);
    expect(rateFeed.rateStatus("USDC")).toBe("fresh");

    const command = parsePriceFeedArgs(["ETH", "2950", "--feed", feeds.ETH!], {});
    if ("error" in command) throw new Error(command.error);
    await runPriceFeedCommand(clients(), command);
    await rateFeed.refresh();
    expect(rateFeed.rateStatus("ETH")).toBe("fresh");
    expect(rateFeed.usdRate("ETH")).toEqual({ microUsd: 59n, perMinorUnits: 20n });
    expect(rateFeed.staleAssets()).toEqual(["BTC"]);
  });
});

describe("a price feed checked against an HTTP source", () => {
  let server: RatesServer;
  let checked: RateFeed;
  /** A feed of its own, as each test above has. */
  let ethFeed: Address;

  beforeAll(async () => {
    ethFeed = await deployPriceFeed(clients(), { assetCode: "ETH", usd: "3000" });
    server = await startRatesServer({ ETH: "3000.00" });
    checked = createRateFeed({
      sources: [
        chainlinkFeedSource({
          client: chain.publicClient,
          feeds: [{ assetCode: "ETH", address: ethFeed }],
        }),
        httpRateSource({ url: server.url, assetCodes: ["ETH"] }),
      ],
      maxAgeMs,
      refreshMs: 60_000,
      disagreementMaxBps: 500,
    });
  });
  afterAll(async () => {
    await checked?.stop();
    await server?.close();
  });

  it("within the bound the feed answers; further apart, neither; close again, the feed", async () => {
    await checked.refresh();
    expect(checked.usdRate("ETH")).toEqual({ microUsd: 3n, perMinorUnits: 1n });
    expect(checked.rateOrigin("ETH")?.source).toBe("chainlink");
    server.rates = { ETH: "2700.00" }; // 11 % under the chain's $3,000
    await checked.refresh();
    expect(checked.rateStatus("ETH")).toBe("disputed");
    expect(checked.usdRate("ETH")).toBeNull();
    expect(checked.lastRate?.("ETH")).toBeNull(); // no gas estimate either
    // The chain moves to the HTTP source's side: within 5 % of $2,700, they agree, and the chain's rate answers.
    await updatePriceFeed(clients(), { feed: ethFeed, usd: "2800" });
    await checked.refresh();
    expect(checked.rateStatus("ETH")).toBe("fresh");
    expect(checked.usdRate("ETH")).toEqual({ microUsd: 14n, perMinorUnits: 5n });
  });
});
