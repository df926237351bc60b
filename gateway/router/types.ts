// The router's vocabulary: where money goes, what each rail offers right now, what the caller allows,
// and the decision with its reasons. Pure types; adapters import them, never the other way round.
import type { Asset } from "../money/index.ts";

export type RailKind = "internal" | "evm" | "lightning" | "fiat";

/** Where a payment goes. Exactly one kind; the kind decides which rails can reach it. */
export type Destination =
  | { kind: "account"; accountId: string } // a Switchyard account: internal rail
  | { kind: "evm_address"; address: `0x${string}` } // a wallet on the EVM chain
  | { kind: "evm_split"; splitId: `0x${string}` } // a RevenueSplitter split
  | { kind: "bolt11"; invoice: string } // a Lightning invoice
  | { kind: "lightning_node"; pubkey: string } // keysend to a Lightning node
  | { kind: "stripe_account"; accountId: string }; // a Stripe Connect account

export type DestinationKind = Destination["kind"];

/** A price of one asset in USD micro-units per one minor unit, as a rational: exact, no float. */
export type UsdRate = { readonly microUsd: bigint; readonly perMinorUnits: bigint };

/**
 * How a rail's network fee for one payment is estimated. Absent: `networkFeeMicroUsd` as it stands.
 * - `evm_gas`: gas units × gas price (wei) × the native token's USD rate (`usdRates[nativeAsset]`, per wei).
 * - `lightning_routing`: the routing-fee estimate from the rail's quote, base + parts per million of the
 *   amount, in the rail's asset (millisatoshi).
 */
export type NetworkFeeModel =
  | {
      readonly kind: "evm_gas";
      readonly gasUnits: bigint;
      readonly gasPriceWei: bigint;
      readonly nativeAsset: string;
    }
  | { readonly kind: "lightning_routing"; readonly base: bigint; readonly ppm: bigint };

/** The circuit breaker's view of a rail: open excludes it, half_open lets probes through. */
export type CircuitState = "closed" | "open" | "half_open";

/** What one rail offers at the moment its snapshot was taken. Amounts are in the rail's asset. */
export type RailSnapshot = {
  readonly rail: string; // the rail's id: "internal", "evm", "lightning", "fiat"
  readonly kind: RailKind;
  readonly asset: Asset;
  readonly available: boolean; // healthy and started
  readonly reaches: readonly DestinationKind[];
  readonly amountMin: bigint;
  readonly amountMax: bigint;
  /** What the rail can send right now (hot-wallet balance, outbound channel capacity); null: not limited. */
  readonly liquidity: bigint | null;
  /** Provider fee: fixed part plus a proportional part in parts per million of the amount, in the rail's asset. */
  readonly feeFixed: bigint;
  readonly feePpm: bigint;
  /** Network fee estimate for one payment (gas × price, routing fee), in USD micro-units. */
  readonly networkFeeMicroUsd: bigint;
  readonly latencyMs: number; // expected time to finality
  readonly successes: number; // recent outcomes over the rail's window
  readonly failures: number;
  readonly takenAtMs: number;
  /** The smallest provider fee charged (a PSP's minimum), in the rail's asset. Absent: 0. */
  readonly feeMin?: bigint;
  /** Replaces `networkFeeMicroUsd` with a model computed from its inputs. */
  readonly networkFee?: NetworkFeeModel;
  /** Spread to buy this rail's asset with another asset, parts per million, when the snapshot names none for the pair. */
  readonly fxSpreadPpm?: bigint;
  /** The circuit breaker's state (see learning.ts). Absent: closed. */
  readonly circuit?: CircuitState;
};

export type Snapshot = {
  readonly rails: readonly RailSnapshot[];
  /** USD value of each asset by code. */
  readonly usdRates: Readonly<Record<string, UsdRate>>;
  readonly takenAtMs: number;
  /** FX spread per pair, keyed `${from}->${to}` (asset codes), parts per million. See fx.ts. */
  readonly fxSpreadsPpm?: Readonly<Record<string, bigint>>;
};

/** What the payment asks for. Amount is in the payment's asset. */
export type PaymentIntent = {
  readonly asset: Asset;
  readonly amount: bigint;
  readonly destination: Destination;
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
