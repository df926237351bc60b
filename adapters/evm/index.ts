export {
  authorizationNonceOf,
  batchHashOf,
  canonicalSplit,
  type DeployedContracts,
  deployContracts,
  receiveWithAuthorizationTypedData,
  referenceFromId,
  revenueSplitterAbi,
  type SplitDefinition,
  splitIdOf,
  testUsdAbi,
  testUsdDefaults,
} from "./contracts.ts";
export { type EmbeddedChain, hardhatMnemonic, startEmbeddedChain } from "./dev-chain.ts";
export {
  createEvmRail,
  type DistributeParams,
  type EvmCallOutcome,
  type EvmRail,
  EvmRailError,
  type EvmRailParams,
  evmMigrations,
  type PayWithAuthorizationParams,
  type SettleBatchParams,
} from "./rail.ts";
export {
  createSplitterWatcher,
  EvmWatcherError,
  type PollResult,
  type SplitterEvent,
  type SplitterEventName,
  type SplitterEventSink,
  type SplitterWatcher,
  type SplitterWatcherParams,
  splitterEventNames,
  type WatchedEvent,
} from "./watcher.ts";
