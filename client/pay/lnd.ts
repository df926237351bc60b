// An LND node as a Lightning payer, through the `lightning` package: `pay` with the invoice and a fee ceiling.
// The package (gRPC) is loaded on the first payment, so the rest of the SDK does not need it.
import type { AuthenticatedLnd, GetPaymentResult, PayResult } from "lightning";
import { parseBolt11 } from "../../core/bolt11.ts";
import { PayerFailedError, PaymentOutcomeUnknownError } from "./errors.ts";
import type { LightningPayer } from "./payers.ts";

/** How long LND may look for a route by default (ms). */
export const lndPathfindingTimeoutMsDefault = 30_000;
/** The default routing fee ceiling: 10 sat, whatever the amount. */
export const lndFeeMsatMaxDefault = 10_000n;

export type LndPayerParams = {
  /** A node: `authenticatedLndGrpc({ cert, macaroon, socket }).lnd` (the macaroon needs offchain:write). */
  lnd: AuthenticatedLnd;
  /** The routing fee ceiling of a payment of `amountMsat`; default 10 sat. Reserved in the budget with the amount. */
  feeMsatMax?: (amountMsat: bigint) => bigint;
  pathfindingTimeoutMs?: number;
};

export function lndPayer(params: LndPayerParams): LightningPayer {
  const feeMsatMax = params.feeMsatMax ?? (() => lndFeeMsatMaxDefault);
  return {
    feeMsatMax,
    async payInvoice({ invoice, feeMsatMax: ceiling }) {
      const { getPayment, pay } = await import("lightning");
      let paid: PayResult;
      try {
        paid = await pay({
          lnd: params.lnd,
          request: invoice,
          max_fee_mtokens: ceiling.toString(),
          pathfinding_timeout: params.pathfindingTimeoutMs ?? lndPathfindingTimeoutMsDefault,
        });
      } catch (error) {
        const couldNotPay = () =>
          new PayerFailedError("LND could not pay the invoice", { details: lndText(error), cause: error });
        if (lndPaymentFailed(error)) throw couldNotPay();
        // The stream broke, or LND refused for a reason of its own (the invoice paid already): what LND recorded
        // of the payment says whether it left.
        const hash = parseBolt11(invoice);
        let status: GetPaymentResult | null = null;
        if (hash.ok)
          try {
            status = await getPayment({ lnd: params.lnd, id: hash.value.paymentHash });
          } catch (lookup) {
            if (Array.isArray(lookup) && lookup[1] === "SentPaymentNotFound") throw couldNotPay();
          }
        if (status?.is_confirmed === true && status.payment !== undefined)
          return { preimage: status.payment.secret, feeMsat: BigInt(status.payment.fee_mtokens) };
        if (status?.is_failed === true) throw couldNotPay();
        throw new PaymentOutcomeUnknownError(
          status?.is_pending === true
            ? "LND is still paying the invoice"
            : "LND may have paid the invoice: its payment stream broke",
          { details: lndText(error), cause: error },
        );
      }
      return { preimage: paid.secret, feeMsat: BigInt(paid.fee_mtokens) };
    },
  };
}

/**
 * The failures `pay` reports once nothing can have left the node: a request refused before sending (4xx, an
 * unsupported feature: 501; thrown Errors are its checks of the arguments), or a payment LND reports failed for
 * good. Anything else (`UnexpectedPaymentError`: the gRPC stream broke, or LND refused for a reason of its own,
 * such as the invoice being paid already) leaves the payment's fate unknown.
 */
const lndFinalFailures = new Set([
  "PaymentExecutionCanceled",
  "InsufficientBalanceToAttemptPayment",
  "PaymentRejectedByDestination",
  "PaymentAttemptsTimedOut",
  "PaymentPathfindingFailedToFindPossibleRoute",
  "FailedToFindPayableRouteToDestination",
]);

export function lndPaymentFailed(error: unknown): boolean {
  if (error instanceof Error) return true;
  if (!Array.isArray(error)) return false;
  const [status, code, details] = error as [unknown, unknown, { err?: { details?: unknown } } | undefined];
  if (typeof status === "number" && status >= 400 && status < 500) return true;
  if (status === 501) return true;
  // gRPC had no connection to LND when the call began: nothing reached it (a connection that broke mid-call says
  // otherwise, and stays unknown).
  if (typeof details?.err?.details === "string" && lndUnreached.test(details.err.details)) return true;
  return typeof code === "string" && lndFinalFailures.has(code);
}

/** What gRPC says of a call that found no connection to the node. */
const lndUnreached = /^(No connection established|failed to connect to all addresses)/i;

/** What `lightning` rejected with ([code, message, details] arrays), in one line. */
function lndText(error: unknown): string {
  if (Array.isArray(error)) {
    const details = error[2] as { err?: { details?: string } } | undefined;
    return [error[0], error[1], details?.err?.details].filter((part) => part !== undefined).join(" ");
  }
  return error instanceof Error ? (error.message.split("\n")[0] ?? "") : String(error);
}
