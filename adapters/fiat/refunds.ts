// Refunds of a PaymentIntent. One Stripe refund per refund id of ours: its idempotency key derives from it,
// and what Stripe created is recorded by that key. The refund's outcome (and a dispute's) reaches the
// settlement by webhook, as a reversal (events.ts).
import type Stripe from "stripe";
import { translateStripeError } from "./errors.ts";
import { metadataKeys } from "./events.ts";
import { checkId, type FiatRailState, failureOf } from "./rail-state.ts";
import { idempotencyKeys, type RefundParams, type RefundResult } from "./types.ts";

export async function refund(state: FiatRailState, request: RefundParams): Promise<RefundResult> {
  const { stripe, store, feeSchedule } = state;
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
  let created: Stripe.Refund;
  try {
    created = await stripe.refunds.create(
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
    objectId: created.id,
    paymentId: request.paymentId,
    attemptId: null,
    amount: BigInt(created.amount),
  });
  return {
    ok: true,
    refund: {
      refundId: request.refundId,
      stripeRefundId: held.objectId,
      status: created.status ?? "pending",
      amount: held.amount,
      created: held.objectId === created.id,
    },
  };
}
