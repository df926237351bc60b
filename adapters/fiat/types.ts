// The fiat rail's public types and limits: what its callers pass and get back (payouts, PaymentIntents,
// refunds, health) and the idempotency keys every Stripe request carries.
import type Stripe from "stripe";
import type {
  Asset,
  Logger,
  Rail,
  RailFailureCode,
  ReceiveOutcome,
  ReceiveRequest,
} from "../../core/index.ts";
import type { FiatFeeSchedule } from "./fees.ts";
import type { StripeObjectStore, StripeWebhookStore } from "./store.ts";

/** Our ids inside a key; keeps every key under Stripe's limit (255 characters) with room for the prefix. */
export const switchyardIdLengthMax = 100;
export const snapshotRefreshMsDefault = 30_000;
/** Expected time from execute to money on the connected account: a transfer is final when created. */
export const transferLatencyMsDefault = 2_000;
/** Stripe's limit on a PaymentIntent description. */
export const descriptionLengthMax = 1_000;

export const idempotencyKeys = {
  paymentIntent: (paymentId: string, attemptId: string) => `switchyard:pi:${paymentId}:${attemptId}`,
  transfer: (attemptId: string) => `switchyard:tr:${attemptId}`,
  refund: (refundId: string) => `switchyard:re:${refundId}`,
} as const;

export type FiatRailParams = {
  /** Built by the composition root (createStripeClient): host/port/protocol, timeout and retries set there. */
  readonly stripe: Stripe;
  readonly store: StripeObjectStore;
  /** USD, scale 2. The Stripe currency is its code in lower case. */
  readonly asset: Asset;
  readonly feeSchedule: FiatFeeSchedule;
  readonly id?: string; // default "fiat"
  /** "balance": the router may send at most Stripe's available balance; "not_limited": no liquidity limit. */
  readonly liquidity: "balance" | "not_limited";
  readonly snapshotRefreshMs?: number;
  /**
   * How often the rail's pass asks Stripe again for the fees it refused to tell (bookParkedFees), while it has webhooks;
   * default parkedFeesPassMsDefault. null: no pass of its own (a test runs it when it means to).
   */
  readonly parkedFeesPassMs?: number | null;
  readonly latencyMs?: number;
  readonly nowMs?: () => number;
  readonly logger?: Logger;
  /** Stripe's webhooks: the route this rail contributes (POST /v1/webhooks/stripe). Absent: no route. */
  readonly webhooks?: {
    readonly secrets: readonly string[];
    readonly toleranceSeconds: number;
    readonly bodyLimitBytes: number;
    readonly store: StripeWebhookStore;
  };
};

export type CreatePaymentIntentParams = {
  /** In the rail's asset (cents). */
  readonly amount: bigint;
  readonly paymentId: string;
  readonly attemptId: string;
  /** Ours: the customer account (top-up) or invoice the money is for; comes back on the webhook as `reference`. */
  readonly reference: string;
  /** Stripe's Customer (cus_…), when the tenant keeps one for this customer. */
  readonly stripeCustomerId?: string;
  readonly description?: string;
};

export type PaymentIntentCreated = {
  readonly intentId: string;
  /** For the payer's browser or app (Stripe.js confirms the intent with it). */
  readonly clientSecret: string | null;
  readonly status: string;
  readonly amount: bigint;
  readonly idempotencyKey: string;
  /** False when this call returned the intent an earlier call with the same payment and attempt created. */
  readonly created: boolean;
};

export type FiatRequestFailure = {
  readonly code: RailFailureCode | "below_minimum" | "above_maximum" | "invalid_id";
  readonly message: string;
  readonly retryElsewhere: boolean;
};

export type CreatePaymentIntentResult =
  | { ok: true; intent: PaymentIntentCreated }
  | { ok: false; failure: FiatRequestFailure };

export type RefundParams = {
  /** Ours, unique per refund: the idempotency key derives from it. */
  readonly refundId: string;
  readonly paymentId: string;
  readonly paymentIntentId: string;
  /** Absent: the whole remaining amount. */
  readonly amount?: bigint;
};

export type RefundResult =
  | {
      ok: true;
      refund: {
        refundId: string;
        stripeRefundId: string;
        status: string;
        amount: bigint;
        created: boolean;
        /** Its balance transaction's fee, as Stripe's answer told it (refundFee); absent when it did not. */
        fee?: bigint;
      };
    }
  | { ok: false; failure: FiatRequestFailure };

export type FiatHealth = {
  readonly healthy: boolean;
  readonly lastCheckedAtMs: number | null;
  readonly lastError: string | null;
  /**
   * The failed check's Stripe error, its type and code alone ("StripeConnectionError", "invalid_request_error/…"): null
   * while healthy, and before the first check.
   */
  readonly stripeError: string | null;
};

/** The attempt id of an invoice's one PaymentIntent. */
export const invoiceAttemptId = "invoice";

export interface FiatRail extends Rail {
  receive(request: ReceiveRequest): Promise<ReceiveOutcome>;
  createPaymentIntent(params: CreatePaymentIntentParams): Promise<CreatePaymentIntentResult>;
  refund(params: RefundParams): Promise<RefundResult>;
  /**
   * The reference the operator may have booked the capital movement `reference` under by hand: a Stripe payout's taking
   * under the payout's id (events.ts platformPayoutHandReference; settlement/reconciliation.ts CapitalBookedByHand).
   */
  capitalHandReference(reference: string): string | null;
  /**
   * The capital movement the rail books itself that the operator's booking by hand under `reference` stands for: a
   * payout's taking for the payout's id, sharing its ledger id (events.ts platformPayoutEventReference).
   */
  capitalEventReference(reference: string): string | null;
  /** Reads balance and health now (start() does this, then every snapshotRefreshMs). */
  refresh(): Promise<void>;
  /**
   * Asks Stripe again for the payouts' and refunds' fees it refused to tell, those due a try, and books those it tells
   * (start() runs this every parkedFeesPassMs while the rail has webhooks; nothing while the rail is not started):
   * `booked`, forgotten; `waiting`, asked and kept for a later try (one not asked this pass is not counted).
   */
  bookParkedFees(): Promise<{ booked: number; waiting: number }>;
  health(): FiatHealth;
}
