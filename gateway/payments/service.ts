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
import { derivedLedgerId, newId } from "../ids/index.ts";
import type { Reservation } from "../ledger/index.ts";
import { accruePayout, type NettingDeps, shouldAccrue } from "./batch-payouts.ts";
import type { CreatePaymentParams, CreatePaymentResult, PaymentsDeps } from "./deps.ts";
import { PaymentInvariantError } from "./errors.ts";
import { type Driven, failPayment, readPayment, runCandidates } from "./execution.ts";
import { type Refusal, reserve } from "./reservations.ts";
import { prepare } from "./routing.ts";
import {
  firstAttemptOf,
  insertPayment,
  insertPaymentStatement,
  isPaymentKeyTaken,
  paymentIdForKey,
  paymentInserted,
} from "./store.ts";
import type { Attempt, Payment } from "./types.ts";

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
