// One transfer applied to the ledger's state, pure, in TigerBeetle's order and precedence: checks of its fields, an
// id that exists (transferExists), a post or void of a pending transfer, or a new single-phase or pending transfer.
// Each change goes through touch / addTransfer / setPending, so that a broken linked chain can be undone
// (rollbackTransfers). semantics.ts runs requests of them.
import { LedgerInvariantError } from "./errors.ts";
import type { BalanceSnapshot, Journal, LedgerState, TransferEffects } from "./semantics.ts";
import {
  copyAccount,
  evidenceEquals,
  evidenceIsValid,
  expiresAt,
  importRegresses,
  isU64,
  isU128,
  isUint,
  normalizeEvidence,
  noteCreated,
  undoNoted,
} from "./semantics-fields.ts";
import {
  type Account,
  AccountFlags,
  amountMax,
  type CreateTransferStatus,
  nsPerS,
  type PendingStatus,
  type Transfer,
  TransferFlags,
  type TransferInput,
  timestampMax,
  transferFlagsKnown,
  u16Max,
  u32Max,
  u128Max,
} from "./types.ts";

/** One run of applyTransferRequests: the state it changes, what the store must write, and the chain's journal. */
export type TransferRun = { state: LedgerState; effects: TransferEffects; journal: Journal };

function touch(run: TransferRun, account: Account): void {
  const { effects, journal } = run;
  if (!effects.accountsBefore.has(account)) effects.accountsBefore.set(account, copyAccount(account));
  if (journal.inChain) journal.undo.push({ kind: "account", account, before: copyAccount(account) });
}

function setPending(run: TransferRun, id: bigint, status: PendingStatus): void {
  if (run.journal.inChain) run.journal.undo.push({ kind: "pending", id, before: run.state.pending.get(id) });
  run.state.pending.set(id, status);
}

function addTransfer(run: TransferRun, transfer: Transfer): void {
  if (run.journal.inChain) run.journal.undo.push({ kind: "transfer", id: transfer.id });
  run.state.transfers.set(transfer.id, transfer);
  run.effects.created.push(transfer);
  noteCreated(run.state, run.journal, "transfer", transfer.timestamp);
}

/** Undoes what a broken linked chain changed, last change first. */
export function rollbackTransfers(run: TransferRun): void {
  const { state, effects, journal } = run;
  for (let i = journal.undo.length - 1; i >= 0; i--) {
    const entry = journal.undo[i]!;
    if (entry.kind === "account") Object.assign(entry.account, entry.before);
    else if (entry.kind === "imported") undoNoted(state, entry);
    else if (entry.kind === "transfer") {
      const removed = state.transfers.get(entry.id);
      state.transfers.delete(entry.id);
      // its balance snapshots, the last ones taken
      while (removed !== undefined && effects.history.at(-1)?.timestamp === removed.timestamp)
        effects.history.pop();
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
  journal.undo.length = 0;
}

/**
 * Applies one transfer at `timestamp` (the ledger's, or an imported transfer's own: its timestamp is checked before,
 * semantics.ts runRequest): its result, and on `created` its changes in the run.
 */
export function createTransfer(run: TransferRun, t: TransferInput, timestamp: bigint): CreateTransferStatus {
  const refusal = fieldRefusal(t);
  if (refusal !== null) return refusal;
  if (t.id === 0n) return "id_must_not_be_zero";
  if (t.id === u128Max) return "id_must_not_be_int_max";

  const existing = run.state.transfers.get(t.id);
  if (existing !== undefined) return transferExists(t, existing, run.state.transfers);
  // Where TigerBeetle looks for an orphaned id: after `exists`, before anything of the transfer itself.
  const { failed, spent } = run.state;
  if ((failed.size > 0 && failed.has(t.id)) || (spent.size > 0 && spent.has(t.id)))
    return "id_already_failed";

  if (((t.flags ?? 0) & (TransferFlags.postPendingTransfer | TransferFlags.voidPendingTransfer)) !== 0)
    return postOrVoidPendingTransfer(run, t, timestamp);
  return createNewTransfer(run, t, timestamp);
}

/** Ours, before TigerBeetle's: a value the field's type cannot hold, or malformed evidence. */
function fieldRefusal(t: TransferInput): CreateTransferStatus | null {
  const flags = t.flags ?? 0;
  if (!isUint(flags, u16Max) || (flags & ~transferFlagsKnown) !== 0) return "reserved_flag";
  if (!isU128(t.id)) return "id_out_of_range";
  if (!isU128(t.debitAccountId)) return "debit_account_id_out_of_range";
  if (!isU128(t.creditAccountId)) return "credit_account_id_out_of_range";
  if (!isU128(t.pendingId ?? 0n)) return "pending_id_out_of_range";
  if (typeof t.amount !== "bigint" || t.amount < 0n) return "amount_must_not_be_negative";
  // Any u128, as TigerBeetle takes: what passes our int8 balances is refused where TigerBeetle's checks come to it
  // (overflows_*, exceeds_pending_transfer_amount), after the id's `exists`; u128's maximum on a post is "the whole".
  if (t.amount > u128Max) return "amount_must_not_exceed_max";
  if (!isUint(t.ledger, u32Max)) return "ledger_out_of_range";
  if (!isUint(t.code, u16Max)) return "code_out_of_range";
  if (!isUint(t.timeout ?? 0, u32Max)) return "timeout_out_of_range";
  if (!isU128(t.userData128 ?? 0n)) return "user_data_128_out_of_range";
  if (!isU64(t.userData64 ?? 0n)) return "user_data_64_out_of_range";
  if (!isUint(t.userData32 ?? 0, u32Max)) return "user_data_32_out_of_range";
  if (!evidenceIsValid(t.evidence)) return "evidence_invalid";
  return null;
}

/** A single-phase or pending transfer (neither a post nor a void) whose id is new. */
function createNewTransfer(run: TransferRun, t: TransferInput, timestamp: bigint): CreateTransferStatus {
  const flags = t.flags ?? 0;
  const timeout = t.timeout ?? 0;
  const isPending = (flags & TransferFlags.pending) !== 0;
  const refusal = newTransferRefusal(t);
  if (refusal !== null) return refusal;

  const dr = run.state.accounts.get(t.debitAccountId);
  if (dr === undefined) return "debit_account_not_found";
  const cr = run.state.accounts.get(t.creditAccountId);
  if (cr === undefined) return "credit_account_not_found";
  if (dr.ledger !== cr.ledger) return "accounts_must_have_the_same_ledger";
  if (t.ledger !== dr.ledger) return "transfer_must_have_the_same_ledger_as_accounts";
  if ((flags & TransferFlags.imported) !== 0) {
    if (importRegresses(run.state, "transfer", timestamp)) return "imported_event_timestamp_must_not_regress";
    if (timestamp <= dr.timestamp) return "imported_event_timestamp_must_postdate_debit_account";
    if (timestamp <= cr.timestamp) return "imported_event_timestamp_must_postdate_credit_account";
    if (timeout !== 0) return "imported_event_timeout_must_be_zero";
  }

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
  const balanceRefused = balanceRefusal(dr, cr, amount, isPending, timestamp + BigInt(timeout) * nsPerS);
  if (balanceRefused !== null) return balanceRefused;

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
    userData128: t.userData128 ?? 0n,
    userData64: t.userData64 ?? 0n,
    userData32: t.userData32 ?? 0,
    timestamp,
    evidence: normalizeEvidence(t.evidence),
  };
  addTransfer(run, transfer);
  touch(run, dr);
  touch(run, cr);
  if (isPending) {
    dr.debitsPending += amount;
    cr.creditsPending += amount;
    if ((flags & TransferFlags.closingDebit) !== 0) dr.flags |= AccountFlags.closed;
    if ((flags & TransferFlags.closingCredit) !== 0) cr.flags |= AccountFlags.closed;
    setPending(run, transfer.id, "pending");
    run.effects.pendingOpened.push({ id: transfer.id, expiresAt: expiresAt(transfer) });
  } else {
    dr.debitsPosted += amount;
    cr.creditsPosted += amount;
  }
  keepHistory(run, timestamp, dr, cr);
  return "created";
}

/** The balances of the transfer's `history` accounts right after it (TigerBeetle's account events). */
function keepHistory(run: TransferRun, timestamp: bigint, dr: Account, cr: Account): void {
  // Two tests, no allocation, for the transfers of accounts without history (nearly all).
  if ((dr.flags & AccountFlags.history) !== 0) run.effects.history.push(balanceAfter(dr, timestamp));
  if ((cr.flags & AccountFlags.history) !== 0) run.effects.history.push(balanceAfter(cr, timestamp));
}

const balanceAfter = (account: Account, timestamp: bigint): BalanceSnapshot => ({
  accountId: account.id,
  debitsPending: account.debitsPending,
  debitsPosted: account.debitsPosted,
  creditsPending: account.creditsPending,
  creditsPosted: account.creditsPosted,
  timestamp,
});

/** A new transfer's own fields, checked before its accounts are looked at. */
function newTransferRefusal(t: TransferInput): CreateTransferStatus | null {
  const flags = t.flags ?? 0;
  if (t.debitAccountId === 0n) return "debit_account_id_must_not_be_zero";
  if (t.debitAccountId === u128Max) return "debit_account_id_must_not_be_int_max";
  if (t.creditAccountId === 0n) return "credit_account_id_must_not_be_zero";
  if (t.creditAccountId === u128Max) return "credit_account_id_must_not_be_int_max";
  if (t.creditAccountId === t.debitAccountId) return "accounts_must_be_different";

  if ((t.pendingId ?? 0n) !== 0n) return "pending_id_must_be_zero";
  if ((flags & TransferFlags.pending) === 0) {
    if ((t.timeout ?? 0) !== 0) return "timeout_reserved_for_pending_transfer";
    if ((flags & (TransferFlags.closingDebit | TransferFlags.closingCredit)) !== 0)
      return "closing_transfer_must_be_pending";
  }
  if (t.ledger === 0) return "ledger_must_not_be_zero";
  if (t.code === 0) return "code_must_not_be_zero";
  return null;
}

/** Whether moving `amount` would overflow a balance or the timeout (`expiresAtNs`), or pass an account's limit. */
function balanceRefusal(
  dr: Account,
  cr: Account,
  amount: bigint,
  isPending: boolean,
  expiresAtNs: bigint,
): CreateTransferStatus | null {
  if (isPending) {
    if (amount + dr.debitsPending > amountMax) return "overflows_debits_pending";
    if (amount + cr.creditsPending > amountMax) return "overflows_credits_pending";
  }
  if (amount + dr.debitsPosted > amountMax) return "overflows_debits_posted";
  if (amount + cr.creditsPosted > amountMax) return "overflows_credits_posted";
  if (amount + dr.debitsPending + dr.debitsPosted > amountMax) return "overflows_debits";
  if (amount + cr.creditsPending + cr.creditsPosted > amountMax) return "overflows_credits";
  if (expiresAtNs > timestampMax) return "overflows_timeout";

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
  return null;
}

/** A post's amount that asks for the whole pending amount: TigerBeetle's AMOUNT_MAX (u128's), or ours (int8's). */
function asksWholePost(amount: bigint): boolean {
  return amount === u128Max || amount === amountMax;
}

/** A post or void of a pending transfer, whose id is new. */
function postOrVoidPendingTransfer(
  run: TransferRun,
  t: TransferInput,
  timestamp: bigint,
): CreateTransferStatus {
  const { state } = run;
  const flags = t.flags ?? 0;
  const pendingId = t.pendingId ?? 0n;
  const isPost = (flags & TransferFlags.postPendingTransfer) !== 0;
  const isVoid = (flags & TransferFlags.voidPendingTransfer) !== 0;
  const refusal = postOrVoidRefusal(t);
  if (refusal !== null) return refusal;

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
  else amount = asksWholePost(t.amount) ? p.amount : t.amount;
  if (amount > p.amount) return "exceeds_pending_transfer_amount";
  if (isVoid && amount < p.amount) return "pending_transfer_has_different_amount";

  const status = state.pending.get(pendingId);
  if (status === undefined) throw new LedgerInvariantError("the status of a pending transfer is not loaded");
  if (status === "posted") return "pending_transfer_already_posted";
  if (status === "voided") return "pending_transfer_already_voided";
  if (status === "expired") return "pending_transfer_expired";
  const expiry = expiresAt(p);
  if (expiry !== null && expiry <= timestamp) return "pending_transfer_expired";
  // Where TigerBeetle checks an imported post's or void's timestamp: after its pending transfer's status.
  if ((flags & TransferFlags.imported) !== 0 && importRegresses(state, "transfer", timestamp))
    return "imported_event_timestamp_must_not_regress";

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
  addTransfer(run, transfer);
  touch(run, dr);
  touch(run, cr);
  dr.debitsPending -= p.amount;
  cr.creditsPending -= p.amount;
  if (isPost) {
    dr.debitsPosted += amount;
    cr.creditsPosted += amount;
  } else {
    if ((p.flags & TransferFlags.closingDebit) !== 0) dr.flags &= ~AccountFlags.closed;
    if ((p.flags & TransferFlags.closingCredit) !== 0) cr.flags &= ~AccountFlags.closed;
  }
  setPending(run, pendingId, isPost ? "posted" : "voided");
  run.effects.pendingResolved.push(pendingId);
  keepHistory(run, timestamp, dr, cr);
  return "created";
}

/** A post's or void's own fields: its flags, its pending id, no timeout. */
function postOrVoidRefusal(t: TransferInput): CreateTransferStatus | null {
  const flags = t.flags ?? 0;
  const pendingId = t.pendingId ?? 0n;
  if ((flags & TransferFlags.postPendingTransfer) !== 0 && (flags & TransferFlags.voidPendingTransfer) !== 0)
    return "flags_are_mutually_exclusive";
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
  return null;
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
  const asksWhole =
    (t.flags ?? 0) & TransferFlags.voidPendingTransfer ? t.amount === 0n : asksWholePost(t.amount);
  if (asksWhole ? e.amount !== p.amount : t.amount !== e.amount) return "exists_with_different_amount";
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
