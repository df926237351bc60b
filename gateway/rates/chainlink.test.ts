// The Chainlink source over a fake client (the real chain is test/evm/rates.test.ts): the rationals, the
// refusals, decimals read once, the two clocks, the timeout.
import type { Address } from "viem";
import { describe, expect, it } from "vitest";
import { chainlinkFeedSource } from "./chainlink.ts";
import { RateConfigError } from "./errors.ts";

const ethFeed = "0x00000000000000000000000000000000000000e1" as Address;
const btcFeed = "0x00000000000000000000000000000000000000b1" as Address;

type Round = [bigint, bigint, bigint, bigint, bigint];

/** A client answering decimals and latestRoundData per feed, and the latest block's time. */
function fakeClient(state: {
  rounds: Record<string, Round | Error>;
  decimals?: number;
  blockTimeS: bigint;
  hangs?: boolean;
}) {
  const calls = { decimals: 0, rounds: 0 };
  const client = {
    calls,
    async getBlock() {
      if (state.hangs) await new Promise(() => {});
      return { timestamp: state.blockTimeS };
    },
    async readContract({ address, functionName }: { address: Address; functionName: string }) {
      if (functionName === "decimals") {
        calls.decimals += 1;
        return state.decimals ?? 8;
      }
      calls.rounds += 1;
      const round = state.rounds[address.toLowerCase()];
      if (round instanceof Error) throw round;
      return round;
    },
  };
  return client;
}

const nowS = 1_800_000_000n;
const round = (answer: bigint, updatedAtS: bigint, roundId = 7n, answeredInRound = roundId): Round => [
  roundId,
  answer,
  updatedAtS,
  updatedAtS,
  answeredInRound,
];

const source = (client: ReturnType<typeof fakeClient>, wallS = nowS) =>
  chainlinkFeedSource({
    client: client as never,
    feeds: [
      { assetCode: "ETH", address: ethFeed },
      { assetCode: "BTC", address: btcFeed },
    ],
    nowMs: () => Number(wallS) * 1000,
    readTimeoutMs: 200,
  });

describe("chainlinkFeedSource", () => {
  it("turns answer × 10^-decimals USD per whole unit into exact rates per minor unit, at the round's time", async () => {
    const client = fakeClient({
      rounds: {
        [ethFeed]: round(3_100_25000000n, nowS - 30n),
        [btcFeed]: round(100_000_00000000n, nowS - 5n),
      },
      blockTimeS: nowS,
    });
    const result = await source(client).fetchRates();
    expect(result.failures).toEqual([]);
    expect(result.observations).toEqual([
      {
        assetCode: "ETH",
        rate: { microUsd: 12_401n, perMinorUnits: 4_000n },
        observedAtMs: Number(nowS - 30n) * 1000,
      },
      { assetCode: "BTC", rate: { microUsd: 1n, perMinorUnits: 1n }, observedAtMs: Number(nowS - 5n) * 1000 },
    ]);
  });

  it("reads each feed's decimals once", async () => {
    const client = fakeClient({
      rounds: { [ethFeed]: round(3_000n * 10n ** 18n, nowS), [btcFeed]: round(100_000n * 10n ** 18n, nowS) },
      decimals: 18,
      blockTimeS: nowS,
    });
    const feed = source(client);
    const first = await feed.fetchRates();
    await feed.fetchRates();
    expect(client.calls).toEqual({ decimals: 2, rounds: 4 });
    expect(first.observations[0]?.rate).toEqual({ microUsd: 3n, perMinorUnits: 1n });
  });

  it("refuses an answer ≤ 0 and a round not answered in itself", async () => {
    const client = fakeClient({
      rounds: { [ethFeed]: round(0n, nowS), [btcFeed]: round(100_000_00000000n, nowS, 9n, 8n) },
      blockTimeS: nowS,
    });
    const result = await source(client).fetchRates();
    expect(result.observations).toEqual([]);
    expect(result.failures.map((failure) => [failure.assetCode, failure.reason])).toEqual([
      ["ETH", "invalid_answer"],
      ["BTC", "incomplete_round"],
    ]);
    const negative = fakeClient({
      rounds: { [ethFeed]: round(-1n, nowS), [btcFeed]: round(1n, 0n) },
      blockTimeS: nowS,
    });
    expect((await source(negative).fetchRates()).failures.map((failure) => failure.reason)).toEqual([
      "invalid_answer",
      "incomplete_round",
    ]);
  });

  it("ages a round by the older of the chain's clock and the wall clock", async () => {
    // The chain's time ran an hour ahead of the wall clock (evm_increaseTime): the round is an hour old.
    const ahead = fakeClient({
      rounds: { [ethFeed]: round(3_000_00000000n, nowS), [btcFeed]: round(1n, nowS) },
      blockTimeS: nowS + 3_600n,
    });
    const [eth] = (await source(ahead).fetchRates()).observations;
    expect(eth?.observedAtMs).toBe(Number(nowS - 3_600n) * 1000);
    // The chain stopped making blocks an hour ago: the wall clock ages it.
    const halted = fakeClient({
      rounds: { [ethFeed]: round(3_000_00000000n, nowS), [btcFeed]: round(1n, nowS) },
      blockTimeS: nowS,
    });
    const [late] = (await source(halted, nowS + 3_600n).fetchRates()).observations;
    expect(late?.observedAtMs).toBe(Number(nowS) * 1000);
  });

  it("reports an unreachable feed and a chain that does not answer in time, never throwing", async () => {
    const broken = fakeClient({
      rounds: { [ethFeed]: new Error("execution reverted\nmore"), [btcFeed]: round(1n, nowS) },
      blockTimeS: nowS,
    });
    const result = await source(broken).fetchRates();
    expect(result.failures).toEqual([
      { assetCode: "ETH", reason: "unreachable", details: "execution reverted" },
    ]);
    expect(result.observations.map((observation) => observation.assetCode)).toEqual(["BTC"]);
    const hanging = fakeClient({ rounds: {}, blockTimeS: nowS, hangs: true });
    expect((await source(hanging).fetchRates()).failures.map((failure) => failure.reason)).toEqual([
      "timeout",
      "timeout",
    ]);
  });

  it("refuses unknown assets, duplicates and bad addresses at construction", () => {
    const client = fakeClient({ rounds: {}, blockTimeS: nowS }) as never;
    expect(() => chainlinkFeedSource({ client, feeds: [{ assetCode: "DOGE", address: ethFeed }] })).toThrow(
      RateConfigError,
    );
    expect(() =>
      chainlinkFeedSource({
        client,
        feeds: [
          { assetCode: "ETH", address: ethFeed },
          { assetCode: "ETH", address: btcFeed },
        ],
      }),
    ).toThrow(RateConfigError);
    expect(() =>
      chainlinkFeedSource({ client, feeds: [{ assetCode: "ETH", address: "0x12" as Address }] }),
    ).toThrow(RateConfigError);
  });
});
