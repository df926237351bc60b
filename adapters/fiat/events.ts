// Stripe webhook events, parsed (after the signature was verified) and mapped to what the gateway applies.
// Pure: no I/O. Ordering and idempotency live in receiver.ts.
import { z } from "zod";
import type {
  PayoutReversal,
  RailCapitalMovement,
  RailEvent,
  RailFailureCode,
  RailFee,
  SettlementEvidence,
} from "../../core/index.ts";
import { FiatRailError } from "./errors.ts";
import type { FiatPspIds, ParkedReversal, ReversalReason } from "./store.ts";

/** Metadata keys the rail writes on every object it creates, and reads back from events. */
export const metadataKeys = {
  paymentId: "switchyard_payment_id",
  attemptId: "switchyard_attempt_id",
  reference: "switchyard_reference",
} as const;

export const stripeIdLengthMax = 255;

const stripeId = z.string().min(1).max(stripeIdLengthMax);
const minorUnits = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
/** What moves money: a dispute, a refund, a transfer or a payout of nothing is no object Stripe makes. */
const movedUnits = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);
const metadata = z.record(z.string(), z.string()).nullish();
const expandable = z.union([stripeId, z.object({ id: stripeId }).loose()]).nullish();

export const stripeEventEnvelopeSchema = z
  .object({
    id: stripeId,
    object: z.literal("event"),
    type: z.string().min(1).max(200),
    created: z.number().int().nonnegative(),
    livemode: z.boolean(),
    account: stripeId.nullish(),
    data: z.object({ object: z.record(z.string(), z.unknown()) }).loose(),
  })
  .loose();

export type StripeEventEnvelope = z.infer<typeof stripeEventEnvelopeSchema>;

export type ParseEventResult =
  | { ok: true; event: StripeEventEnvelope }
  | { ok: false; error: "payload_invalid" };

/** Parses the verified raw body. Not a Stripe event envelope: payload_invalid. */
export function parseStripeEvent(rawBody: Buffer): ParseEventResult {
  let json: unknown;
  try {
    json = JSON.parse(rawBody.toString("utf8"));
  } catch (error) {
    if (error instanceof SyntaxError) return { ok: false, error: "payload_invalid" };
    throw error;
  }
  const parsed = stripeEventEnvelopeSchema.safeParse(json);
  return parsed.success ? { ok: true, event: parsed.data } : { ok: false, error: "payload_invalid" };
}

const paymentIntentSchema = z
  .object({
    id: stripeId,
    amount: minorUnits,
    amount_received: minorUnits.nullish(),
    currency: z.string(),
    latest_charge: expandable,
    metadata,
    last_payment_error: z
      .object({
        code: z.string().nullish(),
        decline_code: z.string().nullish(),
        message: z.string().nullish(),
      })
      .loose()
      .nullish(),
  })
  .loose();

/** A balance transaction as a dispute lists it: what Stripe took (fee > 0) or gave back (< 0) beside its amount. */
const balanceTransactionSchema = z
  .object({
    id: stripeId,
    currency: z.string(),
    fee: z.number().int().min(-Number.MAX_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER),
  })
  .loose();

const disputeSchema = z
  .object({
    id: stripeId,
    amount: movedUnits,
    currency: z.string(),
    charge: expandable,
    payment_intent: expandable,
    /**
     * The funds withdrawn (with the dispute fee) and, once won, reinstated (with the fee given back, if it is). Read
     * one by one (disputeFees): an entry that is not one does not cost the dispute its reversal.
     */
    balance_transactions: z.array(z.unknown()).nullish(),
    /** `warning_*`: an inquiry, which takes no money unless it escalates (funds_withdrawn then). */
    status: z.string().nullish(),
  })
  .loose();

const refundSchema = z
  .object({
    id: stripeId,
    amount: movedUnits,
    currency: z.string(),
    status: z.string().nullish(),
    charge: expandable,
    payment_intent: expandable,
  })
  .loose();

/** charge.updated: a charge whose balance transaction (and so Stripe's fee) was just set. */
const chargeUpdatedSchema = z
  .object({
    id: stripeId,
    currency: z.string(),
    payment_intent: expandable,
    balance_transaction: expandable,
  })
  .loose();

const chargeSchema = z
  .object({
    id: stripeId,
    currency: z.string(),
    payment_intent: expandable,
    refunds: z
      .object({ data: z.array(refundSchema).max(100) })
      .loose()
      .nullish(),
  })
  .loose();

/**
 * A transfer as its events carry it, with what was reversed of it: `amount_reversed` in all, and its reversals, which
 * Stripe lists 10 at most (the rest asked of it: reversalsOf). Each reversal is read one by one (listedReversals).
 */
const transferSchema = z
  .object({
    id: stripeId,
    amount: movedUnits,
    currency: z.string(),
    destination: expandable,
    metadata,
    amount_reversed: minorUnits.nullish(),
    reversals: z
      .object({ data: z.array(z.unknown()).max(100) })
      .loose()
      .nullish(),
  })
  .loose();

/** A TransferReversal: what was taken back of a transfer, once, under its own id (trr_…). */
const transferReversalSchema = z
  .object({ id: stripeId, amount: movedUnits, currency: z.string(), transfer: expandable })
  .loose();

const payoutSchema = z
  .object({
    id: stripeId,
    amount: movedUnits,
    currency: z.string(),
    failure_code: z.string().nullish(),
    failure_message: z.string().nullish(),
    metadata,
  })
  .loose();

/**
 * The longest id of a payout of the platform's balance the ledger books: its references (platformPayoutReferences)
 * stay within what the operator's own capital reference takes (200 characters). Stripe's are under 30.
 */
export const platformPayoutIdLengthMax = 100;

/**
 * A payout of the platform's own balance to its bank, automatic or manual: what its booking needs of it. Its amount
 * is negative for a debit (Stripe's withdrawal from the bank: interpretPlatformPayout).
 */
const platformPayoutSchema = z
  .object({
    id: z.string().min(1).max(platformPayoutIdLengthMax),
    amount: z.number().int().min(-Number.MAX_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER),
    currency: z.string(),
    status: z.string().nullish(),
  })
  .loose();

/**
 * The references the operator's capital is booked under for the platform's payout `payoutId`: its money taken off the
 * balance, and given back when the payout failed or was canceled; and the ids of Stripe's fees for it: the one its
 * balance transaction took (an Instant Payout's), and the one its failure's gave back (negative). One each, whichever
 * event brings it.
 */
export const platformPayoutReferences = (payoutId: string) => ({
  taken: `stripe_payout:${payoutId}`,
  returned: `stripe_payout_returned:${payoutId}`,
  fee: `stripe_payout_fee:${payoutId}`,
  failureFee: `stripe_payout_failure_fee:${payoutId}`,
});

const platformPayoutTakenPrefix = platformPayoutReferences("").taken;

/**
 * The reference an operator booked the capital reference `reference` under by hand (POST /v1/rails/:rail/capital), as
 * operators booked a payout before the gateway booked it from Stripe's events: a payout's taking under the payout's own
 * id (po_…), for the gateway to book it no second time (settlement/reconciliation.ts CapitalBookedByHand). Null for any
 * other: a failed payout's money back is booked from its events whatever was booked by hand (a payout takes before it
 * gives back, so its id names the taking; the return by hand had a reference of the operator's making, not to be known).
 * A booking by hand made since takes the taking's own ledger id (platformPayoutEventReference); this finds those made
 * before, under their own.
 */
export function platformPayoutHandReference(reference: string): string | null {
  if (!reference.startsWith(platformPayoutTakenPrefix)) return null;
  const payoutId = reference.slice(platformPayoutTakenPrefix.length);
  return payoutId === "" ? null : payoutId;
}

/**
 * The reference the gateway books a payout's taking under, for the operator's booking by hand under the payout's own id
 * (po_…; platformPayoutHandReference the other way): the two are one ledger transfer, so whichever comes first is the
 * booking and the other finds it, in any order and from any process. Null for a reference that names no payout.
 */
export function platformPayoutEventReference(reference: string): string | null {
  if (!reference.startsWith("po_") || reference.length > platformPayoutIdLengthMax || reference === "po_")
    return null;
  return platformPayoutReferences(reference).taken;
}

/**
 * The ids of Stripe's fees for refund `refundId` (re_…), booked as the rail's fees of the invoice it refunds: what its
 * balance transaction took (or gave back: negative, where Stripe returns part of the payment's processing fee), and
 * what its failure's gave back. One each, whether the refund's API answer or one of its events brings it.
 */
export const refundFeeIds = (refundId: string) => ({
  fee: `stripe_refund_fee:${refundId}`,
  failureFee: `stripe_refund_failure_fee:${refundId}`,
});

function idOf(value: string | { id: string } | null | undefined): string | undefined {
  if (value === null || value === undefined) return undefined;
  return typeof value === "string" ? value : value.id;
}

/** What the gateway's settlement applies for one Stripe event; `toRailEvent` says which are `RailEvent`s. */
export type FiatEvent =
  | {
      readonly kind: "received";
      /** The Switchyard payment (a top-up or an invoice payment) this money is for. */
      readonly reference: string;
      readonly paymentId: string;
      readonly attemptId: string;
      readonly amount: bigint;
      readonly evidence: SettlementEvidence; // pspId: the PaymentIntent
      readonly pspIds: FiatPspIds;
    }
  | {
      readonly kind: "attempt_succeeded";
      readonly attemptId: string;
      readonly evidence: SettlementEvidence; // pspId: the transfer
      /** The transfer: what Stripe took for it is read from its balance transaction when delivered. */
      readonly transferId: string;
      readonly pspIds: FiatPspIds;
      /**
       * What was reversed of the transfer, as the event tells it: the reversals it lists, and Stripe's
       * `amount_reversed` (more than they add up to when the list was cut short: the rest are asked of Stripe when
       * delivered). Absent: nothing.
       */
      readonly reversed?: { readonly listed: readonly PayoutReversal[]; readonly amount: bigint };
    }
  | {
      readonly kind: "attempt_failed";
      readonly attemptId: string;
      readonly code: RailFailureCode;
      readonly message: string;
      readonly retryElsewhere: boolean;
      readonly pspIds: FiatPspIds;
    }
  | {
      /** A charge for this payment failed: nothing is credited (the customer may still pay with another card). */
      readonly kind: "receive_failed";
      readonly reference: string;
      readonly paymentId: string;
      readonly attemptId: string;
      readonly code: RailFailureCode;
      readonly message: string;
      readonly pspIds: FiatPspIds;
    }
  | {
      /** Money taken back from a credited payment. Always after its `received`; `key` is unique per reversal. */
      readonly kind: "reversed";
      readonly key: string;
      readonly reason: "dispute" | "refund";
      readonly reference: string;
      readonly paymentId: string;
      readonly attemptId: string;
      readonly amount: bigint;
      readonly evidence: SettlementEvidence; // pspId: the dispute or the refund
      readonly pspIds: FiatPspIds;
      /** What Stripe took for it: a dispute's fee (a refund's is read when delivered: toRailEvent). */
      readonly fees?: readonly RailFee[];
    }
  | {
      /**
       * A reversal was undone: the dispute `key` was won (its funds reinstated) or the refund `key` failed or was
       * canceled. What that reversal took goes back to the account. Always after its payment's `received`.
       */
      readonly kind: "reinstated";
      readonly key: string;
      readonly reference: string;
      readonly paymentId: string;
      readonly attemptId: string;
      readonly evidence: SettlementEvidence; // pspId: the dispute or the refund
      readonly pspIds: FiatPspIds;
      /** The dispute's fees as Stripe lists them now: the first one again, and the one given back if it is. */
      readonly fees?: readonly RailFee[];
    }
  | {
      /**
       * The processing fee of a payment credited before its charge had a balance transaction (asynchronous capture):
       * read from that balance transaction when delivered (toRailEvent).
       */
      readonly kind: "fee";
      readonly reference: string;
      readonly paymentId: string;
      readonly attemptId: string;
      readonly intentId: string;
      readonly evidence: SettlementEvidence; // pspId: the PaymentIntent
      readonly pspIds: FiatPspIds;
      /** Known already (the fees of reversals undone before the credit): no processing fee is read then. */
      readonly fees?: readonly RailFee[];
    }
  | {
      /**
       * The platform's own balance paid out to the operator's bank (an `out` movement), and that money back on it when
       * the payout failed or was canceled (an `in` before it): the operator's capital, each movement booked once per
       * reference (platformPayoutReferences). Stripe's fees for the payout are read when delivered (toRailEvent).
       */
      readonly kind: "capital";
      readonly payoutId: string;
      readonly movements: readonly RailCapitalMovement[];
      readonly pspIds: FiatPspIds; // payout: the payout
    }
  | {
      /** A connected account's payout to its bank failed; the money is back on that account. Informational. */
      readonly kind: "payout_failed";
      readonly account: string;
      readonly amount: bigint;
      readonly code: string;
      readonly message: string;
      readonly pspIds: FiatPspIds;
    };

/** What Stripe took for a transfer (its balance transaction's fee), asked of Stripe. */
export type TransferFeeLookup = (transferId: string) => Promise<bigint>;

/**
 * What Stripe took for a PaymentIntent's money (its charge's balance transaction), asked of Stripe; null while the
 * charge has no balance transaction yet (charge.updated says when it has).
 */
export type ChargeFeeLookup = (paymentIntentId: string) => Promise<RailFee | null>;

/** A transfer's reversals in the rail's currency, as Stripe lists them when asked (every page). */
export type TransferReversalsLookup = (transferId: string) => Promise<PayoutReversal[]>;

/**
 * What Stripe took for a payout of the platform's balance (its balance transaction's fee: an Instant Payout's), and
 * what the balance transaction of its failure or cancellation took (negative: given back), 0 when it has none, asked of
 * Stripe.
 */
export type PayoutFeesLookup = (payoutId: string) => Promise<{ fee: bigint; failureFee: bigint }>;

/**
 * What a refund's balance transaction took (its fee: 0 for most, negative where Stripe gives part of the processing fee
 * back) and its failure's (given back: negative), 0 when it has none, asked of Stripe.
 */
export type RefundFeesLookup = (refundId: string) => Promise<{ fee: bigint; failureFee: bigint }>;

/** What toRailEvent asks Stripe: the fees no event carries, and a transfer's reversals its event did not list. */
export type StripeLookups = {
  transferFee: TransferFeeLookup;
  chargeFee: ChargeFeeLookup;
  transferReversals: TransferReversalsLookup;
  payoutFees: PayoutFeesLookup;
  refundFees: RefundFeesLookup;
};

/** The PaymentIntent money in came by: named in its ids, and its evidence. */
function intentOf(event: Extract<FiatEvent, { kind: "received" }>): string {
  if (event.pspIds.paymentIntent !== undefined) return event.pspIds.paymentIntent;
  if (event.evidence.rail === "fiat") return event.evidence.pspId;
  throw new Error("money in on the fiat rail with no PaymentIntent");
}

const listed = (fee: RailFee | null): RailFee[] => (fee === null ? [] : [fee]);

/** `fees` as an event's field: absent when none is other than 0. */
const feesField = (fees: readonly RailFee[] | undefined): { fees?: readonly RailFee[] } => {
  const taken = (fees ?? []).filter((fee) => fee.amount !== 0n);
  return taken.length === 0 ? {} : { fees: taken };
};

/**
 * The `RailEvent` inside a `FiatEvent`, for the settlement path every rail shares; null for the informational kinds.
 * A transfer's fee is what its balance transaction says, as execute books it (the card schedule is no transfer's);
 * money in carries the processing fee of its charge's balance transaction, which the webhook's PaymentIntent does
 * not include.
 */
export async function toRailEvent(event: FiatEvent, lookups: StripeLookups): Promise<RailEvent | null> {
  switch (event.kind) {
    case "received":
      return {
        kind: "received",
        reference: event.reference,
        amount: event.amount,
        evidence: event.evidence,
        // Without a balance transaction yet (asynchronous capture) the money is credited now, its fee later (fee).
        ...feesField(listed(await lookups.chargeFee(intentOf(event)))),
      };
    case "fee": {
      if (event.fees !== undefined)
        return { kind: "fee", reference: event.reference, evidence: event.evidence, fees: event.fees };
      const fee = await lookups.chargeFee(event.intentId);
      // Told the balance transaction is set, and Stripe does not show it yet: asked again on the redelivery.
      if (fee === null)
        throw new FiatRailError(
          `the charge of PaymentIntent ${event.intentId} has no balance transaction yet`,
        );
      return {
        kind: "fee",
        reference: event.reference,
        evidence: event.evidence,
        fees: feesField([fee]).fees ?? [],
      };
    }
    case "attempt_succeeded": {
      const reversals = await reversalsOf(event, lookups);
      return {
        kind: "attempt_succeeded",
        attemptId: event.attemptId,
        evidence: event.evidence,
        fee: await lookups.transferFee(event.transferId),
        ...(reversals.length === 0 ? {} : { reversals }),
      };
    }
    case "attempt_failed":
      return {
        kind: "attempt_failed",
        attemptId: event.attemptId,
        code: event.code,
        message: event.message,
        retryElsewhere: event.retryElsewhere,
      };
    case "reversed":
      return {
        kind: "reversed",
        reference: event.reference,
        key: event.key,
        amount: event.amount,
        evidence: event.evidence,
        ...feesField([...(event.fees ?? []), ...(await refundFeesOf(event, lookups, "taken"))]),
      };
    case "reinstated":
      return {
        kind: "reinstated",
        reference: event.reference,
        key: event.key,
        evidence: event.evidence,
        ...feesField([...(event.fees ?? []), ...(await refundFeesOf(event, lookups, "undone"))]),
      };
    case "capital": {
      // Stripe takes an Instant Payout's fee from the balance beside its amount, on the payout's balance transaction.
      // Whether a failed payout gives it back is the failure's balance transaction's to say: it "reverses the initial
      // balance transaction and returns the funds from the failed payout back in your balance" (the Payout object's
      // failure_balance_transaction, Stripe's API reference), and a fee it returns is a negative fee there, booked as a
      // fee given back; a fee it keeps is not on it, and stays booked.
      const references = platformPayoutReferences(event.payoutId);
      const { fee, failureFee } = await lookups.payoutFees(event.payoutId);
      return {
        kind: "capital",
        movements: event.movements,
        ...feesField([
          { id: references.fee, amount: fee },
          { id: references.failureFee, amount: failureFee },
        ]),
      };
    }
    case "receive_failed":
    case "payout_failed":
      return null;
  }
}

/**
 * Stripe's fees for a refund, by the refund's fee ids (refundFeeIds); none for a dispute's reversal (its event lists its
 * fees). No event carries a refund's balance transaction, so it is read when delivered: what it took when the refund
 * takes the money back; when the refund is undone (failed, canceled), that again and what its failure's gave back, as a
 * dispute's fees are told again when it is won (so a refund whose failure came first, nothing taken, books both).
 */
async function refundFeesOf(
  event: Extract<FiatEvent, { kind: "reversed" | "reinstated" }>,
  lookups: StripeLookups,
  as: "taken" | "undone",
): Promise<RailFee[]> {
  const refundId = event.pspIds.refund;
  if (refundId === undefined) return [];
  const ids = refundFeeIds(refundId);
  const { fee, failureFee } = await lookups.refundFees(refundId);
  const taken = { id: ids.fee, amount: fee };
  return as === "taken" ? [taken] : [taken, { id: ids.failureFee, amount: failureFee }];
}

/**
 * A transfer's reversals: those its event lists, and when they add up to less than Stripe says was reversed of it (an
 * event lists 10 at most), those Stripe lists when asked; each once, by its id.
 */
async function reversalsOf(
  event: Extract<FiatEvent, { kind: "attempt_succeeded" }>,
  lookups: StripeLookups,
): Promise<PayoutReversal[]> {
  const reversed = event.reversed;
  if (reversed === undefined) return [];
  const listedAmount = reversed.listed.reduce((sum, reversal) => sum + reversal.amount, 0n);
  if (listedAmount >= reversed.amount) return [...reversed.listed];
  const keys = new Set(reversed.listed.map((reversal) => reversal.key));
  const asked = await lookups.transferReversals(event.transferId);
  return [...reversed.listed, ...asked.filter((reversal) => !keys.has(reversal.key))];
}

/** What one Stripe event means, before the receiver looks at what it already applied. */
export type Interpretation =
  | {
      kind: "intent_succeeded";
      intentId: string;
      paymentId: string;
      attemptId: string;
      reference: string;
      amount: bigint;
      pspIds: FiatPspIds;
    }
  | {
      kind: "intent_failed";
      intentId: string;
      event: Extract<FiatEvent, { kind: "receive_failed" }>;
    }
  | { kind: "reversal"; intentId: string; reversal: ParkedReversal }
  /** The reversal `key` is undone (given back if it was applied; never applied if it comes later). */
  | {
      kind: "withdrawal";
      intentId: string;
      key: string;
      reason: ReversalReason;
      pspIds: FiatPspIds;
      fees?: readonly RailFee[];
    }
  | { kind: "reversals"; intentId: string; reversals: ParkedReversal[] }
  /** A charge's balance transaction was set after its PaymentIntent succeeded: its fee, if credited without it. */
  | { kind: "charge_fee"; intentId: string; pspIds: FiatPspIds }
  /** The platform's payout `payoutId`: its money taken off the balance, and given back too when `returned`. */
  | { kind: "platform_payout"; payoutId: string; amount: bigint; returned: boolean; pspIds: FiatPspIds }
  | { kind: "stateless"; event: FiatEvent }
  | { kind: "ignored"; reason: IgnoredReason };

export type IgnoredReason =
  | "event_type_not_handled"
  | "object_invalid"
  | "not_created_by_switchyard" // no switchyard_* metadata: someone else's object on the account
  | "currency_mismatch"
  | "no_payment_intent"
  | "refund_not_effective" // a charge.refunded whose refunds all failed or were canceled
  | "fee_unchanged" // a charge.updated that did not set the charge's balance transaction
  | "reversal_unchanged" // a transfer.updated that did not change what was reversed of the transfer
  | "dispute_inquiry" // a dispute opened as an inquiry: no funds withdrawn (unless it escalates: funds_withdrawn)
  /**
   * A payout of a negative amount: Stripe's withdrawal from the operator's bank into the platform's balance (a negative
   * balance covered, or funds added). It may pay what the operator owes Stripe for fees, which the ledger booked funded
   * already (rail-fees.ts): booked as capital in, it would say the rail holds more than Stripe does. The operator books
   * what of it is new capital (POST /v1/rails/:rail/capital).
   */
  | "payout_debit"
  /** An event of a connected account's own object (Connect: `account` set): never the platform's money. */
  | "connected_account";

function declineCode(
  error: { code?: string | null; decline_code?: string | null } | null | undefined,
): RailFailureCode {
  const code = error?.decline_code ?? error?.code ?? "";
  return code === "expired_card" ? "expired" : "rejected";
}

const refundUndone = (refund: z.infer<typeof refundSchema>) =>
  refund.status === "failed" || refund.status === "canceled";

function refundReversal(refund: z.infer<typeof refundSchema>, eventId: string): ParkedReversal {
  const paymentIntent = idOf(refund.payment_intent);
  const charge = idOf(refund.charge);
  return {
    key: `refund:${refund.id}`,
    reason: "refund",
    amount: BigInt(refund.amount),
    pspIds: {
      event: eventId,
      refund: refund.id,
      ...(paymentIntent === undefined ? {} : { paymentIntent }),
      ...(charge === undefined ? {} : { charge }),
    },
  };
}

type InterpretParams = { currency: string };

/** `currency` is Stripe's on the object; `railCurrency` the rail's, in lower case. */
const sameCurrency = (currency: string, railCurrency: string) => currency.toLowerCase() === railCurrency;

/** payment_intent.succeeded / payment_failed: money in for a payment, or a charge that failed. */
function interpretPaymentIntent(event: StripeEventEnvelope, params: InterpretParams): Interpretation {
  const parsed = paymentIntentSchema.safeParse(event.data.object);
  if (!parsed.success) return { kind: "ignored", reason: "object_invalid" };
  const intent = parsed.data;
  if (!sameCurrency(intent.currency, params.currency))
    return { kind: "ignored", reason: "currency_mismatch" };
  const paymentId = intent.metadata?.[metadataKeys.paymentId];
  const attemptId = intent.metadata?.[metadataKeys.attemptId];
  if (paymentId === undefined || attemptId === undefined)
    return { kind: "ignored", reason: "not_created_by_switchyard" };
  const reference = intent.metadata?.[metadataKeys.reference] ?? paymentId;
  const charge = idOf(intent.latest_charge);
  const pspIds: FiatPspIds = {
    event: event.id,
    paymentIntent: intent.id,
    ...(charge === undefined ? {} : { charge }),
  };
  if (event.type === "payment_intent.succeeded") {
    const received = intent.amount_received ?? intent.amount;
    if (received <= 0) return { kind: "ignored", reason: "object_invalid" };
    return {
      kind: "intent_succeeded",
      intentId: intent.id,
      paymentId,
      attemptId,
      reference,
      amount: BigInt(received),
      pspIds,
    };
  }
  return {
    kind: "intent_failed",
    intentId: intent.id,
    event: {
      kind: "receive_failed",
      reference,
      paymentId,
      attemptId,
      code: declineCode(intent.last_payment_error),
      message: intent.last_payment_error?.message ?? "the payment failed",
      pspIds,
    },
  };
}

/**
 * charge.dispute.created / funds_withdrawn / funds_reinstated: a dispute takes the money back (funds_withdrawn names
 * the same reversal again, with the withdrawal's fee), and gives it back if it is won.
 */
function interpretDispute(event: StripeEventEnvelope, params: InterpretParams): Interpretation {
  const parsed = disputeSchema.safeParse(event.data.object);
  if (!parsed.success) return { kind: "ignored", reason: "object_invalid" };
  const dispute = parsed.data;
  if (!sameCurrency(dispute.currency, params.currency))
    return { kind: "ignored", reason: "currency_mismatch" };
  const intentId = idOf(dispute.payment_intent);
  if (intentId === undefined) return { kind: "ignored", reason: "no_payment_intent" };
  const charge = idOf(dispute.charge);
  const key = `dispute:${dispute.id}`;
  const pspIds: FiatPspIds = {
    event: event.id,
    dispute: dispute.id,
    paymentIntent: intentId,
    ...(charge === undefined ? {} : { charge }),
  };
  // Stripe takes the disputed amount when the dispute opens (or, for an inquiry that escalates, when its funds are
  // withdrawn: the same reversal), with its fee, and gives the amount back if it is won (the fee too, where Stripe
  // returns it): each a balance transaction of the dispute, whose fees are booked by id.
  // An inquiry (status warning_needs_response, warning_under_review, warning_closed) withdraws nothing when it opens,
  // and closes without a funds event: taken as a reversal, it held the amount from the tenant for good (and refused
  // the refund Stripe advises for an inquiry). One that escalates is withdrawn then, under the same key.
  if (event.type === "charge.dispute.created" && dispute.status?.startsWith("warning_") === true)
    return { kind: "ignored", reason: "dispute_inquiry" };
  const fees = disputeFees(dispute.balance_transactions ?? [], params.currency);
  const withFees = fees.length === 0 ? {} : { fees };
  if (event.type === "charge.dispute.funds_reinstated")
    return { kind: "withdrawal", intentId, key, reason: "dispute", pspIds, ...withFees };
  return {
    kind: "reversal",
    intentId,
    reversal: { key, reason: "dispute", amount: BigInt(dispute.amount), pspIds, ...withFees },
  };
}

/**
 * The fees of a dispute's balance transactions in the rail's currency. An entry that is no balance transaction, or
 * one in another currency (Stripe's settlement currency differs from the rail's), is left out: its fee cannot be
 * booked in the rail's asset, and the dispute's money is applied all the same.
 */
function disputeFees(entries: readonly unknown[], currency: string): RailFee[] {
  return entries.flatMap((entry) => {
    const parsed = balanceTransactionSchema.safeParse(entry);
    if (!parsed.success || !sameCurrency(parsed.data.currency, currency)) return [];
    return [{ id: parsed.data.id, amount: BigInt(parsed.data.fee) }];
  });
}

/**
 * charge.updated: when it sets the charge's balance transaction (asynchronous capture), the fee of a payment that
 * was credited without it. Any other change of a charge is nothing to the ledger.
 */
function interpretChargeUpdated(event: StripeEventEnvelope, params: InterpretParams): Interpretation {
  const previous = (event.data as { previous_attributes?: unknown }).previous_attributes;
  if (typeof previous !== "object" || previous === null || !("balance_transaction" in previous))
    return { kind: "ignored", reason: "fee_unchanged" };
  const parsed = chargeUpdatedSchema.safeParse(event.data.object);
  if (!parsed.success) return { kind: "ignored", reason: "object_invalid" };
  const charge = parsed.data;
  if (!sameCurrency(charge.currency, params.currency))
    return { kind: "ignored", reason: "currency_mismatch" };
  const intentId = idOf(charge.payment_intent);
  if (intentId === undefined) return { kind: "ignored", reason: "no_payment_intent" };
  if (idOf(charge.balance_transaction) === undefined) return { kind: "ignored", reason: "fee_unchanged" };
  return {
    kind: "charge_fee",
    intentId,
    pspIds: { event: event.id, paymentIntent: intentId, charge: charge.id },
  };
}

/** refund.created / updated / failed: a refund takes the money back; failed or canceled, it is withdrawn. */
function interpretRefund(event: StripeEventEnvelope, params: InterpretParams): Interpretation {
  const parsed = refundSchema.safeParse(event.data.object);
  if (!parsed.success) return { kind: "ignored", reason: "object_invalid" };
  const refund = parsed.data;
  if (!sameCurrency(refund.currency, params.currency))
    return { kind: "ignored", reason: "currency_mismatch" };
  const intentId = idOf(refund.payment_intent);
  if (intentId === undefined) return { kind: "ignored", reason: "no_payment_intent" };
  if (refundUndone(refund) || event.type === "refund.failed")
    return {
      kind: "withdrawal",
      intentId,
      key: `refund:${refund.id}`,
      reason: "refund",
      pspIds: { event: event.id, refund: refund.id, paymentIntent: intentId },
    };
  return { kind: "reversal", intentId, reversal: refundReversal(refund, event.id) };
}

/** charge.refunded: the charge's effective refunds, when the event still lists them. */
function interpretChargeRefunded(event: StripeEventEnvelope, params: InterpretParams): Interpretation {
  const parsed = chargeSchema.safeParse(event.data.object);
  if (!parsed.success) return { kind: "ignored", reason: "object_invalid" };
  if (!sameCurrency(parsed.data.currency, params.currency))
    return { kind: "ignored", reason: "currency_mismatch" };
  const intentId = idOf(parsed.data.payment_intent);
  if (intentId === undefined) return { kind: "ignored", reason: "no_payment_intent" };
  // Since API 2022-11-15 the refunds list is not included; refund.created carries each refund then.
  const reversals = (parsed.data.refunds?.data ?? [])
    .filter((refund) => !refundUndone(refund))
    .map((refund) => refundReversal(refund, event.id));
  if (reversals.length === 0) return { kind: "ignored", reason: "refund_not_effective" };
  return { kind: "reversals", intentId, reversals };
}

/**
 * transfer.created / transfer.reversed / transfer.updated: a payout attempt's Connect transfer, final when created,
 * with what was reversed of it since (the platform's reversal, whole or in part: the money is back on the platform's
 * balance). Each event says the transfer as it stands, so it settles the attempt (if transfer.created did not yet) and
 * names every reversal so far, each booked once by its id. A transfer.updated that did not change what was reversed
 * (its description, its metadata) is nothing to the ledger.
 */
function interpretTransfer(event: StripeEventEnvelope, params: InterpretParams): Interpretation {
  if (event.type === "transfer.updated" && !reversalChanged(event))
    return { kind: "ignored", reason: "reversal_unchanged" };
  const parsed = transferSchema.safeParse(event.data.object);
  if (!parsed.success) return { kind: "ignored", reason: "object_invalid" };
  const transfer = parsed.data;
  if (!sameCurrency(transfer.currency, params.currency))
    return { kind: "ignored", reason: "currency_mismatch" };
  const attemptId = transfer.metadata?.[metadataKeys.attemptId];
  if (attemptId === undefined) return { kind: "ignored", reason: "not_created_by_switchyard" };
  const listed = listedReversals(transfer.reversals?.data ?? [], transfer.id, params.currency);
  const amount = BigInt(transfer.amount_reversed ?? 0);
  return {
    kind: "stateless",
    event: {
      kind: "attempt_succeeded",
      attemptId,
      evidence: { rail: "fiat", pspId: transfer.id },
      transferId: transfer.id,
      pspIds: { event: event.id, transfer: transfer.id },
      ...(listed.length === 0 && amount === 0n ? {} : { reversed: { listed, amount } }),
    },
  };
}

/** Whether a transfer.updated changed what was reversed of the transfer (its previous attributes name it). */
function reversalChanged(event: StripeEventEnvelope): boolean {
  const previous = (event.data as { previous_attributes?: unknown }).previous_attributes;
  if (typeof previous !== "object" || previous === null) return false;
  return "amount_reversed" in previous || "reversals" in previous || "reversed" in previous;
}

/**
 * The reversals a transfer lists, each once: an entry that is not a TransferReversal, one of another transfer or in
 * another currency than the rail's is left out (it cannot be this transfer's money in the rail's asset).
 */
function listedReversals(
  entries: readonly unknown[],
  transferId: string,
  currency: string,
): PayoutReversal[] {
  const seen = new Set<string>();
  return entries.flatMap((entry) => {
    const parsed = transferReversalSchema.safeParse(entry);
    if (!parsed.success) return [];
    const reversal = parsed.data;
    const of = idOf(reversal.transfer);
    if ((of !== undefined && of !== transferId) || !sameCurrency(reversal.currency, currency)) return [];
    if (seen.has(reversal.id)) return [];
    seen.add(reversal.id);
    return [{ key: reversal.id, amount: BigInt(reversal.amount) }];
  });
}

/**
 * payout.created / paid / failed / canceled of the platform's own balance to its bank (automatic or manual). Stripe
 * takes a payout's amount off the available balance when it creates the payout (its balance_transaction, which the
 * payout has from payout.created on, is that debit), not when it is paid: the money is taken whichever of these events
 * comes first. A payout that failed or was canceled has Stripe give the money back to the available balance (its
 * failure_balance_transaction reverses the first), and only a pending one can be canceled, so always after it was
 * taken: such an event says both.
 */
function interpretPlatformPayout(event: StripeEventEnvelope, params: InterpretParams): Interpretation {
  const parsed = platformPayoutSchema.safeParse(event.data.object);
  if (!parsed.success || parsed.data.amount === 0) return { kind: "ignored", reason: "object_invalid" };
  const payout = parsed.data;
  if (!sameCurrency(payout.currency, params.currency))
    return { kind: "ignored", reason: "currency_mismatch" };
  if (payout.amount < 0) return { kind: "ignored", reason: "payout_debit" };
  const returned =
    event.type === "payout.failed" ||
    event.type === "payout.canceled" ||
    payout.status === "failed" ||
    payout.status === "canceled";
  return {
    kind: "platform_payout",
    payoutId: payout.id,
    amount: BigInt(payout.amount),
    returned,
    pspIds: { event: event.id, payout: payout.id },
  };
}

/** payout.failed of a connected account: its payout to its bank failed (informational). */
function interpretConnectedPayoutFailed(
  event: StripeEventEnvelope,
  account: string,
  params: InterpretParams,
): Interpretation {
  const parsed = payoutSchema.safeParse(event.data.object);
  if (!parsed.success) return { kind: "ignored", reason: "object_invalid" };
  const payout = parsed.data;
  if (!sameCurrency(payout.currency, params.currency))
    return { kind: "ignored", reason: "currency_mismatch" };
  return {
    kind: "stateless",
    event: {
      kind: "payout_failed",
      account,
      amount: BigInt(payout.amount),
      code: payout.failure_code ?? "payout_failed",
      message: payout.failure_message ?? "the payout failed",
      pspIds: { event: event.id, payout: payout.id },
    },
  };
}

/**
 * Maps one event. `currency` is the rail's (lower case, "usd"): objects in another currency are ignored.
 * Handled: payment_intent.succeeded / payment_failed, charge.dispute.created / funds_withdrawn / funds_reinstated,
 * charge.updated (a balance transaction set), charge.refunded,
 * refund.created / updated / failed, charge.refund.updated, transfer.created / reversed / updated, and
 * payout.created / paid / failed / canceled (the platform's; a connected account's payout.failed only).
 * Anything else is ignored with a reason.
 * A refund whose status is failed or canceled withdraws that refund, whichever event carries it.
 */
export function interpretStripeEvent(event: StripeEventEnvelope, params: InterpretParams): Interpretation {
  // A connected account's PaymentIntents, charges, disputes, refunds and transfers are its own, whatever their
  // metadata says (anyone who can create an object there can copy Switchyard's keys): only its failed payout is
  // read, as news of a payout the platform made.
  const account = event.account ?? null;
  if (account !== null && event.type !== "payout.failed")
    return { kind: "ignored", reason: "connected_account" };
  switch (event.type) {
    case "payment_intent.succeeded":
    case "payment_intent.payment_failed":
      return interpretPaymentIntent(event, params);
    case "charge.dispute.created":
    case "charge.dispute.funds_withdrawn":
    case "charge.dispute.funds_reinstated":
      return interpretDispute(event, params);
    case "charge.updated":
      return interpretChargeUpdated(event, params);
    case "refund.created":
    case "refund.updated":
    case "refund.failed":
    // The older name of refund.updated for some payment methods, with the same refund object: an endpoint subscribed
    // to it alone would otherwise never hear that a refund failed.
    case "charge.refund.updated":
      return interpretRefund(event, params);
    case "charge.refunded":
      return interpretChargeRefunded(event, params);
    case "transfer.created":
    case "transfer.reversed":
    case "transfer.updated":
      return interpretTransfer(event, params);
    case "payout.failed":
      return account === null
        ? interpretPlatformPayout(event, params)
        : interpretConnectedPayoutFailed(event, account, params);
    case "payout.created":
    case "payout.paid":
    case "payout.canceled":
      return interpretPlatformPayout(event, params);
    default:
      return { kind: "ignored", reason: "event_type_not_handled" };
  }
}
