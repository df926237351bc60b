// The group-commit writer. Many callers hand it requests; it takes as many as fit in one batch, applies them in
// arrival order in one database transaction, and resolves each caller with its own results.
//
// Every write, from any process, locks the one ledger_clock row before it touches an account, so batches apply one
// at a time across all processes (TigerBeetle's single state machine), and accounts cannot deadlock. The clock row
// carries a token that each batch replaces: a writer whose own token is still there knows nobody else wrote since,
// so the accounts in its memory are exact and need not be read again.
//
// Two ways to run a batch:
// - locked: BEGIN; lock the clock; read what the batch needs (accounts FOR UPDATE in id order); validate in memory;
//   write; COMMIT. Always correct; used for accounts and expiry, after a conflict, at start, and when
//   pipelineDepthMax is 0.
// - pipelined: validate the batch in memory against what this writer's earlier batches will have left, build its
//   rows, and send it while the previous batch is still committing (store.ts writeBatchClaimFirst, three
//   statements in a transaction): INSERT the transfers; once the previous batch holds the clock, take the clock,
//   which waits for the previous batch's commit, only if it carries the token the previous batch leaves; apply the
//   balance deltas and pending changes. If the token differs (another process wrote) the claim aborts the
//   transaction; then, or if anything fails, this batch and the ones behind it run again, locked, in the same
//   order. Callers never see the difference. On PGlite (one connection, in this process) the depth is 1: nothing
//   overlaps or waits, and a batch is one statement (writeBatch) instead of reads and writes under the lock.
import { randomBytes } from "node:crypto";
import { SwitchyardError } from "../../core/errors.ts";
import type { Db, Row, Sql, Statement } from "../db/index.ts";
import {
  KnownIdError,
  LedgerBackpressureError,
  LedgerClosedError,
  LedgerStoreError,
  sqlStateOf,
  staleBatchCode,
} from "./errors.ts";
import {
  applyAccountRequest,
  applyTransferRequests,
  emptyLedgerState,
  type LedgerState,
  type TransferEffects,
} from "./semantics.ts";
import {
  type BalanceRows,
  type BatchWrites,
  balanceRows,
  type ClaimOrder,
  createIdEncoder,
  insertAccounts,
  ledgerTransaction,
  lockClock,
  type ParamFormat,
  selectAccounts,
  selectExpired,
  selectTransfers,
  selectTransfersWithStatus,
  type TransferRows,
  transferRows,
  writeAlongside,
  writeBatch,
  writeBatchClaimFirst,
  writeBatchWith,
} from "./store.ts";
import {
  type Account,
  AccountFlags,
  type AccountInput,
  type Alongside,
  type CreateAccountResult,
  type CreateTransferResult,
  type LedgerLimits,
  TransferFlags,
  type TransferInput,
} from "./types.ts";

type TransfersJob = {
  kind: "transfers";
  transfers: readonly TransferInput[];
  /** The caller's statement to commit with these transfers (see Alongside). */
  alongside?: Alongside;
  /** `rows`: those of the statement written alongside, null when there was none. */
  resolve: (results: CreateTransferResult[], rows: Row[] | null) => void;
  reject: (error: unknown) => void;
};
type AccountsJob = {
  kind: "accounts";
  accounts: readonly AccountInput[];
  resolve: (results: CreateAccountResult[]) => void;
  reject: (error: unknown) => void;
};
type ExpireJob = {
  kind: "expire";
  nowNs: bigint;
  resolve: (count: number) => void;
  reject: (error: unknown) => void;
};
export type Job = TransfersJob | AccountsJob | ExpireJob;

export type Writer = {
  /** Queues a job; throws LedgerBackpressureError when the queue is full, LedgerClosedError after close. */
  submit(job: Job): void;
  /** Stops taking jobs and waits for the queued ones. */
  close(): Promise<void>;
};

const retryableCodes = new Set([
  "40P01", // deadlock_detected
  "40001", // serialization_failure
  "55P03", // lock_not_available
  "23505", // unique_violation: another process inserted the same id or resolved the same pending first
]);

function isRetryable(error: unknown): boolean {
  const code = sqlStateOf(error);
  return code !== undefined && retryableCodes.has(code);
}

/** The previous batch did not leave the clock as this batch expected (store.ts raises staleBatchCode either way:
 * ledger_stale_batch() in SQL, StaleClockError in the client): run it again, locked. */
function isStale(error: unknown): boolean {
  return sqlStateOf(error) === staleBatchCode;
}

const randomToken = () => randomBytes(8).readBigInt64BE();

/** After a conflict with another process, stay locked for this many batches before pipelining again. */
const lockedBatchesAfterConflict = 32;

type Plan = {
  seq: number;
  jobs: TransfersJob[];
  results: CreateTransferResult[][];
  transfers: TransferRows;
  balances: BalanceRows;
  pendingOpened: TransferEffects["pendingOpened"];
  pendingResolved: bigint[];
  alongside: AlongsideWrites;
  /** ids of events that failed without being checked against stored transfers (ids of created ones are checked by
   * the primary key) */
  uncheckedIds: bigint[];
  expectedToken: bigint;
  token: bigint;
  timestampLast: bigint;
};

type InFlight = { plan: Plan; done: Promise<unknown | null> };

export function createWriter(params: { db: Db; limits: LedgerLimits; nowNs: () => bigint }): Writer {
  const { db, limits, nowNs } = params;
  // A batch in flight on PostgreSQL holds a connection while it waits for the one before it to take the clock:
  // leave a connection free for that one (and for reads), or two batches could wait on each other for ever.
  const depthMax = Math.min(limits.pipelineDepthMax, db.kind === "postgres" ? db.connectionsMax - 1 : 1);
  const pipelined = depthMax >= 1;
  const format: ParamFormat = db.kind === "postgres" ? "binary" : "text";

  const queue: Job[] = [];
  let queuedTransfers = 0;
  let running = false;
  let closed = false;
  let idle: Promise<void> = Promise.resolve();
  let signalIdle: () => void = () => undefined;

  // What this writer knows. Accounts are exact while the clock's token is `committedToken`. Transfers and pending
  // statuses kept here are those written (or read) by batches still in flight, tagged with the batch's seq, and
  // the pending transfers this writer's committed batches left open (`openPendings`, bounded), so that posting or
  // voiding a reservation reads nothing: exact for the same reason as the accounts.
  let state: LedgerState = emptyLedgerState();
  const writtenBy = new Map<bigint, number>();
  // Transfers created without the pending flag never change, so they need no per-id tag: each batch's list is
  // dropped whole once it has committed (most transfers take this way, and it saves two map operations each).
  const createdFinal: { seq: number; ids: bigint[] }[] = [];
  const openPendings = new Set<bigint>();
  let committedToken: bigint | null = null;
  let committedTimestamp = 0n;
  let committedSeq = 0;
  let plannedToken: bigint | null = null;
  let plannedTimestamp = 0n;
  let nextSeq = 1;
  let lockedBatchesLeft = 0;
  /** Set while the loop waits with an empty queue and batches in flight: a new job wakes it. */
  let wake: (() => void) | null = null;

  // Account ids' uuid text (PGlite's text arrays), memoized, bounded like the cache.
  const accountIds = createIdEncoder(limits.accountsCacheMax);

  const forget = () => {
    state = emptyLedgerState();
    writtenBy.clear();
    createdFinal.length = 0;
    openPendings.clear();
    committedToken = null;
    plannedToken = null;
  };

  const submit = (job: Job) => {
    if (closed) throw new LedgerClosedError();
    const count = job.kind === "transfers" ? job.transfers.length : 0;
    if (queuedTransfers + count > limits.queueTransfersMax) {
      throw new LedgerBackpressureError({ queuedTransfers, queueTransfersMax: limits.queueTransfersMax });
    }
    queuedTransfers += count;
    queue.push(job);
    if (!running) start();
    else if (wake !== null) {
      wake();
      wake = null;
    }
  };

  const start = () => {
    running = true;
    idle = new Promise((resolve) => {
      signalIdle = resolve;
    });
    setImmediate(() => void loop());
  };

  /** Takes the jobs at the head of the queue that fit in `transfersMax` (at least one job). */
  const takeBatch = (transfersMax: number): Job[] => {
    const first = queue.shift()!;
    if (first.kind !== "transfers") return [first];
    const batch: Job[] = [first];
    let count = first.transfers.length;
    while (queue.length > 0) {
      const next = queue[0]!;
      if (next.kind !== "transfers" || count + next.transfers.length > transfersMax) break;
      queue.shift();
      batch.push(next);
      count += next.transfers.length;
    }
    queuedTransfers -= count;
    return batch;
  };

  const loop = async () => {
    const inFlight: InFlight[] = [];
    let callersResolved = false;
    let lastClaimed: Promise<void> = Promise.resolve();
    /** Waits for every batch in flight; runs the failed ones again, locked, in order. */
    const drain = async () => {
      const redo: TransfersJob[][] = [];
      for (const { plan, done } of inFlight.splice(0)) {
        const failure = await done;
        if (failure !== null) {
          // The first failure says why; the batches behind it fail because it did. Only another process
          // writing in between is a reason to stay locked for a while.
          if (redo.length === 0 && isStale(failure)) lockedBatchesLeft = lockedBatchesAfterConflict;
          redo.push(plan.jobs);
        }
      }
      if (redo.length > 0) forget();
      for (const jobs of redo) await runLocked(jobs);
    };
    try {
      while (queue.length > 0 || inFlight.length > 0) {
        if (queue.length === 0) {
          // Nothing new yet: wait for the oldest batch in flight to settle, or for a new job (which may go at once
          // if the pipeline has room).
          const oldest = inFlight[0]!;
          const arrival = new Promise<"arrival">((resolve) => {
            wake = () => resolve("arrival");
          });
          const outcome = await Promise.race([oldest.done.then((failure) => ({ failure })), arrival]);
          wake = null;
          if (outcome !== "arrival") {
            if (outcome.failure !== null) await drain();
            else inFlight.shift();
          }
          continue;
        }
        if (limits.batchWaitMs > 0 && inFlight.length === 0 && queuedTransfers < limits.batchTransfersMax) {
          await new Promise((resolve) => setTimeout(resolve, limits.batchWaitMs));
        }
        if (pipelined && inFlight.length >= depthMax) {
          // The pipeline is full: wait for the oldest batch while more jobs gather for the next one.
          const failure = await inFlight[0]!.done;
          if (failure !== null) await drain();
          else inFlight.shift();
          callersResolved = true;
          continue;
        }
        // Callers a committed batch resolved are still resubmitting, one microtask chain each: let them all arrive
        // (one macrotask) so the next batch is full rather than the first request alone.
        if (callersResolved || inFlight.length > 0) await new Promise((resolve) => setImmediate(resolve));
        callersResolved = false;
        // A failure anywhere drains everything (and runs the failed batches again, locked) before more go.
        if (await anyFailed(inFlight)) await drain();
        // Pipelined, a batch only overlaps the commit of the one before it if the work is spread over the
        // pipeline's depth: a full batch followed by a scrap would leave the scrap's commit to run alone.
        const inFlightTransfers = inFlight.reduce((sum, { plan }) => sum + plan.transfers.count, 0);
        const batch = takeBatch(
          pipelined
            ? Math.min(limits.batchTransfersMax, Math.ceil((queuedTransfers + inFlightTransfers) / depthMax))
            : limits.batchTransfersMax,
        );
        const first = batch[0]!;
        const canPipeline =
          pipelined &&
          first.kind === "transfers" &&
          lockedBatchesLeft === 0 &&
          (committedToken !== null || inFlight.length > 0) &&
          // over the bound, the cache starts over; only the locked path may do that (nothing in flight)
          state.accounts.size <= limits.accountsCacheMax;
        if (!canPipeline) {
          await drain();
          if (lockedBatchesLeft > 0) lockedBatchesLeft--;
          await runLocked(batch);
          callersResolved = true;
          continue;
        }
        const jobs = batch as TransfersJob[];
        let plan: Plan;
        try {
          plan = await prepare(jobs);
        } catch (error) {
          // A read failed: the locked path reads again and reports the failure if it persists.
          console.error(
            `ledger: pipelined read failed, running the batch locked: ${(error as Error).message}`,
          );
          await drain();
          forget();
          await runLocked(jobs);
          continue;
        }
        // Batches take the clock in the order they were planned (each after the one before it has it).
        const order: ClaimOrder = {
          after: lastClaimed,
          claimed: () => undefined,
          waitMaxMs: limits.claimWaitMaxMs,
        };
        lastClaimed = new Promise<void>((resolve) => {
          order.claimed = resolve;
        });
        inFlight.push({ plan, done: commitPlan(plan, order) });
      }
    } finally {
      running = false;
      signalIdle();
      if (queue.length > 0) start();
    }
  };

  /** Whether a batch in flight has already failed (without waiting for the others). */
  const anyFailed = async (inFlight: InFlight[]): Promise<boolean> => {
    const pending = Symbol("pending");
    for (const { done } of inFlight) {
      const settled = await Promise.race([done, Promise.resolve(pending)]);
      if (settled !== pending && settled !== null) return true;
    }
    return false;
  };

  /** Validates a batch against what this writer's earlier batches leave, and builds its rows. */
  const prepare = async (jobs: TransfersJob[]): Promise<Plan> => {
    const seq = nextSeq++;
    // Batches that have committed are in the database now: drop what they left here, except accounts and the
    // pending transfers they left open (up to the bound).
    for (const [id, writer] of writtenBy) {
      if (writer <= committedSeq) {
        writtenBy.delete(id);
        if (state.pending.get(id) === "pending" && openPendings.size < limits.pendingCacheMax) {
          openPendings.add(id);
          continue;
        }
        openPendings.delete(id);
        state.transfers.delete(id);
        state.pending.delete(id);
      }
    }
    while (createdFinal.length > 0 && createdFinal[0]!.seq <= committedSeq)
      for (const id of createdFinal.shift()!.ids) state.transfers.delete(id);
    if (plannedToken === null) {
      plannedToken = committedToken;
      plannedTimestamp = committedTimestamp;
    }
    const requests = jobs.map((job) => job.transfers);
    // Ids not known here are taken to be new; if one is not, the INSERT fails and the batch runs again, locked.
    await prefetch(db, requests, { forUpdate: false, lookUpIds: false }, seq);
    const firstTimestamp = maxBigint(plannedTimestamp + 1n, nowNs());
    const { results, effects } = applyTransferRequests(state, requests, firstTimestamp);
    const final: bigint[] = [];
    for (const transfer of effects.created) {
      if ((transfer.flags & TransferFlags.pending) === 0) final.push(transfer.id);
      else writtenBy.set(transfer.id, seq);
    }
    createdFinal.push({ seq, ids: final });
    for (const id of effects.pendingResolved) writtenBy.set(id, seq);
    const eventCount = requests.reduce((sum, request) => sum + request.length, 0);
    const uncheckedIds: bigint[] = [];
    requests.forEach((request, r) => {
      const requestResults = results[r]!;
      request.forEach((t, i) => {
        const status = requestResults[i]!.status;
        if (status !== "created" && !state.transfers.has(t.id) && isStorableId(t.id)) uncheckedIds.push(t.id);
      });
    });
    const plan: Plan = {
      seq,
      jobs,
      results,
      transfers: transferRows(effects.created, format, accountIds),
      balances: balanceRows(deltas(effects.accountsBefore), format, accountIds),
      pendingOpened: effects.pendingOpened,
      pendingResolved: effects.pendingResolved,
      alongside: alongsideOf(jobs, results),
      uncheckedIds,
      expectedToken: plannedToken!,
      token: randomToken(),
      timestampLast: firstTimestamp + BigInt(eventCount) - 1n,
    };
    plannedToken = plan.token;
    plannedTimestamp = plan.timestampLast;
    return plan;
  };

  /** Sends a prepared batch. Resolves with null once committed (callers resolved), or with the failure. */
  const commitPlan = async (plan: Plan, order: ClaimOrder): Promise<unknown | null> => {
    let rows: Row[][];
    try {
      // Read before the write, outside it: an id another process stores in between changes the clock's token
      // too, so the write below aborts and the batch runs again, locked.
      if (plan.uncheckedIds.length > 0 && (await selectTransfers(db, plan.uncheckedIds)).length > 0)
        throw new KnownIdError();
      const writes: BatchWrites = {
        transfers: plan.transfers,
        expectedToken: plan.expectedToken,
        clock: { timestampLast: plan.timestampLast, token: plan.token },
        balances: plan.balances,
        pendingOpened: plan.pendingOpened,
        pendingResolved: plan.pendingResolved,
      };
      const { statements } = plan.alongside;
      rows =
        db.kind === "postgres"
          ? await writeBatchClaimFirst(db, writes, order, statements)
          : await writeBatchWith(db, writes, statements); // alone on its database: nothing waits for the order
    } catch (error) {
      return error;
    } finally {
      order.claimed(); // however it ended, the batch behind this one must not wait for it
    }
    committedSeq = plan.seq;
    committedToken = plan.token;
    committedTimestamp = plan.timestampLast;
    resolveJobs(plan.jobs, plan.results, plan.alongside, rows);
    return null;
  };

  /** Runs a batch under the clock lock, retrying deadlocks and the like; rejects its callers if it cannot. */
  const runLocked = async (batch: Job[]) => {
    for (let attempt = 1; ; attempt++) {
      try {
        const settle = await ledgerTransaction(db, "locked batch", (tx) => applyLocked(tx, batch));
        settle();
        return;
      } catch (error) {
        forget();
        if (isRetryable(error) && attempt < limits.retryAttemptsMax) continue;
        // A statement written alongside may fail for its own caller's reasons: each job alone then, so that only
        // the caller whose statement it was hears of it.
        if (
          batch.length > 1 &&
          batch.some((job) => job.kind === "transfers" && job.alongside !== undefined)
        ) {
          for (const job of batch) await runLocked([job]);
          return;
        }
        // Already translated where it happened (store.ts), or one of the ledger's own errors; anything else is a
        // store failure whose cause says more.
        const failure =
          error instanceof SwitchyardError
            ? error
            : new LedgerStoreError("ledger batch failed", { cause: error });
        for (const job of batch) job.reject(failure);
        return;
      }
    }
  };

  /** Inside the transaction: lock, read, validate, write. Returns what to do once it has committed. */
  const applyLocked = async (tx: Sql, batch: Job[]): Promise<() => void> => {
    const clock = await lockClock(tx);
    if (clock.token !== committedToken) forget();
    state.transfers.clear();
    state.pending.clear();
    writtenBy.clear();
    createdFinal.length = 0;
    openPendings.clear();
    if (state.accounts.size > limits.accountsCacheMax) state.accounts.clear();
    const first = batch[0]!;
    const token = randomToken();
    const firstTimestamp = maxBigint(clock.timestampLast + 1n, nowNs());
    let settle: () => void;
    let eventCount = 1;
    let writes: BatchChanges = noChanges();
    let alongside = noAlongside;
    let alongsideRows: Row[][] = [];
    if (first.kind === "transfers") {
      const jobs = batch as TransfersJob[];
      const requests = jobs.map((job) => job.transfers);
      await prefetch(tx, requests, { forUpdate: true, lookUpIds: true }, 0);
      const { results, effects } = applyTransferRequests(state, requests, firstTimestamp);
      eventCount = requests.reduce((sum, request) => sum + request.length, 0);
      writes = {
        transfers: transferRows(effects.created, format, accountIds),
        balances: balanceRows(deltas(effects.accountsBefore), format, accountIds),
        pendingOpened: effects.pendingOpened,
        pendingResolved: effects.pendingResolved,
      };
      alongside = alongsideOf(jobs, results);
      settle = () => resolveJobs(jobs, results, alongside, alongsideRows);
    } else if (first.kind === "accounts") {
      const ids = first.accounts.map((a) => a.id).filter((id) => typeof id === "bigint" && id > 0n);
      await loadAccounts(tx, ids, { forUpdate: true });
      const { results, created } = applyAccountRequest(state, first.accounts, firstTimestamp);
      eventCount = Math.max(first.accounts.length, 1);
      await insertAccounts(tx, created);
      settle = () => first.resolve(results);
    } else {
      const expired = await expire(tx, first.nowNs);
      writes = expired.writes;
      settle = () => first.resolve(expired.count);
    }
    const timestampLast = firstTimestamp + BigInt(eventCount) - 1n;
    // The clock is ours (locked above), so its token is the one read there.
    await writeBatch(tx, { expectedToken: clock.token, clock: { timestampLast, token }, ...writes });
    alongsideRows = await writeAlongside(tx, alongside.statements);
    return () => {
      committedToken = token;
      committedTimestamp = timestampLast;
      plannedToken = null;
      state.transfers.clear();
      state.pending.clear();
      settle();
    };
  };

  const loadAccounts = async (sql: Sql, ids: Iterable<bigint>, options: { forUpdate: boolean }) => {
    const missing: bigint[] = [];
    for (const id of ids) if (!state.accounts.has(id)) missing.push(id);
    if (missing.length === 0) return;
    const unique = [...new Set(missing)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const account of await selectAccounts(sql, unique, options)) state.accounts.set(account.id, account);
  };

  /** Reads what a batch of transfers needs that is not in memory: transfers it names, their status, accounts. */
  const prefetch = async (
    sql: Sql,
    requests: readonly (readonly TransferInput[])[],
    options: { forUpdate: boolean; lookUpIds: boolean },
    seq: number,
  ) => {
    const transferIds = new Set<bigint>();
    const accountIds = new Set<bigint>();
    for (const request of requests) {
      for (const t of request) {
        if (options.lookUpIds && typeof t.id === "bigint" && !state.transfers.has(t.id))
          transferIds.add(t.id);
        const pendingId = t.pendingId ?? 0n;
        if (typeof pendingId === "bigint" && pendingId !== 0n) {
          const known = state.transfers.get(pendingId);
          if (known === undefined) transferIds.add(pendingId);
          else {
            accountIds.add(known.debitAccountId);
            accountIds.add(known.creditAccountId);
          }
        }
        if (typeof t.debitAccountId === "bigint" && t.debitAccountId !== 0n) accountIds.add(t.debitAccountId);
        if (typeof t.creditAccountId === "bigint" && t.creditAccountId !== 0n)
          accountIds.add(t.creditAccountId);
      }
    }
    const found = await selectTransfersWithStatus(sql, [...transferIds]);
    for (const { transfer, status } of found) {
      if (state.transfers.has(transfer.id)) continue;
      state.transfers.set(transfer.id, transfer);
      if (status !== null) state.pending.set(transfer.id, status);
      if (seq > 0) writtenBy.set(transfer.id, seq);
      if ((transfer.flags & TransferFlags.pending) !== 0) {
        accountIds.add(transfer.debitAccountId);
        accountIds.add(transfer.creditAccountId);
      }
    }
    await loadAccounts(sql, accountIds, options);
  };

  /** Voids open pending transfers whose timeout has passed: their amounts leave the pending balances. */
  const expire = async (tx: Sql, now: bigint): Promise<{ count: number; writes: BatchChanges }> => {
    const expired = await selectExpired(tx, now, limits.expiryBatchMax);
    if (expired.length === 0) return { count: 0, writes: noChanges() };
    await loadAccounts(
      tx,
      expired.flatMap((t) => [t.debitAccountId, t.creditAccountId]),
      { forUpdate: true },
    );
    const before = new Map<Account, Account>();
    for (const p of expired) {
      const dr = state.accounts.get(p.debitAccountId)!;
      const cr = state.accounts.get(p.creditAccountId)!;
      if (!before.has(dr)) before.set(dr, { ...dr });
      if (!before.has(cr)) before.set(cr, { ...cr });
      dr.debitsPending -= p.amount;
      cr.creditsPending -= p.amount;
      if ((p.flags & TransferFlags.closingDebit) !== 0) dr.flags &= ~AccountFlags.closed;
      if ((p.flags & TransferFlags.closingCredit) !== 0) cr.flags &= ~AccountFlags.closed;
    }
    return {
      count: expired.length,
      writes: {
        transfers: transferRows([]),
        balances: balanceRows(deltas(before), format, accountIds),
        pendingOpened: [],
        pendingResolved: expired.map((t) => t.id),
      },
    };
  };

  return {
    submit,
    async close() {
      closed = true;
      while (running) await idle;
    },
  };
}

/** The statements a batch's callers write alongside it; `slots[i]` is job i's among them, or -1 for none. */
type AlongsideWrites = { statements: Statement[]; slots: number[] };
const noAlongside: AlongsideWrites = { statements: [], slots: [] };

function alongsideOf(
  jobs: readonly TransfersJob[],
  results: readonly CreateTransferResult[][],
): AlongsideWrites {
  if (jobs.every((job) => job.alongside === undefined)) return noAlongside;
  const statements: Statement[] = [];
  const slots = jobs.map((job, i) => {
    const statement = job.alongside?.statement(results[i]!) ?? null;
    if (statement === null) return -1;
    statements.push(statement);
    return statements.length - 1;
  });
  return { statements, slots };
}

/** Resolves each job with its results and, when it wrote a statement alongside, that statement's rows. */
function resolveJobs(
  jobs: readonly TransfersJob[],
  results: readonly CreateTransferResult[][],
  alongside: AlongsideWrites,
  rows: readonly Row[][],
): void {
  jobs.forEach((job, i) => {
    const slot = alongside.slots[i] ?? -1;
    job.resolve(results[i]!, slot < 0 ? null : rows[slot]!);
  });
}

/** What a batch writes, without the clock. */
type BatchChanges = Omit<BatchWrites, "expectedToken" | "clock">;
const noChanges = (): BatchChanges => ({
  transfers: transferRows([]),
  balances: balanceRows([]),
  pendingOpened: [],
  pendingResolved: [],
});

/** Balance changes of the touched accounts, as deltas (right whatever the row holds), and their flags. */
function deltas(accountsBefore: Map<Account, Account>) {
  const rows = [];
  for (const [after, before] of accountsBefore) {
    const row = {
      id: after.id,
      debitsPending: after.debitsPending - before.debitsPending,
      debitsPosted: after.debitsPosted - before.debitsPosted,
      creditsPending: after.creditsPending - before.creditsPending,
      creditsPosted: after.creditsPosted - before.creditsPosted,
      flags: after.flags,
    };
    if (
      row.debitsPending === 0n &&
      row.debitsPosted === 0n &&
      row.creditsPending === 0n &&
      row.creditsPosted === 0n &&
      after.flags === before.flags
    )
      continue;
    rows.push(row);
  }
  return rows;
}

const u128Top = (1n << 128n) - 1n;
function isStorableId(id: bigint): boolean {
  return typeof id === "bigint" && id > 0n && id < u128Top;
}

function maxBigint(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}
