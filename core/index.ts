// core: the shared vocabulary every other part speaks, importing nothing outside this folder — money and
// assets, destinations, the Rail contract with its evidence and events, the database interface rails and
// stores write through, and the base of every thrown error.

export { setBounded } from "./bounded.ts";
export type { Db, MigrationSource, Row, Sql, Statement } from "./db.ts";
export type { Destination, DestinationKind, RailKind } from "./destinations.ts";
export { causeWhere, isUniqueViolation, SwitchyardError, type SwitchyardErrorOptions } from "./errors.ts";
export { everyMember } from "./every.ts";
export {
  type SplitDefinition,
  type SplitterEvent,
  type SplitterEventName,
  type SplitterEventSink,
  splitterEventNames,
  type WatchedEvent,
} from "./evm-events.ts";
export { type FeeReceipt, feeWeiOf, l1FeeWeiOf } from "./evm-fees.ts";
export { nodeRefused, readInHalves } from "./evm-ranges.ts";
export { transferSendKeysSql, x402BatchSendKeyPrefix } from "./evm-sends.ts";
export { hostName, hostPort, isHostName, parseHostPort } from "./host.ts";
export { type LogFn, type Logger, silentLogger } from "./logger.ts";
export {
  type Asset,
  type AssetCode,
  amountMax,
  assetByCode,
  assets,
  basisPointsTotal,
  decimalDigitsMax,
  divCeil,
  divFloor,
  divHalfEven,
  formatAmount,
  type ParseAmountError,
  parseAmount,
  ppmTotal,
  splitByBasisPoints,
} from "./money.ts";
export type {
  AttemptOutcome,
  AttemptSucceeded,
  CircuitState,
  FeePaid,
  NetworkFeeEstimate,
  NetworkFeeModel,
  OutgoingAttempt,
  PayoutBatch,
  PayoutBatchOutcome,
  PayoutRefused,
  PayoutReversal,
  Rail,
  RailCapitalMovement,
  RailCheck,
  RailEvent,
  RailEventHandler,
  RailEventVerdict,
  RailFailureCode,
  RailFee,
  RailRoute,
  RailRouteReply,
  RailRouteRequest,
  RailSnapshot,
  RailUnavailable,
  RailUnavailableCode,
  ReceiveCancellation,
  ReceiveCancellationOutcome,
  ReceivedRefund,
  ReceivedRefundOutcome,
  ReceiveOutcome,
  ReceiveRequest,
  SettlementEvidence,
  SignedPayment,
  SignedPaymentOutcome,
  SignedPaymentRefusal,
  UsdRate,
} from "./rail.ts";
export { railUnreachableRetryAfterSeconds } from "./rail.ts";
export { randomInt64, takeRandom } from "./random.ts";
export { tenantShareOf } from "./shares.ts";
export { isStorableText, storableText } from "./text.ts";
export { wholeBigint, wholeNumber } from "./whole-number.ts";
