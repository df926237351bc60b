// The fiat rail on Stripe. In: PaymentIntents for a customer's top-up or an invoice. Out: Connect transfers
// to a merchant's connected account, and refunds. Every request carries an idempotency key derived from our
// own ids, and what Stripe created is recorded by that key, so a retry never charges or pays twice, even
// after Stripe has forgotten the key (24 h). Final outcomes arrive by webhook, on the route this rail
// contributes (webhook-route.ts), and reach the settlement as the rail's events.
import type Stripe from "stripe";
import {
  type Asset,
  type AttemptOutcome,
  type Logger,
  type OutgoingAttempt,
  type Rail,
  type RailEventHandler,
  type RailFailureCode,
  type RailSnapshot,
  type ReceiveOutcome,
  type ReceiveRequest,
  silentLogger,
} from "../../core/index.ts";
import { type FiatFailure, FiatRailError, translateStripeError } from "./errors.ts";
import { metadataKeys, toRailEvent } from "./events.ts";
import { type FiatFeeSchedule, fiatFee, validateFeeSchedule } from "./fees.ts";
import type { ApplyFiatEvent } from "./receiver.ts";
import type { StripeObjectRecord, StripeObjectStore, StripeWebhookStore } from "./store.ts";
import { createStripeWebhookRoute } from "./webhook-route.ts";

/** Stripe's limit on an Idempotency-Key. */
export const idempotencyKeyLengthMax = 255;
/** Our ids inside a key; keeps every key under Stripe's limit with room for the prefix. */
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
      refund: { refundId: string; stripeRefundId: string; status: string; amount: bigint; created: boolean };
    }
  | { ok: false; failure: FiatRequestFailure };

export type FiatHealth = {
  readonly healthy: boolean;
  readonly lastCheckedAtMs: number | null;
  readonly lastError: string | null;
};

/** The attempt id of an invoice's one PaymentIntent. */
export const invoiceAttemptId = "invoice";

export interface FiatRail extends Rail {
  receive(request: ReceiveRequest): Promise<ReceiveOutcome>;
  createPaymentIntent(params: CreatePaymentIntentParams): Promise<CreatePaymentIntentResult>;
  refund(params: RefundParams): Promise<RefundResult>;
  /** Reads balance and health now (start() does this, then every snapshotRefreshMs). */
  refresh(): Promise<void>;
  health(): FiatHealth;
}

const idPattern = /^[A-Za-z0-9_.:-]+$/;
const connectedAccountPattern = /^acct_[A-Za-z0-9]{1,100}$/;

function checkId(name: string, value: string): FiatRequestFailure | null {
  if (value.length === 0 || value.length > switchyardIdLengthMax || !idPattern.test(value))
    return {
      code: "invalid_id",
      message: `${name} must be 1 to ${switchyardIdLengthMax} characters of A-Z a-z 0-9 _ . : -`,
      retryElsewhere: false,
    };
  return null;
}

/** Why Stripe would not take money in, in the rail contract's terms. */
function receiveRefusalOf(failure: FiatRequestFailure): RailFailureCode | "amount_too_large" {
  switch (failure.code) {
    case "above_maximum":
      return "amount_too_large";
    case "below_minimum":
    case "invalid_id":
      return "rejected";
    default:
      return failure.code;
  }
}

function failureOf(failure: FiatFailure): FiatRequestFailure {
  return { code: failure.code, message: failure.message, retryElsewhere: failure.retryElsewhere };
}

export function createFiatRail(params: FiatRailParams): FiatRail {
  const scheduleError = validateFeeSchedule(params.feeSchedule);
  if (scheduleError !== null) throw new FiatRailError(`invalid fee schedule: ${scheduleError}`);
  if (params.asset.scale !== 2)
    throw new FiatRailError(`the fiat rail takes a scale-2 asset, got ${params.asset.code}`);
  const { stripe, store, asset, feeSchedule } = params;
  const id = params.id ?? "fiat";
  const currency = asset.code.toLowerCase();
  const nowMs = params.nowMs ?? Date.now;
  const logger = params.logger ?? silentLogger;
  let handler: RailEventHandler | null = null;
  const deliver: ApplyFiatEvent = async (event) => {
    const railEvent = toRailEvent(event);
    if (railEvent === null) return; // informational: nothing was credited, or not our money (a connected account's payout)
    if (handler === null) throw new FiatRailError("a Stripe event arrived before the rail's handler was set");
    await handler(railEvent);
  };
  const routes =
    params.webhooks === undefined
      ? []
      : [
          createStripeWebhookRoute({
            ...params.webhooks,
            applyEvent: deliver,
            currency: asset.code.toLowerCase(),
            feeSchedule: params.feeSchedule,
            onRefused: (fields) => logger.warn(fields, "stripe webhook refused"),
          }),
        ];
  const refreshMs = params.snapshotRefreshMs ?? snapshotRefreshMsDefault;

  let started = false;
  let timer: NodeJS.Timeout | null = null;
  let availableBalance: bigint | null = null;
  let health: FiatHealth = { healthy: false, lastCheckedAtMs: null, lastError: null };

  async function readBalance(): Promise<bigint> {
    const balance = await stripe.balance.retrieve();
    return balance.available
      .filter((entry) => entry.currency.toLowerCase() === currency)
      .reduce((sum, entry) => sum + BigInt(entry.amount), 0n);
  }

  async function refresh(): Promise<void> {
    try {
      availableBalance = await readBalance();
      health = { healthy: true, lastCheckedAtMs: nowMs(), lastError: null };
    } catch (error) {
      const failure = translateStripeError(error);
      health = {
        healthy: false,
        lastCheckedAtMs: nowMs(),
        lastError: `${failure.stripeError}: ${failure.message}`,
      };
      logger.warn({ stripeError: failure.stripeError }, "stripe health check failed");
    }
  }

  async function existingIntent(record: StripeObjectRecord, key: string): Promise<CreatePaymentIntentResult> {
    try {
      const intent = await stripe.paymentIntents.retrieve(record.objectId);
      return {
        ok: true,
        intent: {
          intentId: intent.id,
          clientSecret: intent.client_secret,
          status: intent.status,
          amount: record.amount,
          idempotencyKey: key,
          created: false,
        },
      };
    } catch (error) {
      return { ok: false, failure: failureOf(translateStripeError(error)) };
    }
  }

  function amountFailure(amount: bigint): FiatRequestFailure | null {
    const quote = fiatFee(feeSchedule, amount);
    if (quote.ok) return null;
    return {
      code: quote.error,
      message: `amount ${amount} is outside ${feeSchedule.amountMin}..${feeSchedule.amountMax} ${asset.code} minor units`,
      retryElsewhere: true,
    };
  }

  async function createPaymentIntent(request: CreatePaymentIntentParams): Promise<CreatePaymentIntentResult> {
    const idProblem =
      checkId("payment id", request.paymentId) ??
      checkId("attempt id", request.attemptId) ??
      checkId("reference", request.reference);
    if (idProblem !== null) return { ok: false, failure: idProblem };
    const amountProblem = amountFailure(request.amount);
    if (amountProblem !== null) return { ok: false, failure: amountProblem };
    const key = idempotencyKeys.paymentIntent(request.paymentId, request.attemptId);

    const earlier = await store.find(key);
    if (earlier !== null) {
      if (earlier.amount !== request.amount)
        return {
          ok: false,
          failure: {
            code: "rejected",
            message: `attempt ${request.attemptId} already has an intent for ${earlier.amount}, not ${request.amount}`,
            retryElsewhere: false,
          },
        };
      return existingIntent(earlier, key);
    }

    let intent: Stripe.PaymentIntent;
    try {
      intent = await stripe.paymentIntents.create(
        {
          amount: Number(request.amount),
          currency,
          ...(request.stripeCustomerId === undefined ? {} : { customer: request.stripeCustomerId }),
          ...(request.description === undefined ? {} : { description: request.description }),
          metadata: {
            [metadataKeys.paymentId]: request.paymentId,
            [metadataKeys.attemptId]: request.attemptId,
            [metadataKeys.reference]: request.reference,
          },
        },
        { idempotencyKey: key },
      );
    } catch (error) {
      return { ok: false, failure: failureOf(translateStripeError(error)) };
    }
    const held = await store.record({
      idempotencyKey: key,
      kind: "payment_intent",
      objectId: intent.id,
      paymentId: request.paymentId,
      attemptId: request.attemptId,
      amount: request.amount,
    });
    // A concurrent call with the same payment and attempt recorded its intent first: that one is the intent.
    if (held.objectId !== intent.id) return existingIntent(held, key);
    return {
      ok: true,
      intent: {
        intentId: intent.id,
        clientSecret: intent.client_secret,
        status: intent.status,
        amount: held.amount,
        idempotencyKey: key,
        created: true,
      },
    };
  }

  /** Money in for an invoice: one PaymentIntent per invoice (its id is the payment, the attempt and the reference). */
  async function receive(request: ReceiveRequest): Promise<ReceiveOutcome> {
    const result = await createPaymentIntent({
      amount: request.amount,
      paymentId: request.reference,
      attemptId: invoiceAttemptId,
      reference: request.reference,
      description: request.description.slice(0, descriptionLengthMax),
    });
    if (!result.ok)
      return { status: "refused", code: receiveRefusalOf(result.failure), message: result.failure.message };
    return {
      status: "offered",
      railReference: result.intent.intentId,
      expiresAtMs: null, // PaymentIntents do not expire
      instructions: {
        method: "stripe_payment_intent",
        payment_intent: result.intent.intentId,
        ...(result.intent.clientSecret === null ? {} : { client_secret: result.intent.clientSecret }),
      },
    };
  }

  return {
    id,
    kind: "fiat",
    asset,
    receive,
    routes,
    createPaymentIntent,

    async start() {
      if (started) return;
      started = true;
      await refresh();
      timer = setInterval(() => {
        refresh().catch((error: unknown) => logger.error({ err: error }, "stripe refresh failed"));
      }, refreshMs);
      timer.unref();
    },

    async stop() {
      started = false;
      if (timer !== null) clearInterval(timer);
      timer = null;
    },

    snapshot(): RailSnapshot {
      return {
        rail: id,
        kind: "fiat",
        asset,
        available: started && health.healthy,
        reaches: ["stripe_account"],
        amountMin: feeSchedule.amountMin,
        amountMax: feeSchedule.amountMax,
        liquidity: params.liquidity === "balance" ? (availableBalance ?? 0n) : null,
        feeFixed: feeSchedule.feeFixed,
        feePpm: feeSchedule.feePpm,
        networkFeeMicroUsd: 0n,
        latencyMs: params.latencyMs ?? transferLatencyMsDefault,
        takenAtMs: health.lastCheckedAtMs ?? nowMs(),
      };
    },

    async execute(attempt: OutgoingAttempt): Promise<AttemptOutcome> {
      const fail = (code: RailFailureCode, message: string, retryElsewhere: boolean): AttemptOutcome => ({
        status: "failed",
        code,
        message,
        retryElsewhere,
      });
      const idProblem = checkId("attempt id", attempt.id) ?? checkId("payment id", attempt.paymentId);
      if (idProblem !== null) return fail("rejected", idProblem.message, false);
      if (attempt.destination.kind !== "stripe_account")
        return fail("unreachable_destination", "the fiat rail pays Stripe connected accounts only", true);
      if (!connectedAccountPattern.test(attempt.destination.accountId))
        return fail("unreachable_destination", "not a Stripe connected account id (acct_…)", true);
      const quote = fiatFee(feeSchedule, attempt.amount);
      if (!quote.ok)
        return fail("rejected", `amount ${attempt.amount} is ${quote.error.replace("_", " ")}`, true);
      const key = idempotencyKeys.transfer(attempt.id);

      const earlier = await store.find(key);
      if (earlier !== null)
        return { status: "succeeded", evidence: { rail: "fiat", pspId: earlier.objectId }, fee: quote.fee };
      if (quote.fee > attempt.feeMax)
        return fail(
          "fee_above_max",
          `fee ${quote.fee} is above the attempt's maximum ${attempt.feeMax}`,
          true,
        );

      let transfer: Stripe.Transfer;
      try {
        transfer = await stripe.transfers.create(
          {
            amount: Number(attempt.amount),
            currency,
            destination: attempt.destination.accountId,
            transfer_group: attempt.paymentId,
            metadata: { [metadataKeys.paymentId]: attempt.paymentId, [metadataKeys.attemptId]: attempt.id },
          },
          { idempotencyKey: key },
        );
      } catch (error) {
        const failure = translateStripeError(error);
        return fail(failure.code, failure.message, failure.retryElsewhere);
      }
      const held = await store.record({
        idempotencyKey: key,
        kind: "transfer",
        objectId: transfer.id,
        paymentId: attempt.paymentId,
        attemptId: attempt.id,
        amount: attempt.amount,
      });
      return { status: "succeeded", evidence: { rail: "fiat", pspId: held.objectId }, fee: quote.fee };
    },

    async refund(request) {
      const idProblem = checkId("refund id", request.refundId) ?? checkId("payment id", request.paymentId);
      if (idProblem !== null) return { ok: false, failure: idProblem };
      if (request.amount !== undefined && (request.amount <= 0n || request.amount > feeSchedule.amountMax))
        return {
          ok: false,
          failure: {
            code: "rejected",
            message: `refund amount ${request.amount} out of range`,
            retryElsewhere: false,
          },
        };
      const key = idempotencyKeys.refund(request.refundId);
      const earlier = await store.find(key);
      if (earlier !== null)
        return {
          ok: true,
          refund: {
            refundId: request.refundId,
            stripeRefundId: earlier.objectId,
            status: "recorded",
            amount: earlier.amount,
            created: false,
          },
        };
      let refund: Stripe.Refund;
      try {
        refund = await stripe.refunds.create(
          {
            payment_intent: request.paymentIntentId,
            ...(request.amount === undefined ? {} : { amount: Number(request.amount) }),
            metadata: { [metadataKeys.paymentId]: request.paymentId, switchyard_refund_id: request.refundId },
          },
          { idempotencyKey: key },
        );
      } catch (error) {
        return { ok: false, failure: failureOf(translateStripeError(error)) };
      }
      const held = await store.record({
        idempotencyKey: key,
        kind: "refund",
        objectId: refund.id,
        paymentId: request.paymentId,
        attemptId: null,
        amount: BigInt(refund.amount),
      });
      return {
        ok: true,
        refund: {
          refundId: request.refundId,
          stripeRefundId: held.objectId,
          status: refund.status ?? "pending",
          amount: held.amount,
          created: held.objectId === refund.id,
        },
      };
    },

    onEvent(next: RailEventHandler) {
      // Stripe's events arrive through this rail's webhook route (webhook-route.ts), which verifies, orders and
      // deduplicates them before they reach the handler.
      handler = next;
    },

    async balance() {
      try {
        return await readBalance();
      } catch (error) {
        const failure = translateStripeError(error);
        throw new FiatRailError("stripe balance unavailable", { details: failure.stripeError, cause: error });
      }
    },

    refresh,
    health: () => health,
  };
}
