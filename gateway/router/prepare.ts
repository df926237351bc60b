// Per-snapshot work done once, so that route() does only the per-payment arithmetic: cross rates between
// every asset with a USD rate and each rail's asset, the network fee where it does not depend on the
// amount, the failure odds, and every exclusion whose text does not depend on the payment.

import {
  type DestinationKind,
  divCeil,
  ppmTotal,
  type RailKind,
  type RailSnapshot,
  type UsdRate,
} from "../../core/index.ts";
import type { Exclusion, ExclusionReason, FxRate, Snapshot } from "./types.ts";

/** What one failed attempt costs beyond its network fee when the policy does not say: USD 0.01. */
export const failureCostMicroUsdDefault = 10_000n;

/** One bit per destination kind, so a rail's reach is one integer. */
export const destinationBits: Readonly<Record<DestinationKind, number>> = {
  account: 1,
  evm_address: 2,
  evm_split: 4,
  bolt11: 8,
  lightning_node: 16,
  stripe_account: 32,
  lightning_address: 64,
};

/**
 * Which destinations each kind of rail can reach at all: a BOLT11 invoice or a node key → Lightning;
 * a 0x address or a split → EVM; a Switchyard account → internal; a Stripe connected account → fiat.
 * A rail reaches a destination when its snapshot lists the destination's kind and its kind allows it, and,
 * for a 0x address that names its chain, when the rail settles on that chain (`chainIdReaches`).
 */
export const reachableByKind: Readonly<Record<RailKind, readonly DestinationKind[]>> = {
  internal: ["account"],
  evm: ["evm_address", "evm_split"],
  lightning: ["bolt11", "lightning_node", "lightning_address"],
  fiat: ["stripe_account"],
};

/**
 * Whether a rail on `railChainId` (undefined: it names none) reaches an address on `addressChainId`: an address
 * that names no chain is reached on any chain; one that names a chain only by the rail settling on it.
 */
export function chainIdReaches(railChainId: number | undefined, addressChainId: number | undefined): boolean {
  return addressChainId === undefined || railChainId === addressChainId;
}

function kindMask(kind: RailKind): number {
  let mask = 0;
  for (const destination of reachableByKind[kind] ?? []) mask |= destinationBits[destination];
  return mask;
}

/** The conversion from one payment asset into a rail's asset, precomputed. */
export type PreparedCross = {
  readonly same: boolean;
  /** rail minor units = payment minor units × num / den (mid rate), reduced. */
  readonly rate: FxRate;
  /** FX cost in USD micro-units = ceil(amount × fxNum / fxDen): the payment's USD value × spread. */
  readonly fxNum: bigint;
  readonly fxDen: bigint;
  readonly fxDenMinusOne: bigint;
};

export type PreparedRail = {
  readonly snapshot: RailSnapshot;
  readonly rail: string;
  /** An exclusion that holds whatever the payment (unavailable, circuit open, no USD rate for the rail). */
  readonly staticExclusion: Exclusion | null;
  readonly reachMask: number;
  /** The EVM chain the rail settles on, from the snapshot; undefined when it names none. */
  readonly chainId: number | undefined;
  /** The exclusion for a 0x address on a chain other than the rail's. */
  readonly unreachableChain: Exclusion;
  /** Liquidity, or -1n when the rail is not limited. */
  readonly liquidity: bigint;
  readonly feeMin: bigint;
  /** 0: network fee fixed per payment (networkMicroUsd); 1: Lightning routing, base + ppm of the amount. */
  readonly networkModel: 0 | 1;
  readonly networkMicroUsd: bigint;
  readonly routingBase: bigint;
  readonly routingPpm: bigint;
  /** The rail asset's USD rate, as numerator and denominator. */
  readonly railMicroUsd: bigint;
  readonly railPerMinorUnits: bigint;
  readonly railPerMinusOne: bigint;
  /** Rail minor units per USD micro-unit, for the candidates' feeRate (made once per snapshot, shared). */
  readonly feeRate: FxRate;
  /** Failure odds: failures / (successes + failures + 1), a prior of one success. */
  readonly failNum: bigint;
  readonly failDen: bigint;
  readonly failDenMinusOne: bigint;
  /** Expected failure cost at the default failure cost, for a fixed network fee (networkModel 0). */
  readonly failureAtDefault: bigint;
  /** The rail asset is worth one micro-USD a minor unit (USDC): conversions to USD are the identity. */
  readonly railUnitRate: boolean;
  readonly latencyMsBig: bigint;
  /** Keyed by payment asset code. */
  readonly cross: Readonly<Record<string, PreparedCross>>;
  /** Each reason's exclusion of this rail, made once; a withheld rate's (stale, disputed) is made when it happens. */
  readonly exclusions: Readonly<Record<PreparedReason, Exclusion>>;
};

/** The reasons whose exclusion of a rail is the same for every payment. */
type PreparedReason = Exclude<ExclusionReason, "stale_rate" | "disputed_rate">;

export type PreparedRails = {
  readonly rails: readonly PreparedRail[];
  /** What these were computed from, checked by identity so a stale preparation is never used. */
  readonly source: Snapshot["rails"];
  readonly usdRates: Snapshot["usdRates"];
  readonly fxSpreadsPpm: Snapshot["fxSpreadsPpm"];
};

/** A snapshot with its preparation attached; route() uses it when it still matches the snapshot. */
export type PreparedSnapshot = Snapshot & { readonly prepared: PreparedRails };

export function gcd(a: bigint, b: bigint): bigint {
  let x = a < 0n ? -a : a;
  let y = b < 0n ? -b : b;
  while (y !== 0n) {
    const t = x % y;
    x = y;
    y = t;
  }
  return x;
}

export function fxPairKey(from: string, to: string): string {
  return `${from}->${to}`;
}

function crossFor(
  paymentCode: string,
  paymentRate: UsdRate,
  rail: RailSnapshot,
  railRate: UsdRate,
  spreads: Snapshot["fxSpreadsPpm"],
): PreparedCross {
  if (paymentCode === rail.asset.code) {
    return { same: true, rate: { num: 1n, den: 1n }, fxNum: 0n, fxDen: 1n, fxDenMinusOne: 0n };
  }
  const num = paymentRate.microUsd * railRate.perMinorUnits;
  const den = paymentRate.perMinorUnits * railRate.microUsd;
  const divisor = gcd(num, den) || 1n;
  const pairSpread = spreads?.[fxPairKey(paymentCode, rail.asset.code)];
  // A negative spread from the source would be a gain: never trusted, the rail's own spread applies.
  const spread = pairSpread !== undefined && pairSpread >= 0n ? pairSpread : (rail.fxSpreadPpm ?? 0n);
  const fxNum = paymentRate.microUsd * spread;
  const fxDen = paymentRate.perMinorUnits * ppmTotal;
  const fxDivisor = gcd(fxNum, fxDen) || 1n;
  return {
    same: false,
    rate: { num: num / divisor, den: den / divisor },
    fxNum: fxNum / fxDivisor,
    fxDen: fxDen / fxDivisor,
    fxDenMinusOne: fxDen / fxDivisor - 1n,
  };
}

function validRate(rate: UsdRate | undefined): rate is UsdRate {
  return rate !== undefined && rate.microUsd > 0n && rate.perMinorUnits > 0n;
}

function exclusionsFor(rail: RailSnapshot): Record<PreparedReason, Exclusion> {
  const id = rail.rail;
  const code = rail.asset.code;
  const make = (reason: PreparedReason, detail: string): Exclusion => ({ rail: id, reason, detail });
  return {
    rail_unavailable: make("rail_unavailable", "the rail is not available"),
    not_allowed: make("not_allowed", "the policy does not allow this rail"),
    unreachable_destination: make(
      "unreachable_destination",
      `the rail reaches only ${rail.reaches.join(", ") || "nothing"}`,
    ),
    below_minimum: make(
      "below_minimum",
      `the amount is below the rail's minimum of ${rail.amountMin} ${code}`,
    ),
    above_maximum: make(
      "above_maximum",
      `the amount is above the rail's maximum of ${rail.amountMax} ${code}`,
    ),
    insufficient_liquidity: make(
      "insufficient_liquidity",
      // No number: the rail's liquidity is the gateway's shared balance (a hot wallet, a channel, a provider
      // account), not a tenant's fact. The operator reads it from the rail's snapshot, not from a payment.
      "the amount is above what the rail can send now",
    ),
    fee_above_max: make("fee_above_max", "the estimated fee is above the policy's maximum"),
    latency_above_max: make(
      "latency_above_max",
      `the rail's expected latency of ${rail.latencyMs} ms is above the policy's maximum`,
    ),
    no_fx_rate: make("no_fx_rate", `no USD rate for the payment's asset or the rail's asset ${code}`),
    circuit_open: make("circuit_open", "the rail failed repeatedly and is paused until it is probed back in"),
  };
}

/**
 * What is wrong with a rail's snapshot, or null. A rail reporting nonsense (a negative fee, a minimum above
 * its maximum) is treated as unavailable rather than trusted: a negative cost would win every ranking.
 */
export function invalidSnapshotReason(rail: RailSnapshot): string | null {
  if (rail.amountMin < 0n || rail.amountMax < rail.amountMin) return "amountMin must be ≥ 0 and ≤ amountMax";
  if (rail.liquidity !== null && rail.liquidity < 0n) return "liquidity must be ≥ 0";
  if (rail.feeFixed < 0n || rail.feePpm < 0n || (rail.feeMin ?? 0n) < 0n) return "fees must be ≥ 0";
  if (rail.networkFeeMicroUsd < 0n) return "networkFeeMicroUsd must be ≥ 0";
  if ((rail.fxSpreadPpm ?? 0n) < 0n) return "fxSpreadPpm must be ≥ 0";
  if (!Number.isFinite(rail.latencyMs) || rail.latencyMs < 0) return "latencyMs must be a finite number ≥ 0";
  if (rail.chainId !== undefined && !(Number.isSafeInteger(rail.chainId) && rail.chainId > 0))
    return "chainId must be a positive integer";
  const model = rail.networkFee;
  if (model?.kind === "evm_gas" && (model.gasUnits < 0n || model.gasPriceWei < 0n)) return "gas must be ≥ 0";
  if (model?.kind === "evm_gas" && (model.weiPerMinorUnit ?? 1n) <= 0n) return "weiPerMinorUnit must be > 0";
  if (model?.kind === "lightning_routing" && (model.base < 0n || model.ppm < 0n))
    return "routing fee must be ≥ 0";
  return null;
}

/**
 * A rate missing for `code`: stale_rate when the source has one too old to use, disputed_rate when its sources
 * disagree, else no_fx_rate.
 */
export function rateExclusion(rail: string, code: string, snapshot: Snapshot, what: string): Exclusion {
  if (snapshot.staleAssets?.includes(code) === true)
    return { rail, reason: "stale_rate", detail: `the USD rate of ${what} ${code} is too old to use` };
  if (snapshot.disputedAssets?.includes(code) === true)
    return {
      rail,
      reason: "disputed_rate",
      detail: `the USD rate sources of ${what} ${code} disagree: neither rate is used`,
    };
  return { rail, reason: "no_fx_rate", detail: `no USD rate for ${what} ${code}` };
}

/** Whether the snapshot leaves `code` out of its rates for a reason of its own (stale or disputed), not for none. */
export function rateWithheld(snapshot: Snapshot, code: string): boolean {
  return snapshot.staleAssets?.includes(code) === true || snapshot.disputedAssets?.includes(code) === true;
}

function countOf(value: number): bigint {
  return Number.isFinite(value) && value > 0 ? BigInt(Math.trunc(value)) : 0n;
}

function prepareRail(rail: RailSnapshot, snapshot: Snapshot): PreparedRail {
  const exclusions = exclusionsFor(rail);
  const railRate = snapshot.usdRates[rail.asset.code];
  let staticExclusion: Exclusion | null = null;
  const invalid = invalidSnapshotReason(rail);
  if (!rail.available) staticExclusion = exclusions.rail_unavailable;
  else if (invalid !== null) {
    staticExclusion = {
      rail: rail.rail,
      reason: "rail_unavailable",
      detail: `invalid rail snapshot: ${invalid}`,
    };
  } else if (rail.circuit === "open") staticExclusion = exclusions.circuit_open;

  let networkModel: 0 | 1 = 0;
  let networkMicroUsd = rail.networkFeeMicroUsd;
  let routingBase = 0n;
  let routingPpm = 0n;
  const model = rail.networkFee;
  if (model?.kind === "evm_gas") {
    // A stale rate of the gas token still prices the estimate (Snapshot.gasRates); none at all (or a disputed one)
    // excludes the rail.
    const native = snapshot.usdRates[model.nativeAsset] ?? snapshot.gasRates?.[model.nativeAsset];
    if (validRate(native)) {
      // wei × (µUSD per minor unit) / (wei per minor unit), rounded up: an estimate of a cost.
      networkMicroUsd = divCeil(
        model.gasUnits * model.gasPriceWei * native.microUsd,
        native.perMinorUnits * (model.weiPerMinorUnit ?? 1n),
      );
    } else if (staticExclusion === null) {
      staticExclusion = rateExclusion(rail.rail, model.nativeAsset, snapshot, "the native asset");
    }
  } else if (model?.kind === "lightning_routing") {
    networkModel = 1;
    routingBase = model.base;
    routingPpm = model.ppm;
  }

  const cross: Record<string, PreparedCross> = {};
  if (validRate(railRate)) {
    for (const [code, rate] of Object.entries(snapshot.usdRates)) {
      if (validRate(rate)) cross[code] = crossFor(code, rate, rail, railRate, snapshot.fxSpreadsPpm);
    }
  } else if (staticExclusion === null) {
    staticExclusion = rateWithheld(snapshot, rail.asset.code)
      ? rateExclusion(rail.rail, rail.asset.code, snapshot, "the rail's asset")
      : exclusions.no_fx_rate;
  }

  let reachMask = 0;
  for (const kind of rail.reaches) reachMask |= destinationBits[kind] ?? 0;
  reachMask &= kindMask(rail.kind);
  const failures = countOf(rail.failures ?? 0);
  const successes = countOf(rail.successes ?? 0);
  return {
    snapshot: rail,
    rail: rail.rail,
    staticExclusion,
    reachMask,
    chainId: rail.chainId,
    unreachableChain: {
      rail: rail.rail,
      reason: "unreachable_destination",
      detail:
        rail.chainId === undefined
          ? "the address names a chain and the rail names none"
          : `the address names a chain other than the rail's chain ${rail.chainId}`,
    },
    liquidity: rail.liquidity ?? -1n,
    feeMin: rail.feeMin ?? 0n,
    networkModel,
    networkMicroUsd,
    routingBase,
    routingPpm,
    railMicroUsd: validRate(railRate) ? railRate.microUsd : 1n,
    railPerMinorUnits: validRate(railRate) ? railRate.perMinorUnits : 1n,
    railPerMinusOne: validRate(railRate) ? railRate.perMinorUnits - 1n : 0n,
    feeRate: validRate(railRate)
      ? { num: railRate.perMinorUnits, den: railRate.microUsd }
      : { num: 1n, den: 1n },
    failNum: failures,
    failDen: successes + failures + 1n,
    failDenMinusOne: successes + failures,
    failureAtDefault: divCeil(
      failures * (networkMicroUsd + failureCostMicroUsdDefault),
      successes + failures + 1n,
    ),
    railUnitRate: validRate(railRate) && railRate.microUsd === railRate.perMinorUnits,
    latencyMsBig:
      Number.isFinite(rail.latencyMs) && rail.latencyMs > 0 ? BigInt(Math.ceil(rail.latencyMs)) : 0n,
    cross,
    exclusions,
  };
}

export function prepareRails(snapshot: Snapshot): PreparedRails {
  return {
    rails: snapshot.rails.map((rail) => prepareRail(rail, snapshot)),
    source: snapshot.rails,
    usdRates: snapshot.usdRates,
    fxSpreadsPpm: snapshot.fxSpreadsPpm,
  };
}

/**
 * Does the per-snapshot work once. Call it whenever the snapshot is refreshed and pass the result to
 * route(): it is a Snapshot, and route() falls back to preparing on the fly when given a plain one.
 */
export function prepareSnapshot(snapshot: Snapshot): PreparedSnapshot {
  return { ...snapshot, prepared: prepareRails(snapshot) };
}

/** The snapshot's preparation if it still matches it, else a fresh one. */
export function preparedFor(snapshot: Snapshot): PreparedRails {
  const prepared = (snapshot as Partial<PreparedSnapshot>).prepared;
  if (
    prepared !== undefined &&
    prepared.source === snapshot.rails &&
    prepared.usdRates === snapshot.usdRates &&
    prepared.fxSpreadsPpm === snapshot.fxSpreadsPpm
  ) {
    return prepared;
  }
  return prepareRails(snapshot);
}
