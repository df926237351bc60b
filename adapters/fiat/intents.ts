// Money in: PaymentIntents, for a customer's top-up (createPaymentIntent) or an invoice (receive). One intent
// per payment and attempt: its idempotency key derives from both, and what Stripe created is recorded by that
// key, so a retry, even after Stripe has forgotten the key, returns the intent the first call created.
import type Stripe from "stripe";
import type {
  RailFailureCode,
  ReceiveCancellation,
  ReceiveCancellationOutcome,
  ReceiveOutcome,
  ReceiveRequest,
} from "../../core/index.ts";
import { translateStripeError } from "./errors.ts";
import { metadataKeys } from "./events.ts";
import { amountFailure, checkId, type FiatRailState, failureOf } from "./rail-state.ts";
import type { StripeObjectRecord } from "./store.ts";
import {
  type CreatePaymentIntentParams,
  type CreatePaymentIntentResult,
  descriptionLengthMax,
  type FiatRequestFailure,
  idempotencyKeys,
  invoiceAttemptId,
} from "./types.ts";

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

async function existingIntent(
  state: FiatRailState,
  record: StripeObjectRecord,
  key: string,
): Promise<CreatePaymentIntentResult> {
  try {
    const intent = await state.stripe.paymentIntents.retrieve(record.objectId);
    return intentResult(intent, { amount: record.amount, idempotencyKey: key, created: false });
  } catch (error) {
    return { ok: false, failure: failureOf(translateStripeError(error)) };
  }
}

export async function createPaymentIntent(
  state: FiatRailState,
  request: CreatePaymentIntentParams,
): Promise<CreatePaymentIntentResult> {
  const { stripe, store, currency } = state;
  const idProblem =
    checkId("payment id", request.paymentId) ??
    checkId("attempt id", request.attemptId) ??
    checkId("reference", request.reference);
  if (idProblem !== null) return { ok: false, failure: idProblem };
  const amountProblem = amountFailure(state, request.amount);
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
    return existingIntent(state, earlier, key);
  }

  let intent: Stripe.PaymentIntent;
  try {
    intent = await stripe.paymentIntents.create(
      {
        amount: Number(request.amount),
        currency,
        // Captured at once: the charge then has its balance transaction (and Stripe's fee) when the PaymentIntent
        // succeeds. Stripe's default, automatic_async, may give it up to an hour later (charge.updated).
        capture_method: "automatic",
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
  if (held.objectId !== intent.id) return existingIntent(state, held, key);
  return intentResult(intent, { amount: held.amount, idempotencyKey: key, created: true });
}

/** The rail's answer for a PaymentIntent Stripe returned, made now (`created`) or found again. */
function intentResult(
  intent: Pick<Stripe.PaymentIntent, "id" | "client_secret" | "status">,
  held: { amount: bigint; idempotencyKey: string; created: boolean },
): CreatePaymentIntentResult {
  return {
    ok: true,
    intent: {
      intentId: intent.id,
      clientSecret: intent.client_secret,
      status: intent.status,
      amount: held.amount,
      idempotencyKey: held.idempotencyKey,
      created: held.created,
    },
  };
}

/** Money in for an invoice: one PaymentIntent per invoice (its id is the payment, the attempt and the reference). */
export async function receive(state: FiatRailState, request: ReceiveRequest): Promise<ReceiveOutcome> {
  const result = await createPaymentIntent(state, {
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

/**
 * Withdraws an invoice's PaymentIntent that reached nobody (the gateway could not write the invoice): cancelled at
 * Stripe, so no one can pay it. Only the intent this rail recorded for the reference is cancelled; none recorded,
 * nothing to withdraw.
 */
export async function cancelReceive(
  state: FiatRailState,
  offer: ReceiveCancellation,
): Promise<ReceiveCancellationOutcome> {
  const idProblem = checkId("reference", offer.reference);
  if (idProblem !== null) return { status: "failed", code: "rejected", message: idProblem.message };
  const key = idempotencyKeys.paymentIntent(offer.reference, invoiceAttemptId);
  const recorded = await state.store.find(key);
  if (recorded === null) return { status: "cancelled" };
  if (recorded.objectId !== offer.railReference)
    return {
      status: "failed",
      code: "rejected",
      message: `invoice ${offer.reference}'s PaymentIntent is ${recorded.objectId}, not ${offer.railReference}`,
    };
  try {
    await state.stripe.paymentIntents.cancel(recorded.objectId, {}, { idempotencyKey: `${key}:cancel` });
  } catch (error) {
    const failure = translateStripeError(error);
    return { status: "failed", code: failure.code, message: failure.message };
  }
  return { status: "cancelled" };
}
