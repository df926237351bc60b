// Rates and conversions. A rate source answers the USD mid rate of an asset and the spread of a pair;
// the snapshot carries what it answered, so route() stays pure. Every conversion names its rounding.

import type { RailSnapshot, UsdRate } from "../../core/index.ts";
import { divCeil, divFloor, divHalfEven } from "../../core/index.ts";
import { fxPairKey } from "./prepare.ts";
import type { Candidate, FxRate, Snapshot } from "./types.ts";

export type Rounding = "floor" | "ceil" | "half_even";

/** Where rates come from: static tables in development, a feed in production. */
export interface RateSource {
  /** The mid rate of one asset, USD micro-units per minor unit; null when unknown. */
  usdRate(assetCode: string): UsdRate | null;
  /** Spread charged to convert `from` into `to`, parts per million; null when the source names none. */
  spreadPpm(from: string, to: string): bigint | null;
  /** Whether the source has a rate for the asset that is too old to use (usdRate then answers null). */
  isStale?(assetCode: string): boolean;
  /** Whether the source's own sources give rates of the asset too far apart to use either (usdRate then answers null). */
  isDisputed?(assetCode: string): boolean;
  /** The last rate observed of the asset, fresh or not; null when none ever was, or while its sources disagree. */
  lastRate?(assetCode: string): UsdRate | null;
}

export type StaticRates = {
  readonly usdRates: Readonly<Record<string, UsdRate>>;
  /** Keyed by fxPairKey(from, to). */
  readonly spreadsPpm?: Readonly<Record<string, bigint>>;
};

/** A rate source over fixed tables, for development and tests. */
export function staticRateSource(rates: StaticRates): RateSource {
  return {
    usdRate: (assetCode) => rates.usdRates[assetCode] ?? null,
    spreadPpm: (from, to) => rates.spreadsPpm?.[fxPairKey(from, to)] ?? null,
  };
}

/** Maximum number of assets a snapshot prices; the spread table is its square. */
export const snapshotAssetsMax = 64;

/**
 * Builds a snapshot from the rails' own snapshots and a rate source: the USD rate of every asset named
 * (payment assets, the rails' assets, native gas tokens) and the spread of every pair the source knows.
 */
export function buildSnapshot(params: {
  rails: readonly RailSnapshot[];
  rateSource: RateSource;
  assetCodes: readonly string[];
  takenAtMs: number;
}): Snapshot {
  const codes = new Set(params.assetCodes);
  /** Native gas tokens: priced at their last rate when it is stale (gasRates); never while disputed. */
  const gasAssets = new Set<string>();
  for (const rail of params.rails) {
    codes.add(rail.asset.code);
    if (rail.networkFee?.kind === "evm_gas") gasAssets.add(rail.networkFee.nativeAsset);
  }
  for (const code of gasAssets) codes.add(code);
  if (codes.size > snapshotAssetsMax) {
    throw new RangeError(
      `buildSnapshot: ${codes.size} assets, more than snapshotAssetsMax ${snapshotAssetsMax}`,
    );
  }
  const usdRates: Record<string, UsdRate> = {};
  const spreads: Record<string, bigint> = {};
  const staleAssets: string[] = [];
  const disputedAssets: string[] = [];
  const gasRates: Record<string, UsdRate> = {};
  for (const code of codes) {
    const rate = params.rateSource.usdRate(code);
    if (rate !== null) usdRates[code] = rate;
    else {
      if (params.rateSource.isStale?.(code) === true) staleAssets.push(code);
      else if (params.rateSource.isDisputed?.(code) === true) disputedAssets.push(code);
      const last = gasAssets.has(code) ? (params.rateSource.lastRate?.(code) ?? null) : null;
      if (last !== null) gasRates[code] = last;
    }
  }
  for (const from of codes) {
    for (const to of codes) {
      if (from === to) continue;
      const spread = params.rateSource.spreadPpm(from, to);
      if (spread !== null) spreads[fxPairKey(from, to)] = spread;
    }
  }
  return {
    rails: params.rails,
    usdRates,
    fxSpreadsPpm: spreads,
    takenAtMs: params.takenAtMs,
    ...(staleAssets.length === 0 ? {} : { staleAssets }),
    ...(disputedAssets.length === 0 ? {} : { disputedAssets }),
    ...(Object.keys(gasRates).length === 0 ? {} : { gasRates }),
  };
}

function divide(numerator: bigint, denominator: bigint, rounding: Rounding): bigint {
  switch (rounding) {
    case "floor":
      return divFloor(numerator, denominator);
    case "ceil":
      return divCeil(numerator, denominator);
    case "half_even":
      return divHalfEven(numerator, denominator);
  }
}

/** amount × rate, rounded as named. */
export function convert(amount: bigint, rate: FxRate, rounding: Rounding): bigint {
  return divide(amount * rate.num, rate.den, rounding);
}

/** The USD micro-units an amount is worth, rounded as named. */
export function toMicroUsd(amount: bigint, rate: UsdRate, rounding: Rounding): bigint {
  return divide(amount * rate.microUsd, rate.perMinorUnits, rounding);
}

/** The minor units a number of USD micro-units buys, rounded as named. */
export function fromMicroUsd(microUsd: bigint, rate: UsdRate, rounding: Rounding): bigint {
  return divide(microUsd * rate.perMinorUnits, rate.microUsd, rounding);
}

/** The mid rate from one asset to another (to-minor units per from-minor unit), reduced; null without both USD rates. */
export function crossRate(from: UsdRate | undefined, to: UsdRate | undefined): FxRate | null {
  if (from === undefined || to === undefined || to.microUsd <= 0n || from.perMinorUnits <= 0n) return null;
  const num = from.microUsd * to.perMinorUnits;
  const den = from.perMinorUnits * to.microUsd;
  let a = num;
  let b = den;
  while (b !== 0n) [a, b] = [b, a % b];
  return { num: num / a, den: den / a };
}

/** What the payments service sends on the candidate's rail. */
export type RailAmounts = {
  /** The rail's asset. */
  readonly asset: Candidate["asset"];
  /** The payment's amount at the candidate's mid rate, rounded down: never more than the payment is worth. */
  readonly amount: bigint;
  /** The most the rail may spend in fees, in its asset, rounded down: never above the candidate's fee cap. */
  readonly feeMax: bigint;
};

/**
 * How much of the candidate's asset to send for `paymentAmount` (in the payment's asset), and the fee cap
 * in the rail's asset. For the amount the decision was made for, this equals the candidate's own fields.
 */
export function railAmounts(candidate: Candidate, paymentAmount: bigint): RailAmounts {
  return {
    asset: candidate.asset,
    amount: convert(paymentAmount, candidate.rate, "floor"),
    feeMax: candidate.feeMax,
  };
}
