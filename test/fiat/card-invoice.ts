// A card invoice of 25.00 USD into a customer account of its own, through a gateway against stripe-mock, and Stripe's
// webhook that pays it. Each test makes the invoice it works on with these, rather than lean on one an earlier test
// left: the suites pass in any order (vitest --sequence.shuffle).
import { expect } from "vitest";
import { assets } from "../../core/index.ts";
import { createAccount } from "../../gateway/accounts/index.ts";
import type { App } from "../../gateway/app.ts";
import { type ApiResponse, apiClient } from "../support/api.ts";
import { deliverStripeEvent, type IntentFields, stripeEvents } from "./stripe-events.ts";

export type CardInvoice = {
  name: string;
  accountId: string;
  invoiceId: string;
  intentId: string;
  /** The answer to POST /v1/invoices. */
  created: ApiResponse;
  /** The invoice's PaymentIntent as Stripe's webhook events describe it. */
  intent: IntentFields;
};

/** A customer account `acct_<name>` on `app` and an open card invoice of 25.00 USD into it. */
export async function openCardInvoice(app: App, name: string): Promise<CardInvoice> {
  const accountId = `acct_${name}`;
  await createAccount(
    { sql: app.db, ledger: app.ledger },
    { tenantId: app.demo!.tenantId, kind: "customer", asset: assets.USD, name, id: accountId },
  );
  const created = await apiClient(app)("POST", "/v1/invoices", {
    account: accountId,
    amount: "25.00",
    asset: "USD",
    description: name,
  });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  const invoiceId: string = created.body.id;
  const intentId: string = created.body.instructions.payment_intent;
  const intent = { intentId, amount: 2500, paymentId: invoiceId, attemptId: "invoice", reference: invoiceId };
  return { name, accountId, invoiceId, intentId, created, intent };
}

/** Stripe's payment_intent.succeeded for the whole invoice (event `evt_<name>_paid`), delivered to `app`. */
export async function payCardInvoice(app: App, invoice: CardInvoice, secret: string): Promise<void> {
  const paid = stripeEvents.intentSucceeded(`evt_${invoice.name}_paid`, invoice.intent);
  const answer = await deliverStripeEvent(app, paid, { secret });
  expect(answer.status, JSON.stringify(answer.body)).toBe(200);
}

/** openCardInvoice, paid by Stripe's webhook (signed with `secret`). */
export async function paidCardInvoice(app: App, name: string, secret: string): Promise<CardInvoice> {
  const invoice = await openCardInvoice(app, name);
  await payCardInvoice(app, invoice, secret);
  return invoice;
}
