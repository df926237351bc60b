// The life of a payment: check the request, route it, reserve the funds (a pending ledger transfer),
// execute an attempt on the chosen rail, then post the reservation with the rail's evidence, or void it
// and fall back to the next candidate when the failure says another rail may succeed.
//
// Crash safety: written ahead in this order — the payment with its first attempt and that attempt's reservation
// (one transaction), the rail's payment, the post or void with the attempt's and payment's final statuses (one
// transaction); a later attempt is written before its reservation. Every step is
// keyed by ids derived from the attempt id, so repeating a step is harmless: the ledger returns `exists` for a
// transfer it already has; a rail reports the first outcome of an attempt id it has already executed; status
// moves are conditional updates. Recovery re-runs open attempts, asking the ledger whether each one's
// reservation (its id is on the attempt row) was made: without it the rail was never asked to pay.
//
// The live path keeps the payment it writes in memory and answers from it; it reads the database again only
// when a conditional update finds that another writer (recovery, a rail event) moved the payment first.
import type { AttemptOutcome, Destination, Rail, RailEvent, SettlementEvidence } from "../../core/index.ts";
import { type Asset, assetByCode, parseAmount } from "../../core/index.ts";
import type { AccountCache, AccountRecord } from "../accounts/index.ts";
import type { Db, Row, Statement } from "../db/index.ts";
import { derivedLedgerId, newId } from "../ids/index.ts";
import {
  findReservation,
  type Ledger,
  postReservation,
  type Reservation,
  type ReserveOutcome,
  reserve as reserveFunds,
  type TransferEvidence,
  transferCodes,
  voidReservation,
} from "../ledger/index.ts";
import { createQuote, type Quote, quoteCandidates, quoteMatches } from "../router/index.ts";
import type { PaymentIntent, RouteDecision, RoutePolicy, Snapshot } from "../router/types.ts";
import { accruePayout, type NettingDeps, shouldAccrue } from "./batch-payouts.ts";
import {
  attemptFinished,
  attemptMoved,
  finishAttemptStatement,
  finishPayment,
  firstAttemptOf,
  getAttempt,
  getPayment,
  getPaymentById,
  getQuote,
  insertAttempt,
  insertOutboxEvent,
  insertPayment,
  insertPaymentStatement,
  insertQuote,
  isPaymentKeyTaken,
  listOpenAttempts,
  listStrandedPayments,
  moveAttempt,
  moveAttemptStatement,
  paymentIdForKey,
  paymentInserted,
} from "./store.ts";
import type { Attempt, Payment, PaymentFailureCode, PaymentRefusal } from "./types.ts";

export type Router = (
  intent: { asset: Asset; amount: bigint; destination: Destination },
  snapshot: Snapshot,
  policy: RoutePolicy,
) => RouteDecision;

export type PaymentsDeps = {
  db: Db;
  ledger: Ledger;
  /** Account lookups, remembered per process (accounts/createAccountCache). */
  accounts: AccountCache;
  rails: ReadonlyMap<string, Rail>;
  snapshot: () => Snapshot;
  route: Router;
  /** When set, payouts whose fee would eat too much of their value accrue and leave in netted batches. */
  netting?: NettingDeps;
  /** Told when an attempt starts and how each rail attempt ended: the router learns success rates from it. */
  learning?: { noteAttempt(rail: string): void; recordOutcome(rail: string, ok: boolean): void };
  /** How many attempts open at a restart are resumed in one pass. */
  recoveryBatchMax: number;
  /** Periodic recovery takes an open attempt, or a processing payment with none open, as stranded once untouched this long. */
  strandedQuietMs: number;
  nowMs: () => number;
};

export type CreatePaymentParams = {
  tenantId: string;
  asset: string;
  amount: string;
  sourceAccountId: string;
  destination: Destination;
  policy: RoutePolicy;
  metadata: Record<string, string>;
  /** The caller's Idempotency-Key: with it, a repeated request returns the first payment. */
  idempotencyKey: string | null;
  /** A quote to honour: its locked rates and fee caps, or quote_expired. */
  quoteId: string | null;
};

export type CreatePaymentResult =
  | { ok: true; payment: Payment }
  | { ok: false; refusal: PaymentRefusal; message: string; param?: string; decision?: RouteDecision };

type Refused = Extract<CreatePaymentResult, { ok: false }>;

function refuse(refusal: PaymentRefusal, message: string, param?: string): Refused {
  return param === undefined ? { ok: false, refusal, message } : { ok: false, refusal, message, param };
}

export class PaymentInvariantError extends Error {
  override name = "PaymentInvariantError";
}

/** Routes on the current snapshot. Cross-asset settlement (FX legs in the ledger) is not wired yet: only rails of the payment's asset take part. */
function routeNow(deps: PaymentsDeps, intent: PaymentIntent, policy: RoutePolicy): RouteDecision {
  const snapshot = deps.snapshot();
  // Denied through the policy, not by filtering the snapshot: the router keeps its prepared snapshot.
  const otherAsset = snapshot.rails
    .filter((rail) => rail.asset.code !== intent.asset.code)
    .map((rail) => rail.rail);
  if (otherAsset.length === 0) return deps.route(intent, snapshot, policy);
  const decision = deps.route(intent, snapshot, {
    ...policy,
    deniedRails: [...(policy.deniedRails ?? []), ...otherAsset],
  });
  const userDenied = new Set(policy.deniedRails ?? []);
  return {
    ...decision,
    excluded: decision.excluded.map((exclusion) =>
      otherAsset.includes(exclusion.rail) && !userDenied.has(exclusion.rail)
        ? {
            rail: exclusion.rail,
            reason: "no_fx_rate" as const,
            detail: "settles another asset; cross-asset payments are not supported yet",
          }
        : exclusion,
    ),
  };
}

/** The quote's candidates with their locked amounts and caps, less the rails the snapshot now rules out. */
async function routeByQuote(
  deps: PaymentsDeps,
  tenantId: string,
  quoteId: string,
  intent: PaymentIntent,
): Promise<RouteDecision | Refused> {
  const quote = await getQuote(deps.db, { tenantId, id: quoteId });
  if (quote === null) return refuse("quote_not_found", `no quote "${quoteId}"`, "quote");
  if (!quoteMatches(quote, intent))
    return refuse(
      "quote_mismatch",
      "the payment's asset, amount or destination differ from the quote's",
      "quote",
    );
  const nowMs = deps.nowMs();
  const honoured = quoteCandidates(quote, deps.snapshot(), nowMs);
  if (!honoured.ok)
    return refuse(
      "quote_expired",
      `quote ${quoteId} expired at ${new Date(quote.expiresAtMs).toISOString()}`,
      "quote",
    );
  return {
    chosen: honoured.candidates[0] ?? null,
    candidates: honoured.candidates,
    excluded: [...quote.decision.excluded, ...honoured.excluded],
    amountMicroUsd: quote.decision.amountMicroUsd,
    snapshotTakenAtMs: quote.decision.snapshotTakenAtMs,
  };
}

/** Prices a payment and freezes the decision for `ttlMs`. Writes the quote; nothing else. */
export async function createPaymentQuote(
  deps: PaymentsDeps,
  params: {
    tenantId: string;
    asset: string;
    amount: string;
    destination: Destination;
    policy: RoutePolicy;
    ttlMs: number;
  },
): Promise<{ ok: true; id: string; quote: Quote } | Refused> {
  const asset = assetByCode(params.asset);
  if (asset === null) return refuse("unknown_asset", `no asset "${params.asset}"`, "asset");
  const amount = parseAmount(params.amount, asset);
  if (!amount.ok)
    return refuse(amount.error, `amount "${params.amount}" is not a valid ${asset.code} amount`, "amount");
  const intent = { asset, amount: amount.value, destination: params.destination };
  const decision = routeNow(deps, intent, params.policy);
  const created = createQuote(decision, intent, deps.nowMs(), params.ttlMs);
  if (!created.ok)
    return {
      ok: false,
      refusal: "no_route",
      message: "no rail can make this payment under its constraints",
      decision,
    };
  const id = newId("quo");
  await insertQuote(deps.db, { id, tenantId: params.tenantId, quote: created.quote });
  return { ok: true, id, quote: created.quote };
}

/** Checks a request against the tenant's accounts and the router. Writes nothing. */
async function prepare(
  deps: PaymentsDeps,
  params: CreatePaymentParams,
): Promise<
  Refused | { ok: true; asset: Asset; amount: bigint; source: AccountRecord; decision: RouteDecision }
> {
  const asset = assetByCode(params.asset);
  if (asset === null) return refuse("unknown_asset", `no asset "${params.asset}"`, "asset");
  const amount = parseAmount(params.amount, asset);
  if (!amount.ok)
    return refuse(
      amount.error,
      `amount "${params.amount}" is not a valid ${asset.code} amount (${asset.scale} decimals at most, more than zero)`,
      "amount",
    );
  const source = await deps.accounts.tenantAccount({ tenantId: params.tenantId, id: params.sourceAccountId });
  if (source === null)
    return refuse("account_not_found", `no account "${params.sourceAccountId}"`, "source.account");
  if (source.asset.code !== asset.code)
    return refuse(
      "asset_mismatch",
      `account ${source.id} holds ${source.asset.code}, not ${asset.code}`,
      "asset",
    );
  if (params.destination.kind === "account") {
    const target = await deps.accounts.tenantAccount({
      tenantId: params.tenantId,
      id: params.destination.accountId,
    });
    if (target === null)
      return refuse(
        "destination_not_found",
        `no account "${params.destination.accountId}"`,
        "destination.account",
      );
    if (target.asset.code !== asset.code)
      return refuse(
        "asset_mismatch",
        `account ${target.id} holds ${target.asset.code}, not ${asset.code}`,
        "destination.account",
      );
    if (target.id === source.id)
      return refuse("same_account", "source and destination are the same account", "destination.account");
  }
  const intent = { asset, amount: amount.value, destination: params.destination };
  const decision =
    params.quoteId === null
      ? routeNow(deps, intent, params.policy)
      : await routeByQuote(deps, params.tenantId, params.quoteId, intent);
  if ("refusal" in decision) return decision;
  if (decision.chosen === null) {
    return {
      ok: false,
      refusal: "no_route",
      message: "no rail can make this payment under its constraints",
      decision,
    };
  }
  return { ok: true, asset, amount: amount.value, source, decision };
}

export async function createPayment(
  deps: PaymentsDeps,
  params: CreatePaymentParams,
): Promise<CreatePaymentResult> {
  const prepared = await prepare(deps, params);
  if (!prepared.ok) return prepared;
  const { asset, amount, source, decision } = prepared;
  const netting = deps.netting;
  const accrues =
    netting !== undefined &&
    params.destination.kind === "evm_address" &&
    shouldAccrue(netting, decision, params.destination.kind);
  const paymentId = newId("pay");
  // What is written, and (with what the database adds) the payment answered without reading it back.
  const fields = {
    id: paymentId,
    tenantId: params.tenantId,
    assetCode: asset.code,
    amount,
    sourceAccountId: source.id,
    destination: params.destination,
    policy: params.policy,
    decision,
    metadata: params.metadata,
  };
  const row = { ...fields, idempotencyKey: params.idempotencyKey, quoteId: params.quoteId };
  const firstCandidate = accrues ? undefined : decision.candidates[0];
  let driven: Driven;
  let first: { attempt: Attempt; reservation: Reservation | Refusal } | null = null;
  try {
    if (firstCandidate === undefined) {
      driven = { payment: processing(fields, await insertPayment(deps.db, row), []), current: true };
    } else {
      const rail = deps.rails.get(firstCandidate.rail);
      if (rail === undefined)
        throw new PaymentInvariantError(`router chose unknown rail ${firstCandidate.rail}`);
      const attemptId = newId("att");
      const newAttempt = {
        id: attemptId,
        rail: rail.id,
        amount: firstCandidate.amount,
        feeMax: firstCandidate.feeMax,
        reserveTransferId: derivedLedgerId(attemptId, "reserve"),
      };
      // The payment, its first attempt and that attempt's reservation: one transaction. The payment is written
      // whether or not the ledger grants the reservation (a refused one fails the attempt below).
      const written = await reserve(deps, fields, newAttempt, rail, insertPaymentStatement(row, newAttempt));
      const attempt = firstAttemptOf(paymentId, newAttempt);
      driven = { payment: processing(fields, paymentInserted(written.rows ?? []), [attempt]), current: true };
      first = { attempt, reservation: written.reservation };
    }
  } catch (error) {
    // A payment already made under this key is returned as it stands (nothing was written); recovery finishes
    // it if it is open.
    if (!isPaymentKeyTaken(error) || params.idempotencyKey === null) throw error;
    const existingId = await paymentIdForKey(deps.db, params.tenantId, params.idempotencyKey);
    return { ok: true, payment: await readPayment(deps, params.tenantId, existingId) };
  }
  if (accrues && netting !== undefined && params.destination.kind === "evm_address")
    return accrue(deps, netting, {
      id: paymentId,
      tenantId: params.tenantId,
      sourceAccountId: source.id,
      payee: params.destination.address,
      amount,
    });
  await runCandidates(deps, driven, { firstSeq: 0, first });
  return {
    ok: true,
    payment: driven.current ? driven.payment : await readPayment(deps, params.tenantId, paymentId),
  };
}

/** A payment as just written, with what the database added. */
function processing(
  fields: Omit<
    Payment,
    "status" | "rail" | "failureCode" | "failureMessage" | "createdAt" | "updatedAt" | "attempts"
  >,
  inserted: { createdAt: Date; updatedAt: Date },
  attempts: Attempt[],
): Payment {
  return {
    ...fields,
    status: "processing",
    rail: null,
    failureCode: null,
    failureMessage: null,
    createdAt: inserted.createdAt,
    updatedAt: inserted.updatedAt,
    attempts,
  };
}

/** A payout that accrues for netting instead of leaving alone; fails at once when the funds are not there. */
async function accrue(
  deps: PaymentsDeps,
  netting: NettingDeps,
  payout: Parameters<typeof accruePayout>[1],
): Promise<CreatePaymentResult> {
  const accrued = await accruePayout(netting, payout);
  if (accrued === "insufficient_funds")
    await failPayment(
      deps,
      payout,
      "insufficient_funds",
      "the source account's available balance is below the amount",
    );
  return { ok: true, payment: await readPayment(deps, payout.tenantId, payout.id) };
}

async function readPayment(deps: PaymentsDeps, tenantId: string, id: string): Promise<Payment> {
  const payment = await getPayment(deps.db, { tenantId, id });
  if (payment === null) throw new PaymentInvariantError(`payment ${id} vanished after it was written`);
  return payment;
}

/**
 * A payment as this process drives it: the record kept up to date in memory with every write this process
 * makes, `current` until a conditional update finds that another writer moved it first (then only the
 * database knows how it stands).
 */
type Driven = { payment: Payment; current: boolean };

/** Why the ledger would not make a reservation: the payer's account is short, or the rail does not hold that much. */
type Refusal = Exclude<ReserveOutcome, "reserved">;

/**
 * What this process knows of an attempt's reservation: made (and how), refused, not asked for yet, or only the
 * ledger knows.
 */
type ReservationKnown = Reservation | Refusal | "absent" | "ask_ledger";

/**
 * Tries the decision's candidates from `firstSeq` on, until one succeeds, is in flight, or may not fall back.
 * `first`, when given, is the attempt for `firstSeq`, already written, and what became of its reservation.
 */
async function runCandidates(
  deps: PaymentsDeps,
  driven: Driven,
  params: { firstSeq: number; first: { attempt: Attempt; reservation: Reservation | Refusal } | null },
): Promise<void> {
  const { payment } = driven;
  if (payment.decision === null) throw new PaymentInvariantError(`payment ${payment.id} has no decision`);
  const candidates = payment.decision.candidates;
  for (let seq = params.firstSeq; seq < candidates.length; seq += 1) {
    const candidate = candidates[seq]!;
    const rail = deps.rails.get(candidate.rail);
    if (rail === undefined) throw new PaymentInvariantError(`router chose unknown rail ${candidate.rail}`);
    let attempt: Attempt;
    // A fresh attempt id: its reservation cannot exist yet.
    let known: ReservationKnown = "absent";
    if (seq === params.firstSeq && params.first !== null) {
      attempt = params.first.attempt;
      known = params.first.reservation;
    } else {
      const attemptId = newId("att");
      attempt = await insertAttempt(deps.db, {
        id: attemptId,
        paymentId: payment.id,
        seq,
        rail: rail.id,
        amount: candidate.amount,
        feeMax: candidate.feeMax,
        reserveTransferId: derivedLedgerId(attemptId, "reserve"),
      });
      payment.attempts.push(attempt);
    }
    const next = await driveAttempt(deps, driven, attempt, rail, known);
    if (next !== "fall_back") return;
  }
  // Only reached when a stopped process left the payment with no candidate after its last failure.
  const message = "every candidate rail failed";
  const finished = await failPayment(deps, payment, "rail_unavailable", message);
  noteFinished(driven, finished, {
    status: "failed",
    failureCode: "rail_unavailable",
    failureMessage: message,
  });
}

/** Ends a processing payment as failed, with its event, in one transaction. null when it had already ended. */
async function failPayment(
  deps: PaymentsDeps,
  payment: { id: string; tenantId: string },
  failureCode: PaymentFailureCode,
  failureMessage: string,
): Promise<Date | null> {
  return await deps.db.transaction(async (tx) => {
    const finished = await finishPayment(tx, {
      id: payment.id,
      status: "failed",
      rail: null,
      failureCode,
      failureMessage,
    });
    if (finished !== null)
      await insertOutboxEvent(tx, {
        tenantId: payment.tenantId,
        type: "payment.failed",
        payload: { payment_id: payment.id },
      });
    return finished;
  });
}

type Next = "done" | "fall_back";

/** Reserve (unless made), execute and finish one attempt, from whatever status it is in. Safe to call again. */
async function driveAttempt(
  deps: PaymentsDeps,
  driven: Driven,
  attempt: Attempt,
  rail: Rail,
  known: ReservationKnown,
): Promise<Next> {
  const { payment } = driven;
  let reservation: Reservation | Refusal | "absent";
  if (known === "ask_ledger") {
    // Recovery: the reservation's id is on the attempt row; if the ledger has it, it was made, and only then
    // may the rail have been asked to pay.
    reservation = (await findReservation(deps.ledger, attempt.reserveTransferId)) ?? "absent";
  } else {
    reservation = known;
  }
  if (reservation === "absent") reservation = (await reserve(deps, payment, attempt, rail, null)).reservation;
  if (typeof reservation === "string") {
    // insufficient_liquidity: the rail's clearing account would go below zero — the rail does not hold that
    // much, and another rail may.
    const onRail = reservation === "insufficient_liquidity";
    return failAttempt(deps, driven, attempt, {
      code: reservation,
      message: onRail
        ? `rail ${rail.id} does not hold enough to pay this out`
        : "the source account's available balance is below the amount",
      retryElsewhere: onRail,
      reservation: null,
    });
  }
  deps.learning?.noteAttempt(rail.id);
  const outcome: AttemptOutcome = await rail.execute({
    id: attempt.id,
    paymentId: payment.id,
    amount: attempt.amount,
    destination: payment.destination,
    feeMax: attempt.feeMax,
  });
  return applyOutcome(deps, driven, attempt, outcome, reservation);
}

async function applyOutcome(
  deps: PaymentsDeps,
  driven: Driven,
  attempt: Attempt,
  outcome: AttemptOutcome,
  reservation: Reservation | null,
): Promise<Next> {
  switch (outcome.status) {
    case "succeeded":
      await succeedAttempt(deps, driven, attempt, outcome.evidence, outcome.fee, reservation);
      return "done";
    case "in_flight":
      if (await moveAttempt(deps.db, { id: attempt.id, to: "in_flight" })) attempt.status = "in_flight";
      else driven.current = false;
      return "done";
    case "failed":
      return failAttempt(deps, driven, attempt, {
        code: outcome.code,
        message: outcome.message,
        retryElsewhere: outcome.retryElsewhere,
        reservation: reservation ?? "ask_ledger",
      });
  }
}

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
async function reserve(
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
async function resolveReservation(
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

/** Brings the payment in memory up to what finishPayment wrote, or marks it not current when it found the payment already ended. */
function noteFinished(
  driven: Driven,
  updatedAt: Date | null,
  fields: {
    status: "succeeded" | "failed";
    rail?: string;
    failureCode: string | null;
    failureMessage: string | null;
  },
): void {
  if (updatedAt === null) {
    driven.current = false;
    return;
  }
  const { payment } = driven;
  payment.status = fields.status;
  if (fields.rail !== undefined) payment.rail = fields.rail;
  payment.failureCode = fields.failureCode;
  payment.failureMessage = fields.failureMessage;
  payment.updatedAt = updatedAt;
}

async function succeedAttempt(
  deps: PaymentsDeps,
  driven: Driven,
  attempt: Attempt,
  evidence: SettlementEvidence,
  fee: bigint,
  reservation: Reservation | null,
): Promise<void> {
  const { payment } = driven;
  const finish = finishAttemptStatement({
    attempt: { id: attempt.id, to: "succeeded", evidence, fee },
    payment: {
      id: payment.id,
      status: "succeeded",
      rail: attempt.rail,
      event: { type: "payment.succeeded", payload: { payment_id: payment.id } },
    },
  });
  const finished = attemptFinished(
    await resolveReservation(deps, attempt, "post", reservation ?? "ask_ledger", finish, evidence),
  );
  if (finished.attemptMoved) {
    attempt.status = "succeeded";
    attempt.evidence = evidence;
    attempt.fee = fee;
  } else {
    driven.current = false;
  }
  noteFinished(driven, finished.paymentFinishedAt, {
    status: "succeeded",
    rail: attempt.rail,
    failureCode: null,
    failureMessage: null,
  });
}

async function failAttempt(
  deps: PaymentsDeps,
  driven: Driven,
  attempt: Attempt,
  failure: {
    code: PaymentFailureCode;
    message: string;
    retryElsewhere: boolean;
    /** The reservation to void; null when none was made. */
    reservation: Reservation | "ask_ledger" | null;
  },
): Promise<Next> {
  const { payment } = driven;
  const candidatesLeft = (payment.decision?.candidates.length ?? 0) > attempt.seq + 1;
  const fallBack = failure.retryElsewhere && candidatesLeft;
  const move = {
    id: attempt.id,
    to: "failed",
    failureCode: failure.code,
    failureMessage: failure.message,
  } as const;
  // Falling back, only the attempt ends; otherwise the payment ends with it.
  const statement = fallBack
    ? moveAttemptStatement(move)
    : finishAttemptStatement({
        attempt: move,
        payment: {
          id: payment.id,
          status: "failed",
          rail: null,
          failureCode: failure.code,
          failureMessage: failure.message,
          event: { type: "payment.failed", payload: { payment_id: payment.id } },
        },
      });
  const rows =
    failure.reservation === null
      ? await deps.db.query(statement.text, statement.params)
      : await resolveReservation(deps, attempt, "void", failure.reservation, statement);
  let moved: boolean;
  if (fallBack) {
    moved = attemptMoved(rows);
  } else {
    const finished = attemptFinished(rows);
    moved = finished.attemptMoved;
    noteFinished(driven, finished.paymentFinishedAt, {
      status: "failed",
      failureCode: failure.code,
      failureMessage: failure.message,
    });
  }
  if (moved) {
    attempt.status = "failed";
    attempt.failureCode = failure.code;
    attempt.failureMessage = failure.message;
  } else {
    driven.current = false;
  }
  return fallBack ? "fall_back" : "done";
}

/** Applies a rail's own report about an attempt in flight. Unknown or finished attempts change nothing. */
export async function applyRailEvent(deps: PaymentsDeps, event: RailEvent): Promise<void> {
  if (event.kind !== "attempt_succeeded" && event.kind !== "attempt_failed") return; // money in is the settlement's
  const attempt = await getAttempt(deps.db, event.attemptId);
  if (attempt === null || attempt.status === "succeeded" || attempt.status === "failed") return;
  const driven: Driven = { payment: await paymentOf(deps, attempt), current: true };
  const outcome: AttemptOutcome =
    event.kind === "attempt_succeeded"
      ? { status: "succeeded", evidence: event.evidence, fee: event.fee }
      : { status: "failed", code: event.code, message: event.message, retryElsewhere: event.retryElsewhere };
  const next = await applyOutcome(deps, driven, attempt, outcome, null);
  if (next === "fall_back") await runCandidates(deps, driven, { firstSeq: attempt.seq + 1, first: null });
}

async function paymentOf(deps: PaymentsDeps, attempt: Attempt): Promise<Payment> {
  const owner = await getPaymentById(deps.db, attempt.paymentId);
  const payment =
    owner === null ? null : await getPayment(deps.db, { tenantId: owner.tenantId, id: attempt.paymentId });
  if (payment === null) throw new PaymentInvariantError(`attempt ${attempt.id} has no payment`);
  return payment;
}

/**
 * Resumes every attempt left open by a stop or a crash: the ledger is asked whether each one's reservation
 * was made (and it is made when not), rails are asked for the outcome of what they were executing (they never
 * pay an attempt id twice). Run at start with `quietMs` 0 and then periodically; a live request working on
 * the same attempt at the same time is harmless, since every step is idempotent and every status move
 * conditional.
 */
export async function recoverOpenAttempts(
  deps: PaymentsDeps,
  options: { quietMs: number } = { quietMs: deps.strandedQuietMs },
): Promise<number> {
  const open = await listOpenAttempts(deps.db, { quietMs: options.quietMs, limit: deps.recoveryBatchMax });
  for (const attempt of open) {
    const rail = deps.rails.get(attempt.rail);
    if (rail === undefined) continue; // that rail is not configured in this process; it stays open for one that has it
    const driven: Driven = { payment: await paymentOf(deps, attempt), current: true };
    const next = await driveAttempt(deps, driven, attempt, rail, "ask_ledger");
    if (next === "fall_back") await runCandidates(deps, driven, { firstSeq: attempt.seq + 1, first: null });
  }
  // A payment with no open attempt: its next candidate was never written. The unique (payment, seq) of
  // attempts makes a race with a live request in another process lose on insert instead of paying twice.
  const stranded = await listStrandedPayments(deps.db, {
    quietMs: options.quietMs,
    limit: deps.recoveryBatchMax,
  });
  for (const row of stranded) {
    const payment = await readPayment(deps, row.tenantId, row.id);
    await runCandidates(deps, { payment, current: true }, { firstSeq: row.nextSeq, first: null });
  }
  return open.length + stranded.length;
}
