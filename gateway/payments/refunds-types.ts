// Refunds: the record, its statuses and the transitions between them, the closed set of reasons a refund is
// refused before anything moves, and the ways a rail gives money back. Pure.
import type {
  Destination,
  ParseAmountError,
  Rail,
  RailFailureCode,
  SettlementEvidence,
} from "../../core/index.ts";
import type { NetworkFee } from "./types.ts";

export type RefundStatus = "pending" | "succeeded" | "failed";

/** What is refunded: money that came in for an invoice, or a payment that succeeded. */
export type RefundTarget = { kind: "invoice"; invoiceId: string } | { kind: "payment"; paymentId: string };

export type RefundReason = "duplicate" | "fraudulent" | "requested_by_customer";

/** Where a rail pays a refund: an invoice the payer supplied (Lightning), an address that paid (EVM). */
export type RefundDestination = Extract<Destination, { kind: "bolt11" | "evm_address" }>;

export type Refund = {
  id: string;
  tenantId: string;
  target: RefundTarget;
  /**
   * The tenant's account the money leaves; of an invoice split among payees, only the part the payees do not give
   * back (each payee's part is held, posted or voided beside it).
   */
  accountId: string;
  assetCode: string;
  amount: bigint;
  rail: string;
  status: RefundStatus;
  reason: RefundReason | null;
  metadata: Record<string, string>;
  destination: RefundDestination | null;
  /** The rail's name for the refund: a Stripe refund id, a payment hash, a transaction hash. */
  railReference: string | null;
  evidence: SettlementEvidence | null;
  /** What the rail paid to move it, in the rail's asset; booked to the rail's fee account. */
  fee: bigint | null;
  /** What it paid in another asset than its rail's — an on-chain refund's gas, in ETH — as booked; null when none. */
  networkFee: NetworkFee | null;
  failureCode: RefundFailureCode | null;
  failureMessage: string | null;
  createdAt: Date;
  updatedAt: Date;
};

/** Why a refund that was written failed: the rail's failure (nothing moved: its hold is released). */
export type RefundFailureCode = RailFailureCode | "amount_too_large";

/**
 * Why a refund request is refused before anything moves or is written. Precedence: the order of checks in
 * createRefund — the target (found, paid, a rail that refunds), the amount (a decimal, within what is left, within
 * the rail's limits), the destination, then the account's balance.
 */
export type RefundRefusal =
  | ParseAmountError
  | "invoice_not_found"
  | "payment_not_found"
  | "invoice_not_paid"
  | "payment_not_succeeded"
  | "refund_unsupported"
  | "rail_unavailable"
  | "refund_exceeds_remaining"
  | "parameter_missing"
  | "parameter_invalid"
  | "insufficient_funds"
  | "insufficient_liquidity"
  | "idempotency_key_reused";

/**
 * How a rail gives money back: `provider` asks the rail's provider to refund what it took in (Stripe, through the
 * rail's refundReceived); `payout` pays the refund out like an attempt (Lightning to an invoice the payer gave, EVM
 * to an address that paid), once per refund id; `ledger` moves it between two accounts of the tenant (internal).
 */
export type RefundMode =
  | { kind: "provider"; rail: Rail; reference: string; railReference: string }
  | { kind: "payout"; rail: Rail; destination: RefundDestination }
  | { kind: "ledger" };

/**
 * How a rail names a reversal of an invoice's money that is a refund made at its provider (Stripe's `refund:<re_…>`),
 * not a dispute or a reorganised deposit: one of a refund of ours (its rail reference) ends that refund; any other,
 * made outside the API (Stripe's dashboard), counts as refunded, not as a payment taken back.
 */
export const providerRefundKeyPrefix = "refund:";

const transitions: Record<RefundStatus, readonly RefundStatus[]> = {
  pending: ["succeeded", "failed"],
  // A provider's refund can fail after it succeeded (Stripe's refund.failed): what it took is given back.
  succeeded: ["failed"],
  failed: [],
};

export function refundCanMove(from: RefundStatus, to: RefundStatus): boolean {
  return transitions[from].includes(to);
}

/** The rail's name for the movement its evidence proves; null for a move inside the ledger. */
export function referenceOf(evidence: SettlementEvidence): string | null {
  switch (evidence.rail) {
    case "internal":
      return null;
    case "evm":
      return evidence.txHash;
    case "lightning":
      return evidence.paymentHash;
    case "fiat":
      return evidence.pspId;
    case "external":
      return evidence.reference;
  }
}
