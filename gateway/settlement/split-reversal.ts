// Taking back an invoice's split: what each payee was credited from an invoice, what has been taken back of it
// since, and each payee's part of an amount taken back — the one rule a reversal of the invoice's money (a dispute,
// a reorg: applyReversed) and a refund of it (payments/refunds.ts, as Stripe's reverse_transfer) both follow.
//
// - Credited: the payee's share transfers of the invoice's receipts, as the ledger holds them (one per receipt,
//   each floored when it was credited), not the split's basis points applied again.
// - Taken back: the payee's legs of the invoice's reversals not given back, with what each could not take of it (its
//   shortfall, owed and collected later), and of its refunds not failed (held or posted). Read before the legs are
//   written, after the version of the invoice's `refundable` row: a refund's claim and a reversal's legs are each
//   written with a change of that row that passes only if it is still that version, and a reversal given back moves
//   it (settlement/invoices.ts applyReinstated), which serialises the refunds and reversals of an invoice and their
//   giving back (see takeBackShares for why that keeps them within the credit whatever their order).
// - A payee's part of an amount taken back: proportional to its credit, floored, of all that the invoice's refunds
//   and reversals will have taken back once this one has, less what they took from it before — never more than what
//   is left of its credit; the rest is the seller's (the invoice's account).
//
// Every ledger id of these legs is derived here, from the invoice, the receipt, the reversal or the refund and the
// payee's account id, so that a repeat writes nothing twice and every reader finds the same transfers.
import { divFloor, SwitchyardError } from "../../core/index.ts";
import type { AccountCache } from "../accounts/index.ts";
import type { Row, Sql, Statement } from "../db/index.ts";
import { derivedLedgerId } from "../ids/index.ts";
import {
  type Ledger,
  LedgerPostingError,
  type Posting,
  type PostingTransfer,
  TransferFlags,
} from "../ledger/index.ts";

/** A split's payees as an invoice carries them: account ids and basis points. */
export type SplitShareSpec = readonly { readonly accountId: string; readonly basisPoints: number }[];

/**
 * A split with each account once, its basis points summed (in the order each account first came): every share of a
 * receipt is a transfer named after the receipt and its account, so two shares to one account (two payees paid to
 * the same account) would be one id twice, and the receipt's credit refused for ever.
 */
export function mergedSplit(split: SplitShareSpec): SplitShareSpec {
  const merged = new Map<string, number>();
  for (const share of split)
    merged.set(share.accountId, (merged.get(share.accountId) ?? 0) + share.basisPoints);
  return [...merged].map(([accountId, basisPoints]) => ({ accountId, basisPoints }));
}

/** The ledger transfer that credited a receipt of an invoice: its one receipt, or the one named `key`. */
export const receiptLedgerId = (invoiceId: string, key?: string): bigint =>
  key === undefined
    ? derivedLedgerId(invoiceId, "received")
    : derivedLedgerId(`${invoiceId}:${key}`, "received");

/** The transfer that moved a payee's share of the receipt credited by `receiptId`, from the seller to the payee. */
export const receiptShareLedgerId = (receiptId: bigint, accountId: string): bigint =>
  derivedLedgerId(`${receiptId}:${accountId}`, "share");

/** The ledger transfer that took a payee's share of reversal `key` of an invoice, or the one that gave it back. */
export const reversalShareLedgerId = (
  invoiceId: string,
  key: string,
  accountId: string,
  which: "reversed" | "reinstated",
): bigint => derivedLedgerId(`${invoiceId}:${key}:${accountId}`, `share-${which}`);

/** A payee's leg of a refund: its hold, the hold's post or void, and the undoing of its post. */
export const refundShareLedgerId = (
  refundId: string,
  accountId: string,
  which: "hold" | "post" | "void" | "undone",
): bigint => derivedLedgerId(`${refundId}:${accountId}`, `refund-share-${which}`);

/**
 * A payee of an invoice's split: its ledger account, what the invoice credited it and what was taken back since (a
 * reversal's shortfall on it included: owed).
 */
export type SplitPayee = {
  accountId: string;
  ledgerAccountId: bigint;
  credited: bigint;
  takenBack: bigint;
};

/** One payee's part of an amount taken back. */
export type PayeeShare = { accountId: string; ledgerAccountId: bigint; amount: bigint };

/** A split naming an account that is gone, or a ledger answer that cannot be: a bug or broken data. */
export class SplitInvariantError extends SwitchyardError {
  override name = "SplitInvariantError";
}

/**
 * The payees of an invoice's split (none without one), each with what it was credited from the invoice and what
 * has been taken back of that by its reversals (what they could not take included) and refunds. `exceptReversal`: a
 * reversal left out (the one being applied, whose own legs may exist from a run a crash cut short).
 */
export async function splitPayees(
  deps: { db: Sql; ledger: Ledger; accounts: Pick<AccountCache, "tenantAccount"> },
  invoice: { id: string; tenantId: string; split: SplitShareSpec | null },
  options: { exceptReversal?: string } = {},
): Promise<SplitPayee[]> {
  if (invoice.split === null || invoice.split.length === 0) return [];
  const receipts = await deps.db.query<{ key: string }>(
    "SELECT key FROM invoice_receipts WHERE invoice_id = $1",
    [invoice.id],
  );
  const receiptIds = [
    receiptLedgerId(invoice.id),
    ...receipts.map((r) => receiptLedgerId(invoice.id, r.key)),
  ];
  const reversals = await deps.db.query<{ key: string }>(
    "SELECT key FROM invoice_reversals WHERE invoice_id = $1 AND reinstated_at IS NULL",
    [invoice.id],
  );
  const reversalKeys = reversals.map((r) => r.key).filter((key) => key !== options.exceptReversal);
  // What a reversal could not take of a payee (its shortfall, collected from what comes back to it later:
  // shortfalls.ts) is owed all the same: a refund after a dashboard refund that was short on a payee would otherwise
  // take that part again, and its collection a second time.
  const shortfalls = await deps.db.query<{ reversal_key: string; account_id: string; amount: bigint }>(
    `SELECT s.reversal_key, s.account_id, s.amount FROM reversal_shortfalls s
       JOIN invoice_reversals r ON r.invoice_id = s.invoice_id AND r.key = s.reversal_key
     WHERE s.invoice_id = $1 AND r.reinstated_at IS NULL`,
    [invoice.id],
  );
  const refunds = await deps.db.query<{ id: string }>(
    "SELECT id FROM refunds WHERE invoice_id = $1 AND tenant_id = $2 AND status <> 'failed'",
    [invoice.id, invoice.tenantId],
  );
  const payees: SplitPayee[] = [];
  for (const share of invoice.split) {
    const account = await deps.accounts.tenantAccount({ tenantId: invoice.tenantId, id: share.accountId });
    if (account === null)
      throw new SplitInvariantError(
        `invoice ${invoice.id} splits to account ${share.accountId}, which is gone`,
      );
    const credited = await sumOf(
      deps.ledger,
      receiptIds.map((receipt) => receiptShareLedgerId(receipt, share.accountId)),
    );
    const takenBack = await sumOf(deps.ledger, [
      ...reversalKeys.map((key) => reversalShareLedgerId(invoice.id, key, share.accountId, "reversed")),
      ...refunds.map((refund) => refundShareLedgerId(refund.id, share.accountId, "hold")),
    ]);
    const owed = shortfalls
      .filter((s) => s.account_id === share.accountId && s.reversal_key !== options.exceptReversal)
      .reduce((sum, s) => sum + BigInt(s.amount), 0n);
    payees.push({
      accountId: share.accountId,
      ledgerAccountId: account.ledgerAccountId,
      credited,
      takenBack: takenBack + owed,
    });
  }
  return payees;
}

/** The amounts of the transfers found among `ids` (those never written count nothing). */
async function sumOf(ledger: Ledger, ids: readonly bigint[]): Promise<bigint> {
  if (ids.length === 0) return 0n;
  const found = await ledger.lookupTransfers(ids);
  return found.reduce((sum, transfer) => sum + transfer.amount, 0n);
}

/**
 * What the invoice's refunds not failed and its reversals that stand took back of it in all (each reversal all it
 * asked: what its legs took and its shortfalls, as a refund counts all its amount), `exceptReversal` left out: the
 * `takenBefore` of takeBackShares, for a reversal and a refund alike (payments/refunds.ts holdAndClaim: no dispute
 * stands then, so it is what its refunds, the refunds made at the provider and the receipts a reorg removed took).
 * Read after the version of the invoice's `refundable` row, with the credits (splitPayees): each refund's claim and
 * give-back (payments/refunds-store.ts claimStatement, failedStatement), each reversal's record
 * (settlement/invoices.ts reversalRecordStatement) and each reversal's giving back (applyReinstated's mark) moves that
 * version, so a refund or reversal written with a touch of that version counts exactly what stood when it read this.
 */
export async function takenBackBefore(
  sql: Sql,
  invoice: { id: string; tenantId: string },
  options: { exceptReversal?: string } = {},
): Promise<bigint> {
  const [row] = await sql.query<{ taken: string }>(
    `SELECT ((SELECT coalesce(sum(amount), 0) FROM refunds
               WHERE invoice_id = $1 AND tenant_id = $2 AND status <> 'failed')
       + (SELECT coalesce(sum(r.amount + coalesce((SELECT sum(s.amount) FROM reversal_shortfalls s
                                                   WHERE s.invoice_id = r.invoice_id AND s.reversal_key = r.key),
                                                  0)), 0)
            FROM invoice_reversals r
            WHERE r.invoice_id = $1 AND r.reinstated_at IS NULL AND r.key IS DISTINCT FROM $3))::text AS taken`,
    [invoice.id, invoice.tenantId, options.exceptReversal ?? null],
  );
  return BigInt(row?.taken ?? "0");
}

/**
 * Each payee's part of `amount` taken back of `whole` (what the invoice received), after `takenBefore` (what its
 * refunds and reversals took back of it before this one: takenBackBefore), rounded down (divFloor), the seller giving
 * the rest; zero parts are left out. Never more than what is left of a payee's credit (credited − takenBack), nor,
 * all parts together, more than `amount`.
 *
 * Parts of what all of them will have taken once this one has, not of this one alone, for a refund (as Stripe's
 * reverse_transfer) and a reversal of the invoice's money (a dispute, a refund made at the provider, a reorg) alike:
 * of T taken back in all, a payee is owed divFloor(min(T, whole) × credited, whole); its part is what it is owed
 * after this one less what was taken from it before (takenBack: the legs of the reversals that stand with their
 * shortfalls, and the holds of the refunds not failed: the same refunds and reversals that takenBefore counts), never
 * below zero. The seller gives the rest, but never more than is left of its own share (what the invoice received less
 * every payee's credit, less what the seller gave before): past that, the payees give it, in order, each up to what
 * is left of its credit. Rounded one at a time instead, each part of a small refund floored to nothing, the seller
 * gave every unit, and payees holding more than was left to refund were cut by the last refund, the seller paying
 * what it never received; and several partial reversals (a dispute in parts, refunds made at the provider one by one)
 * each floored their parts, the payees keeping up to a unit per reversal of what all of them had taken back in full.
 * So a payee that fell behind catches up with the next refund or reversal, whichever it is, and the one that brings
 * what was taken back to what the invoice received takes exactly what is left of each credit; one beyond it (a
 * dispute of all of it after a refund) takes nothing more of the payees: the seller gives it.
 *
 * The refunds of an invoice apply one at a time, in the order of their claims on its `refundable` row, and each is
 * computed from the state its claim applies to: what is left is read first, with the row's version, the credits
 * after it, and the claim passes only if the row is still that version (payments/refunds.ts holdAndClaim); a refund's
 * holds are written, and given back, in the transaction that changes the row. Values of two states must never be
 * combined: what was refunded read after another refund's claim and the credits before it would count that refund's
 * parts twice (the version check refuses such a claim).
 *
 * A reversal of the invoice's money takes its part of each credit r ≤ C, leaving C − r (what is left to refund is
 * unchanged: a refund is still owed to the payer). It joins the same order: its legs are written with a touch of the
 * `refundable` row that passes only if the row is still the version read before its credits and takenBefore
 * (settlement/invoices.ts takeBackReversal), so a refund claimed after those reads makes it compute again, and a
 * refund that read the row before the legs fails its claim and computes again: refused `invoice_not_paid`, since the
 * reversal's record is written with its legs (settlement/invoices.ts reversalRecordStatement; payments/refunds.ts
 * holdAndClaim), or, a refund made at the provider or a receipt a reorg removed, counted in what was taken back. A
 * reversal given back moves the version too (applyReinstated's mark), so one computed while it stood computes again;
 * one written before it is left as it was computed (settlement/invoices.ts applyReinstated says what that leaves).
 */
export function takeBackShares(
  amount: bigint,
  whole: bigint,
  payees: readonly SplitPayee[],
  takenBefore: bigint,
): PayeeShare[] {
  if (whole <= 0n || amount <= 0n) return [];
  let left = amount;
  const parts = payees.map((payee) => {
    const creditLeft = payee.credited - payee.takenBack;
    const part = divFloor(least(takenBefore + amount, whole) * payee.credited, whole) - payee.takenBack;
    const share = least(least(part, creditLeft), left);
    if (share <= 0n) return 0n;
    left -= share;
    return share;
  });
  // What is left of the seller's own share: what was not split, less what it gave before. Past it, the payees give.
  const credits = payees.reduce((sum, payee) => sum + payee.credited, 0n);
  const payeesGave = payees.reduce((sum, payee) => sum + payee.takenBack, 0n);
  const sellerLeft = whole - credits - (takenBefore - payeesGave);
  let beyond = left - (sellerLeft > 0n ? sellerLeft : 0n);
  payees.forEach((payee, i) => {
    if (beyond <= 0n) return;
    const room = payee.credited - payee.takenBack - parts[i]!;
    const more = least(room, beyond);
    if (more <= 0n) return;
    parts[i] = parts[i]! + more;
    beyond -= more;
  });
  const shares: PayeeShare[] = [];
  payees.forEach((payee, i) => {
    if (parts[i]! > 0n)
      shares.push({ accountId: payee.accountId, ledgerAccountId: payee.ledgerAccountId, amount: parts[i]! });
  });
  return shares;
}

const least = (a: bigint, b: bigint): bigint => (b < a ? b : a);

/** One leg of takeBackChain: up to `posting.amount` from its debit account. */
export type TakeBackLeg = { posting: Posting; transfer: PostingTransfer };

/**
 * Takes back each leg's amount from its debit account, each never more than that account holds (a balancing debit),
 * the legs as one linked chain (one request: all or none). A chain written before (a redelivery, a crash after the
 * write, a run that raced this one) is not written again: what its legs took is read back. Returns what each leg
 * took, in order (a leg of zero is not written and took nothing), and `rows`: when this call wrote the chain, the
 * rows of `statement(taken)`, written in the chain's transaction (a statement that fails rolls the chain back: the
 * ledger's LedgerStoreError, its cause the database's error); null when it did not. (The ledger's flags are set here
 * because ledger/postings.ts offers no chain of balancing debits yet; that is where this belongs.)
 */
export async function takeBackChain(
  ledger: Ledger,
  legs: readonly TakeBackLeg[],
  label: string,
  statement: (taken: readonly bigint[]) => Statement,
): Promise<{ taken: bigint[]; rows: Row[] | null }> {
  const written = legs.filter((leg) => leg.posting.amount > 0n);
  // The chain is linked: one of its legs in the ledger means all of them are. Every leg is looked for, a leg of zero
  // too: a run before this one may have computed it larger and written it.
  const taken = async (): Promise<bigint[] | null> => {
    const found = await ledger.lookupTransfers(legs.map((leg) => leg.transfer.id));
    if (found.length === 0) return null;
    const amounts = new Map(found.map((transfer) => [transfer.id, transfer.amount]));
    return legs.map((leg) => amounts.get(leg.transfer.id) ?? 0n);
  };
  const before = await taken();
  if (before !== null) return { taken: before, rows: null };
  if (written.length === 0) return { taken: legs.map(() => 0n), rows: null };
  const { results, rows } = await ledger.createTransfersWith(
    written.map(({ posting, transfer }, i) => ({
      id: transfer.id,
      debitAccountId: posting.debitAccountId,
      creditAccountId: posting.creditAccountId,
      amount: posting.amount,
      ledger: posting.ledger,
      code: posting.code,
      flags: TransferFlags.balancingDebit | (i < written.length - 1 ? TransferFlags.linked : 0),
      ...(transfer.userData128 === undefined ? {} : { userData128: transfer.userData128 }),
      ...(transfer.evidence === undefined ? {} : { evidence: transfer.evidence }),
    })),
    {
      statement: (made, moved) =>
        made.every((result) => result.status === "created")
          ? statement(
              legs.map((leg) => (leg.posting.amount > 0n ? (moved.amountOf(leg.transfer.id) ?? 0n) : 0n)),
            )
          : null,
    },
  );
  // Written now, or by a run that raced this one.
  const after = await taken();
  if (after !== null) return { taken: after, rows };
  const refusal = results.find((r) => r.status !== "created" && r.status !== "linked_event_failed");
  throw new LedgerPostingError(label, refusal?.status ?? "no result");
}
