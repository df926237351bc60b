// The ledger's SQL, the same on PostgreSQL and PGlite: reads, the clock's lock, and the one place the database's
// errors are translated (run, ledgerTransaction, writeAlongside). Batches travel as array parameters (one per
// column: binary on PostgreSQL, text literals on PGlite; store-params.ts) and are spread with unnest in the select
// list (a ProjectSet, which streams rows; `FROM unnest(...)` would first copy the whole batch into a tuplestore), so
// thousands of rows are one statement; a batch's writes are store-batch.ts.
import {
  type Db,
  isServerError,
  plannedEachTime,
  type Row,
  type Sql,
  type Statement,
  sentInOrder,
} from "../db/index.ts";
import { AlongsideStatementError, LedgerInvariantError, toStoreError } from "./errors.ts";
import { idToUuid, uuidToId } from "./id.ts";
import {
  emptyImportedBounds,
  type ImportedBounds,
  type ImportedKind,
  otherKind,
} from "./semantics-fields.ts";
import {
  accountColumns,
  int8ToU64,
  numberList,
  transferColumns,
  u64ToInt8,
  uuidList,
  uuidOrNullList,
} from "./store-params.ts";
import type {
  Account,
  AccountBalance,
  AccountQuery,
  PendingStatus,
  Query,
  Transfer,
  TransferEvidence,
} from "./types.ts";

const uuidOrZero = (value: unknown) =>
  value === null || value === undefined ? 0n : uuidToId(value as string);

export function accountFromRow(row: Row): Account {
  return {
    id: uuidToId(row.id as string),
    ledger: Number(row.ledger),
    code: row.code as number,
    flags: row.flags as number,
    userData128: uuidOrZero(row.user_data_128),
    userData64: int8ToU64(row.user_data_64 as bigint),
    userData32: Number(row.user_data_32),
    debitsPending: row.debits_pending as bigint,
    debitsPosted: row.debits_posted as bigint,
    creditsPending: row.credits_pending as bigint,
    creditsPosted: row.credits_posted as bigint,
    timestamp: row.timestamp as bigint,
  };
}

export function transferFromRow(row: Row): Transfer {
  const evidence = row.evidence;
  return {
    id: uuidToId(row.id as string),
    debitAccountId: uuidToId(row.debit_account_id as string),
    creditAccountId: uuidToId(row.credit_account_id as string),
    amount: row.amount as bigint,
    ledger: Number(row.ledger),
    code: row.code as number,
    flags: row.flags as number,
    pendingId: uuidOrZero(row.pending_id),
    timeout: Number(row.timeout),
    userData128: uuidOrZero(row.user_data_128),
    userData64: int8ToU64(row.user_data_64 as bigint),
    userData32: Number(row.user_data_32),
    timestamp: row.timestamp as bigint,
    evidence:
      evidence === null || evidence === undefined
        ? null
        : ((typeof evidence === "string" ? JSON.parse(evidence) : evidence) as TransferEvidence),
  };
}

/**
 * Runs one of the ledger's statements. A failure becomes a LedgerStoreError here (errors.ts, toStoreError), the one
 * place the database's errors are translated; `operation` names what failed.
 */
export async function run<R extends Row = Row>(
  sql: Sql,
  operation: string,
  text: string,
  params?: readonly unknown[],
): Promise<R[]> {
  try {
    return await sql.query<R>(text, params);
  } catch (error) {
    throw toStoreError(operation, error);
  }
}

/** Runs `fn` in a transaction of the ledger's; whatever fails in it leaves as a translated error. */
export async function ledgerTransaction<T>(
  db: Db,
  operation: string,
  fn: (tx: Sql) => Promise<T>,
): Promise<T> {
  try {
    return await db.transaction(fn);
  } catch (error) {
    throw toStoreError(operation, error);
  }
}

/**
 * The callers' statements written alongside a batch, in order, in its transaction (see Alongside). A statement the
 * server refused (an ERROR: a key it inserts is taken, …) is its caller's (AlongsideStatementError). Any other failure
 * is no fault of the statement's and leaves as it is, a store failure of the whole batch: no answer
 * (DbQueryTimeoutError, the connection went silent), the connection reset or closed (a Node error, pg's "Connection
 * terminated"; every later statement of the transaction rethrows the same error), or the server ending the session
 * (a FATAL: shutting down, terminated by an administrator).
 */
export async function writeAlongside(tx: Sql, statements: readonly Statement[]): Promise<Row[][]> {
  // All sent at once (pipeline mode on PostgreSQL); read in order: a statement behind a refused one fails only
  // because the transaction is aborted (25P02), so the first failure is the one that says why.
  const sent = sentInOrder(); // the first failure is thrown below
  const answers = statements.map((statement) => sent.add(tx.query(statement.text, statement.params)));
  const rows: Row[][] = [];
  for (const [i, answer] of answers.entries()) {
    try {
      rows.push(await answer);
    } catch (error) {
      if (!refusedByServer(error)) throw error;
      throw new AlongsideStatementError(i, error);
    }
  }
  return rows;
}

/** The server refused the statement itself: its error (PostgreSQL's or PGlite's), not one ending the session. */
export const refusedByServer = (error: unknown) =>
  isServerError(error) && error.severity !== "FATAL" && error.severity !== "PANIC";

/**
 * Bounds every lock wait of the rest of the transaction to `ms` (PostgreSQL's lock_timeout, for this transaction
 * only): a statement that waits longer fails with 55P03 (lock_not_available).
 */
export async function boundLockWaits(tx: Sql, ms: number): Promise<void> {
  await run(tx, "lock wait bound", "SELECT set_config('lock_timeout', $1, true)", [`${ms}ms`]);
}

export type Clock = { timestampLast: bigint; token: bigint };

export async function lockClock(tx: Sql): Promise<Clock> {
  const rows = await run<{ timestamp_last: bigint; token: bigint }>(
    tx,
    "clock lock",
    "SELECT timestamp_last, token FROM ledger_clock WHERE singleton FOR UPDATE",
  );
  const row = rows[0];
  if (row === undefined)
    throw new LedgerInvariantError("ledger_clock has no row", {
      details: "are the ledger's migrations applied?",
    });
  return { timestampLast: row.timestamp_last, token: row.token };
}

export async function selectAccounts(
  sql: Sql,
  ids: readonly bigint[],
  options: { forUpdate: boolean },
): Promise<Account[]> {
  if (ids.length === 0) return [];
  const rows = await run(
    sql,
    "account read",
    `${plannedEachTime}SELECT ${accountColumns} FROM ledger_accounts WHERE id = ANY($1::uuid[]) ORDER BY id${options.forUpdate ? " FOR UPDATE" : ""}`,
    [uuidList(ids)],
  );
  return rows.map(accountFromRow);
}

/** Transfers by id; never an id a transient failure spent (its row has timestamp 0: writer-batch.ts spentIdRow). */
export async function selectTransfers(sql: Sql, ids: readonly bigint[]): Promise<Transfer[]> {
  if (ids.length === 0) return [];
  const rows = await run(
    sql,
    "transfer read",
    `${plannedEachTime}SELECT ${transferColumns} FROM ledger_transfers WHERE id = ANY($1::uuid[]) AND timestamp <> 0`,
    [uuidList(ids)],
  );
  return rows.map(transferFromRow);
}

/** Those of `ids` that are taken: by a transfer, or spent by a transient failure. */
export async function selectTakenIds(sql: Sql, ids: readonly bigint[]): Promise<bigint[]> {
  if (ids.length === 0) return [];
  const rows = await run(
    sql,
    "transfer read",
    `${plannedEachTime}SELECT id FROM ledger_transfers WHERE id = ANY($1::uuid[])`,
    [uuidList(ids)],
  );
  return rows.map((row) => uuidToId(row.id as string));
}

/** Transfers by id, and for the pending ones among them what became of them. */
export async function selectTransfersWithStatus(
  sql: Sql,
  ids: readonly bigint[],
): Promise<{ transfer: Transfer; status: PendingStatus | null }[]> {
  return (await selectTransfersOrSpent(sql, ids)).filter(({ transfer }) => !isSpentIdRow(transfer));
}

/** A row a batch wrote for an id a transient failure spent (writer-batch.ts spentIdRow): no transfer has timestamp 0. */
export const isSpentIdRow = (transfer: Transfer): boolean => transfer.timestamp === 0n;

/**
 * selectTransfersWithStatus, and an id a transient failure spent too, as its row (timestamp 0: writer-batch.ts
 * isSpentIdRow): what the writer reads before a batch.
 */
export async function selectTransfersOrSpent(
  sql: Sql,
  ids: readonly bigint[],
): Promise<{ transfer: Transfer; status: PendingStatus | null }[]> {
  if (ids.length === 0) return [];
  const rows = await run(
    sql,
    "transfer read",
    `${plannedEachTime}SELECT ${transferColumns.replace(/(\w+)/g, "t.$1")}, o.id IS NOT NULL AS open, r.flags AS resolved_flags
       FROM ledger_transfers t
       LEFT JOIN ledger_pending_open o ON (t.flags & 2) <> 0 AND o.id = t.id
       LEFT JOIN ledger_transfers r ON (t.flags & 2) <> 0 AND r.pending_id = t.id
      WHERE t.id = ANY($1::uuid[])`,
    [uuidList(ids)],
  );
  return rows.map((row) => {
    const transfer = transferFromRow(row);
    let status: PendingStatus | null = null;
    if ((transfer.flags & 2) !== 0) {
      const resolved = row.resolved_flags as number | null;
      if (row.open === true) status = "pending";
      else if (resolved !== null && (resolved & 4) !== 0) status = "posted";
      else if (resolved !== null && (resolved & 8) !== 0) status = "voided";
      else status = "expired";
    }
    return { transfer, status };
  });
}

export async function insertAccounts(tx: Sql, accounts: readonly Account[]): Promise<void> {
  if (accounts.length === 0) return;
  await run(
    tx,
    "account insert",
    `INSERT INTO ledger_accounts (${accountColumns})
     SELECT * FROM unnest($1::uuid[], $2::int8[], $3::int4[], $4::int4[], $5::uuid[], $6::int8[], $7::int8[],
                          $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::int8[])`,
    [
      uuidList(accounts.map((a) => a.id)),
      numberList(accounts.map((a) => a.ledger)),
      numberList(accounts.map((a) => a.code)),
      numberList(accounts.map((a) => a.flags)),
      uuidOrNullList(accounts.map((a) => a.userData128)),
      numberList(accounts.map((a) => u64ToInt8(a.userData64))),
      numberList(accounts.map((a) => a.userData32)),
      numberList(accounts.map((a) => a.debitsPending)),
      numberList(accounts.map((a) => a.debitsPosted)),
      numberList(accounts.map((a) => a.creditsPending)),
      numberList(accounts.map((a) => a.creditsPosted)),
      numberList(accounts.map((a) => a.timestamp)),
    ],
  );
}

/**
 * What an imported request's events are checked against (ImportedBounds), read under the ledger's lock: the latest
 * account's timestamp (by its index) and the latest transfer's (kept on the clock: transfers have no index by
 * timestamp), and which of the request's `timestamps` an event of the other kind holds — for a transfer import, the
 * accounts at them (by the index); for an account import, the transfers at those of them not after the latest
 * transfer (none can be at a later one). Only the last is costly, one probe of `ledger_transfers_debit` per account
 * under the lock, and only for an account imported from before the latest transfer.
 */
export async function selectImportedBounds(
  tx: Sql,
  kind: ImportedKind,
  timestamps: readonly bigint[],
): Promise<ImportedBounds> {
  const bounds = emptyImportedBounds();
  const [latest] = await run<{ account_max: bigint | string | null; transfer_max: bigint | string }>(
    tx,
    "imported bounds read",
    `SELECT (SELECT max(timestamp) FROM ledger_accounts) AS account_max, transfer_timestamp_max AS transfer_max
       FROM ledger_clock WHERE singleton`,
    [],
  );
  if (latest === undefined) throw new LedgerInvariantError("ledger_clock has no row", {});
  bounds.account.timestampMax = latest.account_max === null ? 0n : BigInt(latest.account_max);
  bounds.transfer.timestampMax = BigInt(latest.transfer_max);
  // Only the other kind's at the request's timestamps, and none can be at one after that kind's latest.
  const other = bounds[otherKind(kind)];
  const taken = timestamps.filter((t) => t <= other.timestampMax);
  if (taken.length === 0) return bounds;
  let newest = 0n;
  for (const t of taken) if (t > newest) newest = t;
  const [text, params] =
    kind === "transfer"
      ? ["SELECT timestamp FROM ledger_accounts WHERE timestamp = ANY($1::int8[])", [numberList(taken)]]
      : [
          `SELECT t.timestamp FROM ledger_accounts a
             CROSS JOIN LATERAL (SELECT timestamp FROM ledger_transfers
                                  WHERE debit_account_id = a.id AND timestamp = ANY($1::int8[])) t
            WHERE a.timestamp < $2`,
          [numberList(taken), newest],
        ];
  const rows = await run<{ timestamp: bigint | string }>(tx, "imported bounds read", text, params);
  for (const row of rows) other.timestamps.add(BigInt(row.timestamp));
  return bounds;
}

/** Whether any open pending transfer's timeout has passed (a read, no lock). */
export async function anyPendingDue(sql: Sql, nowNs: bigint): Promise<boolean> {
  const rows = await run(
    sql,
    "expiry check",
    "SELECT 1 FROM ledger_pending_open WHERE expires_at IS NOT NULL AND expires_at <= $1 LIMIT 1",
    [nowNs],
  );
  return rows.length > 0;
}

/** When the open pending transfer that expires first does (nanoseconds), or null for none with a timeout. */
export async function nextPendingExpiry(sql: Sql): Promise<bigint | null> {
  const rows = await run(
    sql,
    "next expiry",
    "SELECT expires_at FROM ledger_pending_open WHERE expires_at IS NOT NULL ORDER BY expires_at LIMIT 1",
    [],
  );
  const at = rows[0]?.expires_at;
  return at === undefined || at === null ? null : BigInt(at as bigint | string);
}

/** Open pending transfers whose timeout has passed, oldest first, locked. */
export async function selectExpired(tx: Sql, nowNs: bigint, limit: number): Promise<Transfer[]> {
  const rows = await run(
    tx,
    "expiry read",
    `SELECT ${transferColumns.replace(/(\w+)/g, "t.$1")}
       FROM ledger_pending_open o JOIN ledger_transfers t ON t.id = o.id
      WHERE o.expires_at IS NOT NULL AND o.expires_at <= $1
      ORDER BY o.expires_at, o.id
      LIMIT $2
      FOR UPDATE OF o`,
    [nowNs, limit],
  );
  return rows.map(transferFromRow);
}

export async function selectAccountTransfers(sql: Sql, filter: AccountQuery): Promise<Transfer[]> {
  const rows = await run(sql, "account transfers read", ...accountTransfersSql(filter, "transfers"));
  return rows.map(transferFromRow);
}

/**
 * The balances kept for an account with `history` (ledger_account_balances) after each of its transfers the filter
 * takes, in the transfers' order. Joined before the limit: a transfer with none (one written before migration 003)
 * neither takes a place in the page nor ends it early.
 */
export async function selectAccountBalances(sql: Sql, filter: AccountQuery): Promise<AccountBalance[]> {
  const rows = await run<{
    timestamp: bigint;
    debits_pending: bigint;
    debits_posted: bigint;
    credits_pending: bigint;
    credits_posted: bigint;
  }>(sql, "account balances read", ...accountTransfersSql(filter, "balances"));
  return rows.map((row) => ({
    debitsPending: BigInt(row.debits_pending),
    debitsPosted: BigInt(row.debits_posted),
    creditsPending: BigInt(row.credits_pending),
    creditsPosted: BigInt(row.credits_posted),
    timestamp: BigInt(row.timestamp),
  }));
}

/** The transfers' columns, or an account's balance after each (history), as accountTransfersSql reads them. */
const accountReads = {
  transfers: { columns: transferColumns.replace(/(\w+)/g, "t.$1"), from: "ledger_transfers t" },
  balances: {
    columns: "t.timestamp, b.debits_pending, b.debits_posted, b.credits_pending, b.credits_posted",
    from: "ledger_transfers t JOIN ledger_account_balances b ON b.account_id = $1 AND b.timestamp = t.timestamp",
  },
};

/** An account's transfers the filter takes (or its balances after them), in order: the text and its parameters. */
function accountTransfersSql(filter: AccountQuery, read: keyof typeof accountReads): [string, unknown[]] {
  const { columns, from } = accountReads[read];
  const order = filter.reversed ? "DESC" : "ASC";
  const comparison = filter.reversed ? "<" : ">";
  const params: unknown[] = [idToUuid(filter.accountId), filter.limit];
  let extra = "";
  const where = (condition: string, value: unknown) => {
    params.push(value);
    extra += ` AND ${condition} $${params.length}`;
  };
  if (filter.after !== undefined) where(`t.timestamp ${comparison}`, filter.after);
  if (filter.code !== undefined) where("t.code =", filter.code);
  if (filter.userData128 !== undefined) where("t.user_data_128 =", idToUuid(filter.userData128));
  if (filter.userData64 !== undefined) where("t.user_data_64 =", u64ToInt8(filter.userData64));
  if (filter.userData32 !== undefined) where("t.user_data_32 =", filter.userData32);
  if (filter.timestampMin !== undefined) where("t.timestamp >=", filter.timestampMin);
  if (filter.timestampMax !== undefined) where("t.timestamp <=", filter.timestampMax);
  // One side is one indexed scan, already in order; both are two such scans merged (each limited first, since a
  // transfer never debits and credits the same account). A lone side must not be wrapped in the union's outer
  // ORDER BY: PostgreSQL refuses two ORDER BY clauses on one parenthesized query.
  const sides: string[] = [];
  if (filter.debits)
    sides.push(
      `SELECT ${columns} FROM ${from} WHERE t.debit_account_id = $1${extra} ORDER BY t.timestamp ${order} LIMIT $2`,
    );
  if (filter.credits)
    sides.push(
      `SELECT ${columns} FROM ${from} WHERE t.credit_account_id = $1${extra} ORDER BY t.timestamp ${order} LIMIT $2`,
    );
  // Neither side is refused before (ledger.ts accountQuery).
  const text =
    sides.length === 1
      ? sides[0]!
      : `${sides.map((side) => `(${side})`).join(" UNION ALL ")} ORDER BY timestamp ${order} LIMIT $2`;
  return [text, params];
}

/**
 * TigerBeetle's query_accounts / query_transfers: the rows whose fields equal the query's, in timestamp order. Accounts
 * are walked by their timestamp index; transfers have no such index (it would cost every batch), so a query of them
 * scans the table: a read for an operator, not for a request's path. A spent id's row (timestamp 0) is no transfer.
 */
export async function selectQuery(sql: Sql, table: "accounts", query: Query): Promise<Account[]>;
export async function selectQuery(sql: Sql, table: "transfers", query: Query): Promise<Transfer[]>;
export async function selectQuery(
  sql: Sql,
  table: "accounts" | "transfers",
  query: Query,
): Promise<Account[] | Transfer[]> {
  const params: unknown[] = [query.limit];
  const conditions: string[] = table === "transfers" ? ["timestamp <> 0"] : [];
  const where = (condition: string, value: unknown) => {
    params.push(value);
    conditions.push(`${condition} $${params.length}`);
  };
  if (query.after !== undefined) where(`timestamp ${query.reversed ? "<" : ">"}`, query.after);
  if (query.userData128 !== undefined) where("user_data_128 =", idToUuid(query.userData128));
  if (query.userData64 !== undefined) where("user_data_64 =", u64ToInt8(query.userData64));
  if (query.userData32 !== undefined) where("user_data_32 =", query.userData32);
  if (query.ledger !== undefined) where("ledger =", query.ledger);
  if (query.code !== undefined) where("code =", query.code);
  if (query.timestampMin !== undefined) where("timestamp >=", query.timestampMin);
  if (query.timestampMax !== undefined) where("timestamp <=", query.timestampMax);
  const columns = table === "accounts" ? accountColumns : transferColumns;
  const rows = await run(
    sql,
    `${table} query`,
    `SELECT ${columns} FROM ledger_${table}${conditions.length > 0 ? ` WHERE ${conditions.join(" AND ")}` : ""}
      ORDER BY timestamp ${query.reversed ? "DESC" : "ASC"} LIMIT $1`,
    params,
  );
  return table === "accounts" ? rows.map(accountFromRow) : rows.map(transferFromRow);
}

/** Σ per ledger, for invariant checks: every ledger must balance. */
export async function selectLedgerTotals(db: Db): Promise<
  {
    ledger: number;
    debitsPending: bigint;
    debitsPosted: bigint;
    creditsPending: bigint;
    creditsPosted: bigint;
  }[]
> {
  const rows = await run<{
    ledger: bigint;
    debits_pending: string;
    debits_posted: string;
    credits_pending: string;
    credits_posted: string;
  }>(
    db,
    "ledger totals read",
    `SELECT ledger, sum(debits_pending)::text AS debits_pending, sum(debits_posted)::text AS debits_posted,
            sum(credits_pending)::text AS credits_pending, sum(credits_posted)::text AS credits_posted
       FROM ledger_accounts GROUP BY ledger ORDER BY ledger`,
  );
  return rows.map((row) => ({
    ledger: Number(row.ledger),
    debitsPending: BigInt(row.debits_pending),
    debitsPosted: BigInt(row.debits_posted),
    creditsPending: BigInt(row.credits_pending),
    creditsPosted: BigInt(row.credits_posted),
  }));
}
