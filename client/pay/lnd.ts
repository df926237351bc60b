// An LND node as a Lightning payer, through the `lightning` package: `pay` with the invoice and a fee ceiling.
// The package (gRPC) is loaded on the first payment, so the rest of the SDK does not need it.
import type { AuthenticatedLnd, PayResult } from "lightning";
import { PayerFailedError } from "./errors.ts";
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
      const { pay } = await import("lightning");
      let paid: PayResult;
      try {
        paid = await pay({
          lnd: params.lnd,
          request: invoice,
          max_fee_mtokens: ceiling.toString(),
          pathfinding_timeout: params.pathfindingTimeoutMs ?? lndPathfindingTimeoutMsDefault,
        });
      } catch (error) {
        throw new PayerFailedError("LND could not pay the invoice", {
          details: lndText(error),
          cause: error,
        });
      }
      return { preimage: paid.secret, feeMsat: BigInt(paid.fee_mtokens) };
    },
  };
}

/** What `lightning` rejected with ([code, message, details] arrays), in one line. */
function lndText(error: unknown): string {
  if (Array.isArray(error)) {
    const details = error[2] as { err?: { details?: string } } | undefined;
    return [error[0], error[1], details?.err?.details].filter((part) => part !== undefined).join(" ");
  }
  return error instanceof Error ? (error.message.split("\n")[0] ?? "") : String(error);
}
