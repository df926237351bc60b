// What the Lightning rail must remember across restarts: which attempt paid which payment hash (written
// before the payment is sent), each attempt's final outcome, which invoice belongs to which reference,
// and the last settle index whose invoice was delivered. LND keeps the payments themselves; this keeps
// only the mapping back to the gateway's ids. Stored as an append-only JSON-lines journal, compacted on
// open.
import { randomUUID } from "node:crypto";
import { closeSync, fdatasync, openSync, readFileSync, writeSync } from "node:fs";
import { mkdir, open, readFile, rename, unlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { type RailFailureCode, SwitchyardError } from "../../core/index.ts";

export type PaymentKind = "bolt11" | "keysend";

export type StoredOutcome =
  | { status: "succeeded"; preimage: string; feeMsat: bigint }
  | { status: "failed"; code: RailFailureCode; message: string; retryElsewhere: boolean };

export type StoredAttempt = {
  readonly attemptId: string;
  readonly paymentId: string;
  /** The tenant it pays for; null in a line written before the journal kept it. */
  readonly tenantId: string | null;
  readonly paymentHash: string;
  readonly kind: PaymentKind;
  readonly amountMsat: bigint;
  readonly createdAtMs: number;
  readonly feeMaxMsat: bigint;
  /** keysend: the node paid */
  readonly destination: string | null;
  /** bolt11: the invoice paid */
  readonly request: string | null;
  outcome: StoredOutcome | null;
  /** The caller has the outcome: returned by execute, or delivered as an event. */
  reported: boolean;
};

export type StoredInvoice = {
  readonly paymentHash: string;
  readonly reference: string;
  readonly expiresAtMs: number;
  /** Paid, and its event set aside (its handler kept failing): asked of LND again, and delivered once it succeeds. */
  setAside?: true;
};

export type RailStoreRecord =
  | {
      t: "attempt";
      attemptId: string;
      paymentId: string;
      /** Absent in lines written before the journal kept it. */
      tenantId?: string;
      paymentHash: string;
      kind: PaymentKind;
      amountMsat: string;
      createdAtMs: number;
      feeMaxMsat: string;
      destination: string | null;
      request: string | null;
    }
  | {
      t: "outcome";
      attemptId: string;
      status: "succeeded" | "failed";
      preimage?: string;
      feeMsat?: string;
      code?: RailFailureCode;
      message?: string;
      retryElsewhere?: boolean;
    }
  | { t: "reported"; attemptId: string }
  /** An attempt written ahead and never sent (its reservation was not made): forgotten. */
  | { t: "withdrawn"; attemptId: string }
  | { t: "invoice"; paymentHash: string; reference: string; expiresAtMs: number; setAside?: true }
  /** Its event was set aside: after a restart it is asked of LND again, though the settle index is past it. */
  | { t: "invoice_set_aside"; paymentHash: string }
  | { t: "invoice_done"; paymentHash: string }
  | { t: "settle_index"; value: number };

export type RailState = {
  attempts: Map<string, StoredAttempt>;
  invoices: Map<string, StoredInvoice>;
  settleIndex: number;
};

export type LightningRailStore = {
  /** Reads what was stored (and compacts it). Called once, by the rail's start. */
  load(): Promise<RailState>;
  /**
   * Appends the records in order, whole (a file: in one write). An attempt's record is the write-ahead of a
   * payment, an invoice's the mapping of a payment hash to the gateway's invoice: the append returns once it is
   * durable (a file: synced to the disk), so that a machine that loses its page cache still knows the payment it
   * sent, and takes a paid invoice of its own for its own (one it forgot would be taken for another's, never
   * credited); so does an invoice set aside (the settle index may have moved past it). Other records may be lost in
   * a crash: the rail asks LND again.
   */
  append(...records: RailStoreRecord[]): Promise<void>;
  close(): Promise<void>;
};

/** The journal cannot be read or written (the file system's error is the cause), or is corrupt. */
export class RailStoreError extends SwitchyardError {
  override name = "RailStoreError";
}

/** Finished attempts kept for idempotent retries; the oldest beyond this are forgotten on compaction. */
export const finishedAttemptsRetainMax = 100_000;
const journalLineLengthMax = 64 * 1024;
/**
 * The records an append returns only once they are on the disk: an attempt (a payment sent), an invoice (a payment
 * hash of ours) and one set aside (a settlement the settle index has moved past, that only this line brings back).
 */
const durableKinds: ReadonlySet<RailStoreRecord["t"]> = new Set(["attempt", "invoice", "invoice_set_aside"]);

export function emptyRailState(): RailState {
  return { attempts: new Map(), invoices: new Map(), settleIndex: 0 };
}

export function applyRecord(state: RailState, record: RailStoreRecord): void {
  switch (record.t) {
    case "attempt":
      if (!state.attempts.has(record.attemptId))
        state.attempts.set(record.attemptId, {
          attemptId: record.attemptId,
          paymentId: record.paymentId,
          tenantId: typeof record.tenantId === "string" ? record.tenantId : null,
          paymentHash: record.paymentHash,
          kind: record.kind,
          amountMsat: BigInt(record.amountMsat),
          createdAtMs: record.createdAtMs,
          feeMaxMsat: BigInt(record.feeMaxMsat),
          destination: record.destination,
          request: record.request,
          outcome: null,
          reported: false,
        });
      return;
    case "outcome": {
      const attempt = state.attempts.get(record.attemptId);
      if (attempt === undefined || attempt.outcome !== null) return;
      attempt.outcome =
        record.status === "succeeded"
          ? { status: "succeeded", preimage: record.preimage ?? "", feeMsat: BigInt(record.feeMsat ?? "0") }
          : {
              status: "failed",
              code: record.code ?? "rail_unavailable",
              message: record.message ?? "",
              retryElsewhere: record.retryElsewhere ?? true,
            };
      return;
    }
    case "reported": {
      const attempt = state.attempts.get(record.attemptId);
      if (attempt !== undefined) attempt.reported = true;
      return;
    }
    case "withdrawn":
      // Only ever written for an attempt with no outcome; one with an outcome was sent, and is kept.
      if (state.attempts.get(record.attemptId)?.outcome === null) state.attempts.delete(record.attemptId);
      return;
    case "invoice":
      state.invoices.set(record.paymentHash, {
        paymentHash: record.paymentHash,
        reference: record.reference,
        expiresAtMs: record.expiresAtMs,
        ...(record.setAside === true ? { setAside: true } : {}),
      });
      return;
    case "invoice_set_aside": {
      const invoice = state.invoices.get(record.paymentHash);
      if (invoice !== undefined) invoice.setAside = true;
      return;
    }
    case "invoice_done":
      state.invoices.delete(record.paymentHash);
      return;
    case "settle_index":
      state.settleIndex = Math.max(state.settleIndex, record.value);
      return;
  }
}

export function outcomeRecord(attemptId: string, outcome: StoredOutcome): RailStoreRecord {
  return outcome.status === "succeeded"
    ? {
        t: "outcome",
        attemptId,
        status: "succeeded",
        preimage: outcome.preimage,
        feeMsat: outcome.feeMsat.toString(),
      }
    : {
        t: "outcome",
        attemptId,
        status: "failed",
        code: outcome.code,
        message: outcome.message,
        retryElsewhere: outcome.retryElsewhere,
      };
}

/** The records that rebuild `state`, minus the oldest finished attempts past finishedAttemptsRetainMax. */
export function compactRecords(state: RailState): RailStoreRecord[] {
  const records: RailStoreRecord[] = [];
  const attempts = [...state.attempts.values()].sort((a, b) => a.createdAtMs - b.createdAtMs);
  const finished = attempts.filter((attempt) => attempt.outcome !== null && attempt.reported);
  const forget = new Set(finished.slice(0, Math.max(0, finished.length - finishedAttemptsRetainMax)));
  for (const attempt of attempts) {
    if (forget.has(attempt)) continue;
    records.push({
      t: "attempt",
      attemptId: attempt.attemptId,
      paymentId: attempt.paymentId,
      ...(attempt.tenantId === null ? {} : { tenantId: attempt.tenantId }),
      paymentHash: attempt.paymentHash,
      kind: attempt.kind,
      amountMsat: attempt.amountMsat.toString(),
      createdAtMs: attempt.createdAtMs,
      feeMaxMsat: attempt.feeMaxMsat.toString(),
      destination: attempt.destination,
      request: attempt.outcome === null ? attempt.request : null,
    });
    if (attempt.outcome !== null) records.push(outcomeRecord(attempt.attemptId, attempt.outcome));
    if (attempt.reported) records.push({ t: "reported", attemptId: attempt.attemptId });
  }
  for (const invoice of state.invoices.values()) records.push({ t: "invoice", ...invoice });
  if (state.settleIndex > 0) records.push({ t: "settle_index", value: state.settleIndex });
  return records;
}

/** Keeps the journal in memory: for tests and for a gateway that accepts losing it on restart. */
export function createMemoryRailStore(): LightningRailStore & { records(): readonly RailStoreRecord[] } {
  let records: RailStoreRecord[] = [];
  return {
    async load() {
      const state = emptyRailState();
      for (const record of records) applyRecord(state, record);
      records = compactRecords(state);
      return state;
    },
    async append(...appended) {
      records.push(...appended);
    },
    async close() {},
    records: () => records,
  };
}

/** Waits until what was written to the descriptor is on the disk (fdatasync). */
export type JournalSync = (descriptor: number) => Promise<void>;

const syncToDisk: JournalSync = (descriptor) =>
  new Promise((resolve, reject) =>
    fdatasync(descriptor, (error) => (error === null ? resolve() : reject(error))),
  );

/** Whether process `pid` runs on this host (signal 0 asks without sending one; EPERM: it runs as another user). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** How long a journal lock holds without being renewed; its holder renews it six times as often. */
export const journalLeaseMs = 60_000;

type JournalLockHolder = { pid?: unknown; host?: unknown; token?: unknown; renewedAtMs?: unknown };

/** The lock's text for this store at `nowMs`. */
const lockText = (token: string, nowMs: number) =>
  JSON.stringify({ pid: process.pid, host: os.hostname(), token, renewedAtMs: nowMs });

/**
 * Takes the journal's lock file (`<file>.lock`: pid, host, this store's token and when its lease was last renewed),
 * made exclusively. A journal has one writer: a second process on it would compact it (a rename) from under the
 * first, whose every later line, attempts and invoices synced as durable, then goes to a file no one reads again.
 * A lock of this host is refused while its process runs, and taken over once it is gone (or when it is this
 * process's own: a store left unclosed, as a test plays a crash). A lock of another host (a shared volume: its
 * process cannot be asked from here) is refused while its lease holds, and taken over once it lapsed (its holder
 * stopped renewing it: a container gone, whatever name its replacement has).
 */
async function takeJournalLock(lock: string, token: string): Promise<void> {
  for (let tries = 0; tries < 2; tries += 1) {
    try {
      await mkdir(path.dirname(lock), { recursive: true });
      const handle = await open(lock, "wx");
      try {
        await handle.writeFile(lockText(token, Date.now()));
      } finally {
        await handle.close();
      }
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST")
        throw new RailStoreError("journal lock not taken", { details: lock, cause: error });
    }
    let holder: JournalLockHolder = {};
    try {
      holder = JSON.parse(await readFile(lock, "utf8")) as JournalLockHolder;
    } catch {}
    const sameHost = holder.host === os.hostname();
    const held = sameHost
      ? holder.pid !== process.pid && typeof holder.pid === "number" && processAlive(holder.pid)
      : typeof holder.renewedAtMs === "number" && Date.now() - holder.renewedAtMs <= journalLeaseMs;
    if (held)
      throw new RailStoreError(
        "the journal is in use by another process: one journal (and one LND) per gateway process",
        { details: `${lock}: process ${String(holder.pid)} on ${String(holder.host)}` },
      );
    await unlink(lock).catch(() => undefined);
  }
  throw new RailStoreError("journal lock not taken", { details: lock });
}

/**
 * Renews this store's lease: false when the lock is no longer its own (taken over). Replaced whole (a reader never
 * sees half of it), from a temporary file named by the token.
 */
async function renewJournalLock(lock: string, token: string): Promise<boolean> {
  const held = await readFile(lock, "utf8").catch(() => "");
  if (!held.includes(token)) return false;
  const temporary = `${lock}.${token}.tmp`;
  await writeFile(temporary, lockText(token, Date.now()));
  await rename(temporary, lock);
  return true;
}

/**
 * An append-only JSON-lines journal in `file`, compacted (rewritten, synced and renamed) on load, held by one
 * process at a time (its lock file, from load to close). `sync`: how writes are made durable (fdatasync; tests
 * watch it).
 */
export function createFileRailStore(file: string, options: { sync?: JournalSync } = {}): LightningRailStore {
  const sync = options.sync ?? syncToDisk;
  const lock = `${file}.lock`;
  /** Names this store's lock, so that its close removes only its own (not one taken over since). */
  const token = randomUUID();
  let locked = false;
  let renewing: NodeJS.Timeout | null = null;
  /** The renewal running, which close waits for (its rename would make the lock again). */
  let renewal: Promise<void> = Promise.resolve();
  /** When the lease was last renewed (or taken), and whether another process has taken the lock since. */
  let renewedAtMs = 0;
  let lost = false;
  /**
   * Refuses a write once the lock is another's: found so by a renewal, or — the lease unrenewed for longer than half
   * its life (the event loop blocked, renewals failing) — by a look at the lock before the write. A store that lost
   * its journal writes nothing more to it: another process compacted it, and lines written here would be lost.
   */
  const stillHeld = () => {
    if (!lost && Date.now() - renewedAtMs > journalLeaseMs / 2) {
      let text = "";
      try {
        text = readFileSync(lock, "utf8");
      } catch {}
      if (text.includes(token)) renewedAtMs = Date.now();
      else lost = true;
    }
    if (lost)
      throw new RailStoreError(
        "the journal was taken over by another process; this one writes no more to it",
        {
          details: lock,
        },
      );
  };
  let descriptor: number | null = null;
  /** A sync under way, and the one after it, which every append that wrote meanwhile shares (group commit). */
  let syncing: Promise<void> | null = null;
  let queued: Promise<void> | null = null;
  const durable = (): Promise<void> => {
    if (syncing === null) {
      if (descriptor === null)
        return Promise.reject(new RailStoreError("store not loaded", { details: file }));
      syncing = sync(descriptor)
        .catch((error: unknown) => {
          throw new RailStoreError("journal sync failed", { details: file, cause: error });
        })
        .finally(() => {
          syncing = null;
        });
      return syncing;
    }
    queued ??= syncing
      .catch(() => {})
      .then(() => {
        queued = null;
        return durable();
      });
    return queued;
  };
  /** Appends `text` whole. A write to the page cache takes microseconds: done in place, it spares each line a
   * round trip through libuv's thread pool (a quarter of a millisecond on a payment's path), and lines reach the
   * file in the order they were appended without any queue. */
  const write = (text: string) => {
    if (descriptor === null) throw new RailStoreError("store not loaded", { details: file });
    stillHeld();
    const bytes = Buffer.from(text);
    let written = 0;
    try {
      while (written < bytes.length) written += writeSync(descriptor, bytes, written, bytes.length - written);
    } catch (error) {
      throw new RailStoreError("journal write failed", { details: file, cause: error });
    }
  };
  return {
    async load() {
      if (!locked) {
        await takeJournalLock(lock, token);
        locked = true;
        lost = false;
        renewedAtMs = Date.now();
        renewing = setInterval(() => {
          renewal = renewJournalLock(lock, token).then(
            (own) => {
              if (own) renewedAtMs = Date.now();
              else lost = true;
            },
            () => undefined, // tried again at the next tick; a write checks the lock itself past half the lease
          );
        }, journalLeaseMs / 6);
        renewing.unref();
      }
      const state = emptyRailState();
      let text = "";
      try {
        text = await readFile(file, "utf8");
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOENT")
          throw new RailStoreError("journal unreadable", { details: file, cause: error });
      }
      const lines = text.split("\n");
      lines.forEach((line, index) => {
        if (line.trim() === "") return;
        if (line.length > journalLineLengthMax)
          throw new RailStoreError("journal line too long", { details: `${file}:${index + 1}` });
        try {
          applyRecord(state, JSON.parse(line) as RailStoreRecord);
        } catch (error) {
          // A torn last line (crash mid-append) is expected; anything else is corruption.
          if (index !== lines.length - 1 && !(index === lines.length - 2 && lines[lines.length - 1] === ""))
            throw new RailStoreError("journal line unreadable", {
              details: `${file}:${index + 1}: ${String(error)}`,
              cause: error,
            });
        }
      });
      const compacted = compactRecords(state);
      const temporary = `${file}.${process.pid}.tmp`;
      try {
        await mkdir(path.dirname(file), { recursive: true });
        // Synced before the rename, and the directory after it: a crash never leaves the journal empty.
        const handle = await open(temporary, "w");
        try {
          await handle.writeFile(compacted.map((record) => `${JSON.stringify(record)}\n`).join(""));
          await handle.datasync();
        } finally {
          await handle.close();
        }
        await rename(temporary, file);
        const directory = await open(path.dirname(file), "r");
        try {
          await directory.sync();
        } finally {
          await directory.close();
        }
        if (descriptor !== null) closeSync(descriptor);
        descriptor = openSync(file, "a");
      } catch (error) {
        throw new RailStoreError("journal compaction failed", { details: file, cause: error });
      }
      return state;
    },
    async append(...records) {
      write(records.map((record) => `${JSON.stringify(record)}\n`).join(""));
      if (records.some((record) => durableKinds.has(record.t))) await durable();
    },
    async close() {
      const closing = descriptor;
      descriptor = null;
      try {
        if (closing !== null) closeSync(closing);
      } catch (error) {
        throw new RailStoreError("journal close failed", { details: file, cause: error });
      } finally {
        if (renewing !== null) clearInterval(renewing);
        renewing = null;
        await renewal;
        if (locked) {
          locked = false;
          const held = await readFile(lock, "utf8").catch(() => "");
          if (held.includes(token)) await unlink(lock).catch(() => undefined);
        }
      }
    },
  };
}
