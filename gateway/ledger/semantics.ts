// The ledger's semantics, pure: given the state a batch needs (accounts, the transfers it names, the status of the
// pending transfers it names), apply requests in arrival order, one event at a time, each seeing the ones before,
// exactly as TigerBeetle's state machine does, and say what to write. No I/O here; the stores prefetch the state
// and write the effects.
import { LedgerInvariantError } from "./errors.ts";
import {
  type Account,
  AccountFlags,
  type AccountInput,
  accountFlagsKnown,
  amountMax,
  type CreateAccountResult,
  type CreateAccountStatus,
  type CreateTransferResult,
  type CreateTransferStatus,
  evidenceDetailEntriesMax,
  evidenceDetailLengthMax,
  evidenceRailLengthMax,
  evidenceReferenceLengthMax,
  nsPerS,
  type PendingStatus,
  type Transfer,
  type TransferEvidence,
  TransferFlags,
  type TransferInput,
  timestampMax,
  transferFlagsKnown,
  u16Max,
  u32Max,
  u64Max,
  u128Max,
} from "./types.ts";

/** What a batch may read and changes in place. The writer owns it; events see each other's effects through it. */
export type LedgerState = {
  accounts: Map<bigint, Account>;
  /** transfers known to exist (prefetched by id or pending id, or created earlier in this batch) */
  transfers: Map<bigint, Transfer>;
  /** status of the pending transfers in `transfers` */
  pending: Map<bigint, PendingStatus>;
};

export function emptyLedgerState(): LedgerState {
  return { accounts: new Map(), transfers: new Map(), pending: new Map() };
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
};

type Undo =
  | { kind: "account"; account: Account; before: Account }
  | { kind: "transfer"; id: bigint }
  | { kind: "pending"; id: bigint; before: PendingStatus | undefined };

/** Records changes inside a linked chain so that a broken chain leaves no trace. */
type Journal = {
  undo: Undo[];
  inChain: boolean;
  createdMark: number;
  openedMark: number;
  resolvedMark: number;
};

const copyAccount = (account: Account): Account => ({ ...account });

const isU128 = (value: bigint) => typeof value === "bigint" && value >= 0n && value <= u128Max;
const isU64 = (value: bigint) => typeof value === "bigint" && value >= 0n && value <= u64Max;
const isUint = (value: number, max: number) => Number.isInteger(value) && value >= 0 && value <= max;

export function expiresAt(transfer: Transfer): bigint | null {
  return transfer.timeout > 0 ? transfer.timestamp + BigInt(transfer.timeout) * nsPerS : null;
}

export function evidenceIsValid(evidence: TransferEvidence | undefined | null): boolean {
  if (evidence === undefined || evidence === null) return true;
  if (typeof evidence !== "object") return false;
  const { rail, reference, detail } = evidence;
  if (typeof rail !== "string" || rail.length === 0 || rail.length > evidenceRailLengthMax) return false;
  if (
    typeof reference !== "string" ||
    reference.length === 0 ||
    reference.length > evidenceReferenceLengthMax
  )
    return false;
  if (detail === undefined) return true;
  if (typeof detail !== "object" || detail === null || Array.isArray(detail)) return false;
  const entries = Object.entries(detail);
  if (entries.length > evidenceDetailEntriesMax) return false;
  for (const [key, value] of entries) {
    if (key.length === 0 || key.length > evidenceDetailLengthMax) return false;
    if (typeof value !== "string" || value.length > evidenceDetailLengthMax) return false;
  }
  return true;
}

/** Evidence as stored: detail keys sorted, an empty detail dropped, so equal evidence compares equal. */
export function normalizeEvidence(evidence: TransferEvidence | undefined | null): TransferEvidence | null {
  if (evidence === undefined || evidence === null) return null;
  const keys = Object.keys(evidence.detail ?? {}).sort();
  if (keys.length === 0) return { rail: evidence.rail, reference: evidence.reference };
  const detail: Record<string, string> = {};
  for (const key of keys) detail[key] = evidence.detail![key]!;
  return { rail: evidence.rail, reference: evidence.reference, detail };
}

export function evidenceEquals(a: TransferEvidence | null, b: TransferEvidence | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.rail !== b.rail || a.reference !== b.reference) return false;
  const ak = Object.keys(a.detail ?? {});
  const bk = Object.keys(b.detail ?? {});
  if (ak.length !== bk.length) return false;
  for (const key of ak) if (a.detail![key] !== b.detail?.[key]) return false;
  return true;
}

/**
 * Runs one request's events in order with TigerBeetle's linked-chain rules: a chain (events with `linked`, closed
 * by the first event without it) succeeds or fails as a unit; the first failing event keeps its own code and the
 * others in the chain get `linked_event_failed`; a chain still open at the end of the request fails with
 * `linked_event_chain_open` on its last event. Any result other than `created` (including `exists`) breaks a chain.
 */
function runRequest<E extends { flags?: number }, S extends string>(
  events: readonly E[],
  firstTimestamp: bigint,
  journal: Journal,
  execute: (event: E, timestamp: bigint) => { status: S; timestamp: bigint },
  rollback: (journal: Journal) => void,
): { status: S | "linked_event_failed" | "linked_event_chain_open"; timestamp: bigint }[] {
  type R = { status: S | "linked_event_failed" | "linked_event_chain_open"; timestamp: bigint };
  const results: R[] = new Array(events.length);
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
    else result = execute(event, timestamp);
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
  const effects: TransferEffects = {
    created: [],
    accountsBefore: new Map(),
    pendingOpened: [],
    pendingResolved: [],
  };
  const journal = newJournal();

  const touch = (account: Account) => {
    if (!effects.accountsBefore.has(account)) effects.accountsBefore.set(account, copyAccount(account));
    if (journal.inChain) journal.undo.push({ kind: "account", account, before: copyAccount(account) });
  };
  const setPending = (id: bigint, status: PendingStatus) => {
    if (journal.inChain) journal.undo.push({ kind: "pending", id, before: state.pending.get(id) });
    state.pending.set(id, status);
  };
  const addTransfer = (transfer: Transfer) => {
    if (journal.inChain) journal.undo.push({ kind: "transfer", id: transfer.id });
    state.transfers.set(transfer.id, transfer);
    effects.created.push(transfer);
  };

  const execute = (t: TransferInput, timestamp: bigint): CreateTransferResult => {
    const status = createTransfer(t, timestamp);
    if (status === "exists") return { status, timestamp: state.transfers.get(t.id)!.timestamp };
    return { status, timestamp };
  };

  const createTransfer = (t: TransferInput, timestamp: bigint): CreateTransferStatus => {
    const flags = t.flags ?? 0;
    const pendingId = t.pendingId ?? 0n;
    const timeout = t.timeout ?? 0;
    const userData128 = t.userData128 ?? 0n;
    const userData64 = t.userData64 ?? 0n;
    const userData32 = t.userData32 ?? 0;

    if (!isUint(flags, u16Max) || (flags & ~transferFlagsKnown) !== 0) return "reserved_flag";
    if (!isU128(t.id)) return "id_out_of_range";
    if (!isU128(t.debitAccountId)) return "debit_account_id_out_of_range";
    if (!isU128(t.creditAccountId)) return "credit_account_id_out_of_range";
    if (!isU128(pendingId)) return "pending_id_out_of_range";
    if (typeof t.amount !== "bigint" || t.amount < 0n) return "amount_must_not_be_negative";
    if (t.amount > amountMax) return "amount_must_not_exceed_max";
    if (!isUint(t.ledger, u32Max)) return "ledger_out_of_range";
    if (!isUint(t.code, u16Max)) return "code_out_of_range";
    if (!isUint(timeout, u32Max)) return "timeout_out_of_range";
    if (!isU128(userData128)) return "user_data_128_out_of_range";
    if (!isU64(userData64)) return "user_data_64_out_of_range";
    if (!isUint(userData32, u32Max)) return "user_data_32_out_of_range";
    if (!evidenceIsValid(t.evidence)) return "evidence_invalid";

    if (t.id === 0n) return "id_must_not_be_zero";
    if (t.id === u128Max) return "id_must_not_be_int_max";

    const existing = state.transfers.get(t.id);
    if (existing !== undefined) return transferExists(t, existing, state.transfers);

    if ((flags & (TransferFlags.postPendingTransfer | TransferFlags.voidPendingTransfer)) !== 0) {
      return postOrVoidPendingTransfer(t, timestamp);
    }

    if (t.debitAccountId === 0n) return "debit_account_id_must_not_be_zero";
    if (t.debitAccountId === u128Max) return "debit_account_id_must_not_be_int_max";
    if (t.creditAccountId === 0n) return "credit_account_id_must_not_be_zero";
    if (t.creditAccountId === u128Max) return "credit_account_id_must_not_be_int_max";
    if (t.creditAccountId === t.debitAccountId) return "accounts_must_be_different";

    if (pendingId !== 0n) return "pending_id_must_be_zero";
    const isPending = (flags & TransferFlags.pending) !== 0;
    if (!isPending) {
      if (timeout !== 0) return "timeout_reserved_for_pending_transfer";
      if ((flags & (TransferFlags.closingDebit | TransferFlags.closingCredit)) !== 0)
        return "closing_transfer_must_be_pending";
    }
    if (t.ledger === 0) return "ledger_must_not_be_zero";
    if (t.code === 0) return "code_must_not_be_zero";

    const dr = state.accounts.get(t.debitAccountId);
    if (dr === undefined) return "debit_account_not_found";
    const cr = state.accounts.get(t.creditAccountId);
    if (cr === undefined) return "credit_account_not_found";
    if (dr.ledger !== cr.ledger) return "accounts_must_have_the_same_ledger";
    if (t.ledger !== dr.ledger) return "transfer_must_have_the_same_ledger_as_accounts";

    if ((dr.flags & AccountFlags.closed) !== 0) return "debit_account_already_closed";
    if ((cr.flags & AccountFlags.closed) !== 0) return "credit_account_already_closed";

    let amount = t.amount;
    if ((flags & TransferFlags.balancingDebit) !== 0) {
      const available = dr.creditsPosted - dr.debitsPosted - dr.debitsPending;
      amount = minBigint(amount, available > 0n ? available : 0n);
    }
    if ((flags & TransferFlags.balancingCredit) !== 0) {
      const available = cr.debitsPosted - cr.creditsPosted - cr.creditsPending;
      amount = minBigint(amount, available > 0n ? available : 0n);
    }

    if (isPending) {
      if (amount + dr.debitsPending > amountMax) return "overflows_debits_pending";
      if (amount + cr.creditsPending > amountMax) return "overflows_credits_pending";
    }
    if (amount + dr.debitsPosted > amountMax) return "overflows_debits_posted";
    if (amount + cr.creditsPosted > amountMax) return "overflows_credits_posted";
    if (amount + dr.debitsPending + dr.debitsPosted > amountMax) return "overflows_debits";
    if (amount + cr.creditsPending + cr.creditsPosted > amountMax) return "overflows_credits";
    if (timestamp + BigInt(timeout) * nsPerS > timestampMax) return "overflows_timeout";

    if (
      (dr.flags & AccountFlags.debitsMustNotExceedCredits) !== 0 &&
      dr.debitsPending + dr.debitsPosted + amount > dr.creditsPosted
    )
      return "exceeds_credits";
    if (
      (cr.flags & AccountFlags.creditsMustNotExceedDebits) !== 0 &&
      cr.creditsPending + cr.creditsPosted + amount > cr.debitsPosted
    )
      return "exceeds_debits";

    const transfer: Transfer = {
      id: t.id,
      debitAccountId: t.debitAccountId,
      creditAccountId: t.creditAccountId,
      amount,
      ledger: t.ledger,
      code: t.code,
      flags,
      pendingId: 0n,
      timeout,
      userData128,
      userData64,
      userData32,
      timestamp,
      evidence: normalizeEvidence(t.evidence),
    };
    addTransfer(transfer);
    touch(dr);
    touch(cr);
    if (isPending) {
      dr.debitsPending += amount;
      cr.creditsPending += amount;
      if ((flags & TransferFlags.closingDebit) !== 0) dr.flags |= AccountFlags.closed;
      if ((flags & TransferFlags.closingCredit) !== 0) cr.flags |= AccountFlags.closed;
      setPending(transfer.id, "pending");
      effects.pendingOpened.push({ id: transfer.id, expiresAt: expiresAt(transfer) });
    } else {
      dr.debitsPosted += amount;
      cr.creditsPosted += amount;
    }
    return "created";
  };

  const postOrVoidPendingTransfer = (t: TransferInput, timestamp: bigint): CreateTransferStatus => {
    const flags = t.flags ?? 0;
    const pendingId = t.pendingId ?? 0n;
    const isPost = (flags & TransferFlags.postPendingTransfer) !== 0;
    const isVoid = (flags & TransferFlags.voidPendingTransfer) !== 0;
    if (isPost && isVoid) return "flags_are_mutually_exclusive";
    if (
      (flags &
        (TransferFlags.pending |
          TransferFlags.balancingDebit |
          TransferFlags.balancingCredit |
          TransferFlags.closingDebit |
          TransferFlags.closingCredit)) !==
      0
    )
      return "flags_are_mutually_exclusive";
    if (pendingId === 0n) return "pending_id_must_not_be_zero";
    if (pendingId === u128Max) return "pending_id_must_not_be_int_max";
    if (pendingId === t.id) return "pending_id_must_be_different";
    if ((t.timeout ?? 0) !== 0) return "timeout_reserved_for_pending_transfer";

    const p = state.transfers.get(pendingId);
    if (p === undefined) return "pending_transfer_not_found";
    if ((p.flags & TransferFlags.pending) === 0) return "pending_transfer_not_pending";
    const dr = state.accounts.get(p.debitAccountId);
    const cr = state.accounts.get(p.creditAccountId);
    if (dr === undefined || cr === undefined)
      throw new LedgerInvariantError("the accounts of a pending transfer are not loaded");

    if (t.debitAccountId !== 0n && t.debitAccountId !== p.debitAccountId)
      return "pending_transfer_has_different_debit_account_id";
    if (t.creditAccountId !== 0n && t.creditAccountId !== p.creditAccountId)
      return "pending_transfer_has_different_credit_account_id";
    if (t.ledger !== 0 && t.ledger !== p.ledger) return "pending_transfer_has_different_ledger";
    if (t.code !== 0 && t.code !== p.code) return "pending_transfer_has_different_code";

    let amount: bigint;
    if (isVoid) amount = t.amount === 0n ? p.amount : t.amount;
    else amount = t.amount === amountMax ? p.amount : t.amount;
    if (amount > p.amount) return "exceeds_pending_transfer_amount";
    if (isVoid && amount < p.amount) return "pending_transfer_has_different_amount";

    const status = state.pending.get(pendingId);
    if (status === undefined)
      throw new LedgerInvariantError("the status of a pending transfer is not loaded");
    if (status === "posted") return "pending_transfer_already_posted";
    if (status === "voided") return "pending_transfer_already_voided";
    if (status === "expired") return "pending_transfer_expired";
    const expiry = expiresAt(p);
    if (expiry !== null && expiry <= timestamp) return "pending_transfer_expired";

    // The only movement a closed account allows is voiding a pending transfer, its own closing one included (which
    // reopens it); posting a closing transfer is refused like any other, so a closing stays undoable until it expires.
    if (!isVoid) {
      if ((dr.flags & AccountFlags.closed) !== 0) return "debit_account_already_closed";
      if ((cr.flags & AccountFlags.closed) !== 0) return "credit_account_already_closed";
    }

    const transfer: Transfer = {
      id: t.id,
      debitAccountId: p.debitAccountId,
      creditAccountId: p.creditAccountId,
      amount,
      ledger: p.ledger,
      code: p.code,
      flags,
      pendingId,
      timeout: 0,
      userData128: (t.userData128 ?? 0n) !== 0n ? t.userData128! : p.userData128,
      userData64: (t.userData64 ?? 0n) !== 0n ? t.userData64! : p.userData64,
      userData32: (t.userData32 ?? 0) !== 0 ? t.userData32! : p.userData32,
      timestamp,
      evidence: t.evidence !== undefined ? normalizeEvidence(t.evidence) : p.evidence,
    };
    addTransfer(transfer);
    touch(dr);
    touch(cr);
    dr.debitsPending -= p.amount;
    cr.creditsPending -= p.amount;
    if (isPost) {
      dr.debitsPosted += amount;
      cr.creditsPosted += amount;
    } else {
      if ((p.flags & TransferFlags.closingDebit) !== 0) dr.flags &= ~AccountFlags.closed;
      if ((p.flags & TransferFlags.closingCredit) !== 0) cr.flags &= ~AccountFlags.closed;
    }
    setPending(pendingId, isPost ? "posted" : "voided");
    effects.pendingResolved.push(pendingId);
    return "created";
  };

  const rollback = (j: Journal) => {
    for (let i = j.undo.length - 1; i >= 0; i--) {
      const entry = j.undo[i]!;
      if (entry.kind === "account") Object.assign(entry.account, entry.before);
      else if (entry.kind === "transfer") {
        state.transfers.delete(entry.id);
        // created transfers of a chain are the last ones pushed; drop them in reverse order
        const last = effects.created.at(-1);
        if (last !== undefined && last.id === entry.id) effects.created.pop();
        const opened = effects.pendingOpened.at(-1);
        if (opened !== undefined && opened.id === entry.id) effects.pendingOpened.pop();
      } else {
        if (entry.before === undefined) state.pending.delete(entry.id);
        else state.pending.set(entry.id, entry.before);
        if (entry.before === "pending") {
          const resolved = effects.pendingResolved.at(-1);
          if (resolved === entry.id) effects.pendingResolved.pop();
        }
      }
    }
    j.undo.length = 0;
  };

  const results: CreateTransferResult[][] = [];
  let timestamp = firstTimestamp;
  for (const request of requests) {
    results.push(runRequest(request, timestamp, journal, execute, rollback));
    timestamp += BigInt(request.length);
  }
  return { results, effects };
}

function minBigint(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}

/**
 * The result for a transfer whose id exists, in TigerBeetle's order: flags, pending id and timeout first (they decide
 * what the rest means), then the fields of a post or void (postOrVoidExists) or of any other transfer.
 */
function transferExists(
  t: TransferInput,
  e: Transfer,
  transfers: ReadonlyMap<bigint, Transfer>,
): CreateTransferStatus {
  const flags = t.flags ?? 0;
  if (flags !== e.flags) return "exists_with_different_flags";
  if ((t.pendingId ?? 0n) !== e.pendingId) return "exists_with_different_pending_id";
  if ((t.timeout ?? 0) !== e.timeout) return "exists_with_different_timeout";
  if ((flags & (TransferFlags.postPendingTransfer | TransferFlags.voidPendingTransfer)) !== 0) {
    // Same pending id as a stored post or void: the pending transfer exists, and the writer has read it (it reads
    // every pending id a batch names).
    const p = transfers.get(e.pendingId);
    if (p === undefined)
      throw new LedgerInvariantError("the pending transfer of a stored post or void is not loaded");
    return postOrVoidExists(t, e, p);
  }
  if (t.debitAccountId !== e.debitAccountId) return "exists_with_different_debit_account_id";
  if (t.creditAccountId !== e.creditAccountId) return "exists_with_different_credit_account_id";
  if ((flags & (TransferFlags.balancingDebit | TransferFlags.balancingCredit)) !== 0) {
    // a balancing transfer may have moved less than asked
    if (t.amount < e.amount) return "exists_with_different_amount";
  } else if (t.amount !== e.amount) return "exists_with_different_amount";
  if ((t.userData128 ?? 0n) !== e.userData128) return "exists_with_different_user_data_128";
  if ((t.userData64 ?? 0n) !== e.userData64) return "exists_with_different_user_data_64";
  if ((t.userData32 ?? 0) !== e.userData32) return "exists_with_different_user_data_32";
  if (t.ledger !== e.ledger) return "exists_with_different_ledger";
  if (t.code !== e.code) return "exists_with_different_code";
  if (!evidenceEquals(normalizeEvidence(t.evidence), e.evidence)) return "exists_with_different_evidence";
  return "exists";
}

/**
 * A stored post or void `e` of pending transfer `p`, asked for again as `t`. A zero field of `t` means "the pending
 * transfer's", so it matches only if `e` took the pending transfer's: the maximum amount of a post (and 0 of a void)
 * matches a post of the whole pending amount, user data 0 matches user data taken from `p`. Accounts, ledger and
 * code are always `p`'s, so 0 matches them. Evidence, our extension, is looser: a retry without any matches what
 * was stored, since a caller retrying after a crash may no longer have it.
 */
function postOrVoidExists(t: TransferInput, e: Transfer, p: Transfer): CreateTransferStatus {
  if (t.debitAccountId !== 0n && t.debitAccountId !== e.debitAccountId)
    return "exists_with_different_debit_account_id";
  if (t.creditAccountId !== 0n && t.creditAccountId !== e.creditAccountId)
    return "exists_with_different_credit_account_id";
  const wholeAmount = (t.flags ?? 0) & TransferFlags.voidPendingTransfer ? 0n : amountMax;
  if (t.amount === wholeAmount ? e.amount !== p.amount : t.amount !== e.amount)
    return "exists_with_different_amount";
  const ud128 = t.userData128 ?? 0n;
  if (e.userData128 !== (ud128 === 0n ? p.userData128 : ud128)) return "exists_with_different_user_data_128";
  const ud64 = t.userData64 ?? 0n;
  if (e.userData64 !== (ud64 === 0n ? p.userData64 : ud64)) return "exists_with_different_user_data_64";
  const ud32 = t.userData32 ?? 0;
  if (e.userData32 !== (ud32 === 0 ? p.userData32 : ud32)) return "exists_with_different_user_data_32";
  if (t.ledger !== 0 && t.ledger !== e.ledger) return "exists_with_different_ledger";
  if (t.code !== 0 && t.code !== e.code) return "exists_with_different_code";
  if (t.evidence !== undefined && !evidenceEquals(normalizeEvidence(t.evidence), e.evidence))
    return "exists_with_different_evidence";
  return "exists";
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
    if (a.ledger === 0) return "ledger_must_not_be_zero";
    if (a.code === 0) return "code_must_not_be_zero";
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
    return "created";
  };
  const rollback = (j: Journal) => {
    for (let i = j.undo.length - 1; i >= 0; i--) {
      const entry = j.undo[i]!;
      if (entry.kind === "transfer") {
        state.accounts.delete(entry.id);
        if (created.at(-1)?.id === entry.id) created.pop();
      }
    }
    j.undo.length = 0;
  };
  const results = runRequest(accounts, firstTimestamp, journal, execute, rollback);
  return { results, created };
}
