// Postings: what the services do to the ledger, in their words. Open accounts under a balance rule; reserve funds
// (a pending transfer) and later post or void the reservation; credit an account; debit one that may be short;
// take back at most what an account holds; reverse a transfer; hold, post, void or reverse the legs of one event
// (a chain that is written all or none). TigerBeetle's result codes and flag bits stay in here: a service sees the
// closed set of outcomes it can act on, and anything else the ledger answers is a bug on our side (a
// LedgerPostingError).
//
// Each operation is one createAccounts, createTransfers (or createTransfersWith) call, so it goes through the
// ledger's group-commit writer exactly as a direct call would; reverse and takeBack add one lookup, and a chain of
// legs one more only when the ledger refuses some of it (to tell a retried chain from a refused one).
import { SwitchyardError } from "../../core/index.ts";
import type { Row, Sql, Statement } from "../db/index.ts";
import type { Ledger } from "./ledger.ts";
import {
  AccountFlags,
  type AccountInput,
  type CreateTransferStatus,
  ledgerHolds,
  type TransferEvidence,
  TransferFlags,
  type TransferInput,
} from "./types.ts";

/** Money from one account to another: what every posting names. */
export type Posting = {
  debitAccountId: bigint;
  creditAccountId: bigint;
  amount: bigint;
  ledger: number;
  /** A transfer code from the registry (codes.ts). */
  code: number;
};

/** The transfer a posting writes: its id (derived by the caller, so that a repeat changes nothing) and annotations. */
export type PostingTransfer = {
  id: bigint;
  userData128?: bigint;
  evidence?: TransferEvidence;
  /** What the transfer is, for the error if the ledger refuses it (e.g. "the receipt of invoice inv_…"). */
  label?: string;
};

/** Funds held by a pending transfer: what its post or void repeats. */
export type Reservation = Posting & { pendingId: bigint };

/**
 * The ledger refused a posting for a reason the caller cannot act on (an account missing, a transfer id taken by
 * another with different fields, …): a bug or broken data, never an expected business failure.
 */
export class LedgerPostingError extends SwitchyardError {
  override name = "LedgerPostingError";
  /** The ledger's result code. */
  readonly result: string;
  constructor(label: string, result: string) {
    super(`ledger refused ${label}`, { details: `result: ${result}` });
    this.result = result;
  }
}

function refused(transfer: PostingTransfer, result: string | undefined): LedgerPostingError {
  return new LedgerPostingError(transfer.label ?? `transfer ${transfer.id}`, result ?? "no result");
}

function transferInput(posting: Posting, transfer: PostingTransfer, flags: number): TransferInput {
  const input: TransferInput = {
    id: transfer.id,
    debitAccountId: posting.debitAccountId,
    creditAccountId: posting.creditAccountId,
    amount: posting.amount,
    ledger: posting.ledger,
    code: posting.code,
  };
  if (flags !== 0) input.flags = flags;
  if (transfer.userData128 !== undefined) input.userData128 = transfer.userData128;
  if (transfer.evidence !== undefined) input.evidence = transfer.evidence;
  return input;
}

/**
 * Short of funds, in the ledger's words: `exceeds_credits` is the debit account (credit-normal, a tenant's
 * balance) that would be overdrawn; `exceeds_debits` the credit account (debit-normal, a rail's clearing account)
 * that would go below zero, i.e. the rail does not hold that much.
 */
function shortfallOf(
  status: CreateTransferStatus | undefined,
): "insufficient_funds" | "insufficient_liquidity" | null {
  if (status === "exceeds_credits") return "insufficient_funds";
  if (status === "exceeds_debits") return "insufficient_liquidity";
  return null;
}

/**
 * `rejected`: the ledger refused for another reason than a shortfall (the accounts do not take this transfer: a
 * closed account, another ledger, a balance that would overflow). Not thrown: the funds were not held, and the
 * caller fails what it was doing cleanly, with the payment row it wrote beside the reservation.
 */
export type ReserveOutcome = "reserved" | "insufficient_funds" | "insufficient_liquidity" | "rejected";

/**
 * Holds `posting.amount` on the debit account with a pending transfer. `alongside`, when given, is written in the
 * same transaction whatever the ledger answers (its rows come back); otherwise `rows` is null. Reserving again
 * under the same id answers `reserved` without holding twice.
 */
export async function reserve(
  ledger: Ledger,
  posting: Posting,
  transfer: PostingTransfer & { alongside?: Statement | null },
): Promise<{ outcome: ReserveOutcome; rows: Row[] | null }> {
  const input = transferInput(posting, transfer, TransferFlags.pending);
  const alongside = transfer.alongside ?? null;
  const { results, rows } =
    alongside === null
      ? { results: await ledger.createTransfers([input]), rows: null }
      : await ledger.createTransfersWith([input], { statement: () => alongside });
  const status = results[0]?.status;
  if (ledgerHolds(status)) return { outcome: "reserved", rows };
  // A reservation never made gives no result at all only through a bug in the writer.
  if (status === undefined) throw refused(transfer, status);
  return { outcome: shortfallOf(status) ?? "rejected", rows };
}

/** The reservation made under `pendingId`, or null when the ledger has none (it was never made). */
export async function findReservation(ledger: Ledger, pendingId: bigint): Promise<Reservation | null> {
  const [found] = await ledger.lookupTransfers([pendingId]);
  if (found === undefined) return null;
  return {
    pendingId,
    debitAccountId: found.debitAccountId,
    creditAccountId: found.creditAccountId,
    amount: found.amount,
    ledger: found.ledger,
    code: found.code,
  };
}

/**
 * Posts (`post`) or voids (`void`) a reservation in full, and writes `alongside` in the same transaction only
 * if the ledger holds the post or void (made now, or by an earlier call with the same id); returns its rows.
 */
export async function resolveReservation(
  ledger: Ledger,
  how: "post" | "void",
  reservation: Reservation,
  transfer: PostingTransfer & { alongside: Statement },
): Promise<Row[]> {
  const input = resolutionInput(reservation, transfer, how);
  const { results, rows } = await ledger.createTransfersWith([input], {
    statement: ([result]) => (ledgerHolds(result?.status) ? transfer.alongside : null),
  });
  const status = results[0]?.status;
  if (!ledgerHolds(status) || rows === null) throw refused(transfer, status);
  return rows;
}

/** The post or void of a reservation in full: its accounts, amount, ledger and code, and its pending id. */
function resolutionInput(
  reservation: Reservation,
  transfer: PostingTransfer,
  how: "post" | "void",
): TransferInput {
  const flags = how === "post" ? TransferFlags.postPendingTransfer : TransferFlags.voidPendingTransfer;
  return { ...transferInput(reservation, transfer, flags), pendingId: reservation.pendingId };
}

/** Posts a reservation: the held funds move. See resolveReservation. */
export const postReservation = (
  ledger: Ledger,
  reservation: Reservation,
  transfer: PostingTransfer & { alongside: Statement },
): Promise<Row[]> => resolveReservation(ledger, "post", reservation, transfer);

/** Voids a reservation: the held funds are released. See resolveReservation. */
export const voidReservation = (
  ledger: Ledger,
  reservation: Reservation,
  transfer: PostingTransfer & { alongside: Statement },
): Promise<Row[]> => resolveReservation(ledger, "void", reservation, transfer);

/** How one of moveEach's postings ended: moved (now, or by an earlier call with the same id), or why not. */
export type MoveOutcome = "moved" | Exclude<ReserveOutcome, "reserved">;

/**
 * Moves each posting at once (no reservation: posted transfers), each on its own — one short payer refuses only
 * its own — in one ledger request, and writes the statement `alongside` builds from the outcomes in the same
 * transaction (always: it records the refusals too). `alongside` also has the ledger's own results, for a caller
 * that tells a refusal's reasons apart (an overflow from a closed account). Returns the outcomes and that
 * statement's rows.
 */
export async function moveEach(
  ledger: Ledger,
  moves: readonly { posting: Posting; transfer: PostingTransfer }[],
  alongside: (outcomes: readonly MoveOutcome[], statuses: readonly CreateTransferStatus[]) => Statement,
): Promise<{ outcomes: MoveOutcome[]; rows: Row[] }> {
  const outcomesOf = (results: readonly { status: CreateTransferStatus }[]): MoveOutcome[] =>
    results.map((result) =>
      ledgerHolds(result.status) ? "moved" : (shortfallOf(result.status) ?? "rejected"),
    );
  const { results, rows } = await ledger.createTransfersWith(
    moves.map((move) => transferInput(move.posting, move.transfer, 0)),
    {
      statement: (made) =>
        alongside(
          outcomesOf(made),
          made.map((result) => result.status),
        ),
    },
  );
  if (rows === null || results.length !== moves.length)
    throw refused(moves[0]!.transfer, "no result for every posting");
  return { outcomes: outcomesOf(results), rows };
}

/**
 * Moves money that must be there to move (money in from a rail's clearing account, a paid batch out of the payable
 * account). `conflict`: a transfer with this id exists and differs (an earlier delivery of the same event with
 * other details); a repeat with the same details is `credited`.
 */
export async function credit(
  ledger: Ledger,
  posting: Posting,
  transfer: PostingTransfer,
): Promise<"credited" | "conflict"> {
  const [result] = await ledger.createTransfers([transferInput(posting, transfer, 0)]);
  const status = result?.status;
  if (ledgerHolds(status)) return "credited";
  if (status?.startsWith("exists_with_different_") === true) return "conflict";
  throw refused(transfer, status);
}

/**
 * Moves money out of a tenant's account that may not hold it (into an account that takes any amount, such as a
 * rail's payable account): nothing moves when it is short. `alongside`, when given, is written in the same
 * transaction only if the debit is made (now, or by an earlier call with the same id).
 */
export async function debit(
  ledger: Ledger,
  posting: Posting,
  transfer: PostingTransfer & { alongside?: Statement },
): Promise<"debited" | "insufficient_funds"> {
  const input = transferInput(posting, transfer, 0);
  const alongside = transfer.alongside;
  const [result] =
    alongside === undefined
      ? await ledger.createTransfers([input])
      : (
          await ledger.createTransfersWith([input], {
            statement: ([made]) => (ledgerHolds(made?.status) ? alongside : null),
          })
        ).results;
  const status = result?.status;
  if (ledgerHolds(status)) return "debited";
  if (shortfallOf(status) === "insufficient_funds") return "insufficient_funds";
  throw refused(transfer, status);
}

/**
 * Takes back up to `posting.amount` from the debit account, never more than it holds (a balancing debit); returns
 * what was taken, also when an earlier call with the same id took it.
 */
export async function takeBack(ledger: Ledger, posting: Posting, transfer: PostingTransfer): Promise<bigint> {
  const [result] = await ledger.createTransfers([
    transferInput(posting, transfer, TransferFlags.balancingDebit),
  ]);
  if (!ledgerHolds(result?.status)) throw refused(transfer, result?.status);
  const [taken] = await ledger.lookupTransfers([transfer.id]);
  return taken?.amount ?? 0n;
}

/**
 * Moves back what transfer `of` moved (its accounts swapped, its amount and ledger), under `transfer.id` and
 * `code`; returns that amount. When `of` does not exist or moved nothing, nothing is written and 0 is returned.
 */
export async function reverse(
  ledger: Ledger,
  of: bigint,
  code: number,
  transfer: PostingTransfer,
): Promise<bigint> {
  const [original] = await ledger.lookupTransfers([of]);
  if (original === undefined || original.amount === 0n) return 0n;
  const [result] = await ledger.createTransfers([transferInput(swapped(original, code), transfer, 0)]);
  if (!ledgerHolds(result?.status)) throw refused(transfer, result?.status);
  return original.amount;
}

/** What moves `posting` back: its accounts swapped, its amount and ledger, under `code`. */
function swapped(posting: Posting, code: number): Posting {
  return {
    debitAccountId: posting.creditAccountId,
    creditAccountId: posting.debitAccountId,
    amount: posting.amount,
    ledger: posting.ledger,
    code,
  };
}

/**
 * What an account's balance may never do: `debits_within_credits` for a credit-normal account that is never
 * overdrawn (a tenant's balance), `credits_within_debits` for a debit-normal one that never goes below zero (a
 * rail's clearing account), `none` for one that records whatever it is told (the chain's mirror).
 */
export type BalanceRule = "debits_within_credits" | "credits_within_debits" | "none";

const balanceRuleFlags: Record<BalanceRule, number> = {
  debits_within_credits: AccountFlags.debitsMustNotExceedCredits,
  credits_within_debits: AccountFlags.creditsMustNotExceedDebits,
  none: 0,
};

/** An account to open: its id (derived by the caller, so that opening it again changes nothing) and its rule. */
export type AccountSpec = {
  id: bigint;
  ledger: number;
  /** An account code from the registry (codes.ts). */
  code: number;
  balance: BalanceRule;
};

/**
 * Opens the accounts in one createAccounts call; an account already open with the same fields counts as opened.
 * Throws a LedgerPostingError naming the first account the ledger refused (`label`, or its id).
 */
export async function openAccounts(
  ledger: Ledger,
  specs: readonly AccountSpec[],
  label?: (spec: AccountSpec) => string,
): Promise<void> {
  const results = await ledger.createAccounts(
    specs.map((spec) => {
      const input: AccountInput = { id: spec.id, ledger: spec.ledger, code: spec.code };
      const flags = balanceRuleFlags[spec.balance];
      if (flags !== 0) input.flags = flags;
      return input;
    }),
  );
  results.forEach((result, i) => {
    const spec = specs[i];
    if (ledgerHolds(result.status) || spec === undefined) return;
    throw new LedgerPostingError(label?.(spec) ?? `account ${spec.id}`, result.status);
  });
}

/** One leg of a chain: money from one account to another, under its own transfer id. */
export type Leg = { posting: Posting; transfer: PostingTransfer };

/** One leg of a held chain, to post or void: its reservation, and the id of the post or void. */
export type HeldLeg = { reservation: Reservation; transfer: PostingTransfer };

/**
 * What a chain's write may answer and still count as done: made now or earlier, or a post or void whose pending
 * transfer was already resolved (by an earlier post or void of the same leg).
 */
const legAccepted = new Set<string>([
  "created",
  "exists",
  "pending_transfer_already_posted",
  "pending_transfer_already_voided",
]);

/**
 * Writes the transfers of a chain in one createTransfers call (nothing when there are none). When the ledger
 * refuses some, a retry of a chain whose members all exist already is success too (one lookup tells); otherwise a
 * LedgerPostingError names `label` and the first refusal.
 */
async function writeLegs(ledger: Ledger, label: string, transfers: TransferInput[]): Promise<void> {
  if (transfers.length === 0) return;
  const results = await ledger.createTransfers(transfers);
  if (results.every((result) => legAccepted.has(result.status))) return;
  const found = await ledger.lookupTransfers(transfers.map((t) => t.id));
  if (found.length === transfers.length) return;
  const refusal = results.find((result) => !legAccepted.has(result.status));
  throw new LedgerPostingError(label, refusal?.status ?? "no result");
}

/** Every leg but the last carries `linked`: the chain is written all or none. */
const linkedUnlessLast = (index: number, count: number): number =>
  index < count - 1 ? TransferFlags.linked : 0;

/**
 * Holds each leg's amount with a pending transfer, the legs as one linked chain (all or none). `label` says what
 * the chain is, for the error if the ledger refuses it.
 */
export function holdLegs(ledger: Ledger, legs: readonly Leg[], label: string): Promise<void> {
  return writeLegs(
    ledger,
    label,
    legs.map(({ posting, transfer }, i) =>
      transferInput(posting, transfer, TransferFlags.pending | linkedUnlessLast(i, legs.length)),
    ),
  );
}

function resolveLegs(
  ledger: Ledger,
  how: "post" | "void",
  legs: readonly HeldLeg[],
  label: string,
): Promise<void> {
  return writeLegs(
    ledger,
    label,
    legs.map(({ reservation, transfer }) => resolutionInput(reservation, transfer, how)),
  );
}

/**
 * Posts each held leg in full, each on its own (not linked). A leg whose pending transfer is already resolved
 * (posted, or voided by a reorg that came first) is not an error: the chain's record says what happened.
 */
export const postLegs = (ledger: Ledger, legs: readonly HeldLeg[], label: string): Promise<void> =>
  resolveLegs(ledger, "post", legs, label);

/** Voids each held leg, each on its own (not linked); as postLegs, a leg already resolved is not an error. */
export const voidLegs = (ledger: Ledger, legs: readonly HeldLeg[], label: string): Promise<void> =>
  resolveLegs(ledger, "void", legs, label);

/**
 * Moves back what each leg moved (its accounts swapped, its amount and ledger, under `code` and the leg's
 * transfer id), the reversals as one linked chain (all or none). Unlike `reverse`, the legs are given, not looked
 * up.
 */
export function reverseLegs(
  ledger: Ledger,
  legs: readonly Leg[],
  code: number,
  label: string,
): Promise<void> {
  return writeLegs(
    ledger,
    label,
    legs.map(({ posting, transfer }, i) =>
      transferInput(swapped(posting, code), transfer, linkedUnlessLast(i, legs.length)),
    ),
  );
}

/**
 * `credit` for legs written as one linked chain (all or none): money in and what moves on from it at once (an
 * invoice's receipt and its split shares). A retry of a chain the ledger has whole is `credited`; a member that
 * exists with other details is `conflict`; any other refusal throws a LedgerPostingError naming `label`.
 */
export async function creditChain(
  ledger: Ledger,
  legs: readonly Leg[],
  label: string,
): Promise<"credited" | "conflict"> {
  const inputs = legs.map(({ posting, transfer }, i) =>
    transferInput(posting, transfer, linkedUnlessLast(i, legs.length)),
  );
  const results = await ledger.createTransfers(inputs);
  if (results.length === inputs.length && results.every((result) => result.status === "created"))
    return "credited";
  if (results.some((result) => result.status.startsWith("exists_with_different_"))) return "conflict";
  const found = await ledger.lookupTransfers(inputs.map((input) => input.id));
  if (found.length === inputs.length) return "credited";
  const refusal = results.find(
    (result) => result.status !== "linked_event_failed" && result.status !== "exists",
  )?.status;
  throw new LedgerPostingError(label, refusal ?? "no result");
}

/** One member of a chain written with a statement: a hold, the post or void of a hold, or a posted move. */
export type ChainMember =
  | { kind: "hold" | "move"; posting: Posting; transfer: PostingTransfer }
  /** `amount`, on a post, posts less than was held (the rest is released); absent: all of it. */
  | { kind: "post" | "void"; reservation: Reservation; transfer: PostingTransfer; amount?: bigint };

function chainInput(member: ChainMember, flags: number): TransferInput {
  switch (member.kind) {
    case "hold":
      return transferInput(member.posting, member.transfer, TransferFlags.pending | flags);
    case "move":
      return transferInput(member.posting, member.transfer, flags);
    case "post":
    case "void": {
      const input = resolutionInput(member.reservation, member.transfer, member.kind);
      input.flags = (input.flags ?? 0) | flags;
      if (member.kind === "post" && member.amount !== undefined) input.amount = member.amount;
      return input;
    }
  }
}

/**
 * Writes the members as one linked chain (all or none), with `alongside`: written in the same transaction
 * `always` (it records a refusal too) or only when the ledger `held` every member. A chain any member of which
 * the ledger already has breaks, as in TigerBeetle; when every member exists (a retry) that is success, and a
 * `held` statement is then written on its own, as a repeat of a single transfer would be. A refusal that is not a
 * shortfall throws a LedgerPostingError naming `label`, unless `alongside` is `always` (then it is `rejected`).
 * `underLock`: the statement is written with the chain under the ledger's lock (Alongside.underLock). Not on a retry
 * the ledger already had whole: there it is written on its own through `sql`, unlocked, which is safe only for a
 * statement that records nothing then — as the give-backs' do: their gates are closed (what they record was committed
 * with the chain), or they have nothing to record.
 */
export async function writeChainWith(
  ledger: Ledger,
  members: readonly ChainMember[],
  alongside:
    | { statement: Statement | null; when: "always" }
    /** `sql` writes the statement on its own for a retry the ledger already had whole. */
    | { statement: Statement; when: "held"; sql: Sql; underLock?: boolean },
  label: string,
): Promise<{ outcome: ReserveOutcome; rows: Row[] | null }> {
  const inputs = members.map((member, i) => chainInput(member, linkedUnlessLast(i, members.length)));
  const statement = alongside.statement;
  const { results, rows } = await ledger.createTransfersWith(inputs, {
    statement: (made) =>
      alongside.when === "always" || made.every((result) => result.status === "created") ? statement : null,
    underLock: alongside.when === "held" && alongside.underLock === true,
  });
  if (results.length === inputs.length && results.every((result) => result.status === "created"))
    return { outcome: "reserved", rows };
  const found = await ledger.lookupTransfers(inputs.map((input) => input.id));
  if (found.length === inputs.length) {
    if (alongside.when === "always") return { outcome: "reserved", rows };
    return {
      outcome: "reserved",
      rows: await alongside.sql.query(alongside.statement.text, alongside.statement.params),
    };
  }
  const refusal = results.find(
    (result) => result.status !== "linked_event_failed" && result.status !== "exists",
  )?.status;
  const shortfall = shortfallOf(refusal);
  if (shortfall !== null) return { outcome: shortfall, rows };
  if (alongside.when === "always") return { outcome: "rejected", rows };
  throw new LedgerPostingError(label, refusal ?? "no result");
}
