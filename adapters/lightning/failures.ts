// LND's ways of saying no, translated once into the rail's closed set of failure codes.
import { type RailFailureCode, SwitchyardError } from "../../core/index.ts";

export type Failure = { code: RailFailureCode; message: string; retryElsewhere: boolean };

/** The flags `lightning` reports on a failed payment (LND's PaymentFailureReason). */
export type FailureFlags = {
  is_canceled?: boolean;
  is_insufficient_balance?: boolean;
  is_invalid_payment?: boolean;
  is_pathfinding_timeout?: boolean;
  is_route_not_found?: boolean;
};

/** The flags of LND's own PaymentFailureReason (what `lightning` would have reported for it). */
export function flagsFromFailureReason(reason: string): FailureFlags {
  return {
    is_canceled: reason === "FAILURE_REASON_CANCELED",
    is_insufficient_balance: reason === "FAILURE_REASON_INSUFFICIENT_BALANCE",
    is_invalid_payment: reason === "FAILURE_REASON_INCORRECT_PAYMENT_DETAILS",
    is_pathfinding_timeout: reason === "FAILURE_REASON_TIMEOUT",
    is_route_not_found: reason === "FAILURE_REASON_NO_ROUTE",
  };
}

/** null: no route was found, and whether the fee limit or the graph is to blame needs a route query. */
export function failureFromFlags(flags: FailureFlags): Failure | null {
  if (flags.is_insufficient_balance)
    return { code: "insufficient_liquidity", message: "not enough outbound liquidity", retryElsewhere: true };
  if (flags.is_invalid_payment)
    return {
      code: "rejected",
      message: "the destination rejected the payment details",
      retryElsewhere: false,
    };
  if (flags.is_pathfinding_timeout)
    return { code: "unreachable_destination", message: "no route found in time", retryElsewhere: true };
  if (flags.is_canceled)
    return { code: "rail_unavailable", message: "payment canceled", retryElsewhere: true };
  if (flags.is_route_not_found) return null;
  return { code: "unreachable_destination", message: "payment failed", retryElsewhere: true };
}

export type ErrorClass =
  | { kind: "track" } // LND knows this payment hash already: follow it instead of paying again
  | { kind: "disconnected" } // LND could not be reached: whether it registered the payment is unknown
  | { kind: "failed"; failure: Failure };

const trackPattern = /already paid|in transition|already exists|already succeeded|payment.*in.?flight/i;
const disconnectedPattern =
  /no connection established|failed to connect|connection dropped|unavailable|econnrefused|cancelled on client|deadline exceeded|connection reset|socket/i;

/** Classifies the text of an error `lightning` passed up from LND (gRPC details and message). */
export function classifyLndError(text: string): ErrorClass {
  if (trackPattern.test(text)) return { kind: "track" };
  if (/invoice expired/i.test(text))
    return {
      kind: "failed",
      failure: { code: "expired", message: "invoice expired", retryElsewhere: false },
    };
  if (disconnectedPattern.test(text)) return { kind: "disconnected" };
  if (/insufficient|not enough/i.test(text))
    return {
      kind: "failed",
      failure: { code: "insufficient_liquidity", message: text, retryElsewhere: true },
    };
  if (/no route|unable to find a path|route not found/i.test(text))
    return {
      kind: "failed",
      failure: { code: "unreachable_destination", message: text, retryElsewhere: true },
    };
  return { kind: "failed", failure: { code: "rejected", message: text, retryElsewhere: false } };
}

/**
 * The text inside what `lightning` rejects or emits: [code, message, {err: grpcError}] or an Error; one line
 * for one of ours (its short message and details).
 */
export function lndErrorText(error: unknown): string {
  if (Array.isArray(error)) {
    const [, message, detail] = error as [
      unknown,
      unknown,
      { err?: { details?: string; message?: string } }?,
    ];
    const inner = detail?.err;
    return [String(message ?? ""), inner?.details ?? "", inner?.message ?? ""].filter(Boolean).join(": ");
  }
  if (error instanceof SwitchyardError)
    return error.details === undefined ? error.shortMessage : `${error.shortMessage}: ${error.details}`;
  if (error instanceof Error) return error.message;
  return String(error);
}
