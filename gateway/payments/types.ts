// Payments and attempts: records, statuses, the closed set of reasons a payment is refused or fails,
// and the transitions allowed between statuses. Pure.
import {
  type Destination,
  everyMember,
  type FeePaid,
  type ParseAmountError,
  type RailFailureCode,
  type SettlementEvidence,
} from "../../core/index.ts";
import type { RouteDecision, RoutePolicy } from "../router/types.ts";

export type PaymentStatus = "processing" | "succeeded" | "failed";
/**
 * `reserving` from when the attempt is written until its rail reports (the reservation's existence is the ledger's
 * to say), `in_flight` while the rail works on it after that, then final.
 */
export type AttemptStatus = "reserving" | "in_flight" | "succeeded" | "failed";

/**
 * What a payout or a refund paid in another asset than its rail's (gas, in the chain's native token), as the ledger
 * books it; kept in network_fee and network_fee_asset (migrations 0048, 0050).
 */
export type NetworkFee = { assetCode: string; amount: bigint };

/** The network fee a rail's outcome reports, or null when it paid none. */
export function networkFeeOf(paid: FeePaid | undefined): NetworkFee | null {
  return paid === undefined || paid.amount === 0n
    ? null
    : { assetCode: paid.asset.code, amount: paid.amount };
}

/** The network fee a row keeps, or null. */
export function networkFeeOfRow(row: {
  network_fee: bigint | null;
  network_fee_asset: string | null;
}): NetworkFee | null {
  return row.network_fee === null || row.network_fee_asset === null
    ? null
    : { assetCode: row.network_fee_asset, amount: row.network_fee };
}

export type Attempt = {
  id: string;
  paymentId: string;
  seq: number;
  rail: string;
  status: AttemptStatus;
  amount: bigint;
  feeMax: bigint;
  fee: bigint | null;
  /**
   * What it paid in another asset than its rail's — an EVM payout's gas, in ETH — as the ledger books it; null when
   * none (or when it was paid for a batch: a netted payout's gas is the batch's).
   */
  networkFee: NetworkFee | null;
  /**
   * What the rail's provider took back of the payout since it succeeded (a Stripe transfer reversal, whole or in
   * part), in the rail's asset, given back to the payer (settlement/payout-reversals.ts); 0 when nothing.
   */
  amountReversed: bigint;
  reserveTransferId: bigint;
  evidence: SettlementEvidence | null;
  failureCode: PaymentFailureCode | null;
  failureMessage: string | null;
};

/**
 * Where a payment goes: one destination, or a payee of the tenant's (gateway/payees), whose methods the rails
 * competed for — each candidate of its decision names the method it pays.
 */
export type PaymentDestination = Destination | { kind: "payee"; payeeId: string };

export type Payment = {
  id: string;
  tenantId: string;
  status: PaymentStatus;
  assetCode: string;
  amount: bigint;
  sourceAccountId: string;
  destination: PaymentDestination;
  policy: RoutePolicy;
  decision: RouteDecision | null;
  rail: string | null;
  failureCode: PaymentFailureCode | null;
  failureMessage: string | null;
  metadata: Record<string, string>;
  createdAt: Date;
  updatedAt: Date;
  attempts: Attempt[];
};

/** Why a payment request is refused before anything is written. Precedence: the order of checks in createPayment. */
export type PaymentRefusal =
  | ParseAmountError
  | "unknown_asset"
  | "account_not_found"
  | "destination_not_found"
  | "asset_mismatch"
  | "same_account"
  | "quote_not_found"
  | "quote_mismatch"
  | "quote_expired"
  | "quote_stale"
  | "payee_not_found"
  | "quote_used"
  | "quote_constraints_unmet"
  | "fee_above_max"
  | "destination_is_gateway"
  | "parameter_invalid"
  | "no_route";

/**
 * Why a payment that was written ends as failed, and why one of its attempts failed: the payer's account was short
 * when the funds were reserved, or the rail's own failure (insufficient_liquidity also when the rail's clearing
 * account does not hold the amount). Stored as text; only these are ever written.
 */
export type PaymentFailureCode = "insufficient_funds" | RailFailureCode;

/** Every PaymentRefusal once, for the API's document. */
export const paymentRefusals = everyMember<PaymentRefusal>({
  amount_not_a_decimal: true,
  amount_not_positive: true,
  amount_too_precise: true,
  amount_too_large: true,
  unknown_asset: true,
  account_not_found: true,
  destination_not_found: true,
  asset_mismatch: true,
  same_account: true,
  quote_not_found: true,
  quote_mismatch: true,
  quote_expired: true,
  quote_stale: true,
  payee_not_found: true,
  quote_used: true,
  quote_constraints_unmet: true,
  fee_above_max: true,
  destination_is_gateway: true,
  parameter_invalid: true,
  no_route: true,
});

/** Why a quote is refused: the payment's refusals its checks can give without a source account or a quote. */
export type QuoteRefusal = Extract<
  PaymentRefusal,
  | ParseAmountError
  | "unknown_asset"
  | "destination_not_found"
  | "asset_mismatch"
  | "payee_not_found"
  | "destination_is_gateway"
  | "fee_above_max"
  | "parameter_invalid"
  | "no_route"
>;

/** Every QuoteRefusal once, for the API's document (createPaymentQuote gives no other, by its type). */
export const quoteRefusals = everyMember<QuoteRefusal>({
  amount_not_a_decimal: true,
  amount_not_positive: true,
  amount_too_precise: true,
  amount_too_large: true,
  unknown_asset: true,
  destination_not_found: true,
  asset_mismatch: true,
  payee_not_found: true,
  destination_is_gateway: true,
  fee_above_max: true,
  parameter_invalid: true,
  no_route: true,
});

/** Every PaymentFailureCode once: what a payment's request is answered when it failed. */
export const paymentFailureCodes = everyMember<PaymentFailureCode>({
  insufficient_funds: true,
  rail_unavailable: true,
  insufficient_liquidity: true,
  unreachable_destination: true,
  fee_above_max: true,
  expired: true,
  rejected: true,
});

/** What a payment that failed `insufficient_funds` says, wherever the shortfall was found. */
export const insufficientFundsMessage = "the source account's available balance is below the amount";

/**
 * What a payment says when a rail cannot send the amount now. Never the rail's own text: that can carry the
 * shared balance of a hot wallet, a channel or a provider account, which no tenant is shown (the operator reads
 * the rail's text in the log).
 */
export const insufficientLiquidityMessage = "the rail cannot send this amount now";

const attemptTransitions: Record<AttemptStatus, readonly AttemptStatus[]> = {
  // An attempt stays `reserving` while its rail runs: a status written before the rail is asked would cost a write
  // (the dropped `executing`, see migration 0009).
  reserving: ["in_flight", "succeeded", "failed"],
  in_flight: ["succeeded", "failed"],
  succeeded: [],
  failed: [],
};

export function attemptCanMove(from: AttemptStatus, to: AttemptStatus): boolean {
  return attemptTransitions[from].includes(to);
}

/** The statuses an attempt may be in when it moves to `to`: what a conditional UPDATE checks. */
export function attemptStatusesBefore(to: AttemptStatus): AttemptStatus[] {
  return (Object.keys(attemptTransitions) as AttemptStatus[]).filter((from) =>
    attemptTransitions[from].includes(to),
  );
}

export function isFinal(status: AttemptStatus | PaymentStatus): boolean {
  return status === "succeeded" || status === "failed";
}

/**
 * What an attempt pays: the payment's destination, or for a payee the method its candidate reaches. Null when the
 * decision has no candidate at that position (a bug in the caller).
 */
export function attemptDestination(
  payment: Pick<Payment, "destination" | "decision">,
  seq: number,
): Destination | null {
  if (payment.destination.kind !== "payee") return payment.destination;
  return payment.decision?.candidates[seq]?.destination ?? null;
}
