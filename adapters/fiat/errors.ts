// Stripe's errors, translated once at the adapter boundary into the rail's closed set of failure codes.
// `retryElsewhere` is true only when Stripe certainly did nothing: after a timeout or a 5xx the charge or
// transfer may exist, so the attempt is retried on this rail with the same idempotency key, never elsewhere.
import Stripe from "stripe";
import { type RailFailureCode, SwitchyardError } from "../../core/index.ts";

export type FiatFailure = {
  readonly code: RailFailureCode;
  readonly message: string;
  readonly retryElsewhere: boolean;
  /** Stripe's own error type and code, for logs: "StripeInvalidRequestError/balance_insufficient". */
  readonly stripeError: string;
};

/** Thrown for what is a bug or a misconfiguration, never for an expected business failure. */
export class FiatRailError extends SwitchyardError {
  override name = "FiatRailError";
}

const insufficientFundsCodes = new Set(["balance_insufficient", "insufficient_funds"]);
const unreachableCodes = new Set(["account_invalid", "no_account", "account_closed"]);
const expiredCodes = new Set(["expired_card", "payment_intent_unexpected_state"]);

/** Socket errors that say the request never left: nothing could have been executed. */
const neverConnectedCodes = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);

/** The code of the socket error under a connection error (Stripe keeps it as `detail`); "" when none. */
function causeCode(error: Stripe.errors.StripeError): string {
  const detail = (error as { detail?: unknown }).detail;
  const code =
    typeof detail === "object" && detail !== null ? (detail as { code?: unknown }).code : undefined;
  return typeof code === "string" ? code : "";
}

/** Maps anything a Stripe call threw to a failure value; rethrows what is not Stripe's (a bug of ours). */
export function translateStripeError(error: unknown): FiatFailure {
  if (!(error instanceof Stripe.errors.StripeError)) throw error;
  const stripeError = `${error.type}${error.code === undefined ? "" : `/${error.code}`}`;
  const message = error.message.split("\n")[0] ?? "stripe error";
  const failure = (code: RailFailureCode, retryElsewhere: boolean): FiatFailure => ({
    code,
    message,
    retryElsewhere,
    stripeError,
  });
  // A connection never made (refused, no such host) sent nothing; one cut or timed out may have been executed, and
  // so may an earlier try of one that was retried (the client retries, and keeps only the last socket error).
  if (error instanceof Stripe.errors.StripeConnectionError)
    return failure(
      "rail_unavailable",
      neverConnectedCodes.has(causeCode(error)) && !/retried/i.test(error.message),
    );
  if (error instanceof Stripe.errors.StripeAPIError) return failure("rail_unavailable", false);
  // Too many requests: Stripe ran none of this try, but the client may have retried an earlier one it ran.
  if (error instanceof Stripe.errors.StripeRateLimitError) return failure("rail_unavailable", false);
  // The key was used before with other parameters (400; a key still in use by a try Stripe runs is a 409, which
  // stripe-node makes a StripeAPIError, answered above): a request under this key ran, and its outcome is not this
  // answer. Asked again under the same key, never taken for a refusal: a refund or transfer recorded failed while
  // Stripe made it would leave its amount free to be paid a second time.
  if (error instanceof Stripe.errors.StripeIdempotencyError) return failure("rail_unavailable", false);
  // Credentials refused: the request never ran, another rail may take the payment.
  if (error instanceof Stripe.errors.StripeAuthenticationError) return failure("rail_unavailable", true);
  if (error instanceof Stripe.errors.StripePermissionError) return failure("rail_unavailable", true);
  if (error instanceof Stripe.errors.StripeCardError) {
    return failure(error.code !== undefined && expiredCodes.has(error.code) ? "expired" : "rejected", true);
  }
  if (error instanceof Stripe.errors.StripeInvalidRequestError) {
    if (error.code !== undefined && insufficientFundsCodes.has(error.code))
      return failure("insufficient_liquidity", true);
    if (error.param === "destination" || (error.code !== undefined && unreachableCodes.has(error.code)))
      return failure("unreachable_destination", true);
    if (error.code !== undefined && expiredCodes.has(error.code)) return failure("expired", true);
    return failure("rejected", true);
  }
  // Any other StripeError (5xx-like or unknown): outcome unknown, retry here with the same key.
  if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500)
    return failure("rejected", true);
  return failure("rail_unavailable", false);
}
