// Refunds of a PaymentIntent. One Stripe refund per refund id of ours: its idempotency key derives from it,
// and what Stripe created is recorded by that key. The refund's outcome (and a dispute's) reaches the
// settlement by webhook, as a reversal (events.ts), and Stripe's fee for it as the rail's fees are booked.
import type Stripe from "stripe";
import type { RailFailureCode, ReceivedRefund, ReceivedRefundOutcome } from "../../core/index.ts";
import { refundFee } from "./delivery.ts";
import { FiatRailError, translateStripeError } from "./errors.ts";
import { metadataKeys, refundFeeIds } from "./events.ts";
import { checkId, type FiatRailState, failureOf } from "./rail-state.ts";
import { type FiatRequestFailure, idempotencyKeys, type RefundParams, type RefundResult } from "./types.ts";

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
    // Nothing recorded: an earlier ask may have made the refund and lost Stripe's answer, which Stripe replays under
    // the key for a day only. It is looked for by its PaymentIntent first, so that it is never made twice. Either
    // answer carries the refund's balance transaction, whose fee is booked without asking Stripe again.
    created =
      (await refundMadeBefore(state, request)) ??
      (await stripe.refunds.create(
        {
          payment_intent: request.paymentIntentId,
          ...(request.amount === undefined ? {} : { amount: Number(request.amount) }),
          metadata: { [metadataKeys.paymentId]: request.paymentId, switchyard_refund_id: request.refundId },
          expand: ["balance_transaction"],
        },
        { idempotencyKey: key },
      ));
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
  const fee = held.objectId === created.id ? refundFee(state, created.id, created.balance_transaction) : null;
  return {
    ok: true,
    refund: {
      refundId: request.refundId,
      stripeRefundId: held.objectId,
      status: created.status ?? "pending",
      amount: held.amount,
      created: held.objectId === created.id,
      ...(fee === null ? {} : { fee }),
    },
  };
}

/** The refund an earlier ask made for this refund id (its metadata names it), if Stripe has one. */
async function refundMadeBefore(
  state: FiatRailState,
  request: RefundParams,
): Promise<Stripe.Refund | undefined> {
  for await (const made of state.stripe.refunds.list({
    payment_intent: request.paymentIntentId,
    limit: 100,
    expand: ["data.balance_transaction"],
  }))
    if (made.metadata?.switchyard_refund_id === request.refundId) return made;
  return undefined;
}

/**
 * The Rail contract's `refundReceived`: an invoice's PaymentIntent (its `railReference`) refunded by `amount`, once
 * per refund id. Stripe's `succeeded` is final; `pending` (and `requires_action`) is in flight, its end arriving by
 * webhook as a reversal of the invoice whose evidence names the Stripe refund. An amount above the fee schedule's
 * maximum is refused before Stripe is asked.
 */
export async function refundReceived(
  state: FiatRailState,
  request: ReceivedRefund,
): Promise<ReceivedRefundOutcome> {
  if (request.amount > state.feeSchedule.amountMax)
    return {
      status: "failed",
      code: "amount_too_large",
      message: `refund amount ${request.amount} is above the rail's maximum ${state.feeSchedule.amountMax}`,
    };
  const result = await refund(state, {
    refundId: request.id,
    paymentId: request.reference,
    paymentIntentId: request.railReference,
    amount: request.amount,
  });
  if (!result.ok) {
    // No answer (a connection cut, a timeout, a 5xx): Stripe may have made the refund. Failed, its amount would be
    // free to refund again while Stripe refunded it; thrown, the refund stays pending and is asked again under the
    // same key (payments/refunds.ts recoverPendingRefunds), and Stripe's webhook for it waits for that answer.
    if (result.failure.code === "rail_unavailable" && !result.failure.retryElsewhere)
      throw new FiatRailError(
        `Stripe did not answer refund ${request.id}: it is asked again under the same key`,
        {
          details: result.failure.message,
        },
      );
    return {
      status: "failed",
      code: result.failure.code === "above_maximum" ? "amount_too_large" : railFailureCode(result.failure),
      message: result.failure.message,
    };
  }
  const evidence = { rail: "fiat", pspId: result.refund.stripeRefundId } as const;
  let { status, fee } = result.refund;
  // Found again by its key (a retry): Stripe is asked how that refund stands, never to refund again; the one read
  // tells its fee too.
  if (status === "recorded") {
    try {
      const read = await state.stripe.refunds.retrieve(result.refund.stripeRefundId, {
        expand: ["balance_transaction"],
      });
      status = read.status ?? "pending";
      fee = refundFee(state, read.id, read.balance_transaction) ?? undefined;
    } catch (error) {
      // The refund exists: unread now, it is in flight, and its end arrives by webhook.
      state.logger.warn({ err: translateStripeError(error) }, "a recorded refund could not be read back");
      return { status: "in_flight", evidence };
    }
  }
  if (status === "failed" || status === "canceled")
    return { status: "failed", code: "rejected", message: `Stripe's refund is ${status}` };
  if (status === "succeeded") {
    // Stripe's fee for it is booked as Stripe's other fees are, under the refund's fee id (bookRefundFee), which its
    // webhook books too: as the refund's `fee` (booked under our refund's own ids) it would be booked twice.
    if (fee !== undefined) bookRefundFee(state, request, result.refund.stripeRefundId, fee);
    return { status: "succeeded", evidence, fee: 0n };
  }
  return { status: "in_flight", evidence };
}

/**
 * Books `fee`, what Stripe took for (or gave back with) the succeeded refund `stripeRefundId` as its answer told it,
 * under the refund's fee id (refundFeeIds), told to the settlement as a fee of the invoice's money, as the refund's
 * webhook tells it (events.ts toRailEvent): booked once, whichever comes first, by that id. Never in the refund's way:
 * not awaited, so the refund is finished (its Stripe id recorded, for its webhook to find) as soon as Stripe answered,
 * and a booking that fails is logged, its webhook booking it then. Before, a refund's fee was taken for 0; and then read
 * with one more request before the refund was finished, which a slow Stripe held back (its webhook, arriving
 * meanwhile, was refused for want of the refund's id).
 */
function bookRefundFee(
  state: FiatRailState,
  request: ReceivedRefund,
  stripeRefundId: string,
  fee: bigint,
): void {
  const handler = state.handler;
  if (fee === 0n || handler === null) return;
  const booking = handler({
    kind: "fee",
    reference: request.reference,
    // The invoice's money, as it came in: the fee is booked only for an invoice paid on this rail by this intent.
    evidence: { rail: "fiat", pspId: request.railReference },
    fees: [{ id: refundFeeIds(stripeRefundId).fee, amount: fee }],
  }).then(
    () => undefined,
    (error: unknown) =>
      state.logger.warn(
        { err: error, refund: request.id, stripeRefund: stripeRefundId },
        "Stripe's fee for a refund is not booked now; the refund's webhook books it",
      ),
  );
  // The rail's stop waits for it, so that it is not cut off with the database.
  state.feeBookings.add(booking);
  void booking.finally(() => state.feeBookings.delete(booking));
}

/** A request failure of this rail in the contract's closed set (the fiat-only codes are refusals of the request). */
function railFailureCode(failure: FiatRequestFailure): RailFailureCode {
  switch (failure.code) {
    case "below_minimum":
    case "above_maximum":
    case "invalid_id":
      return "rejected";
    default:
      return failure.code;
  }
}
