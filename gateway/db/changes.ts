// A cross-process change bus: how a gateway process tells every other one (and itself) that something their
// in-memory caches hold has changed — an API key revoked, an account changed.
//
// On PostgreSQL a writer announces with pg_notify inside the transaction that makes the change, so the
// announcement is delivered if, and only once, that transaction commits. Every process LISTENs on one channel
// through a dedicated connection of its own (not one of the pool's), checks it with a ping, and opens it again
// when it drops. A notification sent while a process was not listening is lost to it, so whenever its listening
// connection is lost or opened its subscribers hear `resync`: forget everything. While it is not listening,
// `listening()` is false and caches remember nothing new.
//
// PGlite lives in one process: nothing to listen to. The bus delivers locally, synchronously, once the caller
// says its transaction committed (transactionAnnouncing does). On PostgreSQL the announcing process also
// delivers locally at that point, so it never waits for its own notification to come back (which it does, and
// is delivered again: every change is an idempotent "forget this").
//
// Payloads are tiny and never secret: a key travels as the SHA-256 digest it is stored under, an account as its id.
import pg from "pg";
import { type Db, type Logger, type Sql, SwitchyardError, silentLogger } from "../../core/index.ts";
import type { DbConfig } from "./index.ts";

/** The one channel every gateway process listens on. */
export const changeChannel = "switchyard_changes";

/** What changed: a closed set. Each tells a cache what to forget; none carries the new state or a secret. */
export type Change =
  /** An API key no longer authenticates. `digest`: the key's SHA-256 in base64 (44 characters), never the key. */
  | { kind: "api_key_revoked"; digest: string }
  /** An account's row changed. */
  | { kind: "account_changed"; id: string };

/** What a subscriber hears: a change, or `resync` — forget everything, a change may have been missed. */
export type ChangeEvent = Change | { kind: "resync" };

export type ChangeSubscriber = (event: ChangeEvent) => void;

/** What a cache needs of the bus. */
export type ChangeFeed = {
  /** Calls `subscriber` with every change announced by any process, from now on; returns how to stop. */
  subscribe(subscriber: ChangeSubscriber): () => void;
  /** Whether a change announced now would be heard. While false, a cache must not remember anything new. */
  listening(): boolean;
};

export type ChangeBus = ChangeFeed & {
  readonly kind: "postgres" | "local";
  /**
   * Announces `change` inside the caller's transaction `tx` (PostgreSQL: pg_notify; every listening process
   * hears it when `tx` commits, none if it rolls back). After the commit, pass the same changes to `committed`.
   */
  announce(tx: Sql, change: Change): Promise<void>;
  /** Tells this process's subscribers, at once, the changes of a transaction that has just committed. */
  committed(changes: readonly Change[]): void;
  /** Stops listening; subscribers hear nothing more. */
  close(): Promise<void>;
};

export class ChangeBusError extends SwitchyardError {
  override name = "ChangeBusError";
}

/**
 * Runs `fn` in one transaction of `db`; what it announces reaches the subscribers of every process if the
 * transaction commits (this process's before this returns), and nobody if it rolls back.
 */
export async function transactionAnnouncing<T>(
  deps: { db: Db; changes: ChangeBus },
  fn: (tx: Sql, announce: (change: Change) => Promise<void>) => Promise<T>,
): Promise<T> {
  const announced: Change[] = [];
  const result = await deps.db.transaction((tx) =>
    fn(tx, async (change) => {
      await deps.changes.announce(tx, change);
      announced.push(change);
    }),
  );
  deps.changes.committed(announced);
  return result;
}

/** The bus for a database: PostgreSQL's listens on `changeChannel`; PGlite's is local to this process. */
export async function openChangeBus(
  config: DbConfig,
  logger: Logger = silentLogger,
  limits: ChangeListenerLimits = changeListenerLimitsDefaults,
): Promise<ChangeBus> {
  return config.kind === "postgres"
    ? await openPostgresChangeBus({ logger }, { url: config.url, limits })
    : createLocalChangeBus({ logger });
}

// ---- payloads

const digestPattern = /^[A-Za-z0-9+/]{43}=$/;
const idPattern = /^[A-Za-z0-9_-]{1,200}$/;

function isChange(value: unknown): value is Change {
  if (typeof value !== "object" || value === null) return false;
  const { kind, digest, id } = value as Record<string, unknown>;
  if (kind === "api_key_revoked")
    return typeof digest === "string" && digestPattern.test(digest) && Object.keys(value).length === 2;
  if (kind === "account_changed")
    return typeof id === "string" && idPattern.test(id) && Object.keys(value).length === 2;
  return false;
}

/** The payload of a change (JSON, well under PostgreSQL's 8,000-byte limit). Throws on a malformed change: a bug. */
export function payloadOf(change: Change): string {
  if (!isChange(change))
    throw new ChangeBusError("a malformed change cannot be announced", {
      details: `kind ${String((change as { kind?: unknown }).kind)}`,
    });
  return JSON.stringify(change);
}

/** The change a payload carries, or null when it is none of the known set (another version's, or garbage). */
export function changeOfPayload(payload: string): Change | null {
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch (error) {
    if (error instanceof SyntaxError) return null;
    throw error;
  }
  return isChange(value) ? value : null;
}

// ---- subscribers

type Subscribers = {
  add(subscriber: ChangeSubscriber): () => void;
  deliver(event: ChangeEvent): void;
  clear(): void;
};

function createSubscribers(logger: Logger): Subscribers {
  const subscribers = new Set<ChangeSubscriber>();
  return {
    add(subscriber) {
      const entry: ChangeSubscriber = (event) => subscriber(event); // its own identity: subscribing twice is two
      subscribers.add(entry);
      return () => {
        subscribers.delete(entry);
      };
    },
    deliver(event) {
      for (const subscriber of [...subscribers]) {
        try {
          subscriber(event);
        } catch (error) {
          // One broken subscriber must not keep the others from hearing: it is a bug, logged as one.
          logger.error({ err: error, kind: event.kind }, "changes: a subscriber threw");
        }
      }
    },
    clear: () => subscribers.clear(),
  };
}

// ---- local: one process (PGlite)

/** A bus for one process: announcements reach this process's subscribers when the caller reports the commit. */
export function createLocalChangeBus(deps: { logger?: Logger } = {}): ChangeBus {
  const subscribers = createSubscribers(deps.logger ?? silentLogger);
  let closed = false;
  return {
    kind: "local",
    subscribe: (subscriber) => subscribers.add(subscriber),
    listening: () => !closed,
    async announce(_tx, change) {
      payloadOf(change); // checked now, as PostgreSQL's bus does, so that a malformed change fails on both
    },
    committed(changes) {
      if (closed) return;
      for (const change of changes) subscribers.deliver(change);
    },
    async close() {
      closed = true;
      subscribers.clear();
    },
  };
}

// ---- PostgreSQL: LISTEN on a dedicated connection

export type ChangeListenerLimits = {
  /** How long opening the listening connection may take. */
  connectTimeoutMs: number;
  /** How often the listening connection is checked (a dead peer may send nothing to say it is gone). */
  pingIntervalMs: number;
  /** How long a check may take before the connection counts as lost. */
  pingTimeoutMs: number;
  /** The first wait before opening a lost connection again; doubled after each failed attempt, up to the next. */
  reconnectDelayMsMin: number;
  reconnectDelayMsMax: number;
};

export const changeListenerLimitsDefaults: ChangeListenerLimits = {
  connectTimeoutMs: 5_000,
  pingIntervalMs: 5_000,
  pingTimeoutMs: 2_000,
  reconnectDelayMsMin: 20,
  reconnectDelayMsMax: 2_000,
};

/** How the listening connection names itself in pg_stat_activity. */
export const changeListenerApplicationName = "switchyard-changes";

type ListenerState = {
  readonly url: string;
  readonly limits: ChangeListenerLimits;
  readonly logger: Logger;
  readonly subscribers: Subscribers;
  /** The connection that is listening now; null while none is. */
  client: pg.Client | null;
  /** An attempt to open a connection and LISTEN, while one runs. */
  opening: Promise<void> | null;
  pingTimer: NodeJS.Timeout | null;
  reconnectTimer: NodeJS.Timeout | null;
  reconnectDelayMs: number;
  closed: boolean;
};

/** Opens the listening connection (failing if it cannot) and keeps it open until close(). */
export async function openPostgresChangeBus(
  deps: { logger: Logger },
  config: { url: string; limits: ChangeListenerLimits },
): Promise<ChangeBus> {
  const state: ListenerState = {
    url: config.url,
    limits: config.limits,
    logger: deps.logger,
    subscribers: createSubscribers(deps.logger),
    client: null,
    opening: null,
    pingTimer: null,
    reconnectTimer: null,
    reconnectDelayMs: config.limits.reconnectDelayMsMin,
    closed: false,
  };
  await open(state);
  return {
    kind: "postgres",
    subscribe: (subscriber) => state.subscribers.add(subscriber),
    listening: () => state.client !== null,
    async announce(tx, change) {
      await tx.query("SELECT pg_notify($1, $2)", [changeChannel, payloadOf(change)]);
    },
    committed(changes) {
      if (state.closed) return;
      for (const change of changes) state.subscribers.deliver(change);
    },
    close: () => close(state),
  };
}

/** One attempt: connect, LISTEN, then tell the subscribers to forget what they hold. */
function open(state: ListenerState): Promise<void> {
  const attempt = listen(state).finally(() => {
    state.opening = null;
  });
  state.opening = attempt;
  return attempt;
}

async function listen(state: ListenerState): Promise<void> {
  const client = new pg.Client({
    connectionString: state.url,
    connectionTimeoutMillis: state.limits.connectTimeoutMs,
    query_timeout: state.limits.pingTimeoutMs,
    keepAlive: true,
    application_name: changeListenerApplicationName,
  });
  client.on("error", (error) => lost(state, client, error));
  client.on("end", () => lost(state, client, undefined));
  client.on("notification", (message) => received(state, message));
  try {
    await client.connect();
    await client.query(`LISTEN ${changeChannel}`);
  } catch (error) {
    await endQuietly(state, client);
    throw new ChangeBusError("changes: could not listen on PostgreSQL", { cause: error });
  }
  if (state.closed) {
    await endQuietly(state, client);
    return;
  }
  state.client = client;
  state.reconnectDelayMs = state.limits.reconnectDelayMsMin;
  schedulePing(state, client);
  // Listening from here on; whatever was announced before may have been missed.
  state.subscribers.deliver({ kind: "resync" });
}

function received(state: ListenerState, message: pg.Notification): void {
  if (message.channel !== changeChannel) return;
  const change = changeOfPayload(message.payload ?? "");
  if (change === null) {
    // Not one of ours as this version knows them: forgetting everything is always safe.
    state.logger.warn({ payloadLength: message.payload?.length ?? 0 }, "changes: unknown payload; resync");
    state.subscribers.deliver({ kind: "resync" });
    return;
  }
  state.subscribers.deliver(change);
}

/** The listening connection is gone (error, end, failed ping): forget everything, then open another. */
function lost(state: ListenerState, client: pg.Client, cause: unknown): void {
  if (state.client !== client) return; // not (or no longer) the listening one
  state.client = null;
  if (state.pingTimer !== null) clearTimeout(state.pingTimer);
  state.pingTimer = null;
  state.subscribers.deliver({ kind: "resync" });
  void endQuietly(state, client);
  if (state.closed) return;
  state.logger.warn({ err: cause }, "changes: the listening connection was lost; opening another");
  scheduleReconnect(state);
}

function scheduleReconnect(state: ListenerState): void {
  if (state.closed || state.reconnectTimer !== null) return;
  const delayMs = state.reconnectDelayMs;
  state.reconnectTimer = setTimeout(() => {
    state.reconnectTimer = null;
    open(state).then(
      () => state.logger.info("changes: listening again"),
      (error: unknown) => {
        state.reconnectDelayMs = Math.min(state.reconnectDelayMs * 2, state.limits.reconnectDelayMsMax);
        state.logger.warn({ err: error, retryInMs: state.reconnectDelayMs }, "changes: could not listen");
        scheduleReconnect(state);
      },
    );
  }, delayMs);
  state.reconnectTimer.unref();
}

function schedulePing(state: ListenerState, client: pg.Client): void {
  state.pingTimer = setTimeout(() => {
    state.pingTimer = null;
    client.query("SELECT 1").then(
      () => {
        if (state.client === client) schedulePing(state, client);
      },
      (error: unknown) => lost(state, client, error),
    );
  }, state.limits.pingIntervalMs);
  state.pingTimer.unref();
}

async function endQuietly(state: ListenerState, client: pg.Client): Promise<void> {
  await client.end().catch((error: unknown) => {
    // The connection is being dropped anyway; nothing depends on a clean goodbye.
    state.logger.debug({ err: error }, "changes: closing a listening connection failed");
  });
}

async function close(state: ListenerState): Promise<void> {
  state.closed = true;
  state.subscribers.clear();
  if (state.reconnectTimer !== null) clearTimeout(state.reconnectTimer);
  state.reconnectTimer = null;
  if (state.pingTimer !== null) clearTimeout(state.pingTimer);
  state.pingTimer = null;
  // An attempt under way sees `closed` and ends its own connection; its failure is no news now.
  await state.opening?.catch((error: unknown) => {
    state.logger.debug({ err: error }, "changes: an attempt to listen failed while closing");
  });
  const client = state.client;
  state.client = null;
  if (client !== null) await endQuietly(state, client);
}
