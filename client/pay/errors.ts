// The payer SDK's thrown errors, on viem's model: a fixed `name`, a one-line `shortMessage`, `details`, the
// original `cause`, and a stable `code` a caller may branch on (`error.code === "budget_exceeded"`). Every one
// extends SwitchyardError; `PayError` is their common base, so `instanceof PayError` catches them all.
import { SwitchyardError, type SwitchyardErrorOptions } from "../../core/errors.ts";

export type PayErrorCode =
  | "budget_exceeded"
  | "amount_over_limit"
  | "no_acceptable_offer"
  | "payment_refused"
  | "malformed_challenge"
  | "payer_failed"
  | "payment_outcome_unknown";

export abstract class PayError extends SwitchyardError {
  abstract readonly code: PayErrorCode;
}

/** What the offer asked for, in its asset's minor units (msat on Lightning). */
export type OfferAmount = { readonly asset: string; readonly amount: bigint };

/** The total budget left for the asset does not cover the offer (nothing was paid). */
export class BudgetExceededError extends PayError {
  override name = "BudgetExceededError";
  readonly code = "budget_exceeded";
  readonly asset: string;
  readonly amount: bigint;
  /** What the budget still held for the asset when the payment was refused. */
  readonly remaining: bigint;

  constructor(params: OfferAmount & { remaining: bigint }, options: SwitchyardErrorOptions = {}) {
    super(`The budget does not cover ${params.amount} of ${params.asset}`, {
      details: `${params.remaining} remaining`,
      ...options,
    });
    this.asset = params.asset;
    this.amount = params.amount;
    this.remaining = params.remaining;
  }
}

/** Every acceptable offer costs more than the per-request limit of its asset (nothing was paid). */
export class AmountOverLimitError extends PayError {
  override name = "AmountOverLimitError";
  readonly code = "amount_over_limit";
  readonly asset: string;
  readonly amount: bigint;
  readonly amountMax: bigint;

  constructor(params: OfferAmount & { amountMax: bigint }, options: SwitchyardErrorOptions = {}) {
    super(`${params.amount} of ${params.asset} is over the per-request limit`, {
      details: `limit ${params.amountMax}`,
      ...options,
    });
    this.asset = params.asset;
    this.amount = params.amount;
    this.amountMax = params.amountMax;
  }
}

/** The 402 offered no scheme, network and asset the policy accepts, or none the configured payers can pay. */
export class NoAcceptableOfferError extends PayError {
  override name = "NoAcceptableOfferError";
  readonly code = "no_acceptable_offer";
  /** What was offered, one line each (`x402 v2 exact eip155:8453 0x8335… 10000`, `l402 lnbc… 21000 msat`). */
  readonly offered: readonly string[];

  constructor(offered: readonly string[], options: SwitchyardErrorOptions = {}) {
    super("No offer in the 402 is acceptable", {
      details: offered.length === 0 ? "nothing offered" : `offered: ${offered.join("; ")}`,
      ...options,
    });
    this.offered = offered;
  }
}

/**
 * The server answered the paid retry with a refusal (402 again, or a failed settlement receipt). `reason` is the
 * server's own code (`invalid_exact_evm_signature`, `insufficient_funds`, an L402 refusal code…) or null.
 * The payment is not retried: what was authorized stays counted in the budget.
 */
export class PaymentRefusedError extends PayError {
  override name = "PaymentRefusedError";
  readonly code = "payment_refused";
  readonly reason: string | null;
  readonly status: number;
  /**
   * x402: the payment's header as it was sent (name and value; never in the message). With `reason`
   * `unexpected_settle_error` its settlement was still in flight: the same request with this header again, once the
   * transaction is mined, is served by a gateway that owes it, and pays nothing more (wrapFetch sends a request that
   * carries a payment as it is).
   */
  declare readonly payment: { readonly name: string; readonly value: string } | null;

  constructor(
    params: {
      reason: string | null;
      status: number;
      scheme: string;
      payment?: { readonly name: string; readonly value: string };
    },
    options: SwitchyardErrorOptions = {},
  ) {
    super(`The server refused the ${params.scheme} payment`, {
      details: `${params.status} ${params.reason ?? "without a reason"}`,
      ...options,
    });
    this.reason = params.reason;
    this.status = params.status;
    // Not enumerable: a bearer credential of the payer's money, kept out of JSON, inspection and log serializers.
    Object.defineProperty(this, "payment", { value: params.payment ?? null, enumerable: false });
  }
}

/** A 402 whose challenge cannot be read: an undecodable header, JSON of the wrong shape, an invoice without amount. */
export class MalformedChallengeError extends PayError {
  override name = "MalformedChallengeError";
  readonly code = "malformed_challenge";
}

/** The payer (wallet, signer, Lightning node) failed to sign or to pay; nothing is counted against the budget. */
export class PayerFailedError extends PayError {
  override name = "PayerFailedError";
  readonly code = "payer_failed";
}

/**
 * The payer may have paid: it answered without a usable proof (a wallet's preimage missing or unreadable), or lost
 * sight of a payment it had begun (an LND stream that broke after the payment was sent), or the request carrying an
 * x402 payment got no answer (a timeout, an abort, the connection lost while the payment settled). The payment is
 * counted against the budget; ask the wallet what became of it before paying again — or, with `payment`, send the
 * same request again carrying it: a gateway that settled it serves it once (it is owed), one that did not takes it
 * as the payment it is, and nothing more is signed (wrapFetch sends a request that carries a payment as it is).
 */
export class PaymentOutcomeUnknownError extends PayError {
  override name = "PaymentOutcomeUnknownError";
  readonly code = "payment_outcome_unknown";
  /** x402: the payment's header as it was sent (name and value; never in the message, JSON or inspection). */
  declare readonly payment: { readonly name: string; readonly value: string } | null;

  constructor(
    shortMessage: string,
    options: SwitchyardErrorOptions & { payment?: { readonly name: string; readonly value: string } } = {},
  ) {
    const { payment, ...rest } = options;
    super(shortMessage, rest);
    Object.defineProperty(this, "payment", { value: payment ?? null, enumerable: false });
  }
}
