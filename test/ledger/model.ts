// A small reference model of the ledger's semantics, written independently of gateway/ledger/semantics.ts and as
// plainly as possible: whole-state copies for linked chains, one check after another in TigerBeetle's order.
// Slow and obviously right is the point; the property test compares the real ledger with it.
import type {
  Account,
  AccountInput,
  CreateAccountResult,
  CreateTransferResult,
  Transfer,
  TransferInput,
} from "../../gateway/ledger/index.ts";

const MAX = (1n << 63n) - 1n;
const U128_MAX = (1n << 128n) - 1n;
const SECOND = 1_000_000_000n;

type Status = "pending" | "posted" | "voided" | "expired";

type Evidence = NonNullable<TransferInput["evidence"]>;

/** Same rail, reference and detail entries (in any order); none equals only none. */
function sameEvidence(a: Evidence | null, b: Evidence | null): boolean {
  if (a === null || b === null) return a === b;
  const entries = (e: Evidence) =>
    JSON.stringify(Object.entries(e.detail ?? {}).sort(([x], [y]) => (x < y ? -1 : 1)));
  return a.rail === b.rail && a.reference === b.reference && entries(a) === entries(b);
}

export type ModelState = {
  accounts: Map<bigint, Account>;
  transfers: Map<bigint, Transfer>;
  status: Map<bigint, Status>;
  /** Ids spent by a transient failure: kept through a linked chain's rollback (restore leaves it). */
  failed: Set<bigint>;
  /** Whether a transient failure spends its id (the ledger's default); not: the id is evaluated again. */
  sticky: boolean;
  lastTimestamp: bigint;
};

export function newModel(options: { sticky?: boolean } = {}): ModelState {
  return {
    accounts: new Map(),
    transfers: new Map(),
    status: new Map(),
    failed: new Set(),
    sticky: options.sticky ?? true,
    lastTimestamp: 0n,
  };
}

function copy(state: ModelState): ModelState {
  const accounts = new Map<bigint, Account>();
  for (const [id, a] of state.accounts) accounts.set(id, { ...a });
  return {
    accounts,
    transfers: new Map(state.transfers),
    status: new Map(state.status),
    failed: state.failed,
    sticky: state.sticky,
    lastTimestamp: state.lastTimestamp,
  };
}

function restore(target: ModelState, from: ModelState) {
  target.accounts = from.accounts;
  target.transfers = from.transfers;
  target.status = from.status;
}

/** The ledger's timestamp rule: a batch starts after the last timestamp and never before the wall clock. */
function takeTimestamps(state: ModelState, now: bigint, count: number): bigint {
  const first = state.lastTimestamp + 1n > now ? state.lastTimestamp + 1n : now;
  state.lastTimestamp = first + BigInt(count) - 1n;
  return first;
}

/** TigerBeetle's first look at an event: does it import as the request's first does, and is its timestamp right. */
function timestampCheck(
  e: { flags?: number; timestamp?: bigint },
  importing: boolean,
  bit: number,
  last: bigint,
): string | null {
  const flags = e.flags ?? 0;
  const imported = flags >= 0 && flags <= 0xffff && (flags & bit) !== 0;
  if (importing && !imported) return "imported_event_expected";
  if (!importing && imported) return "imported_event_not_expected";
  const ts = e.timestamp;
  if (!imported) return ts === undefined || ts === 0n ? null : "timestamp_must_be_zero";
  if (ts === undefined || ts < 1n || ts > MAX) return "imported_event_timestamp_out_of_range";
  if (ts >= last) return "imported_event_timestamp_must_not_advance";
  return null;
}

function runChains<E extends { flags?: number; timestamp?: bigint }>(
  state: ModelState,
  events: readonly E[],
  first: bigint,
  one: (e: E, ts: bigint) => { status: string; timestamp: bigint },
  importedBit: number,
): { status: string; timestamp: bigint }[] {
  const out: { status: string; timestamp: bigint }[] = [];
  const f0 = events[0]?.flags ?? 0;
  const importing = f0 >= 0 && f0 <= 0xffff && (f0 & importedBit) !== 0;
  const last = first + BigInt(events.length) - 1n;
  let chainStart: number | null = null;
  let saved: ModelState | null = null;
  let broken = false;
  events.forEach((e, i) => {
    const ts = first + BigInt(i);
    const linked = ((e.flags ?? 0) & 1) === 1;
    if (linked && chainStart === null) {
      chainStart = i;
      saved = copy(state);
      broken = false;
    }
    let r: { status: string; timestamp: bigint };
    if (linked && i === events.length - 1) r = { status: "linked_event_chain_open", timestamp: ts };
    else if (broken) r = { status: "linked_event_failed", timestamp: ts };
    else {
      const refused = timestampCheck(e, importing, importedBit, last);
      if (refused !== null) r = { status: refused, timestamp: ts };
      else if (!importing) r = one(e, ts);
      else {
        r = one(e, e.timestamp!);
        if (r.status !== "created" && r.status !== "exists") r = { status: r.status, timestamp: ts };
      }
    }
    if (r.status !== "created" && chainStart !== null && !broken) {
      broken = true;
      restore(state, saved!);
      for (let j = chainStart; j < i; j++)
        out[j] = { status: "linked_event_failed", timestamp: out[j]!.timestamp };
    }
    out.push(r);
    if (chainStart !== null && (!linked || r.status === "linked_event_chain_open")) {
      chainStart = null;
      saved = null;
      broken = false;
    }
  });
  return out;
}

export function modelCreateAccounts(
  state: ModelState,
  now: bigint,
  inputs: readonly AccountInput[],
): CreateAccountResult[] {
  const first = takeTimestamps(state, now, inputs.length);
  return runChains(
    state,
    inputs,
    first,
    (a, ts) => {
      const flags = a.flags ?? 0;
      const ud128 = a.userData128 ?? 0n;
      const ud64 = a.userData64 ?? 0n;
      const ud32 = a.userData32 ?? 0;
      const fail = (status: string) => ({ status, timestamp: ts });
      if ((flags & ~(1 | 2 | 4 | 8 | 16 | 32)) !== 0) return fail("reserved_flag");
      if (a.id === 0n) return fail("id_must_not_be_zero");
      if (a.id === U128_MAX) return fail("id_must_not_be_int_max");
      const e = state.accounts.get(a.id);
      if (e) {
        if (e.flags !== flags) return fail("exists_with_different_flags");
        if (e.userData128 !== ud128) return fail("exists_with_different_user_data_128");
        if (e.userData64 !== ud64) return fail("exists_with_different_user_data_64");
        if (e.userData32 !== ud32) return fail("exists_with_different_user_data_32");
        if (e.ledger !== a.ledger) return fail("exists_with_different_ledger");
        if (e.code !== a.code) return fail("exists_with_different_code");
        return { status: "exists", timestamp: e.timestamp };
      }
      if ((flags & 6) === 6) return fail("flags_are_mutually_exclusive");
      if (a.ledger === 0) return fail("ledger_must_not_be_zero");
      if (a.code === 0) return fail("code_must_not_be_zero");
      if (
        flags & 16 &&
        ([...state.accounts.values()].some((o) => o.timestamp >= ts) || transferAt(state, ts))
      )
        return fail("imported_event_timestamp_must_not_regress");
      state.accounts.set(a.id, {
        id: a.id,
        ledger: a.ledger,
        code: a.code,
        flags,
        userData128: ud128,
        userData64: ud64,
        userData32: ud32,
        debitsPending: 0n,
        debitsPosted: 0n,
        creditsPending: 0n,
        creditsPosted: 0n,
        timestamp: ts,
      });
      return { status: "created", timestamp: ts };
    },
    16,
  ) as CreateAccountResult[];
}

/** Several requests that reach the writer together: one batch, timestamps continuing across requests. */
export function modelCreateTransfers(
  state: ModelState,
  now: bigint,
  requests: readonly (readonly TransferInput[])[],
): CreateTransferResult[][] {
  const total = requests.reduce((n, r) => n + r.length, 0);
  let first = takeTimestamps(state, now, total);
  return requests.map((request) => {
    const results = runChains(state, request, first, (t, ts) => transfer(state, t, ts), imported);
    first += BigInt(request.length);
    return results as CreateTransferResult[];
  });
}

// TigerBeetle's flag bits, by name.
const pending = 2,
  post = 4,
  voidF = 8,
  balDr = 16,
  balCr = 32,
  imported = 256;

const transferAt = (state: ModelState, ts: bigint) =>
  [...state.transfers.values()].some((t) => t.timestamp === ts);
const accountAt = (state: ModelState, ts: bigint) =>
  [...state.accounts.values()].some((a) => a.timestamp === ts);
/** An imported transfer's timestamp: after every transfer's, and no account's. */
const regresses = (state: ModelState, ts: bigint) =>
  [...state.transfers.values()].some((t) => t.timestamp >= ts) || accountAt(state, ts);

type Outcome = { status: string; timestamp: bigint };

/** TigerBeetle's transient results: the id of a transfer that failed with one is spent for good. */
const transient = new Set([
  "debit_account_not_found",
  "credit_account_not_found",
  "pending_transfer_not_found",
  "exceeds_credits",
  "exceeds_debits",
  "debit_account_already_closed",
  "credit_account_already_closed",
]);

function transfer(state: ModelState, t: TransferInput, ts: bigint): Outcome {
  const outcome = evaluate(state, t, ts);
  if (state.sticky && transient.has(outcome.status)) state.failed.add(t.id);
  return outcome;
}

function evaluate(state: ModelState, t: TransferInput, ts: bigint): Outcome {
  const flags = t.flags ?? 0;
  const fail = (status: string) => ({ status, timestamp: ts });
  if ((flags & ~511) !== 0) return fail("reserved_flag");
  if (t.amount < 0n) return fail("amount_must_not_be_negative");
  if (t.amount > U128_MAX) return fail("amount_must_not_exceed_max");
  if (t.id === 0n) return fail("id_must_not_be_zero");
  const e = state.transfers.get(t.id);
  if (e) return transferExists(state, t, e, ts);
  if (state.failed.has(t.id)) return fail("id_already_failed");
  if (flags & (post | voidF)) return postOrVoid(state, t, ts);
  return createNew(state, t, ts);
}

/** A transfer whose id exists: `exists`, or the first field that differs. */
function transferExists(state: ModelState, t: TransferInput, e: Transfer, ts: bigint): Outcome {
  const fail = (status: string) => ({ status, timestamp: ts });
  const flags = t.flags ?? 0;
  const pendingId = t.pendingId ?? 0n;
  const timeout = t.timeout ?? 0;
  if (e.flags !== flags) return fail("exists_with_different_flags");
  if (e.pendingId !== pendingId) return fail("exists_with_different_pending_id");
  if (e.timeout !== timeout) return fail("exists_with_different_timeout");
  if (flags & (post | voidF)) {
    // TigerBeetle's post_or_void_pending_transfer_exists: a zero field asks for the pending transfer's value, so
    // it matches only what the stored post or void took from the pending transfer.
    const p = state.transfers.get(e.pendingId)!;
    if (t.debitAccountId !== 0n && t.debitAccountId !== e.debitAccountId)
      return fail("exists_with_different_debit_account_id");
    if (t.creditAccountId !== 0n && t.creditAccountId !== e.creditAccountId)
      return fail("exists_with_different_credit_account_id");
    const asksWhole = flags & voidF ? t.amount === 0n : t.amount === MAX || t.amount === U128_MAX;
    if (asksWhole ? e.amount !== p.amount : t.amount !== e.amount)
      return fail("exists_with_different_amount");
    const wanted128 = (t.userData128 ?? 0n) === 0n ? p.userData128 : t.userData128;
    if (e.userData128 !== wanted128) return fail("exists_with_different_user_data_128");
    const wanted64 = (t.userData64 ?? 0n) === 0n ? p.userData64 : t.userData64;
    if (e.userData64 !== wanted64) return fail("exists_with_different_user_data_64");
    const wanted32 = (t.userData32 ?? 0) === 0 ? p.userData32 : t.userData32;
    if (e.userData32 !== wanted32) return fail("exists_with_different_user_data_32");
    if (t.ledger !== 0 && t.ledger !== e.ledger) return fail("exists_with_different_ledger");
    if (t.code !== 0 && t.code !== e.code) return fail("exists_with_different_code");
    // Our extension (gateway/ledger/README.md): evidence is compared last; a retry without any matches.
    if (t.evidence !== undefined && !sameEvidence(t.evidence, e.evidence))
      return fail("exists_with_different_evidence");
    return { status: "exists", timestamp: e.timestamp };
  }
  if (t.debitAccountId !== e.debitAccountId) return fail("exists_with_different_debit_account_id");
  if (t.creditAccountId !== e.creditAccountId) return fail("exists_with_different_credit_account_id");
  const amountOk = flags & (balDr | balCr) ? t.amount >= e.amount : t.amount === e.amount;
  if (!amountOk) return fail("exists_with_different_amount");
  if ((t.userData128 ?? 0n) !== e.userData128) return fail("exists_with_different_user_data_128");
  if ((t.userData64 ?? 0n) !== e.userData64) return fail("exists_with_different_user_data_64");
  if ((t.userData32 ?? 0) !== e.userData32) return fail("exists_with_different_user_data_32");
  if (t.ledger !== e.ledger) return fail("exists_with_different_ledger");
  if (t.code !== e.code) return fail("exists_with_different_code");
  // Our extension (gateway/ledger/README.md): evidence is compared last.
  if (!sameEvidence(t.evidence ?? null, e.evidence)) return fail("exists_with_different_evidence");
  return { status: "exists", timestamp: e.timestamp };
}

/** A post or void of a pending transfer. */
function postOrVoid(state: ModelState, t: TransferInput, ts: bigint): Outcome {
  const fail = (status: string) => ({ status, timestamp: ts });
  const flags = t.flags ?? 0;
  const pendingId = t.pendingId ?? 0n;
  const timeout = t.timeout ?? 0;
  if (flags & post && flags & voidF) return fail("flags_are_mutually_exclusive");
  if (flags & (pending | balDr | balCr | 64 | 128)) return fail("flags_are_mutually_exclusive");
  if (pendingId === 0n) return fail("pending_id_must_not_be_zero");
  if (pendingId === t.id) return fail("pending_id_must_be_different");
  if (timeout !== 0) return fail("timeout_reserved_for_pending_transfer");
  const p = state.transfers.get(pendingId);
  if (!p) return fail("pending_transfer_not_found");
  if (!(p.flags & pending)) return fail("pending_transfer_not_pending");
  if (t.debitAccountId !== 0n && t.debitAccountId !== p.debitAccountId)
    return fail("pending_transfer_has_different_debit_account_id");
  if (t.creditAccountId !== 0n && t.creditAccountId !== p.creditAccountId)
    return fail("pending_transfer_has_different_credit_account_id");
  if (t.ledger !== 0 && t.ledger !== p.ledger) return fail("pending_transfer_has_different_ledger");
  if (t.code !== 0 && t.code !== p.code) return fail("pending_transfer_has_different_code");
  const amount =
    flags & voidF
      ? t.amount === 0n
        ? p.amount
        : t.amount
      : t.amount === MAX || t.amount === U128_MAX
        ? p.amount
        : t.amount;
  if (amount > p.amount) return fail("exceeds_pending_transfer_amount");
  if (flags & voidF && amount < p.amount) return fail("pending_transfer_has_different_amount");
  const status = state.status.get(p.id);
  if (status === "posted") return fail("pending_transfer_already_posted");
  if (status === "voided") return fail("pending_transfer_already_voided");
  if (status === "expired") return fail("pending_transfer_expired");
  if (p.timeout > 0 && p.timestamp + BigInt(p.timeout) * SECOND <= ts)
    return fail("pending_transfer_expired");
  if (flags & imported && regresses(state, ts)) return fail("imported_event_timestamp_must_not_regress");
  const dr = state.accounts.get(p.debitAccountId)!;
  const cr = state.accounts.get(p.creditAccountId)!;
  // TigerBeetle: the only movement a closed account allows is a void (which reopens it if the pending transfer
  // closed it); a closing transfer cannot be posted.
  if (!(flags & voidF)) {
    if (dr.flags & 32) return fail("debit_account_already_closed");
    if (cr.flags & 32) return fail("credit_account_already_closed");
  }
  dr.debitsPending -= p.amount;
  cr.creditsPending -= p.amount;
  if (flags & post) {
    dr.debitsPosted += amount;
    cr.creditsPosted += amount;
    state.status.set(p.id, "posted");
  } else {
    if (p.flags & 64) dr.flags &= ~32;
    if (p.flags & 128) cr.flags &= ~32;
    state.status.set(p.id, "voided");
  }
  state.transfers.set(t.id, {
    id: t.id,
    debitAccountId: p.debitAccountId,
    creditAccountId: p.creditAccountId,
    amount,
    ledger: p.ledger,
    code: p.code,
    flags,
    pendingId,
    timeout: 0,
    userData128: (t.userData128 ?? 0n) || p.userData128,
    userData64: (t.userData64 ?? 0n) || p.userData64,
    userData32: (t.userData32 ?? 0) || p.userData32,
    timestamp: ts,
    evidence: t.evidence ?? p.evidence,
  });
  return { status: "created", timestamp: ts };
}

/** A single-phase or pending transfer. */
function createNew(state: ModelState, t: TransferInput, ts: bigint): Outcome {
  const fail = (status: string) => ({ status, timestamp: ts });
  const flags = t.flags ?? 0;
  const pendingId = t.pendingId ?? 0n;
  const timeout = t.timeout ?? 0;
  if (t.debitAccountId === 0n) return fail("debit_account_id_must_not_be_zero");
  if (t.creditAccountId === 0n) return fail("credit_account_id_must_not_be_zero");
  if (t.debitAccountId === t.creditAccountId) return fail("accounts_must_be_different");
  if (pendingId !== 0n) return fail("pending_id_must_be_zero");
  if (!(flags & pending)) {
    if (timeout !== 0) return fail("timeout_reserved_for_pending_transfer");
    if (flags & (64 | 128)) return fail("closing_transfer_must_be_pending");
  }
  if (t.ledger === 0) return fail("ledger_must_not_be_zero");
  if (t.code === 0) return fail("code_must_not_be_zero");
  const dr = state.accounts.get(t.debitAccountId);
  if (!dr) return fail("debit_account_not_found");
  const cr = state.accounts.get(t.creditAccountId);
  if (!cr) return fail("credit_account_not_found");
  if (dr.ledger !== cr.ledger) return fail("accounts_must_have_the_same_ledger");
  if (t.ledger !== dr.ledger) return fail("transfer_must_have_the_same_ledger_as_accounts");
  if (flags & imported) {
    if (regresses(state, ts)) return fail("imported_event_timestamp_must_not_regress");
    if (ts <= dr.timestamp) return fail("imported_event_timestamp_must_postdate_debit_account");
    if (ts <= cr.timestamp) return fail("imported_event_timestamp_must_postdate_credit_account");
    if (timeout !== 0) return fail("imported_event_timeout_must_be_zero");
  }
  if (dr.flags & 32) return fail("debit_account_already_closed");
  if (cr.flags & 32) return fail("credit_account_already_closed");
  let amount = t.amount;
  if (flags & balDr) {
    const room = dr.creditsPosted - dr.debitsPosted - dr.debitsPending;
    if (room < amount) amount = room < 0n ? 0n : room;
  }
  if (flags & balCr) {
    const room = cr.debitsPosted - cr.creditsPosted - cr.creditsPending;
    if (room < amount) amount = room < 0n ? 0n : room;
  }
  if (flags & pending) {
    if (dr.debitsPending + amount > MAX) return fail("overflows_debits_pending");
    if (cr.creditsPending + amount > MAX) return fail("overflows_credits_pending");
  }
  if (dr.debitsPosted + amount > MAX) return fail("overflows_debits_posted");
  if (cr.creditsPosted + amount > MAX) return fail("overflows_credits_posted");
  if (dr.debitsPosted + dr.debitsPending + amount > MAX) return fail("overflows_debits");
  if (cr.creditsPosted + cr.creditsPending + amount > MAX) return fail("overflows_credits");
  if (dr.flags & 2 && dr.debitsPending + dr.debitsPosted + amount > dr.creditsPosted)
    return fail("exceeds_credits");
  if (cr.flags & 4 && cr.creditsPending + cr.creditsPosted + amount > cr.debitsPosted)
    return fail("exceeds_debits");
  if (flags & pending) {
    dr.debitsPending += amount;
    cr.creditsPending += amount;
    if (flags & 64) dr.flags |= 32;
    if (flags & 128) cr.flags |= 32;
    state.status.set(t.id, "pending");
  } else {
    dr.debitsPosted += amount;
    cr.creditsPosted += amount;
  }
  state.transfers.set(t.id, {
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
    timestamp: ts,
    evidence: t.evidence ?? null,
  });
  return { status: "created", timestamp: ts };
}

/** Expires every pending transfer whose timeout has passed by `now`; one timestamp for the sweep. */
/** A sweep that expires something takes one timestamp; one that finds nothing due changes nothing. */
export function modelExpire(state: ModelState, now: bigint): number {
  let count = 0;
  for (const [id, status] of state.status) {
    if (status !== "pending") continue;
    const p = state.transfers.get(id)!;
    if (p.timeout === 0 || p.timestamp + BigInt(p.timeout) * SECOND > now) continue;
    const dr = state.accounts.get(p.debitAccountId)!;
    const cr = state.accounts.get(p.creditAccountId)!;
    dr.debitsPending -= p.amount;
    cr.creditsPending -= p.amount;
    if (p.flags & 64) dr.flags &= ~32;
    if (p.flags & 128) cr.flags &= ~32;
    state.status.set(id, "expired");
    count++;
  }
  if (count > 0) takeTimestamps(state, now, 1);
  return count;
}
