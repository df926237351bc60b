// The ledger: TigerBeetle's double-entry model on PostgreSQL and PGlite, behind a group-commit writer.
import path from "node:path";
import type { MigrationSource } from "../db/index.ts";

export { accountCodes, namedCodes, transferCodes } from "./codes.ts";
export {
  AlongsideStatementError,
  LedgerBackpressureError,
  LedgerClosedError,
  LedgerInvariantError,
  LedgerRequestInvalidError,
  LedgerRequestTooLargeError,
  LedgerStoreError,
} from "./errors.ts";
export { createIdGenerator, type IdGenerator, idToUuid, ledgerId } from "./id.ts";
export { type CreateLedgerParams, createLedger, type Ledger } from "./ledger.ts";
export {
  type AccountSpec,
  type BalanceRule,
  type ChainMember,
  credit,
  creditChain,
  debit,
  findReservation,
  type HeldLeg,
  holdLegs,
  LedgerPostingError,
  type Leg,
  type MoveOutcome,
  moveEach,
  openAccounts,
  type Posting,
  type PostingTransfer,
  postLegs,
  postReservation,
  type Reservation,
  type ReserveOutcome,
  reserve,
  reverse,
  reverseLegs,
  takeBack,
  voidLegs,
  voidReservation,
  writeChainWith,
} from "./postings.ts";
export {
  applyAccountRequest,
  applyTransferRequests,
  type BalanceSnapshot,
  emptyLedgerState,
  type LedgerState,
} from "./semantics.ts";
export { emptyImportedBounds, type ImportedBounds } from "./semantics-fields.ts";
export { selectLedgerTotals, selectTransfersWithStatus } from "./store.ts";
export {
  type Account,
  type AccountBalance,
  type AccountBalancesPage,
  AccountFlags,
  type AccountInput,
  type AccountsPage,
  type AccountTransfersFilter,
  type AccountTransfersPage,
  type Alongside,
  amountMax,
  type CreateAccountResult,
  type CreateAccountStatus,
  type CreateTransferResult,
  type CreateTransferStatus,
  type CreateTransfersWithResult,
  createAccountStatuses,
  createTransferStatuses,
  defaultLedgerLimits,
  type LedgerLimits,
  ledgerHolds,
  type PendingStatus,
  type QueryFilter,
  type Transfer,
  type TransferEvidence,
  TransferFlags,
  type TransferInput,
  type TransfersPage,
  type WrittenTransfers,
} from "./types.ts";

/** The ledger's SQL migrations, for `migrate(db, [ledgerMigrations, …])`. */
export const ledgerMigrations: MigrationSource = {
  namespace: "ledger",
  directory: path.join(import.meta.dirname, "migrations"),
  tables: (name) => name.startsWith("ledger_"),
};
