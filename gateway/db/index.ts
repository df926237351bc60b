// One small SQL interface over the two databases Switchyard runs on: PostgreSQL through `pg`
// (the system of record) and PGlite (in-process PostgreSQL, the embedded default). Same SQL on both.
// int8 comes back as bigint and numeric as a decimal string on both, so amounts never pass a float.
//
// On PostgreSQL no statement waits for an answer forever. The server's statement_timeout cancels a slow statement;
// a connection that goes silent (a half-open socket, a partition, a frozen server) answers nothing, not even that,
// so the client gives up too, queryTimeoutMarginMs after the statement timeout (the server's, which names the
// statement, normally fires first), with a DbQueryTimeoutError; a statement sent behind others still unanswered on its
// connection (pipeline mode, below) gets that bound once more for each of them, up to four times. The connection is
// then in an unknown state (its statement may still run, or its answer arrive later): it is closed, never handed to
// another caller, and no ROLLBACK is sent over it (the server rolls back once it sees the connection close — in a
// partition, only once its own TCP gives up, holding the transaction's locks until then — or once the transaction has
// sat idle for idle_in_transaction_session_timeout, set on every session of the pool from the statement timeout: see
// idleInTransactionTimeoutMsOf). A COMMIT that times out has an unknown outcome, as one whose connection drops or
// whose server ends the session (a FATAL): DbCommitOutcomeUnknownError; only an ERROR answering it says it rolled
// back. A connection lost while a transaction has it checked out makes the client emit
// 'error': transaction() listens, logs it, and closes that connection.
// One exception: a session (Db.session, which the migrations run on) has no statement timeout, for an index built
// over a whole table; its migrations bound what they wait for a table's lock instead (migrate's lock_timeout).
// The change bus's LISTEN connection (changes.ts) has its own bound: a ping with a timeout, then a new connection.
// The pool's connections are in node-postgres's pipeline mode: a statement is sent when asked for, without waiting for
// the answer of the one before it, and the server runs them in order, each with its own Sync (an error aborts the
// transaction, not the statements' protocol). transaction() sends BEGIN with the first statement and COMMIT as soon as
// its body returns, then waits for every answer: the statements of a transaction whose body does not await each one
// (a ledger batch) travel in one round trip, and those asked for in one turn of the event loop in one write
// (corkForTurn).
import { mkdir, readdir, readFile } from "node:fs/promises";
import path from "node:path";
import type { Writable } from "node:stream";
import { PGlite, types as pgliteTypes, protocol } from "@electric-sql/pglite";
import pg from "pg";
import {
  causeWhere,
  type Db,
  type Logger,
  type MigrationSource,
  type Row,
  type Sql,
  type Statement,
  SwitchyardError,
  silentLogger,
} from "../../core/index.ts";
import { bytewiseTextIn, isBytewise, migrationsLock } from "./bytewise.ts";
import { type FreshClusters, type FreshStart, freshClusters } from "./fresh-cluster.ts";
import { doubleMemfsGrowth } from "./memfs.ts";
import { joinMessages, openPgliteThread } from "./pglite-thread.ts";

export {
  type Change,
  type ChangeBus,
  ChangeBusError,
  type ChangeEvent,
  type ChangeFeed,
  type ChangeListenerLimits,
  type ChangeSubscriber,
  changeChannel,
  changeListenerApplicationName,
  changeListenerLimitsDefaults,
  createLocalChangeBus,
  openChangeBus,
  openPostgresChangeBus,
  transactionAnnouncing,
} from "./changes.ts";
export type { Db, MigrationSource, Row, Sql, Statement };
export { doubleMemfsGrowth };

export type DbConfig =
  | { kind: "postgres"; url: string; poolSizeMax: number; statementTimeoutMs: number }
  | {
      kind: "pglite";
      /** a directory, or undefined for memory */
      dataDir: string | undefined;
      /** On a worker thread of its own (pglite-thread.ts); absent: on the caller's. */
      thread?: boolean;
    };

export async function openDb(config: DbConfig, logger: Logger = silentLogger): Promise<Db> {
  return config.kind === "postgres"
    ? openPostgres({ ...config, logger })
    : openPglite(config.dataDir, { thread: config.thread === true });
}

const int8Oid = 20;

/**
 * node-postgres's own conversion of a parameter to what it sends (a string, a Buffer or null), which it applies again
 * to what it gets back unchanged. Exported at run time as `pg.utils`, not in its types.
 */
const prepareValue = (pg as unknown as { utils: { prepareValue(value: unknown): unknown } }).utils
  .prepareValue;
if (typeof prepareValue !== "function") throw new Error("node-postgres no longer exports utils.prepareValue");

/**
 * How long after the statement timeout the client stops waiting for a statement's answer: room for the server's own
 * cancellation to arrive first (network, event-loop lag), small enough that a silent connection costs little more.
 */
export const queryTimeoutMarginMs = 1_000;

/**
 * When an idle connection starts being probed (TCP keepalive; Linux then probes every second, up to 10 times): a
 * connection whose peer vanished is found dead about 15 s into an idle spell, which the pool's own 10 s idle timeout
 * usually ends first — the probes matter for connections kept busy with pauses. Keepalive does not probe while sent
 * bytes are unacknowledged, and a frozen server's kernel still answers probes: only the query timeout bounds those.
 */
export const keepAliveInitialDelayMs = 5_000;

/**
 * The least idle_in_transaction_session_timeout a pool's sessions get, whatever the statement timeout: above the
 * longest honest gap between two statements of a transaction of ours (idleInTransactionTimeoutMsOf).
 */
export const idleInTransactionTimeoutMinMs = 5_000;

/**
 * How long the server lets a session of the pool sit idle inside a transaction before it ends the session, rolling
 * the transaction back and releasing its locks (idle_in_transaction_session_timeout): twice the statement timeout,
 * at least idleInTransactionTimeoutMinMs. It bounds what a client lost mid-transaction (a partition, a frozen
 * process) costs everyone else: the server waits for its next statement and sends nothing, so its TCP notices the
 * loss only through keepalive (tcp_keepalives_idle: the system's two hours unless set), while the transaction keeps
 * its locks — the ledger's clock among them, which every batch of every gateway process waits for.
 * It must exceed the longest honest gap between two statements of one of our transactions, or the server would end
 * healthy ones. No transaction of Switchyard's waits while open on anything outside the database (a rail, a
 * webhook, another connection: each db.transaction body only runs its statements; rails are called before or after
 * one). Its gaps are the client's work between statements — the ledger validating a batch of up to
 * batchTransfersMax transfers in memory, building the rows of the next statement — and event-loop lag, and one wait
 * in this process: a pipelined ledger batch, its transfers and its callers' statements written, waits for the batch
 * ahead of it to take the clock, at most claimWaitMaxMs (2 s by default; store-batch.ts awaitTurn). The floor clears
 * that with room for lag on a loaded machine even under a small statement timeout (tests use 200 ms); twice the
 * statement timeout keeps it clear of what a server slow enough to need a long statement timeout does to the
 * client's own pace. A ledger given a claimWaitMaxMs at or above this value would have the server end the sessions
 * of its batches that wait that long (their connection lost: the batch fails). A statement still running is not
 * idle: one cut off by a partition holds its locks until the statement timeout cancels it, then this long more.
 */
export function idleInTransactionTimeoutMsOf(statementTimeoutMs: number): number {
  return Math.max(2 * statementTimeoutMs, idleInTransactionTimeoutMinMs);
}

/** The message node-postgres rejects with when `query_timeout` passes (pg 8: "Query read timeout"). */
const pgQueryTimeoutMessage = "Query read timeout";

/** transaction()'s COMMIT: one that gets no answer leaves the transaction's outcome unknown. */
const commit = "COMMIT";
const begin = "BEGIN";

/** How many times its bound a pipelined statement's client-side timeout counts at most (boundOf). */
const queuedBoundsMax = 4;
/** The longest delay setTimeout takes (2^31 − 1 ms); beyond it Node fires at once. */
const timerMsMax = 2 ** 31 - 1;

/**
 * A statement got no answer within the client-side bound: the connection went silent (or the server froze).
 * `duringCommit`: it was a transaction's COMMIT, which the server may have received and applied: the transaction's
 * outcome is unknown — as it is for a statement sent before a COMMIT that was sent behind it (pipeline mode), whose
 * answer is lost with the COMMIT's. Any other statement of a transaction leaves it uncommitted (no COMMIT was sent);
 * a statement on its own (autocommit) may have run, as any whose answer was lost.
 */
export class DbQueryTimeoutError extends SwitchyardError {
  override readonly name = "DbQueryTimeoutError";
  readonly timeoutMs: number;
  readonly duringCommit: boolean;
  constructor(timeoutMs: number, cause: unknown, options: { duringCommit?: boolean } = {}) {
    const duringCommit = options.duringCommit ?? false;
    super(
      duringCommit
        ? "postgres: no answer to a COMMIT in time (it may have committed); its connection is closed"
        : "postgres: no answer to a statement in time; its connection is closed",
      {
        cause,
        details: `no answer within ${timeoutMs} ms (statement timeout + ${queryTimeoutMarginMs} ms, for it and each statement queued ahead of it)`,
      },
    );
    this.timeoutMs = timeoutMs;
    this.duringCommit = duringCommit;
  }
}

/**
 * A transaction's COMMIT failed without the server saying it rolled back (the connection was reset or closed under
 * it, or the server ended the session: a FATAL such as 57P01 at shutdown, which may come after the commit record was
 * flushed): the server may have applied it, so the transaction's outcome is unknown. A COMMIT that times out says so
 * with DbQueryTimeoutError's `duringCommit` instead. `cause` is the client's or the server's error.
 */
export class DbCommitOutcomeUnknownError extends SwitchyardError {
  override readonly name = "DbCommitOutcomeUnknownError";
  constructor(
    cause: unknown,
    message = "postgres: a COMMIT's connection failed before its answer (it may have committed)",
  ) {
    super(message, { cause });
  }
}

export function openPostgres(config: {
  url: string;
  poolSizeMax: number;
  statementTimeoutMs: number;
  /** Where the pool reports a lost idle connection; silent unless given. */
  logger?: Logger;
}): Db {
  const logger = config.logger ?? silentLogger;
  if (!(Number.isInteger(config.statementTimeoutMs) && config.statementTimeoutMs > 0))
    throw new RangeError(`statementTimeoutMs must be a positive integer, not ${config.statementTimeoutMs}`);
  const queryTimeoutMs = config.statementTimeoutMs + queryTimeoutMarginMs;
  const typeParsers = {
    getTypeParser: ((oid: number, format?: "text" | "binary") =>
      oid === int8Oid
        ? (value: string) => BigInt(value)
        : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
  };
  const pool = new pg.Pool({
    connectionString: config.url,
    // Each statement goes as soon as it is asked for, without waiting for the answer of the one before it on the
    // connection (node-postgres's pipeline mode): a transaction's statements travel together (transaction()).
    pipeline: true,
    max: config.poolSizeMax,
    types: typeParsers,
    statement_timeout: config.statementTimeoutMs,
    idle_in_transaction_session_timeout: idleInTransactionTimeoutMsOf(config.statementTimeoutMs),
    query_timeout: queryTimeoutMs,
    keepAlive: true,
    keepAliveInitialDelayMillis: keepAliveInitialDelayMs,
    connectionTimeoutMillis: 10_000,
  });
  pool.on("error", (error) => {
    // An idle client lost its connection; the pool replaces it. Nothing is in flight on it.
    logger.warn({ err: error }, "postgres: an idle connection was lost; the pool replaces it");
  });
  /**
   * An answer, or the error; node-postgres's query timeout as a DbQueryTimeoutError, and a COMMIT's error that does
   * not say it rolled back (commitOutcomeKnown) as a DbCommitOutcomeUnknownError.
   */
  const answer = async <T>(
    pending: Promise<T>,
    duringCommit = false,
    timeoutMs = queryTimeoutMs,
  ): Promise<T> => {
    try {
      return await pending;
    } catch (error) {
      if (timedOut(error)) throw new DbQueryTimeoutError(timeoutMs, error, { duringCommit });
      throw duringCommit && !commitOutcomeKnown(error) ? new DbCommitOutcomeUnknownError(error) : error;
    }
  };
  /**
   * The client-side bound of a statement with `queuedAhead` statements unanswered before it on its connection: once
   * for itself and once for each of those, up to queuedBoundsMax times (a long queue of slow statements is then
   * taken for a silent connection: the safe side, its transaction failing or in doubt), and below what setTimeout
   * takes.
   */
  const boundOf = (queuedAhead: number) =>
    Math.min(queryTimeoutMs * (Math.min(queuedAhead, queuedBoundsMax - 1) + 1), timerMsMax);
  const names = preparedNames(preparedStatementsMax);
  /**
   * A statement's rows. Through the pool (pool.query), the pool itself closes a connection whose statement failed.
   * `queuedAhead`: statements sent before it on the connection and not answered yet. node-postgres times a statement
   * from when it is sent, and a pipelined one's answer comes only after theirs: its bound covers them too.
   * `timeoutMs` overrides that bound (a session's statement: as long as setTimeout allows).
   */
  const query = async <R extends Row>(
    client: pg.Pool | pg.PoolClient,
    text: string,
    params?: readonly unknown[],
    queuedAhead = 0,
    timeoutMs = boundOf(queuedAhead),
  ) => {
    const name = names(text);
    let pending: Promise<pg.QueryResult>;
    if (client === pool) {
      const config = { text, values: params as unknown[] | undefined, query_timeout: timeoutMs };
      pending = pool.query(name === undefined ? config : { ...config, name });
    } else {
      // On a connection of its own (a transaction's): the statement made as node-postgres's Query from its text, and
      // handed over as made. A config object is copied property by property first (cloneQueryConfig, through
      // property descriptors): ~3.5 µs a statement once the process idled a moment, five statements a lone payment.
      // (Not through the pool, whose query() would give the statement a callback of its own and lose it.)
      pending = new Promise((resolve, reject) => {
        const statement = new pg.Query(text, params as unknown[] | undefined, (error, result) =>
          error === undefined || error === null
            ? resolve(result as unknown as pg.QueryResult)
            : reject(error),
        );
        // What node-postgres reads off the query it is handed: the prepared statement's name, the read timeout.
        Object.assign(statement, { name, query_timeout: timeoutMs });
        client.query(statement);
      });
    }
    return (await answer(pending, text === commit, timeoutMs)).rows as R[];
  };
  const transaction = async <T>(fn: (tx: Sql) => Promise<T>): Promise<T> => {
    const client = await pool.connect();
    /**
     * Why the connection cannot be trusted any more (a statement timed out, a COMMIT lost its answer, the connection
     * was lost, ROLLBACK failed): then it is closed.
     */
    let broken: unknown;
    // The pool listens for a client's 'error' only while it is idle; checked out here, an 'error' without a
    // listener (the connection lost mid-transaction) would be thrown uncaught. Its statement rejects on its own.
    const lost = (error: Error) => {
      broken ??= error;
      logger.warn({ err: error }, "postgres: a connection in use was lost; its transaction fails");
    };
    client.on("error", lost);
    /** Every statement of the transaction (pipeline mode: `fn` may return before their answers). */
    const sent = sentInOrder();
    let unanswered = 0;
    /** COMMIT or ROLLBACK has been sent: a statement asked for now would run outside the transaction. */
    let ended = false;
    let commitSent = false;
    /**
     * A statement that failed in this process, before reaching the server (a parameter that cannot be serialized):
     * the transaction is not aborted on the server, so it must not be committed without that statement.
     */
    let unsent: unknown;
    const run = <R extends Row>(text: string, params?: readonly unknown[]): Promise<R[]> => {
      // A misuse, not a failure of the transaction (which may have committed): this statement alone is refused.
      if (ended) {
        logger.error(
          { statement: text.slice(0, 200) },
          "postgres: a statement asked for after its transaction ended",
        );
        const refused = Promise.reject(
          new Error("postgres: a statement asked for after its transaction's COMMIT or ROLLBACK was sent"),
        );
        refused.catch(() => undefined); // its caller hears it if it listens; a body that does not must not crash us
        return refused;
      }
      const answered = (async () => {
        // Behind a statement still unanswered, another would only wait out its own timeout.
        if (broken !== undefined) throw broken;
        if (text === commit) {
          if (unsent !== undefined) throw unsent;
          commitSent = true;
          ended = true;
        }
        // Serialized here, at once: a value node-postgres could not serialize would otherwise fail only this
        // statement, in the client, with the COMMIT already sent behind it.
        let values: unknown[] | undefined;
        try {
          values = params?.map(prepareValue);
        } catch (error) {
          unsent ??= error;
          throw error;
        }
        unanswered += 1;
        corkForTurn(client);
        try {
          return await query<R>(client, text, values, unanswered - 1);
        } catch (failure) {
          // Behind a statement that got no answer in time (or whose connection was lost), the others fail because
          // the connection was closed: that is why, whichever of them its caller looks at first.
          const brokenNow = broken as unknown; // set meanwhile, by another statement's failure or 'error'
          const silent =
            brokenNow instanceof DbQueryTimeoutError && failure !== brokenNow && !isServerError(failure);
          const caught = silent ? brokenNow : failure;
          // A statement sent before the COMMIT whose answer is lost once the COMMIT has gone too (pipeline mode)
          // leaves the transaction's outcome as unknown as the COMMIT's own answer would. A BEGIN the server refused
          // leaves the statements behind it to run on their own, each committed if it succeeded.
          const error =
            text === begin && commitOutcomeKnown(caught) // an ERROR, the session going on without a transaction
              ? new DbCommitOutcomeUnknownError(
                  caught,
                  "postgres: BEGIN refused; the statements behind it ran each on its own",
                )
              : commitSent && (text !== commit || silent)
                ? inDoubt(caught)
                : caught;
          if (error instanceof DbQueryTimeoutError || error instanceof DbCommitOutcomeUnknownError)
            broken = error;
          throw error;
        } finally {
          unanswered -= 1;
        }
      })();
      return sent.add(answered); // heard by its caller, or by the transaction's end
    };
    try {
      // BEGIN goes with the statements behind it (pipeline mode). A session the server would refuse it on (one
      // already in a failed transaction) is never checked out here: a connection whose transaction ended in doubt is
      // closed, not given back to the pool.
      void run(begin);
      const result = await fn({ query: run });
      void run(commit);
      await sent.all();
      return result;
    } catch (error) {
      ended = true;
      if (broken === undefined) {
        // Behind the statements still unanswered, as any statement of the transaction (boundOf).
        const rollback = { text: "ROLLBACK", query_timeout: boundOf(unanswered) };
        await client.query(rollback).catch((rollbackError: unknown) => {
          broken = rollbackError; // the error below is the one that matters; this one closes the connection
        });
      }
      throw error;
    } finally {
      client.off("error", lost);
      client.release(broken === undefined ? undefined : (broken as Error));
    }
  };
  return {
    kind: "postgres",
    connectionsMax: config.poolSizeMax,
    query: (text, params) => query(pool, text, params),
    transaction,
    async queryAll(statements) {
      if (statements.length === 1) return [await query(pool, statements[0]!.text, statements[0]!.params)];
      return await transaction((tx) => queryEach(tx, statements));
    },
    async exec(script) {
      await answer(pool.query(script));
    },
    async session(fn) {
      const client = await pool.connect();
      let broken: unknown;
      const lost = (error: Error) => {
        broken ??= error;
        logger.warn({ err: error }, "postgres: a session's connection was lost");
      };
      client.on("error", lost);
      try {
        // The pool's bounds are a payment's; a session's statement (an index built over a whole table) may take
        // minutes. The connection goes back to the pool with them restored (RESET ALL: to the connection's start-up
        // settings, the pool's statement timeout among them).
        await client.query("SET statement_timeout = 0");
        return await fn({ query: (text, params) => query(client, text, params, 0, timerMsMax) });
      } catch (error) {
        broken ??= error;
        throw error;
      } finally {
        // The settings `fn` made (a lock_timeout) and the statement timeout back to the pool's, while the connection
        // is still listened to: an 'error' on it now, unheard, would be thrown uncaught.
        if (broken === undefined)
          await client.query("RESET ALL").catch((error: unknown) => {
            broken = error;
          });
        client.off("error", lost);
        // A session that failed may hold what it took (an advisory lock): closed, not given back to the pool.
        client.release(broken === undefined ? undefined : (broken as Error));
      }
    },
    async close() {
      await pool.end();
    },
  };
}

/**
 * Holds a transaction's outgoing messages until the current turn of the event loop ends (the socket corked, uncorked
 * on process.nextTick, which runs once the turn's promise callbacks are done): the statements asked for in one turn
 * leave in one write. node-postgres writes each statement on its own (a write per statement, a simple one's BEGIN or
 * COMMIT too), and each write is a system call that may wake the server's backend: a ledger batch's BEGIN, transfer
 * insert and callers' statements, then its clock, apply and COMMIT, were six writes; now two.
 */
function corkForTurn(client: pg.PoolClient): void {
  const stream = (client as unknown as { connection?: { stream?: Writable } }).connection?.stream;
  if (stream === undefined || typeof stream.cork !== "function" || stream.writableCorked > 0) return;
  stream.cork();
  process.nextTick(() => stream.uncork());
}

const timedOut = (error: unknown) => error instanceof Error && error.message === pgQueryTimeoutMessage;

/**
 * The failure of a statement of a transaction whose COMMIT was sent behind it: without the server's ERROR answering
 * it (no answer in time, the connection lost), the COMMIT may have reached the server and committed.
 */
function inDoubt(error: unknown): unknown {
  if (error instanceof DbQueryTimeoutError)
    return error.duringCommit
      ? error
      : new DbQueryTimeoutError(error.timeoutMs, error.cause, { duringCommit: true });
  if (error instanceof DbCommitOutcomeUnknownError || commitOutcomeKnown(error)) return error;
  return new DbCommitOutcomeUnknownError(error);
}

/**
 * Whether `error` is a database server's own error (its ErrorResponse: PostgreSQL's through node-postgres, or
 * PGlite's backend's), not the client's, a socket's or another layer's: then its `code` is a SQLSTATE.
 */
export function isServerError(error: unknown): error is Error & { code?: string; severity?: string } {
  return error instanceof pg.DatabaseError || error instanceof protocol.messages.DatabaseError;
}

/** The SQLSTATE of a server's error (isServerError); undefined for any other error, whatever its `code`. */
export function serverSqlState(error: unknown): string | undefined {
  if (!isServerError(error)) return undefined;
  return typeof error.code === "string" && /^[0-9A-Z]{5}$/.test(error.code) ? error.code : undefined;
}

/** Whether the server raised SQLSTATE `code` (serverSqlState: a server's error, not any `code`), along the causes. */
export function serverRaised(error: unknown, code: string): boolean {
  return causeWhere(error, (cause) => serverSqlState(cause) === code) !== undefined;
}

/**
 * Whether a COMMIT that failed with `error` is known not to have committed: only when the server refused it with an
 * ERROR (a deferred constraint, a serialization failure), after which the session goes on, rolled back. Anything else
 * leaves the outcome unknown: a FATAL or PANIC (57P01/57P02 as the server shuts down or restarts, which may come after
 * the commit record was flushed; a pooler's 08P01 when its server connection dropped), or no answer from the server
 * at all (the connection reset or closed: a Node error, EPIPE or ECONNRESET, or pg's "Connection terminated"). The
 * severity is the server's localized one: a server whose lc_messages is not English makes every COMMIT error an
 * unknown outcome, the safe side (callers retry with the same ids).
 */
export function commitOutcomeKnown(error: unknown): boolean {
  // A connection exception (class 08) or an operator intervention (57P0x) says the session is going, whatever
  // severity a pooler or proxy in between gave it.
  const sessionGoing = (code: string | undefined) =>
    code?.startsWith("08") === true || code?.startsWith("57P") === true;
  return error instanceof pg.DatabaseError && error.severity === "ERROR" && !sessionGoing(error.code);
}

/**
 * PGlite in `dataDir` (undefined: in memory), on this thread or, with `thread`, on a worker thread of its own: then
 * its backend and its file system run beside this thread's work (gateway/db/pglite-thread.ts), for about a tenth of a
 * millisecond more a statement.
 */
export async function openPglite(
  dataDir: string | undefined,
  options: { thread?: boolean; freshClusters?: FreshClusters } = {},
): Promise<Db> {
  // PGlite makes its directory but not the parents (PGLITE_DIR=.switchyard/a on a fresh clone).
  if (dataDir !== undefined) await mkdir(dataDir, { recursive: true });
  // In memory, from the kept copy of a fresh cluster when there is one (fresh-cluster.ts).
  const start: FreshStart =
    dataDir === undefined ? await (options.freshClusters ?? freshClusters).start() : {};
  let files: Blob | undefined;
  try {
    const opened = await openPgliteOnce(dataDir, options.thread === true, start).catch(
      async (error: unknown) => {
        if (start.load === undefined) throw error;
        // Not from that copy, then: by initdb, as without one.
        start.spoiled?.();
        return await openPgliteOnce(dataDir, options.thread === true, {});
      },
    );
    files = opened.files;
    return opened.db;
  } finally {
    start.keep?.(files);
  }
}

async function openPgliteOnce(
  dataDir: string | undefined,
  thread: boolean,
  start: FreshStart,
): Promise<{ db: Db; files: Blob | undefined }> {
  if (thread) {
    const threaded = await openPgliteThread(dataDir, { load: start.load, dump: start.keep !== undefined });
    threaded.parsers[pgliteTypes.INT8] = (value: string) => BigInt(value);
    // What openPglite uses of PGlite, PgliteThread has: query, exec, transaction, close, and preparedStatements' part.
    return { db: pgliteDb(threaded as unknown as PGlite, dataDir), files: threaded.freshFiles };
  }
  const db = await PGlite.create({
    ...(dataDir === undefined ? {} : { dataDir }),
    ...(start.load === undefined ? {} : { loadDataDir: start.load }),
    parsers: { [pgliteTypes.INT8]: (value: string) => BigInt(value) },
  });
  // A copy that could not be made leaves the later opens to initdb; this one goes on.
  const files = start.keep === undefined ? undefined : await db.dumpDataDir("none").catch(() => undefined);
  // In memory, a file lives in a typed array that grows by copying it whole (Emscripten's MEMFS, an eighth more at a
  // time past 1 MB): a new 16 MB WAL segment, zero-filled 8 KB at a time, was copied over and over while it grew — a
  // sixth of the gateway's profile under load on PGlite, and stalls of up to 200 ms. Zero-filling protects nothing in
  // memory; without it the segment is made its whole size at once (issue #19: internal-pglite at 64 clients
  // 5,002/s, p99 56 ms → 5,237–5,303/s, p99 43–46 ms). A directory keeps PostgreSQL's default.
  if (dataDir === undefined) {
    await db.exec("SET wal_init_zero = off");
    await doubleMemfsGrowth(db);
  }
  return { db: pgliteDb(db, dataDir), files };
}

function pgliteDb(db: PGlite, dataDir: string | undefined): Db {
  // In memory there is no file to sync: PGlite's sync after each statement is a locked no-op there.
  const prepared = preparedStatements(db, preparedStatementsMax, dataDir !== undefined);
  const transaction = <T>(fn: (tx: Sql) => Promise<T>) =>
    db.transaction(async (tx) => {
      // As on PostgreSQL, `fn` may return before the answers of the statements it sent: they end before COMMIT.
      const sent = sentInOrder();
      const result = await fn({
        query: (text, params) =>
          sent.add(tx.query(text, params as unknown[] | undefined).then((r) => r.rows as never)),
      });
      await sent.all();
      return result;
    });
  return {
    kind: "pglite",
    connectionsMax: 1,
    query: async (text, params) =>
      prepared === null
        ? ((await db.query(text, params as unknown[] | undefined)).rows as never)
        : ((await prepared.query(text, params ?? [])) as never),
    transaction,
    async queryAll(statements) {
      const rows = prepared === null ? null : await prepared.queryAll(statements);
      return rows ?? (await transaction((tx) => queryEach(tx, statements)));
    },
    async exec(script) {
      await db.exec(script);
    },
    // Its one connection: nothing else runs while a statement does, and each commits on its own. A statement without
    // parameters (most of a migration's) goes as one simple query: one exchange with the backend, where `query`'s
    // extended protocol takes three (pglite-thread.ts) to six. Its rows are parsed by the same parsers.
    session: (fn) =>
      fn({
        query: async (text, params) => {
          if (params !== undefined && params.length > 0)
            return (await db.query(text, params as unknown[])).rows as never;
          const results = await db.exec(text);
          return (results.at(-1)?.rows ?? []) as never;
        },
      }),
    async close() {
      await db.close();
    },
  };
}

/**
 * The start of a statement text that is planned each time it runs, for its parameters and its tables as they are
 * then: never kept prepared (preparedNames, and PGlite's preparedStatements). A prepared statement's plan may be one
 * generic plan, made once for any parameters and kept on the connection: made while a table was nearly empty, a
 * lookup of ids (`id = ANY($1)`) read the whole table from then on, however it grew — until an ANALYZE of it came,
 * a minute or more later. Two gateway processes on one young database ran each ledger batch's read of its transfers
 * (locked, the clock held) as a sequential scan of ledger_transfers, 2 to 6 ms (issue #19). For lookups on a path
 * that is not the hot one, where planning (a fraction of a millisecond) is cheap beside that risk.
 */
export const plannedEachTime = "/* planned each time */ ";

/**
 * Names for the statements PostgreSQL keeps parsed and planned on each connection (node-postgres parses a named
 * statement once per connection, then only binds and executes it): the same name for the same text, for the first
 * `entriesMax` texts of reads and writes seen (the ones that run often are seen first, at start). Other texts —
 * migrations, those planned each time (plannedEachTime), and any beyond the bound — stay unnamed and are parsed each
 * time, as before.
 */
function preparedNames(entriesMax: number): (text: string) => string | undefined {
  const names = new Map<string, string>();
  return (text) => {
    const known = names.get(text);
    if (known !== undefined) return known;
    if (names.size >= entriesMax || !/^\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b/i.test(text)) return undefined;
    const name = `sy_${names.size + 1}`;
    names.set(text, name);
    return name;
  };
}

/**
 * A statement text made anew for each batch, as the first one of its shape made it: the same string sent again, whose
 * hash the prepared statements' map already knows (preparedNames), where a text made anew is a rope to flatten and
 * hash — ~11 µs for a 3 KB statement once the process idled a moment. `shape` names everything the text depends on;
 * a text of another length for a shape already seen is a bug, thrown.
 */
export function textOfShape(kept: Map<string, string>, shape: string, text: string): string {
  const known = kept.get(shape);
  if (known === undefined) {
    kept.set(shape, text);
    return text;
  }
  if (known.length !== text.length)
    throw new Error(`statement text of shape "${shape}" changed between batches`);
  return known;
}

/**
 * A text array parameter as an array literal, the same on PostgreSQL and PGlite (the statement casts it, `$1::text[]`,
 * and may cast its elements further): each element double-quoted with `"` and `\` escaped, null as NULL.
 */
export function textArrayLiteral(values: readonly (string | null)[]): string {
  // Most arrays (ids, codes, amounts) hold no null and nothing to escape: joined at once, one flat string, where
  // appending element by element leaves a rope of two pieces per element (and the garbage of each) for the driver
  // to flatten.
  if (values.length > 0 && values.every(plainInArray)) return `{"${values.join('","')}"}`;
  let literal = "{";
  // An element the same text as the one before (one JSON document on every row, say) is quoted once.
  let previous: string | null = null;
  let quoted = "";
  for (let i = 0; i < values.length; i++) {
    const value = values[i] as string | null;
    if (i > 0) literal += ",";
    if (value === null) {
      literal += "NULL";
      continue;
    }
    if (value !== previous) {
      previous = value;
      // Most elements (ids, codes, amounts) have nothing to escape: tested first, as a replace costs four times more.
      quoted = escapedInArray.test(value) ? `"${value.replace(/[\\"]/g, "\\$&")}"` : `"${value}"`;
    }
    literal += quoted;
  }
  return `${literal}}`;
}

const escapedInArray = /[\\"]/;

const plainInArray = (value: string | null): value is string => value !== null && !escapedInArray.test(value);

/**
 * Statements sent and their answers, in the order sent. A failure is heard through all() (or by whoever awaits the
 * statement), never left unhandled. all() waits for every one and rejects with the first failure: in a transaction,
 * the statements behind a failed one fail too (25P02, the transaction aborted), and only the first says why.
 */
export function sentInOrder() {
  const sent: Promise<unknown>[] = [];
  return {
    add<T>(answer: Promise<T>): Promise<T> {
      sent.push(answer);
      answer.catch(() => undefined);
      return answer;
    },
    async all(): Promise<void> {
      for (const answer of sent) await answer;
    },
  };
}

/**
 * Runs statements in order (in the caller's transaction, if any), all sent at once (pipeline mode on PostgreSQL), and
 * returns each one's rows, or the first failure.
 */
export async function queryEach(sql: Sql, statements: readonly Statement[]): Promise<Row[][]> {
  const sent = sentInOrder();
  const answers = statements.map((statement) => sent.add(sql.query(statement.text, statement.params)));
  await sent.all();
  return await Promise.all(answers);
}

/**
 * Statements kept parsed: per database on PGlite, per connection on PostgreSQL. Beyond this, statement texts not
 * seen before are parsed each time (nothing is evicted: the texts that run often are the ones seen first, at start).
 */
const preparedStatementsMax = 256;

/** The parts of PGlite's query machinery used below (present in 0.5; checked at start). */
type PgliteInternals = {
  _checkReady(): Promise<void>;
  _runExclusiveTransaction<T>(fn: () => Promise<T>): Promise<T>;
  _runExclusiveQuery<T>(fn: () => Promise<T>): Promise<T>;
  serializers: Record<number, (value: unknown) => string>;
  parsers: Record<number, (value: string, oid: number) => unknown>;
};

type PreparedStatement = { name: string; paramTypes: number[]; fields: { name: string; oid: number }[] };

/**
 * PGlite's `query` parses and plans its statement on every call, in six protocol exchanges with the WASM
 * backend (parse, describe, bind, describe, execute, sync). Here a statement text is parsed once under a name
 * (its parameter and column types described then), and each later call is bind, execute and sync in one
 * exchange: about half the cost of a small statement. Same locks as `query` (no statement runs inside someone
 * else's transaction), same parameter serializers and column parsers, same durability (a file-backed database
 * is synced after each statement when `syncAfterWrite`). null when this PGlite lacks the internals it relies on.
 */
function preparedStatements(db: PGlite, entriesMax: number, syncAfterWrite: boolean) {
  const internals = db as unknown as PgliteInternals;
  if (
    typeof internals._runExclusiveTransaction !== "function" ||
    typeof internals._runExclusiveQuery !== "function" ||
    typeof internals._checkReady !== "function"
  )
    return null;
  const { serialize } = protocol;
  const statements = new Map<string, PreparedStatement>();
  let named = 0;
  const exchange = (parts: readonly Uint8Array[], syncToFs: boolean) =>
    db.execProtocolStream(joinMessages(parts), { syncToFs });
  const prepare = async (text: string): Promise<PreparedStatement> => {
    const name = `sy_${++named}`;
    const messages = await exchange(
      [serialize.parse({ name, text }), serialize.describe({ type: "S", name }), serialize.sync()],
      false,
    );
    let paramTypes: number[] = [];
    let fields: PreparedStatement["fields"] = [];
    for (const message of messages) {
      if (message instanceof protocol.messages.ParameterDescriptionMessage) paramTypes = message.dataTypeIDs;
      if (message instanceof protocol.messages.RowDescriptionMessage)
        fields = message.fields.map((field) => ({ name: field.name, oid: field.dataTypeID }));
    }
    const statement = { name, paramTypes, fields };
    statements.set(text, statement);
    return statement;
  };
  const forget = async (text: string, statement: PreparedStatement) => {
    statements.delete(text);
    await exchange([serialize.close({ type: "S", name: statement.name }), serialize.sync()], false);
  };
  /**
   * Binds and executes each statement, then syncs, in one exchange. Before the sync they are one implicit
   * transaction: an error in any rolls back all, and the backend skips the rest.
   */
  const run = async (
    statements: readonly PreparedStatement[],
    params: readonly (readonly unknown[])[],
  ): Promise<Row[][]> => {
    const parts: Uint8Array[] = [];
    statements.forEach((statement, i) => {
      parts.push(bindMessage(internals, statement, params[i]!), serialize.execute({}));
    });
    parts.push(serialize.sync());
    return decodeRows(internals, statements, await exchange(parts, syncAfterWrite));
  };
  /** Run under PGlite's own locks, in its order: a statement waits for another caller's transaction. */
  const locked = async <T>(fn: () => Promise<T>): Promise<T> => {
    await internals._checkReady();
    return await internals._runExclusiveTransaction(() => internals._runExclusiveQuery(fn));
  };
  /** The statements of these texts, parsed now if new; null when one is new and the cache is full. */
  const parsed = async (texts: readonly string[]): Promise<PreparedStatement[] | null> => {
    const found: PreparedStatement[] = [];
    for (const text of texts) {
      let statement = statements.get(text);
      if (statement === undefined) {
        if (statements.size >= entriesMax || text.startsWith(plannedEachTime)) return null;
        statement = await prepare(text);
      }
      found.push(statement);
    }
    return found;
  };
  /** Runs statements in one exchange; null when they must take PGlite's plain path. */
  const runAll = (list: readonly Statement[]): Promise<Row[][] | null> =>
    locked(async () => {
      const texts = list.map((statement) => statement.text);
      const params = list.map((statement) => statement.params);
      const found = await parsed(texts);
      if (found === null) return null;
      try {
        return await run(found, params);
      } catch (error) {
        if (!parsedStale(error)) throw error;
        // The exchange failed as a whole (and changed nothing): parse its statements again against the
        // tables as they are.
        for (const [i, text] of texts.entries())
          if (statements.get(text) === found[i]) await forget(text, found[i]!);
        const again = await parsed(texts);
        return again === null ? null : await run(again, params);
      }
    });
  return {
    async query(text: string, params: readonly unknown[]): Promise<Row[]> {
      const rows = await runAll([{ text, params }]);
      return rows === null ? ((await db.query(text, params as unknown[])).rows as Row[]) : rows[0]!;
    },
    /** null when a statement is new and the cache full: the caller runs them in a transaction instead. */
    queryAll: (list: readonly Statement[]): Promise<Row[][] | null> => runAll(list),
  };
}

/** A Bind message for a parsed statement, its parameters as text through PGlite's own serializers. */
function bindMessage(internals: PgliteInternals, statement: PreparedStatement, params: readonly unknown[]) {
  return protocol.serialize.bind({
    statement: statement.name,
    values: params.map((value, i) => {
      if (value === null || value === undefined) return null;
      const toText = internals.serializers[statement.paramTypes[i]!];
      return toText === undefined ? String(value) : toText(value);
    }),
  });
}

/** The rows of each statement of one exchange, columns parsed by PGlite's own parsers. */
function decodeRows(
  internals: PgliteInternals,
  statements: readonly PreparedStatement[],
  messages: readonly unknown[],
): Row[][] {
  const all: Row[][] = [];
  let rows: Row[] = [];
  for (const message of messages) {
    if (message instanceof protocol.messages.CommandCompleteMessage) {
      all.push(rows);
      rows = [];
      continue;
    }
    if (!(message instanceof protocol.messages.DataRowMessage)) continue;
    const { fields } = statements[all.length]!;
    const row: Row = {};
    message.fields.forEach((value, i) => {
      const field = fields[i]!;
      const parse = internals.parsers[field.oid];
      row[field.name] = value === null ? null : parse === undefined ? value : parse(value, field.oid);
    });
    rows.push(row);
  }
  if (all.length !== statements.length)
    throw new SwitchyardError("pglite: an exchange completed fewer statements than it sent", {
      details: `${statements.length} sent, ${all.length} completed`,
    });
  return all;
}

/**
 * Errors of a statement parsed earlier that another parse may not raise: its result columns or parameter types no
 * longer match the tables (changed since), or the backend no longer has it.
 */
function parsedStale(error: unknown): boolean {
  const { code, message } = error as { code?: unknown; message?: unknown };
  if (code === "0A000") return typeof message === "string" && message.includes("cached plan must not change");
  return code === "26000" || code === "42883" || code === "42804";
}

/**
 * Applies every `*.sql` file of each source, in name order, once: each in its own transaction, or statement by
 * statement when it is marked outsideTransaction. Then, on a database whose default collation is not C, the sources'
 * tables' text columns are made COLLATE "C" (bytewise.ts). All of it on one session of its own (Db.session: no
 * statement timeout, for an index built over a whole table) holding the migrations' advisory lock, so that gateway
 * processes that start together on one database do not race.
 *
 * The lock is asked for with pg_try_advisory_lock every so often, never waited for in a statement: a statement
 * waiting holds a snapshot, and CREATE INDEX CONCURRENTLY in the holder's migration waits for every older snapshot to
 * end — PostgreSQL found that deadlock and failed one of the two (issue #19, migration 0051).
 */
export async function migrate(db: Db, sources: readonly MigrationSource[]): Promise<string[]> {
  return db.session(async (conn) => {
    await takeMigrationsLock(conn);
    let failed = false;
    try {
      // A statement waiting for a table's lock holds every later statement on that table behind it (the serving
      // version's payments): given up past this bound, as the pool's statement timeout gave it up before. (Not for a
      // migration outside a transaction: below.)
      await conn.query(`SET lock_timeout = ${migrationLockWaitMs}`);
      await conn.query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
      );
      const applied: string[] = [];
      for (const source of sources) {
        const files = (await readdir(source.directory)).filter((name) => name.endsWith(".sql")).sort();
        for (const file of files) {
          const name = `${source.namespace}/${file}`;
          const done = await conn.query("SELECT 1 FROM schema_migrations WHERE name = $1", [name]);
          if (done.length > 0) continue;
          const script = await readFile(path.join(source.directory, file), "utf8");
          const record = () => conn.query("INSERT INTO schema_migrations (name) VALUES ($1)", [name]);
          if (script.startsWith(outsideTransaction)) {
            // No bound on what these wait for: a concurrent build waits for every older transaction of the database
            // (a dump, a long report), which lock_timeout would count, and its waits hold up no one's writes.
            await conn.query("SET lock_timeout = 0");
            for (const statement of splitStatements(script)) await conn.query(statement);
            await conn.query(`SET lock_timeout = ${migrationLockWaitMs}`);
            await record();
          } else
            await inTransaction(conn, async () => {
              for (const statement of splitStatements(script)) await conn.query(statement);
              await record();
            });
          applied.push(name);
        }
      }
      if (!(await isBytewise(conn))) await inTransaction(conn, () => bytewiseTextIn(conn, sources));
      await conn.query("RESET lock_timeout"); // PGlite's one connection goes on serving with it
      return applied;
    } catch (error) {
      failed = true;
      throw error;
    } finally {
      // After a failure the session is closed (Db.session), which gives the lock back whether this succeeds or not.
      const unlocking = conn.query(`SELECT pg_advisory_unlock(${migrationsLock})`);
      if (failed) await unlocking.catch(() => undefined);
      else await unlocking;
    }
  });
}

/**
 * How long a statement of a migration in a transaction waits for a lock on a table before it fails (the migration
 * rolled back); a migration outside a transaction waits without a bound (migrate says why).
 */
const migrationLockWaitMs = 30_000;

/** How long a migrator waits between asks for the migrations' lock, at first and at most. */
const migrationsLockRetryMs = { first: 20, max: 500 };

/** The migrations' advisory lock, for the session: asked for until it is given (migrate says why not waited for). */
async function takeMigrationsLock(conn: Sql): Promise<void> {
  for (
    let pauseMs = migrationsLockRetryMs.first;
    ;
    pauseMs = Math.min(pauseMs * 2, migrationsLockRetryMs.max)
  ) {
    const [row] = await conn.query<{ taken: boolean }>(
      `SELECT pg_try_advisory_lock(${migrationsLock}) AS taken`,
    );
    if (row?.taken === true) return;
    await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }
}

/** `fn`'s statements on session `conn` in one transaction: committed when it resolves, rolled back when it throws. */
async function inTransaction<T>(conn: Sql, fn: () => Promise<T>): Promise<T> {
  await conn.query("BEGIN");
  try {
    const result = await fn();
    await conn.query("COMMIT");
    return result;
  } catch (error) {
    await conn.query("ROLLBACK").catch(() => undefined);
    throw error;
  }
}

/**
 * The first line of a migration whose statements run each on its own, outside a transaction: an index built with
 * CREATE INDEX CONCURRENTLY, which PostgreSQL refuses in a transaction, and which does not stop the writes of the
 * version still serving while `npm run migrate` runs ahead of the next (a plain CREATE INDEX holds every insert into
 * its table until it is built: on webhook_deliveries, every payment's outbox write). Such a script must be safe to run
 * again from its start, as a failure part-way leaves what it did so far (DROP INDEX CONCURRENTLY IF EXISTS first: a
 * concurrent build that failed leaves its index behind, invalid).
 */
export const outsideTransaction = "-- migrate: outside a transaction";

/**
 * Splits a migration script into statements at semicolons that end a line, outside dollar quotes.
 * Migrations keep to that form so that each statement can run inside the migration's transaction.
 */
export function splitStatements(script: string): string[] {
  const statements: string[] = [];
  let current = "";
  let inDollarQuote = false;
  for (const line of script.split("\n")) {
    const trimmed = line.replace(/--.*$/, "").trimEnd();
    if ((trimmed.match(/\$\$/g) ?? []).length % 2 === 1) inDollarQuote = !inDollarQuote;
    current += `${line}\n`;
    if (!inDollarQuote && trimmed.endsWith(";")) {
      if (current.trim().length > 0) statements.push(current.trim());
      current = "";
    }
  }
  if (current.replace(/--.*$/gm, "").trim().length > 0) statements.push(current.trim());
  return statements;
}
