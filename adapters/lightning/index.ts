// The Lightning rail (LND through the `lightning` package) and the journal it keeps across restarts.

export {
  type LightningConfig,
  LightningConfigError,
  lightningEnvSchema,
  loadLightningConfig,
} from "./config.ts";
export { LightningRailError } from "./errors.ts";
export type { FeeEstimateResult } from "./fees.ts";
export type { CreatedInvoice, CreateInvoiceParams } from "./invoices.ts";
export type { LnurlFetch, LnurlResponse } from "./lnurl.ts";
export {
  createLightningRail,
  type LightningRail,
  type LightningRailParams,
  usdRateDefault,
} from "./rail.ts";
export {
  type FeeEstimate,
  type LightningHealth,
  type LightningRailLimits,
  type Liquidity,
  type LndConnection,
  lightningRailLimitsDefault,
  type RouteFee,
} from "./state.ts";
export {
  createFileRailStore,
  createMemoryRailStore,
  type LightningRailStore,
  RailStoreError,
  type RailStoreRecord,
} from "./store.ts";
