// Stripe keeps its fees out of the platform's balance: a card payment's processing fee, a dispute's fee, and that fee
// given back when the dispute is won. The ledger books each, once, from the fiat rail's fee account into its clearing
// account, so that the clearing account says what Stripe holds. Before, only the money was booked: a dispute of 25.00
// with its 15.00 fee left the clearing account 15.00 above Stripe. Two gateway processes on one PostgreSQL database,
// against stripe-mock, the webhooks through the real route; the fees come in the dispute's own balance transactions,
// as Stripe sends them.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { assets } from "../../core/index.ts";
import { createAccount } from "../../gateway/accounts/index.ts";
import { type App, createApp } from "../../gateway/app.ts";
import { derivedLedgerId } from "../../gateway/ids/index.ts";
import { transferCodes } from "../../gateway/ledger/index.ts";
import { railFeeLedgerId } from "../../gateway/settlement/rail-fees.ts";
import { apiClient } from "../support/api.ts";
import { testConfig } from "../support/config.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { deliverStripeEvent, stripeEvents, stripeMockEnv } from "./stripe-events.ts";

const secret = "whsec_psp_fees_test";
let a: App;
let b: App;

beforeAll(async () => {
  const env = {
    ...stripeMockEnv(secret),
    DATABASE_URL: await createTestDatabase(inject("postgresUrl"), "fiat_psp_fees"),
  };
  a = await createApp(testConfig(env));
  b = await createApp(testConfig(env));
});
afterAll(async () => {
  await a?.close();
  await b?.close();
});

const deliver = async (app: App, event: unknown) => {
  const answer = await deliverStripeEvent(app, event, { secret });
  expect(answer.status, JSON.stringify(answer.body)).toBe(200);
};

/** The fiat rail's USD account of `kind`: debits less credits (both accounts are debit-normal). */
async function railBalance(kind: "clearing" | "fee"): Promise<bigint> {
  const [row] = await a.db.query<{ ledger_account_id: bigint }>(
    "SELECT ledger_account_id FROM accounts WHERE kind = $1 AND rail = 'fiat' AND asset = 'USD'",
    [kind],
  );
  if (row === undefined) return 0n; // not opened yet: nothing booked on it
  const [account] = await a.ledger.lookupAccounts([BigInt(row.ledger_account_id)]);
  return account!.debitsPosted - account!.creditsPosted;
}

/** A card invoice of 25.00 into an account of its own, paid (Stripe's event delivered to `app`). */
async function paidInvoice(name: string, app: App = a) {
  const accountId = `acct_${name}`;
  await createAccount(
    { sql: a.db, ledger: a.ledger },
    { tenantId: a.demo!.tenantId, kind: "customer", asset: assets.USD, name, id: accountId },
  );
  const created = await apiClient(a)("POST", "/v1/invoices", {
    account: accountId,
    amount: "25.00",
    asset: "USD",
    description: name,
  });
  expect(created.status).toBe(201);
  const invoiceId: string = created.body.id;
  const intentId: string = created.body.instructions.payment_intent;
  const paid = stripeEvents.intentSucceeded(`evt_${name}_paid`, {
    intentId,
    amount: 2500,
    paymentId: invoiceId,
    attemptId: "invoice",
    reference: invoiceId,
  });
  return { invoiceId, intentId, pay: () => deliver(app, paid) };
}

describe("Stripe's fees", () => {
  it("books a dispute's fee once, and its return when the dispute is won: the clearing account follows Stripe", async () => {
    const [clearingBefore, feesBefore] = [await railBalance("clearing"), await railBalance("fee")];
    const { invoiceId, intentId, pay } = await paidInvoice("fee_dispute");
    await pay();
    // stripe-mock's balance transaction for the charge says fee 0: the payment costs nothing here.
    expect(await railBalance("clearing")).toBe(clearingBefore + 2500n);
    expect(await railBalance("fee")).toBe(feesBefore);

    // Stripe takes 25.00 and its 15.00 fee. Delivered to both processes, and again under another event id.
    const withdrawn = { id: "txn_fee_dispute_withdrawn", amount: -2500, fee: 1500 };
    const opened = { disputeId: "dp_fee", intentId, amount: 2500, fees: [withdrawn] };
    await Promise.all([
      deliver(a, stripeEvents.disputeCreated("evt_fee_dispute", opened)),
      deliver(b, stripeEvents.disputeCreated("evt_fee_dispute", opened)),
    ]);
    await deliver(b, stripeEvents.disputeCreated("evt_fee_dispute_again", opened));
    expect(await railBalance("clearing")).toBe(clearingBefore - 1500n);
    expect(await railBalance("fee")).toBe(feesBefore + 1500n);
    const [booked] = await a.ledger.lookupTransfers([railFeeLedgerId("fiat", withdrawn.id)]);
    expect(booked).toMatchObject({ amount: 1500n, code: transferCodes.payments.feePaid });

    // Won: Stripe gives back the 25.00 and the fee, and lists the first balance transaction again.
    const reinstated = { id: "txn_fee_dispute_reinstated", amount: 2500, fee: -1500 };
    const won = { ...opened, fees: [withdrawn, reinstated] };
    await deliver(b, stripeEvents.disputeFundsReinstated("evt_fee_dispute_won", won));
    await deliver(a, stripeEvents.disputeFundsReinstated("evt_fee_dispute_won", won));
    expect(await railBalance("clearing")).toBe(clearingBefore + 2500n);
    expect(await railBalance("fee")).toBe(feesBefore);
    // The fee's transfers name the invoice, as its receipt does.
    const transfers = await a.ledger.lookupTransfers([
      railFeeLedgerId("fiat", withdrawn.id),
      railFeeLedgerId("fiat", reinstated.id),
    ]);
    expect(transfers.map((transfer) => transfer.amount)).toEqual([1500n, 1500n]);
    const invoiceLink = derivedLedgerId(invoiceId, "invoice");
    expect(transfers.map((transfer) => transfer.userData128)).toEqual([invoiceLink, invoiceLink]);
  });

  it("keeps a dispute's fee while the dispute waits for its payment, and books it with the dispute", async () => {
    const [clearingBefore, feesBefore] = [await railBalance("clearing"), await railBalance("fee")];
    const { intentId, pay } = await paidInvoice("fee_dispute_first", b);
    // Stripe delivers the dispute before the payment: it is parked (no money of it is credited yet).
    const opened = {
      disputeId: "dp_fee_first",
      intentId,
      amount: 2500,
      fees: [{ id: "txn_fee_first_withdrawn", amount: -2500, fee: 1500 }],
    };
    await deliver(a, stripeEvents.disputeCreated("evt_fee_first_dispute", opened));
    expect(await railBalance("clearing")).toBe(clearingBefore);
    expect(await railBalance("fee")).toBe(feesBefore);
    await pay();
    expect(await railBalance("clearing")).toBe(clearingBefore - 1500n);
    expect(await railBalance("fee")).toBe(feesBefore + 1500n);
  });

  it("books nothing for a dispute of a payment that is not ours", async () => {
    const [clearingBefore, feesBefore] = [await railBalance("clearing"), await railBalance("fee")];
    const { intentId } = await paidInvoice("fee_dispute_stranger");
    // Another PaymentIntent (not the one offered for the invoice) naming it: its money and its dispute are not ours.
    const stranger = stripeEvents.intentSucceeded("evt_fee_stranger_paid", {
      intentId: `${intentId}_other`,
      amount: 2500,
      paymentId: "pay_stranger",
      attemptId: "invoice",
      reference: "inv_unknown_to_switchyard",
    });
    await deliver(a, stranger);
    await deliver(
      a,
      stripeEvents.disputeCreated("evt_fee_stranger_dispute", {
        disputeId: "dp_fee_stranger",
        intentId: `${intentId}_other`,
        amount: 2500,
        fees: [{ id: "txn_fee_stranger", amount: -2500, fee: 1500 }],
      }),
    );
    expect(await railBalance("clearing")).toBe(clearingBefore);
    expect(await railBalance("fee")).toBe(feesBefore);
  });
});
