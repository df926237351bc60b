export {
  accruePayout,
  type BatchPayer,
  flushNetting,
  type NettingConfig,
  type NettingDeps,
} from "./batch-payouts.ts";
export type { CreatePaymentParams, CreatePaymentResult, PaymentsDeps, Router } from "./deps.ts";
export { PaymentInvariantError } from "./errors.ts";
export { applyRailEvent } from "./execution.ts";
export {
  createInternalSettler,
  type IdempotencyRecord,
  type InternalSettler,
  type StoredAnswer,
} from "./internal.ts";
export { createMarket, type Market, outcomeRefreshMs } from "./market.ts";
export { RecoveryError, recoverOpenAttempts } from "./recovery.ts";
export {
  applyRefundEvent,
  type CreateRefundParams,
  type CreateRefundResult,
  createRefund,
  RefundContendedError,
  RefundInvariantError,
  RefundNotYetKnownError,
  type RefundsDeps,
  recoverPendingRefunds,
} from "./refunds.ts";
export { getRefund, type RefundRow, refundFromRow } from "./refunds-store.ts";
export type {
  Refund,
  RefundDestination,
  RefundFailureCode,
  RefundReason,
  RefundRefusal,
  RefundStatus,
  RefundTarget,
} from "./refunds-types.ts";
export { evidenceForLedger, railAccountOpened } from "./reservations.ts";
export { createPaymentQuote } from "./routing.ts";
export { createPayment } from "./service.ts";
export {
  fromJson,
  getPayment,
  idempotencyRecordTtlMs,
  insertOutboxEvent,
  type PaymentReadRow,
  paymentReadColumns,
  paymentRequestDigest,
  paymentsFromRows,
  toJson,
} from "./store.ts";
export type {
  Attempt,
  AttemptStatus,
  NetworkFee,
  Payment,
  PaymentDestination,
  PaymentFailureCode,
  PaymentRefusal,
  PaymentStatus,
} from "./types.ts";
export {
  attemptDestination,
  insufficientLiquidityMessage,
  paymentFailureCodes,
  paymentRefusals,
  quoteRefusals,
} from "./types.ts";
