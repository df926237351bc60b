export {
  accruePayout,
  type BatchPayer,
  flushNetting,
  type NettingConfig,
  type NettingDeps,
} from "./batch-payouts.ts";
export { createMarket, type Market } from "./market.ts";
export type { CreatePaymentParams, CreatePaymentResult, PaymentsDeps, Router } from "./service.ts";
export {
  applyRailEvent,
  createPayment,
  createPaymentQuote,
  evidenceForLedger,
  PaymentInvariantError,
  recoverOpenAttempts,
} from "./service.ts";
export { fromJson, getPayment, insertOutboxEvent, toJson } from "./store.ts";
export type {
  Attempt,
  AttemptStatus,
  Payment,
  PaymentFailureCode,
  PaymentRefusal,
  PaymentStatus,
} from "./types.ts";
