// An attempt's reservation: the pending ledger transfer that holds the funds while the rail works, through the
// ledger's postings (gateway/ledger/postings.ts). Its id is on the attempt row, derived from the attempt id, so
// whether it was made is the ledger's to say; its post or void repeats it, and is written with the attempt's
// new status in one transaction.
import {
  type Asset,
  type AttemptSucceeded,
  assets,
  divCeil,
  type Rail,
  type SettlementEvidence,
} from "../../core/index.ts";
import { type AccountRecord, createAccount, type RailAccountKind } from "../accounts/index.ts";
import type { Row, Statement } from "../db/index.ts";
import { derivedLedgerId } from "../ids/index.ts";
import {
  type ChainMember,
  findReservation,
  postReservation,
  type Reservation,
  type ReserveOutcome,
  reserve as reserveFunds,
  type TransferEvidence,
  transferCodes,
  voidReservation,
  writeChainWith,
} from "../ledger/index.ts";
import type { PaymentsDeps } from "./deps.ts";
import { PaymentInvariantError } from "./errors.ts";
import { type Attempt, attemptDestination, type Payment } from "./types.ts";

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
type PaymentAccounts = Pick<Payment, "id" | "tenantId" | "sourceAccountId" | "destination" | "decision">;

async function ledgerAccountsFor(
  deps: PaymentsDeps,
  payment: PaymentAccounts,
  rail: Rail,
  seq: number,
): Promise<{ debit: bigint; credit: bigint; ledger: number; asset: Asset; internal: boolean }> {
  const source = await deps.accounts.tenantAccount({
    tenantId: payment.tenantId,
    id: payment.sourceAccountId,
  });
  if (source === null) throw new PaymentInvariantError(`payment ${payment.id} lost its source account`);
  let credit: AccountRecord | null;
  const destination = attemptDestination(payment, seq);
  if (destination === null) throw new PaymentInvariantError(`payment ${payment.id} has no candidate ${seq}`);
  const internal = destination.kind === "account";
  if (destination.kind === "account") {
    // The tenant's own account, also when a payee names it: scoped to the tenant like every read.
    credit = await deps.accounts.tenantAccount({ tenantId: payment.tenantId, id: destination.accountId });
  } else {
    credit = await deps.accounts.railAccount({ kind: "clearing", rail: rail.id, asset: source.asset });
  }
  if (credit === null)
    throw new PaymentInvariantError(`payment ${payment.id} has no account to credit on rail ${rail.id}`);
  return {
    debit: source.ledgerAccountId,
    credit: credit.ledgerAccountId,
    ledger: source.asset.ledger,
    asset: source.asset,
    internal,
  };
}

/**
 * A rail's own account of a kind and asset, opened the first time it is needed: a fee account (any rail's), a
 * clearing account in a native token (an EVM rail's gas, which records what the wallet pays even before the
 * operator's capital is booked on it, so a payout that happened is never refused for it).
 */
export async function railAccountOpened(
  deps: Pick<PaymentsDeps, "accounts" | "db" | "ledger">,
  params: { kind: RailAccountKind; rail: string; asset: Asset },
): Promise<AccountRecord> {
  const known = await deps.accounts.railAccount(params);
  if (known !== null) return known;
  return createAccount(
    { sql: deps.db, ledger: deps.ledger },
    {
      tenantId: null,
      kind: params.kind,
      asset: params.asset,
      name: `${params.rail} ${params.kind} (${params.asset.code})`,
      rail: params.rail,
      id: `acct_${params.kind}_${params.rail.replaceAll("-", "_")}_${params.asset.code.toLowerCase()}`,
      ...(params.kind === "clearing" ? { balance: "none" as const } : {}),
    },
  );
}

/** The id of the hold on the payer for an attempt's fee, beside its reservation. */
export const feeHoldIdOf = (reserveTransferId: bigint): bigint =>
  derivedLedgerId(reserveTransferId.toString(), "fee-hold");

/**
 * The pending transfer that holds the funds while the rail works, and, for a payout that may cost a fee
 * (`feeMax` > 0), a second one on the payer for that fee, into the rail's fee account: one linked chain, so the
 * payer is never short of the fee a payout it was allowed turns out to cost. Ids derive from the attempt.
 * `alongside`, when given, is written in the same transaction whatever the ledger answers; `rows` are its rows.
 */
export async function reserve(
  deps: PaymentsDeps,
  payment: PaymentAccounts,
  attempt: Pick<Attempt, "seq" | "amount" | "feeMax" | "reserveTransferId">,
  rail: Rail,
  alongside: Statement | null,
): Promise<{ reservation: Reservation | Refusal; rows: Row[] | null }> {
  const accounts = await ledgerAccountsFor(deps, payment, rail, attempt.seq);
  const reservation: Reservation = {
    pendingId: attempt.reserveTransferId,
    debitAccountId: accounts.debit,
    creditAccountId: accounts.credit,
    amount: attempt.amount,
    ledger: accounts.ledger,
    code: transferCodes.payments.payment,
  };
  const userData128 = derivedLedgerId(payment.id, "payment");
  const label = `the reservation of payment ${payment.id}`;
  if (accounts.internal || attempt.feeMax <= 0n) {
    const { outcome, rows } = await reserveFunds(deps.ledger, reservation, {
      id: attempt.reserveTransferId,
      userData128,
      alongside,
      label,
    });
    return { reservation: outcome === "reserved" ? reservation : outcome, rows };
  }
  sameAssetOrThrow(rail, accounts.asset);
  const fees = await railAccountOpened(deps, { kind: "fee", rail: rail.id, asset: accounts.asset });
  const members: ChainMember[] = [
    { kind: "hold", posting: reservation, transfer: { id: attempt.reserveTransferId, userData128, label } },
    {
      kind: "hold",
      posting: {
        debitAccountId: accounts.debit,
        creditAccountId: fees.ledgerAccountId,
        amount: attempt.feeMax,
        ledger: accounts.ledger,
        code: transferCodes.payments.feeCharged,
      },
      transfer: {
        id: feeHoldIdOf(attempt.reserveTransferId),
        userData128,
        label: `the fee hold of payment ${payment.id}`,
      },
    },
  ];
  const { outcome, rows } = await writeChainWith(
    deps.ledger,
    members,
    { statement: alongside, when: "always" },
    label,
  );
  return { reservation: outcome === "reserved" ? reservation : outcome, rows };
}

/** Cross-asset payouts (FX legs) are not wired: a rail is only ever asked to pay in the payer's asset. */
function sameAssetOrThrow(rail: Rail, asset: Asset): void {
  if (rail.asset.code !== asset.code)
    throw new PaymentInvariantError(`rail ${rail.id} pays ${rail.asset.code}, the payer holds ${asset.code}`);
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

/** What a payout really cost: the rail's own fee (in its asset) and any fee paid in another asset (gas). */
export type FeesPaid = Pick<AttemptSucceeded, "fee" | "feeDetail" | "nativeFee">;

/**
 * Posts or voids an attempt's reservation, and writes `alongside` (the attempt's new status) in the same
 * transaction; returns its rows. When the caller does not know the reservation (a rail event), the ledger is asked.
 * A post books the fees the payout really cost (`paid`), in the same linked chain: the payer is charged them from
 * its fee hold — passed through, at most the hold, the rest released — and the rail's fee account pays them to the
 * account they left (the clearing account in the rail's asset; for gas, the one in the native token).
 */
export async function resolveReservation(
  deps: PaymentsDeps,
  attempt: Attempt,
  how: "post" | "void",
  known: Reservation | "ask_ledger",
  alongside: Statement,
  evidence?: SettlementEvidence,
  paid?: FeesPaid,
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
  const transfer = {
    id: derivedLedgerId(attempt.id, how),
    userData128: attempt.reserveTransferId,
    alongside,
    label: `the ${how} of attempt ${attempt.id}'s reservation`,
    ...(evidence === undefined ? {} : { evidence: evidenceForLedger(evidence) }),
  };
  const feeHold = await feeHoldFor(deps, attempt, known, reservation);
  const nativeFee = paid?.nativeFee;
  if (feeHold === null && (how === "void" || ((paid?.fee ?? 0n) === 0n && (nativeFee?.amount ?? 0n) === 0n)))
    // The attempt's status moves only with its reservation.
    return await (how === "post" ? postReservation : voidReservation)(deps.ledger, reservation, transfer);

  const members: ChainMember[] = [{ kind: how, reservation, transfer }];
  if (how === "void") {
    if (feeHold !== null)
      members.push({
        kind: "void",
        reservation: feeHold,
        transfer: { id: derivedLedgerId(attempt.id, "fee-void") },
      });
  } else {
    members.push(...(await feeMembers(deps, attempt, reservation, feeHold, paid ?? { fee: 0n }, evidence)));
  }
  const { rows } = await writeChainWith(
    deps.ledger,
    members,
    { statement: alongside, when: "held", sql: deps.db },
    transfer.label,
  );
  if (rows === null) throw new PaymentInvariantError(`${transfer.label}: no rows`);
  return rows;
}

/**
 * The attempt's fee hold: none for an internal move or a payout allowed no fee; as reserve() made it when this
 * process made the reservation; else the ledger's (an attempt reserved before fee holds existed has none).
 */
async function feeHoldFor(
  deps: PaymentsDeps,
  attempt: Attempt,
  known: Reservation | "ask_ledger",
  reservation: Reservation,
): Promise<Reservation | null> {
  const rail = deps.rails.get(attempt.rail);
  if (attempt.feeMax <= 0n || rail === undefined || rail.kind === "internal") return null;
  const pendingId = feeHoldIdOf(attempt.reserveTransferId);
  if (known === "ask_ledger") return findReservation(deps.ledger, pendingId);
  const fees = await railAccountOpened(deps, { kind: "fee", rail: rail.id, asset: rail.asset });
  return {
    pendingId,
    debitAccountId: reservation.debitAccountId,
    creditAccountId: fees.ledgerAccountId,
    amount: attempt.feeMax,
    ledger: reservation.ledger,
    code: transferCodes.payments.feeCharged,
  };
}

/** The fee legs of a post: the payer's charge out of its fee hold, and what the rail paid from where it paid it. */
async function feeMembers(
  deps: PaymentsDeps,
  attempt: Attempt,
  reservation: Reservation,
  feeHold: Reservation | null,
  paid: FeesPaid,
  evidence: SettlementEvidence | undefined,
): Promise<ChainMember[]> {
  const rail = deps.rails.get(attempt.rail);
  if (rail === undefined)
    throw new PaymentInvariantError(`attempt ${attempt.id} names unknown rail ${attempt.rail}`);
  const members: ChainMember[] = [];
  const reference = evidence === undefined ? attempt.id : evidenceForLedger(evidence).reference;
  let chargeable = paid.fee;
  if (paid.fee > 0n) {
    const fees = await railAccountOpened(deps, { kind: "fee", rail: rail.id, asset: rail.asset });
    members.push({
      kind: "move",
      posting: {
        debitAccountId: fees.ledgerAccountId,
        creditAccountId: reservation.creditAccountId,
        amount: paid.fee,
        ledger: reservation.ledger,
        code: transferCodes.payments.feePaid,
      },
      transfer: {
        id: derivedLedgerId(attempt.id, "fee-paid"),
        userData128: attempt.reserveTransferId,
        evidence: { rail: rail.id, reference, detail: { kind: "fee", ...paid.feeDetail } },
      },
    });
  }
  const native = paid.nativeFee;
  if (native !== undefined && native.amount > 0n) {
    const [fees, wallet] = await Promise.all([
      railAccountOpened(deps, { kind: "fee", rail: rail.id, asset: native.asset }),
      railAccountOpened(deps, { kind: "clearing", rail: rail.id, asset: native.asset }),
    ]);
    members.push({
      kind: "move",
      posting: {
        debitAccountId: fees.ledgerAccountId,
        creditAccountId: wallet.ledgerAccountId,
        amount: native.amount,
        ledger: native.asset.ledger,
        code: transferCodes.payments.feePaid,
      },
      transfer: {
        id: derivedLedgerId(attempt.id, "native-fee-paid"),
        userData128: attempt.reserveTransferId,
        evidence: { rail: rail.id, reference, detail: { kind: "native_fee", ...native.detail } },
      },
    });
    chargeable += inAssetOf(deps, native.amount, native.asset, rail.asset);
  }
  if (feeHold !== null) {
    // Passed through within the hold (the payment's fee cap): what is above it is the platform's to absorb.
    const charged = chargeable < feeHold.amount ? chargeable : feeHold.amount;
    members.push({
      kind: "post",
      reservation: feeHold,
      amount: charged,
      transfer: { id: derivedLedgerId(attempt.id, "fee-post"), userData128: attempt.reserveTransferId },
    });
  }
  return members;
}

/**
 * A fee paid in one asset, in another, at the market's current mid rates, rounded up (a fee passed on is never
 * less than what was paid). 0 when either rate is unknown: then the fee is the platform's, not guessed.
 */
function inAssetOf(deps: PaymentsDeps, amount: bigint, from: Asset, to: Asset): bigint {
  if (from.code === to.code) return amount;
  const rates = deps.snapshot().usdRates;
  const fromRate = rates[from.code];
  const toRate = rates[to.code];
  if (fromRate === undefined || toRate === undefined || toRate.microUsd <= 0n || fromRate.perMinorUnits <= 0n)
    return 0n;
  return divCeil(amount * fromRate.microUsd * toRate.perMinorUnits, fromRate.perMinorUnits * toRate.microUsd);
}
