// The router's vocabulary: the snapshot of every rail, what the payment asks for, what the caller allows,
// and the decision with its reasons. Pure types. Where money goes and what a rail offers (Destination,
// RailSnapshot) are core's: rails produce them without knowing the router.
import type { Asset, Destination, RailKind, RailSnapshot, UsdRate } from "../../core/index.ts";

export type Snapshot = {
  readonly rails: readonly RailSnapshot[];
  /** USD value of each asset by code. */
  readonly usdRates: Readonly<Record<string, UsdRate>>;
  readonly takenAtMs: number;
  /** FX spread per pair, keyed `${from}->${to}` (asset codes), parts per million. See fx.ts. */
  readonly fxSpreadsPpm?: Readonly<Record<string, bigint>>;
  /**
   * Assets whose rate the source has but too old to use (left out of usdRates): a rail that needs one is
   * excluded as `stale_rate` rather than `no_fx_rate`.
   */
  readonly staleAssets?: readonly string[];
  /**
   * Assets whose rate sources disagree beyond their bound (left out of usdRates, and of gasRates): a rail that needs
   * one is excluded as `disputed_rate`.
   */
  readonly disputedAssets?: readonly string[];
  /**
   * The last rates of native gas tokens whose rate is stale (left out of usdRates): a gas estimate is priced at them
   * rather than its rail excluded — an estimate of a cost, bounded by the payment's fee cap, where an hour-old ETH
   * price would otherwise stop every EVM payout. The payment's own amounts never use them. None for a disputed one:
   * the fee cap would be as wrong as the source that is.
   */
  readonly gasRates?: Readonly<Record<string, UsdRate>>;
};

/**
 * A payee with several ways to be paid. A rail reaches the payee when it reaches one of the methods; with
 * several, it pays the first one listed that it reaches.
 */
export type PayeeTarget = {
  readonly kind: "payee";
  readonly payeeId: string;
  readonly methods: readonly Destination[];
};

/** What the payment asks for. Amount is in the payment's asset. */
export type PaymentIntent = {
  readonly asset: Asset;
  readonly amount: bigint;
  /** One destination, or a payee whose methods the rails compete for. */
  readonly destination: Destination | PayeeTarget;
};

/** What the caller allows. Absent fields do not constrain. */
export type RoutePolicy = {
  readonly maxFeeMicroUsd?: bigint;
  readonly maxFeeBps?: number;
  readonly maxLatencyMs?: number;
  readonly allowedRails?: readonly string[];
  readonly deniedRails?: readonly string[];
  /** What one failed attempt costs beyond its network fee (delay, retry), USD micro-units. Default: failureCostMicroUsdDefault. */
  readonly failureCostMicroUsd?: bigint;
  /** The price of waiting, USD micro-units per second of latency. Default 0: latency only constrains. */
  readonly latencyCostMicroUsdPerS?: bigint;
  /** Head-room of the fee cap over the estimated fee, basis points (5000: cap = estimate × 1.5). Default: feeHeadroomBpsDefault. */
  readonly feeHeadroomBps?: number;
};

/**
 * Every part in USD micro-units, each rounded up (a cost is never under-stated).
 * `feeMicroUsd` = network + provider + fx: the money the payment really costs, which the caps bound.
 * `totalMicroUsd` = fee + failure + latency: what the router ranks by.
 */
export type CostBreakdown = {
  readonly networkMicroUsd: bigint;
  readonly providerMicroUsd: bigint;
  readonly fxMicroUsd: bigint;
  readonly failureMicroUsd: bigint;
  readonly totalMicroUsd: bigint;
  readonly latencyMicroUsd: bigint;
  readonly feeMicroUsd: bigint;
};

/** A conversion rate from the payment's asset to the rail's: rail minor units = payment minor units × num / den. */
export type FxRate = { readonly num: bigint; readonly den: bigint };

export type Candidate = {
  readonly rail: string;
  readonly kind: RailKind;
  /** What this rail pays: the intent's destination, or the payee's method the rail reaches (first listed). */
  readonly destination: Destination;
  readonly cost: CostBreakdown;
  readonly latencyMs: number;
  /** The rail's asset. */
  readonly asset: Asset;
  /** What to send on the rail for the payment's amount, in the rail's asset: amount × rate, rounded down. */
  readonly amount: bigint;
  /** The mid rate (payment asset → rail asset) the amount was converted at; {1,1} for the same asset. */
  readonly rate: FxRate;
  /** The most the payment may spend in fees (network + provider + fx), USD micro-units: min(policy caps, estimate + head-room). */
  readonly feeCapMicroUsd: bigint;
  /** The most the rail may spend (network + provider), in the rail's asset: (feeCap − fx) converted, rounded down. */
  readonly feeMax: bigint;
  /**
   * The rail asset's minor units per USD micro-unit (num / den), that feeMax was converted at: so that a lower cap
   * (a quote paid under tighter constraints) converts the same way, rounded down once. Absent when the asset is worth
   * one micro-USD a minor unit (USDC), where feeMax is feeCap − fx itself.
   */
  readonly feeRate?: FxRate;
};

export type ExclusionReason =
  | "rail_unavailable"
  | "not_allowed"
  | "unreachable_destination"
  | "below_minimum"
  | "above_maximum"
  | "insufficient_liquidity"
  | "fee_above_max"
  | "latency_above_max"
  | "no_fx_rate"
  | "stale_rate"
  | "disputed_rate"
  | "circuit_open";

export type Exclusion = { readonly rail: string; readonly reason: ExclusionReason; readonly detail: string };

/** Candidates cheapest first; `chosen` is the first, or null when every rail was excluded. */
export type RouteDecision = {
  readonly chosen: Candidate | null;
  readonly candidates: readonly Candidate[];
  readonly excluded: readonly Exclusion[];
  /** The payment's amount in USD micro-units, rounded down; null when its asset has no USD rate. */
  readonly amountMicroUsd: bigint | null;
  readonly snapshotTakenAtMs: number;
};
