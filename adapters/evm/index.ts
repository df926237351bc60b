export {
  type DeployedContracts,
  deployContracts,
  revenueSplitterAbi,
  splitIdOf,
  testUsdAbi,
} from "./contracts.ts";
export { type EmbeddedChain, hardhatMnemonic, startEmbeddedChain } from "./dev-chain.ts";
export { createEvmRail, EvmRailError, type EvmRailParams, evmMigrations } from "./rail.ts";
