import { afterEach, describe, expect, it, vi } from "vitest";
import type { Logger, UsdRate } from "../../core/index.ts";
import { recordingLogger } from "../../test/support/recording-logger.ts";
import { fxPairKey } from "../router/index.ts";
import { RateConfigError } from "./errors.ts";
import { createRateFeed } from "./feed.ts";
import type { PolledRateSource, RateFetchResult } from "./types.ts";

const eth3000 = { microUsd: 3n, perMinorUnits: 1n };
const eth3100 = { microUsd: 31n, perMinorUnits: 10n };
const eth3151 = { microUsd: 3_151n, perMinorUnits: 1_000n };
const btc = { microUsd: 1n, perMinorUnits: 1n };

/** A source whose next answer the test sets; counts its fetches. */
function toySource(name: string, assetCodes: string[]) {
  let next: RateFetchResult = { observations: [], failures: [] };
  const source = {
    name,
    assetCodes,
    fetches: 0,
    answer(result: RateFetchResult) {
      next = result;
    },
    async fetchRates() {
      source.fetches += 1;
      return next;
    },
  };
  return source satisfies PolledRateSource;
}

const clock = { ms: 1_000_000 };
const feedWith = (sources: PolledRateSource[], extra: Partial<Parameters<typeof createRateFeed>[0]> = {}) =>
  createRateFeed({ sources, maxAgeMs: 60_000, refreshMs: 10_000, nowMs: () => clock.ms, ...extra });

afterEach(() => {
  vi.useRealTimers();
});

describe("createRateFeed", () => {
  it("answers a fresh rate, then null and stale once it is older than maxAgeMs; missing before any", async () => {
    const chain = toySource("chainlink", ["ETH"]);
    const feed = feedWith([chain]);
    expect(feed.usdRate("ETH")).toBeNull();
    expect(feed.rateStatus("ETH")).toBe("missing");
    chain.answer({
      observations: [{ assetCode: "ETH", rate: eth3000, observedAtMs: clock.ms - 1_000 }],
      failures: [],
    });
    await feed.refresh();
    expect(feed.usdRate("ETH")).toEqual(eth3000);
    expect(feed.rateStatus("ETH")).toBe("fresh");
    expect(feed.rateOrigin("ETH")).toEqual({ source: "chainlink", observedAtMs: clock.ms - 1_000 });
    clock.ms += 59_000;
    expect(feed.rateStatus("ETH")).toBe("fresh");
    clock.ms += 1_001;
    expect(feed.usdRate("ETH")).toBeNull();
    expect(feed.rateStatus("ETH")).toBe("stale");
    expect(feed.staleAssets()).toEqual(["ETH"]);
    expect(feed.rateOrigin("ETH")).toBeNull();
  });

  it("keeps the last rate through a failed fetch, until it ages out", async () => {
    const chain = toySource("chainlink", ["ETH"]);
    const feed = feedWith([chain]);
    chain.answer({
      observations: [{ assetCode: "ETH", rate: eth3000, observedAtMs: clock.ms }],
      failures: [],
    });
    await feed.refresh();
    chain.answer({
      observations: [],
      failures: [{ assetCode: "ETH", reason: "unreachable", details: "down" }],
    });
    await feed.refresh();
    expect(feed.usdRate("ETH")).toEqual(eth3000);
    clock.ms += 60_001;
    expect(feed.rateStatus("ETH")).toBe("stale");
  });

  it("does not take a rate that moved more than rateMoveFactorMax times at once from a fresh one; once it is stale, any", async () => {
    const chain = toySource("chainlink", ["BTC"]);
    const feed = feedWith([chain]);
    const at = (microUsd: bigint) => ({
      observations: [{ assetCode: "BTC", rate: { microUsd, perMinorUnits: 1_000n }, observedAtMs: clock.ms }],
      failures: [],
    });
    chain.answer(at(1_000n)); // $100,000
    await feed.refresh();
    chain.answer(at(1n)); // $100: a typo, or a feed pinned at its bound
    await feed.refresh();
    expect(feed.usdRate("BTC")).toEqual({ microUsd: 1_000n, perMinorUnits: 1_000n });
    chain.answer(at(1_900n)); // within the bound: taken
    await feed.refresh();
    expect(feed.usdRate("BTC")).toEqual({ microUsd: 1_900n, perMinorUnits: 1_000n });
    chain.answer(at(100n));
    await feed.refresh();
    expect(feed.usdRate("BTC")).toEqual({ microUsd: 1_900n, perMinorUnits: 1_000n });
    // The last taken ages out while the source insists: stale, then the new rate is taken.
    clock.ms += 60_001;
    expect(feed.rateStatus("BTC")).toBe("stale");
    chain.answer(at(100n));
    await feed.refresh();
    expect(feed.usdRate("BTC")).toEqual({ microUsd: 100n, perMinorUnits: 1_000n });
  });

  it("answers from the first source in priority order whose rate is fresh", async () => {
    const chain = toySource("chainlink", ["ETH", "BTC"]);
    const http = toySource("http", ["ETH"]);
    const feed = feedWith([chain, http]);
    chain.answer({
      observations: [
        { assetCode: "ETH", rate: eth3000, observedAtMs: clock.ms - 50_000 },
        { assetCode: "BTC", rate: btc, observedAtMs: clock.ms },
      ],
      failures: [],
    });
    http.answer({
      observations: [{ assetCode: "ETH", rate: eth3100, observedAtMs: clock.ms }],
      failures: [],
    });
    await feed.refresh();
    expect(feed.usdRate("ETH")).toEqual(eth3000); // the first source wins while fresh, though older
    clock.ms += 20_000; // the chain's ETH is now 70 s old, the HTTP one 20 s
    expect(feed.usdRate("ETH")).toEqual(eth3100);
    expect(feed.rateOrigin("ETH")?.source).toBe("http");
    expect(feed.rateStatus("ETH")).toBe("fresh");
    clock.ms += 41_000;
    expect(feed.rateStatus("ETH")).toBe("stale");
    expect(feed.staleAssets()).toEqual(["BTC", "ETH"]);
  });

  it("answers neither of two rates further apart than disagreementMaxBps, a stale one included, until they agree again, and says so when it begins and when it ends", async () => {
    const { logger, lines: logged } = recordingLogger();
    const chain = toySource("chainlink", ["ETH"]);
    const http = toySource("http", ["ETH"]);
    const feed = feedWith([chain, http], { logger, disagreementMaxBps: 500 });
    const says = (source: ReturnType<typeof toySource>, rate: UsdRate | null) =>
      source.answer({
        observations: rate === null ? [] : [{ assetCode: "ETH", rate, observedAtMs: clock.ms }],
        failures: [],
      });
    // 5 % apart exactly: within the bound, the first source answers.
    says(chain, eth3000);
    says(http, { microUsd: 315n, perMinorUnits: 100n });
    await feed.refresh();
    expect(feed.usdRate("ETH")).toEqual(eth3000);
    expect(feed.rateStatus("ETH")).toBe("fresh");
    // Beyond it, either way (the HTTP source's first rate of $3,151 is as much a suspect as the chain's $3,000).
    says(http, eth3151);
    await feed.refresh();
    expect(feed.usdRate("ETH")).toBeNull();
    expect(feed.rateStatus("ETH")).toBe("disputed");
    expect(feed.isDisputed?.("ETH")).toBe(true);
    expect(feed.isStale?.("ETH")).toBe(false);
    expect(feed.rateOrigin("ETH")).toBeNull();
    // Nor a gas estimate: priced at a rate one source may have wrong by orders of magnitude, its cap would be too.
    expect(feed.lastRate?.("ETH")).toBeNull();
    says(chain, eth3151);
    says(http, eth3000);
    await feed.refresh();
    expect(feed.rateStatus("ETH")).toBe("disputed");
    const began = {
      level: "error",
      fields: {
        asset: "ETH",
        low: { source: "chainlink", rate: "3 µUSD / 1", fresh: true },
        high: { source: "http", rate: "3151 µUSD / 1000", fresh: true },
      },
      message: "rate sources disagree by more than 500 bps: neither is used until they agree",
    };
    expect(logged).toEqual([began]);
    // One of them ageing out ends nothing: the one left may be the wrong one (before: it answered alone). Its last
    // rate still counts, and so would after a restart: nothing of the dispute is kept but the rates.
    clock.ms += 30_000;
    says(chain, eth3151);
    says(http, null);
    await feed.refresh();
    clock.ms += 30_001;
    await feed.refresh();
    expect(feed.rateStatus("ETH")).toBe("disputed");
    expect(feed.usdRate("ETH")).toBeNull();
    expect(feed.lastRate?.("ETH")).toBeNull();
    // Two fresh rates that agree end it.
    says(chain, eth3000);
    says(http, eth3100);
    await feed.refresh();
    expect(feed.usdRate("ETH")).toEqual(eth3000);
    expect(feed.rateOrigin("ETH")?.source).toBe("chainlink");
    expect(logged).toEqual([
      began,
      {
        level: "info",
        fields: { asset: "ETH" },
        message: "rate sources no longer disagree: the rate is used",
      },
    ]);
  });

  it("checks a source's first rate against another's, stale or not; takes a correction the other confirms", async () => {
    const chain = toySource("chainlink", ["BTC"]);
    const http = toySource("http", ["BTC"]);
    const feed = feedWith([chain, http]);
    chain.answer({ observations: [{ assetCode: "BTC", rate: btc, observedAtMs: clock.ms }], failures: [] });
    await feed.refresh();
    expect(feed.usdRate("BTC")).toEqual(btc);
    // The HTTP source starts up quoting in cents: a hundred times the chain's. Before: the chain answered, and once
    // the chain's rate aged, the cents were taken as dollars.
    const cents = { microUsd: 100n, perMinorUnits: 1n };
    http.answer({ observations: [{ assetCode: "BTC", rate: cents, observedAtMs: clock.ms }], failures: [] });
    await feed.refresh();
    expect(feed.usdRate("BTC")).toBeNull();
    expect(feed.rateStatus("BTC")).toBe("disputed");
    chain.answer({
      observations: [],
      failures: [{ assetCode: "BTC", reason: "unreachable", details: "down" }],
    });
    clock.ms += 60_001;
    http.answer({ observations: [{ assetCode: "BTC", rate: cents, observedAtMs: clock.ms }], failures: [] });
    await feed.refresh();
    expect(feed.usdRate("BTC")).toBeNull();
    expect(feed.rateStatus("BTC")).toBe("disputed");
    // A feed started now, knowing nothing of the above, reads the same from the same rates.
    const restarted = feedWith([chain, http]);
    chain.answer({
      observations: [{ assetCode: "BTC", rate: btc, observedAtMs: clock.ms - 60_001 }],
      failures: [],
    });
    await restarted.refresh();
    expect(restarted.rateStatus("BTC")).toBe("disputed");
    // The HTTP source corrects itself: a hundredfold move, taken because the chain's rate confirms it (alone, the
    // move check would keep the cents until they aged out).
    http.answer({ observations: [{ assetCode: "BTC", rate: btc, observedAtMs: clock.ms }], failures: [] });
    await feed.refresh();
    expect(feed.rateStatus("BTC")).toBe("fresh");
    expect(feed.usdRate("BTC")).toEqual(btc);
  });

  it("counts a rate its source no longer names in the dispute check while it is fresh, not once it is stale", async () => {
    const { logger, lines: logged } = recordingLogger();
    const chain = toySource("chainlink", ["ETH"]);
    const http = toySource("http", ["ETH", "BTC"]);
    const feed = feedWith([chain, http], { logger, disagreementMaxBps: 500 });
    const unlisted = (assetCode: string) => ({
      assetCode,
      reason: "not_listed" as const,
      details: `no rates.${assetCode}`,
    });
    const chainSays = (rate: UsdRate) =>
      chain.answer({ observations: [{ assetCode: "ETH", rate, observedAtMs: clock.ms }], failures: [] });
    chainSays(eth3000);
    http.answer({
      observations: [{ assetCode: "ETH", rate: eth3151, observedAtMs: clock.ms }],
      failures: [unlisted("BTC")],
    });
    await feed.refresh();
    expect(feed.rateStatus("ETH")).toBe("disputed");
    // The HTTP source lists ETH no more: an answer that names nothing ends no dispute while its rate is fresh.
    http.answer({ observations: [], failures: [unlisted("ETH"), unlisted("BTC")] });
    await feed.refresh();
    await feed.refresh();
    expect(feed.rateStatus("ETH")).toBe("disputed");
    // Once stale, it weighs no more, and the feed's fresh rate answers. Before: the dispute held until a restart. (A
    // source that fails instead keeps its stale rate in the check: see above.)
    clock.ms += 60_001;
    chainSays(eth3000);
    await feed.refresh();
    expect(feed.rateStatus("ETH")).toBe("fresh");
    expect(feed.usdRate("ETH")).toEqual(eth3000);
    expect(feed.rateOrigin("ETH")?.source).toBe("chainlink");
    // Said once each, not at every refresh.
    expect(logged.filter((line) => line.level !== "error")).toEqual([
      {
        level: "warn",
        fields: { source: "http", asset: "BTC", reason: "not_listed", details: "no rates.BTC" },
        message: "rate source failed",
      },
      {
        level: "warn",
        fields: {
          source: "http",
          asset: "ETH",
          reason: "not_listed",
          details: "no rates.ETH",
          last: "3151 µUSD / 1000",
        },
        message: "rate source no longer names the asset: its last rate counts until it is stale",
      },
      {
        level: "info",
        fields: { asset: "ETH" },
        message: "rate sources no longer disagree: the rate is used",
      },
    ]);
    // Named again, even by a price of it that fails, its stale rate counts again, as a quiet source's does.
    http.answer({
      observations: [],
      failures: [{ assetCode: "ETH", reason: "malformed", details: "rates.ETH is not a price" }],
    });
    await feed.refresh();
    expect(feed.rateStatus("ETH")).toBe("disputed");
    http.answer({
      observations: [{ assetCode: "ETH", rate: eth3151, observedAtMs: clock.ms }],
      failures: [],
    });
    await feed.refresh();
    expect(feed.rateStatus("ETH")).toBe("disputed");
  });

  it("answers a gas estimate from a stale rate that counts before one whose source no longer lists the asset", async () => {
    // The HTTP source comes first here: its rate, withdrawn and stale, must not price gas while the feed's stale rate
    // (which the dispute check uses) is there. Before, lastRate answered the first rate in priority order, whatever.
    const http = toySource("http", ["ETH"]);
    const chain = toySource("chainlink", ["ETH"]);
    const feed = feedWith([http, chain], { disagreementMaxBps: 500 });
    http.answer({
      observations: [{ assetCode: "ETH", rate: eth3000, observedAtMs: clock.ms }],
      failures: [],
    });
    chain.answer({
      observations: [{ assetCode: "ETH", rate: eth3100, observedAtMs: clock.ms }],
      failures: [],
    });
    await feed.refresh();
    expect(feed.lastRate?.("ETH")).toEqual(eth3000);
    http.answer({
      observations: [],
      failures: [{ assetCode: "ETH", reason: "not_listed", details: "no rates.ETH" }],
    });
    chain.answer({
      observations: [],
      failures: [{ assetCode: "ETH", reason: "unreachable", details: "down" }],
    });
    await feed.refresh();
    expect(feed.lastRate?.("ETH")).toEqual(eth3000); // fresh: the first in priority order still answers
    clock.ms += 60_001;
    expect(feed.rateStatus("ETH")).toBe("stale");
    expect(feed.lastRate?.("ETH")).toEqual(eth3100);
    // Named again (a failure of its price names it), the HTTP source's stale rate counts again, and comes first.
    http.answer({
      observations: [],
      failures: [{ assetCode: "ETH", reason: "malformed", details: "not a price" }],
    });
    await feed.refresh();
    expect(feed.lastRate?.("ETH")).toEqual(eth3000);
  });

  it("answers a gas estimate from a withdrawn stale rate when no other source holds one", async () => {
    const http = toySource("http", ["ETH"]);
    const chain = toySource("chainlink", ["ETH"]);
    const feed = feedWith([chain, http]);
    http.answer({
      observations: [{ assetCode: "ETH", rate: eth3000, observedAtMs: clock.ms }],
      failures: [],
    });
    await feed.refresh();
    http.answer({
      observations: [],
      failures: [{ assetCode: "ETH", reason: "not_listed", details: "no rates.ETH" }],
    });
    await feed.refresh();
    clock.ms += 60_001;
    expect(feed.rateStatus("ETH")).toBe("stale");
    expect(feed.lastRate?.("ETH")).toEqual(eth3000);
  });

  it("keeps a pegged asset's named rate when its source stops naming it: it ages, the peg does not come back", async () => {
    const http = toySource("http", ["USDC"]);
    const feed = feedWith([http], { fixedRates: { USDC: { microUsd: 1n, perMinorUnits: 1n } } });
    const depeg = { microUsd: 95n, perMinorUnits: 100n };
    http.answer({ observations: [{ assetCode: "USDC", rate: depeg, observedAtMs: clock.ms }], failures: [] });
    await feed.refresh();
    http.answer({
      observations: [],
      failures: [{ assetCode: "USDC", reason: "not_listed", details: "no rates.USDC" }],
    });
    await feed.refresh();
    expect(feed.usdRate("USDC")).toEqual(depeg);
    clock.ms += 60_001;
    await feed.refresh();
    expect(feed.rateStatus("USDC")).toBe("stale");
    expect(feed.usdRate("USDC")).toBeNull();
  });

  it("answers static rates only for assets no source covers", async () => {
    const chain = toySource("chainlink", ["ETH"]);
    const usdc = { microUsd: 1n, perMinorUnits: 1n };
    const feed = feedWith([chain], { staticRates: { USDC: usdc, ETH: eth3000 } });
    expect(feed.usdRate("USDC")).toEqual(usdc);
    expect(feed.rateStatus("USDC")).toBe("fresh");
    expect(feed.usdRate("ETH")).toBeNull(); // a feed covers ETH: its absence shows
    expect(feed.rateStatus("ETH")).toBe("missing");
    expect(feed.rateStatus("BTC")).toBe("missing");
    expect(feed.rateStatus("toString")).toBe("missing");
    expect(feed.usdRate("toString")).toBeNull();
  });

  it("answers a fixed rate for an asset a source covers while no source holds a rate of it", async () => {
    // An HTTP source that may list every asset but lists only BTC: USDC kept its peg (it was missing: every
    // payment refused no_fx_rate); once a source names USDC, that rate answers, and ages as any other.
    const http = toySource("http", ["USDC", "BTC"]);
    const usdc = { microUsd: 1n, perMinorUnits: 1n };
    const feed = feedWith([http], { staticRates: { USDC: usdc }, fixedRates: { USDC: usdc } });
    http.answer({ observations: [{ assetCode: "BTC", rate: btc, observedAtMs: clock.ms }], failures: [] });
    await feed.refresh();
    expect(feed.usdRate("USDC")).toEqual(usdc);
    expect(feed.rateStatus("USDC")).toBe("fresh");
    const depegged = { microUsd: 99n, perMinorUnits: 100n };
    http.answer({
      observations: [{ assetCode: "USDC", rate: depegged, observedAtMs: clock.ms }],
      failures: [],
    });
    await feed.refresh();
    expect(feed.usdRate("USDC")).toEqual(depegged);
    clock.ms += 61_000;
    expect(feed.usdRate("USDC")).toBeNull();
    expect(feed.rateStatus("USDC")).toBe("stale");
  });

  it("ignores observations of assets a source did not declare; a source's latest answer replaces its last", async () => {
    const chain = toySource("chainlink", ["ETH"]);
    const feed = feedWith([chain]);
    chain.answer({
      observations: [
        { assetCode: "BTC", rate: btc, observedAtMs: clock.ms },
        { assetCode: "ETH", rate: eth3100, observedAtMs: clock.ms },
      ],
      failures: [],
    });
    await feed.refresh();
    expect(feed.usdRate("BTC")).toBeNull();
    expect(feed.usdRate("ETH")).toEqual(eth3100);
    // The same round, now older on the chain's clock (it jumped ahead): the older time is the one that counts.
    chain.answer({
      observations: [{ assetCode: "ETH", rate: eth3100, observedAtMs: clock.ms - 60_001 }],
      failures: [],
    });
    await feed.refresh();
    expect(feed.rateStatus("ETH")).toBe("stale");
  });

  it("answers spreads from its table", () => {
    const feed = feedWith([], { spreadsPpm: { [fxPairKey("USDC", "BTC")]: 2_000n } });
    expect(feed.spreadPpm("USDC", "BTC")).toBe(2_000n);
    expect(feed.spreadPpm("BTC", "USDC")).toBeNull();
  });

  it("refreshes at start and every refreshMs until stopped; joins a refresh in flight", async () => {
    vi.useFakeTimers();
    const chain = toySource("chainlink", ["ETH"]);
    const feed = feedWith([chain]);
    await Promise.all([feed.refresh(), feed.refresh()]);
    expect(chain.fetches).toBe(1);
    feed.start();
    feed.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(chain.fetches).toBe(2);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(chain.fetches).toBe(3);
    await vi.advanceTimersByTimeAsync(20_000);
    expect(chain.fetches).toBe(5);
    await feed.stop();
    feed.start();
    await feed.stop();
    await vi.advanceTimersByTimeAsync(100_000);
    expect(chain.fetches).toBe(6);
  });

  it("logs failures and a source that breaks its contract by throwing, and carries on", async () => {
    const warned: unknown[] = [];
    const errors: unknown[] = [];
    const logger = {
      warn: (fields: unknown) => warned.push(fields),
      error: (fields: unknown) => errors.push(fields),
      info() {},
      debug() {},
      child: () => logger,
    } as unknown as Logger;
    const broken: PolledRateSource = {
      name: "broken",
      assetCodes: ["BTC"],
      fetchRates: () => Promise.reject(new Error("bug")),
    };
    const throwing: PolledRateSource = {
      name: "throwing",
      assetCodes: ["USDC"],
      fetchRates: () => {
        throw new Error("sync bug");
      },
    };
    const chain = toySource("chainlink", ["ETH"]);
    chain.answer({ observations: [], failures: [{ assetCode: "ETH", reason: "timeout", details: "slow" }] });
    const feed = feedWith([broken, throwing, chain], { logger });
    await feed.refresh();
    expect(warned).toEqual([{ source: "chainlink", asset: "ETH", reason: "timeout", details: "slow" }]);
    expect(errors).toHaveLength(2);
  });

  it("refuses bad configuration", () => {
    expect(() => feedWith([], { maxAgeMs: 0 })).toThrow(RateConfigError);
    expect(() => feedWith([], { refreshMs: 1.5 })).toThrow(RateConfigError);
    expect(() => feedWith([], { staticRates: { DOGE: btc } })).toThrow(RateConfigError);
    expect(() => feedWith([], { staticRates: { ETH: { microUsd: 0n, perMinorUnits: 1n } } })).toThrow(
      RateConfigError,
    );
    expect(() => feedWith([], { disagreementMaxBps: 0 })).toThrow(RateConfigError);
    expect(() => feedWith([], { disagreementMaxBps: 2.5 })).toThrow(RateConfigError);
    const many = Array.from({ length: 9 }, (_, i) => toySource(`s${i}`, []));
    expect(() => feedWith(many)).toThrow(RateConfigError);
  });
});
