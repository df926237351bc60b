// Money out: a Connect transfer to a merchant's connected account, final when Stripe creates it. One transfer
// per attempt: its idempotency key derives from the attempt, and what Stripe created is recorded by that key,
// so a retried attempt answers the transfer the first call made and never pays twice.
import type Stripe from "stripe";
import type { AttemptOutcome, OutgoingAttempt, RailFailureCode } from "../../core/index.ts";
import { translateStripeError } from "./errors.ts";
import { metadataKeys } from "./events.ts";
import { fiatFee } from "./fees.ts";
import { checkId, connectedAccountPattern, type FiatRailState } from "./rail-state.ts";
import { idempotencyKeys } from "./types.ts";

const fail = (code: RailFailureCode, message: string, retryElsewhere: boolean): AttemptOutcome => ({
  status: "failed",
  code,
  message,
  retryElsewhere,
});

export async function executeAttempt(
  state: FiatRailState,
  attempt: OutgoingAttempt,
): Promise<AttemptOutcome> {
  const { stripe, store, feeSchedule, currency } = state;
  const idProblem = checkId("attempt id", attempt.id) ?? checkId("payment id", attempt.paymentId);
  if (idProblem !== null) return fail("rejected", idProblem.message, false);
  if (attempt.destination.kind !== "stripe_account")
    return fail("unreachable_destination", "the fiat rail pays Stripe connected accounts only", true);
  if (!connectedAccountPattern.test(attempt.destination.accountId))
    return fail("unreachable_destination", "not a Stripe connected account id (acct_…)", true);
  const key = idempotencyKeys.transfer(attempt.id);
  /** A transfer made for this attempt, recorded by its key (the first recorded stands) and reported. */
  const recorded = async (transfer: Stripe.Transfer): Promise<AttemptOutcome> => {
    const held = await store.record({
      idempotencyKey: key,
      kind: "transfer",
      objectId: transfer.id,
      paymentId: attempt.paymentId,
      attemptId: attempt.id,
      amount: attempt.amount,
    });
    return succeeded(held.objectId, transfer);
  };

  const earlier = await store.find(key);
  if (earlier !== null) {
    let made: Stripe.Transfer;
    try {
      made = await stripe.transfers.retrieve(earlier.objectId, { expand: ["balance_transaction"] });
    } catch (error) {
      const failure = translateStripeError(error);
      // The transfer was made: only what it cost is unknown until Stripe answers again.
      if (failure.code === "rail_unavailable") return { status: "in_flight", reference: earlier.objectId };
      throw error;
    }
    return succeeded(earlier.objectId, made);
  }
  // Asked again with nothing recorded: an earlier ask may have made the transfer and lost Stripe's answer. Stripe
  // replays a key's answer only for a day (and replays a 500 as a 500): the transfer is looked for by its payment's
  // transfer group first, so that it is never made twice.
  if (attempt.resumed === true) {
    let made: Stripe.Transfer | undefined;
    try {
      made = await madeBefore(state, attempt);
    } catch (error) {
      const failure = translateStripeError(error);
      if (failure.code === "rail_unavailable") return { status: "in_flight", reference: key };
      throw error;
    }
    if (made !== undefined) return await recorded(made);
  }
  // Only a transfer not made yet is held to today's schedule: one made before (above) is reported whatever it cost.
  const quote = fiatFee(feeSchedule, attempt.amount);
  if (!quote.ok)
    return fail("rejected", `amount ${attempt.amount} is ${quote.error.replace("_", " ")}`, true);
  if (quote.fee > attempt.feeMax)
    return fail("fee_above_max", `fee ${quote.fee} is above the attempt's maximum ${attempt.feeMax}`, true);

  let transfer: Stripe.Transfer;
  try {
    transfer = await stripe.transfers.create(
      {
        amount: Number(attempt.amount),
        currency,
        destination: attempt.destination.accountId,
        transfer_group: attempt.paymentId,
        metadata: { [metadataKeys.paymentId]: attempt.paymentId, [metadataKeys.attemptId]: attempt.id },
        expand: ["balance_transaction"],
      },
      { idempotencyKey: key },
    );
  } catch (error) {
    const failure = translateStripeError(error);
    // No answer (a connection cut, a timeout, a 5xx): Stripe may have made the transfer. Failed, the payment's
    // money would be given back while the merchant was paid; in flight, it is asked again with the same key
    // (Stripe answers the transfer it made, within its idempotency window) or settled by transfer.created.
    if (failure.code === "rail_unavailable" && !failure.retryElsewhere)
      return { status: "in_flight", reference: key };
    return fail(failure.code, failure.message, failure.retryElsewhere);
  }
  return await recorded(transfer);
}

/** The transfer an earlier ask made for this attempt (its metadata names it), with its balance transaction. */
async function madeBefore(
  state: FiatRailState,
  attempt: OutgoingAttempt,
): Promise<Stripe.Transfer | undefined> {
  const listed = state.stripe.transfers.list({
    transfer_group: attempt.paymentId,
    limit: 100,
    expand: ["data.balance_transaction"],
  });
  for await (const transfer of listed)
    if (transfer.metadata?.[metadataKeys.attemptId] === attempt.id) return transfer;
  return undefined;
}

/**
 * A transfer made, with the fee Stripe took for it: its balance transaction's `fee` (a Connect transfer's is
 * usually 0 — the schedule above is the router's estimate, not what is booked), and that transaction as proof.
 */
function succeeded(pspId: string, transfer: Stripe.Transfer): AttemptOutcome {
  const txn = transfer.balance_transaction;
  if (txn === null || typeof txn === "string")
    return {
      status: "succeeded",
      evidence: { rail: "fiat", pspId },
      fee: 0n,
      feeDetail: { balanceTransaction: txn ?? "none" },
    };
  return {
    status: "succeeded",
    evidence: { rail: "fiat", pspId },
    fee: BigInt(txn.fee),
    feeDetail: { balanceTransaction: txn.id },
  };
}
