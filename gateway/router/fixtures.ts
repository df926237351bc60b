// Assets, rates and rails for tests, benchmarks and development: a static world, nothing live.
import type { Asset, RailSnapshot, UsdRate } from "../../core/index.ts";
import type { Snapshot } from "./types.ts";

export const usdc: Asset = { code: "USDC", scale: 6, ledger: 1 };
export const usd: Asset = { code: "USD", scale: 2, ledger: 2 };
/** Lightning's unit: millisatoshi, 11 decimals of a bitcoin. */
export const btc: Asset = { code: "BTC", scale: 11, ledger: 3 };
/** The EVM chain's native token, in wei; it pays gas and never a payment. */
export const eth: Asset = { code: "ETH", scale: 18, ledger: 4 };

/** USD micro-units per minor unit: USDC 1:1, a cent 10 000, BTC at 60 000 USD, ETH at 3 000 USD. */
export const staticUsdRates: Readonly<Record<string, UsdRate>> = {
  USDC: { microUsd: 1n, perMinorUnits: 1n },
  USD: { microUsd: 10_000n, perMinorUnits: 1n },
  BTC: { microUsd: 3n, perMinorUnits: 5n },
  ETH: { microUsd: 3n, perMinorUnits: 1_000_000_000n },
};

const base = { successes: 0, failures: 0, takenAtMs: 0, networkFeeMicroUsd: 0n } as const;

export const internalRail: RailSnapshot = {
  ...base,
  rail: "internal",
  kind: "internal",
  asset: usdc,
  available: true,
  reaches: ["account"],
  amountMin: 1n,
  amountMax: 2n ** 63n - 1n,
  liquidity: null,
  feeFixed: 0n,
  feePpm: 0n,
  latencyMs: 1,
};

/** An L2-like chain: 65 000 gas at 0.01 gwei, ETH at 3 000 USD: 1 950 micro-USD a transfer. */
export const evmRail: RailSnapshot = {
  ...base,
  rail: "evm",
  kind: "evm",
  asset: usdc,
  available: true,
  reaches: ["evm_address", "evm_split"],
  amountMin: 1n,
  amountMax: 1_000_000_000_000n,
  liquidity: 50_000_000_000n,
  feeFixed: 0n,
  feePpm: 0n,
  networkFee: { kind: "evm_gas", gasUnits: 65_000n, gasPriceWei: 10_000_000n, nativeAsset: "ETH" },
  latencyMs: 4_000,
  fxSpreadPpm: 1_000n,
};

/** An L1-like chain (chain id 1): 65 000 gas at 30 gwei, ETH at 3 000 USD: 5.85 USD a transfer. */
export const evmL1Rail: RailSnapshot = {
  ...evmRail,
  rail: "evm-l1",
  chainId: 1,
  networkFee: { kind: "evm_gas", gasUnits: 65_000n, gasPriceWei: 30_000_000_000n, nativeAsset: "ETH" },
  latencyMs: 180_000,
};

/** An L2-like chain (chain id 10): 65 000 gas at 0.01 gwei, ETH at 3 000 USD: 1 950 micro-USD a transfer. */
export const evmL2Rail: RailSnapshot = { ...evmRail, rail: "evm-l2", chainId: 10 };

/** Lightning: 1 sat base + 500 ppm routing estimate, 10 M sat outbound. */
export const lightningRail: RailSnapshot = {
  ...base,
  rail: "lightning",
  kind: "lightning",
  asset: btc,
  available: true,
  reaches: ["bolt11", "lightning_node"],
  amountMin: 1_000n,
  amountMax: 4_294_967_000n * 1_000n,
  liquidity: 10_000_000_000n * 1_000n,
  feeFixed: 0n,
  feePpm: 0n,
  networkFee: { kind: "lightning_routing", base: 1_000n, ppm: 500n },
  latencyMs: 2_000,
  fxSpreadPpm: 5_000n,
};

/** A Stripe-like PSP: 30 cents + 2.9 %, at least 50 cents of payment. */
export const fiatRail: RailSnapshot = {
  ...base,
  rail: "fiat",
  kind: "fiat",
  asset: usd,
  available: true,
  reaches: ["stripe_account"],
  amountMin: 50n,
  amountMax: 99_999_999n,
  liquidity: null,
  feeFixed: 30n,
  feePpm: 29_000n,
  latencyMs: 2 * 24 * 3_600_000,
  fxSpreadPpm: 10_000n,
};

export function staticSnapshot(rails: readonly RailSnapshot[], takenAtMs = 0): Snapshot {
  return { rails, usdRates: staticUsdRates, takenAtMs };
}
