// An attempt's reservation: the pending ledger transfers that hold the funds while the rail works — the amount, a
// hold for the fees it may cost, and across assets the FX legs — through the ledger's postings
// (gateway/ledger/postings.ts), as one linked chain. Its id is on the attempt row, derived from the attempt id (the
// other holds' ids derive from it), so whether it was made is the ledger's to say; its post (with the fees the rail
// really paid) or void repeats it, and is written with the attempt's new status in one transaction.
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
  type PostingTransfer,
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
import { paymentLedgerLink } from "./store.ts";
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
type PaymentAccounts = Pick<
  Payment,
  "id" | "tenantId" | "sourceAccountId" | "destination" | "decision" | "amount"
>;

/** The payer's account, and the account an attempt credits: the rail's clearing account, or a tenant's own. */
async function ledgerAccountsFor(
  deps: PaymentsDeps,
  payment: PaymentAccounts,
  rail: Rail,
  seq: number,
): Promise<{ payer: AccountRecord; credit: AccountRecord; internal: boolean }> {
  const payer = await deps.accounts.tenantAccount({
    tenantId: payment.tenantId,
    id: payment.sourceAccountId,
  });
  if (payer === null) throw new PaymentInvariantError(`payment ${payment.id} lost its source account`);
  let credit: AccountRecord | null;
  const destination = attemptDestination(payment, seq);
  if (destination === null) throw new PaymentInvariantError(`payment ${payment.id} has no candidate ${seq}`);
  const internal = destination.kind === "account";
  if (destination.kind === "account") {
    // The tenant's own account, also when a payee names it: scoped to the tenant like every read.
    credit = await deps.accounts.tenantAccount({ tenantId: payment.tenantId, id: destination.accountId });
  } else {
    credit = await deps.accounts.railAccount({ kind: "clearing", rail: rail.id, asset: rail.asset });
  }
  if (credit === null)
    throw new PaymentInvariantError(`payment ${payment.id} has no account to credit on rail ${rail.id}`);
  return { payer, credit, internal };
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

/** The id of a hold beside an attempt's reservation (the FX legs of a cross-asset payout). */
const besideIdOf = (reserveTransferId: bigint, purpose: "fx-out" | "fx-spread"): bigint =>
  derivedLedgerId(reserveTransferId.toString(), purpose);

/**
 * The pending transfers that hold the funds while the rail works, written as one linked chain (all or none), with
 * ids derived from the attempt:
 * - the reservation: the payer to the account the attempt credits (the rail's clearing account, or a tenant's);
 * - for a payout that may cost a fee (`feeMax` > 0), the payer to the rail's fee account, so the payer is never
 *   short of the fee a payout it was allowed turns out to cost;
 * - across assets (the payer holds A, the rail pays B), FX through the operator's FX capital: the payer's amount
 *   into FX capital in A (this is then the reservation), FX capital in B out to the account credited, and the
 *   spread the router priced from the payer to the FX fee account (revenue). Every ledger balances.
 * `alongside`, when given, is written in the same transaction whatever the ledger answers; `rows` are its rows.
 */
export async function reserve(
  deps: PaymentsDeps,
  payment: PaymentAccounts,
  attempt: Pick<Attempt, "seq" | "amount" | "feeMax" | "reserveTransferId">,
  rail: Rail,
  alongside: Statement | null,
): Promise<{ reservation: Reservation | Refusal; rows: Row[] | null }> {
  const { payer, credit, internal } = await ledgerAccountsFor(deps, payment, rail, attempt.seq);
  // Across assets when the rail pays another asset than the payer's (the account credited must hold the rail's
  // asset: the ledger refuses a leg between two ledgers, and the attempt fails as rejected).
  const cross = payer.asset.code !== rail.asset.code;
  const userData128 = paymentLedgerLink(payment.id);
  const label = `the reservation of payment ${payment.id}`;
  const posting = (debit: AccountRecord, to: AccountRecord, amount: bigint, code: number) => ({
    debitAccountId: debit.ledgerAccountId,
    creditAccountId: to.ledgerAccountId,
    amount,
    ledger: debit.asset.ledger,
    code,
  });
  const fxIn = cross
    ? await railAccountOpened(deps, { kind: "capital", rail: fxRail, asset: payer.asset })
    : null;
  const reservation: Reservation = {
    pendingId: attempt.reserveTransferId,
    ...(fxIn === null
      ? posting(payer, credit, attempt.amount, transferCodes.payments.payment)
      : posting(payer, fxIn, payment.amount, transferCodes.payments.payment)),
  };
  const members: ChainMember[] = [
    { kind: "hold", posting: reservation, transfer: { id: attempt.reserveTransferId, userData128, label } },
  ];
  const spread = fxIn === null ? 0n : spreadInPayerAsset(payment, attempt.seq);
  if (fxIn !== null) {
    const fxOut = await railAccountOpened(deps, { kind: "capital", rail: fxRail, asset: rail.asset });
    members.push({
      kind: "hold",
      posting: posting(fxOut, credit, attempt.amount, transferCodes.payments.fxOut),
      transfer: { id: besideIdOf(attempt.reserveTransferId, "fx-out"), userData128 },
    });
    if (spread > 0n) {
      const revenue = await railAccountOpened(deps, { kind: "fee", rail: fxRail, asset: payer.asset });
      members.push({
        kind: "hold",
        posting: posting(payer, revenue, spread, transferCodes.payments.fxSpread),
        transfer: { id: besideIdOf(attempt.reserveTransferId, "fx-spread"), userData128 },
      });
    }
  }
  // Across assets the hold is converted at today's rate, and capped so that with the spread it stays within the
  // cap; in one asset it is the fee limit itself, which the router derived from the cap (and which besideHolds, for
  // a reservation this process made, takes it to be without asking the ledger).
  const feeHold = internal
    ? 0n
    : cross
      ? feeHoldInPayerAsset(deps, payment, attempt, rail.asset, payer.asset, spread)
      : attempt.feeMax;
  if (feeHold > 0n) {
    const fees = await railAccountOpened(deps, { kind: "fee", rail: rail.id, asset: payer.asset });
    members.push({
      kind: "hold",
      posting: posting(payer, fees, feeHold, transferCodes.payments.feeCharged),
      transfer: {
        id: feeHoldIdOf(attempt.reserveTransferId),
        userData128,
        label: `the fee hold of payment ${payment.id}`,
      },
    });
  }
  if (members.length === 1) {
    const { outcome, rows } = await reserveFunds(deps.ledger, reservation, {
      id: attempt.reserveTransferId,
      userData128,
      alongside,
      label,
    });
    return { reservation: outcome === "reserved" ? reservation : outcome, rows };
  }
  const { outcome, rows } = await writeChainWith(
    deps.ledger,
    members,
    { statement: alongside, when: "always" },
    label,
  );
  return { reservation: outcome === "reserved" ? reservation : outcome, rows };
}

/** The operator's FX desk: its capital per asset (what it holds of each) and its fee account (the spread earned). */
const fxRail = "fx";

/**
 * The FX spread the router priced for the attempt's candidate, in the payer's asset: the payment's amount in the
 * share the spread is of its USD value, rounded down (the payer is never charged more than it was shown: rounded up,
 * a one-cent payment's 0.2 % spread was booked as the whole cent). 0 without a USD value.
 */
function spreadInPayerAsset(payment: PaymentAccounts, seq: number): bigint {
  const fx = payment.decision?.candidates[seq]?.cost.fxMicroUsd ?? 0n;
  const value = payment.decision?.amountMicroUsd ?? null;
  if (fx <= 0n || value === null || value <= 0n) return 0n;
  return (payment.amount * fx) / value;
}

/**
 * The hold for the rail's fee, in the payer's asset: the attempt's fee limit converted (rounded up), but no more than
 * the candidate's fee cap leaves once the spread is taken, the cap converted rounded down. The spread and the fee
 * charged together then stay within the cap the payer was shown (each rounded up, a payer in cents could be
 * charged a cent or two above it); a fee above the hold is the platform's, as always.
 */
function feeHoldInPayerAsset(
  deps: PaymentsDeps,
  payment: PaymentAccounts,
  attempt: Pick<Attempt, "seq" | "feeMax">,
  railAsset: Asset,
  payerAsset: Asset,
  spread: bigint,
): bigint {
  const hold = inAssetOf(deps, attempt.feeMax, railAsset, payerAsset);
  const capMicroUsd = payment.decision?.candidates[attempt.seq]?.feeCapMicroUsd;
  const rate = deps.snapshot().usdRates[payerAsset.code];
  if (capMicroUsd === undefined || rate === undefined || rate.microUsd <= 0n) return hold;
  const left = (capMicroUsd * rate.perMinorUnits) / rate.microUsd - spread;
  if (left <= 0n) return 0n;
  if (hold > left) return left;
  return hold;
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
  const rail = deps.rails.get(attempt.rail);
  if (rail === undefined)
    throw new PaymentInvariantError(`attempt ${attempt.id} names unknown rail ${attempt.rail}`);
  const beside = await besideHolds(deps, attempt, known, reservation, rail);
  const nativeFee = paid?.nativeFee;
  const noFees = (paid?.fee ?? 0n) === 0n && (nativeFee?.amount ?? 0n) === 0n;
  if (beside.length === 0 && (how === "void" || noFees))
    // The attempt's status moves only with its reservation.
    return await (how === "post" ? postReservation : voidReservation)(deps.ledger, reservation, transfer);

  const members: ChainMember[] = [{ kind: how, reservation, transfer }];
  for (const hold of beside) {
    if (how === "void" || hold.purpose !== "fee-hold")
      members.push({
        kind: how,
        reservation: hold.reservation,
        transfer: {
          id: derivedLedgerId(attempt.id, `${hold.purpose}-${how}`),
          userData128: attempt.reserveTransferId,
        },
      });
  }
  if (how === "post") {
    const payerAsset = assetOfLedger(reservation.ledger);
    // What the rail paid from: the account its FX leg credits, or the reservation's own.
    const paidFrom =
      beside.find((hold) => hold.purpose === "fx-out")?.reservation.creditAccountId ??
      reservation.creditAccountId;
    const feeHold = beside.find((hold) => hold.purpose === "fee-hold")?.reservation ?? null;
    members.push(
      ...(await feeMembers(
        deps,
        attempt,
        rail,
        paidFrom,
        payerAsset,
        feeHold,
        paid ?? { fee: 0n },
        evidence,
      )),
    );
  }
  const write = () =>
    writeChainWith(
      deps.ledger,
      members,
      { statement: alongside, when: "held", sql: deps.db },
      transfer.label,
    );
  const written = await write();
  if (written.rows !== null) return written.rows;
  // The rail paid the amount and its fee, but its clearing account held room for the amount only (its reservation),
  // and others' reservations took the rest: the fee leg was refused (exceeds_debits). The node really had it (its own
  // liquidity, which the ledger does not hold), so the operator's capital funds the fee, as it funds a provider's
  // fees and a refund's (settlement/rail-fees.ts). Only then, so that a payment's chain is as ever otherwise. Before,
  // this threw: a 500 for a payment paid, left processing with the payer's funds held on every recovery pass.
  const feePaid = members.findIndex(
    (member) => member.kind === "move" && member.transfer.id === derivedLedgerId(attempt.id, "fee-paid"),
  );
  const leg = feePaid >= 0 ? members[feePaid] : undefined;
  if (how === "post" && written.outcome === "insufficient_liquidity" && leg?.kind === "move") {
    const capital = await railAccountOpened(deps, { kind: "capital", rail: rail.id, asset: rail.asset });
    members.splice(
      feePaid,
      0,
      capitalFundingLeg(
        {
          clearingAccountId: leg.posting.creditAccountId,
          capitalAccountId: capital.ledgerAccountId,
          amount: leg.posting.amount,
          ledger: leg.posting.ledger,
        },
        {
          id: derivedLedgerId(attempt.id, "fee-funded"),
          userData128: attempt.reserveTransferId,
          evidence: {
            rail: rail.id,
            reference: evidence === undefined ? attempt.id : evidenceForLedger(evidence).reference,
            detail: { kind: "fee_funded" },
          },
        },
      ),
    );
    const funded = await write();
    if (funded.rows !== null) return funded.rows;
  }
  throw new PaymentInvariantError(`${transfer.label}: refused (${written.outcome})`);
}

/**
 * The operator's capital funding a fee the rail paid from its own liquidity, which the ledger does not hold: capital
 * into the rail's clearing account, put before the fee's leg so that the clearing account never dips below what the
 * customers hold there (a payout's fallback above; a refund's routing fee, refunds.ts feeLegs; a provider's fees are
 * funded the same way, settlement/rail-fees.ts).
 */
export function capitalFundingLeg(
  funding: { clearingAccountId: bigint; capitalAccountId: bigint; amount: bigint; ledger: number },
  transfer: PostingTransfer,
): ChainMember {
  return {
    kind: "move",
    posting: {
      debitAccountId: funding.clearingAccountId,
      creditAccountId: funding.capitalAccountId,
      amount: funding.amount,
      ledger: funding.ledger,
      code: transferCodes.payments.capitalIn,
    },
    transfer,
  };
}

/** The asset whose ledger this is. */
function assetOfLedger(ledger: number): Asset {
  const asset = Object.values(assets).find((candidate) => candidate.ledger === ledger);
  if (asset === undefined) throw new PaymentInvariantError(`no asset keeps ledger ${ledger}`);
  return asset;
}

type BesideHold = { purpose: "fx-out" | "fx-spread" | "fee-hold"; reservation: Reservation };

/**
 * The holds reserve() wrote beside the reservation. Same asset, when this process made the reservation: the fee
 * hold as reserve() made it, with no read. Otherwise the ledger says which exist (one lookup): an attempt reserved
 * before fee holds existed has none.
 */
async function besideHolds(
  deps: PaymentsDeps,
  attempt: Attempt,
  known: Reservation | "ask_ledger",
  reservation: Reservation,
  rail: Rail,
): Promise<BesideHold[]> {
  if (rail.kind === "internal" && reservation.ledger === rail.asset.ledger) return [];
  const feeHoldId = feeHoldIdOf(attempt.reserveTransferId);
  if (known !== "ask_ledger" && reservation.ledger === rail.asset.ledger) {
    if (attempt.feeMax <= 0n) return [];
    const fees = await railAccountOpened(deps, { kind: "fee", rail: rail.id, asset: rail.asset });
    return [
      {
        purpose: "fee-hold",
        reservation: {
          pendingId: feeHoldId,
          debitAccountId: reservation.debitAccountId,
          creditAccountId: fees.ledgerAccountId,
          amount: attempt.feeMax,
          ledger: reservation.ledger,
          code: transferCodes.payments.feeCharged,
        },
      },
    ];
  }
  const ids = {
    "fx-out": besideIdOf(attempt.reserveTransferId, "fx-out"),
    "fx-spread": besideIdOf(attempt.reserveTransferId, "fx-spread"),
    "fee-hold": feeHoldId,
  } as const;
  const found = await deps.ledger.lookupTransfers(Object.values(ids));
  const holds: BesideHold[] = [];
  for (const purpose of ["fx-out", "fx-spread", "fee-hold"] as const) {
    const transfer = found.find((candidate) => candidate.id === ids[purpose]);
    if (transfer === undefined) continue;
    holds.push({
      purpose,
      reservation: {
        pendingId: transfer.id,
        debitAccountId: transfer.debitAccountId,
        creditAccountId: transfer.creditAccountId,
        amount: transfer.amount,
        ledger: transfer.ledger,
        code: transfer.code,
      },
    });
  }
  return holds;
}

/**
 * The fee legs of a post: what the rail paid, from its fee account to where it paid it from (`paidFrom`, in the
 * rail's asset; gas from the clearing account in the native token), and the payer's charge out of its fee hold, in
 * the payer's asset at the market's mid rate.
 */
async function feeMembers(
  deps: PaymentsDeps,
  attempt: Attempt,
  rail: Rail,
  paidFrom: bigint,
  payerAsset: Asset,
  feeHold: Reservation | null,
  paid: FeesPaid,
  evidence: SettlementEvidence | undefined,
): Promise<ChainMember[]> {
  const members: ChainMember[] = [];
  const reference = evidence === undefined ? attempt.id : evidenceForLedger(evidence).reference;
  // One leg per fee paid: from the rail's fee account (in the fee's asset) to the account it left.
  const paidLeg = async (fee: {
    asset: Asset;
    amount: bigint;
    from: bigint;
    purpose: "fee-paid" | "native-fee-paid";
    detail: Readonly<Record<string, string>>;
  }): Promise<ChainMember> => {
    const fees = await railAccountOpened(deps, { kind: "fee", rail: rail.id, asset: fee.asset });
    return {
      kind: "move",
      posting: {
        debitAccountId: fees.ledgerAccountId,
        creditAccountId: fee.from,
        amount: fee.amount,
        ledger: fee.asset.ledger,
        code: transferCodes.payments.feePaid,
      },
      transfer: {
        id: derivedLedgerId(attempt.id, fee.purpose),
        userData128: attempt.reserveTransferId,
        evidence: { rail: rail.id, reference, detail: fee.detail },
      },
    };
  };
  let chargeable = 0n;
  if (paid.fee > 0n) {
    members.push(
      await paidLeg({
        asset: rail.asset,
        amount: paid.fee,
        from: paidFrom,
        purpose: "fee-paid",
        detail: { kind: "fee", ...paid.feeDetail },
      }),
    );
    chargeable += inAssetOf(deps, paid.fee, rail.asset, payerAsset);
  }
  const native = paid.nativeFee;
  if (native !== undefined && native.amount > 0n) {
    // Gas leaves the wallet's balance in the native token: the rail's clearing account in that asset.
    const wallet = await railAccountOpened(deps, { kind: "clearing", rail: rail.id, asset: native.asset });
    members.push(
      await paidLeg({
        asset: native.asset,
        amount: native.amount,
        from: wallet.ledgerAccountId,
        purpose: "native-fee-paid",
        detail: { kind: "native_fee", ...native.detail },
      }),
    );
    chargeable += inAssetOf(deps, native.amount, native.asset, payerAsset);
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
