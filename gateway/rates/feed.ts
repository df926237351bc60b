// The rate feed: polls its sources in the background and answers the router's RateSource synchronously from
// what it holds. Per source and asset it keeps the latest rate and the time it describes; an asset is answered
// by the first source, in priority order, whose rate is fresh (no older than maxAgeMs). A rate that has aged
// past maxAgeMs is stale, one never observed is missing: usdRate answers null for both, and rateStatus tells
// them apart (the router's stale_rate vs no_fx_rate). The sources check each other: when the lowest and the highest
// of their latest rates of an asset, fresh or stale, are further apart than disagreementMaxBps, none is used
// (disputed: the router's disputed_rate), since nothing says which one is wrong, until they come within it. A stale
// rate counts: the source that went quiet may be the right one (an HTTP source quoting cents is fresh after every
// fetch, while a feed that stopped updating ages), and nothing held in memory is needed, so a restart or another
// process reads the same. The price: while one source is down, the others must stay within the bound of its last
// rate. A source whose answer stops naming an asset has not gone quiet: it says it has no rate, so its last one
// weighs in the check only while fresh (it still answers until it ages, as a failed source's does; which sources said
// so is the one thing held in memory, and a restart forgets their rates too). A single source's first rate has
// nothing to be checked against, and is taken as it comes. The static table is for development: it answers only
// assets no source covers (USDC, USD beside feeds for ETH and BTC), so a stale feed still shows as stale. Fixed rates
// (USD, USDC's peg) answer an asset a source covers while no source holds a rate of it.

import type { UsdRate } from "../../core/index.ts";
import { assetByCode, type Logger, silentLogger } from "../../core/index.ts";
import { fxPairKey, type RateSource } from "../router/index.ts";
import { RateConfigError } from "./errors.ts";
import type { PolledRateSource, RateFetchResult, RateObservation } from "./types.ts";

export type RateStatus = "fresh" | "stale" | "disputed" | "missing";

export type RateFeedParams = {
  /** In priority order: the first with a fresh rate for an asset answers it (unless the asset is disputed). */
  readonly sources: readonly PolledRateSource[];
  /** Development only: rates for assets no source covers, always fresh. */
  readonly staticRates?: Readonly<Record<string, UsdRate>>;
  /**
   * Rates that hold by definition or peg (USD, USDC): answered for an asset while no source holds a rate of it, even
   * one a source covers (an HTTP source may list any asset, and names only those it has).
   */
  readonly fixedRates?: Readonly<Record<string, UsdRate>>;
  /** Spreads charged per pair, parts per million, keyed by fxPairKey(from, to). */
  readonly spreadsPpm?: Readonly<Record<string, bigint>>;
  /** A rate older than this is stale. */
  readonly maxAgeMs: number;
  /**
   * How far apart the sources' latest rates of one asset (a stale one included, unless its source has since said it
   * does not list the asset) may be, basis points of the lower, before none is used; default
   * rateDisagreementMaxBpsDefault.
   */
  readonly disagreementMaxBps?: number;
  /** Time between the end of one refresh and the start of the next. */
  readonly refreshMs: number;
  /** Wall clock, ms since the epoch; default Date.now. */
  readonly nowMs?: () => number;
  /** Where failed fetches (warn), rates not taken and disputes (error) are reported; silent by default. */
  readonly logger?: Logger;
};

export type RateFeed = RateSource & {
  /**
   * fresh: usdRate answers it; stale: only rates older than maxAgeMs; disputed: a fresh rate, but the sources' latest
   * rates (a stale one included, as in disagreementMaxBps) further apart than it; missing: never observed, or unknown.
   */
  rateStatus(assetCode: string): RateStatus;
  /** The assets whose every source's rate is stale, sorted. */
  staleAssets(): string[];
  /** When the rate usdRate would answer was observed (ms), and by which source; null unless fresh. */
  rateOrigin(assetCode: string): { readonly source: string; readonly observedAtMs: number } | null;
  /** Fetches every source once now (a refresh already running is joined, not repeated). Never rejects. */
  refresh(): Promise<void>;
  /** Refreshes now and then every refreshMs until stop(). */
  start(): void;
  /** Stops refreshing; resolves when a refresh in flight has ended. */
  stop(): Promise<void>;
};

/** The most sources one feed polls. */
export const rateSourcesMax = 8;

/**
 * The most a source's rate may move at once, either way, from a fresh rate it gave before: beyond it the new rate is
 * not taken. Markets move less in a refresh; mistakes move by orders of magnitude.
 */
export const rateMoveFactorMax = 2n;

/** Whether `next` is more than rateMoveFactorMax times `last`, or less than its fraction (exact, no division). */
function movedTooFar(last: UsdRate, next: UsdRate): boolean {
  const nextScaled = next.microUsd * last.perMinorUnits;
  const lastScaled = last.microUsd * next.perMinorUnits;
  return nextScaled > lastScaled * rateMoveFactorMax || nextScaled * rateMoveFactorMax < lastScaled;
}

/**
 * How far apart two sources may put an asset by default (5 %): more than a feed that updates on a 0.5 % deviation
 * and a market quote a refresh apart differ, even on a fast day; less than a source in another unit, or pinned.
 */
export const rateDisagreementMaxBpsDefault = 500;

/** Whether `a` is below `b` (exact, no division). */
const below = (a: UsdRate, b: UsdRate) => a.microUsd * b.perMinorUnits < b.microUsd * a.perMinorUnits;

/** Whether `high` is more than `bps` basis points above `low` (exact, no division). */
function apartBy(low: UsdRate, high: UsdRate, bps: number): boolean {
  return (
    high.microUsd * low.perMinorUnits * 10_000n > low.microUsd * high.perMinorUnits * (10_000n + BigInt(bps))
  );
}

const rateText = (rate: UsdRate) => `${rate.microUsd} µUSD / ${rate.perMinorUnits}`;

/** A source's latest observation of an asset, and the source's index in priority order. */
type Held = { readonly observation: RateObservation; readonly index: number };

/** What answers an asset: a source's fresh rate, or none while the sources' rates disagree. */
type Reading = ({ readonly kind: "fresh" } & Held) | { readonly kind: "disputed" };

export function createRateFeed(params: RateFeedParams): RateFeed {
  validate(params);
  const { sources, maxAgeMs, refreshMs } = params;
  const disagreementMaxBps = params.disagreementMaxBps ?? rateDisagreementMaxBpsDefault;
  const nowMs = params.nowMs ?? Date.now;
  const logger = params.logger ?? silentLogger;
  const staticRates = params.staticRates ?? {};
  const fixedRates = params.fixedRates ?? {};
  /** Whether any source holds a rate of the asset (its rate then answers, fresh or not). */
  const observed = (assetCode: string) => held.some((byAsset) => byAsset.has(assetCode));
  /** The fixed rate of a covered asset no source holds a rate of, or null. */
  const fixedOf = (assetCode: string): UsdRate | null =>
    Object.hasOwn(fixedRates, assetCode) && !observed(assetCode) ? fixedRates[assetCode]! : null;
  /** Per source (same index as `sources`), the latest observation of each asset it covers. */
  const held: Map<string, RateObservation>[] = sources.map(() => new Map());
  const covered = new Set(sources.flatMap((source) => source.assetCodes));

  let inFlight: Promise<void> | null = null;
  let timer: NodeJS.Timeout | null = null;
  let running = false;
  /** Bumped by start() and stop(): a loop from before a stop() never schedules again. */
  let generation = 0;

  function isFresh(observation: RateObservation): boolean {
    return nowMs() - observation.observedAtMs <= maxAgeMs;
  }

  /**
   * What the sources hold of an asset: the first fresh rate in priority order (null when none is fresh), the first
   * rate in priority order however old, and the lowest and the highest of every source's latest, fresh or stale. A
   * stale rate whose source has since said it does not list the asset is left out of the lowest and the highest, and
   * is the first however old only when no other source holds a rate that counts. Null when no source has observed it.
   */
  function latestOf(
    assetCode: string,
  ): { first: Held | null; firstSeen: Held; low: Held; high: Held } | null {
    let first: Held | null = null;
    let firstSeen: Held | null = null;
    let firstWithdrawn: Held | null = null;
    let low: Held | null = null;
    let high: Held | null = null;
    for (let index = 0; index < sources.length; index += 1) {
      const observation = held[index]!.get(assetCode);
      if (observation === undefined) continue;
      const one = { observation, index };
      const fresh = isFresh(observation);
      if (fresh) first ??= one;
      if (!fresh && withdrawn(index, assetCode)) {
        firstWithdrawn ??= one;
        continue;
      }
      firstSeen ??= one;
      if (low === null || below(observation.rate, low.observation.rate)) low = one;
      if (high === null || below(high.observation.rate, observation.rate)) high = one;
    }
    firstSeen ??= firstWithdrawn;
    if (firstSeen === null) return null;
    return { first, firstSeen, low: low ?? firstSeen, high: high ?? firstSeen };
  }

  /** Whether the lowest and the highest of the sources' latest rates are further apart than disagreementMaxBps. */
  const disagree = (latest: { low: Held; high: Held }) =>
    apartBy(latest.low.observation.rate, latest.high.observation.rate, disagreementMaxBps);

  /**
   * What answers an asset: the first fresh rate in priority order, unless the sources' latest rates disagree (a
   * stale one too: the source that went quiet may be the right one); null when none is fresh.
   */
  function reading(assetCode: string): Reading | null {
    const latest = latestOf(assetCode);
    if (latest === null || latest.first === null) return null;
    return disagree(latest) ? { kind: "disputed" } : { kind: "fresh", ...latest.first };
  }

  /** Whether `rate` is within disagreementMaxBps of the latest rate of every other source, and there is one. */
  function othersConfirm(index: number, assetCode: string, rate: UsdRate): boolean {
    let others = 0;
    for (let other = 0; other < sources.length; other += 1) {
      const observation = other === index ? undefined : held[other]!.get(assetCode);
      if (observation === undefined || (!isFresh(observation) && withdrawn(other, assetCode))) continue;
      others += 1;
      const [low, high] = below(rate, observation.rate) ? [rate, observation.rate] : [observation.rate, rate];
      if (apartBy(low, high, disagreementMaxBps)) return false;
    }
    return others > 0;
  }

  /** Assets whose sources disagreed at the last refresh: a dispute is logged when it begins and when it ends. */
  const disputed = new Set<string>();
  /**
   * Per source, the assets whose last mention in its answers said it does not list them (not_listed): its next answer
   * that names one (a rate, or a failure of that asset's) takes it out. Its rate of one, once stale, no longer weighs
   * in the check: it has not gone quiet (which may make it the right one), it has said it has nothing. Kept in memory,
   * as a restart forgets the rate itself.
   */
  const unlisted: Set<string>[] = sources.map(() => new Set());
  const withdrawn = (index: number, assetCode: string) => unlisted[index]!.has(assetCode);

  function rateStatus(assetCode: string): RateStatus {
    if (!covered.has(assetCode)) return Object.hasOwn(staticRates, assetCode) ? "fresh" : "missing";
    const now = reading(assetCode);
    if (now !== null) return now.kind;
    if (fixedOf(assetCode) !== null) return "fresh";
    return observed(assetCode) ? "stale" : "missing";
  }

  /** Logs each asset whose sources began or ceased to disagree since the last refresh. */
  function noteDisputes(): void {
    for (const assetCode of covered) {
      const latest = latestOf(assetCode);
      const now = latest !== null && disagree(latest);
      if (now && !disputed.has(assetCode)) {
        disputed.add(assetCode);
        const side = ({ observation, index }: Held) => ({
          source: sources[index]!.name,
          rate: rateText(observation.rate),
          fresh: isFresh(observation),
        });
        logger.error(
          { asset: assetCode, low: side(latest.low), high: side(latest.high) },
          `rate sources disagree by more than ${disagreementMaxBps} bps: neither is used until they agree`,
        );
      } else if (!now && disputed.delete(assetCode)) {
        logger.info({ asset: assetCode }, "rate sources no longer disagree: the rate is used");
      }
    }
  }

  function keep(index: number, result: RateFetchResult): void {
    const source = sources[index]!;
    const byAsset = held[index]!;
    for (const observation of result.observations) {
      // Only the assets the source declared: the map stays bounded whatever a source returns.
      if (!source.assetCodes.includes(observation.assetCode)) continue;
      unlisted[index]!.delete(observation.assetCode);
      const before = byAsset.get(observation.assetCode);
      if (
        before !== undefined &&
        isFresh(before) &&
        movedTooFar(before.rate, observation.rate) &&
        !othersConfirm(index, observation.assetCode, observation.rate)
      ) {
        // A typo (`price-feed -- BTC 1`), a feed pinned at its bound, a source answering in another unit: the rate
        // it had stays, and ages out if the source keeps saying so (a stale rate excludes its rails; any rate is
        // then taken afresh). A move the other sources' rates confirm is taken: a source correcting its own mistake.
        logger.error(
          {
            source: source.name,
            asset: observation.assetCode,
            from: rateText(before.rate),
            to: rateText(observation.rate),
          },
          `rate moved by more than ${rateMoveFactorMax}× at once: not taken`,
        );
        continue;
      }
      // The latest fetch replaces what the source said before, even with an earlier time: a feed's round ages
      // when the chain's clock jumps ahead (see chainlink.ts), and that age must show.
      byAsset.set(observation.assetCode, observation);
    }
    for (const failure of result.failures) {
      const fields = {
        source: source.name,
        asset: failure.assetCode,
        reason: failure.reason,
        details: failure.details,
      };
      if (
        failure.reason !== "not_listed" ||
        failure.assetCode === null ||
        !source.assetCodes.includes(failure.assetCode)
      ) {
        // A failure of the asset (a malformed price of it): the source names it again, and fails, as a quiet one.
        if (failure.assetCode !== null) unlisted[index]!.delete(failure.assetCode);
        logger.warn(fields, "rate source failed");
        continue;
      }
      // The source says it has no rate of the asset now, not that it failed to give one. Its last rate stays (it
      // answers until it ages, and the 2x move check and USDC's peg still see it), but once stale it no longer
      // weighs in the dispute check: counted for ever, a source that dropped ETH against a feed that then moved 5 %
      // left ETH disputed until a restart. Said once, not at every refresh.
      if (withdrawn(index, failure.assetCode)) continue;
      unlisted[index]!.add(failure.assetCode);
      const last = byAsset.get(failure.assetCode);
      if (last === undefined) logger.warn(fields, "rate source failed");
      else
        logger.warn(
          { ...fields, last: rateText(last.rate) },
          "rate source no longer names the asset: its last rate counts until it is stale",
        );
    }
  }

  async function refreshOnce(): Promise<void> {
    // Through then(): a source that throws instead of rejecting is caught the same way.
    const results = await Promise.allSettled(
      sources.map((source) => Promise.resolve().then(() => source.fetchRates())),
    );
    results.forEach((result, index) => {
      if (result.status === "fulfilled") keep(index, result.value);
      // A source's fetchRates never rejects by contract; one that does is a bug in it, reported, not fatal.
      else logger.error({ source: sources[index]!.name, err: result.reason }, "rate source threw");
    });
    noteDisputes();
  }

  function refresh(): Promise<void> {
    if (inFlight === null) {
      inFlight = refreshOnce().finally(() => {
        inFlight = null;
      });
    }
    return inFlight;
  }

  async function loop(loopGeneration: number): Promise<void> {
    await refresh();
    if (running && loopGeneration === generation)
      timer = setTimeout(() => void loop(loopGeneration), refreshMs);
  }

  return {
    usdRate(assetCode) {
      if (!covered.has(assetCode))
        return Object.hasOwn(staticRates, assetCode) ? staticRates[assetCode]! : null;
      const now = reading(assetCode);
      if (now === null) return fixedOf(assetCode);
      return now.kind === "fresh" ? now.observation.rate : null;
    },
    spreadPpm(from, to) {
      const key = fxPairKey(from, to);
      return params.spreadsPpm !== undefined && Object.hasOwn(params.spreadsPpm, key)
        ? params.spreadsPpm[key]!
        : null;
    },
    rateStatus,
    isStale: (assetCode) => rateStatus(assetCode) === "stale",
    isDisputed: (assetCode) => rateStatus(assetCode) === "disputed",
    lastRate(assetCode) {
      // The fresh one usdRate answers, else the first source's (by priority) that counts, however old (one whose
      // source no longer lists the asset only when no other holds one); none
      // while the sources' latest rates disagree, stale or not (a gas estimate at a rate one source may have wrong
      // by orders of magnitude would be a fee cap as wrong).
      const latest = covered.has(assetCode) ? latestOf(assetCode) : null;
      if (latest === null || disagree(latest)) return null;
      return (latest.first ?? latest.firstSeen).observation.rate;
    },
    staleAssets() {
      return [...covered].filter((code) => rateStatus(code) === "stale").sort();
    },
    rateOrigin(assetCode) {
      const found = covered.has(assetCode) ? reading(assetCode) : null;
      return found?.kind === "fresh"
        ? { source: sources[found.index]!.name, observedAtMs: found.observation.observedAtMs }
        : null;
    },
    refresh,
    start() {
      if (running) return;
      running = true;
      generation += 1;
      void loop(generation);
    },
    async stop() {
      running = false;
      generation += 1;
      if (timer !== null) clearTimeout(timer);
      timer = null;
      await inFlight;
    },
  };
}

function validate(params: RateFeedParams): void {
  if (params.sources.length > rateSourcesMax)
    throw new RateConfigError(
      `rate feed: ${params.sources.length} sources, more than rateSourcesMax ${rateSourcesMax}`,
    );
  for (const [what, value] of [
    ["maxAgeMs", params.maxAgeMs],
    ["refreshMs", params.refreshMs],
    ["disagreementMaxBps", params.disagreementMaxBps ?? rateDisagreementMaxBpsDefault],
  ] as const)
    if (!Number.isInteger(value) || value <= 0)
      throw new RateConfigError(`rate feed: ${what} must be a positive integer, not ${value}`);
  for (const code of Object.keys(params.staticRates ?? {}))
    if (assetByCode(code) === null)
      throw new RateConfigError(`rate feed: static rate for unknown asset ${code}`);
  for (const [code, rate] of Object.entries(params.staticRates ?? {}))
    if (rate.microUsd <= 0n || rate.perMinorUnits <= 0n)
      throw new RateConfigError(`rate feed: the static rate of ${code} is not positive`);
}
