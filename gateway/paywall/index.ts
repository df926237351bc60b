// The paywall (issue #23): a tenant's priced resources (paywalls.ts), the framework-free verdict (core.ts) at
// locked prices (price.ts) with CORS (cors.ts), the Fastify glue (fastify.ts), a remote Switchyard's verdict
// (remote.ts), the gateway's per-tenant service (service.ts), and the boundary to the schemes (scheme.ts).
export {
  createPaywall,
  matchPaywall,
  type PaywallCheck,
  type PaywallCompletion,
  type PaywallDeps,
  type PaywallVerdict,
  pathOf,
  paymentRequiredCode,
  paywallsRefreshMsDefault,
} from "./core.ts";
export {
  corsHeaders,
  isPreflight,
  type PaywallCorsOrigins,
  paywallAllowedHeaders,
  paywallExposedHeaders,
  preflightHeaders,
} from "./cors.ts";
export {
  paywallRequestOf,
  type SwitchyardPaywallOptions,
  setHeaderLines,
  switchyardPaywall,
} from "./fastify.ts";
export {
  addPaywall,
  deletePaywall,
  getPaywall,
  isPaywallResource,
  type Paywall,
  type PaywallErrorCode,
  type PaywallFields,
  type PaywallOffer,
  type PaywallRefusal,
  type PaywallResult,
  type PaywallSplitShare,
  type PaywallsDeps,
  paywallErrorStatus,
  paywallOffersMax,
  paywallResourceLengthMax,
  paywallResourcePattern,
  paywallSplitSharesMax,
  paywallsListLimitMax,
  paywallsPerTenantMax,
  paywallTokenLifetimeSecondsDefault,
  paywallTokenLifetimeSecondsMax,
  tenantPaywalls,
  updatePaywall,
} from "./paywalls.ts";
export { convertPrice, createPriceLocks, type PriceLocks, rateLockWindowMsDefault } from "./price.ts";
export { RemotePaywallError, type RemotePaywallOptions, remotePaywall } from "./remote.ts";
export {
  type ChallengePart,
  type HeaderLine,
  type PaymentRefusal,
  type PaymentScheme,
  type PaywallRequest,
  type PricedResource,
  type SchemePrice,
  type SchemeVerdict,
  splitShares,
} from "./scheme.ts";
export {
  createPaywallService,
  type PaywallService,
  pendingCompleteWithinMs,
  pendingVerdictsMax,
  pendingVerdictsPerTenantMax,
} from "./service.ts";
