// The Lightning rail (LND through the `lightning` package) and the journal it keeps across restarts.

export { type Bolt11Error, type Bolt11Summary, parseBolt11 } from "./bolt11.ts";
export {
  type LightningConfig,
  LightningConfigError,
  lightningEnvSchema,
  loadLightningConfig,
} from "./config.ts";
export {
  type CreatedInvoice,
  type CreateInvoiceParams,
  createLightningRail,
  type FeeEstimate,
  type FeeEstimateResult,
  type LightningHealth,
  type LightningRail,
  LightningRailError,
  type LightningRailLimits,
  type LightningRailParams,
  type Liquidity,
  type LndConnection,
  lightningRailLimitsDefault,
  usdRateDefault,
} from "./rail.ts";
export {
  createFileRailStore,
  createMemoryRailStore,
  type LightningRailStore,
  RailStoreError,
  type RailStoreRecord,
} from "./store.ts";
