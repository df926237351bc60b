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
//   write; COMMIT. Always correct; used for accounts and expiry, after a conflict, at start, when
//   pipelineDepthMax is 0, for a request whose statement must run under the lock (Alongside.underLock), and for a
//   request that imports (TigerBeetle's `imported`: its bounds are read under the lock).
// - pipelined: validate the batch in memory against what this writer's earlier batches will have left, build
//   its rows, and send it while the previous batch is still committing (store-batch.ts writeBatchClaimFirst,
//   three statements in a transaction): INSERT the transfers; once the previous batch holds the clock, take
//   the clock, which waits for the previous batch's commit, only if it carries the token the previous batch
//   leaves; apply the balance deltas and pending changes. If the token differs (another process wrote) the
//   claim aborts the transaction; then, or if anything fails, this batch and the ones behind it run again,
//   locked, in the same order, and callers never see the difference — except a batch whose connection went
//   silent or whose COMMIT's outcome is unknown (it timed out, or lost its connection): run again, it would
//   wait on its own abandoned transaction's locks or find its callers' rows committed, so its callers hear
//   the store failure and retry with the same ids; a batch one of whose statements the server gave up at its
//   statement timeout (57014: run again, it would wait as long again), whose callers hear that failure at
//   once; and, when that statement was the batch's own (the clock's lock, most likely: a lock shared by every
//   batch, which the ones behind it waited on too), not a caller's statement written alongside (slow on its
//   own, or waiting on a row held elsewhere: the batches behind it run again, locked, and commit), every
//   failed batch of the drain, whose callers hear it too (writer-loop.ts busyFailure). A batch with none in
//   flight before it has no commit to overlap: it is the callers' statements and one statement (transfers,
//   clock, balances), in one transaction (writeBatchAlone), two round trips fewer for a lone payment. On
//   PGlite (one connection, in this process) the depth is 1: nothing overlaps or waits, and a batch is one
//   statement (writeBatch) instead of reads and writes under the lock.
//
// The parts, over one explicit state (writer-state.ts): admission here; the loop that assembles batches and keeps the
// pipeline (writer-loop.ts); a pipelined batch (writer-pipeline.ts); a locked batch (writer-locked.ts); the reads
// both make (writer-reads.ts); what both share (writer-batch.ts).
import type { Logger } from "../../core/logger.ts";
import type { Db } from "../db/index.ts";
import { LedgerBackpressureError, LedgerClosedError } from "./errors.ts";
import type { LedgerLimits } from "./types.ts";
import { startLoop } from "./writer-loop.ts";
import { createWriterState, type Job } from "./writer-state.ts";

export type { Job } from "./writer-state.ts";

export type Writer = {
  /** Queues a job; throws LedgerBackpressureError when the queue is full, LedgerClosedError after close. */
  submit(job: Job): void;
  /** Stops taking jobs and waits for the queued ones. */
  close(): Promise<void>;
};

export function createWriter(params: {
  db: Db;
  limits: LedgerLimits;
  nowNs: () => bigint;
  logger: Logger;
  stickyFailures: boolean;
}): Writer {
  const w = createWriterState(params);
  const submit = (job: Job) => {
    if (w.closed) throw new LedgerClosedError();
    const count = job.kind === "transfers" ? job.transfers.length : 0;
    // A request larger than the whole queue (at most batchTransfersMax: the settler's batch of internal payments, under
    // a queue configured smaller) is taken when nothing waits; refused at every size, it was refused at every retry.
    if (w.queuedTransfers > 0 && w.queuedTransfers + count > w.limits.queueTransfersMax) {
      throw new LedgerBackpressureError({
        queuedTransfers: w.queuedTransfers,
        queueTransfersMax: w.limits.queueTransfersMax,
      });
    }
    w.queuedTransfers += count;
    w.queue.push(job);
    if (!w.running) startLoop(w);
    else if (w.wake !== null) {
      w.wake();
      w.wake = null;
    }
  };
  return {
    submit,
    async close() {
      w.closed = true;
      while (w.running) await w.idle;
    },
  };
}
