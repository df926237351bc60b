// Applies verified Stripe events once, in an order that keeps the ledger right whatever order Stripe
// delivers them in:
// - an event id already applied changes nothing (duplicates and replays);
// - a success credits once per PaymentIntent, if the gateway books it (a PaymentIntent that is not the one offered
//   for the reference its metadata names is not ours, and its disputes and refunds stay parked); a failure that
//   arrives after the success is stale and dropped;
// - a dispute or refund reverses only a credited intent: one that arrives first is parked and applied right
//   after the credit;
// - a reversal undone (a dispute won, a refund failed or canceled) is given back if it was applied, dropped if
//   parked, and refused if it arrives later;
// - a payout of the platform's balance takes the operator's capital off the rail once, whichever of its events comes
//   first, and one that failed or was canceled gives it back once, the two booked at once: a failure delivered before
//   the payout's creation ends at nothing all the same. One the rail's clearing account cannot hold yet is kept by the
//   settlement, not refused back to Stripe (which stops redelivering after 3 days).
// An event is marked applied only after `applyEvent` resolved for everything it implies, so a crash or a
// thrown `applyEvent` leaves it to Stripe's redelivery; `applyEvent` must therefore be idempotent itself
// (the ledger transfer ids come from `key` / the PSP ids, which are stable across deliveries).

import type { RailEventVerdict, RailFee, SettlementEvidence } from "../../core/index.ts";
import {
  type FiatEvent,
  type IgnoredReason,
  interpretStripeEvent,
  platformPayoutReferences,
  type StripeEventEnvelope,
} from "./events.ts";
import type { CreditedIntent, FiatPspIds, ParkedReversal, StripeWebhookStore } from "./store.ts";

/** `not_ours`: the gateway booked nothing for it (see RailEventVerdict). */
// biome-ignore lint/suspicious/noConfusingVoidType: a handler that returns nothing applied the event
export type ApplyFiatEvent = (event: FiatEvent) => Promise<RailEventVerdict | void>;

export type ReceiveOutcome =
  | { status: "applied"; applied: number }
  | { status: "duplicate" }
  | { status: "parked" } // a reversal, or a charge's fee, waiting for its intent's success
  | { status: "withdrawn" } // a reversal undone before it was applied: nothing to give back
  | { status: "stale" } // a failure after the success of the same intent
  | { status: "ignored"; reason: IgnoredReason }
  /**
   * A success the gateway did not book: its PaymentIntent is not the one offered for the reference it names. Or a
   * transfer's reversal of no payout the gateway made.
   */
  | { status: "not_ours" };

export type StripeEventReceiver = {
  receive(event: StripeEventEnvelope): Promise<ReceiveOutcome>;
};

/** A reversal's evidence: its dispute or refund. */
const reversalEvidence = (pspIds: FiatPspIds, key: string): SettlementEvidence => ({
  rail: "fiat",
  pspId: pspIds.dispute ?? pspIds.refund ?? key,
});

/**
 * A reversal's ids, with the PaymentIntent it takes back from: the credited one, which a refund listed in charge.refunded
 * may not name on its own object (its fee, kept when Stripe refuses to tell it, is booked as that intent's money's).
 */
const reversalPspIds = (intent: CreditedIntent, pspIds: FiatPspIds): FiatPspIds => ({
  ...pspIds,
  paymentIntent: intent.intentId,
});

function reversedEvent(intent: CreditedIntent, reversal: ParkedReversal): FiatEvent {
  return {
    kind: "reversed",
    key: reversal.key,
    reason: reversal.reason,
    reference: intent.reference,
    paymentId: intent.paymentId,
    attemptId: intent.attemptId,
    amount: reversal.amount,
    evidence: reversalEvidence(reversal.pspIds, reversal.key),
    pspIds: reversalPspIds(intent, reversal.pspIds),
    ...(reversal.fees === undefined ? {} : { fees: reversal.fees }),
  };
}

function reinstatedEvent(
  intent: CreditedIntent,
  withdrawal: { key: string; pspIds: FiatPspIds; fees?: readonly RailFee[] },
): FiatEvent {
  return {
    kind: "reinstated",
    key: withdrawal.key,
    reference: intent.reference,
    paymentId: intent.paymentId,
    attemptId: intent.attemptId,
    evidence: reversalEvidence(withdrawal.pspIds, withdrawal.key),
    pspIds: reversalPspIds(intent, withdrawal.pspIds),
    ...(withdrawal.fees === undefined ? {} : { fees: withdrawal.fees }),
  };
}

/**
 * Fees of a credited intent: `fees` when known (those its undone reversals kept), else its charge's processing fee,
 * read when delivered (its balance transaction).
 */
function feeEvent(intent: CreditedIntent, pspIds: FiatPspIds, fees?: readonly RailFee[]): FiatEvent {
  return {
    kind: "fee",
    reference: intent.reference,
    paymentId: intent.paymentId,
    attemptId: intent.attemptId,
    intentId: intent.intentId,
    evidence: { rail: "fiat", pspId: intent.intentId },
    pspIds,
    ...(fees === undefined ? {} : { fees }),
  };
}

/**
 * The operator's capital the platform's payout moved: taken off the rail (`out`), and, when it failed or was canceled,
 * given back first (`in`), so that the two, booked at once, end at nothing whichever of them the ledger had already.
 */
function payoutCapital(payout: {
  payoutId: string;
  amount: bigint;
  returned: boolean;
  pspIds: FiatPspIds;
}): FiatEvent {
  const references = platformPayoutReferences(payout.payoutId);
  // The same text on every delivery: the ledger refuses a reference booked again with another.
  const taken = {
    direction: "out",
    amount: payout.amount,
    reference: references.taken,
    description: `Stripe payout ${payout.payoutId} of the platform's balance to its bank`,
  } as const;
  const returned = {
    direction: "in",
    amount: payout.amount,
    reference: references.returned,
    description: `Stripe payout ${payout.payoutId} failed or canceled: its amount back on the platform's balance`,
  } as const;
  return {
    kind: "capital",
    payoutId: payout.payoutId,
    movements: payout.returned ? [returned, taken] : [taken],
    pspIds: payout.pspIds,
  };
}

export function createStripeEventReceiver(deps: {
  store: StripeWebhookStore;
  applyEvent: ApplyFiatEvent;
  currency: string;
}): StripeEventReceiver {
  const { store, applyEvent } = deps;

  async function applyReversals(
    intent: CreditedIntent,
    reversals: readonly ParkedReversal[],
  ): Promise<number> {
    for (const reversal of reversals) {
      await applyEvent(reversedEvent(intent, reversal));
      await store.unpark({ intentId: intent.intentId, key: reversal.key });
    }
    return reversals.length;
  }

  async function effects(event: StripeEventEnvelope): Promise<ReceiveOutcome> {
    const meaning = interpretStripeEvent(event, { currency: deps.currency });
    switch (meaning.kind) {
      case "ignored":
        return { status: "ignored", reason: meaning.reason };
      case "stateless": {
        // A transfer's reversal the gateway booked nothing for (no payout of its own paid that transfer): said so.
        if ((await applyEvent(meaning.event)) === "not_ours") return { status: "not_ours" };
        return { status: "applied", applied: 1 };
      }
      case "intent_succeeded": {
        const intent: CreditedIntent = {
          intentId: meaning.intentId,
          paymentId: meaning.paymentId,
          attemptId: meaning.attemptId,
          reference: meaning.reference,
          amount: meaning.amount,
        };
        const already = await store.creditedIntent(meaning.intentId);
        let applied = 0;
        if (already === null) {
          // Not counted as credited unless the gateway booked it: a dispute or refund of it would take back, from the
          // invoice it names, money that never came in for it.
          const verdict = await applyEvent({
            kind: "received",
            reference: meaning.reference,
            paymentId: meaning.paymentId,
            attemptId: meaning.attemptId,
            amount: meaning.amount,
            evidence: { rail: "fiat", pspId: meaning.intentId },
            pspIds: meaning.pspIds,
          });
          if (verdict === "not_ours") return { status: "not_ours" };
          applied += 1;
        }
        const { parked, feePending, pendingFees } = await store.markCredited(already ?? intent);
        applied += await applyReversals(already ?? intent, parked);
        if (feePending || pendingFees.length > 0) {
          if (feePending) await applyEvent(feeEvent(already ?? intent, meaning.pspIds));
          // Fees of reversals undone before this credit: Stripe took them all the same.
          if (pendingFees.length > 0)
            await applyEvent(feeEvent(already ?? intent, meaning.pspIds, pendingFees));
          await store.clearFeePending(meaning.intentId);
          applied += 1;
        }
        return { status: "applied", applied };
      }
      case "intent_failed": {
        if ((await store.creditedIntent(meaning.intentId)) !== null) return { status: "stale" };
        await applyEvent(meaning.event);
        return { status: "applied", applied: 1 };
      }
      case "reversal":
      case "reversals": {
        const reversals = meaning.kind === "reversal" ? [meaning.reversal] : meaning.reversals;
        let applied = 0;
        let parked = 0;
        for (const reversal of reversals) {
          const placed = await store.parkUnlessCredited({ intentId: meaning.intentId, reversal });
          if (placed.status === "credited") {
            await applyEvent(reversedEvent(placed.intent, reversal));
            applied += 1;
          } else if (placed.status === "parked") parked += 1;
        }
        if (applied > 0) return { status: "applied", applied };
        return parked > 0 ? { status: "parked" } : { status: "withdrawn" };
      }
      case "platform_payout": {
        // One the rail's clearing account does not hold yet is kept by the settlement and booked once it does: the
        // event is done either way.
        await applyEvent(payoutCapital(meaning));
        return { status: "applied", applied: meaning.returned ? 2 : 1 };
      }
      case "charge_fee": {
        // Before its payment's credit it waits for it (that credit may have read the charge just before its balance
        // transaction was set); an intent never credited (not ours) keeps it for nothing.
        const placed = await store.parkFeeUnlessCredited(meaning.intentId);
        if (placed.status === "parked") return { status: "parked" };
        await applyEvent(feeEvent(placed.intent, meaning.pspIds));
        return { status: "applied", applied: 1 };
      }
      case "withdrawal": {
        const placed = await store.withdraw({
          intentId: meaning.intentId,
          key: meaning.key,
          ...(meaning.fees === undefined ? {} : { fees: meaning.fees }),
        });
        if (placed.status === "withdrawn") return { status: "withdrawn" };
        await applyEvent(reinstatedEvent(placed.intent, meaning));
        return { status: "applied", applied: 1 };
      }
    }
  }

  return {
    async receive(event) {
      if (await store.isApplied(event.id)) return { status: "duplicate" };
      const outcome = await effects(event);
      await store.markApplied({ eventId: event.id, type: event.type });
      return outcome;
    },
  };
}
