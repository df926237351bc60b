// The splitter's events are core's vocabulary (the watcher produces them, the ledger mirror consumes them).
export {
  type SplitterEvent,
  type SplitterEventName,
  type SplitterEventSink,
  splitterEventNames,
  type WatchedEvent,
} from "../../core/index.ts";
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
  type SplitterWatcher,
  type SplitterWatcherParams,
} from "./watcher.ts";
