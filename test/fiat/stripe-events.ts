// Stripe event envelopes for tests, shaped as Stripe sends them, and signed with the stripe package's helper.
import Stripe from "stripe";
import { inject } from "vitest";
import { type App, createApp } from "../../gateway/app.ts";
import { testConfig } from "../support/config.ts";
import { createTestDatabase } from "../support/postgres.ts";

const signer = new Stripe("sk_test_signer");

type Envelope = {
  id: string;
  object: "event";
  type: string;
  created: number;
  livemode: false;
  api_version: string;
  account?: string;
  data: { object: Record<string, unknown> };
};

function envelope(id: string, type: string, object: Record<string, unknown>, account?: string): Envelope {
  return {
    id,
    object: "event",
    type,
    created: 1_800_000_000,
    livemode: false,
    api_version: "2026-10-28.clover",
    ...(account === undefined ? {} : { account }),
    data: { object },
  };
}

export type IntentFields = {
  intentId: string;
  amount: number;
  paymentId: string;
  attemptId: string;
  reference?: string;
  chargeId?: string;
  currency?: string;
  metadata?: Record<string, string>;
};

function intentObject(fields: IntentFields, status: string, received: number): Record<string, unknown> {
  return {
    id: fields.intentId,
    object: "payment_intent",
    amount: fields.amount,
    amount_received: received,
    currency: fields.currency ?? "usd",
    status,
    latest_charge: fields.chargeId ?? `ch_${fields.intentId.slice(3)}`,
    metadata: fields.metadata ?? {
      switchyard_payment_id: fields.paymentId,
      switchyard_attempt_id: fields.attemptId,
      switchyard_reference: fields.reference ?? fields.paymentId,
    },
    last_payment_error:
      status === "requires_payment_method"
        ? {
            code: "card_declined",
            decline_code: "insufficient_funds",
            message: "Your card has insufficient funds.",
          }
        : null,
  };
}

/** One of a dispute's balance transactions: its id, the amount it moved and the fee with it (negative: given back). */
export type DisputeFee = { id: string; amount: number; fee: number };

/** A dispute's balance transactions as Stripe lists them on the dispute (the funds withdrawn, then reinstated). */
const balanceTransactions = (fees: readonly DisputeFee[]) =>
  fees.map((txn) => ({
    id: txn.id,
    object: "balance_transaction",
    amount: txn.amount,
    currency: "usd",
    fee: txn.fee,
    fee_details: txn.fee === 0 ? [] : [{ amount: txn.fee, currency: "usd", type: "stripe_fee" }],
    net: txn.amount - txn.fee,
    reporting_category: "dispute",
    type: "adjustment",
  }));

export const stripeEvents = {
  intentSucceeded: (eventId: string, fields: IntentFields) =>
    envelope(eventId, "payment_intent.succeeded", intentObject(fields, "succeeded", fields.amount)),
  intentFailed: (eventId: string, fields: IntentFields) =>
    envelope(eventId, "payment_intent.payment_failed", intentObject(fields, "requires_payment_method", 0)),
  disputeCreated: (
    eventId: string,
    f: { disputeId: string; intentId: string; amount: number; chargeId?: string; fees?: DisputeFee[] },
  ) =>
    envelope(eventId, "charge.dispute.created", {
      id: f.disputeId,
      object: "dispute",
      amount: f.amount,
      currency: "usd",
      charge: f.chargeId ?? `ch_${f.intentId.slice(3)}`,
      payment_intent: f.intentId,
      reason: "fraudulent",
      status: "needs_response",
      balance_transactions: balanceTransactions(f.fees ?? []),
    }),
  disputeFundsReinstated: (
    eventId: string,
    f: { disputeId: string; intentId: string; amount: number; fees?: DisputeFee[] },
  ) =>
    envelope(eventId, "charge.dispute.funds_reinstated", {
      id: f.disputeId,
      object: "dispute",
      amount: f.amount,
      currency: "usd",
      charge: `ch_${f.intentId.slice(3)}`,
      payment_intent: f.intentId,
      reason: "fraudulent",
      status: "won",
      balance_transactions: balanceTransactions(f.fees ?? []),
    }),
  refundFailed: (eventId: string, f: { refundId: string; intentId: string; amount: number }) =>
    envelope(eventId, "refund.failed", {
      id: f.refundId,
      object: "refund",
      amount: f.amount,
      currency: "usd",
      status: "failed",
      failure_reason: "expired_or_canceled_card",
      charge: `ch_${f.intentId.slice(3)}`,
      payment_intent: f.intentId,
    }),
  refundCreated: (
    eventId: string,
    f: { refundId: string; intentId: string; amount: number; status?: string },
  ) =>
    envelope(eventId, "refund.created", {
      id: f.refundId,
      object: "refund",
      amount: f.amount,
      currency: "usd",
      status: f.status ?? "succeeded",
      charge: `ch_${f.intentId.slice(3)}`,
      payment_intent: f.intentId,
    }),
  /** charge.updated setting the charge's balance transaction (asynchronous capture). */
  chargeBalanceTransactionSet: (
    eventId: string,
    f: { intentId: string; metadata?: Record<string, string> },
  ) => {
    const charge = {
      id: `ch_${f.intentId.slice(3)}`,
      object: "charge",
      currency: "usd",
      payment_intent: f.intentId,
      balance_transaction: `txn_${f.intentId.slice(3)}`,
      metadata: f.metadata ?? { switchyard_payment_id: "pay_1", switchyard_attempt_id: "att_1" },
    };
    const event = envelope(eventId, "charge.updated", charge);
    return { ...event, data: { ...event.data, previous_attributes: { balance_transaction: null } } };
  },
  chargeRefunded: (
    eventId: string,
    f: { intentId: string; refunds: { refundId: string; amount: number }[] },
  ) =>
    envelope(eventId, "charge.refunded", {
      id: `ch_${f.intentId.slice(3)}`,
      object: "charge",
      currency: "usd",
      payment_intent: f.intentId,
      refunded: true,
      refunds: {
        object: "list",
        data: f.refunds.map((r) => ({
          id: r.refundId,
          object: "refund",
          amount: r.amount,
          currency: "usd",
          status: "succeeded",
          charge: `ch_${f.intentId.slice(3)}`,
          payment_intent: f.intentId,
        })),
      },
    }),
  transferCreated: (
    eventId: string,
    f: { transferId: string; amount: number; attemptId?: string; paymentId?: string },
  ) =>
    envelope(eventId, "transfer.created", {
      id: f.transferId,
      object: "transfer",
      amount: f.amount,
      currency: "usd",
      destination: "acct_merchant",
      metadata:
        f.attemptId === undefined
          ? {}
          : { switchyard_attempt_id: f.attemptId, switchyard_payment_id: f.paymentId ?? "p" },
    }),
  /**
   * The transfer `transferId` of a payout attempt, as transfer.reversed (or transfer.updated, whose previous attributes
   * say `amount_reversed` was `before`) carries it: what was reversed of it in all, and its reversals, newest first as
   * Stripe lists them.
   */
  transferReversed: (
    eventId: string,
    f: {
      transferId: string;
      amount: number;
      attemptId: string;
      paymentId: string;
      reversals: { reversalId: string; amount: number }[];
      updated?: { before: number };
    },
  ) => {
    const reversed = f.reversals.reduce((sum, reversal) => sum + reversal.amount, 0);
    const transfer = envelope(eventId, f.updated === undefined ? "transfer.reversed" : "transfer.updated", {
      id: f.transferId,
      object: "transfer",
      amount: f.amount,
      amount_reversed: reversed,
      currency: "usd",
      destination: "acct_1Merchant",
      metadata: { switchyard_attempt_id: f.attemptId, switchyard_payment_id: f.paymentId },
      reversed: reversed === f.amount,
      reversals: {
        object: "list",
        data: f.reversals.map((reversal) => ({
          id: reversal.reversalId,
          object: "transfer_reversal",
          amount: reversal.amount,
          currency: "usd",
          transfer: f.transferId,
          metadata: {},
        })),
        has_more: false,
        url: `/v1/transfers/${f.transferId}/reversals`,
      },
    });
    if (f.updated === undefined) return transfer;
    return {
      ...transfer,
      data: { ...transfer.data, previous_attributes: { amount_reversed: f.updated.before } },
    };
  },
  payoutFailed: (eventId: string, f: { payoutId: string; amount: number; account: string }) =>
    envelope(
      eventId,
      "payout.failed",
      {
        id: f.payoutId,
        object: "payout",
        amount: f.amount,
        currency: "usd",
        failure_code: "account_closed",
        failure_message: "The bank account has been closed.",
        metadata: {},
      },
      f.account,
    ),
  other: (eventId: string, type: string) => envelope(eventId, type, { id: "obj_1", object: "thing" }),
};

/** The raw body as Stripe sends it and its Stripe-Signature header, made by the stripe package's test helper. */
export function signEvent(
  event: unknown,
  params: { secret: string; timestamp: number; payload?: string },
): { payload: string; header: string } {
  const payload = params.payload ?? JSON.stringify(event);
  const header = signer.webhooks.generateTestHeaderString({
    payload,
    secret: params.secret,
    timestamp: params.timestamp,
  });
  return { payload, header };
}

/** The gateway's settings for the fiat rail against the suite's stripe-mock, its webhooks signed with `secret`. */
export function stripeMockEnv(secret: string): Record<string, string> {
  return {
    LOG_LEVEL: "silent",
    STRIPE_SECRET_KEY: "sk_test_123",
    STRIPE_WEBHOOK_SECRETS: secret,
    STRIPE_API_HOST: "127.0.0.1",
    STRIPE_API_PORT: String(inject("stripeMockPort")),
    STRIPE_API_PROTOCOL: "http",
    FIAT_LIQUIDITY: "not_limited",
  };
}

/**
 * Two gateway processes with the fiat rail against the suite's stripe-mock, on one PostgreSQL database of their own
 * (`name`), their webhooks signed with `secret`.
 */
export async function twoStripeMockGateways(secret: string, name: string): Promise<[App, App]> {
  const env = {
    ...stripeMockEnv(secret),
    DATABASE_URL: await createTestDatabase(inject("postgresUrl"), name),
  };
  return [await createApp(testConfig(env)), await createApp(testConfig(env))];
}

/** `event` delivered to the app's Stripe webhook route, signed with `secret` at `timestamp` (now by default). */
export async function deliverStripeEvent(
  app: App,
  event: unknown,
  options: { secret: string; timestamp?: number },
): Promise<{ status: number; body: any }> {
  const { payload, header } = signEvent(event, {
    secret: options.secret,
    timestamp: options.timestamp ?? Math.floor(Date.now() / 1000),
  });
  const response = await app.server.inject({
    method: "POST",
    url: "/v1/webhooks/stripe",
    headers: { "content-type": "application/json", "stripe-signature": header },
    payload,
  });
  return { status: response.statusCode, body: response.json() };
}
