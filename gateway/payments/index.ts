export { createMarket, type Market } from "./market.ts";
export {
  accruePayout,
  type BatchOutcome,
  type BatchPayer,
  flushNetting,
  type NettingConfig,
  type NettingDeps,
} from "./netting.ts";
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
