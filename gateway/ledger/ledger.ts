// The ledger service: writes go through the group-commit writer (writer.ts), reads straight to the store.
import { type Logger, silentLogger } from "../../core/logger.ts";
import type { Db } from "../db/index.ts";
import { LedgerRequestInvalidError, LedgerRequestTooLargeError } from "./errors.ts";
import {
  anyPendingDue,
  nextPendingExpiry,
  selectAccountBalances,
  selectAccounts,
  selectAccountTransfers,
  selectQuery,
  selectTransfers,
} from "./store.ts";
import {
  type Account,
  type AccountBalancesPage,
  AccountFlags,
  type AccountInput,
  type AccountQuery,
  type AccountsPage,
  type AccountTransfersFilter,
  type AccountTransfersPage,
  type Alongside,
  type CreateAccountResult,
  type CreateTransferResult,
  type CreateTransfersWithResult,
  defaultLedgerLimits,
  type LedgerLimits,
  type Query,
  type QueryFilter,
  type Transfer,
  TransferFlags,
  type TransferInput,
  type TransfersPage,
  timestampMax,
  u16Max,
  u32Max,
  u64Max,
  u128Max,
} from "./types.ts";
import { createWriter } from "./writer.ts";

export interface Ledger {
  /** One result per input, same order. Accounts are created in their own batch, through the writer. */
  createAccounts(accounts: readonly AccountInput[]): Promise<CreateAccountResult[]>;
  /**
   * One result per input, same order. The call is one request in TigerBeetle's sense: its linked chains end with
   * it. Throws LedgerBackpressureError when the writer's queue is full, LedgerRequestTooLargeError beyond
   * batchTransfersMax, LedgerStoreError when the database fails (retry with the same ids).
   */
  createTransfers(transfers: readonly TransferInput[]): Promise<CreateTransferResult[]>;
  /**
   * createTransfers, and the caller's statement (chosen from the results) committed in the same transaction, on
   * the ledger's database: both are written or neither. When the statement fails, the call rejects with
   * LedgerStoreError (its cause the database's error) and nothing of the request is written; other callers'
   * transfers are not affected.
   */
  createTransfersWith(
    transfers: readonly TransferInput[],
    alongside: Alongside,
  ): Promise<CreateTransfersWithResult>;
  /** The accounts found, in the order asked. */
  lookupAccounts(ids: readonly bigint[]): Promise<Account[]>;
  /** The transfers found, in the order asked. */
  lookupTransfers(ids: readonly bigint[]): Promise<Transfer[]>;
  /** An account's transfers in timestamp order (newest first when `reversed`), a page at a time. */
  getAccountTransfers(filter: AccountTransfersFilter): Promise<AccountTransfersPage>;
  /**
   * The balances an account with the `history` flag had right after each of its transfers that the filter takes
   * (getAccountTransfers' filter, and order), a page at a time; an account without it (or none) answers none.
   */
  getAccountBalances(filter: AccountTransfersFilter): Promise<AccountBalancesPage>;
  /** TigerBeetle's query_accounts: the accounts whose fields equal the filter's, in timestamp order, a page at a time. */
  queryAccounts(filter: QueryFilter): Promise<AccountsPage>;
  /**
   * TigerBeetle's query_transfers: the transfers whose fields equal the filter's, in timestamp order, a page at a time.
   * It scans the transfers (they have no index by timestamp): an operator's read, not one for a request's path.
   */
  queryTransfers(filter: QueryFilter): Promise<TransfersPage>;
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
  /** Where the writer and the expiry sweep say what went wrong (the app's, as a child); default: nowhere. */
  logger?: Logger;
  /**
   * `sticky` (the default, TigerBeetle's rule since 0.16.4): a transfer that fails with a transient result (an account
   * not found or closed, a pending transfer not found, a balance limit: isTransientFailure) spends its id, and the id
   * asked again fails with `id_already_failed`, whatever changed meanwhile; a retry takes a new id. `retryable`: nothing
   * is recorded, and the id asked again is evaluated again — for an application whose ids are derived from its own
   * records and asked again once the state changed (the gateway: a credit delivered again once its account exists).
   * An id a sticky ledger spent on the same database stays spent for it too (its row holds the id).
   */
  transientFailures?: "sticky" | "retryable";
};

const defaultNowNs = () => BigInt(Date.now()) * 1_000_000n;

export function createLedger(params: CreateLedgerParams): Ledger {
  const { db } = params;
  const limits: LedgerLimits = { ...defaultLedgerLimits, ...params.limits };
  const nowNs = params.nowNs ?? defaultNowNs;
  const logger = params.logger ?? silentLogger;
  const writer = createWriter({
    db,
    limits,
    nowNs,
    logger,
    stickyFailures: (params.transientFailures ?? "sticky") === "sticky",
  });
  let closed = false;

  let expiryTimer: NodeJS.Timeout | undefined;
  /**
   * A sweep at the moment the first pending transfer made here (or found open after a sweep) expires, as TigerBeetle
   * expires it, beside the interval's: a 1 s timeout's balances were held until the next tick, up to a second late.
   * One timer, for the earliest expiry known; after its sweep the next open expiry is read and timed.
   */
  let dueSweep: { atNs: bigint; timer: NodeJS.Timeout } | null = null;
  const dueSweepRetryNs = 1_000_000_000n;
  const sweepWhenDue = (atNs: bigint) => {
    if (closed || limits.expiryIntervalMs === 0) return;
    if (dueSweep !== null) {
      if (dueSweep.atNs <= atNs) return;
      clearTimeout(dueSweep.timer);
    }
    const delayMs = Number((atNs - nowNs() + 999_999n) / 1_000_000n);
    const timer = setTimeout(() => void sweepDue(), Math.min(Math.max(delayMs, 1), 2 ** 31 - 1));
    timer.unref();
    dueSweep = { atNs, timer };
  };
  const sweepDue = async () => {
    dueSweep = null;
    try {
      await ledger.expirePendingTransfers();
      // The next open expiry is timed; one already past that the sweep left open (another process's, being swept;
      // or one this sweep's clock read just before) is tried again in a second, not left to the interval's tick.
      const next = await nextPendingExpiry(db);
      const now = nowNs();
      if (next !== null) sweepWhenDue(next > now ? next : now + dueSweepRetryNs);
    } catch (error) {
      if (closed) return;
      // A sweep that failed (the database busy or away) is tried again in a second: left to the interval, a 1 s
      // timeout's balances stayed held until its tick (a minute, as a test sets it).
      logger.error({ err: error }, "ledger expiry sweep failed; tried again in a second");
      sweepWhenDue(nowNs() + dueSweepRetryNs);
    }
  };
  /** Times the sweep for the pending transfers with a timeout that `results` says were created. */
  const noteExpiries = (transfers: readonly TransferInput[], results: readonly CreateTransferResult[]) => {
    if (limits.expiryIntervalMs === 0) return;
    for (let i = 0; i < transfers.length; i += 1) {
      const t = transfers[i]!;
      const timeout = t.timeout ?? 0;
      if (timeout === 0 || ((t.flags ?? 0) & TransferFlags.pending) === 0) continue;
      const result = results[i];
      if (result?.status === "created") sweepWhenDue(result.timestamp + BigInt(timeout) * 1_000_000_000n);
    }
  };
  const ledger: Ledger = {
    async createAccounts(accounts) {
      if (accounts.length === 0) return [];
      checkRequestSize(accounts.length, limits.batchAccountsMax);
      return new Promise((resolve, reject) => writer.submit({ kind: "accounts", accounts, resolve, reject }));
    },
    async createTransfers(transfers) {
      if (transfers.length === 0) return [];
      checkRequestSize(transfers.length, limits.batchTransfersMax);
      const results = await new Promise<CreateTransferResult[]>((resolve, reject) =>
        writer.submit({ kind: "transfers", transfers, resolve, reject }),
      );
      noteExpiries(transfers, results);
      return results;
    },
    async createTransfersWith(transfers, alongside) {
      if (transfers.length === 0)
        throw new LedgerRequestInvalidError("createTransfersWith needs at least one transfer");
      checkRequestSize(transfers.length, limits.batchTransfersMax);
      return new Promise((resolve, reject) =>
        writer.submit({
          kind: "transfers",
          transfers,
          alongside,
          resolve: (results, rows) => {
            noteExpiries(transfers, results);
            resolve({ results, rows });
          },
          reject,
        }),
      );
    },
    async lookupAccounts(ids) {
      checkRequestSize(ids.length, limits.lookupLimitMax);
      const found = await selectAccounts(db, validIds(ids), { forUpdate: false });
      return inOrder(ids, found);
    },
    async lookupTransfers(ids) {
      checkRequestSize(ids.length, limits.lookupLimitMax);
      const found = await selectTransfers(db, validIds(ids));
      return inOrder(ids, found);
    },
    async getAccountTransfers(filter) {
      const query = accountQuery(filter, limits.lookupLimitMax, "getAccountTransfers");
      if (query === null) return { transfers: [], nextCursor: null };
      const transfers = await selectAccountTransfers(db, query);
      return { transfers, nextCursor: cursorAfter(transfers, query.limit) };
    },
    async getAccountBalances(filter) {
      const query = accountQuery(filter, limits.lookupLimitMax, "getAccountBalances");
      if (query === null) return { balances: [], nextCursor: null };
      // As in TigerBeetle: only an account with `history` kept any; any other answers an empty page.
      const [account] = await selectAccounts(db, [query.accountId], { forUpdate: false });
      if (account === undefined || (account.flags & AccountFlags.history) === 0)
        return { balances: [], nextCursor: null };
      const balances = await selectAccountBalances(db, query);
      return { balances, nextCursor: cursorAfter(balances, query.limit) };
    },
    async queryAccounts(filter) {
      const query = queryOf(filter, limits.lookupLimitMax, "queryAccounts");
      if (query === null) return { accounts: [], nextCursor: null };
      const accounts = await selectQuery(db, "accounts", query);
      return { accounts, nextCursor: cursorAfter(accounts, query.limit) };
    },
    async queryTransfers(filter) {
      const query = queryOf(filter, limits.lookupLimitMax, "queryTransfers");
      if (query === null) return { transfers: [], nextCursor: null };
      const transfers = await selectQuery(db, "transfers", query);
      return { transfers, nextCursor: cursorAfter(transfers, query.limit) };
    },
    async expirePendingTransfers(now) {
      const at = now ?? nowNs();
      // Most sweeps find nothing: then they need not take the writer (a locked batch) at all.
      if (!(await anyPendingDue(db, at))) return 0;
      return new Promise((resolve, reject) => writer.submit({ kind: "expire", nowNs: at, resolve, reject }));
    },
    async close() {
      closed = true;
      if (expiryTimer !== undefined) clearInterval(expiryTimer);
      if (dueSweep !== null) clearTimeout(dueSweep.timer);
      await writer.close();
    },
  };

  if (limits.expiryIntervalMs > 0) {
    expiryTimer = setInterval(() => {
      if (closed) return;
      ledger.expirePendingTransfers().catch((error: unknown) => {
        // The next tick tries again; a failing sweep must not take the process down.
        logger.error({ err: error }, "ledger expiry sweep failed");
      });
    }, limits.expiryIntervalMs);
    expiryTimer.unref();
  }
  return ledger;
}

/** A request (or lookup) of more than `max` items is refused whole. */
function checkRequestSize(count: number, max: number) {
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

/** An AccountFilter's fields within their TigerBeetle types (what its wire format could carry), or a throw. */
/**
 * A filter as the store reads it, or null for one that can match nothing. As in TigerBeetle: a limit beyond what one
 * answer carries is cut to it, a field of 0 filters nothing, and a filter that can match nothing (limit 0, no account,
 * neither side, a bound of u64's maximum, min after max) answers an empty page. A field outside its type throws.
 */
function accountQuery(
  filter: AccountTransfersFilter,
  limitMax: number,
  operation: string,
): AccountQuery | null {
  const query = queryOf(filter, limitMax, operation);
  const debits = filter.debits ?? true;
  const credits = filter.credits ?? true;
  if (query === null || filter.accountId === 0n || filter.accountId === u128Max || (!debits && !credits))
    return null;
  return { ...query, accountId: filter.accountId, debits, credits };
}

/** `0 or absent: any`, as TigerBeetle's filters read their fields. */
const given = <T extends bigint | number>(value: T | undefined): T | undefined =>
  value === undefined || value === 0 || value === 0n ? undefined : value;

/**
 * A QueryFilter (or an account filter's same fields) as the store reads it, or null for one that can match nothing:
 * limit 0, a bound of u64's maximum, min after max, a min or a forward cursor past any timestamp.
 */
function queryOf(
  filter: QueryFilter & { accountId?: bigint },
  limitMax: number,
  operation: string,
): Query | null {
  checkFilter(operation, filter);
  const limit = Math.min(filter.limit, limitMax);
  const min = given(filter.timestampMin);
  const max = given(filter.timestampMax);
  if (
    limit === 0 ||
    min === u64Max ||
    max === u64Max ||
    (min !== undefined && max !== undefined && min > max) ||
    // No timestamp passes timestampMax: nothing is later than it, and every one is earlier.
    (min !== undefined && min > timestampMax) ||
    (filter.after !== undefined && filter.after > timestampMax && filter.reversed !== true)
  )
    return null;
  return {
    limit,
    after: filter.after !== undefined && filter.after > timestampMax ? undefined : filter.after,
    reversed: filter.reversed ?? false,
    userData128: given(filter.userData128),
    userData64: given(filter.userData64),
    userData32: given(filter.userData32),
    ledger: given(filter.ledger),
    code: given(filter.code),
    timestampMin: min,
    timestampMax: max !== undefined && max > timestampMax ? undefined : max,
  };
}

/** A page's cursor: the last one's timestamp when the page is full (there may be more), else null. */
const cursorAfter = (page: readonly { timestamp: bigint }[], limit: number): bigint | null =>
  page.length === limit && page.length > 0 ? page.at(-1)!.timestamp : null;

function checkFilter(operation: string, filter: QueryFilter & { accountId?: bigint }): void {
  const outOf = (name: string, value: bigint | number | undefined, max: bigint | number) => {
    if (value === undefined) return;
    if (
      typeof value === "number"
        ? Number.isInteger(value) && value >= 0 && value <= max
        : value >= 0n && value <= max
    )
      return;
    throw new LedgerRequestInvalidError(`${operation} ${name} out of range`, {
      details: `${name} ${value}, must be 0..${max}`,
    });
  };
  outOf("limit", filter.limit, u32Max);
  outOf("accountId", filter.accountId, u128Max);
  outOf("after", filter.after, u64Max);
  outOf("code", filter.code, u16Max);
  outOf("ledger", filter.ledger, u32Max);
  outOf("userData128", filter.userData128, u128Max);
  outOf("userData64", filter.userData64, u64Max);
  outOf("userData32", filter.userData32, u32Max);
  outOf("timestampMin", filter.timestampMin, u64Max);
  outOf("timestampMax", filter.timestampMax, u64Max);
}
