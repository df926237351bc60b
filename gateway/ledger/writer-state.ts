// The group-commit writer's one explicit state (see writer.ts for how the writer works). Every part of the writer
// reads and changes it: admission (writer.ts), the loop that assembles batches and keeps the pipeline
// (writer-loop.ts), the pipelined commit (writer-pipeline.ts), the locked batch (writer-locked.ts) and the reads
// both make (writer-reads.ts). Nothing else does.

import type { Logger } from "../../core/logger.ts";
import { randomInt64 } from "../../core/random.ts";
import type { Db, Row } from "../db/index.ts";
import { emptyLedgerState, type LedgerState } from "./semantics.ts";
import { importsEvents } from "./semantics-fields.ts";
import { createIdEncoder, type IdEncoder, type ParamFormat } from "./store-params.ts";
import {
  type AccountInput,
  type Alongside,
  type CreateAccountResult,
  type CreateTransferResult,
  type LedgerLimits,
  TransferFlags,
  type TransferInput,
} from "./types.ts";

export type TransfersJob = {
  kind: "transfers";
  transfers: readonly TransferInput[];
  /** The caller's statement to commit with these transfers (see Alongside). */
  alongside?: Alongside;
  /** `rows`: those of the statement written alongside, null when there was none. */
  resolve: (results: CreateTransferResult[], rows: Row[] | null) => void;
  reject: (error: unknown) => void;
};
export type AccountsJob = {
  kind: "accounts";
  accounts: readonly AccountInput[];
  resolve: (results: CreateAccountResult[]) => void;
  reject: (error: unknown) => void;
};
export type ExpireJob = {
  kind: "expire";
  nowNs: bigint;
  resolve: (count: number) => void;
  reject: (error: unknown) => void;
};
export type Job = TransfersJob | AccountsJob | ExpireJob;

/** A job whose statement written alongside must run under the ledger's lock (Alongside.underLock). */
export const runsUnderLock = (job: Job): boolean =>
  job.kind === "transfers" && job.alongside?.underLock === true;

/** A request of transfers that imports (TransferFlags.imported on its first): read under the lock (ImportedBounds). */
export const importsTransfers = (job: Job): boolean =>
  job.kind === "transfers" && importsEvents(job.transfers, TransferFlags.imported);

/** A job that goes alone down the locked path: one whose statement needs the lock, or an import (takeBatch). */
export const runsAlone = (job: Job): boolean => runsUnderLock(job) || importsTransfers(job);

export type WriterState = {
  readonly db: Db;
  readonly limits: LedgerLimits;
  readonly nowNs: () => bigint;
  readonly logger: Logger;
  /** Batches in flight at most (see createWriterState). */
  readonly depthMax: number;
  readonly pipelined: boolean;
  readonly format: ParamFormat;
  /** Account ids' uuid text (PGlite's text arrays), memoized, bounded like the cache. */
  readonly accountIds: IdEncoder;
  /** A transient failure spends its id (LedgerState.stickyFailures). */
  readonly stickyFailures: boolean;

  // The queue, and whether the loop runs.
  readonly queue: Job[];
  queuedTransfers: number;
  running: boolean;
  closed: boolean;
  /** Settles when the running loop ends. */
  idle: Promise<void>;
  signalIdle: () => void;
  /** Set while the loop waits with an empty queue and batches in flight: a new job wakes it. */
  wake: (() => void) | null;

  // What this writer knows. Accounts are exact while the clock's token is `committedToken`. Transfers and pending
  // statuses kept here are those written (or read) by batches still in flight, tagged with the batch's seq
  // (`writtenBy`), and the pending transfers this writer's committed batches left open (`openPendings`, bounded),
  // so that posting or voiding a reservation reads nothing: exact for the same reason as the accounts.
  known: LedgerState;
  readonly writtenBy: Map<bigint, number>;
  /**
   * Transfers created without the pending flag never change, so they need no per-id tag: each batch's list is
   * dropped whole once it has committed (most transfers take this way, and it saves two map operations each). So are
   * the ids a batch spent by a transient failure (in `known.failed`).
   */
  readonly createdFinal: { seq: number; ids: bigint[] }[];
  readonly openPendings: Set<bigint>;
  /**
   * Ids committed batches spent, or read as spent under the lock (known.spent is this set): kept across batches and
   * forget(), bounded.
   */
  readonly spentIds: Set<bigint>;
  committedToken: bigint | null;
  committedTimestamp: bigint;
  committedSeq: number;
  /** The token and last timestamp the latest planned batch leaves, once it commits; null: plan from the committed. */
  plannedToken: bigint | null;
  plannedTimestamp: bigint;
  nextSeq: number;
  /** Batches still to run locked after a conflict with another process, before pipelining again. */
  lockedBatchesLeft: number;
};

export function createWriterState(params: {
  db: Db;
  limits: LedgerLimits;
  nowNs: () => bigint;
  logger: Logger;
  stickyFailures: boolean;
}): WriterState {
  const { db, limits, nowNs, logger, stickyFailures } = params;
  // A batch in flight on PostgreSQL holds a connection while it waits for the one before it to take the clock:
  // leave a connection free for that one (and for reads), or two batches could wait on each other for ever.
  const depthMax = Math.min(limits.pipelineDepthMax, db.kind === "postgres" ? db.connectionsMax - 1 : 1);
  const spentIds = new Set<bigint>();
  return {
    db,
    limits,
    nowNs,
    logger,
    depthMax,
    pipelined: depthMax >= 1,
    format: db.kind === "postgres" ? "binary" : "text",
    accountIds: createIdEncoder(limits.accountsCacheMax),
    stickyFailures,
    queue: [],
    queuedTransfers: 0,
    running: false,
    closed: false,
    idle: Promise.resolve(),
    signalIdle: () => undefined,
    wake: null,
    known: emptyLedgerState(stickyFailures, spentIds),
    writtenBy: new Map(),
    createdFinal: [],
    openPendings: new Set(),
    spentIds,
    committedToken: null,
    committedTimestamp: 0n,
    committedSeq: 0,
    plannedToken: null,
    plannedTimestamp: 0n,
    nextSeq: 1,
    lockedBatchesLeft: 0,
  };
}

/**
 * Drops everything the writer knows but the ids committed batches spent (never stale: a spent id never becomes free):
 * the next batch runs locked and reads what it needs.
 */
export function forget(w: WriterState): void {
  w.known = emptyLedgerState(w.stickyFailures, w.spentIds);
  w.writtenBy.clear();
  w.createdFinal.length = 0;
  w.openPendings.clear();
  w.committedToken = null;
  w.plannedToken = null;
}

/** Ids a committed batch spent, or found spent: remembered (LedgerState.spent), up to the bound. */
export function rememberSpent(w: WriterState, ids: Iterable<bigint>): void {
  if (!(w.limits.spentIdsCacheMax > 0)) return; // 0 (or not a number): remember none
  for (const id of ids) {
    if (w.spentIds.size >= w.limits.spentIdsCacheMax) w.spentIds.clear();
    w.spentIds.add(id);
  }
}

/** A batch's clock token: random, so that another process's batch never carries the same one. */
export const randomToken = (): bigint => randomInt64();

export function maxBigint(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}
