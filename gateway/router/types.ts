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
};

export type Snapshot = {
  readonly rails: readonly RailSnapshot[];
  /** USD value of each asset by code. */
  readonly usdRates: Readonly<Record<string, UsdRate>>;
  readonly takenAtMs: number;
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
};

export type CostBreakdown = {
  readonly networkMicroUsd: bigint;
  readonly providerMicroUsd: bigint;
  readonly fxMicroUsd: bigint;
  readonly failureMicroUsd: bigint;
  readonly totalMicroUsd: bigint;
};

export type Candidate = {
  readonly rail: string;
  readonly kind: RailKind;
  readonly cost: CostBreakdown;
  readonly latencyMs: number;
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
};
