// The ledger's semantics, pure: given the state a batch needs (accounts, the transfers it names, the status of the
// pending transfers it names), apply requests in arrival order, one event at a time, each seeing the ones before,
// exactly as TigerBeetle's state machine does, and say what to write. No I/O here; the stores prefetch the state
// and write the effects. One transfer's rules are semantics-transfer.ts; single fields' checks semantics-fields.ts.
import {
  type ImportedBounds,
  type ImportedKind,
  importRegresses,
  importsEvents,
  isImported,
  isU64,
  isU128,
  isUint,
  noteCreated,
  undoNoted,
} from "./semantics-fields.ts";
import { createTransfer, rollbackTransfers, type TransferRun } from "./semantics-transfer.ts";
import {
  type Account,
  type AccountBalance,
  AccountFlags,
  type AccountInput,
  accountFlagsKnown,
  type CreateAccountResult,
  type CreateAccountStatus,
  type CreateTransferResult,
  isTransientFailure,
  type PendingStatus,
  type Transfer,
  TransferFlags,
  type TransferInput,
  timestampMax,
  u16Max,
  u32Max,
  u128Max,
} from "./types.ts";

/** What a batch may read and changes in place. The writer owns it; events see each other's effects through it. */
export type LedgerState = {
  accounts: Map<bigint, Account>;
  /** transfers known to exist (prefetched by id or pending id, or created earlier in this batch) */
  transfers: Map<bigint, Transfer>;
  /** status of the pending transfers in `transfers` */
  pending: Map<bigint, PendingStatus>;
  /** ids known to be spent by a transient failure (prefetched, or failed earlier in this batch): id_already_failed */
  failed: Set<bigint>;
  /**
   * ids spent by batches that committed, or read as spent under the lock, which the writer keeps across batches
   * (bounded: LedgerLimits.spentIdsCacheMax); a spent id never becomes free, so this is never stale: id_already_failed
   */
  spent: ReadonlySet<bigint>;
  /**
   * Whether a transient failure spends its id (TigerBeetle's rule, the default); when not, nothing is recorded and the
   * id is evaluated again when asked again (CreateLedgerParams.transientFailures)
   */
  readonly stickyFailures: boolean;
  /** What imported events are checked against; null when the batch imports nothing (see ImportedBounds). */
  imported: ImportedBounds | null;
};

export function emptyLedgerState(stickyFailures = true, spent: ReadonlySet<bigint> = new Set()): LedgerState {
  return {
    accounts: new Map(),
    transfers: new Map(),
    pending: new Map(),
    failed: new Set(),
    spent,
    stickyFailures,
    imported: null,
  };
}

/** What the store must write for a batch of transfers. */
export type TransferEffects = {
  created: Transfer[];
  /**
   * every account the batch touched, as it was before the batch, keyed by the state's own account object (which
   * holds the balances after; an object key hashes faster than a bigint id)
   */
  accountsBefore: Map<Account, Account>;
  /** pending transfers created: they become open, with their expiry (null: no timeout) */
  pendingOpened: { id: bigint; expiresAt: bigint | null }[];
  /** pending transfers posted or voided: no longer open */
  pendingResolved: bigint[];
  /** ids of transfers that failed with a transient result, to be kept as spent (sticky failures only) */
  failed: bigint[];
  /** the balances a `history` account had right after each transfer of the batch that moved it, in order */
  history: BalanceSnapshot[];
};

/** An account's balances right after a transfer (AccountBalance), kept for accounts with the `history` flag. */
export type BalanceSnapshot = AccountBalance & { accountId: bigint };

export type Undo =
  | { kind: "account"; account: Account; before: Account }
  | { kind: "transfer"; id: bigint }
  | { kind: "pending"; id: bigint; before: PendingStatus | undefined }
  | { kind: "imported"; of: ImportedKind; timestampMax: bigint; timestamp: bigint };

/** Records changes inside a linked chain so that a broken chain leaves no trace. */
export type Journal = {
  undo: Undo[];
  inChain: boolean;
  createdMark: number;
  openedMark: number;
  resolvedMark: number;
};

/** The results a request's timestamps can have before anything else of an event is looked at. */
type TimestampStatus =
  | "imported_event_expected"
  | "imported_event_not_expected"
  | "timestamp_must_be_zero"
  | "imported_event_timestamp_out_of_range"
  | "imported_event_timestamp_must_not_advance";

/**
 * TigerBeetle's first checks of an event, before its own fields: whether it imports as the request's first event
 * does, and its timestamp — one the ledger sets must be zero; an imported one must be a timestamp (1 .. 2^63 - 1)
 * from before the request's own time (`requestTimestamp`, its last event's).
 */
function timestampRefusal(
  event: { flags?: number; timestamp?: bigint },
  importing: boolean,
  bit: number,
  requestTimestamp: bigint,
): TimestampStatus | null {
  const imported = isImported(event.flags, bit);
  if (imported !== importing) return imported ? "imported_event_not_expected" : "imported_event_expected";
  const timestamp = event.timestamp;
  if (!imported) return timestamp === undefined || timestamp === 0n ? null : "timestamp_must_be_zero";
  if (typeof timestamp !== "bigint" || timestamp < 1n || timestamp > timestampMax)
    return "imported_event_timestamp_out_of_range";
  return timestamp >= requestTimestamp ? "imported_event_timestamp_must_not_advance" : null;
}

/**
 * Runs one request's events in order with TigerBeetle's linked-chain rules: a chain (events with `linked`, closed
 * by the first event without it) succeeds or fails as a unit; the first failing event keeps its own code and the
 * others in the chain get `linked_event_failed`; a chain still open at the end of the request fails with
 * `linked_event_chain_open` on its last event. Any result other than `created` (including `exists`) breaks a chain.
 * Event i takes the timestamp `firstTimestamp + i`, or, imported (`importedBit` in its flags), its own; a result
 * other than `created` or `exists` carries the former, as TigerBeetle's do.
 */
function runRequest<E extends { flags?: number; timestamp?: bigint }, S extends string>(
  events: readonly E[],
  firstTimestamp: bigint,
  journal: Journal,
  execute: (event: E, timestamp: bigint) => { status: S; timestamp: bigint },
  rollback: (journal: Journal) => void,
  importedBit: number,
): { status: S | TimestampStatus | "linked_event_failed" | "linked_event_chain_open"; timestamp: bigint }[] {
  type R = {
    status: S | TimestampStatus | "linked_event_failed" | "linked_event_chain_open";
    timestamp: bigint;
  };
  const results: R[] = new Array(events.length);
  const importing = importsEvents(events, importedBit);
  const requestTimestamp = firstTimestamp + BigInt(events.length) - 1n;
  let chainStart = -1;
  let chainBroken = false;
  for (let index = 0; index < events.length; index++) {
    const event = events[index]!;
    const timestamp = firstTimestamp + BigInt(index);
    const linked = ((event.flags ?? 0) & 1) !== 0;
    if (linked && chainStart < 0) {
      chainStart = index;
      chainBroken = false;
      journal.inChain = true;
      journal.undo.length = 0;
    }
    let result: R;
    if (linked && index === events.length - 1) result = { status: "linked_event_chain_open", timestamp };
    else if (chainBroken) result = { status: "linked_event_failed", timestamp };
    else {
      const refusal = timestampRefusal(event, importing, importedBit, requestTimestamp);
      if (refusal !== null) result = { status: refusal, timestamp };
      else if (!importing) result = execute(event, timestamp);
      else {
        result = execute(event, event.timestamp!);
        if (result.status !== "created" && result.status !== "exists")
          result = { status: result.status, timestamp };
      }
    }
    if (result.status !== "created" && chainStart >= 0 && !chainBroken) {
      chainBroken = true;
      rollback(journal);
      for (let i = chainStart; i < index; i++)
        results[i] = { status: "linked_event_failed", timestamp: results[i]!.timestamp };
    }
    results[index] = result;
    if (chainStart >= 0 && (!linked || result.status === "linked_event_chain_open")) {
      chainStart = -1;
      chainBroken = false;
      journal.inChain = false;
      journal.undo.length = 0;
    }
  }
  return results;
}

/** Absent, or zero: a field the ledger sets, left to it. */
const isZero = (value: bigint | undefined): boolean => value === undefined || value === 0n;

function newJournal(): Journal {
  return { undo: [], inChain: false, createdMark: 0, openedMark: 0, resolvedMark: 0 };
}

/**
 * Applies requests of transfers (each request is one caller's batch, with its own chains) in order. Event i of the
 * whole run gets timestamp `firstTimestamp + i`. Changes `state` in place and returns what to write.
 */
export function applyTransferRequests(
  state: LedgerState,
  requests: readonly (readonly TransferInput[])[],
  firstTimestamp: bigint,
): { results: CreateTransferResult[][]; effects: TransferEffects } {
  const run: TransferRun = {
    state,
    effects: {
      created: [],
      accountsBefore: new Map(),
      pendingOpened: [],
      pendingResolved: [],
      failed: [],
      history: [],
    },
    journal: newJournal(),
  };
  const execute = (t: TransferInput, timestamp: bigint): CreateTransferResult => {
    const status = createTransfer(run, t, timestamp);
    if (status === "exists") return { status, timestamp: state.transfers.get(t.id)!.timestamp };
    // As TigerBeetle records it: the event's own transient failure, kept whatever becomes of its chain (a linked
    // chain's rollback undoes the journal, not this), and never a chain's linked_event_failed.
    // (An id spent before never gets here with a transient result: createTransfer answers it id_already_failed.)
    if (status !== "created" && state.stickyFailures && isTransientFailure(status)) {
      state.failed.add(t.id);
      run.effects.failed.push(t.id);
    }
    return { status, timestamp };
  };
  const rollback = () => rollbackTransfers(run);
  const results: CreateTransferResult[][] = [];
  let timestamp = firstTimestamp;
  for (const request of requests) {
    results.push(runRequest(request, timestamp, run.journal, execute, rollback, TransferFlags.imported));
    timestamp += BigInt(request.length);
  }
  return { results, effects: run.effects };
}

/** Applies one request of accounts with the same chain rules. New accounts go into `state.accounts`. */
export function applyAccountRequest(
  state: LedgerState,
  accounts: readonly AccountInput[],
  firstTimestamp: bigint,
): { results: CreateAccountResult[]; created: Account[] } {
  const created: Account[] = [];
  const journal = newJournal();
  const execute = (a: AccountInput, timestamp: bigint): CreateAccountResult => {
    const status = createAccount(a, timestamp);
    if (status === "exists") return { status, timestamp: state.accounts.get(a.id)!.timestamp };
    return { status, timestamp };
  };
  const createAccount = (a: AccountInput, timestamp: bigint): CreateAccountStatus => {
    const flags = a.flags ?? 0;
    const userData128 = a.userData128 ?? 0n;
    const userData64 = a.userData64 ?? 0n;
    const userData32 = a.userData32 ?? 0;
    // TigerBeetle's checks of the fields it sets, in its order: the timestamp (runRequest), the reserved field, then
    // (below, after `exists`) the balances.
    if (a.reserved !== undefined && a.reserved !== 0) return "reserved_field";
    if (!isUint(flags, u16Max) || (flags & ~accountFlagsKnown) !== 0) return "reserved_flag";
    if (!isU128(a.id)) return "id_out_of_range";
    if (!isUint(a.ledger, u32Max)) return "ledger_out_of_range";
    if (!isUint(a.code, u16Max)) return "code_out_of_range";
    if (!isU128(userData128)) return "user_data_128_out_of_range";
    if (!isU64(userData64)) return "user_data_64_out_of_range";
    if (!isUint(userData32, u32Max)) return "user_data_32_out_of_range";
    if (a.id === 0n) return "id_must_not_be_zero";
    if (a.id === u128Max) return "id_must_not_be_int_max";
    const e = state.accounts.get(a.id);
    if (e !== undefined) {
      if (flags !== e.flags) return "exists_with_different_flags";
      if (userData128 !== e.userData128) return "exists_with_different_user_data_128";
      if (userData64 !== e.userData64) return "exists_with_different_user_data_64";
      if (userData32 !== e.userData32) return "exists_with_different_user_data_32";
      if (a.ledger !== e.ledger) return "exists_with_different_ledger";
      if (a.code !== e.code) return "exists_with_different_code";
      return "exists";
    }
    if (
      (flags & AccountFlags.debitsMustNotExceedCredits) !== 0 &&
      (flags & AccountFlags.creditsMustNotExceedDebits) !== 0
    )
      return "flags_are_mutually_exclusive";
    if (!isZero(a.debitsPending)) return "debits_pending_must_be_zero";
    if (!isZero(a.debitsPosted)) return "debits_posted_must_be_zero";
    if (!isZero(a.creditsPending)) return "credits_pending_must_be_zero";
    if (!isZero(a.creditsPosted)) return "credits_posted_must_be_zero";
    if (a.ledger === 0) return "ledger_must_not_be_zero";
    if (a.code === 0) return "code_must_not_be_zero";
    // After `exists`, so that an import asked again is told what it created.
    if ((flags & AccountFlags.imported) !== 0 && importRegresses(state, "account", timestamp))
      return "imported_event_timestamp_must_not_regress";
    const account: Account = {
      id: a.id,
      ledger: a.ledger,
      code: a.code,
      flags,
      userData128,
      userData64,
      userData32,
      debitsPending: 0n,
      debitsPosted: 0n,
      creditsPending: 0n,
      creditsPosted: 0n,
      timestamp,
    };
    state.accounts.set(a.id, account);
    created.push(account);
    if (journal.inChain) journal.undo.push({ kind: "transfer", id: a.id });
    noteCreated(state, journal, "account", timestamp);
    return "created";
  };
  const rollback = (j: Journal) => {
    for (let i = j.undo.length - 1; i >= 0; i--) {
      const entry = j.undo[i]!;
      if (entry.kind === "transfer") {
        state.accounts.delete(entry.id);
        if (created.at(-1)?.id === entry.id) created.pop();
      } else if (entry.kind === "imported") undoNoted(state, entry);
    }
    j.undo.length = 0;
  };
  const results = runRequest(accounts, firstTimestamp, journal, execute, rollback, AccountFlags.imported);
  return { results, created };
}
