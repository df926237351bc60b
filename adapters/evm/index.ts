// The EVM rail (viem): payouts and splitter calls from the hot wallet, the RevenueSplitter watcher, the
// contracts' ABIs (generated), deployment, split hashing and typed data, and the embedded development chain.
// The splitter's events are core's vocabulary (the watcher produces them, the ledger mirror consumes them).
export {
  type SplitterEvent,
  type SplitterEventName,
  type SplitterEventSink,
  splitterEventNames,
  type WatchedEvent,
} from "../../core/index.ts";
export { forwarderFactoryAbi, revenueSplitterAbi, testUsdAbi, testUsdErrorsAbi } from "./abi.generated.ts";
export { authorizationFields, signedPaymentRefusalStatus } from "./authorizations.ts";
export {
  type ContractArtifact,
  ContractArtifactMissingError,
  ContractDeploymentError,
  type ContractName,
  contractNames,
  type DeployContractsParams,
  type DeployedContracts,
  deployContracts,
  deployForwarderFactory,
  deployRevenueSplitter,
  deployWithIgnition,
  IgnitionDeploymentError,
  IgnitionDeploymentFolderError,
  ignitionModuleId,
  readContractArtifact,
  readIgnitionDeployment,
  testUsdDefaults,
} from "./deploy.ts";
export { type DepositLog, depositTopicsPerCallMax } from "./deposit-source.ts";
export {
  authorizationNonceForInvoice,
  authorizationPath,
  type DepositParams,
  depositSaltOf,
  forwarderAddressOf,
} from "./deposits.ts";
export {
  developmentAccountKey,
  type EmbeddedChain,
  type EmbeddedChainOptions,
  hardhatChainId,
  hardhatMnemonic,
  type ServedChain,
  serveChainRpc,
  startEmbeddedChain,
} from "./dev-chain.ts";
export { EvmRailError, translatingViemErrors } from "./errors.ts";
export { type GasAboveMax, type GasFees, type GasPolicy, gasFeesFor, readBaseFee } from "./gas.ts";
export { gasPaid } from "./payout.ts";
export { createEvmRail, evmMigrations } from "./rail.ts";
export {
  gasBookedBy,
  type MinedSend,
  outcomeOwnerOf,
  type SendGasBooker,
  type SendGasBooking,
  type SendGasPassResult,
  type SendKind,
  sendKindOf,
} from "./send-gas.ts";
export {
  batchHashOf,
  canonicalSplit,
  idFromReference,
  referenceFromId,
  referenceTextBytesMax,
  type SplitDefinition,
  settleBatchPayeesMax,
  splitIdOf,
  splitRecipientsMax,
} from "./splits.ts";
export type { DepositSweep, SweepBooker, SweepPassResult } from "./sweeps.ts";
export {
  type AuthorizationMessage,
  authorizationNonceOf,
  receiveWithAuthorizationTypedData,
  type TokenDomain,
} from "./typed-data.ts";
export type {
  DistributeParams,
  EvmCallOutcome,
  EvmRail,
  EvmRailParams,
  NativeBalance,
  PayWithAuthorizationParams,
  SettleBatchParams,
} from "./types.ts";
export {
  type ChainWatcher,
  createChainWatcher,
  createSplitterWatcher,
  EvmWatcherError,
  type PollResult,
  type SplitterWatcher,
  type SplitterWatcherParams,
} from "./watcher.ts";
export {
  type AuthorizationBatchItemOutcome,
  type AuthorizationBatchItemRefusal,
  type AuthorizationBatchOutcome,
  type AuthorizationBatchParams,
  authorizationBatchItemsMax,
  fitsAuthorizationBatch,
  packAuthorizations,
  type TransferAuthorization,
  x402BatchSettlerAbi,
} from "./x402-batch.ts";
