// A batch run locked: BEGIN; lock the clock; read what the batch needs (accounts FOR UPDATE in id order); validate in
// memory; write; COMMIT. Always correct: accounts and expiry always run this way, and transfers at start, after a
// conflict, after a failure, when pipelineDepthMax is 0, with a statement that must run under the lock
// (Alongside.underLock: written here after the clock is locked, it sees every batch before it committed), and for a
// request that imports (its bounds are read here: selectImportedBounds); see writer.ts.
import { causeWhere, SwitchyardError } from "../../core/index.ts";
import { DbCommitOutcomeUnknownError, DbQueryTimeoutError, type Row, type Sql } from "../db/index.ts";
import { AlongsideStatementError, batchFailure, notToRunAgain, sqlStateOf, waitGivenUp } from "./errors.ts";
import { applyAccountRequest, applyTransferRequests } from "./semantics.ts";
import { importsEvents } from "./semantics-fields.ts";
import {
  boundLockWaits,
  insertAccounts,
  ledgerTransaction,
  lockClock,
  selectExpired,
  selectImportedBounds,
  writeAlongside,
} from "./store.ts";
import { writeBatch } from "./store-batch.ts";
import { balanceRows, transferRows } from "./store-params.ts";
import { type Account, AccountFlags, TransferFlags, timestampMax } from "./types.ts";
import {
  type AlongsideWrites,
  alongsideOf,
  type BatchChanges,
  deltas,
  latestCreated,
  noAlongside,
  noChanges,
  resolveJobs,
  writtenTransfers,
} from "./writer-batch.ts";
import { loadAccounts, prefetch } from "./writer-reads.ts";
import {
  type AccountsJob,
  type ExpireJob,
  forget,
  importsTransfers,
  type Job,
  maxBigint,
  randomToken,
  rememberSpent,
  runsUnderLock,
  type TransfersJob,
  type WriterState,
} from "./writer-state.ts";

const retryableCodes = new Set([
  "40P01", // deadlock_detected
  "40001", // serialization_failure
  "55P03", // lock_not_available
  "23505", // unique_violation: another process inserted the same id or resolved the same pending first
]);

/** The tables the ledger's own statements write (ledger migrations). */
const ledgerTables = new Set([
  "ledger_accounts",
  "ledger_transfers",
  "ledger_pending_open",
  "ledger_clock",
  "ledger_account_balances",
]);

function isRetryable(error: unknown): boolean {
  const code = sqlStateOf(error);
  if (code === undefined || !retryableCodes.has(code)) return false;
  // A unique violation on a caller's table (its statement written alongside inserts a key another request holds) is
  // no race the batch can win by running again: the row stays, and each attempt would meet it, retryAttemptsMax
  // times, before its caller heard of it. It is that caller's own failure (AlongsideStatementError, or each job alone
  // where the statement is not known), at once.
  return code !== "23505" || !violatedOutsideLedger(error);
}

/** Whether the server named the table a unique violation along `error`'s causes was in, and it is not the ledger's. */
function violatedOutsideLedger(error: unknown): boolean {
  const named = causeWhere(error, (e) => {
    const { code, table } = e as { code?: unknown; table?: unknown };
    return code === "23505" && typeof table === "string";
  });
  return named !== undefined && !ledgerTables.has((named as { table: string }).table);
}

/** A system error of the socket (ECONNRESET, EPIPE, ECONNREFUSED, ETIMEDOUT, …). */
const socketErrorCode = /^E[A-Z]+$/;
/** What the drivers say when a connection is gone: pg's, and PGlite's once closed. */
const connectionGoneText =
  /connection terminated|connection error|not queryable|connection (?:is )?closed|pglite is closed/i;

/**
 * Whether `error` comes down to the connection or the session failing, said as such along its causes: no answer in
 * time (DbQueryTimeoutError), a COMMIT's connection lost (DbCommitOutcomeUnknownError), a socket's error, a driver's
 * "connection terminated", or the server ending the session or refusing a connection (SQLSTATE class 08, 57P). Not
 * merely an error the server did not raise: a caller's parameter the driver cannot send (a TypeError) is that
 * caller's, and read as a lost connection it failed every request after it in the batch unrun.
 */
function connectionFailedIn(error: unknown): boolean {
  return (
    causeWhere(error, (e) => {
      if (e instanceof DbQueryTimeoutError || e instanceof DbCommitOutcomeUnknownError) return true;
      const { code } = e as { code?: unknown };
      if (typeof code === "string" && (socketErrorCode.test(code) || /^(?:08|57P)/.test(code))) return true;
      return e instanceof Error && !(e instanceof SwitchyardError) && connectionGoneText.test(e.message);
    }) !== undefined
  );
}

/**
 * Runs a batch under the clock lock, retrying deadlocks and the like; rejects its callers if it cannot. Returns the
 * failure its callers heard when the connection or the session failed (the next batch would most likely fail the
 * same way), else null.
 */
export async function runLocked(w: WriterState, batch: Job[]): Promise<unknown> {
  for (let attempt = 1; ; attempt++) {
    // The statements this attempt wrote alongside, to tell whose failed.
    const written: { alongside: AlongsideWrites } = { alongside: noAlongside };
    try {
      const settle = await ledgerTransaction(w.db, "locked batch", (tx) =>
        applyLocked(w, tx, batch, written),
      );
      settle();
      return null;
    } catch (error) {
      forget(w);
      // Run again at once: the next attempt's lockClock queues behind whoever waited for the clock meanwhile — after
      // a statement written under the lock gave up its wait (55P03, applyLocked), the batch that held its row.
      if (isRetryable(error) && attempt < w.limits.retryAttemptsMax) continue;
      // The server gave up a wait (waitGivenUp): every job fails as a store failure, at once, rather than run again
      // each alone, each waiting out the same lock for as long again (N jobs, N timeouts, holding the clock between
      // them and so keeping every other writer of the ledger waiting too). Callers retry with the same ids.
      // A statement written alongside that timed out is no exception: in a locked batch the callers' statements run
      // last, the clock and the balances already locked, so theirs was a wait on a lock elsewhere, and its caller
      // need not be the cause — a lock on the table every caller's statement writes (a migration, an ALTER), rows a
      // transaction of this writer whose connection went silent still holds, a cancel by an administrator. Blamed
      // and left out, its caller would hear an AlongsideStatementError as if its statement were refused, and the
      // others, written again together, would wait for the same lock in turn: one timeout per caller again. The
      // cost: a caller whose statement is slow on its own fails the others of its batch once (they retry).
      if (waitGivenUp(error)) return rejectAll(batch, error);
      // Its connection went silent (DbQueryTimeoutError): no statement is to blame, and every job fails as a store
      // failure rather than run again, each alone, now. That would find no culprit, only wait out the silence once
      // more per job (a new connection to a silent server waits out its connect timeout) and the locks a
      // partitioned server may still hold for the timed-out transaction; and after a COMMIT that got no answer it
      // would be wrong: the batch may have committed, and its callers' statements, written again, would fail on
      // their own rows (a key they insert is taken), refusing callers whose writes are in. The LedgerStoreError
      // says the outcome is unknown then (toStoreError); callers retry with the same ids, as after any store failure.
      // A COMMIT whose connection was reset or closed before its answer is as unknown.
      if (!notToRunAgain(error)) {
        // A statement written alongside failed for its own caller's reasons: only that caller hears of it, and the
        // others are written again together.
        const failed = jobOfStatement(batch, written.alongside, error);
        if (failed !== null && batch.length > 1) {
          failed.reject(error);
          return await runLocked(
            w,
            batch.filter((job) => job !== failed),
          );
        }
        // Which one is not known (PGlite sends them in one exchange), or none is to blame (the connection was reset
        // or closed before COMMIT: the server rolled the transaction back): each job alone then, on a connection of
        // its own.
        if (
          batch.length > 1 &&
          batch.some((job) => job.kind === "transfers" && job.alongside !== undefined)
        ) {
          // Until one fails for its connection: the server may still be down (a failover), and each job alone
          // would wait out the connect timeout again. The rest hear that failure; they retry with the same ids.
          for (const [i, job] of batch.entries()) {
            const lost = await runLocked(w, [job]);
            if (lost === null) continue;
            for (const rest of batch.slice(i + 1)) rest.reject(lost);
            return lost;
          }
          return null;
        }
      }
      return rejectAll(batch, error);
    }
  }
}

/**
 * Rejects every job of the batch with its failure as a store failure: already translated where it happened
 * (store.ts), or one of the ledger's own errors; anything else is a store failure whose cause says more. Callers
 * retry with the same ids. A statement written alongside that timed out blames no caller: its callers hear the
 * server's error as the batch's (its sqlState, 57014). Returns the failure when the connection or the session failed
 * (see runLocked), else null.
 */
function rejectAll(batch: readonly Job[], error: unknown): unknown {
  const failure = batchFailure(error);
  for (const job of batch) job.reject(failure);
  return connectionFailedIn(error) ? failure : null;
}

/** One kind of job applied under the lock: how many timestamps it takes, what it writes, and how to settle it. */
type LockedWork = {
  eventCount: number;
  writes: BatchChanges;
  alongside: AlongsideWrites;
  /** Called once committed, with the rows of the statements written alongside. */
  settle: (alongsideRows: Row[][]) => void;
};

/** The job whose statement written alongside failed with `error`, when that is what failed and it is known. */
function jobOfStatement(batch: readonly Job[], alongside: AlongsideWrites, error: unknown): Job | null {
  if (!(error instanceof AlongsideStatementError)) return null;
  const index = alongside.slots.indexOf(error.statementIndex);
  return index < 0 ? null : (batch[index] ?? null);
}

/** Inside the transaction: lock, read, validate, write. Returns what to do once it has committed. */
async function applyLocked(
  w: WriterState,
  tx: Sql,
  batch: Job[],
  written: { alongside: AlongsideWrites },
): Promise<() => void> {
  const clock = await lockClock(tx);
  if (clock.token !== w.committedToken) forget(w);
  w.known.transfers.clear();
  w.known.pending.clear();
  w.known.failed.clear();
  w.writtenBy.clear();
  w.createdFinal.length = 0;
  w.openPendings.clear();
  if (w.known.accounts.size > w.limits.accountsCacheMax) w.known.accounts.clear();
  const first = batch[0]!;
  const token = randomToken();
  const firstTimestamp = maxBigint(clock.timestampLast + 1n, w.nowNs());
  const work =
    first.kind === "transfers"
      ? await lockedTransfers(w, tx, batch as TransfersJob[], firstTimestamp)
      : first.kind === "accounts"
        ? await lockedAccounts(w, tx, first, firstTimestamp)
        : await lockedExpiry(w, tx, first);
  const timestampLast = firstTimestamp + BigInt(work.eventCount) - 1n;
  // The clock is ours (locked above), so its token is the one read there.
  await writeBatch(tx, { expectedToken: clock.token, clock: { timestampLast, token }, ...work.writes });
  written.alongside = work.alongside;
  // The callers' statements stay after lockClock: each takes its snapshot as it starts, after every batch before
  // this one committed, which is what a statement written under the lock (Alongside.underLock) relies on.
  if (
    w.db.kind === "postgres" &&
    w.limits.underLockWaitMaxMs > 0 &&
    work.alongside.statements.length > 0 &&
    batch.some(runsUnderLock)
  ) {
    // Here the clock is locked before the callers' rows; a pipelined batch of another process locks its callers'
    // rows first and the clock last (store-batch.ts). A statement here waiting on a row such a batch holds, while
    // that batch waits for the clock, is a cycle PostgreSQL breaks only after its deadlock_timeout, every process's
    // ledger writes stalled meanwhile. So a statement that asked for the lock gives up its wait soon (55P03): the
    // transaction rolls back, the clock goes to the batch waiting for it, and runLocked runs this batch again, its
    // clock lock queued behind that batch's. Only such a request's batch is bounded (it goes alone: takeBatch; and
    // rarely): others wait for a row as long as the statement timeout allows.
    await boundLockWaits(tx, w.limits.underLockWaitMaxMs);
  }
  const alongsideRows = await writeAlongside(tx, work.alongside.statements);
  // Bounds hold for this batch only (read under its lock).
  w.known.imported = null;
  // The ids it spent or found spent, remembered once it has committed.
  const spent = w.known.failed.size > 0 ? [...w.known.failed] : null;
  return () => {
    w.committedToken = token;
    w.committedTimestamp = timestampLast;
    w.plannedToken = null;
    if (spent !== null) rememberSpent(w, spent);
    w.known.transfers.clear();
    w.known.pending.clear();
    w.known.failed.clear();
    work.settle(alongsideRows);
  };
}

async function lockedTransfers(
  w: WriterState,
  tx: Sql,
  jobs: TransfersJob[],
  firstTimestamp: bigint,
): Promise<LockedWork> {
  const requests = jobs.map((job) => job.transfers);
  await prefetch(w, tx, requests, { forUpdate: true, lookUpIds: true }, 0);
  // An import goes alone (takeBatch): its bounds are read here, under the lock.
  w.known.imported = importsTransfers(jobs[0]!)
    ? await selectImportedBounds(tx, "transfer", importedTimestamps(requests[0]!))
    : null;
  const { results, effects } = applyTransferRequests(w.known, requests, firstTimestamp);
  const alongside = alongsideOf(jobs, results, effects.created);
  return {
    eventCount: requests.reduce((sum, request) => sum + request.length, 0),
    writes: {
      transfers: transferRows(writtenTransfers(effects), w.format, w.accountIds),
      balances: balanceRows(deltas(effects.accountsBefore), w.format, w.accountIds),
      pendingOpened: effects.pendingOpened,
      pendingResolved: effects.pendingResolved,
      history: effects.history,
      transferTimestampMax: latestCreated(effects.created),
    },
    alongside,
    settle: (rows) => resolveJobs(jobs, results, alongside, rows),
  };
}

async function lockedAccounts(
  w: WriterState,
  tx: Sql,
  job: AccountsJob,
  firstTimestamp: bigint,
): Promise<LockedWork> {
  const ids = job.accounts.map((a) => a.id).filter((id) => typeof id === "bigint" && id > 0n);
  await loadAccounts(w, tx, ids, { forUpdate: true });
  w.known.imported = importsEvents(job.accounts, AccountFlags.imported)
    ? await selectImportedBounds(tx, "account", importedTimestamps(job.accounts))
    : null;
  const { results, created } = applyAccountRequest(w.known, job.accounts, firstTimestamp);
  await insertAccounts(tx, created);
  return {
    eventCount: Math.max(job.accounts.length, 1),
    writes: noChanges(),
    alongside: noAlongside,
    settle: () => job.resolve(results),
  };
}

/** The timestamps an imported request's events carry (those that can be: runRequest refuses the others first). */
const importedTimestamps = (events: readonly { timestamp?: bigint }[]): bigint[] =>
  events.flatMap((e) =>
    typeof e.timestamp === "bigint" && e.timestamp > 0n && e.timestamp <= timestampMax ? [e.timestamp] : [],
  );

/** Voids open pending transfers whose timeout has passed: their amounts leave the pending balances. */
async function lockedExpiry(w: WriterState, tx: Sql, job: ExpireJob): Promise<LockedWork> {
  const expired = await selectExpired(tx, job.nowNs, w.limits.expiryBatchMax);
  const done = (count: number, writes: BatchChanges): LockedWork => ({
    eventCount: 1,
    writes,
    alongside: noAlongside,
    settle: () => job.resolve(count),
  });
  if (expired.length === 0) return done(0, noChanges());
  await loadAccounts(
    w,
    tx,
    expired.flatMap((t) => [t.debitAccountId, t.creditAccountId]),
    { forUpdate: true },
  );
  const before = new Map<Account, Account>();
  for (const p of expired) {
    const dr = w.known.accounts.get(p.debitAccountId)!;
    const cr = w.known.accounts.get(p.creditAccountId)!;
    if (!before.has(dr)) before.set(dr, { ...dr });
    if (!before.has(cr)) before.set(cr, { ...cr });
    dr.debitsPending -= p.amount;
    cr.creditsPending -= p.amount;
    if ((p.flags & TransferFlags.closingDebit) !== 0) dr.flags &= ~AccountFlags.closed;
    if ((p.flags & TransferFlags.closingCredit) !== 0) cr.flags &= ~AccountFlags.closed;
  }
  return done(expired.length, {
    transfers: transferRows([]),
    balances: balanceRows(deltas(before), w.format, w.accountIds),
    pendingOpened: [],
    pendingResolved: expired.map((t) => t.id),
    history: [],
    transferTimestampMax: 0n,
  });
}
