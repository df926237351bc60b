// The writer's loop: takes batches off the queue while there is work, runs each locked or pipelined, and keeps the
// pipeline (batches in flight, taking the clock in the order they were planned). A failure anywhere drains the
// pipeline and runs the failed batches again, locked, in order, before anything more goes — except a batch whose
// connection went silent or whose COMMIT's outcome is unknown, or whose statement the server gave up at its statement
// timeout (57014), whose callers hear the store failure; and every failed batch of a drain in which that statement
// was a batch's own (a shared lock: the clock's, most likely), not a caller's written alongside (see drain).
import {
  AlongsideStatementError,
  batchFailure,
  LedgerStoreError,
  notToRunAgain,
  sqlStateOf,
  staleBatchCode,
  statementTimedOut,
  waitGivenUp,
} from "./errors.ts";
import type { ClaimOrder } from "./store-batch.ts";
import { runLocked } from "./writer-locked.ts";
import { commitPlan, type InFlight, type Plan, prepare } from "./writer-pipeline.ts";
import { forget, type Job, runsAlone, type TransfersJob, type WriterState } from "./writer-state.ts";

/** After a conflict with another process, stay locked for this many batches before pipelining again. */
const lockedBatchesAfterConflict = 32;

/** The previous batch did not leave the clock as this batch expected (store-batch.ts raises staleBatchCode either
 * way: ledger_stale_batch() in SQL, StaleClockError or ClaimTurnError in the client): run it again, locked. */
function isStale(error: unknown): boolean {
  return sqlStateOf(error) === staleBatchCode;
}

/** One run of the loop's pipeline: it starts empty and ends drained. */
type Pipeline = {
  inFlight: InFlight[];
  /** A batch just resolved its callers, who may be resubmitting. */
  callersResolved: boolean;
  /** Settles once the latest batch sent holds the clock (or has failed). */
  lastClaimed: Promise<void>;
};

/**
 * Starts the loop, idle until now. On PostgreSQL, once the code that submitted has run (callers submitting in one go
 * share the first batch), without waiting for the event loop's next turn — a lone request waits for no one; requests
 * that arrive while that batch is on its way gather for a turn (the loop waits one before each batch it sends behind
 * another). On PGlite the database runs on this thread, so a batch may be written and answered before any other
 * request is even read: there the loop starts on the next turn, so that the requests read in this one share it.
 */
export function startLoop(w: WriterState): void {
  w.running = true;
  w.idle = new Promise((resolve) => {
    w.signalIdle = resolve;
  });
  if (w.db.kind === "postgres") queueMicrotask(() => void loop(w));
  else setImmediate(() => void loop(w));
}

async function loop(w: WriterState): Promise<void> {
  const p: Pipeline = { inFlight: [], callersResolved: false, lastClaimed: Promise.resolve() };
  try {
    while (w.queue.length > 0 || p.inFlight.length > 0) {
      if (w.queue.length === 0) {
        await awaitArrivalOrOldest(w, p);
        continue;
      }
      if (
        w.limits.batchWaitMs > 0 &&
        p.inFlight.length === 0 &&
        w.queuedTransfers < w.limits.batchTransfersMax
      ) {
        await new Promise((resolve) => setTimeout(resolve, w.limits.batchWaitMs));
      }
      if (w.pipelined && p.inFlight.length >= w.depthMax) {
        // The pipeline is full: wait for the oldest batch while more jobs gather for the next one.
        await settleOldest(w, p, await p.inFlight[0]!.done);
        p.callersResolved = true;
        continue;
      }
      // Callers a committed batch resolved are still resubmitting, one microtask chain each: let them all arrive
      // (one macrotask) so the next batch is full rather than the first request alone.
      if (p.callersResolved || p.inFlight.length > 0) await new Promise((resolve) => setImmediate(resolve));
      p.callersResolved = false;
      // A failure anywhere drains everything (and runs the failed batches again, locked, but for those drain()
      // rejects) before more go.
      if (await anyFailed(p.inFlight)) await drain(w, p);
      const batch = takeBatch(w, batchTransfersMax(w, p));
      if (!canPipeline(w, p, batch)) {
        await drain(w, p);
        if (w.lockedBatchesLeft > 0) w.lockedBatchesLeft--;
        await runLocked(w, batch);
        p.callersResolved = true;
        continue;
      }
      await sendPipelined(w, p, batch as TransfersJob[]);
    }
  } finally {
    w.running = false;
    w.signalIdle();
    if (w.queue.length > 0) startLoop(w);
  }
}

/**
 * Nothing new yet: waits for the oldest batch in flight to settle, or for a new job (which may go at once if the
 * pipeline has room).
 */
async function awaitArrivalOrOldest(w: WriterState, p: Pipeline): Promise<void> {
  const oldest = p.inFlight[0]!;
  const arrival = new Promise<"arrival">((resolve) => {
    w.wake = () => resolve("arrival");
  });
  const outcome = await Promise.race([oldest.done.then((failure) => ({ failure })), arrival]);
  w.wake = null;
  if (outcome !== "arrival") await settleOldest(w, p, outcome.failure);
}

/** The oldest batch in flight settled with `failure` (null: committed): drop it, or drain on a failure. */
async function settleOldest(w: WriterState, p: Pipeline, failure: unknown | null): Promise<void> {
  if (failure !== null) await drain(w, p);
  else p.inFlight.shift();
}

/**
 * Waits for every batch in flight; runs the failed ones again, locked, in order — except a batch whose connection
 * went silent or whose COMMIT's outcome is unknown, or one of whose statements the server gave up at its statement
 * timeout (57014), whose callers hear the store failure; and, when that was a wait on a shared lock (a statement of a
 * batch's own, not a caller's statement written alongside), every failed batch, whose callers hear it (busyFailure).
 */
async function drain(w: WriterState, p: Pipeline): Promise<void> {
  /** The failed batches to run again, but for those rejected below. */
  const failed: { jobs: TransfersJob[]; failure: unknown }[] = [];
  let firstFailure: unknown = null;
  for (const { plan, done } of p.inFlight.splice(0)) {
    const failure = await done;
    if (failure === null) continue;
    firstFailure ??= failure;
    // A batch whose COMMIT got no answer may have committed. Run again, its transfers would come back `exists`
    // (harmless), but its callers' statements written alongside would fail on their own committed rows (a key they
    // insert is taken), refusing callers whose writes are in. Reading back which transfers are stored would not give
    // those callers their statements' rows either; so, as on the locked path (runLocked), they hear the failure (a
    // LedgerStoreError saying the outcome is unknown) and retry with the same ids. A batch whose connection went
    // silent at an earlier statement did not commit, but its transaction stays open on the server until the server
    // sees the connection close, holding its rows and locks: run again now, it would wait on them until the server's
    // statement timeout, then fail (or blame a caller whose key it waited on). Its callers hear the store failure
    // too, as on the locked path. The batches behind it are run again: a locked batch reads what is stored,
    // whichever way it went.
    if (notToRunAgain(failure)) for (const job of plan.jobs) job.reject(failure);
    else failed.push({ jobs: plan.jobs, failure });
  }
  if (firstFailure === null) return;
  forget(w);
  // The first failure says why; the batches behind it fail because it did. Only another process writing in between,
  // or holding a lock a batch waited for until the server gave up (the clock's row, most likely), is a reason to stay
  // locked for a while: pipelined, the next batches would wait for that lock again, fail, and run again locked. A
  // caller's own statement that timed out (alongside) is not: locked, it would run holding the clock.
  const busy = busyFailure(failed.map(({ failure }) => failure));
  const lockWaitGivenUp = failed.some(
    ({ failure }) => waitGivenUp(failure) && !(failure instanceof AlongsideStatementError),
  );
  if (isStale(firstFailure) || lockWaitGivenUp) w.lockedBatchesLeft = lockedBatchesAfterConflict;
  for (const { jobs, failure } of failed) {
    // A batch whose own statement the server gave up at its statement timeout (a wait of its own, or a caller's
    // statement written alongside, slow or waiting on a row held elsewhere), or whose wait it gave up in a busy
    // drain: run again, locked, it would wait as long again and then be rejected whole (runLocked, waitGivenUp).
    if (statementTimedOut(failure) || (busy !== undefined && waitGivenUp(failure)))
      rejectJobs(jobs, batchFailure(failure));
    else if (busy !== undefined) rejectJobs(jobs, collateralFailure(busy));
    else await runLocked(w, jobs);
  }
}

function rejectJobs(jobs: readonly TransfersJob[], failure: unknown): void {
  for (const job of jobs) job.reject(failure);
}

/**
 * The failure every failed batch of a drain is rejected with, if any: the first whose wait on a shared lock the server
 * gave up at its statement timeout (statementTimedOut: 57014) — a statement of the batch's own (the clock's lock, its
 * transfers, its balances), not a caller's statement written alongside (AlongsideStatementError). The batches in
 * flight take the clock one after another, so the batches behind it waited on that same wait: for its turn
 * (ClaimTurnError), or for the lock after it (a 57014 of their own, or a stale clock once the other process wrote).
 * Run again, locked, each of them — and a batch before it that failed for another reason — would wait out the timeout
 * once more (the loop blocked meanwhile, holding the clock between them once it is free, so keeping every other
 * writer of the ledger waiting); the locked path rejects a whole batch for it likewise (runLocked). Callers retry with
 * the same ids; nothing of these batches was written. The cost: a caller whose own statement written alongside was
 * refused in such a drain hears the store failure, and its own error when it retries.
 *
 * A caller's statement written alongside that timed out may be slow on its own, or wait on a row the caller's
 * application holds elsewhere: the batches behind it gave up their turn waiting for it (claimWaitMaxMs), and run
 * again, locked, they commit; only its own batch is rejected (see drain). A lock on the table every caller's statement
 * writes needs no trigger here: each batch's statements written alongside wait for it and time out themselves. A
 * lock_timeout (55P03) is none either: its wait is short, and runLocked retries it (retryAttemptsMax), then rejects
 * the batch at once.
 */
function busyFailure(failures: readonly unknown[]): LedgerStoreError | undefined {
  return failures.find(
    (failure): failure is LedgerStoreError =>
      statementTimedOut(failure) && !(failure instanceof AlongsideStatementError),
  );
}

/**
 * What the callers of a batch rejected for another batch's timeout (busyFailure) hear: the same store failure (its
 * SQLSTATE, 57014), saying it was not this batch's own.
 */
function collateralFailure(busy: LedgerStoreError): LedgerStoreError {
  return new LedgerStoreError(busy.shortMessage, {
    cause: busy.cause,
    details:
      `another batch in flight waited out the statement timeout (${busy.details ?? "57014"}), most likely for a ` +
      "lock another process holds; nothing of this batch was written: retry with the same ids",
  });
}

/** Whether a batch in flight has already failed (without waiting for the others). */
async function anyFailed(inFlight: InFlight[]): Promise<boolean> {
  const pending = Symbol("pending");
  for (const { done } of inFlight) {
    const settled = await Promise.race([done, Promise.resolve(pending)]);
    if (settled !== pending && settled !== null) return true;
  }
  return false;
}

/**
 * The most transfers the next batch takes. Pipelined, a batch only overlaps the commit of the one before it if the
 * work is spread over the pipeline's depth: a full batch followed by a scrap would leave the scrap's commit to run
 * alone.
 */
function batchTransfersMax(w: WriterState, p: Pipeline): number {
  if (!w.pipelined) return w.limits.batchTransfersMax;
  const inFlightTransfers = p.inFlight.reduce((sum, { plan }) => sum + plan.transfers.count, 0);
  return Math.min(
    w.limits.batchTransfersMax,
    Math.ceil((w.queuedTransfers + inFlightTransfers) / w.depthMax),
  );
}

/**
 * Takes the jobs at the head of the queue that fit in `transfersMax` (at least one job). A job whose statement runs
 * under the ledger's lock (runsUnderLock) goes alone: the jobs ahead of it still go pipelined, and none behind it is
 * held to its path or to its bounded lock waits (writer-locked.ts applyLocked). So does a request that imports
 * (importsTransfers), whose bounds are read under the lock (writer-locked.ts lockedTransfers).
 */
function takeBatch(w: WriterState, transfersMax: number): Job[] {
  const first = w.queue.shift()!;
  if (first.kind !== "transfers") return [first];
  const batch: Job[] = [first];
  let count = first.transfers.length;
  const alone = runsAlone(first);
  while (!alone && w.queue.length > 0) {
    const next = w.queue[0]!;
    if (next.kind !== "transfers" || runsAlone(next) || count + next.transfers.length > transfersMax) break;
    w.queue.shift();
    batch.push(next);
    count += next.transfers.length;
  }
  w.queuedTransfers -= count;
  return batch;
}

function canPipeline(w: WriterState, p: Pipeline, batch: readonly Job[]): boolean {
  return (
    w.pipelined &&
    batch[0]!.kind === "transfers" &&
    w.lockedBatchesLeft === 0 &&
    (w.committedToken !== null || p.inFlight.length > 0) &&
    // over the bound, the cache starts over; only the locked path may do that (nothing in flight)
    w.known.accounts.size <= w.limits.accountsCacheMax &&
    // a caller's statement that must see every batch before it committed (Alongside.underLock), or an import: alone
    // (takeBatch), locked
    !runsAlone(batch[0]!)
  );
}

/** Prepares a batch and sends it, to take the clock after the batch sent before it. */
async function sendPipelined(w: WriterState, p: Pipeline, jobs: TransfersJob[]): Promise<void> {
  let plan: Plan;
  try {
    plan = await prepare(w, jobs);
  } catch (error) {
    // A read failed: the locked path reads again and reports the failure if it persists.
    w.logger.warn({ err: error }, "ledger pipelined read failed; running the batch locked");
    await drain(w, p);
    forget(w);
    await runLocked(w, jobs);
    return;
  }
  // Batches take the clock in the order they were planned (each after the one before it has it).
  const order: ClaimOrder = {
    after: p.lastClaimed,
    claimed: () => undefined,
    waitMaxMs: w.limits.claimWaitMaxMs,
  };
  p.lastClaimed = new Promise<void>((resolve) => {
    order.claimed = resolve;
  });
  const alone = p.inFlight.length === 0;
  p.inFlight.push({ plan, done: commitPlan(w, plan, order, alone) });
}
