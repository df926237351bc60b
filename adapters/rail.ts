// The one interface every rail implements. A rail is added by one folder under adapters/ and one
// line in gateway/app.ts. Errors from the rail's own stack (JSON-RPC, gRPC, HTTP) are translated
// into these values at the adapter boundary; nothing above it sees them raw.
import type { Asset } from "../gateway/money/index.ts";
import type { Destination, RailKind, RailSnapshot } from "../gateway/router/types.ts";

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
