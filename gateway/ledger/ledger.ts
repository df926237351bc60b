// The ledger service: a group-commit writer in front of the store. Many callers hand it requests; it takes as
// many as fit in one batch, applies them in arrival order in one database transaction, and resolves each caller
// with its own results. Writers in every process first lock the one ledger_clock row, so batches from any number
// of processes apply one at a time (TigerBeetle's single state machine); accounts are then locked in id order.
import { randomBytes } from "node:crypto";
import type { Db, Sql } from "../db/index.ts";
import {
  applyAccountRequest,
  applyTransferRequests,
  emptyLedgerState,
  expiresAt,
  type LedgerState,
  type TransferEffects,
} from "./semantics.ts";
import {
  type BalanceRows,
  balanceRows,
  closePending,
  insertAccounts,
  insertTransfers,
  lockClock,
  openPending,
  selectAccounts,
  selectAccountTransfers,
  selectExpired,
  selectTransfers,
  selectTransfersWithStatus,
  setClock,
  type TransferRows,
  transferRows,
  updateBalances,
} from "./store.ts";
import {
  type Account,
  AccountFlags,
  type AccountInput,
  type AccountTransfersFilter,
  type AccountTransfersPage,
  type CreateAccountResult,
  type CreateTransferResult,
  defaultLedgerLimits,
  LedgerBackpressureError,
  LedgerClosedError,
  type LedgerLimits,
  LedgerRequestTooLargeError,
  LedgerStoreError,
  type Transfer,
  TransferFlags,
  type TransferInput,
} from "./types.ts";

export interface Ledger {
  /** One result per input, same order. Accounts are created in their own batch, through the writer. */
  createAccounts(accounts: readonly AccountInput[]): Promise<CreateAccountResult[]>;
  /**
   * One result per input, same order. The call is one request in TigerBeetle's sense: its linked chains end with
   * it. Throws LedgerBackpressureError when the writer's queue is full, LedgerRequestTooLargeError beyond
   * batchTransfersMax, LedgerStoreError when the database fails (retry with the same ids).
   */
  createTransfers(transfers: readonly TransferInput[]): Promise<CreateTransferResult[]>;
  /** The accounts found, in the order asked. */
  lookupAccounts(ids: readonly bigint[]): Promise<Account[]>;
  /** The transfers found, in the order asked. */
  lookupTransfers(ids: readonly bigint[]): Promise<Transfer[]>;
  /** An account's transfers in timestamp order (newest first when `reversed`), a page at a time. */
  getAccountTransfers(filter: AccountTransfersFilter): Promise<AccountTransfersPage>;
  /** Voids every open pending transfer whose timeout has passed by `nowNs` (default: now). Returns how many. */
  expirePendingTransfers(nowNs?: bigint): Promise<number>;
  /** Stops taking work, finishes what is queued, stops the expiry timer. Does not close the Db. */
  close(): Promise<void>;
}

export type CreateLedgerParams = {
  db: Db;
  limits?: Partial<LedgerLimits>;
  /** Wall clock in nanoseconds; ledger timestamps are strictly increasing and never behind it. */
  nowNs?: () => bigint;
};

type TransfersJob = {
  kind: "transfers";
  transfers: readonly TransferInput[];
  resolve: (results: CreateTransferResult[]) => void;
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
type Job = TransfersJob | AccountsJob | ExpireJob;

const retryableCodes = new Set([
  "40P01", // deadlock_detected
  "40001", // serialization_failure
  "55P03", // lock_not_available
  "23505", // unique_violation: another process inserted the same id or resolved the same pending first
]);

function isRetryable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && retryableCodes.has(code);
}

const randomToken = () => randomBytes(8).readBigInt64BE();
const defaultNowNs = () => BigInt(Date.now()) * 1_000_000n;

export function createLedger(params: CreateLedgerParams): Ledger {
  const { db } = params;
  const limits: LedgerLimits = { ...defaultLedgerLimits, ...params.limits };
  const nowNs = params.nowNs ?? defaultNowNs;

  const queue: Job[] = [];
  let queuedTransfers = 0;
  let running = false;
  let closed = false;
  let idle: Promise<void> = Promise.resolve();
  let signalIdle: () => void = () => undefined;

  // What this process knows: valid while the clock's token is the one this writer left behind.
  let state: LedgerState = emptyLedgerState();
  let myToken: bigint | null = null;

  const enqueue = (job: Job, transferCount: number) => {
    if (closed) throw new LedgerClosedError();
    if (queuedTransfers + transferCount > limits.queueTransfersMax) {
      throw new LedgerBackpressureError({ queuedTransfers, queueTransfersMax: limits.queueTransfersMax });
    }
    queuedTransfers += transferCount;
    queue.push(job);
    if (!running) {
      running = true;
      idle = new Promise((resolve) => {
        signalIdle = resolve;
      });
      setImmediate(() => void loop());
    }
  };

  const takeBatch = (): Job[] => {
    const first = queue.shift()!;
    if (first.kind !== "transfers") return [first];
    const batch: Job[] = [first];
    let count = first.transfers.length;
    while (queue.length > 0) {
      const next = queue[0]!;
      if (next.kind !== "transfers" || count + next.transfers.length > limits.batchTransfersMax) break;
      queue.shift();
      batch.push(next);
      count += next.transfers.length;
    }
    queuedTransfers -= count;
    return batch;
  };

  const loop = async () => {
    try {
      while (queue.length > 0) {
        if (limits.batchWaitMs > 0 && queuedTransfers < limits.batchTransfersMax) {
          await new Promise((resolve) => setTimeout(resolve, limits.batchWaitMs));
        }
        const batch = takeBatch();
        await runLocked(batch);
      }
    } finally {
      running = false;
      signalIdle();
      if (queue.length > 0 && !running) {
        running = true;
        idle = new Promise((resolve) => {
          signalIdle = resolve;
        });
        setImmediate(() => void loop());
      }
    }
  };

  /** Runs a batch under the clock lock, retrying deadlocks and the like; rejects its callers if it cannot. */
  const runLocked = async (batch: Job[]) => {
    for (let attempt = 1; ; attempt++) {
      try {
        const settle = await db.transaction((tx) => applyLocked(tx, batch));
        settle();
        return;
      } catch (error) {
        state = emptyLedgerState();
        myToken = null;
        if (isRetryable(error) && attempt < limits.retryAttemptsMax) continue;
        const failure = new LedgerStoreError(`ledger: batch failed: ${(error as Error).message}`, {
          cause: error,
        });
        for (const job of batch) job.reject(failure);
        return;
      }
    }
  };

  /** Inside the transaction: lock, load, apply, write. Returns what to do once it has committed. */
  const applyLocked = async (tx: Sql, batch: Job[]): Promise<() => void> => {
    const clock = await lockClock(tx);
    if (clock.token !== myToken) state = emptyLedgerState();
    // Transfers and pending statuses are always read afresh; only accounts stay cached between batches.
    state.transfers.clear();
    state.pending.clear();
    if (state.accounts.size > limits.accountsCacheMax) state.accounts.clear();
    const first = batch[0]!;
    const token = randomToken();
    let settle: () => void;
    let eventCount: number;
    const firstTimestamp = maxBigint(clock.timestampLast + 1n, nowNs());
    if (first.kind === "transfers") {
      const jobs = batch as TransfersJob[];
      const requests = jobs.map((job) => job.transfers);
      await prefetch(tx, requests, { forUpdate: true });
      const { results, effects } = applyTransferRequests(state, requests, firstTimestamp);
      eventCount = requests.reduce((sum, request) => sum + request.length, 0);
      await writeTransferEffects(
        tx,
        transferRows(effects.created),
        balanceRows(deltas(state, effects)),
        effects,
      );
      settle = () => jobs.forEach((job, i) => job.resolve(results[i]!));
    } else if (first.kind === "accounts") {
      const ids = first.accounts.map((a) => a.id).filter((id) => typeof id === "bigint" && id > 0n);
      await loadAccounts(tx, ids, { forUpdate: true });
      const { results, created } = applyAccountRequest(state, first.accounts, firstTimestamp);
      eventCount = first.accounts.length;
      await insertAccounts(tx, created);
      settle = () => first.resolve(results);
    } else {
      const count = await expire(tx, first.nowNs);
      eventCount = 1;
      settle = () => first.resolve(count);
    }
    const timestampLast = firstTimestamp + BigInt(Math.max(eventCount, 1)) - 1n;
    await setClock(tx, { timestampLast, token });
    return () => {
      myToken = token;
      settle();
    };
  };

  const loadAccounts = async (sql: Sql, ids: Iterable<bigint>, options: { forUpdate: boolean }) => {
    const missing: bigint[] = [];
    for (const id of new Set(ids)) if (!state.accounts.has(id)) missing.push(id);
    if (missing.length === 0) return;
    missing.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const account of await selectAccounts(sql, missing, options))
      state.accounts.set(account.id, account);
  };

  /** Loads what a batch of transfers reads: the transfers it names (by id or pending id) and their accounts. */
  const prefetch = async (
    sql: Sql,
    requests: readonly (readonly TransferInput[])[],
    options: { forUpdate: boolean },
  ) => {
    const transferIds = new Set<bigint>();
    const accountIds = new Set<bigint>();
    for (const request of requests) {
      for (const t of request) {
        if (typeof t.id === "bigint") transferIds.add(t.id);
        const pendingId = t.pendingId ?? 0n;
        if (typeof pendingId === "bigint" && pendingId !== 0n) transferIds.add(pendingId);
        if (typeof t.debitAccountId === "bigint" && t.debitAccountId !== 0n) accountIds.add(t.debitAccountId);
        if (typeof t.creditAccountId === "bigint" && t.creditAccountId !== 0n)
          accountIds.add(t.creditAccountId);
      }
    }
    const missing: bigint[] = [];
    for (const id of transferIds) if (!state.transfers.has(id)) missing.push(id);
    for (const { transfer, status } of await selectTransfersWithStatus(sql, missing)) {
      state.transfers.set(transfer.id, transfer);
      if (status !== null) state.pending.set(transfer.id, status);
      if ((transfer.flags & TransferFlags.pending) !== 0) {
        accountIds.add(transfer.debitAccountId);
        accountIds.add(transfer.creditAccountId);
      }
    }
    await loadAccounts(sql, accountIds, options);
  };

  const writeTransferEffects = async (
    tx: Sql,
    transfers: TransferRows,
    balances: BalanceRows,
    effects: TransferEffects,
  ) => {
    await insertTransfers(tx, transfers);
    await updateBalancesOf(tx, balances);
    await openPending(tx, effects.pendingOpened);
    await closePending(tx, effects.pendingResolved);
  };

  const updateBalancesOf = (tx: Sql, balances: BalanceRows) => updateBalances(tx, balances);

  /** Voids open pending transfers whose timeout has passed: their amounts leave the pending balances. */
  const expire = async (tx: Sql, now: bigint): Promise<number> => {
    const expired = await selectExpired(tx, now, limits.expiryBatchMax);
    if (expired.length === 0) return 0;
    await loadAccounts(
      tx,
      expired.flatMap((t) => [t.debitAccountId, t.creditAccountId]),
      { forUpdate: true },
    );
    const before = new Map<bigint, Account>();
    for (const p of expired) {
      const dr = state.accounts.get(p.debitAccountId)!;
      const cr = state.accounts.get(p.creditAccountId)!;
      if (!before.has(dr.id)) before.set(dr.id, { ...dr });
      if (!before.has(cr.id)) before.set(cr.id, { ...cr });
      dr.debitsPending -= p.amount;
      cr.creditsPending -= p.amount;
      if ((p.flags & TransferFlags.closingDebit) !== 0) dr.flags &= ~AccountFlags.closed;
      if ((p.flags & TransferFlags.closingCredit) !== 0) cr.flags &= ~AccountFlags.closed;
      if (expiresAt(p) === null) throw new Error("ledger: expired a pending transfer without a timeout");
    }
    await updateBalancesOf(
      tx,
      balanceRows(deltas(state, { accountsBefore: before } as Pick<TransferEffects, "accountsBefore">)),
    );
    await closePending(
      tx,
      expired.map((t) => t.id),
    );
    return expired.length;
  };

  let expiryTimer: NodeJS.Timeout | undefined;
  const ledger: Ledger = {
    async createAccounts(accounts) {
      if (accounts.length === 0) return [];
      if (accounts.length > limits.batchAccountsMax)
        throw new LedgerRequestTooLargeError({ size: accounts.length, sizeMax: limits.batchAccountsMax });
      return new Promise((resolve, reject) => enqueue({ kind: "accounts", accounts, resolve, reject }, 0));
    },
    async createTransfers(transfers) {
      if (transfers.length === 0) return [];
      if (transfers.length > limits.batchTransfersMax)
        throw new LedgerRequestTooLargeError({ size: transfers.length, sizeMax: limits.batchTransfersMax });
      return new Promise((resolve, reject) =>
        enqueue({ kind: "transfers", transfers, resolve, reject }, transfers.length),
      );
    },
    async lookupAccounts(ids) {
      checkLookup(ids.length, limits.lookupLimitMax);
      const found = await selectAccounts(db, validIds(ids), { forUpdate: false });
      return inOrder(ids, found);
    },
    async lookupTransfers(ids) {
      checkLookup(ids.length, limits.lookupLimitMax);
      const found = await selectTransfers(db, validIds(ids));
      return inOrder(ids, found);
    },
    async getAccountTransfers(filter) {
      if (!Number.isInteger(filter.limit) || filter.limit < 1 || filter.limit > limits.lookupLimitMax)
        throw new RangeError(`limit must be 1..${limits.lookupLimitMax}`);
      const transfers = await selectAccountTransfers(db, {
        accountId: filter.accountId,
        limit: filter.limit,
        after: filter.after,
        debits: filter.debits ?? true,
        credits: filter.credits ?? true,
        reversed: filter.reversed ?? false,
        code: filter.code,
      });
      const last = transfers.at(-1);
      return {
        transfers,
        nextCursor: transfers.length === filter.limit && last !== undefined ? last.timestamp : null,
      };
    },
    expirePendingTransfers(now) {
      return new Promise((resolve, reject) =>
        enqueue({ kind: "expire", nowNs: now ?? nowNs(), resolve, reject }, 0),
      );
    },
    async close() {
      closed = true;
      if (expiryTimer !== undefined) clearInterval(expiryTimer);
      await idle;
    },
  };

  if (limits.expiryIntervalMs > 0) {
    expiryTimer = setInterval(() => {
      if (closed) return;
      ledger.expirePendingTransfers().catch((error: unknown) => {
        // The next tick tries again; a failing sweep must not take the process down.
        console.error(`ledger: expiry sweep failed: ${(error as Error).message}`);
      });
    }, limits.expiryIntervalMs);
    expiryTimer.unref();
  }
  return ledger;
}

function deltas(
  state: LedgerState,
  effects: Pick<TransferEffects, "accountsBefore">,
): {
  id: bigint;
  debitsPending: bigint;
  debitsPosted: bigint;
  creditsPending: bigint;
  creditsPosted: bigint;
  flags: number;
}[] {
  const rows = [];
  for (const [id, before] of effects.accountsBefore) {
    const after = state.accounts.get(id)!;
    const row = {
      id,
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

function maxBigint(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

function checkLookup(count: number, max: number) {
  if (count > max) throw new LedgerRequestTooLargeError({ size: count, sizeMax: max });
}

const u128Top = (1n << 128n) - 1n;
function validIds(ids: readonly bigint[]): bigint[] {
  return [...new Set(ids.filter((id) => typeof id === "bigint" && id > 0n && id <= u128Top))];
}

function inOrder<T extends { id: bigint }>(ids: readonly bigint[], found: readonly T[]): T[] {
  const byId = new Map(found.map((item) => [item.id, item]));
  const out: T[] = [];
  for (const id of ids) {
    const item = byId.get(id);
    if (item !== undefined) out.push(item);
  }
  return out;
}
