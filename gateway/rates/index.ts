// Rates for the router: sources polled in the background (Chainlink-style price feeds read with viem, an HTTP
// endpoint) behind one RateFeed that answers the router's synchronous RateSource and tells a stale rate from a
// missing one, and sources that disagree from either; the PriceFeed contract's deployment (the development chain)
// and updates (npm run price-feed).

export { aggregatorV3Abi, priceFeedAbi, priceFeedOwnerAbi } from "./abi.ts";
export {
  type ChainlinkFeed,
  type ChainlinkFeedSourceParams,
  chainlinkFeedSource,
  chainlinkFeedsMax,
  chainlinkReadTimeoutMsDefault,
} from "./chainlink.ts";
export {
  parsePriceDecimal,
  priceDecimalsMax,
  priceIntegerDigitsMax,
  priceToAnswer,
  reduceRate,
  type ScaledPrice,
  usdRateForAsset,
  usdRateFromPrice,
} from "./decimal.ts";
export {
  deployPriceFeed,
  deployPriceFeeds,
  devPriceFeedSpecs,
  type PriceFeedClients,
  type PriceFeedSpec,
  type PriceFeedUpdate,
  priceFeedDecimalsDefault,
  readPriceFeedArtifact,
  updatePriceFeed,
} from "./deploy.ts";
export { PriceFeedError, RateConfigError } from "./errors.ts";
export {
  createRateFeed,
  type RateFeed,
  type RateFeedParams,
  type RateStatus,
  rateDisagreementMaxBpsDefault,
  rateSourcesMax,
} from "./feed.ts";
export {
  type HttpRateSourceParams,
  httpRateSource,
  httpRequestTimeoutMsDefault,
  httpResponseBytesMaxDefault,
  parseRatesBody,
} from "./http.ts";
export type {
  PolledRateSource,
  RateFetchFailure,
  RateFetchFailureReason,
  RateFetchResult,
  RateObservation,
} from "./types.ts";
