// An attempt's reservation: the pending ledger transfer that holds the funds while the rail works, through the
// ledger's postings (gateway/ledger/postings.ts). Its id is on the attempt row, derived from the attempt id, so
// whether it was made is the ledger's to say; its post or void repeats it, and is written with the attempt's
// new status in one transaction.
import type { Rail, SettlementEvidence } from "../../core/index.ts";
import type { AccountRecord } from "../accounts/index.ts";
import type { Row, Statement } from "../db/index.ts";
import { derivedLedgerId } from "../ids/index.ts";
import {
  findReservation,
  postReservation,
  type Reservation,
  type ReserveOutcome,
  reserve as reserveFunds,
  type TransferEvidence,
  transferCodes,
  voidReservation,
} from "../ledger/index.ts";
import type { PaymentsDeps } from "./deps.ts";
import { PaymentInvariantError } from "./errors.ts";
import type { Attempt, Payment } from "./types.ts";

/**
 * Why the ledger would not make a reservation: the payer's account is short, the rail does not hold that much, or
 * the accounts do not take the transfer at all (`rejected`).
 */
export type Refusal = Exclude<ReserveOutcome, "reserved">;

/**
 * What this process knows of an attempt's reservation: made (and how), refused, not asked for yet, or only the
 * ledger knows.
 */
export type ReservationKnown = Reservation | Refusal | "absent" | "ask_ledger";

/** What the ledger side of a payment needs to know of it. */
type PaymentAccounts = Pick<Payment, "id" | "tenantId" | "sourceAccountId" | "destination">;

async function ledgerAccountsFor(
  deps: PaymentsDeps,
  payment: PaymentAccounts,
  rail: Rail,
): Promise<{ debit: bigint; credit: bigint; ledger: number }> {
  const source = await deps.accounts.tenantAccount({
    tenantId: payment.tenantId,
    id: payment.sourceAccountId,
  });
  if (source === null) throw new PaymentInvariantError(`payment ${payment.id} lost its source account`);
  let credit: AccountRecord | null;
  if (payment.destination.kind === "account") {
    credit = await deps.accounts.tenantAccount({
      tenantId: payment.tenantId,
      id: payment.destination.accountId,
    });
  } else {
    credit = await deps.accounts.railAccount({ kind: "clearing", rail: rail.id, asset: source.asset });
  }
  if (credit === null)
    throw new PaymentInvariantError(`payment ${payment.id} has no account to credit on rail ${rail.id}`);
  return { debit: source.ledgerAccountId, credit: credit.ledgerAccountId, ledger: source.asset.ledger };
}

/**
 * The pending transfer that holds the funds while the rail works. Its id is derived from the attempt. `alongside`,
 * when given, is written in the same transaction whatever the ledger answers; `rows` are its rows.
 */
export async function reserve(
  deps: PaymentsDeps,
  payment: PaymentAccounts,
  attempt: Pick<Attempt, "amount" | "reserveTransferId">,
  rail: Rail,
  alongside: Statement | null,
): Promise<{ reservation: Reservation | Refusal; rows: Row[] | null }> {
  const accounts = await ledgerAccountsFor(deps, payment, rail);
  const reservation: Reservation = {
    pendingId: attempt.reserveTransferId,
    debitAccountId: accounts.debit,
    creditAccountId: accounts.credit,
    amount: attempt.amount,
    ledger: accounts.ledger,
    code: transferCodes.payments.payment,
  };
  const { outcome, rows } = await reserveFunds(deps.ledger, reservation, {
    id: attempt.reserveTransferId,
    userData128: derivedLedgerId(payment.id, "payment"),
    alongside,
    label: `the reservation of payment ${payment.id}`,
  });
  return { reservation: outcome === "reserved" ? reservation : outcome, rows };
}

export function evidenceForLedger(evidence: SettlementEvidence): TransferEvidence {
  switch (evidence.rail) {
    case "internal":
      return { rail: "internal", reference: "ledger" };
    case "evm":
      return {
        rail: "evm",
        reference: `${evidence.txHash}:${evidence.logIndex}`,
        detail: { chainId: String(evidence.chainId), blockNumber: evidence.blockNumber.toString() },
      };
    case "lightning":
      return { rail: "lightning", reference: evidence.paymentHash, detail: { preimage: evidence.preimage } };
    case "fiat":
      return { rail: "fiat", reference: evidence.pspId };
    case "external":
      return { rail: evidence.railId, reference: evidence.reference };
  }
}

/**
 * Posts or voids an attempt's reservation, and writes `alongside` (the attempt's new status) in the same
 * transaction; returns its rows. When the caller does not know the reservation (a rail event), the ledger is asked.
 */
export async function resolveReservation(
  deps: PaymentsDeps,
  attempt: Attempt,
  how: "post" | "void",
  known: Reservation | "ask_ledger",
  alongside: Statement,
  evidence?: SettlementEvidence,
): Promise<Row[]> {
  let reservation: Reservation | null;
  if (known === "ask_ledger") {
    reservation = await findReservation(deps.ledger, attempt.reserveTransferId);
    if (reservation === null) {
      // never reserved: nothing to release
      if (how === "void") return await deps.db.query(alongside.text, alongside.params);
      throw new PaymentInvariantError(`attempt ${attempt.id} succeeded without a reservation`);
    }
  } else {
    reservation = known;
  }
  // The attempt's status moves only with its reservation.
  return await (how === "post" ? postReservation : voidReservation)(deps.ledger, reservation, {
    id: derivedLedgerId(attempt.id, how),
    userData128: attempt.reserveTransferId,
    alongside,
    label: `the ${how} of attempt ${attempt.id}'s reservation`,
    ...(evidence === undefined ? {} : { evidence: evidenceForLedger(evidence) }),
  });
}
