// A batch's writes: one statement that inserts its transfers, swaps the clock's token and applies balance deltas and
// the pending set's changes (writeBatch, writeBatchWith: PGlite, or any writer holding the clock), or the same as a
// transaction of three statements that waits its turn for the clock (writeBatchClaimFirst: pipelined on
// PostgreSQL), or writeBatch's statement in a transaction with the callers' (writeBatchAlone: a pipelined batch with
// none in flight before it). See writer.ts for when each runs.
import { type Db, type Row, type Sql, type Statement, sentInOrder, textOfShape } from "../db/index.ts";
import { ClaimTurnError, StaleClockError, toStoreError } from "./errors.ts";
import type { BalanceSnapshot } from "./semantics.ts";
import { type Clock, ledgerTransaction, lockClock, run, writeAlongside } from "./store.ts";
import {
  type BalanceRows,
  insertTransfersSql,
  numberList,
  type TransferRows,
  uuidList,
} from "./store-params.ts";

/** Everything a batch writes: its transfers, the clock, balance deltas, the pending set's changes. */
export type BatchWrites = {
  transfers: TransferRows;
  /** The token the clock must still carry (the writer's view is exact only then). */
  expectedToken: bigint;
  clock: Clock;
  /** the latest timestamp among the transfers it creates (0: none), kept on the clock for imports' bounds */
  transferTimestampMax: bigint;
  balances: BalanceRows;
  pendingOpened: readonly { id: bigint; expiresAt: bigint | null }[];
  pendingResolved: readonly bigint[];
  /** balances of `history` accounts after each transfer (none for most batches) */
  history: readonly BalanceSnapshot[];
};

/** A statement's parts, their parameters, and its shape: a letter for each part (and variant) it has. */
type Parts = { parts: string[]; params: unknown[]; shape: string };

/** The transfers' insert, then the clock's swap (which waits for the insert, so the insert runs unlocked). */
function claimParts(statement: Parts, writes: BatchWrites): void {
  const { parts, params } = statement;
  let inserted = "";
  if (writes.transfers.count > 0) {
    const at = params.length;
    params.push(...writes.transfers.params);
    parts.push(`inserted AS (${insertTransfersSql(writes.transfers.hasEvidence, at)} RETURNING 1)`);
    statement.shape += writes.transfers.hasEvidence ? "E" : "I";
    inserted = " AND (SELECT count(*) FROM inserted) >= 0";
  }
  params.push(
    writes.clock.timestampLast,
    writes.clock.token,
    writes.transferTimestampMax,
    writes.expectedToken,
  );
  const n = params.length;
  parts.push(
    `clock AS (UPDATE ledger_clock SET timestamp_last = $${n - 3}, token = $${n - 2}, transfer_timestamp_max = greatest(transfer_timestamp_max, $${n - 1}) WHERE singleton AND token = $${n}${inserted} RETURNING 1)`,
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
    // A batch of a few accounts names them twice: joined to the deltas alone, the accounts have no condition of their
    // own for the index, and the prepared statement's plan (the unnest guessed at 10 rows) hash-joined a sequential
    // scan of every account once there were a thousand or so — 0.8 ms of each batch of internal-postgres-many, the
    // clock held, for 80 rows (EXPLAIN ANALYZE). Named by `= ANY`, they are found through the index (0.35 ms). A batch
    // of many accounts (the ledger bench's: thousands among 10,000) is left to the join, whose scan of every account
    // is then the cheaper way: each is its own statement, with a plan of its own.
    const named = writes.balances.count <= namedAccountsMax;
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
      WHERE a.id = d.id${named ? ` AND a.id = ANY($${at + 1}::uuid[])` : ""}${and})`);
    statement.shape += named ? "b" : "B";
  }
  if (opened.length > 0) {
    params.push(
      uuidList(opened.map((o) => o.id)),
      `{${opened.map((o) => (o.expiresAt === null ? "NULL" : o.expiresAt)).join(",")}}`,
    );
    parts.push(`opened AS (INSERT INTO ledger_pending_open (id, expires_at)
       SELECT unnest($${params.length - 1}::uuid[]), unnest($${params.length}::int8[])${gate === null ? "" : ` WHERE ${gate}`})`);
    statement.shape += "O";
  }
  if (closed.length > 0) {
    params.push(uuidList(closed));
    parts.push(`closed AS (DELETE FROM ledger_pending_open WHERE id = ANY($${params.length}::uuid[])${and})`);
    statement.shape += "C";
  }
  if (writes.history.length > 0) {
    const h = writes.history;
    const at = params.length;
    params.push(
      uuidList(h.map((b) => b.accountId)),
      numberList(h.map((b) => b.timestamp)),
      numberList(h.map((b) => b.debitsPending)),
      numberList(h.map((b) => b.debitsPosted)),
      numberList(h.map((b) => b.creditsPending)),
      numberList(h.map((b) => b.creditsPosted)),
    );
    parts.push(`history AS (INSERT INTO ledger_account_balances
         (account_id, timestamp, debits_pending, debits_posted, credits_pending, credits_posted)
       SELECT unnest($${at + 1}::uuid[]), unnest($${at + 2}::int8[]), unnest($${at + 3}::int8[]),
              unnest($${at + 4}::int8[]), unnest($${at + 5}::int8[]), unnest($${at + 6}::int8[])${gate === null ? "" : ` WHERE ${gate}`})`);
    statement.shape += "H";
  }
}

/** The most accounts a batch's balance update names for the index (applyParts). */
const namedAccountsMax = 256;

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
  const statement: Parts = { parts: [], params: [], shape: "" };
  claimParts(statement, writes);
  applyParts(statement, writes, "EXISTS (SELECT 1 FROM clock)");
  // Reading the clock first runs it (and the insert it waits on) before the gated parts.
  const text = `WITH ${statement.parts.join(",\n")} ${staleCheck}`;
  return [textOfShape(batchTexts, statement.shape, text), statement.params];
}

/** batchStatement's texts, by shape (the parts it has). */
const batchTexts = new Map<string, string>();

/**
 * A pipelined batch with no batch in flight before it (PostgreSQL): there is no commit to overlap, so it is the
 * callers' statements and then writeBatch's one statement (transfers, the clock's swap if it still carries
 * `expectedToken`, balances, pending set), in one transaction, all sent together with the COMMIT (pipeline mode: one
 * round trip) — what a lone payment waits for. As in writeBatchClaimFirst, the callers' statements (which touch no
 * ledger table) go before the clock: rows are locked in the order every pipelined batch locks them (callers' rows,
 * then the clock), and the clock is held only from the batch's statement to the commit. A batch sent behind this one
 * takes the clock after it (`order.claimed` once the statement has run). Another process holding the clock makes the
 * statement wait and then find another token: it aborts with `staleBatchCode`, and the batch runs again, locked.
 */
export async function writeBatchAlone(
  db: Db,
  writes: BatchWrites,
  order: ClaimOrder,
  alongside: readonly Statement[],
): Promise<Row[][]> {
  return await pipelinedBatch(db, "batch write", order, async (tx, sent) => {
    const rows = sent.add(writeAlongside(tx, alongside));
    sent.add(writeBatch(tx, writes).finally(order.claimed));
    return { rows };
  });
}

/**
 * A batch's transaction whose statements go without waiting for one another's answers (pipeline mode): `send` adds
 * each to `sent` and returns the callers' rows to come, and the COMMIT follows it at once. When the transaction fails,
 * the first of its statements that failed says why, with the error its own code gave it (a caller's refused statement,
 * a stale clock) — those behind it failed because it did — or, if none did, the transaction's own failure (its BEGIN,
 * its COMMIT, the wait for its turn). However it ends, the batch behind this one need not wait for it any longer.
 */
async function pipelinedBatch(
  db: Db,
  operation: string,
  order: ClaimOrder,
  send: (tx: Sql, sent: ReturnType<typeof sentInOrder>) => Promise<{ rows: Promise<Row[][]> }>,
): Promise<Row[][]> {
  const sent = sentInOrder();
  let rows: Promise<Row[][]> | undefined;
  try {
    await ledgerTransaction(db, operation, async (tx) => {
      ({ rows } = await send(tx, sent));
    });
  } catch (error) {
    throw await sent.all().then(
      () => error,
      (first: unknown) => toStoreError(operation, first),
    );
  } finally {
    order.claimed(); // failed before its clock was asked for: the next batch need not wait for this one
  }
  return await rows!;
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
 * statements and the callers' own, sent in two goes (pipeline mode). First the transfers' insert and the callers'
 * statements, unlocked, so they overlap the previous batch's commit (a caller's statement that waits on a row another
 * batch in flight holds — two writers of one attempt — ends in that batch's ClaimTurnError at worst, and both run
 * again, locked). Then, once the batch before it has locked the clock (`order`; or a batch whose statements finished
 * first would find the token before the previous batch's), the clock's lock, the apply statement and the COMMIT
 * together: the lock is SELECT … FOR UPDATE, which waits for the previous batch's commit on the server, so batches
 * follow each other there without a round trip to this process in between. The apply statement's snapshot is taken
 * after that wait, so it sees the previous batch's commit (in the locking statement its rows would be re-checked row
 * by row against that commit: EvalPlanQual, thousands a batch); it swaps the clock's token only if it is still
 * `expectedToken` and applies balances and the pending set only then, else aborts with `staleBatchCode`.
 */
export async function writeBatchClaimFirst(
  db: Db,
  writes: BatchWrites,
  order: ClaimOrder,
  alongside: readonly Statement[],
): Promise<Row[][]> {
  return await pipelinedBatch(db, "pipelined batch write", order, async (tx, sent) => {
    if (writes.transfers.count > 0)
      sent.add(
        run(tx, "transfer insert", insertTransfersSql(writes.transfers.hasEvidence), writes.transfers.params),
      );
    // The callers' statements read nothing of the ledger's: they too go before the clock, overlapping the
    // previous batch's commit, so that the clock is held only for the balances. Their answers come before the
    // clock is asked for: a failure there (a caller's refusal, a connection gone silent) is known not to have
    // committed, and the batch behind is not kept waiting for a clock this batch will never take.
    const rows = sent.add(writeAlongside(tx, alongside));
    await sent.all();
    await awaitTurn(order);
    sent.add(
      lockClock(tx)
        .finally(order.claimed)
        .then((clock) => {
          if (clock.token !== writes.expectedToken) throw new StaleClockError();
        }),
    );
    const apply: Parts = {
      parts: [],
      params: [
        writes.clock.timestampLast,
        writes.clock.token,
        writes.expectedToken,
        writes.transferTimestampMax,
      ],
      shape: "claimed:",
    };
    apply.parts.push(
      "clock AS (UPDATE ledger_clock SET timestamp_last = $1, token = $2, transfer_timestamp_max = greatest(transfer_timestamp_max, $4) WHERE singleton AND token = $3 RETURNING 1)",
    );
    applyParts(apply, writes, "EXISTS (SELECT 1 FROM clock)");
    const text = `WITH ${apply.parts.join(",\n")} ${staleCheck}`;
    sent.add(run(tx, "batch write", textOfShape(batchTexts, apply.shape, text), apply.params));
    return { rows };
  });
}
