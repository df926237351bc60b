// What the ledger throws, each a SwitchyardError (core/errors.ts): a fixed name, a one-line short message, details
// and the cause. A transfer the ledger refuses is not among them: that is a result code (types.ts). These are a full
// queue, a request over the limits, a closed ledger, the database failing, and a broken invariant (a bug).
import { SwitchyardError } from "../../core/errors.ts";
import { DbCommitOutcomeUnknownError, DbQueryTimeoutError, serverSqlState } from "../db/index.ts";

/** The writer's queue is full: try again later. Never queued, never partly applied. */
export class LedgerBackpressureError extends SwitchyardError {
  override readonly name = "LedgerBackpressureError";
  readonly queuedTransfers: number;
  readonly queueTransfersMax: number;
  constructor(params: { queuedTransfers: number; queueTransfersMax: number }) {
    super("ledger writer queue is full", {
      details: `${params.queuedTransfers} transfers queued, at most ${params.queueTransfersMax}`,
    });
    this.queuedTransfers = params.queuedTransfers;
    this.queueTransfersMax = params.queueTransfersMax;
  }
}

/** A call carried more events or ids than the ledger's limits allow; nothing was applied. */
export class LedgerRequestTooLargeError extends SwitchyardError {
  override readonly name = "LedgerRequestTooLargeError";
  readonly size: number;
  readonly sizeMax: number;
  constructor(params: { size: number; sizeMax: number }) {
    super(`ledger request too large: ${params.size} > ${params.sizeMax}`);
    this.size = params.size;
    this.sizeMax = params.sizeMax;
  }
}

/** A call the ledger cannot take as asked (an empty createTransfersWith, a page limit out of range); nothing was applied. */
export class LedgerRequestInvalidError extends SwitchyardError {
  override readonly name = "LedgerRequestInvalidError";
}

/**
 * The database failed (connection lost, disk full, retries exhausted, a statement written alongside refused). The
 * batch's outcome may be unknown if it failed during COMMIT: retry with the same ids, which are idempotent. SQL
 * errors become this once, where the ledger's SQL runs (store.ts); `cause` is the database's own error.
 */
export class LedgerStoreError extends SwitchyardError {
  override readonly name: string = "LedgerStoreError";
  /**
   * The SQLSTATE of the database's error, when the server sent one (PostgreSQL's or PGlite's error): a Node error's
   * code (ECONNREFUSED, EPIPE) or another layer's is none.
   */
  readonly sqlState: string | undefined;
  constructor(shortMessage: string, options: { cause: unknown; details?: string }) {
    super(shortMessage, options);
    this.sqlState = serverSqlState(options.cause);
  }
}

/**
 * A caller's statement written alongside a batch failed (its own reasons: a key it inserts is taken, …): the
 * transaction rolled back. `statementIndex` says which of the batch's statements it was, so that only its caller hears
 * of it and the others are written again together.
 */
export class AlongsideStatementError extends LedgerStoreError {
  override readonly name = "AlongsideStatementError";
  readonly statementIndex: number;
  constructor(statementIndex: number, cause: unknown) {
    super("ledger statement written alongside failed", { cause, details: `statement ${statementIndex}` });
    this.statementIndex = statementIndex;
  }
}

/** The ledger was closed; nothing more is accepted. */
export class LedgerClosedError extends SwitchyardError {
  override readonly name = "LedgerClosedError";
  constructor() {
    super("ledger is closed");
  }
}

/** What the ledger's code assumes did not hold: a bug, or a database changed behind its back. */
export class LedgerInvariantError extends SwitchyardError {
  override readonly name = "LedgerInvariantError";
}

/** SQLSTATE raised by ledger_stale_batch(): the clock did not carry the expected token; nothing was written. */
export const staleBatchCode = "SYL01";

/** The clock carried another token than the batch expected: nothing of the batch was written. */
export class StaleClockError extends SwitchyardError {
  override readonly name = "StaleClockError";
  readonly code = staleBatchCode;
  constructor() {
    super("ledger clock moved: another writer committed in between");
  }
}

/**
 * A pipelined batch waited too long for its turn and rolled back. Its uncommitted rows may have been what the batch
 * holding the clock was waiting for (another process inserting the same transfer id under the clock lock), while the
 * batch before this one waits for that clock: a cycle PostgreSQL cannot see, since this batch's part of it is a wait
 * in this process. Nothing of the batch was written; it runs again, locked, like a stale batch.
 */
export class ClaimTurnError extends SwitchyardError {
  override readonly name = "ClaimTurnError";
  readonly code = staleBatchCode;
  constructor(waitedMs: number) {
    super("ledger batch gave up its turn for the clock", {
      details: `the batch before it did not take the clock within ${waitedMs} ms`,
    });
  }
}

/** A transfer a pipelined batch did not create turned out to exist already: its code must be `exists*`; run locked. */
export class KnownIdError extends SwitchyardError {
  override readonly name = "KnownIdError";
  constructor() {
    super("ledger batch named a stored transfer id it took for new", {
      details: "a failed transfer's id exists; its result must come from the stored transfer",
    });
  }
}

/** One of the ledger's own errors (this file's classes), which travel as they are. */
function isLedgerError(error: unknown): error is SwitchyardError {
  return (
    error instanceof LedgerStoreError ||
    error instanceof LedgerInvariantError ||
    error instanceof StaleClockError ||
    error instanceof ClaimTurnError ||
    error instanceof KnownIdError ||
    error instanceof LedgerBackpressureError ||
    error instanceof LedgerRequestTooLargeError ||
    error instanceof LedgerRequestInvalidError ||
    error instanceof LedgerClosedError
  );
}

/**
 * A failure of the ledger's SQL as a LedgerStoreError, translated once: one of the ledger's own errors is returned
 * as it is; anything else — the database's error, or another layer's error such as the Db's own — becomes a
 * LedgerStoreError with it as the cause, so a caller of the ledger always hears a database failure as one. A COMMIT
 * that got no answer says that its outcome is unknown (commitOutcomeUnknown).
 */
export function toStoreError(operation: string, error: unknown): SwitchyardError {
  if (isLedgerError(error)) return error;
  if (isCommitOutcomeUnknown(error))
    return new LedgerStoreError(`ledger ${operation}: no answer to its COMMIT, outcome unknown`, {
      cause: error,
      details: "it may have committed; retry with the same ids (they are idempotent)",
    });
  return new LedgerStoreError(`ledger ${operation} failed`, { cause: error });
}

/** The DbQueryTimeoutError along `error`'s cause chain: a statement's connection went silent. */
function queryTimeoutOf(error: unknown): DbQueryTimeoutError | undefined {
  if (!(error instanceof SwitchyardError)) return undefined;
  return error.walk((cause) => cause instanceof DbQueryTimeoutError) as DbQueryTimeoutError | undefined;
}

/**
 * Whether the batch failed because its connection went silent (DbQueryTimeoutError): no statement of it was at
 * fault, so none of its callers is to blame; the batch failed as a whole.
 */
export function connectionWentSilent(error: unknown): boolean {
  return queryTimeoutOf(error) !== undefined;
}

/** A COMMIT that timed out, or whose connection failed before its answer. */
const isCommitOutcomeUnknown = (error: unknown) =>
  (error instanceof DbQueryTimeoutError && error.duringCommit) ||
  error instanceof DbCommitOutcomeUnknownError;

/**
 * Whether the batch's COMMIT got no answer (it timed out, or its connection was reset or closed): it may have
 * committed or not. Running its jobs again would find their transfers `exists` but refuse callers whose statements
 * written alongside did commit (a key they insert is taken).
 */
export function commitOutcomeUnknown(error: unknown): boolean {
  return error instanceof SwitchyardError && error.walk(isCommitOutcomeUnknown) !== undefined;
}

/**
 * Whether a failed batch must not be run again: its connection went silent (its transaction may still hold its rows
 * and locks on the server) or its COMMIT's outcome is unknown (it may have committed). Its callers hear the failure
 * and retry with the same ids. Both writer paths (runLocked, drain) ask this.
 */
export function notToRunAgain(error: unknown): boolean {
  return connectionWentSilent(error) || commitOutcomeUnknown(error);
}

/** SQLSTATE 57014 query_canceled: the server's statement timeout ended the statement (or an administrator did). */
const statementCanceledCode = "57014";
/** SQLSTATE 55P03 lock_not_available: a lock_timeout ended the wait for a lock (runLocked retries it). */
const lockNotAvailableCode = "55P03";

/**
 * Whether the server gave up a statement of the batch's at its statement timeout (57014): a wait for a lock another
 * transaction holds (the clock's row, while another process writes its batch; a balance row; a table its callers'
 * statements write), or a statement that ran that long. The database is busy; no job of the batch is to blame, and
 * running the batch again at once would wait as long again. Unlike 55P03 (lock_not_available), which a lock_timeout
 * raises after a short wait, it is not retried.
 */
export function statementTimedOut(error: unknown): boolean {
  return sqlStateOf(error) === statementCanceledCode;
}

/**
 * Whether the server gave up a wait of the batch's: its statement timeout (statementTimedOut), or a lock_timeout
 * (55P03, once its retries are spent). Every caller of the batch hears the store failure at once (batchFailure);
 * none is to blame. Both writer paths (runLocked, drain) ask this.
 */
export function waitGivenUp(error: unknown): boolean {
  return statementTimedOut(error) || sqlStateOf(error) === lockNotAvailableCode;
}

/**
 * The store failure every caller of a batch hears (toStoreError). A statement written alongside whose wait the server
 * gave up (waitGivenUp) blames no caller: its callers hear the server's error as the batch's (its sqlState), not an
 * AlongsideStatementError.
 */
export function batchFailure(error: unknown): SwitchyardError {
  return toStoreError(
    "batch",
    error instanceof AlongsideStatementError && waitGivenUp(error) ? error.cause : error,
  );
}

/** The SQLSTATE a ledger failure carries (a StaleClockError's and a ClaimTurnError's is staleBatchCode). */
export function sqlStateOf(error: unknown): string | undefined {
  if (error instanceof LedgerStoreError) return error.sqlState;
  if (error instanceof StaleClockError || error instanceof ClaimTurnError) return error.code;
  return undefined;
}
