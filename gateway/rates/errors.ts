// The errors gateway/rates throws: broken configuration (found at construction) and a price feed that could not
// be deployed or updated. A rate that cannot be fetched is never thrown: it is a RateFetchFailure value.

import { SwitchyardError, type SwitchyardErrorOptions } from "../../core/index.ts";

/** A rate source's or the rate feed's configuration is invalid (an unknown asset, a bad URL, a bad bound). */
export class RateConfigError extends SwitchyardError {
  override name = "RateConfigError";
}

/** Deploying or updating a PriceFeed contract failed, or its artifact is missing (`npm run compile`). */
export class PriceFeedError extends SwitchyardError {
  override name = "PriceFeedError";
  /** The transaction, when one was sent. */
  readonly txHash: `0x${string}` | null;
  constructor(shortMessage: string, options: SwitchyardErrorOptions & { txHash?: `0x${string}` } = {}) {
    super(shortMessage, options);
    this.txHash = options.txHash ?? null;
  }
}
