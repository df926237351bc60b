// The ledger's SQL, the same on PostgreSQL and PGlite. Batches travel as array parameters (one per column: binary
// on PostgreSQL, text literals on PGlite) and are spread with unnest in the select list (a ProjectSet, which streams
// rows; `FROM unnest(...)` would first copy the whole batch into a tuplestore), so thousands of rows are one
// statement.
import { type Db, queryEach, type Row, type Sql, type Statement } from "../db/index.ts";
import { ClaimTurnError, LedgerInvariantError, StaleClockError, toStoreError } from "./errors.ts";
import { idToUuid, uuidToId } from "./id.ts";
import type { Account, PendingStatus, Transfer, TransferEvidence } from "./types.ts";

const two64 = 1n << 64n;
const two63 = 1n << 63n;
/** u64 → int8 two's complement, and back. */
export const u64ToInt8 = (value: bigint): bigint => (value >= two63 ? value - two64 : value);
export const int8ToU64 = (value: bigint): bigint => (value < 0n ? value + two64 : value);

const uuidList = (ids: readonly bigint[]) => `{${ids.map(idToUuid).join(",")}}`;
const uuidOrNullList = (ids: readonly bigint[]) =>
  `{${ids.map((id) => (id === 0n ? "NULL" : idToUuid(id))).join(",")}}`;
const numberList = (values: readonly (bigint | number)[]) => `{${values.join(",")}}`;
const quote = (text: string) => `"${text.replace(/[\\"]/g, "\\$&")}"`;
const jsonOrNullList = (values: readonly (TransferEvidence | null)[]) =>
  `{${values.map((value) => (value === null ? "NULL" : quote(JSON.stringify(value)))).join(",")}}`;

const accountColumns =
  "id, ledger, code, flags, user_data_128, user_data_64, user_data_32, debits_pending, debits_posted, credits_pending, credits_posted, timestamp";
const transferColumns =
  "id, debit_account_id, credit_account_id, amount, timestamp, ledger, code, flags, timeout, pending_id, user_data_128, user_data_64, user_data_32, evidence";

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
async function run<R extends Row = Row>(
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

/** The callers' statements written alongside a batch, in order, in its transaction (see Alongside). */
export async function writeAlongside(tx: Sql, statements: readonly Statement[]): Promise<Row[][]> {
  if (statements.length === 0) return [];
  try {
    return await queryEach(tx, statements);
  } catch (error) {
    throw toStoreError("statement written alongside", error);
  }
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
    `SELECT ${accountColumns} FROM ledger_accounts WHERE id = ANY($1::uuid[]) ORDER BY id${options.forUpdate ? " FOR UPDATE" : ""}`,
    [uuidList(ids)],
  );
  return rows.map(accountFromRow);
}

export async function selectTransfers(sql: Sql, ids: readonly bigint[]): Promise<Transfer[]> {
  if (ids.length === 0) return [];
  const rows = await run(
    sql,
    "transfer read",
    `SELECT ${transferColumns} FROM ledger_transfers WHERE id = ANY($1::uuid[])`,
    [uuidList(ids)],
  );
  return rows.map(transferFromRow);
}

/** Transfers by id, and for the pending ones among them what became of them. */
export async function selectTransfersWithStatus(
  sql: Sql,
  ids: readonly bigint[],
): Promise<{ transfer: Transfer; status: PendingStatus | null }[]> {
  if (ids.length === 0) return [];
  const rows = await run(
    sql,
    "transfer read",
    `SELECT ${transferColumns.replace(/(\w+)/g, "t.$1")}, o.id IS NOT NULL AS open, r.flags AS resolved_flags
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
 * How array parameters travel. "binary": PostgreSQL's binary array format in a Buffer (node-postgres sends a
 * Buffer parameter in binary), so the server copies 16-byte uuids and 8-byte integers instead of parsing text;
 * "text": array literals, for PGlite.
 */
export type ParamFormat = "text" | "binary";

const oids = { int4: 23, int8: 20, uuid: 2950, jsonb: 3802 } as const;

/**
 * A one-dimensional binary array of `count` fixed-size elements; `write` fills element i at byte `at` through
 * `view` (DataView's 64-bit setters take a bigint as is, where Buffer's go through several bigint operations),
 * and `isNull` (if given) marks SQL NULLs.
 */
function binaryArray(
  oid: number,
  size: number,
  count: number,
  write: (view: DataView, at: number, i: number) => void,
  isNull?: (i: number) => boolean,
): Buffer {
  let nulls = 0;
  if (isNull !== undefined) for (let i = 0; i < count; i++) if (isNull(i)) nulls++;
  const header = count === 0 ? 12 : 20;
  const buffer = Buffer.allocUnsafe(header + count * 4 + (count - nulls) * size);
  const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.length);
  view.setInt32(0, count === 0 ? 0 : 1);
  view.setInt32(4, nulls > 0 ? 1 : 0);
  view.setInt32(8, oid);
  if (count === 0) return buffer;
  view.setInt32(12, count);
  view.setInt32(16, 1);
  let at = header;
  for (let i = 0; i < count; i++) {
    if (nulls > 0 && isNull!(i)) {
      view.setInt32(at, -1);
      at += 4;
      continue;
    }
    view.setInt32(at, size);
    write(view, at + 4, i);
    at += 4 + size;
  }
  return buffer;
}

/** A u128 as uuid bytes: the high half, then the low half (setBigUint64 keeps the low 64 bits). */
const setUuid = (view: DataView, at: number, value: bigint) => {
  view.setBigUint64(at, value >> 64n);
  view.setBigUint64(at + 8, value);
};
/** u128 ids as uuid; 0 is NULL when `zeroIsNull`. */
const uuidArray = (values: readonly bigint[], zeroIsNull = false) =>
  binaryArray(
    oids.uuid,
    16,
    values.length,
    (view, at, i) => setUuid(view, at, values[i]!),
    zeroIsNull ? (i) => values[i] === 0n : undefined,
  );
/** int8 values, each within int8's range (the callers' values are validated amounts, timestamps and deltas). */
const int8Array = (values: readonly bigint[]) =>
  binaryArray(oids.int8, 8, values.length, (view, at, i) => view.setBigInt64(at, values[i]!));
/** Non-negative safe integers (u32 fields) as int8, written without a bigint. */
const uint32AsInt8Array = (values: readonly number[]) =>
  binaryArray(oids.int8, 8, values.length, (view, at, i) => {
    view.setUint32(at, 0);
    view.setUint32(at + 4, values[i]!);
  });
const int4Array = (values: readonly number[]) =>
  binaryArray(oids.int4, 4, values.length, (view, at, i) => view.setInt32(at, values[i]!));

/** Account ids' uuid text, computed once per id (a pure function of the id, never stale). */
export type IdEncoder = (id: bigint) => string;

/** Memoizes up to `entriesMax` ids, then starts over. */
export function createIdEncoder(entriesMax: number): IdEncoder {
  const known = new Map<bigint, string>();
  return (id) => {
    let text = known.get(id);
    if (text === undefined) {
      text = idToUuid(id);
      if (known.size >= entriesMax) known.clear();
      known.set(id, text);
    }
    return text;
  };
}

/** A prepared write of transfers: the parameters are built ahead (while the previous batch commits). */
export type TransferRows = { count: number; params: (string | Buffer)[]; hasEvidence: boolean };

/**
 * A transfer column: how to read it, and its SQL element type. uuid ids of 0 are NULL when `zeroIsNull`;
 * `account` ids may take the memoized text encoding; "u32" fields are stored as int8.
 */
type TransferColumn =
  | { kind: "uuid"; pick: (t: Transfer) => bigint; account?: true; zeroIsNull?: true }
  | { kind: "int8"; pick: (t: Transfer) => bigint }
  | { kind: "u32"; pick: (t: Transfer) => number }
  | { kind: "int4"; pick: (t: Transfer) => number };

/** The insert's columns in order (evidence, jsonb, is added when present). */
const transferColumnList: readonly TransferColumn[] = [
  { kind: "uuid", pick: (t) => t.id },
  { kind: "uuid", pick: (t) => t.debitAccountId, account: true },
  { kind: "uuid", pick: (t) => t.creditAccountId, account: true },
  { kind: "int8", pick: (t) => t.amount },
  { kind: "int8", pick: (t) => t.timestamp },
  { kind: "u32", pick: (t) => t.ledger },
  { kind: "int4", pick: (t) => t.code },
  { kind: "int4", pick: (t) => t.flags },
  { kind: "u32", pick: (t) => t.timeout },
  { kind: "uuid", pick: (t) => t.pendingId, zeroIsNull: true },
  { kind: "uuid", pick: (t) => t.userData128, zeroIsNull: true },
  { kind: "int8", pick: (t) => u64ToInt8(t.userData64) },
  { kind: "u32", pick: (t) => t.userData32 },
];
const sqlType = (kind: TransferColumn["kind"]) => (kind === "u32" ? "int8" : kind);

/** `accountText` may memoize account ids' text (the same accounts recur in every batch); binary needs none. */
export function transferRows(
  transfers: readonly Transfer[],
  format: ParamFormat = "text",
  accountText: IdEncoder = idToUuid,
): TransferRows {
  const count = transfers.length;
  const hasEvidence = transfers.some((t) => t.evidence !== null);
  const params = transferColumnList.map((column): string | Buffer => {
    switch (column.kind) {
      case "int4": {
        const values = transfers.map(column.pick);
        return format === "binary" ? int4Array(values) : numberList(values);
      }
      case "u32": {
        const values = transfers.map(column.pick);
        return format === "binary" ? uint32AsInt8Array(values) : numberList(values);
      }
      case "int8": {
        const values = transfers.map(column.pick);
        return format === "binary" ? int8Array(values) : numberList(values);
      }
    }
    const values = transfers.map(column.pick);
    if (format === "binary") return uuidArray(values, column.zeroIsNull === true);
    const text = column.account ? accountText : idToUuid;
    return `{${values.map((id) => (column.zeroIsNull && id === 0n ? "NULL" : text(id))).join(",")}}`;
  });
  if (hasEvidence) params.push(jsonOrNullList(transfers.map((t) => t.evidence)));
  return { count, params, hasEvidence };
}

/** `at`: how many parameters come before the transfers' columns. */
const insertTransfersSql = (hasEvidence: boolean, at = 0) => {
  const types: string[] = transferColumnList.map((column) => sqlType(column.kind));
  if (hasEvidence) types.push("jsonb");
  return `INSERT INTO ledger_transfers (${hasEvidence ? transferColumns : transferColumns.replace(", evidence", "")})
   SELECT ${types.map((type, i) => `unnest($${at + i + 1}::${type}[])`).join(", ")}`;
};

/** Balance changes per account (deltas, so a row is right whatever else the batch's accounts saw), and flags. */
export type BalanceRows = { count: number; params: (string | Buffer)[] };

export function balanceRows(
  changes: readonly {
    id: bigint;
    debitsPending: bigint;
    debitsPosted: bigint;
    creditsPending: bigint;
    creditsPosted: bigint;
    flags: number;
  }[],
  format: ParamFormat = "text",
  accountText: IdEncoder = idToUuid,
): BalanceRows {
  // ids are distinct (one row per account), so one comparison decides
  const sorted = [...changes].sort((a, b) => (a.id < b.id ? -1 : 1));
  const ids = sorted.map((c) => c.id);
  const amounts = [
    sorted.map((c) => c.debitsPending),
    sorted.map((c) => c.debitsPosted),
    sorted.map((c) => c.creditsPending),
    sorted.map((c) => c.creditsPosted),
  ];
  const flags = sorted.map((c) => c.flags);
  return {
    count: sorted.length,
    params:
      format === "binary"
        ? [uuidArray(ids), ...amounts.map(int8Array), int4Array(flags)]
        : [`{${ids.map(accountText).join(",")}}`, ...amounts.map(numberList), numberList(flags)],
  };
}

/** Everything a batch writes: its transfers, the clock, balance deltas, the pending set's changes. */
export type BatchWrites = {
  transfers: TransferRows;
  /** The token the clock must still carry (the writer's view is exact only then). */
  expectedToken: bigint;
  clock: Clock;
  balances: BalanceRows;
  pendingOpened: readonly { id: bigint; expiresAt: bigint | null }[];
  pendingResolved: readonly bigint[];
};

type Parts = { parts: string[]; params: unknown[] };

/** The transfers' insert, then the clock's swap (which waits for the insert, so the insert runs unlocked). */
function claimParts(statement: Parts, writes: BatchWrites): void {
  const { parts, params } = statement;
  let inserted = "";
  if (writes.transfers.count > 0) {
    const at = params.length;
    params.push(...writes.transfers.params);
    parts.push(`inserted AS (${insertTransfersSql(writes.transfers.hasEvidence, at)} RETURNING 1)`);
    inserted = " AND (SELECT count(*) FROM inserted) >= 0";
  }
  params.push(writes.clock.timestampLast, writes.clock.token, writes.expectedToken);
  const n = params.length;
  parts.push(
    `clock AS (UPDATE ledger_clock SET timestamp_last = $${n - 2}, token = $${n - 1} WHERE singleton AND token = $${n}${inserted} RETURNING 1)`,
  );
}

/** Balance deltas and the pending set's changes, each only if `gate` (an SQL condition) holds. */
function applyParts(statement: Parts, writes: BatchWrites, gate: string | null): void {
  const { parts, params } = statement;
  const and = gate === null ? "" : ` AND ${gate}`;
  // Sub-statements of one statement share a snapshot: a pending transfer opened and resolved within this batch
  // would be inserted and not seen by the delete. Such a transfer never needs a row.
  const resolved = new Set(writes.pendingResolved);
  const opened = writes.pendingOpened.filter((o) => !resolved.has(o.id));
  const openedIds = new Set(writes.pendingOpened.map((o) => o.id));
  const closed = writes.pendingResolved.filter((id) => !openedIds.has(id));
  if (writes.balances.count > 0) {
    const at = params.length;
    params.push(...writes.balances.params);
    parts.push(`balances AS (UPDATE ledger_accounts a
        SET debits_pending = a.debits_pending + d.debits_pending,
            debits_posted = a.debits_posted + d.debits_posted,
            credits_pending = a.credits_pending + d.credits_pending,
            credits_posted = a.credits_posted + d.credits_posted,
            flags = d.flags
       FROM (SELECT unnest($${at + 1}::uuid[]) AS id, unnest($${at + 2}::int8[]) AS debits_pending,
                    unnest($${at + 3}::int8[]) AS debits_posted, unnest($${at + 4}::int8[]) AS credits_pending,
                    unnest($${at + 5}::int8[]) AS credits_posted, unnest($${at + 6}::int4[]) AS flags) AS d
      WHERE a.id = d.id${and})`);
  }
  if (opened.length > 0) {
    params.push(
      uuidList(opened.map((o) => o.id)),
      `{${opened.map((o) => (o.expiresAt === null ? "NULL" : o.expiresAt)).join(",")}}`,
    );
    parts.push(`opened AS (INSERT INTO ledger_pending_open (id, expires_at)
       SELECT unnest($${params.length - 1}::uuid[]), unnest($${params.length}::int8[])${gate === null ? "" : ` WHERE ${gate}`})`);
  }
  if (closed.length > 0) {
    params.push(uuidList(closed));
    parts.push(`closed AS (DELETE FROM ledger_pending_open WHERE id = ANY($${params.length}::uuid[])${and})`);
  }
}

const staleCheck =
  "SELECT CASE WHEN EXISTS (SELECT 1 FROM clock) THEN 1 ELSE ledger_stale_batch() END AS written";

/**
 * Writes a whole batch in one statement, atomic without a transaction around it: inserts the transfers, takes
 * the clock (its row lock serializes batches across processes) if it still carries `expectedToken`, leaving the
 * batch's token and last timestamp there, and applies the balance deltas and pending changes, gated on the clock
 * row so no account row is locked before the clock. When the token differs the statement aborts with
 * `staleBatchCode`. For a writer that is alone on its database (PGlite), or that already holds the clock.
 */
export async function writeBatch(sql: Sql, writes: BatchWrites): Promise<void> {
  await run(sql, "batch write", ...batchStatement(writes));
}

/**
 * writeBatch's statement followed by statements of the callers', in one transaction on a database this writer is
 * alone on (PGlite: one exchange): all are written or none. Returns the rows of those statements.
 */
export async function writeBatchWith(
  db: Db,
  writes: BatchWrites,
  alongside: readonly Statement[],
): Promise<Row[][]> {
  if (alongside.length === 0) {
    await writeBatch(db, writes);
    return [];
  }
  const [text, params] = batchStatement(writes);
  try {
    return (await db.queryAll([{ text, params }, ...alongside])).slice(1);
  } catch (error) {
    throw toStoreError("batch write", error);
  }
}

function batchStatement(writes: BatchWrites): [string, unknown[]] {
  const statement: Parts = { parts: [], params: [] };
  claimParts(statement, writes);
  applyParts(statement, writes, "EXISTS (SELECT 1 FROM clock)");
  // Reading the clock first runs it (and the insert it waits on) before the gated parts.
  return [`WITH ${statement.parts.join(",\n")} ${staleCheck}`, statement.params];
}

/** When a pipelined batch may take the clock, and how it says it has. */
export type ClaimOrder = {
  /** Settles once the previous batch in flight holds the clock (or has failed). */
  after: Promise<unknown>;
  /** Called once this batch holds the clock, or has failed before or while taking it. */
  claimed: () => void;
  /** How long the batch waits for its turn, its inserted rows uncommitted, before it gives way (ClaimTurnError). */
  waitMaxMs: number;
};

/** Waits for the batch before this one to take the clock, at most `order.waitMaxMs`. */
async function awaitTurn(order: ClaimOrder): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ClaimTurnError(order.waitMaxMs)), order.waitMaxMs);
  });
  try {
    await Promise.race([order.after, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The same writes for a writer whose batches overlap on several connections (PostgreSQL): a transaction of three
 * statements. The insert runs at once, unlocked, so it overlaps the previous batch's commit. Then the clock is
 * locked with SELECT … FOR UPDATE, which waits for the previous batch's commit and returns the row as that batch
 * left it (an UPDATE … WHERE token = … would instead test the row as it was before the wait, and skip it), and
 * its token is compared here. It is locked only after the previous batch has locked it (`order`), or a batch whose
 * insert finished first would find the token before the previous batch's. The clock's new token, the balances
 * and the pending set go last, in one statement whose snapshot is taken after the previous batch committed (in
 * the locking statement they would be re-checked row by row against that commit: EvalPlanQual, thousands a batch).
 */
export async function writeBatchClaimFirst(
  db: Db,
  writes: BatchWrites,
  order: ClaimOrder,
  alongside: readonly Statement[],
): Promise<Row[][]> {
  try {
    return await ledgerTransaction(db, "pipelined batch write", async (tx) => {
      if (writes.transfers.count > 0)
        await run(
          tx,
          "transfer insert",
          insertTransfersSql(writes.transfers.hasEvidence),
          writes.transfers.params,
        );
      await awaitTurn(order);
      let clock: Clock;
      try {
        clock = await lockClock(tx);
      } finally {
        order.claimed();
      }
      if (clock.token !== writes.expectedToken) throw new StaleClockError();
      const apply: Parts = { parts: [], params: [writes.clock.timestampLast, writes.clock.token] };
      apply.parts.push("clock AS (UPDATE ledger_clock SET timestamp_last = $1, token = $2 WHERE singleton)");
      applyParts(apply, writes, null);
      await run(tx, "batch write", `WITH ${apply.parts.join(",\n")} SELECT 1`, apply.params);
      return await writeAlongside(tx, alongside);
    });
  } finally {
    order.claimed(); // failed before locking the clock: the next batch need not wait for this one
  }
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

export async function selectAccountTransfers(
  sql: Sql,
  filter: {
    accountId: bigint;
    limit: number;
    after: bigint | undefined;
    debits: boolean;
    credits: boolean;
    reversed: boolean;
    code: number | undefined;
  },
): Promise<Transfer[]> {
  const order = filter.reversed ? "DESC" : "ASC";
  const comparison = filter.reversed ? "<" : ">";
  const params: unknown[] = [idToUuid(filter.accountId), filter.limit];
  let extra = "";
  if (filter.after !== undefined) {
    params.push(filter.after);
    extra += ` AND timestamp ${comparison} $${params.length}`;
  }
  if (filter.code !== undefined) {
    params.push(filter.code);
    extra += ` AND code = $${params.length}`;
  }
  // One side is one indexed scan, already in order; both are two such scans merged (each limited first, since a
  // transfer never debits and credits the same account). A lone side must not be wrapped in the union's outer
  // ORDER BY: PostgreSQL refuses two ORDER BY clauses on one parenthesized query.
  const sides: string[] = [];
  if (filter.debits)
    sides.push(
      `SELECT ${transferColumns} FROM ledger_transfers WHERE debit_account_id = $1${extra} ORDER BY timestamp ${order} LIMIT $2`,
    );
  if (filter.credits)
    sides.push(
      `SELECT ${transferColumns} FROM ledger_transfers WHERE credit_account_id = $1${extra} ORDER BY timestamp ${order} LIMIT $2`,
    );
  if (sides.length === 0) return [];
  const text =
    sides.length === 1
      ? sides[0]!
      : `${sides.map((side) => `(${side})`).join(" UNION ALL ")} ORDER BY timestamp ${order} LIMIT $2`;
  const rows = await run(sql, "account transfers read", text, params);
  return rows.map(transferFromRow);
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
