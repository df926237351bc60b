// What the Lightning rail must remember across restarts: which attempt paid which payment hash (written
// before the payment is sent), each attempt's final outcome, which invoice belongs to which reference,
// and the last settle index whose invoice was delivered. LND keeps the payments themselves; this keeps
// only the mapping back to the gateway's ids. Stored as an append-only JSON-lines journal, compacted on
// open.
import { randomUUID } from "node:crypto";
import {
  closeSync,
  fdatasync,
  fdatasyncSync,
  ftruncateSync,
  openSync,
  readFileSync,
  writeSync,
} from "node:fs";
import { type FileHandle, link, mkdir, open, rename, unlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseBolt11 } from "../../core/bolt11.ts";
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
  /** bolt11: the invoice paid (null once the attempt ended and the journal was compacted) */
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
  /**
   * An attempt written ahead and never sent (its reservation was not made): forgotten. `sent`: forgotten because LND
   * had no payment of it when asked (send.ts neverTaken), which a slow LND may yet take: its id is remembered, with
   * when its first line was written (`createdAtMs`), the hash it sent and, an invoice's, the invoice (`request`), for
   * a send of it afresh (each absent in lines written before it was kept), and the hashes of the invoices a Lightning
   * Address's sent before that one replaced them (`earlierHashes`; absent when none, and in lines written before),
   * with those invoices by hash (`earlierRequests`: those known; absent when none, and in lines written before).
   */
  | {
      t: "withdrawn";
      attemptId: string;
      sent?: true;
      createdAtMs?: number;
      paymentHash?: string;
      request?: string;
      earlierHashes?: string[];
      earlierRequests?: Record<string, string>;
    }
  | { t: "invoice"; paymentHash: string; reference: string; expiresAtMs: number; setAside?: true }
  /** Its event was set aside: after a restart it is asked of LND again, though the settle index is past it. */
  | { t: "invoice_set_aside"; paymentHash: string }
  | { t: "invoice_done"; paymentHash: string }
  | { t: "settle_index"; value: number };

/**
 * An attempt forgotten as never taken whose send may yet have reached LND (a `sent` withdrawal): when its first line
 * was written, the hash it sent and, an invoice's, the invoice it sent (null in a line written before it was kept).
 * `earlierHashes`: those of the invoices it sent before (a Lightning Address's first invoice, expired and replaced by a
 * new one: send.ts addressInvoiceAfresh), which a slow LND may yet have taken late too. `earlierRequests`: their invoices
 * by hash, those known (absent when none: a mark journalled before they were kept names their hashes alone), journalled
 * as what was paid when an attempt follows LND's payment of one.
 */
export type ForgottenSend = {
  readonly firstAtMs: number;
  readonly paymentHash: string | null;
  readonly request: string | null;
  readonly earlierHashes: readonly string[];
  readonly earlierRequests?: ReadonlyMap<string, string>;
};

/**
 * The earlier hashes of an id's mark of `paymentHash` that follows `known`: known's, and known's own hash when this one
 * names another (a mark written without them, were one, loses none), `more` besides; never the mark's own hash.
 */
export function earlierHashesAfter(
  known: ForgottenSend | undefined,
  paymentHash: string | null,
  more: readonly string[] = [],
): string[] {
  const earlier = new Set([...(known?.earlierHashes ?? []), ...more]);
  if (known?.paymentHash != null) earlier.add(known.paymentHash);
  if (paymentHash !== null) earlier.delete(paymentHash);
  return [...earlier];
}

/**
 * How long the invoices of a mark's earlier hashes may be together: a journal line longer than journalLineLengthMax is
 * unreadable, and a mark renewed many times (its invoices a kilobyte each, with route hints) would write one. Past it,
 * those that do not fit, newest first, are kept by their hash alone, as a mark journalled before invoices were kept names them.
 */
const earlierRequestsLengthMax = 16 * 1024;

/**
 * The earlier hashes of an id's mark of `paymentHash` that follows `known` (earlierHashesAfter), with the invoices of
 * those known: known's earlier ones and its own, `more` besides (the latest within earlierRequestsLengthMax), each only
 * if it is an invoice of its hash. To be spread into the mark: `earlierRequests` absent when none is known.
 */
/** Whether `request` is an invoice of `paymentHash`: one journalled or paid as another hash's proves a payment it was not. */
export function isInvoiceOf(request: string, paymentHash: string | null): boolean {
  const parsed = parseBolt11(request);
  return parsed.ok && parsed.value.paymentHash === paymentHash;
}

export function earlierAfter(
  known: ForgottenSend | undefined,
  paymentHash: string | null,
  more: { hashes?: readonly string[]; requests?: ReadonlyMap<string, string> } = {},
): Pick<ForgottenSend, "earlierHashes" | "earlierRequests"> {
  const earlierHashes = earlierHashesAfter(known, paymentHash, more.hashes);
  const requestOf = (hash: string) =>
    more.requests?.get(hash) ??
    known?.earlierRequests?.get(hash) ??
    (hash === known?.paymentHash ? known.request : null);
  const earlierRequests = new Map<string, string>();
  let length = 0;
  // The latest first: earlierHashesAfter lists them oldest first, known's own (the one just replaced) last.
  for (const hash of [...earlierHashes].reverse()) {
    const request = requestOf(hash);
    if (request === null || length + request.length > earlierRequestsLengthMax) continue;
    // Journalled as what was paid when LND's payment of the hash is followed: an invoice of another hash (a line
    // edited, or one that paired them wrong) would be journalled as the proof of a payment it was not.
    if (!isInvoiceOf(request, hash)) continue;
    length += request.length;
    earlierRequests.set(hash, request);
  }
  return earlierRequests.size === 0 ? { earlierHashes } : { earlierHashes, earlierRequests };
}

export type RailState = {
  attempts: Map<string, StoredAttempt>;
  /** Attempts forgotten as never taken, by id: what LND has of the hash may be its own (send.ts attach). */
  forgottenSends: Map<string, ForgottenSend>;
  invoices: Map<string, StoredInvoice>;
  settleIndex: number;
  /** What was read other than as written (a withdrawn line's invoice not of its hash), by its line: the rail logs them. */
  warnings: { message: string; details: string }[];
};

export type LightningRailStore = {
  /** Reads what was stored (and compacts it). Called once, by the rail's start. */
  load(): Promise<RailState>;
  /**
   * Appends the records in order, whole (a file: written as one buffer, cut back off when the write fails partway, or,
   * that failing too, nothing more written until the next load). An attempt's record is the write-ahead of a payment,
   * an invoice's the mapping of a payment hash to the gateway's invoice: the append returns once it is durable (a
   * file: synced to the disk; after a sync that fails, nothing more written until the next load), so that a machine
   * that loses its page cache still knows the payment it sent, and takes a paid invoice of its own for its own (one it
   * forgot would be taken for another's, never credited); so does an invoice set aside (the settle index may have
   * moved past it). Other records may be lost in a crash: the rail asks LND again.
   */
  append(...records: RailStoreRecord[]): Promise<void>;
  close(): Promise<void>;
  /**
   * Whether the journal is still this store's: false once another process took it over (a file's lock; the same look
   * as before a write, never throwing). What the rail says from it is then a look that may be out of date.
   */
  held(): boolean;
  /**
   * Why the journal refuses every write until the next load (a file: a failed write's part not cut off, a cut or a
   * sync that failed), or null. Only the rail's start loads it: the rail says it cannot pay or take payments till then.
   * Absent: a store never torn.
   */
  torn?(): unknown | null;
  /** The journal's lock file, for the log line that says the lock was lost (monitor.ts journalLockLost). */
  readonly lockFile?: string;
};

/** The journal cannot be read or written (the file system's error is the cause), or is corrupt. */
export class RailStoreError extends SwitchyardError {
  override name = "RailStoreError";
}

/** The file system's code of `error` (EIO, ENOSPC), or null. */
export function errorCodeOf(error: unknown): string | null {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return typeof code === "string" ? code : null;
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
  return {
    attempts: new Map(),
    forgottenSends: new Map(),
    invoices: new Map(),
    settleIndex: 0,
    warnings: [],
  };
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
      state.forgottenSends.delete(record.attemptId);
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
    case "withdrawn": {
      // Only ever written for an attempt with no outcome; one with an outcome was sent, and is kept.
      const attempt = state.attempts.get(record.attemptId);
      if (attempt !== undefined && attempt.outcome !== null) return;
      state.attempts.delete(record.attemptId);
      // Kept (alone once compacted) until the id has an outcome; the earliest line's time, were it forgotten twice.
      // A withdrawal without `sent` (withdraw's, or one written before it) leaves a mark of the id as it is.
      if (record.sent === true && typeof record.createdAtMs === "number") {
        const known = state.forgottenSends.get(record.attemptId);
        const paymentHash =
          typeof record.paymentHash === "string" ? record.paymentHash : (known?.paymentHash ?? null);
        const earlier = Array.isArray(record.earlierHashes)
          ? record.earlierHashes.filter((hash): hash is string => typeof hash === "string")
          : [];
        const requests = new Map(
          typeof record.earlierRequests === "object" && record.earlierRequests !== null
            ? Object.entries(record.earlierRequests).filter(
                (entry): entry is [string, string] => typeof entry[1] === "string",
              )
            : [],
        );
        // A mark's invoice is sent afresh as the attempt's (send.ts addressInvoiceAfresh) and journalled as what it paid
        // (followEarlier): one of another hash (a line edited, or one that paired them wrong) would send, or prove, a
        // payment that is not the one LND may be making. Which of the two was sent is unknown: the mark is read as one
        // journalled before it kept them (no hash, no invoice), both hashes among its earlier ones. A Lightning
        // Address's is then held while LND has any payment of its amount, theirs among them (send.ts unmarkedInFlight),
        // before its address is asked anew, and the two are asked of LND when it ends (endsBesideEarlier); a bolt11
        // payout's hash comes from its invoice again (forgottenHash), a keysend's from its id. Were the line refused, the
        // whole journal would be, and the rail (the gateway with it) would not start: the attempt alone is held, and load
        // says so by its line (`warnings`, logged at start).
        const parsed = typeof record.request === "string" ? parseBolt11(record.request) : null;
        const mismatched = parsed !== null && !(parsed.ok && parsed.value.paymentHash === paymentHash);
        if (mismatched) {
          if (paymentHash !== null) earlier.push(paymentHash);
          if (parsed.ok) {
            earlier.push(parsed.value.paymentHash);
            requests.set(parsed.value.paymentHash, record.request as string);
          }
          state.warnings.push({
            message:
              "a withdrawn line's invoice is not one of its payment hash: its attempt is read as one whose mark kept neither, both hashes among its earlier ones",
            details: `${record.attemptId}: ${paymentHash ?? "no hash"}: ${parsed.ok ? `the invoice's is ${parsed.value.paymentHash}` : parsed.error}`,
          });
        }
        const markHash = mismatched ? null : paymentHash;
        state.forgottenSends.set(record.attemptId, {
          firstAtMs: Math.min(record.createdAtMs, known?.firstAtMs ?? record.createdAtMs),
          paymentHash: markHash,
          // A line naming no invoice keeps the one known only for the same hash: another hash's is not its invoice.
          request: mismatched
            ? null
            : typeof record.request === "string"
              ? record.request
              : known !== undefined && known.paymentHash === paymentHash
                ? known.request
                : null,
          ...earlierAfter(known, markHash, { hashes: earlier, requests }),
        });
      }
      return;
    }
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

/** The journal's line of an attempt forgotten as never taken (send.ts neverTaken), as applyRecord reads it back. */
export const forgottenSendRecord = (attemptId: string, mark: ForgottenSend): RailStoreRecord => ({
  t: "withdrawn",
  attemptId,
  sent: true,
  createdAtMs: mark.firstAtMs,
  ...(mark.paymentHash === null ? {} : { paymentHash: mark.paymentHash }),
  ...(mark.request === null ? {} : { request: mark.request }),
  ...(mark.earlierHashes.length === 0 ? {} : { earlierHashes: [...mark.earlierHashes] }),
  ...(mark.earlierRequests === undefined || mark.earlierRequests.size === 0
    ? {}
    : { earlierRequests: Object.fromEntries(mark.earlierRequests) }),
});

/** The records that rebuild `state`, minus the oldest finished attempts past finishedAttemptsRetainMax. */
export function compactRecords(state: RailState): RailStoreRecord[] {
  const records: RailStoreRecord[] = [];
  const attempts = [...state.attempts.values()].sort((a, b) => a.createdAtMs - b.createdAtMs);
  const finished = attempts.filter((attempt) => attempt.outcome !== null && attempt.reported);
  const forget = new Set(finished.slice(0, Math.max(0, finished.length - finishedAttemptsRetainMax)));
  // Before the attempts' lines: the line of an id sent afresh follows its withdrawal, as it did when written. As many
  // as finished attempts are kept, the latest (an id's outcome ends its own).
  const forgottenSends = [...state.forgottenSends]
    .sort(([, a], [, b]) => a.firstAtMs - b.firstAtMs)
    .slice(-finishedAttemptsRetainMax);
  for (const [attemptId, mark] of forgottenSends) records.push(forgottenSendRecord(attemptId, mark));
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
      // Kept only while it may be sent again. Not once it paid, though the invoice is what the preimage proves paid:
      // the journal is read and rewritten at each start, and kept invoices (a payee's may be 7 KB) of up to
      // finishedAttemptsRetainMax attempts would make it hundreds of megabytes, read and written at every start. A
      // bolt11 payout's invoice stays in its payment's destination; a Lightning Address's is in the attempt's line
      // until the next start.
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
    held: () => true,
    records: () => records,
  };
}

/** Waits until what was written to the descriptor is on the disk (fdatasync). */
export type JournalSync = (descriptor: number) => Promise<void>;

const syncToDisk: JournalSync = (descriptor) =>
  new Promise((resolve, reject) =>
    fdatasync(descriptor, (error) => (error === null ? resolve() : reject(error))),
  );

/** Writes up to `length` of `bytes` from `offset` to the descriptor, and says how many it wrote (writeSync). */
export type JournalWrite = (descriptor: number, bytes: Buffer, offset: number, length: number) => number;

/** Cuts the descriptor's file back to its first `size` bytes (ftruncateSync). */
export type JournalTruncate = (descriptor: number, size: number) => void;

/** Waits, blocking, until the descriptor's cut is on the disk (fdatasyncSync). */
export type JournalSyncCut = (descriptor: number) => void;

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
/** Claims of claims followed to take over one left by a crashed taker: each level is one more taker crashed half way. */
const journalClaimLevelsMax = 8;
/** A claim is held for the milliseconds of a takeover, a renewal or a close: one seen held is waited for a few times. */
const journalClaimWaitMs = 10;
const journalClaimTriesMax = 5;
/**
 * How long a close waits for the syncs under way or queued (the rail's stopWaitMs, the same): a sync stalled on the disk
 * would otherwise hold the rail's stop, and every closer after it (the ledger's last batch, the database), for good.
 */
const journalCloseWaitMs = 5_000;

type JournalLockHolder = {
  pid?: unknown;
  host?: unknown;
  run?: unknown;
  token?: unknown;
  renewedAtMs?: unknown;
};

/** Names this process's run: its own claims in flight are told from those an earlier process of its pid left. */
const processRun = randomUUID();

/** The text of a lock or claim of this store at `nowMs`. */
const lockText = (token: string, nowMs: number) =>
  JSON.stringify({ pid: process.pid, host: os.hostname(), run: processRun, token, renewedAtMs: nowMs });

const leaseHolds = (holder: JournalLockHolder) =>
  typeof holder.renewedAtMs === "number" && Date.now() - holder.renewedAtMs <= journalLeaseMs;
const pidAlive = (pid: unknown) =>
  typeof pid === "number" && Number.isSafeInteger(pid) && pid > 0 && processAlive(pid);

/**
 * Whether a lock's holder still holds it: its process of this host runs (not this process: a store left unclosed,
 * as a test plays a crash), or, another host's (whose process cannot be asked from here), its lease holds.
 */
const lockHeld = (holder: JournalLockHolder) =>
  holder.host === os.hostname() ? holder.pid !== process.pid && pidAlive(holder.pid) : leaseHolds(holder);

/**
 * Whether a claim's taker is still at it: as a lock, but one of this process only in this run (one of its pid from
 * an earlier run, a container's pid 1 restarted, is a crashed taker's).
 */
const claimHeld = (holder: JournalLockHolder) =>
  holder.host === os.hostname()
    ? holder.pid === process.pid
      ? holder.run === processRun
      : pidAlive(holder.pid)
    : leaseHolds(holder);

const inUse = (file: string, holder: JournalLockHolder) =>
  new RailStoreError(
    "the journal is in use by another process: one journal (and one LND) per gateway process",
    {
      details: `${file}: process ${String(holder.pid)} on ${String(holder.host)}`,
    },
  );

/** A lock or claim file as read through one descriptor: its text and inode, the very file judged, and its holder. */
type HeldFile = { text: string; inode: bigint; holder: JournalLockHolder };

async function readHeld(file: string): Promise<HeldFile | null> {
  let handle: FileHandle;
  try {
    handle = await open(file, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
  try {
    const { ino } = await handle.stat({ bigint: true });
    const text = await handle.readFile("utf8");
    let holder: unknown = null;
    try {
      holder = JSON.parse(text);
    } catch {}
    return { text, inode: ino, holder: typeof holder === "object" && holder !== null ? holder : {} };
  } finally {
    await handle.close();
  }
}

/** How much of the journal is read, or of its compacted lines written, at a time. */
const journalChunkBytes = 1024 * 1024;

/**
 * Gives `file`'s lines to `onLine` one at a time, with their number from 1 and whether the line is torn: the file's
 * last, no newline after it (an append writes its lines, each ending in its newline, as one buffer, and one whose
 * write fails partway is cut back off, so only a crash mid-append leaves one without it, or a failed write whose part
 * could not be cut off: the store then writes no more until its next load). The journal is never held whole, so one
 * grown past what a string holds (appended to between starts, up to finishedAttemptsRetainMax attempts and more) still
 * loads. A line longer than journalLineLengthMax is refused, before it is gathered whole when its bytes already say so.
 * No file reads as none; one unreadable throws `journal unreadable`. Before, the file was read into one string, and a
 * journal past 512 MiB left the rail unable to start.
 */
async function readJournalLines(
  file: string,
  onLine: (line: string, number: number, torn: boolean) => void,
): Promise<void> {
  const unreadable = (error: unknown) =>
    new RailStoreError("journal unreadable", { details: file, cause: error });
  let handle: FileHandle;
  try {
    handle = await open(file, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    throw unreadable(error);
  }
  try {
    const chunk = Buffer.allocUnsafe(journalChunkBytes);
    /** The bytes of the line being read, gathered across chunks. */
    let parts: Buffer[] = [];
    let partsLength = 0;
    /** The last complete line, given on once it is known whether another follows it. */
    let held: string | null = null;
    let number = 0;
    // The line before is given on first: a reader refusing it (a corrupt line) is told of it, the first wrong line.
    const tooLong = () => {
      if (held !== null) onLine(held, number, false);
      held = null;
      return new RailStoreError("journal line too long", { details: `${file}:${number + 1}` });
    };
    const gather = (bytes: Buffer) => {
      partsLength += bytes.length;
      // A UTF-16 unit takes at most 3 bytes of UTF-8: past 3 bytes for each, the line is too long however it decodes.
      if (partsLength > 3 * journalLineLengthMax) throw tooLong();
      parts.push(Buffer.from(bytes));
    };
    const complete = () => {
      const line = (parts.length === 1 ? parts[0]! : Buffer.concat(parts, partsLength)).toString("utf8");
      parts = [];
      partsLength = 0;
      if (line.length > journalLineLengthMax) throw tooLong();
      if (held !== null) onLine(held, number, false);
      held = line;
      number += 1;
    };
    for (;;) {
      let size: number;
      try {
        ({ bytesRead: size } = await handle.read(chunk, 0, chunk.length, null));
      } catch (error) {
        throw unreadable(error);
      }
      if (size === 0) break;
      const read = chunk.subarray(0, size);
      let start = 0;
      for (let end = read.indexOf(10); end !== -1; end = read.indexOf(10, start)) {
        gather(read.subarray(start, end));
        complete();
        start = end + 1;
      }
      if (start < size) gather(read.subarray(start));
    }
    // What follows the last newline is the last line, a torn one, unless nothing does.
    const torn = partsLength > 0;
    if (torn) complete();
    if (held !== null) onLine(held, number, torn);
  } finally {
    await handle.close();
  }
}

/**
 * Writes `records` as journal lines through `handle`, a chunk at a time (readJournalLines says why never whole): each
 * chunk's writeFile goes on from where the last ended, and writes it all (write may write part).
 */
async function writeRecords(handle: FileHandle, records: readonly RailStoreRecord[]): Promise<void> {
  let lines: string[] = [];
  let length = 0;
  for (const record of records) {
    const line = `${JSON.stringify(record)}\n`;
    lines.push(line);
    length += line.length;
    if (length >= journalChunkBytes) {
      await handle.writeFile(lines.join(""));
      lines = [];
      length = 0;
    }
  }
  if (lines.length > 0) await handle.writeFile(lines.join(""));
}

/** Error codes of a file system that makes no hard links (an SMB share, some FUSE mounts). */
const noHardLinks = new Set(["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS"]);

/**
 * Makes `file` with `text` unless it exists (false): linked from a written temporary file, so it is never seen empty.
 * On a file system without hard links, made exclusively and then written, as the lock was before claims: a reader
 * may then see it empty for a moment, and judge it a holder's that is gone.
 */
async function createWhole(file: string, text: string): Promise<boolean> {
  const temporary = `${file}.${randomUUID()}.tmp`;
  await writeFile(temporary, text);
  try {
    await link(temporary, file);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EEXIST") return false;
    if (code !== undefined && noHardLinks.has(code)) return await createExclusively(file, text);
    throw error;
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
}

async function createExclusively(file: string, text: string): Promise<boolean> {
  let handle: FileHandle;
  try {
    handle = await open(file, "wx");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  }
  try {
    await handle.writeFile(text);
  } finally {
    await handle.close();
  }
  return true;
}

/** Replaces `file` by `text` whole (a reader sees the one or the other), from a temporary file. */
async function replaceWhole(file: string, text: string): Promise<void> {
  const temporary = `${file}.${randomUUID()}.tmp`;
  await writeFile(temporary, text);
  try {
    await rename(temporary, file);
  } catch (error) {
    await unlink(temporary).catch(() => undefined);
    throw error;
  }
}

/**
 * The claim under which a lock or claim file of `held`'s holder changes (`<lock>.<token>.claim`, `.claim2` for a
 * claim's): every change of it (a takeover, its holder's renewal and close) is made by the one that made this
 * exclusively, after a look that it is still the file it judged. Named by the holder's token, or, a file without
 * one (torn, or foreign), by its inode.
 */
function claimOf(lock: string, held: HeldFile, level: number): string {
  const token = held.holder.token;
  const key = typeof token === "string" && /^[\w-]{1,64}$/.test(token) ? token : `inode-${held.inode}`;
  return `${lock}.${key}.claim${level === 1 ? "" : String(level)}`;
}

/**
 * Makes `claim` this store's (`token`'s), or throws while another is at it. One left by a taker that crashed half
 * way is taken over as a lock is (under a claim of the level above): no crash leaves the journal locked for good.
 */
async function takeClaim(lock: string, claim: string, token: string, level: number): Promise<void> {
  for (let tries = 1; tries <= journalClaimTriesMax; tries += 1) {
    if (await createWhole(claim, lockText(token, Date.now()))) return;
    const held = await readHeld(claim);
    if (held === null) continue; // given back meanwhile: made afresh
    if (claimHeld(held.holder) || level >= journalClaimLevelsMax) {
      if (tries === journalClaimTriesMax) throw inUse(claim, held.holder);
      await sleep(journalClaimWaitMs);
    } else if (await replaceStale(lock, claim, held, token, level + 1)) return;
  }
  throw new RailStoreError("journal lock not taken", { details: claim });
}

/**
 * Replaces `file` (the lock, or a claim at `level` - 1), judged `stale`, by this store's, if it is still that very
 * file (its inode and text): false when it is not, another taker having replaced it first. Under the claim of the
 * stale holder: of any number of takers that judged it, one replaces it, and the others find it changed. (Removed
 * and made again instead, a taker acting on its stale look would remove another's fresh lock.)
 */
async function replaceStale(
  lock: string,
  file: string,
  stale: HeldFile,
  token: string,
  level: number,
): Promise<boolean> {
  const claim = claimOf(lock, stale, level);
  await takeClaim(lock, claim, token, level);
  try {
    const current = await readHeld(file);
    if (current === null || current.inode !== stale.inode || current.text !== stale.text) return false;
    // Still this taker's claim: a taker paused past a lease (another host's claim is judged by it) may have had its
    // claim taken over, and the lock replaced, by another meanwhile.
    if ((await readHeld(claim))?.holder.token !== token) return false;
    await replaceWhole(file, lockText(token, Date.now()));
    return true;
  } finally {
    await unlink(claim).catch(() => undefined);
  }
}

/**
 * Takes the journal's lock file (`<file>.lock`: pid, host, this store's token and when its lease was last renewed),
 * made exclusively. A journal has one writer: a second process on it would compact it (a rename) from under the
 * first, whose every later line, attempts and invoices synced as durable, then goes to a file no one reads again.
 * A lock of this host is refused while its process runs, and taken over once it is gone (or when it is this
 * process's own: a store left unclosed, as a test plays a crash). A lock of another host (a shared volume: its
 * process cannot be asked from here) is refused while its lease holds, and taken over once it lapsed (its holder
 * stopped renewing it: a container gone, whatever name its replacement has). `beforeTakeover`: run between the look
 * at a stale lock and its takeover (tests race another taker there).
 */
async function takeJournalLock(
  lock: string,
  token: string,
  beforeTakeover?: () => Promise<void>,
): Promise<void> {
  try {
    await mkdir(path.dirname(lock), { recursive: true });
    for (let tries = 0; tries < 3; tries += 1) {
      if (await createWhole(lock, lockText(token, Date.now()))) return;
      const held = await readHeld(lock);
      if (held === null) continue; // removed meanwhile: made afresh
      if (lockHeld(held.holder)) throw inUse(lock, held.holder);
      await beforeTakeover?.();
      if (await replaceStale(lock, lock, held, token, 1)) return;
      // Another taker was first: its lock is judged afresh.
    }
  } catch (error) {
    if (error instanceof RailStoreError) throw error;
    throw new RailStoreError("journal lock not taken", { details: lock, cause: error });
  }
  throw new RailStoreError("journal lock not taken", { details: lock });
}

/**
 * Renews this store's lease: false when the lock is no longer its own (taken over). Replaced whole, under its claim
 * (throws while a taker is at it): a renewal never puts its lock back over one taken over meanwhile.
 */
async function renewJournalLock(lock: string, token: string): Promise<boolean> {
  const claim = `${lock}.${token}.claim`;
  await takeClaim(lock, claim, token, 1);
  try {
    if ((await readHeld(lock))?.holder.token !== token) return false;
    await replaceWhole(lock, lockText(token, Date.now()));
    return true;
  } finally {
    await unlink(claim).catch(() => undefined);
  }
}

/** Removes the lock if it is still this store's (not one taken over since), under its claim. */
async function releaseJournalLock(lock: string, token: string): Promise<void> {
  const claim = `${lock}.${token}.claim`;
  await takeClaim(lock, claim, token, 1);
  try {
    if ((await readHeld(lock))?.holder.token === token) await unlink(lock);
  } finally {
    await unlink(claim).catch(() => undefined);
  }
}

/**
 * An append-only JSON-lines journal in `file`, compacted (rewritten, synced and renamed) on load, held by one
 * process at a time (its lock file, from load to close). `sync`: how writes are made durable (fdatasync; tests
 * watch it); `write`, `truncate` and `syncCut`: how an append is written, and a failed one cut back off and the cut
 * synced (writeSync, ftruncateSync and fdatasyncSync; tests make them fail); `beforeTakeover`: run between the look
 * at a stale lock and its takeover (tests race another taker); `closeWaitMs`: how long a close waits for the syncs
 * under way (tests shorten it).
 */
export function createFileRailStore(
  file: string,
  options: {
    sync?: JournalSync;
    write?: JournalWrite;
    truncate?: JournalTruncate;
    syncCut?: JournalSyncCut;
    beforeTakeover?: () => Promise<void>;
    closeWaitMs?: number;
  } = {},
): LightningRailStore {
  const sync = options.sync ?? syncToDisk;
  const writeBytes = options.write ?? writeSync;
  const truncate = options.truncate ?? ftruncateSync;
  const syncCut = options.syncCut ?? fdatasyncSync;
  const closeWaitMs = options.closeWaitMs ?? journalCloseWaitMs;
  const lock = `${file}.lock`;
  /** Names this store's lock, so that its close removes only its own (not one taken over since). */
  const token = randomUUID();
  let locked = false;
  let renewing: NodeJS.Timeout | null = null;
  /** The renewal running, which close waits for (its rename would make the lock again); one at a time. */
  let renewal: Promise<void> | null = null;
  /** When the lease was last renewed (or taken), and whether another process has taken the lock since. */
  let renewedAtMs = 0;
  let lost = false;
  /**
   * Whether the lock is still this store's: not once found another's by a renewal, or — the lease unrenewed for longer
   * than half its life (the event loop blocked, renewals failing) — by a look at the lock now. stillHeld refuses a
   * write then: a store that lost its journal writes nothing more to it (another process compacted it, and lines
   * written here would be lost).
   */
  const held = () => {
    if (!lost && Date.now() - renewedAtMs > journalLeaseMs / 2) {
      let text = "";
      try {
        text = readFileSync(lock, "utf8");
      } catch {}
      if (text.includes(token)) renewedAtMs = Date.now();
      else lost = true;
    }
    return !lost;
  };
  const stillHeld = () => {
    if (!held())
      throw new RailStoreError(
        "the journal was taken over by another process; this one writes no more to it",
        {
          details: lock,
        },
      );
  };
  let descriptor: number | null = null;
  /**
   * How many times the descriptor was closed (by a close, or replaced by a load's): a sync's failure tears the journal
   * only while the descriptor it synced is still the journal's. One that fails after, on the old file a load rewrote
   * from what it read and synced, or with EBADF on a descriptor a close closed (the number perhaps given to another
   * file since), says nothing of the journal, and would otherwise tear the one a load has just cleared. A close waits
   * for the syncs first, so this matters there only for one that outlasted closeWaitMs.
   */
  let closings = 0;
  /**
   * How many times a close closed the descriptor: a sync that succeeds after one (it outlasted closeWaitMs) synced a
   * descriptor no longer the journal's, so its appends are refused (durable). One that succeeds after a load is kept:
   * the load rewrote and synced what it read, those lines with it.
   */
  let closes = 0;
  /**
   * The journal's length in bytes: what compaction wrote, and each append written whole since. Kept here, not asked
   * of the file, so that an append (on a payment's path) makes no call more than its write.
   */
  let size = 0;
  /**
   * Why the journal is torn: a write failed partway and its part could not be cut off, or the cut could not be synced;
   * or a sync failed (durable). Every later write is refused (it would be glued onto the part, one line no load reads,
   * or written after lines the disk may have lost) until the next load, whose compaction rewrites the journal from what
   * it reads, the part dropped, and syncs it.
   */
  let tornBy: unknown = null;
  /** The file, and the file system's code for `error` when it has one (EIO, ENOSPC): what a refusal's details say. */
  const detailsOf = (error: unknown) => {
    const code = errorCodeOf(error);
    return code === null ? file : `${file}: ${code}`;
  };
  /**
   * How many times the journal was torn since the store was made, and by what last: an append's sync asks whether it
   * was meanwhile, and is refused with that error (tornBy, a load may have cleared since).
   */
  let tears = 0;
  let lastTornBy: unknown = null;
  const tear = (error: unknown) => {
    // The first cause stands until a load: a queued sync failing after it says no more, and the rail, which logs the
    // tear and names it in its health, does not say it twice.
    if (tornBy === null) tornBy = error;
    lastTornBy = error;
    tears += 1;
  };
  /** A sync under way, and the one after it, which every append that wrote meanwhile shares (group commit). */
  let syncing: Promise<void> | null = null;
  let queued: Promise<void> | null = null;
  const durable = (): Promise<void> => {
    if (syncing === null) {
      if (descriptor === null)
        return Promise.reject(new RailStoreError("store not loaded", { details: file }));
      const closingsBefore = closings;
      const closesBefore = closes;
      syncing = sync(descriptor)
        .then(
          () => {
            // Closed meanwhile: a close that gave up waiting (closeWaitMs) closed the descriptor under a sync still
            // queued in libuv's pool, whose number the process may since have given another file; its success says
            // nothing of the journal, and the appends waiting are refused, not taken as durable.
            if (closes !== closesBefore)
              throw new RailStoreError("journal closed before its sync was confirmed", { details: file });
          },
          (error: unknown) => {
            // Linux reports a file's writeback error once, to whichever sync checks first: the sync after this one may
            // find nothing dirty and succeed, though the lines of the appends waiting for it, written before this one
            // failed, may be lost, and what the disk holds of the journal is unknown. It is torn as by a cut not synced:
            // those appends are refused (append), and nothing more is written after a possible gap until a load.
            // PostgreSQL takes a failed fsync the same way: it PANICs, and recovers from what it knows is durable.
            if (closings === closingsBefore) tear(error);
            throw new RailStoreError("journal sync failed", { details: detailsOf(error), cause: error });
          },
        )
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
   * file in the order they were appended without any queue. A write that fails partway (a full disk writes part,
   * then fails) is cut back off, or, that failing, nothing more is written (tornBy): the next append's line would
   * otherwise be glued onto its part, one line no load reads, and the rail would not start. */
  const write = (text: string) => {
    if (descriptor === null) throw new RailStoreError("store not loaded", { details: file });
    if (tornBy !== null)
      throw new RailStoreError("journal torn by a failed write or sync", {
        details: detailsOf(tornBy),
        cause: tornBy,
      });
    stillHeld();
    const bytes = Buffer.from(text);
    let written = 0;
    try {
      while (written < bytes.length)
        written += writeBytes(descriptor, bytes, written, bytes.length - written);
    } catch (error) {
      // Only a part written is cut: a write that wrote nothing (a disk full already) leaves nothing to cut, and a cut
      // there would cost every append a sync on the main thread, and tear the journal for good where the sync itself
      // fails, though the next write may well succeed once space is freed.
      if (written > 0)
        try {
          truncate(descriptor, size);
          // The cut synced: the next append writes over the same offsets, and a crash before its sync could otherwise
          // leave the old length, the part's bytes and the new line's mixed.
          syncCut(descriptor);
        } catch (cutError) {
          tear(cutError);
        }
      throw new RailStoreError("journal write failed", { details: detailsOf(error), cause: error });
    }
    size += bytes.length;
  };
  return {
    lockFile: lock,
    async load() {
      if (!locked) {
        await takeJournalLock(lock, token, options.beforeTakeover);
        locked = true;
        lost = false;
        renewedAtMs = Date.now();
        renewing = setInterval(() => {
          renewal ??= renewJournalLock(lock, token)
            .then(
              (own) => {
                if (own) renewedAtMs = Date.now();
                else lost = true;
              },
              () => undefined, // tried again at the next tick; a write checks the lock itself past half the lease
            )
            .finally(() => {
              renewal = null;
            });
        }, journalLeaseMs / 6);
        renewing.unref();
      }
      const state = emptyRailState();
      await readJournalLines(file, (line, number, torn) => {
        // A torn last line (a crash mid-append, or a failed write's part left) is dropped unread, and compaction below
        // writes the journal without it, though what it holds may read as a record (a part that ends where a record
        // does). A durable kind's append was never acknowledged; any other's (outcome, reported, settle index,
        // withdrawn, invoice done) may have been, after its write alone, and losing it to a crash is what those kinds
        // already accept (durableKinds). Before, one that parsed was applied.
        if (torn || line.trim() === "") return;
        const warned = state.warnings.length;
        try {
          applyRecord(state, JSON.parse(line) as RailStoreRecord);
          for (const warning of state.warnings.slice(warned))
            warning.details = `${file}:${number}: ${warning.details}`;
        } catch (error) {
          // Corruption, a complete last line's too: its newline says the line was written whole (a write that failed
          // partway is cut back off, or nothing is written after its part: write).
          throw new RailStoreError("journal line unreadable", {
            details: `${file}:${number}: ${String(error)}`,
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
        let compactedSize: number;
        try {
          await writeRecords(handle, compacted);
          await handle.datasync();
          compactedSize = (await handle.stat()).size;
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
        // Not left naming a closed descriptor should the close or the open fail: a number the process may give
        // another file.
        const old = descriptor;
        descriptor = null;
        closings += 1;
        if (old !== null) closeSync(old);
        descriptor = openSync(file, "a");
        // The journal is now what compaction wrote, a failed write's part dropped with any torn line.
        size = compactedSize;
        tornBy = null;
      } catch (error) {
        throw new RailStoreError("journal compaction failed", { details: file, cause: error });
      }
      return state;
    },
    async append(...records) {
      write(records.map((record) => `${JSON.stringify(record)}\n`).join(""));
      if (!records.some((record) => durableKinds.has(record.t))) return;
      // Linux reports a file's writeback error once per open file, to whichever sync checks first: a sync that failed
      // while this append waited (a failed write's cut's, or the store's own one before the sync it waits for) may have
      // taken the error of this append's lines, and the sync it waits for then says nothing wrong. Either tears the
      // journal: an append during which it was torn (a cut not made or not synced, a sync failed) is so not surely
      // durable, and is refused as a failed sync.
      const tearsBefore = tears;
      await durable();
      if (tears !== tearsBefore)
        throw new RailStoreError("journal sync failed", {
          details: detailsOf(lastTornBy),
          cause: lastTornBy,
        });
    },
    held: () => locked && held(),
    torn: () => tornBy,
    async close() {
      // The syncs under way, or queued, finish on the descriptor before it is closed: the appends waiting for them are
      // answered as they would have been, and no sync runs on a descriptor closed under it. Their failure is the
      // appends' to report. A sync queued while the one under way finished is waited for too. Not for longer than
      // closeWaitMs: a sync stalled on the disk (fdatasync never returning) would hold the close for good; the
      // descriptor is then closed under it, and its late failure tears nothing (closings).
      const drained = (async () => {
        while (syncing !== null || queued !== null) await (queued ?? syncing)?.catch(() => undefined);
      })();
      let timer: NodeJS.Timeout | null = null;
      await Promise.race([drained, new Promise((resolve) => (timer = setTimeout(resolve, closeWaitMs)))]);
      if (timer !== null) clearTimeout(timer);
      const closing = descriptor;
      descriptor = null;
      closings += 1;
      closes += 1;
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
          // Left when it cannot be (a taker at it): a lock of a process gone, or of this one, is taken over.
          await releaseJournalLock(lock, token).catch(() => undefined);
        }
      }
    },
  };
}
