// Rates read from Chainlink-style price feeds (AggregatorV3Interface) with viem: one feed per asset, its
// decimals read once, latestRoundData read on every fetch. A round's age is measured on both clocks — the
// chain's (latest block time − updatedAt) and the wall clock (now − updatedAt) — and the older wins: a chain
// whose time runs ahead (Hardhat's evm_increaseTime) ages its feeds, and a chain that stopped making blocks
// cannot keep a round fresh.

import { type Address, getAddress, isAddress, type PublicClient } from "viem";
import { assetByCode } from "../../core/index.ts";
import { aggregatorV3Abi } from "./abi.ts";
import { usdRateFromPrice } from "./decimal.ts";
import { RateConfigError } from "./errors.ts";
import type { PolledRateSource, RateFetchFailure, RateFetchResult, RateObservation } from "./types.ts";

export type ChainlinkFeed = {
  /** One of core's assets ("ETH", "BTC", …): the feed prices one whole unit of it in USD. */
  readonly assetCode: string;
  readonly address: Address;
};

export type ChainlinkFeedSourceParams = {
  /** Reads the feeds; its transport's own timeout applies too. */
  readonly client: Pick<PublicClient, "readContract" | "getBlock">;
  readonly feeds: readonly ChainlinkFeed[];
  /** Bound on each fetch (the block and every feed read); default 5,000 ms. */
  readonly readTimeoutMs?: number;
  /** Wall clock, ms since the epoch; default Date.now. */
  readonly nowMs?: () => number;
  /** For logs and status; default "chainlink". */
  readonly name?: string;
};

export const chainlinkReadTimeoutMsDefault = 5_000;
/** The most feeds one source reads (one per asset: core has a handful). */
export const chainlinkFeedsMax = 64;

type Round = readonly [bigint, bigint, bigint, bigint, bigint];

/** A rate source over Chainlink-style feeds. Throws RateConfigError for an unknown asset or a bad address. */
export function chainlinkFeedSource(params: ChainlinkFeedSourceParams): PolledRateSource {
  const feeds = validFeeds(params.feeds);
  const readTimeoutMs = params.readTimeoutMs ?? chainlinkReadTimeoutMsDefault;
  if (!Number.isInteger(readTimeoutMs) || readTimeoutMs <= 0)
    throw new RateConfigError(`chainlink: readTimeoutMs must be a positive integer, not ${readTimeoutMs}`);
  const nowMs = params.nowMs ?? Date.now;
  const name = params.name ?? "chainlink";
  /** Each feed's decimals, read once. */
  const decimalsByFeed = new Map<Address, number>();

  async function readFeed(
    feed: ChainlinkFeed,
    chainNowS: bigint,
  ): Promise<RateObservation | RateFetchFailure> {
    const scale = assetByCode(feed.assetCode)!.scale;
    let decimals = decimalsByFeed.get(feed.address);
    if (decimals === undefined) {
      decimals = await params.client.readContract({
        address: feed.address,
        abi: aggregatorV3Abi,
        functionName: "decimals",
      });
      decimalsByFeed.set(feed.address, decimals);
    }
    const [roundId, answer, , updatedAt, answeredInRound] = (await params.client.readContract({
      address: feed.address,
      abi: aggregatorV3Abi,
      functionName: "latestRoundData",
    })) as Round;
    const at = `feed ${feed.address} round ${roundId}`;
    if (answer <= 0n)
      return { assetCode: feed.assetCode, reason: "invalid_answer", details: `${at}: answer ${answer}` };
    if (answeredInRound < roundId || updatedAt === 0n)
      return {
        assetCode: feed.assetCode,
        reason: "incomplete_round",
        details: `${at}: answeredInRound ${answeredInRound}, updatedAt ${updatedAt}`,
      };
    const rate = usdRateFromPrice({ units: answer, decimals }, scale);
    if (rate === null)
      return { assetCode: feed.assetCode, reason: "malformed", details: `${at}: decimals ${decimals}` };
    const updatedAtMs = Number(updatedAt) * 1000;
    const chainAgeMs = chainNowS > updatedAt ? Number(chainNowS - updatedAt) * 1000 : 0;
    return { assetCode: feed.assetCode, rate, observedAtMs: Math.min(updatedAtMs, nowMs() - chainAgeMs) };
  }

  async function fetchAll(): Promise<RateFetchResult> {
    const block = await params.client.getBlock({ blockTag: "latest" });
    const results = await Promise.allSettled(feeds.map((feed) => readFeed(feed, block.timestamp)));
    const observations: RateObservation[] = [];
    const failures: RateFetchFailure[] = [];
    results.forEach((result, index) => {
      const assetCode = feeds[index]!.assetCode;
      if (result.status === "rejected") failures.push(unreachable(assetCode, result.reason));
      else if ("rate" in result.value) observations.push(result.value);
      else failures.push(result.value);
    });
    return { observations, failures };
  }

  return {
    name,
    assetCodes: feeds.map((feed) => feed.assetCode),
    async fetchRates() {
      const timeout = Symbol("timeout");
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<typeof timeout>((resolve) => {
        timer = setTimeout(() => resolve(timeout), readTimeoutMs);
      });
      try {
        const result = await Promise.race([fetchAll(), expired]);
        if (result !== timeout) return result;
        return everyFeedFailed(feeds, "timeout", `no answer from the chain within ${readTimeoutMs} ms`);
      } catch (error) {
        return { observations: [], failures: feeds.map((feed) => unreachable(feed.assetCode, error)) };
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

function validFeeds(feeds: readonly ChainlinkFeed[]): readonly ChainlinkFeed[] {
  if (feeds.length > chainlinkFeedsMax)
    throw new RateConfigError(
      `chainlink: ${feeds.length} feeds, more than chainlinkFeedsMax ${chainlinkFeedsMax}`,
    );
  const seen = new Set<string>();
  return feeds.map((feed) => {
    if (assetByCode(feed.assetCode) === null)
      throw new RateConfigError(`chainlink: unknown asset ${JSON.stringify(feed.assetCode)}`);
    if (seen.has(feed.assetCode)) throw new RateConfigError(`chainlink: two feeds for ${feed.assetCode}`);
    seen.add(feed.assetCode);
    if (!isAddress(feed.address, { strict: false }))
      throw new RateConfigError(
        `chainlink: the feed for ${feed.assetCode} is not an address: ${feed.address}`,
      );
    return { assetCode: feed.assetCode, address: getAddress(feed.address) };
  });
}

function unreachable(assetCode: string, error: unknown): RateFetchFailure {
  const message = error instanceof Error ? (error.message.split("\n")[0] ?? error.name) : String(error);
  return { assetCode, reason: "unreachable", details: message };
}

function everyFeedFailed(
  feeds: readonly ChainlinkFeed[],
  reason: RateFetchFailure["reason"],
  details: string,
): RateFetchResult {
  return {
    observations: [],
    failures: feeds.map((feed) => ({ assetCode: feed.assetCode, reason, details })),
  };
}
