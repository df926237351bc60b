// The one contract every rail implements. A rail is added by one folder under adapters/ and one line in
// gateway/app.ts. Errors from the rail's own stack (JSON-RPC, gRPC, HTTP) are translated into these values
// at the adapter boundary; nothing above it sees them raw.
import type { Destination, DestinationKind, RailKind } from "./destinations.ts";
import type { Asset } from "./money.ts";

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

/** Proof that money moved on a rail; it rides on the ledger transfer that mirrors the movement. */
export type SettlementEvidence =
  | { rail: "internal" }
  | { rail: "evm"; chainId: number; txHash: `0x${string}`; logIndex: number; blockNumber: bigint }
  | { rail: "lightning"; paymentHash: string; preimage: string }
  | { rail: "fiat"; pspId: string };

/** One try at paying out on one rail. `id` is the attempt's idempotency key on that rail. */
export type OutgoingAttempt = {
  readonly id: string;
  readonly paymentId: string;
  readonly amount: bigint; // in the rail's asset
  readonly destination: Destination;
  readonly feeMax: bigint; // in the rail's asset, from the router's quote
};

export type RailFailureCode =
  | "rail_unavailable"
  | "insufficient_liquidity"
  | "unreachable_destination"
  | "fee_above_max"
  | "expired"
  | "rejected";

export type AttemptOutcome =
  | { status: "succeeded"; evidence: SettlementEvidence; fee: bigint }
  | { status: "in_flight"; reference: string } // the final outcome arrives as a RailEvent
  | { status: "failed"; code: RailFailureCode; message: string; retryElsewhere: boolean };

/** What a rail reports on its own: the end of an attempt in flight, or money that came in. */
export type RailEvent =
  | { kind: "attempt_succeeded"; attemptId: string; evidence: SettlementEvidence; fee: bigint }
  | {
      kind: "attempt_failed";
      attemptId: string;
      code: RailFailureCode;
      message: string;
      retryElsewhere: boolean;
    }
  | { kind: "received"; reference: string; amount: bigint; evidence: SettlementEvidence };

export type RailEventHandler = (event: RailEvent) => Promise<void>;

export interface Rail {
  readonly id: string;
  readonly kind: RailKind;
  readonly asset: Asset;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** What the router needs; cheap and synchronous, refreshed by the rail in the background. */
  snapshot(): RailSnapshot;
  /** Pays out once. Called again with the same attempt id, it never pays twice: it reports the first outcome. */
  execute(attempt: OutgoingAttempt): Promise<AttemptOutcome>;
  /** Registers the one handler for events; the rail awaits it before it treats an event as delivered. */
  onEvent(handler: RailEventHandler): void;
  /** What the rail holds now (hot wallet, channels, PSP balance), in its asset. */
  balance(): Promise<bigint>;
}
