// The life of a payment: check the request and route it (routing.ts), reserve the funds (a pending ledger
// transfer, reservations.ts), execute an attempt on the chosen rail, then post the reservation with the rail's
// evidence, or void it and fall back to the next candidate when the failure says another rail may succeed
// (execution.ts); resume what a stop left open (recovery.ts). This module makes the payment.
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
//
// Two departures from that life: a payment between two accounts of the tenant skips the reservation and is written
// once, final, with the payments beside it (internal.ts); a payment whose rail takes longer than the request's wait
// is answered as it stands, processing, and goes on here (recovery resumes it if this process stops).
import { derivedLedgerId, newId, newIdWithBits } from "../ids/index.ts";
import { type Reservation, transferCodes } from "../ledger/index.ts";
import type { RouteDecision } from "../router/types.ts";
import { accruePayout, isPaymentNotProcessing, type NettingDeps, shouldAccrue } from "./batch-payouts.ts";
import { type CreatePaymentParams, type CreatePaymentResult, type PaymentsDeps, refuse } from "./deps.ts";
import { PaymentInvariantError } from "./errors.ts";
import {
  type Driven,
  failPayment,
  type Prepared,
  prepareAttempt,
  readPayment,
  runCandidates,
  withdrawPrepared,
} from "./execution.ts";
import { type Refusal, reserve } from "./reservations.ts";
import { prepare } from "./routing.ts";
import {
  firstAttemptOf,
  inJsonbKeyOrder,
  insertPayment,
  insertPaymentStatement,
  isPaymentKeyTaken,
  isQuoteTaken,
  paymentIdForKey,
  paymentIdHolding,
  paymentInserted,
} from "./store.ts";
import { type Attempt, insufficientFundsMessage, type Payment } from "./types.ts";

export async function createPayment(
  deps: PaymentsDeps,
  params: CreatePaymentParams,
): Promise<CreatePaymentResult> {
  const prepared = await prepare(deps, params);
  if (!prepared.ok) {
    // A payment already made under this key whose answer was lost (a 5xx is not kept, so its retry runs again) is
    // the answer — not a refusal of what the request would be now: its quote expired since, its rail gone. Looked up
    // only on a refusal, which a first request of a key seldom meets.
    if (await keyHoldsPayment(deps, params)) return keyTaken(deps, params);
    return prepared;
  }
  const { asset, amount, source, target, decision } = prepared;
  const netting = deps.netting;
  const accruesTo = accrualPayee(netting, decision, asset.code);
  const accrues = accruesTo !== null;
  // Its bits name its internal transfer's link (ownLedgerId), read off the id's bytes rather than its text.
  const { id: paymentId, bits: paymentBits } = newIdWithBits("pay");
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
    metadata: inJsonbKeyOrder(params.metadata), // as the row gives it back: a repeat answers the same bytes
  };
  const record = params.idempotencyKey === null ? null : (params.idempotencyRecord ?? null);
  const requestSha256 =
    params.idempotencyKey === null ? null : (record?.requestSha256 ?? params.requestSha256 ?? null);
  const firstCandidate = accrues ? undefined : decision.candidates[0];
  const firstRail = firstCandidate === undefined ? undefined : deps.rails.get(firstCandidate.rail);
  if (
    firstCandidate !== undefined &&
    firstRail?.kind === "internal" &&
    decision.candidates.length === 1 &&
    target !== null &&
    // A quote is claimed by the payment's own row, which refuses a second one: the batch must not share that fate.
    params.quoteId === null
  ) {
    // Two accounts of the tenant: settled in the ledger alone, in one write shared with the payments beside it.
    deps.learning?.noteAttempt(firstRail.id);
    const settled = await deps.internal.settle({
      payment: fields,
      attempt: { rail: firstRail.id, amount: firstCandidate.amount, feeMax: firstCandidate.feeMax },
      ledgerLink: paymentBits,
      posting: {
        debitAccountId: source.ledgerAccountId,
        creditAccountId: target.ledgerAccountId,
        amount: firstCandidate.amount,
        ledger: asset.ledger,
        code: transferCodes.payments.payment,
      },
      idempotencyKey: params.idempotencyKey,
      requestSha256,
      quoteId: params.quoteId,
      record,
    });
    if (settled.kind === "key_taken") return keyTaken(deps, params);
    return { ok: true, payment: settled.payment, answer: settled.answer };
  }
  const row = { ...fields, idempotencyKey: params.idempotencyKey, requestSha256, quoteId: params.quoteId };
  let driven: Driven;
  let first: { attempt: Attempt; reservation: Reservation | Refusal; prepared: Prepared | null } | null =
    null;
  let writtenAhead: Prepared | null = null;
  // Answered in the write that ends the payment, if it ends while the request waits (record: written unanswered).
  const answering = record === null ? {} : { answering: record };
  try {
    if (firstCandidate === undefined) {
      driven = {
        payment: processing(fields, await insertPayment(deps.db, row, record), []),
        current: true,
        ...answering,
      };
    } else {
      if (firstRail === undefined)
        throw new PaymentInvariantError(`router chose unknown rail ${firstCandidate.rail}`);
      const attemptId = newId("att");
      const newAttempt = {
        id: attemptId,
        seq: 0,
        rail: firstRail.id,
        amount: firstCandidate.amount,
        feeMax: firstCandidate.feeMax,
        reserveTransferId: derivedLedgerId(attemptId, "reserve"),
      };
      // The rail writes its own record of the attempt ahead (its journal line) while the reservation is written.
      writtenAhead = prepareAttempt(deps, firstRail, fields, newAttempt);
      // The payment, its first attempt and that attempt's reservation: one transaction. The payment is written
      // whether or not the ledger grants the reservation (a refused one fails the attempt below).
      const written = await reserve(
        deps,
        fields,
        newAttempt,
        firstRail,
        insertPaymentStatement(row, newAttempt, record),
      );
      const attempt = firstAttemptOf(paymentId, newAttempt);
      driven = {
        payment: processing(fields, paymentInserted(written.rows ?? []), [attempt]),
        current: true,
        ...answering,
      };
      first = { attempt, reservation: written.reservation, prepared: writtenAhead };
    }
  } catch (error) {
    // Nothing is sent for an attempt whose reservation is not known to be made (recovery asks the ledger first).
    await withdrawPrepared(deps, writtenAhead);
    // The payment, its attempt and its reservation go in one transaction: nothing of it was written — unless the
    // ledger says the outcome is unknown (its COMMIT got no answer), when all of it may be. The caller hears a server
    // error either way; a repeat with the key then finds the payment if it was written, and recovery drives it.
    // The quote's index may answer before the key's: a retry racing its original on the same quote is that payment.
    if (params.quoteId !== null && isQuoteTaken(error)) {
      if (await keyHoldsPayment(deps, params)) return keyTaken(deps, params);
      return refuse(
        "quote_used",
        `quote ${params.quoteId} was used by another payment already (whatever became of it): quote again`,
        "quote",
      );
    }
    if (!isPaymentKeyTaken(error) || params.idempotencyKey === null) throw error;
    return keyTaken(deps, params);
  }
  if (first !== null && typeof first.reservation === "string") await withdrawPrepared(deps, writtenAhead);
  if (accruesTo !== null && netting !== undefined)
    return accrue(deps, netting, {
      id: paymentId,
      tenantId: params.tenantId,
      sourceAccountId: source.id,
      payee: accruesTo,
      amount,
    });
  const run = runCandidates(deps, driven, { firstSeq: 0, first });
  const waitMs = params.waitMs ?? deps.railWaitMs;
  if (waitMs !== undefined && !(await settlesWithin(run, waitMs))) {
    // The rail is slow: the caller hears `processing` (the reservation is durable) and the payment goes on here;
    // if this process stops first, recovery resumes it. The 202 is the answer kept (whichever write comes first
    // keeps its answer: a repeat is then answered from the payment as it stands, either way).
    run.catch((error: unknown) =>
      deps.logger?.error({ err: error, paymentId }, "a payment answered processing failed while it went on"),
    );
    return { ok: true, payment: structuredClone(driven.payment), answer: null };
  }
  await run;
  if (driven.current && driven.answered === true && record !== null)
    return { ok: true, payment: driven.payment, answer: record.answer(driven.payment) };
  return {
    ok: true,
    payment: driven.current ? driven.payment : await readPayment(deps, params.tenantId, paymentId),
    answer: null,
  };
}

/** Whether `work` settles (either way) within `ms`. */
async function settlesWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([
      work.then(
        () => true,
        () => true,
      ),
      timedOut,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Whether a payment already holds the request's Idempotency-Key. */
async function keyHoldsPayment(deps: PaymentsDeps, params: CreatePaymentParams): Promise<boolean> {
  return (
    params.idempotencyKey !== null &&
    (await paymentIdHolding(deps.db, params.tenantId, params.idempotencyKey)) !== null
  );
}

/**
 * The Idempotency-Key is another request's (nothing was written): with the HTTP record, the caller looks it up;
 * without, the payment already made under the key is returned as it stands (recovery finishes it if it is open).
 */
async function keyTaken(deps: PaymentsDeps, params: CreatePaymentParams): Promise<CreatePaymentResult> {
  if (params.idempotencyRecord !== undefined || params.idempotencyKey === null)
    return { ok: false, keyTaken: true };
  const existingId = await paymentIdForKey(deps.db, params.tenantId, params.idempotencyKey);
  return {
    ok: true,
    payment: await readPayment(deps, params.tenantId, existingId),
    answer: null,
    replayed: true,
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

/**
 * Where a payment accrues for netting instead of leaving alone, or null when it does not: a payout to an address (the
 * payment's, or the payee's method the chosen rail pays) in the batch payer's own asset, whose fee would eat too much
 * of it.
 */
export function accrualPayee(
  netting: NettingDeps | undefined,
  decision: RouteDecision | null,
  assetCode: string,
  /** The payment is known to accrue (recovery): the fee's share is not weighed again. */
  known = false,
): `0x${string}` | null {
  const chosenDestination = decision?.chosen?.destination;
  return netting !== undefined &&
    decision !== null &&
    chosenDestination?.kind === "evm_address" &&
    assetCode === netting.payer.asset.code &&
    (known || shouldAccrue(netting, decision, chosenDestination.kind))
    ? chosenDestination.address
    : null;
}

/**
 * A payout that accrues for netting instead of leaving alone; fails at once when the funds are not there. Idempotent
 * (the accrual's ledger id and its queued payout are the payment's): recovery runs it too, for a payment whose request
 * stopped before it or is still on its way to it.
 */
export async function accrue(
  deps: Pick<PaymentsDeps, "db">,
  netting: NettingDeps,
  payout: Parameters<typeof accruePayout>[1],
): Promise<CreatePaymentResult> {
  let accrued: Awaited<ReturnType<typeof accruePayout>>;
  try {
    accrued = await accruePayout(netting, payout);
  } catch (error) {
    // Ended meanwhile (the request or recovery failed it for its funds): nothing was accrued.
    if (!isPaymentNotProcessing(error)) throw error;
    return { ok: true, payment: await readPayment(deps, payout.tenantId, payout.id), answer: null };
  }
  // Short: failed, unless another accrual of it (recovery's, once the balance allowed it) queued it meanwhile.
  if (accrued === "insufficient_funds")
    await failPayment(deps, payout, "insufficient_funds", insufficientFundsMessage, { unlessAccrued: true });
  return { ok: true, payment: await readPayment(deps, payout.tenantId, payout.id), answer: null };
}
