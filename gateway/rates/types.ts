// What a rate source that is polled answers: for each asset it covers, a rate and when it was observed, or why
// it has none this time. Fetching never throws: a failure is a value, and the feed keeps the last rate it had.

import type { UsdRate } from "../../core/index.ts";

/** One asset's USD mid rate and the time it describes (ms since the epoch). */
export type RateObservation = {
  readonly assetCode: string;
  readonly rate: UsdRate;
  /** A feed's round time (updatedAt), or the time an HTTP source was fetched. */
  readonly observedAtMs: number;
};

/** Why a source has no rate for an asset (or for any asset: assetCode null) this time. */
export type RateFetchFailureReason =
  | "unreachable" // the node or server did not answer, or refused the call
  | "timeout" // no complete answer within the source's timeout
  | "http_status" // the server answered with a status other than 200
  | "too_large" // the answer is bigger than the source's bound
  | "malformed" // the answer is not the documented shape, or a price is not a plain positive decimal
  | "not_listed" // the answer does not name this asset
  | "invalid_answer" // a feed answered zero or a negative price
  | "incomplete_round"; // a feed's round is not answered (answeredInRound < roundId, updatedAt 0)

export type RateFetchFailure = {
  readonly assetCode: string | null;
  readonly reason: RateFetchFailureReason;
  /** One line for the log; never a secret. */
  readonly details: string;
};

export type RateFetchResult = {
  readonly observations: readonly RateObservation[];
  readonly failures: readonly RateFetchFailure[];
};

/** A source the rate feed polls: an on-chain price feed, an HTTP endpoint. */
export type PolledRateSource = {
  /** For logs and status: "chainlink", "http", … */
  readonly name: string;
  /** The assets this source prices. The feed never answers one of them from its static table. */
  readonly assetCodes: readonly string[];
  /** Resolves with what was observed and what failed; never rejects. */
  fetchRates(): Promise<RateFetchResult>;
};
