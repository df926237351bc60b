export type { CreatePaymentParams, CreatePaymentResult, PaymentsDeps, Router } from "./service.ts";
export {
  applyRailEvent,
  createPayment,
  createPaymentQuote,
  PaymentInvariantError,
  recoverOpenAttempts,
  transferCodes,
} from "./service.ts";
export { getPayment, toJson } from "./store.ts";
export type {
  Attempt,
  AttemptStatus,
  Payment,
  PaymentFailureCode,
  PaymentRefusal,
  PaymentStatus,
} from "./types.ts";
