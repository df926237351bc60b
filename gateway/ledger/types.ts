// The ledger's vocabulary: TigerBeetle's accounts and transfers, its flags and its result codes (snake_case,
// in TigerBeetle's precedence), with a few codes of our own for inputs a TypeScript caller can express but a
// u128 wire format cannot (negative numbers, amounts beyond PostgreSQL's int8, malformed evidence).
import type { Row, Statement } from "../db/index.ts";

/** Account flag bits, TigerBeetle's values. */
export const AccountFlags = {
  linked: 1,
  debitsMustNotExceedCredits: 2,
  creditsMustNotExceedDebits: 4,
  history: 8,
  /** The account carries its own timestamp, from the past (a migration into the ledger): see AccountInput.timestamp. */
  imported: 16,
  closed: 32,
} as const;

/** Transfer flag bits, TigerBeetle's values. */
export const TransferFlags = {
  linked: 1,
  pending: 2,
  postPendingTransfer: 4,
  voidPendingTransfer: 8,
  balancingDebit: 16,
  balancingCredit: 32,
  closingDebit: 64,
  closingCredit: 128,
  /** The transfer carries its own timestamp, from the past (a migration into the ledger): see TransferInput.timestamp. */
  imported: 256,
} as const;

export const accountFlagsKnown = 1 | 2 | 4 | 8 | 16 | 32;
export const transferFlagsKnown = 1 | 2 | 4 | 8 | 16 | 32 | 64 | 128 | 256;

/**
 * The largest balance, and so the largest amount moved: PostgreSQL's int8. TigerBeetle's are u128; ours stop at
 * 2^63 - 1, a deliberate difference (one int8 column per balance keeps rows small and arithmetic native). An amount
 * is any u128, as TigerBeetle's: one that would take a balance past this fails with TigerBeetle's `overflows_*`
 * codes (a post's, with `exceeds_pending_transfer_amount`), after the checks TigerBeetle makes before them (the id's
 * `exists_*` first); only one past u128 is `amount_must_not_exceed_max`. A post with u128's maximum (TigerBeetle's
 * AMOUNT_MAX), or with `amountMax`, posts the whole pending amount.
 */
export const amountMax = (1n << 63n) - 1n;
export const u128Max = (1n << 128n) - 1n;
export const u64Max = (1n << 64n) - 1n;
export const u32Max = 2 ** 32 - 1;
export const u16Max = 2 ** 16 - 1;
export const nsPerS = 1_000_000_000n;
/** Ledger timestamps are int8 nanoseconds. */
export const timestampMax = (1n << 63n) - 1n;

export type TransferEvidence = {
  /** e.g. "evm", "lightning", "stripe", "internal" */
  rail: string;
  /** e.g. "<txHash>:<logIndex>", a Lightning payment hash, a PSP id */
  reference: string;
  detail?: Record<string, string>;
};

/** Limits on evidence, so that a transfer row stays small. */
export const evidenceRailLengthMax = 32;
export const evidenceReferenceLengthMax = 256;
export const evidenceDetailEntriesMax = 16;
export const evidenceDetailLengthMax = 512;

export type AccountInput = {
  id: bigint;
  ledger: number;
  code: number;
  flags?: number;
  userData128?: bigint;
  userData64?: bigint;
  userData32?: number;
  /**
   * TigerBeetle's Account fields that a new account must leave zero (the ledger sets them): a caller that passes its
   * Account through gets `*_must_be_zero`, `reserved_field` or `timestamp_must_be_zero` as TigerBeetle answers, never
   * the fields taken as given.
   */
  debitsPending?: bigint;
  debitsPosted?: bigint;
  creditsPending?: bigint;
  creditsPosted?: bigint;
  reserved?: number;
  /**
   * The ledger sets it: anything but 0 (or absent) is `timestamp_must_be_zero`, as in TigerBeetle, unless the account
   * is `imported`. An imported account brings its own: 1 .. 2^63 - 1, before the request's own time, after every
   * account's and no transfer's (the `imported_event_*` results).
   */
  timestamp?: bigint;
};

export type Account = {
  id: bigint;
  ledger: number;
  code: number;
  flags: number;
  userData128: bigint;
  userData64: bigint;
  userData32: number;
  debitsPending: bigint;
  debitsPosted: bigint;
  creditsPending: bigint;
  creditsPosted: bigint;
  timestamp: bigint;
};

export type TransferInput = {
  id: bigint;
  debitAccountId: bigint;
  creditAccountId: bigint;
  amount: bigint;
  ledger: number;
  code: number;
  flags?: number;
  pendingId?: bigint;
  /** seconds; only on pending transfers */
  timeout?: number;
  userData128?: bigint;
  userData64?: bigint;
  userData32?: number;
  evidence?: TransferEvidence;
  /**
   * The ledger sets it: anything but 0 (or absent) is `timestamp_must_be_zero`, as in TigerBeetle, unless the transfer
   * is `imported`. An imported transfer brings its own: 1 .. 2^63 - 1, before the request's own time, after every
   * transfer's and no account's, after both its accounts' (the `imported_event_*` results); a pending one has no
   * timeout.
   */
  timestamp?: bigint;
};

export type Transfer = {
  id: bigint;
  debitAccountId: bigint;
  creditAccountId: bigint;
  amount: bigint;
  ledger: number;
  code: number;
  flags: number;
  pendingId: bigint;
  timeout: number;
  userData128: bigint;
  userData64: bigint;
  userData32: number;
  timestamp: bigint;
  evidence: TransferEvidence | null;
};

/** What became of a pending transfer. */
export type PendingStatus = "pending" | "posted" | "voided" | "expired";

export const createAccountStatuses = [
  "created",
  "linked_event_failed",
  "linked_event_chain_open",
  "imported_event_expected",
  "imported_event_not_expected",
  "timestamp_must_be_zero",
  "imported_event_timestamp_out_of_range",
  "imported_event_timestamp_must_not_advance",
  "reserved_field",
  "reserved_flag",
  // ours: a value a u128/u64/u32/u16 field cannot hold
  "id_out_of_range",
  "ledger_out_of_range",
  "code_out_of_range",
  "user_data_128_out_of_range",
  "user_data_64_out_of_range",
  "user_data_32_out_of_range",
  "id_must_not_be_zero",
  "id_must_not_be_int_max",
  "exists_with_different_flags",
  "exists_with_different_user_data_128",
  "exists_with_different_user_data_64",
  "exists_with_different_user_data_32",
  "exists_with_different_ledger",
  "exists_with_different_code",
  "exists",
  "flags_are_mutually_exclusive",
  "debits_pending_must_be_zero",
  "debits_posted_must_be_zero",
  "credits_pending_must_be_zero",
  "credits_posted_must_be_zero",
  "ledger_must_not_be_zero",
  "code_must_not_be_zero",
  "imported_event_timestamp_must_not_regress",
] as const;
export type CreateAccountStatus = (typeof createAccountStatuses)[number];

export const createTransferStatuses = [
  "created",
  "linked_event_failed",
  "linked_event_chain_open",
  "imported_event_expected",
  "imported_event_not_expected",
  "timestamp_must_be_zero",
  "imported_event_timestamp_out_of_range",
  "imported_event_timestamp_must_not_advance",
  "reserved_flag",
  // ours: a value the field's type cannot hold, or malformed evidence
  "id_out_of_range",
  "debit_account_id_out_of_range",
  "credit_account_id_out_of_range",
  "pending_id_out_of_range",
  "amount_must_not_be_negative",
  "amount_must_not_exceed_max",
  "ledger_out_of_range",
  "code_out_of_range",
  "timeout_out_of_range",
  "user_data_128_out_of_range",
  "user_data_64_out_of_range",
  "user_data_32_out_of_range",
  "evidence_invalid",
  // TigerBeetle's, in its order
  "id_must_not_be_zero",
  "id_must_not_be_int_max",
  "exists_with_different_flags",
  "exists_with_different_pending_id",
  "exists_with_different_timeout",
  "exists_with_different_debit_account_id",
  "exists_with_different_credit_account_id",
  "exists_with_different_amount",
  "exists_with_different_user_data_128",
  "exists_with_different_user_data_64",
  "exists_with_different_user_data_32",
  "exists_with_different_ledger",
  "exists_with_different_code",
  "exists_with_different_evidence",
  "exists",
  "id_already_failed",
  "flags_are_mutually_exclusive",
  "debit_account_id_must_not_be_zero",
  "debit_account_id_must_not_be_int_max",
  "credit_account_id_must_not_be_zero",
  "credit_account_id_must_not_be_int_max",
  "accounts_must_be_different",
  "pending_id_must_be_zero",
  "pending_id_must_not_be_zero",
  "pending_id_must_not_be_int_max",
  "pending_id_must_be_different",
  "timeout_reserved_for_pending_transfer",
  "closing_transfer_must_be_pending",
  "ledger_must_not_be_zero",
  "code_must_not_be_zero",
  "debit_account_not_found",
  "credit_account_not_found",
  "accounts_must_have_the_same_ledger",
  "transfer_must_have_the_same_ledger_as_accounts",
  "pending_transfer_not_found",
  "pending_transfer_not_pending",
  "pending_transfer_has_different_debit_account_id",
  "pending_transfer_has_different_credit_account_id",
  "pending_transfer_has_different_ledger",
  "pending_transfer_has_different_code",
  "exceeds_pending_transfer_amount",
  "pending_transfer_has_different_amount",
  "pending_transfer_already_posted",
  "pending_transfer_already_voided",
  "pending_transfer_expired",
  "imported_event_timestamp_must_not_regress",
  "imported_event_timestamp_must_postdate_debit_account",
  "imported_event_timestamp_must_postdate_credit_account",
  "imported_event_timeout_must_be_zero",
  "debit_account_already_closed",
  "credit_account_already_closed",
  "overflows_debits_pending",
  "overflows_credits_pending",
  "overflows_debits_posted",
  "overflows_credits_posted",
  "overflows_debits",
  "overflows_credits",
  "overflows_timeout",
  "exceeds_credits",
  "exceeds_debits",
] as const;
export type CreateTransferStatus = (typeof createTransferStatuses)[number];

/**
 * TigerBeetle's transient results: they depend on the ledger's state at the time (an account missing or closed, a
 * pending transfer not there, a balance limit), so the same transfer asked again may end otherwise. Under sticky
 * transient failures (CreateLedgerParams.transientFailures) the id of a transfer that failed with one is spent: asked
 * again, it fails with `id_already_failed`.
 */
export const isTransientFailure = (status: CreateTransferStatus): boolean =>
  status === "debit_account_not_found" ||
  status === "credit_account_not_found" ||
  status === "pending_transfer_not_found" ||
  status === "exceeds_credits" ||
  status === "exceeds_debits" ||
  status === "debit_account_already_closed" ||
  status === "credit_account_already_closed";

/**
 * `timestamp`: the created (or existing) object's timestamp (an imported one's own); for a failure, the slot the
 * ledger gave the event in its request (TigerBeetle's: an imported event's own timestamp only once it is created).
 */
export type CreateAccountResult = { status: CreateAccountStatus; timestamp: bigint };
export type CreateTransferResult = { status: CreateTransferStatus; timestamp: bigint };

/** The ledger holds the account or transfer: made by this request, or already by an earlier one with the same id. */
export const ledgerHolds = (status: string | undefined): boolean =>
  status === "created" || status === "exists";

/**
 * A statement of the caller's that commits in the same database transaction as a request's transfers, or not at
 * all: the application's own record of what the transfers did, never one without the other.
 */
export type Alongside = {
  /**
   * Called with the request's results before anything is written (again if the batch is retried): the
   * statement to write with them, or null for none. `written` tells what each transfer the batch creates moves
   * (a balancing transfer's amount is what it takes). Must not throw.
   */
  statement(results: readonly CreateTransferResult[], written: WrittenTransfers): Statement | null;
  /**
   * The statement checks rows that other requests' statements write and that no row lock of its own waits for (a
   * row another statement inserts), so it must see every batch ordered before its own committed: the request's batch
   * runs locked, alone (writer-locked.ts), never pipelined, where the callers' statements run before the clock,
   * beside batches still in flight whose rows they cannot see yet. Locked, it runs after the clock is locked. That
   * does not keep batches ordered after it from writing meanwhile: another process's pipelined batch runs its
   * callers' statements before it waits for the clock, so rows they write may be there, uncommitted and unseen by
   * this statement; that batch then finds the clock's token moved, and is rolled back and written again after this
   * one. A wait of the statement on a row such a batch holds is bounded (LedgerLimits.underLockWaitMaxMs), and the
   * batch runs again. Costs a drain of the pipeline: for rare requests only.
   */
  underLock?: boolean;
};

/** The transfers a batch writes, as it writes them. */
export type WrittenTransfers = {
  /** What the transfer `id` created by the batch moves; undefined for one the batch does not create. */
  amountOf(id: bigint): bigint | undefined;
};

/** A request's results, and the rows of the statement written alongside (null when there was none). */
export type CreateTransfersWithResult = { results: CreateTransferResult[]; rows: Row[] | null };

/**
 * TigerBeetle's AccountFilter. As there, a filter that can match nothing (limit 0, neither debits nor credits,
 * timestampMin after timestampMax) answers an empty page, and a field of 0 filters nothing.
 */
export type AccountTransfersFilter = {
  accountId: bigint;
  /** at most lookupLimitMax are answered (0: an empty page) */
  limit: number;
  /** cursor: only transfers with a timestamp strictly after this one (before it when `reversed`) */
  after?: bigint;
  /** default both true */
  debits?: boolean;
  credits?: boolean;
  /** newest first */
  reversed?: boolean;
  code?: number;
  userData128?: bigint;
  userData64?: bigint;
  userData32?: number;
  /** only transfers with a timestamp at or after this one */
  timestampMin?: bigint;
  /** only transfers with a timestamp at or before this one */
  timestampMax?: bigint;
};

export type AccountTransfersPage = { transfers: Transfer[]; nextCursor: bigint | null };

/**
 * TigerBeetle's QueryFilter: the accounts (or transfers) whose fields equal those given (0 or absent: any), in
 * timestamp order (newest first when `reversed`), a page at a time.
 */
export type QueryFilter = {
  /** at most lookupLimitMax are answered (0: an empty page) */
  limit: number;
  /** cursor: only those with a timestamp strictly after this one (before it when `reversed`) */
  after?: bigint;
  reversed?: boolean;
  userData128?: bigint;
  userData64?: bigint;
  userData32?: number;
  ledger?: number;
  code?: number;
  /** only those with a timestamp at or after this one */
  timestampMin?: bigint;
  /** only those with a timestamp at or before this one */
  timestampMax?: bigint;
};

export type AccountsPage = { accounts: Account[]; nextCursor: bigint | null };
export type TransfersPage = { transfers: Transfer[]; nextCursor: bigint | null };

/** A QueryFilter as the store reads it (ledger.ts queryOf): limits cut, zeros as absent. */
export type Query = {
  limit: number;
  after: bigint | undefined;
  reversed: boolean;
  userData128: bigint | undefined;
  userData64: bigint | undefined;
  userData32: number | undefined;
  ledger: number | undefined;
  code: number | undefined;
  timestampMin: bigint | undefined;
  timestampMax: bigint | undefined;
};

/** An AccountTransfersFilter as the store reads it (ledger.ts accountQuery): limits cut, zeros as absent. */
export type AccountQuery = Query & { accountId: bigint; debits: boolean; credits: boolean };

/** An account's balances right after one of its transfers (TigerBeetle's AccountBalance): `history` accounts keep one. */
export type AccountBalance = {
  debitsPending: bigint;
  debitsPosted: bigint;
  creditsPending: bigint;
  creditsPosted: bigint;
  /** the transfer's */
  timestamp: bigint;
};

/** getAccountBalances' answer: a page, as getAccountTransfers', its cursor the last balance's timestamp. */
export type AccountBalancesPage = { balances: AccountBalance[]; nextCursor: bigint | null };

export type LedgerLimits = {
  /** The most transfers one database transaction carries; also the most one createTransfers call may carry. */
  batchTransfersMax: number;
  /**
   * The most transfers waiting for the writer; beyond it callers get LedgerBackpressureError. One request is taken
   * whatever its size (up to batchTransfersMax) when nothing waits.
   */
  queueTransfersMax: number;
  /** How long the writer lingers for more work before it starts a batch while idle (0: start at once). */
  batchWaitMs: number;
  /** The most accounts one createAccounts call may carry. */
  batchAccountsMax: number;
  /** The most ids one lookup may carry, and the most rows one page returns. */
  lookupLimitMax: number;
  /** How many times the writer re-runs a batch after a deadlock or serialization failure before it gives up. */
  retryAttemptsMax: number;
  /** Accounts kept in the writer's memory; beyond it the cache starts over. */
  accountsCacheMax: number;
  /** Open pending transfers the writer keeps in memory after committing them, so posting or voiding one reads
   * nothing; beyond it they are read from the database. */
  pendingCacheMax: number;
  /**
   * Ids spent by a transient failure that the writer remembers (those its committed batches spent, and those a locked
   * batch read as spent), so that a retry of one is answered id_already_failed from memory rather than taken for new,
   * refused by the primary key and run again locked; beyond it the memory starts over (0: remember none). A spent id
   * never becomes free: the memory is never stale.
   */
  spentIdsCacheMax: number;
  /**
   * How often pending transfers are swept for expiry, beside the sweep timed for the earliest expiry known (0: never,
   * neither; call expirePendingTransfers yourself).
   */
  expiryIntervalMs: number;
  /** The most pending transfers one expiry sweep expires. */
  expiryBatchMax: number;
  /**
   * Batches in flight at once on PostgreSQL (validation of the next overlaps the commit of this one), at most the
   * pool's size less one; PGlite uses at most 1. 0: every batch runs locked (reads under the clock lock).
   */
  pipelineDepthMax: number;
  /**
   * How long a pipelined batch, its transfers inserted but uncommitted, waits for the batch before it to take the
   * clock; then it rolls back and runs again locked. Bounds a wait PostgreSQL's deadlock detector cannot see.
   */
  claimWaitMaxMs: number;
  /**
   * How long a statement written under the ledger's lock (Alongside.underLock) waits for a row lock, on PostgreSQL,
   * before its batch gives up the clock and runs again (lock_timeout, 55P03; at most retryAttemptsMax times, then
   * its caller hears the store failure). Its batch holds the clock while it waits, and another process's pipelined
   * batch takes its callers' rows before the clock: a wait on such a row is a cycle PostgreSQL finds only after its
   * deadlock_timeout, every process's ledger writes stalled meanwhile. 0: no bound but the statement timeout.
   */
  underLockWaitMaxMs: number;
};

export const defaultLedgerLimits: LedgerLimits = {
  batchTransfersMax: 8190,
  queueTransfersMax: 200_000,
  batchWaitMs: 0,
  batchAccountsMax: 8190,
  lookupLimitMax: 8190,
  retryAttemptsMax: 8,
  accountsCacheMax: 1_000_000,
  pendingCacheMax: 100_000,
  spentIdsCacheMax: 100_000,
  expiryIntervalMs: 1000,
  expiryBatchMax: 8190,
  pipelineDepthMax: 2,
  claimWaitMaxMs: 2000,
  underLockWaitMaxMs: 50,
};
