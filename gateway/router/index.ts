// The router: pure and synchronous, no I/O. route() ranks the rails for one payment; the rest is the cost
// model's helpers (rates, conversions), learning (success window, circuit breaker), quotes and netting.

export { staticUsdRates } from "./fixtures.ts";
export {
  buildSnapshot,
  convert,
  crossRate,
  fromMicroUsd,
  type RailAmounts,
  type RateSource,
  type Rounding,
  railAmounts,
  type StaticRates,
  snapshotAssetsMax,
  staticRateSource,
  toMicroUsd,
} from "./fx.ts";
export {
  applyLearning,
  applyLearningToRail,
  circuitState,
  createLearningState,
  type LearningConfig,
  LearningConfigError,
  type LearningState,
  learningConfigDefault,
  noteAttempt,
  type Outcome,
  outcomesWindowMax,
  type RailHealth,
  recordOutcome,
  refreshSnapshot,
  releaseProbe,
  windowCounts,
} from "./learning.ts";
export {
  type AccruedPayout,
  type NettedPayee,
  NettingInputError,
  type NettingPlan,
  type NettingThreshold,
  type NettingVerdict,
  nettingAccruedMax,
  nettingBatchPayeesMax,
  nettingVerdict,
  nettingVerdictForDecision,
  planNettingBatch,
} from "./netting.ts";
export {
  fxPairKey,
  invalidSnapshotReason,
  type PreparedSnapshot,
  prepareSnapshot,
  reachableByKind,
} from "./prepare.ts";
export {
  type CheckQuoteResult,
  type CreateQuoteResult,
  checkQuote,
  createQuote,
  type Quote,
  type QuoteCandidatesResult,
  QuoteTtlError,
  quoteCandidates,
  quoteMatches,
  quoteSecondsLeft,
  quoteTtlMsMax,
  sameDestination,
} from "./quote.ts";
export {
  failureCostMicroUsdDefault,
  feeHeadroomBpsDefault,
  outOfPlayReasons,
  RouterInputError,
  route,
} from "./route.ts";
export type {
  Candidate,
  CostBreakdown,
  Exclusion,
  ExclusionReason,
  FxRate,
  PayeeTarget,
  PaymentIntent,
  RouteDecision,
  RoutePolicy,
  Snapshot,
} from "./types.ts";
