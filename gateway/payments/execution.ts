// Executing a payment's attempts: reserve (unless made), ask the rail, then post the reservation with the rail's
// evidence, or void it and fall back to the next candidate when the failure says another rail may succeed. Every
// step is idempotent and every status move conditional, so the live path, recovery and a rail's late event may
// all drive the same attempt.
import {
  type AttemptOutcome,
  type AttemptSucceeded,
  type OutgoingAttempt,
  type Rail,
  type RailEvent,
  storableText,
} from "../../core/index.ts";
import { derivedLedgerId, newId } from "../ids/index.ts";
import { findReservation, type Reservation } from "../ledger/index.ts";
import { type Candidate, quoteTtlMsMax } from "../router/index.ts";
import { accruedUnderLock } from "./batch-payouts.ts";
import type { PaymentsDeps } from "./deps.ts";
import { PaymentInvariantError } from "./errors.ts";
import type { IdempotencyRecord } from "./internal.ts";
import { type Refusal, type ReservationKnown, reserve, resolveReservation } from "./reservations.ts";
import {
  attemptFinished,
  attemptMoved,
  finishAttemptStatement,
  finishPayment,
  getAttempt,
  getPayment,
  getPaymentById,
  insertAttempt,
  moveAttempt,
  moveAttemptStatement,
} from "./store.ts";
import {
  type Attempt,
  attemptDestination,
  insufficientFundsMessage,
  insufficientLiquidityMessage,
  networkFeeOf,
  type Payment,
  type PaymentFailureCode,
} from "./types.ts";

export async function readPayment(
  deps: Pick<PaymentsDeps, "db">,
  tenantId: string,
  id: string,
): Promise<Payment> {
  const payment = await getPayment(deps.db, { tenantId, id });
  if (payment === null) throw new PaymentInvariantError(`payment ${id} vanished after it was written`);
  return payment;
}

/**
 * A payment as this process drives it: the record kept up to date in memory with every write this process
 * makes, `current` until a conditional update finds that another writer moved it first (then only the
 * database knows how it stands). `answering`: the HTTP request that made it, waiting with its Idempotency-Key —
 * the write that ends the payment keeps the request's answer too (`answered` then), one write instead of two.
 */
export type Driven = {
  payment: Payment;
  current: boolean;
  answering?: Pick<IdempotencyRecord, "key" | "keptStatus">;
  answered?: boolean;
};

/** What the write ending the payment so answers the waiting request's key with, if anything. */
function answeringAs(
  driven: Driven,
  ending: Pick<Payment, "status" | "failureCode">,
): { key: string; status: number } | undefined {
  if (driven.answering === undefined) return undefined;
  const status = driven.answering.keptStatus(ending);
  return status === null ? undefined : { key: driven.answering.key, status };
}

/**
 * Tries the decision's candidates from `firstSeq` on, until one succeeds, is in flight, or may not fall back.
 * `first`, when given, is the attempt for `firstSeq`, already written, and what became of its reservation.
 */
export async function runCandidates(
  deps: PaymentsDeps,
  driven: Driven,
  params: {
    firstSeq: number;
    /** `prepared`: what the rail wrote ahead for it (prepareAttempt), taken back if it is not sent after all. */
    first: { attempt: Attempt; reservation: Reservation | Refusal; prepared?: Prepared | null } | null;
  },
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
    let prepared: Prepared | null = null;
    if (seq === params.firstSeq && params.first !== null) {
      attempt = params.first.attempt;
      known = params.first.reservation;
      prepared = params.first.prepared ?? null;
    } else {
      const priced = stalePriceOf(deps, payment, candidate);
      if (priced !== null) {
        // The rail would pay an amount converted at that price, whatever the rate is now: the FX desk pays the
        // difference, or the payee is short of it. The payment ends; paid again, it is priced now.
        const finished = await failPayment(deps, payment, "rail_unavailable", priced);
        noteFinished(driven, finished, {
          status: "failed",
          failureCode: "rail_unavailable",
          failureMessage: priced,
        });
        return;
      }
      const attemptId = newId("att");
      const inserted = await insertAttempt(deps.db, {
        id: attemptId,
        paymentId: payment.id,
        seq,
        rail: rail.id,
        amount: candidate.amount,
        feeMax: candidate.feeMax,
        reserveTransferId: derivedLedgerId(attemptId, "reserve"),
      });
      if (inserted === null) {
        // Another writer took this fallback first: what comes next is its to do (the request answers what it reads).
        driven.current = false;
        return;
      }
      attempt = inserted;
      payment.attempts.push(attempt);
    }
    const next = await driveAttempt(deps, driven, attempt, rail, known, prepared);
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

/**
 * Why a later attempt may not pay `candidate` at the price its decision converted at: a rail in another asset than the
 * payment's, routed longer ago than a quote may lock a price (quoteTtlMsMax) — a first attempt that stayed in flight
 * for hours before it failed, or a payment stranded while every process was down. Null when it may.
 */
function stalePriceOf(
  deps: Pick<PaymentsDeps, "nowMs">,
  payment: Pick<Payment, "assetCode" | "decision">,
  candidate: Candidate,
): string | null {
  if (payment.decision === null || candidate.asset.code === payment.assetCode) return null;
  const ageMs = deps.nowMs() - payment.decision.snapshotTakenAtMs;
  if (ageMs <= quoteTtlMsMax) return null;
  return `the next rail (${candidate.rail}) pays in ${candidate.asset.code}, at a rate taken ${Math.floor(ageMs / 1_000)} s ago, more than the ${quoteTtlMsMax / 1_000} s a price may be held: not paid at it`;
}

/**
 * Ends a processing payment as failed, with its event, in one transaction. null when it had already ended, or, with
 * `unlessAccrued`, when its payout was queued for netting (another accrual of it passed: it is not failed).
 */
export async function failPayment(
  deps: Pick<PaymentsDeps, "db">,
  payment: { id: string },
  failureCode: PaymentFailureCode,
  failureMessage: string,
  options: { unlessAccrued?: boolean } = {},
): Promise<Date | null> {
  return await deps.db.transaction(async (tx) => {
    if (options.unlessAccrued === true && (await accruedUnderLock(tx, payment.id))) return null;
    return await finishPayment(tx, {
      id: payment.id,
      status: "failed",
      rail: null,
      failureCode,
      failureMessage,
    });
  });
}

type Next = "done" | "fall_back";

/** What the rail is asked to pay for an attempt. */
export function outgoingOf(
  payment: Pick<Payment, "id" | "tenantId" | "destination" | "decision">,
  attempt: Pick<Attempt, "id" | "seq" | "amount" | "feeMax">,
): OutgoingAttempt {
  const destination = attemptDestination(payment, attempt.seq);
  if (destination === null)
    throw new PaymentInvariantError(`attempt ${attempt.id} has no candidate ${attempt.seq} to pay`);
  return {
    id: attempt.id,
    paymentId: payment.id,
    tenantId: payment.tenantId,
    amount: attempt.amount,
    destination,
    feeMax: attempt.feeMax,
  };
}

/** What a rail writes ahead for an attempt (Rail.prepare) while the gateway writes its reservation. */
export type Prepared = { rail: Rail; attemptId: string; done: Promise<void> };

/** Asks the rail to write the attempt ahead, when it can; null when it has nothing to write before execute. */
export function prepareAttempt(
  deps: Pick<PaymentsDeps, "logger">,
  rail: Rail,
  payment: Pick<Payment, "id" | "tenantId" | "destination" | "decision">,
  attempt: Pick<Attempt, "id" | "seq" | "amount" | "feeMax">,
): Prepared | null {
  if (rail.prepare === undefined) return null;
  const outgoing = outgoingOf(payment, attempt);
  const done = rail
    .prepare(outgoing)
    .catch((error: unknown) =>
      deps.logger?.error(
        { err: error, attemptId: outgoing.id },
        "a rail's prepare failed: execute writes it",
      ),
    );
  return { rail, attemptId: outgoing.id, done };
}

/** Takes back what `prepareAttempt` had written, for an attempt whose reservation was not made. */
export async function withdrawPrepared(
  deps: Pick<PaymentsDeps, "logger">,
  prepared: Prepared | null,
): Promise<void> {
  if (prepared === null) return;
  await prepared.done;
  try {
    await prepared.rail.withdraw?.(prepared.attemptId);
  } catch (error) {
    deps.logger?.error({ err: error, attemptId: prepared.attemptId }, "a rail's withdraw failed");
  }
}

/** Reserve (unless made), execute and finish one attempt, from whatever status it is in. Safe to call again. */
export async function driveAttempt(
  deps: PaymentsDeps,
  driven: Driven,
  attempt: Attempt,
  rail: Rail,
  known: ReservationKnown,
  prepared: Prepared | null = null,
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
  if (typeof reservation === "string")
    return failAttempt(deps, driven, attempt, refusalFailure(reservation, rail));
  // A new attempt on a rail whose circuit opened since it was routed, or whose probe another payment took: not sent
  // (the rail never sees its id), the payment goes on to its next candidate. One resumed may have been sent: asked.
  if (
    known !== "ask_ledger" &&
    deps.learning !== undefined &&
    !deps.learning.noteAttempt(rail.id, attempt.id)
  ) {
    // What the rail wrote ahead for it is taken back (a Lightning attempt's tracker held its place in the rail's
    // in-flight count, and its invoice's, until it lapsed).
    await withdrawPrepared(deps, prepared);
    return failAttempt(deps, driven, attempt, {
      code: "rail_unavailable",
      message: `rail ${rail.id} is believed down (its circuit is open, or another payment is probing it); not sent`,
      retryElsewhere: true,
      busy: true,
      reservation,
    });
  }
  const outgoing = outgoingOf(payment, attempt);
  const outcome: AttemptOutcome = await rail.execute(
    known === "ask_ledger" ? { ...outgoing, resumed: true } : outgoing,
  );
  return applyOutcome(deps, driven, attempt, outcome, reservation);
}

/**
 * A reservation the ledger would not make, as the attempt's failure. insufficient_liquidity: the rail's clearing
 * account would go below zero — the rail does not hold that much, and another rail may; rejected: the accounts of
 * this rail do not take the transfer, and another rail's may.
 */
function refusalFailure(refusal: Refusal, rail: Rail) {
  switch (refusal) {
    case "insufficient_funds":
      return {
        code: refusal,
        message: insufficientFundsMessage,
        retryElsewhere: false,
        reservation: null,
      };
    case "insufficient_liquidity":
      return {
        code: refusal,
        message: insufficientLiquidityMessage,
        retryElsewhere: true,
        reservation: null,
      };
    case "rejected":
      return {
        code: refusal,
        message: `the ledger refused to hold the amount between the source account and rail ${rail.id}`,
        retryElsewhere: true,
        reservation: null,
      };
  }
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
      await succeedAttempt(deps, driven, attempt, outcome, reservation);
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
        ...(outcome.busy === true ? { busy: true } : {}),
        reservation: reservation ?? "ask_ledger",
      });
  }
}

/** Brings the payment in memory up to what finishPayment wrote, or marks it not current when it found the payment already ended. */
function noteFinished(
  driven: Driven,
  updatedAt: Date | null,
  fields: {
    status: "succeeded" | "failed";
    rail?: string;
    failureCode: PaymentFailureCode | null;
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
  outcome: AttemptSucceeded,
  reservation: Reservation | null,
): Promise<void> {
  const { payment } = driven;
  const { evidence, fee } = outcome;
  const networkFee = networkFeeOf(outcome.nativeFee);
  const answering = answeringAs(driven, { status: "succeeded", failureCode: null });
  const finish = finishAttemptStatement({
    attempt: { id: attempt.id, to: "succeeded", evidence, fee, networkFee },
    payment: {
      id: payment.id,
      status: "succeeded",
      rail: attempt.rail,
      ...(answering === undefined ? {} : { answering }),
    },
  });
  const finished = attemptFinished(
    await resolveReservation(deps, attempt, "post", reservation ?? "ask_ledger", finish, evidence, outcome),
  );
  if (finished.attemptMoved) {
    attempt.status = "succeeded";
    attempt.evidence = evidence;
    attempt.fee = fee;
    attempt.networkFee = networkFee;
    deps.learning?.recordOutcome(attempt.rail, true, attempt.id);
  } else {
    driven.current = false;
  }
  noteFinished(driven, finished.paymentFinishedAt, {
    status: "succeeded",
    rail: attempt.rail,
    failureCode: null,
    failureMessage: null,
  });
  if (finished.keyAnswered) driven.answered = true;
}

async function failAttempt(
  deps: PaymentsDeps,
  driven: Driven,
  attempt: Attempt,
  reported: {
    code: PaymentFailureCode;
    message: string;
    retryElsewhere: boolean;
    /** Refused for load, not ill health (AttemptOutcome's busy): not counted against the rail. */
    busy?: true;
    /** The reservation to void; null when none was made. */
    reservation: Reservation | "ask_ledger" | null;
  },
): Promise<Next> {
  const { payment } = driven;
  // The rail's own text about its liquidity (LND's, the chain's) may carry the shared balance: the log keeps it.
  const hidden =
    reported.code === "insufficient_liquidity" && reported.message !== insufficientLiquidityMessage;
  if (hidden)
    deps.logger?.info(
      { paymentId: payment.id, attemptId: attempt.id, rail: attempt.rail, railMessage: reported.message },
      "rail cannot send the amount now",
    );
  // Stored as the rail said it, but for what text columns refuse: a NUL in a Lightning Address server's `reason`
  // failed the void with it, a 500, the payment processing and its funds held on every recovery pass.
  const failure = {
    ...reported,
    message: hidden ? insufficientLiquidityMessage : storableText(reported.message),
  };
  const candidatesLeft = (payment.decision?.candidates.length ?? 0) > attempt.seq + 1;
  const fallBack = failure.retryElsewhere && candidatesLeft;
  const move = {
    id: attempt.id,
    to: "failed",
    failureCode: failure.code,
    failureMessage: failure.message,
  } as const;
  // Falling back, only the attempt ends; otherwise the payment ends with it.
  const answering = fallBack
    ? undefined
    : answeringAs(driven, { status: "failed", failureCode: failure.code });
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
          ...(answering === undefined ? {} : { answering }),
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
    if (finished.keyAnswered) driven.answered = true;
  }
  if (moved) {
    attempt.status = "failed";
    attempt.failureCode = failure.code;
    attempt.failureMessage = failure.message;
    // Only the rail's own unavailability counts against it: a failure about the destination or the payment (no
    // route to that node, an expired invoice, a fee above the payer's cap) says nothing of the rail, and counted,
    // anyone could open a rail's circuit for every tenant by paying to destinations that fail. Nor does a refusal
    // for load (busy): one tenant holding its share of the rail's queue full would open it for every tenant.
    if (failure.code === "rail_unavailable" && failure.busy !== true)
      deps.learning?.recordOutcome(attempt.rail, false, attempt.id);
    else deps.learning?.releaseProbe(attempt.rail, attempt.id);
  } else {
    driven.current = false;
  }
  // Another writer ended the attempt first (a rail's event beside recovery, a redelivered event): what comes next is
  // its to decide. Falling back here too made a second attempt of the same seq, or paid on the next rail a payment
  // that writer had ended.
  return fallBack && moved ? "fall_back" : "done";
}

/** Applies a rail's own report about an attempt in flight. Unknown or finished attempts change nothing. */
export async function applyRailEvent(deps: PaymentsDeps, event: RailEvent): Promise<void> {
  if (event.kind !== "attempt_succeeded" && event.kind !== "attempt_failed") return; // money in is the settlement's
  const attempt = await getAttempt(deps.db, event.attemptId);
  if (attempt === null || attempt.status === "succeeded" || attempt.status === "failed") return;
  const driven: Driven = { payment: await paymentOf(deps, attempt), current: true };
  const outcome: AttemptOutcome =
    event.kind === "attempt_succeeded"
      ? {
          status: "succeeded",
          evidence: event.evidence,
          fee: event.fee,
          ...(event.feeDetail === undefined ? {} : { feeDetail: event.feeDetail }),
          ...(event.nativeFee === undefined ? {} : { nativeFee: event.nativeFee }),
        }
      : { status: "failed", code: event.code, message: event.message, retryElsewhere: event.retryElsewhere };
  const next = await applyOutcome(deps, driven, attempt, outcome, null);
  if (next === "fall_back") await runCandidates(deps, driven, { firstSeq: attempt.seq + 1, first: null });
}

export async function paymentOf(deps: PaymentsDeps, attempt: Attempt): Promise<Payment> {
  const owner = await getPaymentById(deps.db, attempt.paymentId);
  const payment =
    owner === null ? null : await getPayment(deps.db, { tenantId: owner.tenantId, id: attempt.paymentId });
  if (payment === null) throw new PaymentInvariantError(`attempt ${attempt.id} has no payment`);
  return payment;
}
