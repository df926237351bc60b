// Paying out: BOLT11 and keysend payments through one SendPaymentV2 stream each, with the router's maximum
// fee. Each attempt's payment hash is written to the journal before LND sees the payment, so that a retry or a
// restarted gateway follows the payment LND already has instead of paying again (LND refuses a second payment
// of one hash; keysend preimages are derived from the attempt id, so a retry has the same hash). A tracker
// follows each payment to its outcome, which is journalled and returned to the waiting execute, or reported
// as an event through the pump when nobody waits any more.
import { createHash, createHmac } from "node:crypto";
import { EventEmitter } from "node:events";
import { getPayment, signMessage, subscribeToPastPayment } from "lightning";
import { parseBolt11 } from "../../core/bolt11.ts";
import { bareBolt11 } from "../../core/destinations.ts";
import {
  type AttemptOutcome,
  type Destination,
  type OutgoingAttempt,
  type RailEvent,
  tenantShareOf,
} from "../../core/index.ts";
import { LightningRailError } from "./errors.ts";
import { enqueue, markDisconnected } from "./events.ts";
import {
  classifyLndError,
  type Failure,
  failureFromFlags,
  flagsFromFailureReason,
  lndErrorText,
} from "./failures.ts";
import { estimateFee, keysendFinalCltvDelta } from "./fees.ts";
import { invoiceForAddress, lnurlDefaults } from "./lnurl.ts";
import { type LightningRailState, type Tracker, withTimeout } from "./state.ts";
import {
  earlierAfter,
  earlierHashesAfter,
  type ForgottenSend,
  forgottenSendRecord,
  isInvoiceOf,
  outcomeRecord,
  type PaymentKind,
  type RailStoreRecord,
  type StoredAttempt,
  type StoredOutcome,
} from "./store.ts";

const keysendRecordType = "5482373484";
const keysendSecretMessage = "switchyard lightning rail keysend secret v1";

// ---- outcomes ------------------------------------------------------------------------------------

const outcomeToResult = (attempt: StoredAttempt, outcome: StoredOutcome): AttemptOutcome =>
  outcome.status === "succeeded"
    ? {
        status: "succeeded",
        evidence: { rail: "lightning", paymentHash: attempt.paymentHash, preimage: outcome.preimage },
        fee: outcome.feeMsat,
      }
    : {
        status: "failed",
        code: outcome.code,
        message: outcome.message,
        retryElsewhere: outcome.retryElsewhere,
        // Journalled: asked again, the attempt answers this and is never sent again.
        final: true,
      };

const outcomeToEvent = (attempt: StoredAttempt, outcome: StoredOutcome): RailEvent =>
  outcome.status === "succeeded"
    ? {
        kind: "attempt_succeeded",
        attemptId: attempt.attemptId,
        evidence: { rail: "lightning", paymentHash: attempt.paymentHash, preimage: outcome.preimage },
        fee: outcome.feeMsat,
      }
    : {
        kind: "attempt_failed",
        attemptId: attempt.attemptId,
        code: outcome.code,
        message: outcome.message,
        retryElsewhere: outcome.retryElsewhere,
      };

/**
 * Reports the outcome as an event; delivered, it is journalled as reported. Set aside, it is kept for the retry
 * (and, not reported, emitted again after a restart).
 */
export function emitOutcome(
  s: LightningRailState,
  attempt: StoredAttempt,
  outcome: StoredOutcome,
  failures = 0,
): void {
  enqueue(s, {
    event: outcomeToEvent(attempt, outcome),
    failures,
    delivered: async () => {
      attempt.reported = true;
      await s.store.append({ t: "reported", attemptId: attempt.attemptId });
    },
    setAside: async () => {
      s.outcomesSetAside.set(attempt.attemptId, { attempt, outcome });
    },
  });
}

const remember = (s: LightningRailState, ok: boolean, latencyMs: number, feeMsat: bigint) => {
  s.recent.push({ ok, latencyMs, feeMsat });
  if (s.recent.length > s.limits.outcomeWindowMax) s.recent.shift();
};

async function finish(s: LightningRailState, tracker: Tracker, outcome: StoredOutcome): Promise<void> {
  const { attempt } = tracker;
  if (attempt.outcome !== null) return;
  // The hashes its mark names besides the one its tracker follows: its earlier invoices, and the mark's own when the
  // tracker follows an earlier one (followEarlier); never its own, which concurrent renewals may have put among the
  // earlier after a reload (a payment of its own is not a second one).
  const earlier = earlierHashesAfter(s.forgottenSends.get(attempt.attemptId), attempt.paymentHash);
  if (earlier.length > 0) {
    const ends = await endsBesideEarlier(s, tracker, outcome, earlier);
    // The rail stopped while LND was asked (and maybe started again, its state reloaded): this tracker is no longer
    // the attempt's, and nothing of it is written.
    if (!s.running || s.trackers.get(attempt.attemptId) !== tracker || !ends) return;
  }
  if (attempt.outcome !== null) return;
  attempt.outcome = outcome;
  s.forgottenSends.delete(attempt.attemptId);
  s.saidOnce.delete(attempt.attemptId);
  tracker.subscription?.removeAllListeners();
  tracker.subscription = null;
  s.trackers.delete(attempt.attemptId);
  remember(
    s,
    outcome.status === "succeeded",
    s.now() - tracker.startedAtMs,
    outcome.status === "succeeded" ? outcome.feeMsat : 0n,
  );
  // Written in order before any later line; the caller need not wait for the disk: were it lost in a
  // crash, the restarted rail asks LND again and gets the same outcome. A caller waiting in execute gets it
  // now, so it is reported in the same write (awaitOutcome then has nothing to add).
  const record = outcomeRecord(attempt.attemptId, outcome);
  const reportedNow = tracker.waiting > 0 && !tracker.eventWanted && !attempt.reported;
  if (reportedNow) attempt.reported = true;
  const written = reportedNow
    ? s.store.append(record, { t: "reported", attemptId: attempt.attemptId })
    : s.store.append(record);
  tracker.resolve(outcome);
  if (tracker.eventWanted) emitOutcome(s, attempt, outcome);
  await written;
}

/**
 * Whether an attempt found never taken whose mark names other invoices of its (a Lightning Address's first, expired
 * and replaced: addressInvoiceAfresh) may end with `outcome`. A slow LND may have registered a send of one later than
 * lateRegistrationMaxMs: its payee was then paid by it. So LND is asked about them. None paid (or all failed): it ends.
 * Its own payment succeeded and another's too: the payee was paid twice, logged as an error; the success is taken,
 * what it paid being paid (the other payment is the operator's to book or claim back; one LND is still paying is said
 * the same way); a hash another attempt of the rail holds, sent or succeeded, is then not asked about, its payment that
 * one's. Its own failed: the other's is its send as much as this one was (same address, same amount), so its outcome
 * is the attempt's. Still pending, the attempt waits for it, its stream followed again at every tick (said once);
 * failed, the attempt fails; succeeded, the attempt succeeds with it, journalled under its hash (followEarlier), unless
 * another attempt of the rail holds that hash: then it is left in flight for an operator. Failed here, the payout
 * would be paid a third time elsewhere. LND not asked: its payment is followed again at the next tick.
 */
async function endsBesideEarlier(
  s: LightningRailState,
  tracker: Tracker,
  outcome: StoredOutcome,
  earlier: readonly string[],
): Promise<boolean> {
  const { attemptId, paymentHash } = tracker.attempt;
  // Nothing more of this stream is taken while LND is asked: the outcome is this one, or none for now.
  tracker.subscription?.removeAllListeners();
  tracker.subscription = null;
  // Its own payment succeeded: a hash another attempt of the rail holds (a mark's line edited to name that one's
  // invoice, read with both hashes among its earlier ones: store.ts applyRecord), sent or succeeded, is not asked
  // about. LND's payment of it is that one's, booked there, and no second payment of this attempt's payee. One that
  // holds it admitted and not sent yet (undecided) is asked about still: withdrawn, that one never asks LND, and LND's
  // payment of the hash would be booked by no one, unsaid but for the error below.
  const asked =
    outcome.status === "succeeded"
      ? earlier.filter((hash) => {
          const holder = attemptPaying(s, hash);
          return (
            holder === null ||
            holder.attemptId === attemptId ||
            (s.trackers.get(holder.attemptId)?.undecided ?? null) !== null
          );
        })
      : earlier;
  let paid: EarlierPayment | null;
  try {
    paid = await earlierPaid(s, asked);
  } catch (error) {
    s.logger.warn(
      { attemptId, paymentHash, error: lndErrorText(error) },
      "LND was not asked about the earlier invoices of an attempt found never taken: its payment is followed again",
    );
    tracker.detached = true;
    return false;
  }
  if (paid === null) return true;
  const where = { attemptId, paymentHash, earlierHash: paid.hash, status: outcome.status };
  if (outcome.status === "succeeded") {
    s.logger.error(
      { ...where, earlierPending: paid.payment === null },
      "LND paid or is paying an earlier invoice of this Lightning Address attempt too, replaced when it expired: its payee was paid twice, or is being paid twice (earlierPending), the earlier payment unbooked",
    );
    return true;
  }
  if (!s.running || s.trackers.get(attemptId) !== tracker) return false;
  if (paid.payment === null) {
    sayOnce(s, attemptId, `earlier pending ${paid.hash}`, () =>
      s.logger.warn(
        where,
        "LND is paying an earlier invoice of this Lightning Address attempt, replaced when it expired, and the attempt's own payment failed: it waits for that payment",
      ),
    );
    // Followed again at every tick: its own payment's failure comes back, and LND is asked again.
    tracker.detached = true;
    return false;
  }
  // Another attempt of the rail holds the hash (a mark's line edited to name its invoice, read as one that kept neither:
  // store.ts applyRecord): LND's payment is that one's, or may be. Taken as this one's too, one payment of LND's would be
  // booked twice, the clearing account no longer LND's. As refusedUnsent does, it is left to an operator, said once
  // (a reconnect follows it again).
  const holder = attemptPaying(s, paid.hash);
  if (holder !== null && holder.attemptId !== attemptId) {
    sayOnce(s, attemptId, `earlier held ${paid.hash}`, () =>
      s.logger.error(
        { ...where, heldBy: holder.attemptId },
        "LND paid an earlier invoice of this Lightning Address attempt, and the attempt's own payment failed, but another attempt of the rail holds its hash: left in flight for an operator",
      ),
    );
    return false;
  }
  const judged = judgeTrackedPayment(sentSince(s, tracker.attempt), paid.payment);
  if (judged.kind !== "own") {
    s.logger.error(
      { ...where, reason: judged.reason },
      "LND has a payment of an earlier invoice of this Lightning Address attempt that may not be its, and the attempt failed: left in flight for an operator",
    );
    return false;
  }
  await followEarlier(s, tracker, paid.hash, paid.payment);
  return false;
}

/**
 * Ends an attempt whose own payment failed with LND's payment of another invoice of its (endsBesideEarlier), which
 * succeeded: the attempt is journalled again under that hash (its mark first in the same write, so that a reload reads
 * this line, not the one it replaces: applyRecord keeps an id's first attempt line) and succeeds with that payment's
 * preimage and fee. Whoever waited on the tracker it replaces asks execute again (takenBack), which answers the outcome.
 */
async function followEarlier(
  s: LightningRailState,
  tracker: Tracker,
  paymentHash: string,
  payment: ConfirmedPayment,
): Promise<void> {
  const { attempt } = tracker;
  const mark = s.forgottenSends.get(attempt.attemptId);
  if (mark === undefined) return;
  const stored: StoredAttempt = {
    ...attempt,
    paymentHash,
    // The invoice it paid, journalled as the attempt's: the mark's own, or an earlier one's (unknown to a mark
    // journalled before they were kept, which names their hashes alone).
    request:
      paymentHash === mark.paymentHash ? mark.request : (mark.earlierRequests?.get(paymentHash) ?? null),
    outcome: null,
    reported: false,
  };
  takenBack.add(tracker);
  forget(s, tracker, neverTakenOutcome);
  s.attempts.set(attempt.attemptId, stored);
  s.attemptByHash.set(paymentHash, attempt.attemptId);
  const followed = newTracker(s, stored, {
    feeMaxMsat: stored.feeMaxMsat,
    destination: stored.destination,
    request: stored.request,
    eventWanted: tracker.eventWanted,
  });
  s.logger.warn(
    { attemptId: attempt.attemptId, paymentHash: attempt.paymentHash, earlierHash: paymentHash },
    "the payment of a Lightning Address attempt failed, and LND paid an earlier invoice of it: it succeeds with that one",
  );
  // The mark and the attempt's line in one write, the mark first: a write that fails is cut back off and leaves
  // neither (or, its cut failing too, at most the mark whole, which stands already, and a torn tail a load drops).
  // Before, a mark that failed was only logged and the line written after it, which a reload ignored: the attempt read
  // back as succeeded under the hash it replaced, with this one's preimage. Unwritten, it is forgotten (writeAhead), its
  // mark standing: the next pass follows that payment (refusedUnsent). A sync that fails leaves both lines in the file
  // while the rail forgets the attempt, which is harmless: a reload tracks the earlier hash, and the attempt succeeds
  // once.
  if (!(await writeAhead(s, followed, forgottenSendRecord(attempt.attemptId, mark)))) return;
  await finish(s, followed, {
    status: "succeeded",
    preimage: payment.secret,
    feeMsat: BigInt(payment.fee_mtokens),
  });
}

const fail = (s: LightningRailState, tracker: Tracker, failure: Failure) =>
  finish(s, tracker, { status: "failed", ...failure }).catch((error: unknown) =>
    s.logger.error(
      { error: lndErrorText(error), attemptId: tracker.attempt.attemptId },
      "storing an outcome failed",
    ),
  );

/**
 * LND found no route: was it the fee limit or the graph? The route fee to this destination and amount without
 * the limit (fees.ts: the invoice's route hints included, a recent answer reused) says.
 */
async function classifyNoRoute(s: LightningRailState, tracker: Tracker): Promise<Failure> {
  const { destination, request } = tracker;
  const target: Destination | null =
    destination !== null
      ? { kind: "lightning_node", pubkey: destination }
      : request !== null
        ? { kind: "bolt11", invoice: request }
        : null;
  if (target !== null) {
    const estimate = await estimateFee(s, { destination: target, amountMsat: tracker.attempt.amountMsat });
    if (estimate.ok && estimate.value.feeMsat > tracker.feeMaxMsat)
      return {
        code: "fee_above_max",
        message: `the cheapest route costs ${estimate.value.feeMsat} msat, above the maximum ${tracker.feeMaxMsat} msat`,
        retryElsewhere: true,
      };
    if (!estimate.ok) s.logger.info({ error: estimate.message }, "route query after no-route failure");
  }
  return { code: "unreachable_destination", message: "no route to the destination", retryElsewhere: true };
}

const onPaymentFailed = (
  s: LightningRailState,
  tracker: Tracker,
  flags: Parameters<typeof failureFromFlags>[0],
) => {
  const failure = failureFromFlags(flags);
  if (failure !== null) return void fail(s, tracker, failure);
  void classifyNoRoute(s, tracker).then((classified) => fail(s, tracker, classified));
};

const onConfirmed = (
  s: LightningRailState,
  tracker: Tracker,
  payment: { secret: string; fee_mtokens: string },
) =>
  void finish(s, tracker, {
    status: "succeeded",
    preimage: payment.secret,
    feeMsat: BigInt(payment.fee_mtokens),
  }).catch((error: unknown) =>
    s.logger.error(
      { error: lndErrorText(error), attemptId: tracker.attempt.attemptId },
      "storing an outcome failed",
    ),
  );

// ---- following a payment -----------------------------------------------------------------------

/**
 * How far LND's clock may be behind the gateway's before a payment it says it made before an attempt was journalled
 * (the journal is written before the send) is doubted.
 */
export const lndClockBehindMaxMs = 60_000;

/**
 * How long after an invoice's expiry, by LND's clock, a send of it that LND took before may still be registered: LND
 * checks the expiry when the send comes, before it registers the payment, so a slow LND (what an attempt found never
 * taken is remembered for) pays one taken before the expiry however late it registers it. A Lightning Address
 * attempt's first invoice is replaced by a new one only once this has passed (addressInvoiceAfresh), and a payment of
 * it that LND registers later still is asked about until the attempt ends. A wait of the payout's, not a bound LND
 * gives: minutes, where a registration seconds late is slow.
 */
export const lateRegistrationMaxMs = 10 * 60_000;

/**
 * How close to its expiry, by the gateway's clock, a Lightning Address's invoice found never taken is no longer sent
 * afresh: LND's clock may be ahead of the gateway's, and a send LND refuses as expired ends the attempt `expired`.
 */
const expiringSendMarginMs = 60_000;

export type ConfirmedPayment = { secret: string; fee_mtokens: string; mtokens: string; created_at: string };

export type PaymentJudgement =
  | { kind: "own" }
  /** Certainly another's: the attempt's send never reached LND (LND holds one payment per hash). */
  | { kind: "foreign"; reason: string }
  /** Made before the attempt by LND's clock: another's, unless LND's clock is far behind the gateway's. */
  | { kind: "doubtful"; reason: string };

/**
 * Whether a payment LND has of a tracked attempt's hash is the attempt's own. Tracking follows whatever payment LND
 * holds of the hash (after a restart, or a send cut off before LND answered), and LND holds one: one that is not the
 * attempt's means the attempt's send never reached LND, so nothing of it went out. A keysend's hash is derived from
 * its attempt id, so its payment is its own; an invoice's hash is anyone's (the operator paying it by hand, another
 * gateway on the same node). Another amount is proof; an earlier time is proof only as far as the two clocks agree,
 * so it is doubted, not decided.
 */
export function judgeTrackedPayment(attempt: StoredAttempt, payment: ConfirmedPayment): PaymentJudgement {
  if (attempt.kind === "keysend") return { kind: "own" };
  const sent = BigInt(payment.mtokens) - BigInt(payment.fee_mtokens);
  if (sent !== attempt.amountMsat)
    return {
      kind: "foreign",
      reason: `LND's payment of this hash sent ${sent} msat, the attempt pays ${attempt.amountMsat} msat`,
    };
  if (Date.parse(payment.created_at) < attempt.createdAtMs - lndClockBehindMaxMs)
    return {
      kind: "doubtful",
      reason: `LND's payment of this hash was made at ${payment.created_at}, before the attempt was journalled at ${new Date(attempt.createdAtMs).toISOString()}`,
    };
  return { kind: "own" };
}

/**
 * The attempt as judged: from its first line's time when its id was forgotten as never taken and sent afresh (its
 * first send, taken late, is as much its own as the one after).
 */
const sentSince = (s: LightningRailState, attempt: StoredAttempt): StoredAttempt => {
  const firstAtMs = s.forgottenSends.get(attempt.attemptId)?.firstAtMs;
  return firstAtMs === undefined || firstAtMs >= attempt.createdAtMs
    ? attempt
    : { ...attempt, createdAtMs: firstAtMs };
};

function attach(s: LightningRailState, tracker: Tracker, subscription: EventEmitter, mode: "send" | "track") {
  tracker.subscription = subscription;
  tracker.detached = false;
  tracker.asked = true;
  subscription.on("confirmed", (payment: ConfirmedPayment) => {
    const judged: PaymentJudgement =
      mode === "track" ? judgeTrackedPayment(sentSince(s, tracker.attempt), payment) : { kind: "own" };
    if (judged.kind === "own") return onConfirmed(s, tracker, payment);
    const where = {
      attemptId: tracker.attempt.attemptId,
      paymentHash: tracker.attempt.paymentHash,
      reason: judged.reason,
    };
    // Followed after a send LND refused: a payment of the hash it has that may not be the attempt's is another's, and
    // the attempt ends as LND refused it (left in flight, it would hold its reservation for good).
    const refusedFirst = tracker.lastErrorText === null ? null : classifyLndError(tracker.lastErrorText);
    if (judged.kind === "doubtful" && refusedFirst?.kind === "failed")
      return void fail(s, tracker, refusedFirst.failure);
    if (judged.kind === "doubtful") {
      // Neither outcome is booked: taken as paid, the payer would be charged for another's payment; as failed, the
      // money may have gone out uncharged. The attempt stays in flight until an operator decides (or a restart).
      tracker.detached = false;
      return s.logger.error(
        where,
        "LND's payment of this invoice may not be the attempt's: left in flight for an operator",
      );
    }
    s.logger.error(
      where,
      "LND paid this invoice with a payment that is not the attempt's: the attempt fails, nothing of it was sent",
    );
    return void fail(s, tracker, {
      code: "rejected",
      message: "the invoice was paid already by another payment",
      retryElsewhere: false,
    });
  });
  subscription.on("failed", (flags: Parameters<typeof failureFromFlags>[0]) =>
    onPaymentFailed(s, tracker, flags),
  );
  subscription.on("error", (error: unknown) => {
    subscription.removeAllListeners();
    if (tracker.subscription === subscription) tracker.subscription = null;
    if (tracker.attempt.outcome !== null) return;
    const text = lndErrorText(error);
    if (mode === "track" && Array.isArray(error) && error[0] === 404) {
      // LND has no payment with this hash: it never took the payment, so nothing was paid.
      const previous = tracker.lastErrorText === null ? null : classifyLndError(tracker.lastErrorText);
      if (previous?.kind === "failed") return void fail(s, tracker, previous.failure);
      return void neverTaken(s, tracker);
    }
    tracker.lastErrorText = text;
    const classified = classifyLndError(text);
    // A refusal LND's text names (an expired invoice, a shortfall, no route) comes before LND takes the payment: the
    // attempt fails as LND said. Followed by the hash, it would find another payment of that invoice (one made by
    // hand, or one whose attempt the journal forgot) and take it as the attempt's own.
    //   But not of an attempt found never taken and sent afresh: LND refuses it so before it looks for a payment of
    // the hash (an invoice expired since the first send, which LND took late and is paying). Failed, its reservation
    // was released while LND paid it. The hash is followed: no payment of it, and it fails as LND said (the 404
    // above); one, and it is judged as below.
    const unnamed = classified.kind === "failed" && classified.failure.code === "rejected";
    const forgotten = mode === "send" && s.forgottenSends.has(tracker.attempt.attemptId);
    if (classified.kind === "failed" && mode === "send" && !unnamed && !forgotten)
      return void fail(s, tracker, classified.failure);
    // LND refused a first send of an invoice because it has a payment of its hash: not this attempt's (execute sends
    // an attempt once, and no other attempt of this rail is paying the hash), so not this attempt's outcome either.
    // Taken as one, an invoice paid once was charged to every payment of it (or to a refund sent to it). A keysend's
    // hash comes from its attempt id: a payment LND has of it is this attempt's (sent before a journal was lost), and
    // is followed. (A lost journal is the one case where an invoice's own payment is refused here: logged.)
    //   But an attempt found never taken and forgotten (neverTaken) is sent again: a slow LND may have taken its first
    // send after the rail asked for the hash, and the payment it has be its own. Failed as rejected, its reservation
    // was released while LND paid it, the money out unbooked. It is followed and judged as recovery does
    // (judgeTrackedPayment, from its first line's time): another amount is another's, and the attempt fails; made over
    // a minute before that by LND's clock, it is left for an operator; else its outcome is the attempt's.
    if (classified.kind === "track" && mode === "send" && tracker.attempt.kind === "bolt11") {
      const where = {
        attemptId: tracker.attempt.attemptId,
        paymentHash: tracker.attempt.paymentHash,
        error: text,
      };
      if (!forgotten) {
        s.logger.error(
          where,
          "LND has a payment of this invoice that no attempt of this rail's journal sent: the attempt fails",
        );
        return void fail(s, tracker, {
          code: "rejected",
          message: "the invoice was paid already, or is being paid, by another payment",
          retryElsewhere: false,
        });
      }
      s.logger.warn(
        where,
        "LND has a payment of this invoice, maybe this attempt's send before it was found never taken: followed",
      );
    }
    // Either LND already knows the hash, or the connection broke: follow the payment LND has. So too for a refusal
    // of a send whose text LND's refusals do not name: LND may say it after taking the payment (stopping, it ends
    // every payment's stream with "routerrpc server shutting down", keeps the payment and resumes it when it starts
    // again). Failed at once, its money left unbooked and the payment failed (paid again by its payer) while LND paid
    // it. LND's record of the hash decides: none, and LND never took it, the attempt fails as LND said (the 404
    // above); one, and its outcome is the attempt's.
    tracker.detached = true;
    const follow = classified.kind === "track" || forgotten || (unnamed && mode === "send");
    if (follow && s.health.connected) return track(s, tracker);
    markDisconnected(s, text);
  });
}

/** Follows the payment LND has for the tracker's hash (after a restart, a disconnect, or a refused resend). */
export function track(s: LightningRailState, tracker: Tracker): void {
  if (!s.running || tracker.attempt.outcome !== null) return;
  tracker.subscription?.removeAllListeners();
  attach(s, tracker, subscribeToPastPayment({ lnd: s.lnd, id: tracker.attempt.paymentHash }), "track");
}

export function newTracker(
  s: LightningRailState,
  attempt: StoredAttempt,
  extra: {
    feeMaxMsat: bigint;
    destination: string | null;
    request: string | null;
    eventWanted: boolean;
  },
): Tracker {
  let resolve: (outcome: StoredOutcome) => void = () => {};
  const settled = new Promise<StoredOutcome>((done) => {
    resolve = done;
  });
  const tracker: Tracker = {
    attempt,
    settled,
    resolve,
    subscription: null,
    eventWanted: extra.eventWanted,
    detached: false,
    asked: false,
    unsent: null,
    undecided: null,
    waiting: 0,
    lastErrorText: null,
    feeMaxMsat: extra.feeMaxMsat,
    destination: extra.destination,
    request: extra.request,
    startedAtMs: s.now(),
  };
  s.trackers.set(attempt.attemptId, tracker);
  return tracker;
}

/** Waits for the outcome up to executeWaitMs; then the outcome goes out as an event instead. */
async function awaitOutcome(s: LightningRailState, tracker: Tracker): Promise<AttemptOutcome> {
  let timer: NodeJS.Timeout | null = null;
  const timedOut = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), s.limits.executeWaitMs);
  });
  tracker.waiting += 1;
  const outcome = await Promise.race([tracker.settled, timedOut]);
  tracker.waiting -= 1;
  if (timer !== null) clearTimeout(timer);
  const { attempt } = tracker;
  if (outcome === null && attempt.outcome === null) {
    tracker.eventWanted = true;
    return { status: "in_flight", reference: attempt.paymentHash };
  }
  // Forgotten without an outcome of its own (its line unwritten, or withdrawn): nothing was sent, nothing journalled.
  if (attempt.outcome === null) return { ...(outcome as StoredOutcome & { status: "failed" }) };
  const final = attempt.outcome;
  if (tracker.eventWanted) return outcomeToResult(attempt, final); // the event is on its way too
  if (!attempt.reported) {
    attempt.reported = true;
    // Not awaited: lost in a crash, it only means the outcome is also sent as an event after restart.
    s.store
      .append({ t: "reported", attemptId: attempt.attemptId })
      .catch((error: unknown) =>
        s.logger.error({ error: lndErrorText(error), attemptId: attempt.attemptId }, "journal write failed"),
      );
  }
  return outcomeToResult(attempt, final);
}

// ---- sending -------------------------------------------------------------------------------------

const deriveKeysendSecret = async (s: LightningRailState): Promise<Buffer> => {
  if (s.keysendSecret !== null) return s.keysendSecret;
  // A signature by LND's node key is deterministic (RFC 6979) and only this node can make it.
  const { signature } = await withTimeout(
    s,
    signMessage({ lnd: s.lnd, message: keysendSecretMessage }),
    "signMessage",
  );
  s.keysendSecret = createHash("sha256").update(signature).digest();
  return s.keysendSecret;
};

type Failed = Extract<AttemptOutcome, { status: "failed" }>;

const failedOutcome = (code: Failure["code"], message: string, retryElsewhere: boolean): Failed => ({
  status: "failed",
  code,
  message,
  retryElsewhere,
});

/**
 * LND's SendPaymentV2, asked directly for the final update only. `lightning`'s subscribeToPayViaRequest
 * decodes the request three times (each recovering its signing key) and every in-flight update, none of which
 * the rail reads: about a millisecond of this process's time per payment. The final update becomes the events
 * `lightning` emits, which attach() follows: "confirmed" (preimage, fee) or "failed" (the reason's flags); LND
 * refusing the call is an "error".
 */
function sendPayment(
  s: LightningRailState,
  request: Record<string, unknown>,
  feeMaxMsat: bigint,
): EventEmitter {
  const emitter = new EventEmitter();
  const stream = s.lnd.router.sendPaymentV2({
    ...request,
    fee_limit_msat: feeMaxMsat.toString(),
    timeout_seconds: Math.max(1, Math.round(s.limits.paymentTimeoutMs / 1000)),
    max_parts: 1,
    allow_self_payment: true,
    cancelable: true,
    no_inflight_updates: true,
  }) as EventEmitter;
  // Once the outcome is in, nobody listens: a late error of the stream is nobody's news.
  const report = (error: unknown) => {
    if (emitter.listenerCount("error") > 0) emitter.emit("error", error);
  };
  stream.on(
    "data",
    (payment: { status?: string; failure_reason?: string; payment_preimage?: string; fee_msat?: string }) => {
      try {
        if (payment.status === "SUCCEEDED")
          emitter.emit("confirmed", {
            secret: payment.payment_preimage ?? "",
            fee_mtokens: payment.fee_msat ?? "0",
          });
        else if (payment.status === "FAILED")
          emitter.emit("failed", flagsFromFailureReason(payment.failure_reason ?? ""));
      } catch (error) {
        report(error);
      }
    },
  );
  stream.on("error", report);
  return emitter;
}

/** An attempt the rail will not send, for its amounts or the rail's state; null: it may go out. */
function refusal(s: LightningRailState, attempt: OutgoingAttempt): Failed | null {
  if (attempt.amount < s.limits.amountMinMsat || attempt.amount > s.limits.amountMaxMsat)
    return failedOutcome(
      "rejected",
      `amount outside ${s.limits.amountMinMsat}..${s.limits.amountMaxMsat} msat`,
      true,
    );
  if (attempt.feeMax < 0n) return failedOutcome("rejected", "negative maximum fee", false);
  if (!s.health.connected)
    return failedOutcome("rail_unavailable", `LND unreachable: ${s.health.lastError ?? ""}`, true);
  if (s.trackers.size >= s.limits.inFlightMax)
    return {
      ...failedOutcome("rail_unavailable", `${s.limits.inFlightMax} payments already in flight`, true),
      busy: true,
    };
  const shareMax = inFlightPerTenantMax(s);
  if (s.trackers.size >= shareMax) {
    let tenants = 0;
    // Its tenant's (kept in the journal: a payment followed after a restart counts too; one journalled before the
    // journal kept tenants counts in the whole bound alone).
    for (const tracker of s.trackers.values())
      if (tracker.attempt.tenantId === attempt.tenantId) tenants += 1;
    if (tenants >= shareMax)
      return {
        ...failedOutcome(
          "rail_unavailable",
          `${shareMax} payments of this tenant already in flight, the most one tenant may have`,
          true,
        ),
        busy: true,
      };
  }
  return null;
}

/**
 * The part of inFlightMax one tenant may hold: a quarter (core tenantShareOf), as of the API's admission pool.
 * Payments to hold invoices stay in flight as long as their receiver holds them (hours, up to the HTLC's expiry); one
 * tenant paying many would otherwise take every place, and every other tenant's Lightning payouts be refused until
 * they end.
 */
const inFlightPerTenantMax = (s: LightningRailState) => tenantShareOf(s.limits.inFlightMax);

/** The journal's write-ahead line of an attempt. */
const attemptRecord = (stored: StoredAttempt): RailStoreRecord => ({
  t: "attempt",
  attemptId: stored.attemptId,
  paymentId: stored.paymentId,
  ...(stored.tenantId === null ? {} : { tenantId: stored.tenantId }),
  paymentHash: stored.paymentHash,
  kind: stored.kind,
  amountMsat: stored.amountMsat.toString(),
  createdAtMs: stored.createdAtMs,
  feeMaxMsat: stored.feeMaxMsat.toString(),
  destination: stored.destination,
  request: stored.request,
});

/** What SendPaymentV2 is asked to pay, besides the fee limit and the rail's fixed options. */
const sendRequest = (
  destination: Extract<Destination, { kind: "bolt11" | "lightning_node" }>,
  amountMsat: bigint,
  paid: { paymentHash: string; preimage: string | null; invoiceHasAmount: boolean },
): Record<string, unknown> =>
  destination.kind === "bolt11"
    ? {
        // Bare and lower case whatever the caller stored (parseBolt11 refused a mixed-case one before this).
        payment_request: bareBolt11(destination.invoice) ?? destination.invoice,
        ...(paid.invoiceHasAmount ? {} : { amt_msat: amountMsat.toString() }),
      }
    : {
        dest: Buffer.from(destination.pubkey, "hex"),
        payment_hash: Buffer.from(paid.paymentHash, "hex"),
        amt_msat: amountMsat.toString(),
        final_cltv_delta: keysendFinalCltvDelta,
        dest_custom_records: { [keysendRecordType]: Buffer.from(paid.preimage as string, "hex") },
      };

/** The attempt of this rail's that paid `paymentHash` or is paying it; null when none (or it failed). */
function attemptPaying(s: LightningRailState, paymentHash: string): StoredAttempt | null {
  const id = s.attemptByHash.get(paymentHash);
  const attempt = id === undefined ? undefined : s.attempts.get(id);
  return attempt === undefined || attempt.outcome?.status === "failed" ? null : attempt;
}

/** When the attempt holding `paymentHash` is admitted and neither sent nor forgotten: when it will be; else null. */
function undecidedHolding(s: LightningRailState, paymentHash: string): Promise<void> | null {
  const id = s.attemptByHash.get(paymentHash);
  return (id === undefined ? undefined : s.trackers.get(id)?.undecided?.decided) ?? null;
}

/** The tracker's attempt is sent or forgotten (or the rail stops): whoever waits on its hash decides again. */
export function decide(tracker: Tracker): void {
  const { undecided } = tracker;
  tracker.undecided = null;
  undecided?.resolve();
}

/** What an attempt LND never took ends as for a caller that cannot send it afresh (execute sends it). */
const neverTakenOutcome = {
  status: "failed",
  code: "rail_unavailable",
  message: "LND never took the payment",
  retryElsewhere: true,
} as const;

/** Trackers forgotten by neverTaken: an execute that waited on one sends its attempt afresh. */
const takenBack = new WeakSet<Tracker>();

/**
 * An attempt followed (after a restart, or a lost connection) that LND never took: nothing was paid. It is forgotten
 * as a withdrawn one is, not failed: the process that wrote it may have stopped before its payment's reservation
 * committed, and only an execute says that reservation stands. An execute waiting for it sends it afresh; one that
 * comes later (the gateway's recovery of an attempt it has open) finds it unknown and sends it afresh too; with
 * none, nothing is sent and no event goes out. (Before, it failed as rail_unavailable, and a payment whose process
 * stopped between its reservation's commit and the send failed with it.)
 */
function neverTaken(s: LightningRailState, tracker: Tracker): void {
  takenBack.add(tracker);
  // A slow LND may take its send after saying it had none (a send cut off, or asked for just before LND had it): its
  // id is remembered (journalled, until it has an outcome), so that a send of it afresh that LND refuses for the
  // payment it has follows that payment (attach) instead of failing while LND pays it.
  // What it sent is kept with it: a Lightning Address's invoice is sent afresh as it was (execute), not asked anew.
  // So are the hashes it sent before (a Lightning Address's invoices it replaced), asked about until it ends.
  const { attemptId, createdAtMs, paymentHash, request } = tracker.attempt;
  const known = s.forgottenSends.get(attemptId);
  const firstAtMs = Math.min(createdAtMs, known?.firstAtMs ?? createdAtMs);
  // One that followed an earlier invoice of its mark's (refusedUnsent) leaves the mark as it was: its invoice is the one
  // sent afresh (the earlier one's was replaced when it expired), the earlier still asked about.
  const followedEarlier =
    known?.paymentHash != null &&
    known.paymentHash !== paymentHash &&
    known.earlierHashes.includes(paymentHash);
  const mark: ForgottenSend = followedEarlier
    ? { ...known, firstAtMs }
    : { firstAtMs, paymentHash, request, ...earlierAfter(known, paymentHash) };
  s.forgottenSends.set(attemptId, mark);
  forget(s, tracker, neverTakenOutcome);
  void journalWithdrawn(s, attemptId, mark);
}

/** What execute answers when an attempt's journal line could not be written: nothing was sent. */
const unwritten = {
  status: "failed",
  code: "rail_unavailable",
  message: "the rail's journal could not be written: nothing was sent",
  retryElsewhere: true,
} as const;

/** What an attempt withdrawn before it was sent ends as, for anyone who waited for it. */
const withdrawnOutcome = {
  status: "failed",
  code: "rail_unavailable",
  message: "the attempt was withdrawn before it was sent",
  retryElsewhere: true,
} as const;

/**
 * Forgets an attempt nothing was sent for: its tracker, its entry, and its hold on its hash. Whoever waits for its
 * outcome gets `outcome`, and whoever waits on its hash decides again.
 */
function forget(s: LightningRailState, tracker: Tracker, outcome: StoredOutcome): void {
  const { attemptId, paymentHash } = tracker.attempt;
  s.trackers.delete(attemptId);
  s.attempts.delete(attemptId);
  if (s.attemptByHash.get(paymentHash) === attemptId) s.attemptByHash.delete(paymentHash);
  tracker.resolve(outcome);
  decide(tracker);
}

/**
 * Journals a forgotten attempt as withdrawn (`forgotten`: found never taken, with its mark); never rejects. Need not be
 * durable: were the line lost, the restarted rail finds no payment of the hash in LND and forgets the attempt again
 * (neverTaken), or finds the one LND took late and follows it.
 */
async function journalWithdrawn(
  s: LightningRailState,
  attemptId: string,
  forgotten?: ForgottenSend,
): Promise<void> {
  try {
    await s.store.append(
      forgotten === undefined ? { t: "withdrawn", attemptId } : forgottenSendRecord(attemptId, forgotten),
    );
  } catch (error) {
    s.logger.warn({ error: lndErrorText(error), attemptId }, "journalling a withdrawn attempt failed");
  }
}

/** Takes an unsent attempt's send for the caller, so that no one else sends or withdraws it; null when taken. */
function takeUnsent(tracker: Tracker): NonNullable<Tracker["unsent"]> | null {
  const { unsent } = tracker;
  if (unsent === null) return null;
  tracker.unsent = null;
  if (unsent.expiry !== null) clearTimeout(unsent.expiry);
  return unsent;
}

/** Pays the attempt once per attempt id: called again, it follows or reports the first payment. */
export async function execute(s: LightningRailState, attempt: OutgoingAttempt): Promise<AttemptOutcome> {
  if (!s.running)
    return refusedUnsent(
      s,
      attempt,
      failedOutcome("rail_unavailable", "the Lightning rail is not started", true),
    );
  const known = s.attempts.get(attempt.id);
  if (known !== undefined) {
    if (known.outcome !== null) {
      if (!known.reported) {
        known.reported = true;
        await s.store.append({ t: "reported", attemptId: known.attemptId });
      }
      return outcomeToResult(known, known.outcome);
    }
    const tracker = s.trackers.get(known.attemptId);
    if (tracker === undefined) return { status: "in_flight", reference: known.paymentHash };
    // Written ahead by prepare, unless an execute before this one took it: sent once its line is durable.
    return await sendOrAfresh(s, tracker, attempt);
  }

  // One found never taken is sent afresh as it was first sent. Asked again, a Lightning Address answers another
  // invoice (another hash): were the first send taken late by LND, both invoices were paid. But for a first invoice
  // expired since, of which LND has no payment (addressInvoiceAfresh).
  const forgotten = s.forgottenSends.get(attempt.id);
  if (
    attempt.destination.kind === "lightning_address" &&
    forgotten !== undefined &&
    forgotten.request !== null
  ) {
    const invoice = await addressInvoiceAfresh(
      s,
      attempt,
      attempt.destination.address,
      forgotten,
      forgotten.request,
    );
    if (typeof invoice !== "string") return invoice;
    return await execute(s, { ...attempt, destination: { kind: "bolt11", invoice } });
  }
  if (attempt.destination.kind === "lightning_address") {
    const early = refusal(s, attempt);
    if (early !== null) return refusedUnsent(s, attempt, early);
    // A mark journalled before it kept its invoice: the invoice it sent is unknown, and LND may have taken it late. Any
    // payment of LND's that may be its own holds it back, as it does when its address refuses (refusedUnsent).
    if (forgotten !== undefined && forgotten.paymentHash === null) {
      const held = await unmarkedInFlight(s, attempt, forgotten, null);
      if (held !== null) return held;
    }
    // Asked for an invoice only the first time: a repeat of this attempt id follows the payment made above.
    const asked = await askAddress(s, attempt.destination.address, attempt.amount);
    if (!asked.ok)
      return refusedUnsent(s, attempt, failedOutcome(asked.code, asked.message, asked.retryElsewhere));
    // Sent meanwhile by another call, or found never taken since (a mark now stands): its invoice, not this one.
    if (markChanged(s, attempt, forgotten)) return await execute(s, attempt);
    return await execute(s, { ...attempt, destination: { kind: "bolt11", invoice: asked.invoice } });
  }
  const admitted = await admit(s, attempt);
  if (admitted === "known") return await execute(s, attempt);
  return "tracker" in admitted ? await sendOrAfresh(s, admitted.tracker, attempt) : admitted;
}

/** An invoice of `amountMsat` from the Lightning Address's LNURL-pay server, asked as the rail's limits say. */
const askAddress = (s: LightningRailState, address: string, amountMsat: bigint) =>
  invoiceForAddress(address, amountMsat, {
    ...lnurlDefaults,
    httpHosts: s.limits.lnurlHttpHosts,
    fetch: s.lnurlFetch,
  });

/**
 * Whether an attempt found never taken was admitted by another call, or its mark changed (another call's new invoice,
 * found never taken again, ended), since the caller read `forgotten`: what it decided on that mark is asked again of
 * execute, never written over the mark that stands.
 */
const markChanged = (s: LightningRailState, attempt: OutgoingAttempt, forgotten: ForgottenSend | undefined) =>
  s.attempts.has(attempt.id) || s.forgottenSends.get(attempt.id) !== forgotten;

/**
 * The invoice a Lightning Address attempt found never taken is sent afresh with: the one its address answered first
 * (kept with its mark, `forgotten`), which LND may have taken late. Once that one has expired, though, LND refuses to
 * send it, and an attempt of which LND has no payment failed `expired` while its address, asked anew, would answer
 * another invoice, as it does for a fresh attempt. LND checks the expiry when a send comes, before it registers the
 * payment: a send of the first it took before the expiry may be registered later still (lateRegistrationMaxMs). So
 * from a minute before the expiry (expiringSendMarginMs) until lateRegistrationMaxMs after it by LND's clock (up to
 * lndClockBehindMaxMs behind the gateway's) the attempt is answered in flight, sent nothing (refusedUnsent, which
 * follows a payment LND has of the first); then, when LND has no payment of the first (or one that failed: an expired
 * invoice is not paid again), the address is asked anew. The new invoice's mark, naming the first among its earlier
 * hashes, is journalled before it is sent (the attempt's line after it): a crash between the two sends the new invoice
 * afresh, never the first. A payment LND registers of the first later still is asked about before each send afresh,
 * when the rail refuses one and when the attempt ends: the attempt's own send as much as the new one's, it is followed
 * as the attempt's (refusedUnsent; endsBesideEarlier when the new one's failed), never paid a third time. LND has a
 * payment of the invoice the mark names: followed (refusedUnsent), or, without earlier hashes, sent afresh, refused
 * as expired and followed (attach). LND cannot be asked: in flight (refusedUnsent). The address refusing: refused, as
 * a fresh attempt is.
 */
async function addressInvoiceAfresh(
  s: LightningRailState,
  attempt: OutgoingAttempt,
  address: string,
  forgotten: ForgottenSend,
  first: string,
): Promise<string | AttemptOutcome> {
  const parsed = parseBolt11(first);
  // An attempt the rail would refuse anyway is refused by its first invoice's send afresh (refusedUnsent).
  if (!parsed.ok || refusal(s, attempt) !== null) return first;
  const unasked = (what: string, error: unknown) =>
    refusedUnsent(
      s,
      attempt,
      failedOutcome("rail_unavailable", `LND not asked about ${what}: ${lndErrorText(error)}`, true),
    );
  const { paymentHash, timestampSeconds, expirySeconds } = parsed.value;
  if (forgotten.earlierHashes.length > 0) {
    // Its invoice first, then the earlier: a payment of either is followed as the attempt's own (refusedUnsent), and
    // one of its invoice before one of an earlier (that one, were it paid too, is asked about when the attempt ends).
    let paid: boolean;
    try {
      paid = (await livePayment(s, paymentHash)) || (await earlierPaid(s, forgotten.earlierHashes)) !== null;
    } catch (error) {
      return await unasked("its invoices", error);
    }
    if (markChanged(s, attempt, forgotten)) return await execute(s, attempt);
    if (paid)
      return await refusedUnsent(
        s,
        attempt,
        failedOutcome(
          "rail_unavailable",
          "LND has a payment of one of its invoices: followed, not sent",
          true,
        ),
      );
  }
  const expiresAtMs = (timestampSeconds + expirySeconds) * 1000;
  if (s.now() < expiresAtMs - expiringSendMarginMs) return first;
  const renewAtMs = expiresAtMs + lndClockBehindMaxMs + lateRegistrationMaxMs;
  if (s.now() < renewAtMs)
    return await refusedUnsent(
      s,
      attempt,
      failedOutcome(
        "rail_unavailable",
        `its invoice expires at ${new Date(expiresAtMs).toISOString()}: LND may yet register a send of it, and its address is asked for another from ${new Date(renewAtMs).toISOString()}`,
        true,
      ),
    );
  let live: boolean;
  try {
    live = await livePayment(s, paymentHash);
  } catch (error) {
    return await unasked("its first invoice", error);
  }
  if (markChanged(s, attempt, forgotten)) return await execute(s, attempt);
  if (live) return first;
  const asked = await askAddress(s, address, attempt.amount);
  // Another call for this id may have sent it meanwhile, or renewed it: followed (another asking's invoice is never
  // sent, nor its mark written over).
  if (markChanged(s, attempt, forgotten)) return await execute(s, attempt);
  if (!asked.ok)
    return await refusedUnsent(s, attempt, failedOutcome(asked.code, asked.message, asked.retryElsewhere));
  const renewed = parseBolt11(asked.invoice);
  if (!renewed.ok) return await refusedUnsent(s, attempt, failedOutcome("rejected", renewed.error, true));
  // The first's invoice kept with its hash: were LND's payment of it followed, the journal says what was paid.
  const mark: ForgottenSend = {
    firstAtMs: forgotten.firstAtMs,
    paymentHash: renewed.value.paymentHash,
    request: asked.invoice,
    ...earlierAfter(forgotten, renewed.value.paymentHash),
  };
  try {
    await s.store.append(forgottenSendRecord(attempt.id, mark));
  } catch (error) {
    s.logger.error(
      { error: lndErrorText(error), attemptId: attempt.id },
      "journal write failed: nothing sent",
    );
    return await refusedUnsent(s, attempt, unwritten);
  }
  // Journalled, not sent: were another's mark written meanwhile, a restart reads this one's hash among the earlier.
  if (markChanged(s, attempt, forgotten)) return await execute(s, attempt);
  s.forgottenSends.set(attempt.id, mark);
  s.logger.info(
    { attemptId: attempt.id, paymentHash, renewedHash: mark.paymentHash },
    "an attempt to a Lightning Address found never taken, its first invoice expired unpaid, is sent with a new one",
  );
  return asked.invoice;
}

/**
 * LND's payment of `paymentHash` unless it failed (getPayment; its 404: none): null when none, its `payment` null while
 * pending, else what it paid. Rejects when LND cannot be asked.
 */
async function livePaymentOf(
  s: LightningRailState,
  paymentHash: string,
): Promise<{ payment: ConfirmedPayment | null } | null> {
  try {
    const found = await withTimeout(s, getPayment({ lnd: s.lnd, id: paymentHash }), "getPayment");
    if (found.is_failed) return null;
    return { payment: found.is_confirmed && found.payment !== undefined ? found.payment : null };
  } catch (error) {
    if (Array.isArray(error) && error[0] === 404) return null;
    throw error;
  }
}

/** Whether LND has a payment of `paymentHash` that has not failed. Rejects when LND cannot be asked. */
const livePayment = async (s: LightningRailState, paymentHash: string): Promise<boolean> =>
  (await livePaymentOf(s, paymentHash)) !== null;

/** LND's payment of another invoice of an attempt (earlierPaid): its hash, and what it paid (null: pending). */
type EarlierPayment = { hash: string; payment: ConfirmedPayment | null };

/**
 * The first of `earlier` (hashes a mark replaced) LND has a payment of that has not failed, one that succeeded before
 * one pending; null when none.
 */
async function earlierPaid(
  s: LightningRailState,
  earlier: readonly string[],
): Promise<EarlierPayment | null> {
  let pending: EarlierPayment | null = null;
  for (const hash of earlier) {
    const live = await livePaymentOf(s, hash);
    if (live?.payment != null) return { hash, payment: live.payment };
    if (live !== null) pending ??= { hash, payment: null };
  }
  return pending;
}

/** Says what `say` logs of an attempt once (its id and `what`): every recovery pass would say it again. */
function sayOnce(s: LightningRailState, attemptId: string, what: string, say: () => void): void {
  const said = s.saidOnce.get(attemptId) ?? new Set<string>();
  if (said.has(what)) return;
  said.add(what);
  s.saidOnce.set(attemptId, said);
  say();
}

/**
 * sendWhenWritten, for an execute: an attempt found never taken by LND meanwhile and forgotten (neverTaken) is sent
 * afresh, since this call's reservation stands — or, when another call waiting on it sent it afresh already, that
 * send is followed. Its forgotten tracker's outcome ("retry elsewhere") is no answer for either: told it, a second
 * waiter's payment fell back to another rail while the first one's send paid on Lightning.
 */
async function sendOrAfresh(s: LightningRailState, tracker: Tracker, attempt: OutgoingAttempt) {
  const outcome = await sendWhenWritten(s, tracker);
  if (takenBack.has(tracker)) return await execute(s, attempt);
  // Forgotten with no outcome of its own (its line unwritten, or withdrawn): nothing of it was sent.
  if (outcome.status === "failed" && tracker.attempt.outcome === null)
    return refusedUnsent(s, attempt, outcome);
  return outcome;
}

/**
 * What execute answers for an attempt it refused before sending anything (the rail stopped, LND out of reach, the
 * rail's places or its tenant's full, no keysend secret, its line unwritten, its amount outside the limits, its
 * address refusing): the refusal, but for one found never taken (neverTaken). A slow LND may have taken its first
 * send since, and be paying it: failed, its reservation was released and the payment went to another rail, its payee
 * paid twice and Lightning's money out unbooked. So LND is asked about its hash first. A payment of it is followed and
 * judged as recovery judges it (track). None, and nothing of it was paid: a refusal that stands (its amount above a
 * limit lowered since, an address that refuses for good) is its outcome, else it was in flight for ever, asked again
 * by every recovery pass and holding its reservation. A refusal of the rail's own state (places full, the journal
 * unwritten) passes, though: that one is answered in flight and sent afresh by the next pass, when LND itself says
 * whether it has the payment (a send afresh it refuses for one is followed), surer than a look just after the one
 * that found none. In flight too while LND cannot be asked (stopped, out of reach, no answer). A Lightning Address's
 * mark journalled before it kept its invoice names no hash to ask about: LND's payments that may be its own stand for
 * it (paymentsMaybeOf). None, and the refusal stands; any, and it is left in flight for an operator, said once (asked
 * by every pass, it warned at each). A mark that replaced an expired invoice (addressInvoiceAfresh) has its earlier
 * hashes asked about too when LND has no payment of its own: a payment of one (not failed) is the attempt's send as
 * much as its invoice's, and is followed as its own, never failed (a second of its invoices paid is said when it
 * ends: endsBesideEarlier).
 */
async function refusedUnsent(
  s: LightningRailState,
  attempt: OutgoingAttempt,
  refused: Failed,
): Promise<AttemptOutcome> {
  const forgotten = s.forgottenSends.get(attempt.id);
  if (forgotten === undefined) return refused;
  const paymentHash = await forgottenHash(s, attempt, forgotten);
  const inFlight = (why: string): AttemptOutcome => {
    s.logger.warn(
      { attemptId: attempt.id, code: refused.code, error: refused.message, why },
      "an attempt found never taken, which LND may yet be paying, could not be sent afresh: left in flight",
    );
    return { status: "in_flight", reference: paymentHash ?? attempt.id };
  };
  if (paymentHash === null) {
    // A Lightning Address's mark journalled before it kept its invoice: LND's payments that may be its own say.
    if (
      attempt.destination.kind !== "lightning_address" ||
      refused.code === "rail_unavailable" ||
      !s.running ||
      !s.health.connected
    )
      return inFlight("its payment hash is unknown");
    const held = await unmarkedInFlight(s, attempt, forgotten, refused);
    if (held !== null) return held;
    s.saidOnce.delete(attempt.id);
    s.logger.info(
      { attemptId: attempt.id, code: refused.code },
      "an attempt found never taken, its hash unknown, is refused, and no payment of LND's may be its: failed",
    );
    return refused;
  }
  if (!s.running || !s.health.connected) return inFlight("LND cannot be asked about its hash");
  let paid: boolean;
  try {
    await withTimeout(s, getPayment({ lnd: s.lnd, id: paymentHash }), "getPayment");
    paid = true;
  } catch (error) {
    // LND's answer when it has no payment of the hash (subscribeToPastPayment's, as track's 404).
    if (!(Array.isArray(error) && error[0] === 404)) return inFlight(lndErrorText(error));
    paid = false;
  }
  // Another call for this id may have admitted it meanwhile, or the rail stopped. Or changed its mark (a Lightning
  // Address's new invoice, or found never taken again): what was decided on this one no longer holds, and `attempt`
  // may be the invoice the one before named (execute's), so it is left to the next pass, which decides on the new.
  if (s.attempts.has(attempt.id)) return await execute(s, attempt);
  const changed = () => s.forgottenSends.get(attempt.id) !== forgotten;
  if (changed()) return inFlight("its mark changed meanwhile");
  if (!paid && forgotten.earlierHashes.length > 0) {
    let earlier: EarlierPayment | null;
    try {
      earlier = await earlierPaid(s, forgotten.earlierHashes);
    } catch (error) {
      return inFlight(`LND not asked about its earlier invoices: ${lndErrorText(error)}`);
    }
    if (s.attempts.has(attempt.id)) return await execute(s, attempt);
    if (changed()) return inFlight("its mark changed meanwhile");
    // Its send as much as its invoice's (same address, same amount): followed as its own, as its invoice's would be.
    // Were another invoice of its paid too, that is said when it ends (endsBesideEarlier).
    if (earlier !== null) {
      if (!s.running) return inFlight("the rail stopped");
      if (attemptPaying(s, earlier.hash) !== null)
        return inFlight("another attempt of the rail holds an earlier hash of its");
      const request = forgotten.earlierRequests?.get(earlier.hash) ?? null;
      return await followForgotten(s, attempt, forgotten, earlier.hash, refused, request);
    }
  }
  if (!paid) {
    if (refused.code === "rail_unavailable") return inFlight("the rail cannot send it now");
    s.saidOnce.delete(attempt.id);
    s.logger.info(
      { attemptId: attempt.id, paymentHash, code: refused.code },
      "an attempt found never taken is refused, and LND has no payment of its hash: it fails as refused",
    );
    return refused;
  }
  if (!s.running) return inFlight("the rail stopped");
  // Another attempt of this rail that paid the hash has LND's payment: this one's send never reached LND. One that
  // holds the hash undecided (written ahead and not sent, or sent and not answered) may be LND's payment or not: when
  // not, this one's is, and failed now it would be paid again elsewhere while LND pays it (and the other refused).
  const other = attemptPaying(s, paymentHash);
  if (other !== null)
    return other.outcome?.status === "succeeded"
      ? refused
      : inFlight("another attempt of the rail holds its hash, undecided");
  // Its hash's invoice: the mark's (forgottenHash took the mark's hash), else the one the attempt pays when it is of that
  // hash. A Lightning Address's mark that kept its hash alone (a line of an older version) names none: the invoice
  // execute asked its address for since is another hash's, and journalled as this one's it would prove a payment it
  // was not.
  const { destination } = attempt;
  const request =
    forgotten.request ??
    (destination.kind === "bolt11" && isInvoiceOf(destination.invoice, paymentHash)
      ? destination.invoice
      : null);
  return await followForgotten(s, attempt, forgotten, paymentHash, refused, request);
}

/** What the rail reads of a payment of ListPayments (its numbers as strings: `lightning`'s gRPC options). */
type LndPayment = {
  readonly payment_hash?: unknown;
  readonly value_msat?: unknown;
  readonly status?: unknown;
};

/** Payments asked of ListPayments at once. */
const paymentsPageMax = 1_000;

/**
 * How long before an attempt's first line (by the gateway's clock) LND's payments that may be its own are looked for
 * (paymentsMaybeOf): its sends came after it, but LND's clock may be further behind the gateway's than
 * lndClockBehindMaxMs says, and a payment of its own missed has it paid twice, while one too many only leaves it in
 * flight for an operator.
 */
const paymentsMaybeBeforeMs = 60 * 60_000;

/** Hashes of LND's payments named in one log line, the first of them; the line counts them all. */
const loggedHashesMax = 10;

/**
 * Hashes of LND's payments that may be those of an attempt found never taken whose mark kept no hash (a Lightning
 * Address's, journalled before it kept its invoice): made since an hour before its first line (its sends came after
 * it: paymentsMaybeBeforeMs), of its amount exactly (as its address's invoices are), not failed, and no payment of
 * another attempt of the rail's that succeeded (one failed or undecided may have found LND's payment of its hash this
 * one's, as refusedUnsent judges). Whoever the payee, for the invoices the address answered are unknown. The
 * listing stops at the first page that has any: one is enough to hold the attempt back.
 */
async function paymentsMaybeOf(
  s: LightningRailState,
  attempt: OutgoingAttempt,
  firstAtMs: number,
): Promise<string[]> {
  const since = Math.max(0, Math.floor((firstAtMs - paymentsMaybeBeforeMs) / 1000));
  const maybe: string[] = [];
  for (let offset = "0"; ; ) {
    const page = await listPayments(s, since, offset);
    for (const { payment_hash: hash, value_msat: sent, status } of page.payments) {
      if (typeof hash !== "string" || typeof sent !== "string" || status === "FAILED") continue;
      if (BigInt(sent) !== attempt.amount) continue;
      if (attemptPaying(s, hash)?.outcome?.status !== "succeeded") maybe.push(hash);
    }
    if (maybe.length > 0 || page.payments.length < paymentsPageMax) return maybe;
    // A full page that does not move on would be asked for ever.
    if (BigInt(page.lastIndexOffset) <= BigInt(offset))
      throw new LightningRailError("LND's ListPayments did not page on", { details: offset });
    offset = page.lastIndexOffset;
  }
}

/**
 * For a Lightning Address attempt found never taken whose mark kept no hash (journalled before it kept its invoice),
 * about to be refused (`refused`) or to ask its address for an invoice (null): in flight when LND has payments that
 * may be its own (paymentsMaybeOf) or they could not be listed, said once (every recovery pass asks again); execute's
 * answer when its mark changed or it was admitted meanwhile; null when LND has none.
 */
async function unmarkedInFlight(
  s: LightningRailState,
  attempt: OutgoingAttempt,
  forgotten: ForgottenSend,
  refused: Failed | null,
): Promise<AttemptOutcome | null> {
  const why = refused === null ? {} : { code: refused.code, error: refused.message };
  let maybe: string[];
  try {
    maybe = await paymentsMaybeOf(s, attempt, forgotten.firstAtMs);
  } catch (error) {
    if (markChanged(s, attempt, forgotten)) return await execute(s, attempt);
    sayOnce(s, attempt.id, "unlisted", () =>
      s.logger.warn(
        { attemptId: attempt.id, ...why, listing: lndErrorText(error) },
        "an attempt found never taken, its hash unknown, could not be judged, LND's payments not listed: left in flight",
      ),
    );
    return { status: "in_flight", reference: attempt.id };
  }
  if (markChanged(s, attempt, forgotten)) return await execute(s, attempt);
  if (maybe.length === 0) return null;
  sayOnce(s, attempt.id, "maybe paid", () =>
    s.logger.warn(
      {
        attemptId: attempt.id,
        ...why,
        paymentHashes: maybe.slice(0, loggedHashesMax),
        paymentCount: maybe.length,
      },
      refused === null
        ? "an attempt to a Lightning Address found never taken, hash unknown, may be one of LND's payments: its address is not asked again, left in flight for an operator"
        : "a refused attempt found never taken, hash unknown, may be one of LND's payments: left in flight for an operator",
    ),
  );
  return { status: "in_flight", reference: attempt.id };
}

/**
 * A page of LND's payments made since `sinceSeconds`, after index `offset`, asked directly: those of every status
 * (`lightning`'s getPayments lists only those that succeeded, getPendingPayments only those in flight).
 */
const listPayments = (
  s: LightningRailState,
  sinceSeconds: number,
  offset: string,
): Promise<{ payments: readonly LndPayment[]; lastIndexOffset: string }> =>
  new Promise((resolve, reject) => {
    s.lnd.default.listPayments(
      {
        include_incomplete: true,
        // The rail reads none of a payment's routes: LND leaves them out, cheaper to read and send.
        omit_hops: true,
        creation_date_start: sinceSeconds,
        index_offset: offset,
        max_payments: paymentsPageMax,
      },
      { deadline: Date.now() + s.limits.rpcTimeoutMs },
      (error: unknown, response: { payments?: unknown; last_index_offset?: unknown } | undefined) => {
        if (error) return reject(error);
        if (!Array.isArray(response?.payments) || typeof response.last_index_offset !== "string")
          return reject(new LightningRailError("LND answered ListPayments without its payments"));
        resolve({ payments: response.payments as LndPayment[], lastIndexOffset: response.last_index_offset });
      },
    );
  });

/** The hash an attempt found never taken sent: its mark's, else its invoice's, else a keysend's (from its id). */
async function forgottenHash(
  s: LightningRailState,
  attempt: OutgoingAttempt,
  forgotten: ForgottenSend,
): Promise<string | null> {
  if (forgotten.paymentHash !== null) return forgotten.paymentHash;
  const { destination } = attempt;
  if (destination.kind === "bolt11") {
    const invoice = parseBolt11(destination.invoice);
    return invoice.ok ? invoice.value.paymentHash : null;
  }
  if (destination.kind !== "lightning_node" || !s.running || !s.health.connected) return null;
  try {
    const image = createHmac("sha256", await deriveKeysendSecret(s))
      .update(`keysend:${attempt.id}`)
      .digest();
    return createHash("sha256").update(image).digest("hex");
  } catch {
    return null;
  }
}

/**
 * Holds `attempt` from now on, paying `paymentHash` (`request`: the invoice it pays, null for a keysend): its entry and
 * its tracker, not journalled yet (writeAhead). For admit's send and for a forgotten attempt followed again alike.
 */
function holdAttempt(
  s: LightningRailState,
  attempt: OutgoingAttempt,
  paymentHash: string,
  kind: PaymentKind,
  request: string | null,
): Tracker {
  const { destination } = attempt;
  const stored: StoredAttempt = {
    attemptId: attempt.id,
    paymentId: attempt.paymentId,
    tenantId: attempt.tenantId,
    paymentHash,
    kind,
    amountMsat: attempt.amount,
    createdAtMs: s.now(),
    feeMaxMsat: attempt.feeMax,
    destination: destination.kind === "lightning_node" ? destination.pubkey : null,
    request,
    outcome: null,
    reported: false,
  };
  s.attempts.set(attempt.id, stored);
  return newTracker(s, stored, {
    feeMaxMsat: stored.feeMaxMsat,
    destination: stored.destination,
    request: stored.request,
    eventWanted: false,
  });
}

/**
 * An attempt found never taken whose hash LND has a payment of, though the rail refused to send it afresh: journalled
 * again and followed as after a restart (track judges the payment from its first line's time, sentSince), whatever
 * the refusal, for that payment is going out or went out already. `request`: the invoice of `paymentHash` (null when
 * none is known), journalled as what it paid; named by each caller, since the mark's own is not an earlier hash's.
 * `mark`: the attempt's mark that stands, journalled again ahead of its line (followEarlier's reason).
 */
async function followForgotten(
  s: LightningRailState,
  attempt: OutgoingAttempt,
  mark: ForgottenSend,
  paymentHash: string,
  refused: Failed,
  request: string | null,
): Promise<AttemptOutcome> {
  const { destination } = attempt;
  s.attemptByHash.set(paymentHash, attempt.id);
  const tracker = holdAttempt(
    s,
    attempt,
    paymentHash,
    destination.kind === "lightning_node" ? "keysend" : "bolt11",
    request,
  );
  // The mark and the attempt's line in one write, the mark first, as followEarlier writes them. The mark neverTaken
  // journalled when it forgot the attempt may be lost (journalWithdrawn only logs a failure), and with no mark between
  // the forgotten attempt's line and this one a reload reads the first (applyRecord keeps an id's first attempt line; a
  // mark drops those before it): following an earlier invoice, the attempt would read back under the hash it forgot,
  // a success written with this payment's preimage. Written again, a mark that stands changes nothing. Unwritten, the
  // attempt is forgotten again (writeAhead) and the mark stays: asked again by the next pass.
  if (!(await writeAhead(s, tracker, forgottenSendRecord(attempt.id, mark))))
    return { status: "in_flight", reference: paymentHash };
  s.logger.warn(
    { attemptId: attempt.id, paymentHash, code: refused.code },
    "an attempt found never taken could not be sent afresh, and LND has a payment of its hash: followed",
  );
  track(s, tracker);
  const outcome = await awaitOutcome(s, tracker);
  // LND said since that it has none after all (track's 404: forgotten again, neverTaken): as refusedUnsent says.
  if (takenBack.has(tracker)) return await refusedUnsent(s, attempt, refused);
  return outcome;
}

/** Sends the tracker's attempt once its journal line is durable, unless another call took the send; then waits. */
async function sendWhenWritten(s: LightningRailState, tracker: Tracker): Promise<AttemptOutcome> {
  const unsent = takeUnsent(tracker);
  if (unsent !== null) {
    if (!(await unsent.written)) return unwritten;
    unsent.send();
    decide(tracker);
  }
  return await awaitOutcome(s, tracker);
}

/**
 * Writes the attempt's journal line ahead of execute (the Rail contract's `prepare`), so that execute sends at once.
 * An attempt the rail would refuse, one it knows already, and a Lightning Address (its invoice is asked for by
 * execute) are left to execute. Withdrawn after preparedWaitMs if neither execute nor withdraw comes.
 */
export async function prepare(s: LightningRailState, attempt: OutgoingAttempt): Promise<void> {
  if (!s.running || s.attempts.has(attempt.id) || attempt.destination.kind === "lightning_address") return;
  const admitted = await admit(s, attempt);
  if (admitted === "known" || !("tracker" in admitted)) return;
  const { unsent } = admitted.tracker;
  if (unsent === null) return; // taken already, by an execute that came meanwhile
  unsent.expiry = setTimeout(() => {
    s.logger.warn({ attemptId: attempt.id }, "an attempt written ahead was never executed: withdrawn");
    void withdraw(s, attempt.id);
  }, s.limits.preparedWaitMs);
  unsent.expiry.unref();
  await unsent.written;
}

/**
 * Forgets an attempt written ahead and not sent (the Rail contract's `withdraw`): its hash is free again, and an
 * execute of its id starts afresh. An attempt sent, being sent, or unknown is left as it is.
 */
export async function withdraw(s: LightningRailState, attemptId: string): Promise<void> {
  const tracker = s.trackers.get(attemptId);
  const unsent = tracker === undefined ? null : takeUnsent(tracker);
  if (tracker === undefined || unsent === null || !(await unsent.written)) return;
  forget(s, tracker, withdrawnOutcome);
  await journalWithdrawn(s, attemptId);
}

/**
 * A new attempt up to its send: checked, its hash worked out and taken, its tracker made, its journal line on its
 * way (the tracker's `unsent`). The tracker then; the refusal when the rail refuses it (nothing of it is kept);
 * "known" when another call admitted the same id while this one awaited.
 */
async function admit(
  s: LightningRailState,
  attempt: OutgoingAttempt,
): Promise<AttemptOutcome | { tracker: Tracker } | "known"> {
  const { destination } = attempt;
  if (destination.kind !== "bolt11" && destination.kind !== "lightning_node")
    return failedOutcome("unreachable_destination", `Lightning cannot pay a ${destination.kind}`, true);
  const refused = refusal(s, attempt);
  if (refused !== null) return refusedUnsent(s, attempt, refused);
  let kind: PaymentKind;
  let paymentHash: string;
  let preimage: string | null = null;
  let invoiceHasAmount = false;
  if (destination.kind === "bolt11") {
    const parsed = parseBolt11(destination.invoice);
    if (!parsed.ok) return failedOutcome("rejected", parsed.error, false);
    if (parsed.value.amountMsat !== null && parsed.value.amountMsat !== attempt.amount)
      return failedOutcome(
        "rejected",
        `the invoice asks ${parsed.value.amountMsat} msat, the attempt pays ${attempt.amount} msat`,
        false,
      );
    kind = "bolt11";
    paymentHash = parsed.value.paymentHash;
    invoiceHasAmount = parsed.value.amountMsat !== null;
  } else {
    if (!/^0[23][0-9a-f]{64}$/.test(destination.pubkey))
      return failedOutcome("rejected", "not a node public key", false);
    let secret: Buffer;
    try {
      secret = await deriveKeysendSecret(s);
    } catch (error) {
      return refusedUnsent(
        s,
        attempt,
        failedOutcome("rail_unavailable", `no keysend secret: ${lndErrorText(error)}`, true),
      );
    }
    const image = createHmac("sha256", secret).update(`keysend:${attempt.id}`).digest();
    kind = "keysend";
    preimage = image.toString("hex");
    paymentHash = createHash("sha256").update(image).digest("hex");
  }
  // Another call for this id may have admitted it while we awaited.
  if (s.attempts.has(attempt.id)) return "known";
  // And the rail's places, or its tenant's, may have filled meanwhile (a keysend's secret is read first).
  const refusedAfter = refusal(s, attempt);
  if (refusedAfter !== null) return refusedUnsent(s, attempt, refusedAfter);
  // Another attempt written ahead of its payment's reservation and not sent yet holds the hash; that reservation
  // may yet be refused (a payer short of funds), the attempt withdrawn and the invoice free for this one. Decided
  // once it is sent or forgotten: by its payment's execute or withdraw, within preparedWaitMs at the latest.
  for (let held = undecidedHolding(s, paymentHash); held !== null; held = undecidedHolding(s, paymentHash)) {
    await held;
    if (!s.running)
      return refusedUnsent(
        s,
        attempt,
        failedOutcome("rail_unavailable", "the Lightning rail is not started", true),
      );
    if (s.attempts.has(attempt.id)) return "known";
    const refusedNow = refusal(s, attempt);
    if (refusedNow !== null) return refusedUnsent(s, attempt, refusedNow);
  }
  // Another attempt paid this hash, or is paying it: its payment is not this one's (LND would refuse the send).
  const other = attemptPaying(s, paymentHash);
  if (other !== null)
    return failedOutcome(
      "rejected",
      other.outcome === null
        ? "another payment of this invoice is in flight"
        : "this invoice was paid already, by another payment",
      false,
    );
  s.attemptByHash.set(paymentHash, attempt.id);

  const tracker = holdAttempt(
    s,
    attempt,
    paymentHash,
    kind,
    destination.kind === "bolt11" ? destination.invoice : null,
  );
  const send = () => {
    try {
      const request = sendRequest(destination, attempt.amount, { paymentHash, preimage, invoiceHasAmount });
      attach(s, tracker, sendPayment(s, request, attempt.feeMax), "send");
    } catch (error) {
      // Thrown before anything was sent (the gRPC client's checks of the request).
      void fail(s, tracker, { code: "rejected", message: lndErrorText(error), retryElsewhere: false });
    }
  };
  let resolve = () => {};
  const decided = new Promise<void>((done) => {
    resolve = done;
  });
  tracker.undecided = { decided, resolve };
  tracker.unsent = { written: writeAhead(s, tracker), send, expiry: null };
  return { tracker };
}

/**
 * Write-ahead: the hash is on disk before LND sees the payment. When it cannot be written, nothing is sent and
 * nothing of the attempt is kept: its hash is free again (the payment may go another way, or come back). `before`:
 * lines written ahead of the attempt's in the same write (the mark of followEarlier and followForgotten), so that the
 * line is not written without them (a write that fails is cut back off; a sync that fails may leave them all).
 */
async function writeAhead(
  s: LightningRailState,
  tracker: Tracker,
  ...before: RailStoreRecord[]
): Promise<boolean> {
  try {
    await s.store.append(...before, attemptRecord(tracker.attempt));
    return true;
  } catch (error) {
    s.logger.error(
      { error: lndErrorText(error), attemptId: tracker.attempt.attemptId },
      "journal write failed: nothing sent",
    );
    forget(s, tracker, unwritten);
    return false;
  }
}
