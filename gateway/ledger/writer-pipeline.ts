// A pipelined batch: validated in memory against what this writer's earlier batches will have left, its rows built,
// and sent while the batch before it still commits (store-batch.ts writeBatchClaimFirst on PostgreSQL, writeBatchWith
// on PGlite). It resolves its callers only once committed; any failure is returned, and the loop runs the batch
// again, locked (writer-loop.ts) — unless its connection went silent or its COMMIT's outcome is unknown, or the server
// gave up one of its statements at its statement timeout (57014), or a statement of another batch of its drain, the
// batch's own (a shared lock), not a caller's written alongside: then its callers hear the store failure.
import type { Row } from "../db/index.ts";
import { KnownIdError } from "./errors.ts";
import { applyTransferRequests, type TransferEffects } from "./semantics.ts";
import { selectTakenIds } from "./store.ts";
import {
  type BatchWrites,
  type ClaimOrder,
  writeBatchAlone,
  writeBatchClaimFirst,
  writeBatchWith,
} from "./store-batch.ts";
import { type BalanceRows, balanceRows, type TransferRows, transferRows } from "./store-params.ts";
import { type CreateTransferResult, TransferFlags, type TransferInput } from "./types.ts";
import {
  type AlongsideWrites,
  alongsideOf,
  deltas,
  latestCreated,
  resolveJobs,
  writtenTransfers,
} from "./writer-batch.ts";
import { prefetch } from "./writer-reads.ts";
import {
  maxBigint,
  randomToken,
  rememberSpent,
  type TransfersJob,
  type WriterState,
} from "./writer-state.ts";

export type Plan = {
  seq: number;
  jobs: TransfersJob[];
  results: CreateTransferResult[][];
  transfers: TransferRows;
  balances: BalanceRows;
  pendingOpened: TransferEffects["pendingOpened"];
  pendingResolved: bigint[];
  history: TransferEffects["history"];
  transferTimestampMax: bigint;
  /** ids this batch spends (sticky transient failures): remembered once it has committed */
  spent: bigint[];
  alongside: AlongsideWrites;
  /** ids of events that failed without being checked against stored transfers (ids of created ones are checked by
   * the primary key) */
  uncheckedIds: bigint[];
  expectedToken: bigint;
  token: bigint;
  timestampLast: bigint;
};

/** A batch sent: `done` settles with null once it has committed (its callers resolved), or with its failure. */
export type InFlight = { plan: Plan; done: Promise<unknown | null> };

/** Validates a batch against what this writer's earlier batches leave, and builds its rows. */
export async function prepare(w: WriterState, jobs: TransfersJob[]): Promise<Plan> {
  const seq = w.nextSeq++;
  dropCommitted(w);
  if (w.plannedToken === null) {
    w.plannedToken = w.committedToken;
    w.plannedTimestamp = w.committedTimestamp;
  }
  const requests = jobs.map((job) => job.transfers);
  // Ids not known here are taken to be new; if one is not, the INSERT fails and the batch runs again, locked.
  await prefetch(w, w.db, requests, { forUpdate: false, lookUpIds: false }, seq);
  const firstTimestamp = maxBigint(w.plannedTimestamp + 1n, w.nowNs());
  const { results, effects } = applyTransferRequests(w.known, requests, firstTimestamp);
  // Spent ids are dropped with the final transfers once the batch committed (then the database's row says so).
  const final: bigint[] = [...effects.failed];
  for (const transfer of effects.created) {
    if ((transfer.flags & TransferFlags.pending) === 0) final.push(transfer.id);
    else w.writtenBy.set(transfer.id, seq);
  }
  w.createdFinal.push({ seq, ids: final });
  for (const id of effects.pendingResolved) w.writtenBy.set(id, seq);
  const eventCount = requests.reduce((sum, request) => sum + request.length, 0);
  const plan: Plan = {
    seq,
    jobs,
    results,
    transfers: transferRows(writtenTransfers(effects), w.format, w.accountIds),
    balances: balanceRows(deltas(effects.accountsBefore), w.format, w.accountIds),
    pendingOpened: effects.pendingOpened,
    pendingResolved: effects.pendingResolved,
    history: effects.history,
    transferTimestampMax: latestCreated(effects.created),
    spent: effects.failed,
    alongside: alongsideOf(jobs, results, effects.created),
    uncheckedIds: uncheckedIds(w, requests, results),
    expectedToken: w.plannedToken!,
    token: randomToken(),
    timestampLast: firstTimestamp + BigInt(eventCount) - 1n,
  };
  w.plannedToken = plan.token;
  w.plannedTimestamp = plan.timestampLast;
  return plan;
}

/**
 * Batches that have committed are in the database now: drops what they left in memory, except accounts and the
 * pending transfers they left open (up to the bound).
 */
function dropCommitted(w: WriterState): void {
  const { known, writtenBy, openPendings, createdFinal, committedSeq } = w;
  for (const [id, writer] of writtenBy) {
    if (writer <= committedSeq) {
      writtenBy.delete(id);
      if (known.pending.get(id) === "pending" && openPendings.size < w.limits.pendingCacheMax) {
        openPendings.add(id);
        continue;
      }
      openPendings.delete(id);
      known.transfers.delete(id);
      known.pending.delete(id);
      if (known.failed.size > 0) known.failed.delete(id);
    }
  }
  while (createdFinal.length > 0 && createdFinal[0]!.seq <= committedSeq) {
    const { ids } = createdFinal.shift()!;
    for (const id of ids) known.transfers.delete(id);
    if (known.failed.size > 0) for (const id of ids) known.failed.delete(id);
  }
}

/** Ids of failed events the writer does not know: they must be new, or the result would have been `exists*`. */
function uncheckedIds(
  w: WriterState,
  requests: readonly (readonly TransferInput[])[],
  results: readonly CreateTransferResult[][],
): bigint[] {
  const ids: bigint[] = [];
  requests.forEach((request, r) => {
    const requestResults = results[r]!;
    request.forEach((t, i) => {
      const status = requestResults[i]!.status;
      // One answered id_already_failed from memory is known spent (its own batch's row, or an earlier batch's that
      // fails with it through the token): reading it again would only send a right answer to run again, locked.
      if (
        status !== "created" &&
        status !== "id_already_failed" &&
        !w.known.transfers.has(t.id) &&
        isStorableId(t.id)
      )
        ids.push(t.id);
    });
  });
  return ids;
}

const u128Top = (1n << 128n) - 1n;
function isStorableId(id: bigint): boolean {
  return typeof id === "bigint" && id > 0n && id < u128Top;
}

/**
 * Sends a prepared batch. Resolves with null once committed (callers resolved), or with the failure. `alone`: no
 * batch is in flight before it (writeBatchAlone: nothing to overlap, fewer round trips).
 */
export async function commitPlan(
  w: WriterState,
  plan: Plan,
  order: ClaimOrder,
  alone: boolean,
): Promise<unknown | null> {
  let rows: Row[][];
  try {
    // Read before the write, outside it: an id another process stores in between changes the clock's token
    // too, so the write below aborts and the batch runs again, locked.
    if (plan.uncheckedIds.length > 0 && (await selectTakenIds(w.db, plan.uncheckedIds)).length > 0)
      throw new KnownIdError();
    const writes: BatchWrites = {
      transfers: plan.transfers,
      expectedToken: plan.expectedToken,
      clock: { timestampLast: plan.timestampLast, token: plan.token },
      balances: plan.balances,
      pendingOpened: plan.pendingOpened,
      pendingResolved: plan.pendingResolved,
      history: plan.history,
      transferTimestampMax: plan.transferTimestampMax,
    };
    const { statements } = plan.alongside;
    if (w.db.kind !== "postgres")
      rows = await writeBatchWith(w.db, writes, statements); // alone on its database: nothing waits for the order
    else if (alone) rows = await writeBatchAlone(w.db, writes, order, statements);
    else rows = await writeBatchClaimFirst(w.db, writes, order, statements);
  } catch (error) {
    return error;
  } finally {
    order.claimed(); // however it ended, the batch behind this one must not wait for it
  }
  w.committedSeq = plan.seq;
  w.committedToken = plan.token;
  w.committedTimestamp = plan.timestampLast;
  if (plan.spent.length > 0) rememberSpent(w, plan.spent);
  resolveJobs(plan.jobs, plan.results, plan.alongside, rows);
  return null;
}
