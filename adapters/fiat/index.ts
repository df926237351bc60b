// The fiat rail (Stripe): charges in, Connect transfers out, refunds, signed webhooks.
export { createStripeClient, type StripeClientConfig } from "./client.ts";
export { type FiatConfig, FiatConfigError, fiatEnvSchema, loadFiatConfig } from "./config.ts";
export { type FiatFailure, FiatRailError, translateStripeError } from "./errors.ts";
export {
  type FiatEvent,
  type IgnoredReason,
  type Interpretation,
  interpretStripeEvent,
  metadataKeys,
  type ParseEventResult,
  parseStripeEvent,
  type StripeEventEnvelope,
  toRailEvent,
} from "./events.ts";
export {
  defaultFiatFeeSchedule,
  type FeeScheduleError,
  type FiatFeeQuote,
  type FiatFeeSchedule,
  fiatFee,
  validateFeeSchedule,
} from "./fees.ts";
export { createFiatRail } from "./rail.ts";
export {
  type ApplyFiatEvent,
  createStripeEventReceiver,
  type ReceiveOutcome,
  type StripeEventReceiver,
} from "./receiver.ts";
export {
  type SignatureError,
  type SignatureResult,
  signatureHeaderLengthMax,
  signingSecretsMax,
  stripeSignatureToleranceSecondsDefault,
  verifyStripeSignature,
} from "./signature.ts";
export { createSqlStripeObjectStore, createSqlStripeWebhookStore, fiatMigrations } from "./sql-store.ts";
export {
  type CreditedIntent,
  createMemoryStripeObjectStore,
  createMemoryStripeWebhookStore,
  type DueFee,
  type FiatPspIds,
  FiatStoreError,
  type ParkedFee,
  type ParkedReversal,
  type ReversalReason,
  type StripeObjectKind,
  type StripeObjectRecord,
  type StripeObjectStore,
  type StripeWebhookStore,
} from "./store.ts";
export {
  type CreatePaymentIntentParams,
  type CreatePaymentIntentResult,
  type FiatHealth,
  type FiatRail,
  type FiatRailParams,
  type FiatRequestFailure,
  idempotencyKeys,
  invoiceAttemptId,
  type PaymentIntentCreated,
  type RefundParams,
  type RefundResult,
} from "./types.ts";
export {
  createStripeWebhookRoute,
  type StripeWebhookErrorCode,
  type StripeWebhookRouteParams,
  stripeWebhookBodyLimitBytes,
  stripeWebhookPath,
} from "./webhook-route.ts";
