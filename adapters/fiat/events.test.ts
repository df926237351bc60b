import { describe, expect, it } from "vitest";
import {
  type FeeLookups,
  type FiatEvent,
  interpretStripeEvent,
  parseStripeEvent,
  toRailEvent,
} from "./events.ts";

const envelope = {
  id: "evt_1",
  object: "event" as const,
  type: "payment_intent.succeeded",
  created: 1_800_000_000,
  livemode: false,
  data: { object: { id: "pi_1" } },
};

describe("parseStripeEvent", () => {
  it("parses an event envelope from the raw body", () => {
    const parsed = parseStripeEvent(Buffer.from(JSON.stringify(envelope)));
    expect(parsed).toMatchObject({ ok: true, event: { id: "evt_1", type: "payment_intent.succeeded" } });
  });

  it.each([
    ["not JSON", "{"],
    ["not an object", "[]"],
    ["not an event", JSON.stringify({ ...envelope, object: "charge" })],
    ["no id", JSON.stringify({ ...envelope, id: undefined })],
    ["no data.object", JSON.stringify({ ...envelope, data: {} })],
    ["an id over 255 characters", JSON.stringify({ ...envelope, id: `evt_${"x".repeat(300)}` })],
  ])("refuses %s", (_name, body) => {
    expect(parseStripeEvent(Buffer.from(body))).toEqual({ ok: false, error: "payload_invalid" });
  });
});

describe("toRailEvent", () => {
  const noTransfer = async (): Promise<bigint> => {
    throw new Error("no transfer's fee is asked for this event");
  };
  /** Stripe's answer for a charge that cost nothing (stripe-mock's balance transactions say fee 0). */
  const freeCharge = async () => ({ id: "txn_free", amount: 0n });
  const noFees: FeeLookups = {
    transferFee: noTransfer,
    chargeFee: async () => {
      throw new Error("no charge's fee is asked for this event");
    },
  };

  it("gives the RailEvent inside received and attempt_failed", async () => {
    const received: FiatEvent = {
      kind: "received",
      reference: "cust_1",
      paymentId: "pay_1",
      attemptId: "att_1",
      amount: 500n,
      evidence: { rail: "fiat", pspId: "pi_1" },
      pspIds: { paymentIntent: "pi_1" },
    };
    expect(await toRailEvent(received, { transferFee: noTransfer, chargeFee: freeCharge })).toEqual({
      kind: "received",
      reference: "cust_1",
      amount: 500n,
      evidence: { rail: "fiat", pspId: "pi_1" },
    });
    const failed: FiatEvent = {
      kind: "attempt_failed",
      attemptId: "att_2",
      code: "rejected",
      message: "no",
      retryElsewhere: true,
      pspIds: {},
    };
    expect(await toRailEvent(failed, noFees)).toEqual({
      kind: "attempt_failed",
      attemptId: "att_2",
      code: "rejected",
      message: "no",
      retryElsewhere: true,
    });
  });

  it("books a transfer's success with the fee its balance transaction says, asked of Stripe", async () => {
    const asked: string[] = [];
    const succeeded: FiatEvent = {
      kind: "attempt_succeeded",
      attemptId: "att_3",
      evidence: { rail: "fiat", pspId: "tr_3" },
      transferId: "tr_3",
      pspIds: { transfer: "tr_3" },
    };
    const railEvent = await toRailEvent(succeeded, {
      ...noFees,
      transferFee: async (transferId) => {
        asked.push(transferId);
        return 7n;
      },
    });
    expect(railEvent).toEqual({
      kind: "attempt_succeeded",
      attemptId: "att_3",
      evidence: { rail: "fiat", pspId: "tr_3" },
      fee: 7n,
    });
    expect(asked).toEqual(["tr_3"]);
  });

  it("has none for the fiat-only kinds", async () => {
    const payoutFailed: FiatEvent = {
      kind: "payout_failed",
      account: "acct_1",
      amount: 1n,
      code: "account_closed",
      message: "closed",
      pspIds: { payout: "po_1" },
    };
    expect(await toRailEvent(payoutFailed, noFees)).toBeNull();
  });

  it("carries money in's processing fee, asked of Stripe by its PaymentIntent", async () => {
    const asked: string[] = [];
    const received: FiatEvent = {
      kind: "received",
      reference: "inv_1",
      paymentId: "pay_1",
      attemptId: "att_1",
      amount: 1000n,
      evidence: { rail: "fiat", pspId: "pi_9" },
      pspIds: { paymentIntent: "pi_9" },
    };
    const railEvent = await toRailEvent(received, {
      transferFee: noTransfer,
      chargeFee: async (intentId) => {
        asked.push(intentId);
        return { id: "txn_9", amount: 59n };
      },
    });
    expect(railEvent).toEqual({
      kind: "received",
      reference: "inv_1",
      amount: 1000n,
      evidence: { rail: "fiat", pspId: "pi_9" },
      fees: [{ id: "txn_9", amount: 59n }],
    });
    expect(asked).toEqual(["pi_9"]);
  });

  it("fails money in whose fee Stripe cannot say yet: the event is not applied, and comes again", async () => {
    const received: FiatEvent = {
      kind: "received",
      reference: "inv_1",
      paymentId: "pay_1",
      attemptId: "att_1",
      amount: 1000n,
      evidence: { rail: "fiat", pspId: "pi_9" },
      pspIds: { paymentIntent: "pi_9" },
    };
    await expect(
      toRailEvent(received, {
        transferFee: noTransfer,
        chargeFee: async () => {
          throw new Error("no balance transaction yet");
        },
      }),
    ).rejects.toThrow("no balance transaction yet");
  });
});

describe("a dispute's fees", () => {
  const dispute = (type: string, balanceTransactions: unknown[]) => ({
    ...envelope,
    id: `evt_${type}`,
    type,
    data: {
      object: {
        id: "dp_1",
        object: "dispute",
        amount: 1000,
        currency: "usd",
        charge: "ch_1",
        payment_intent: "pi_1",
        balance_transactions: balanceTransactions,
      },
    },
  });

  it("takes each of the dispute's balance transactions' fees, by id", () => {
    const opened = interpretStripeEvent(
      dispute("charge.dispute.created", [
        { id: "txn_w", object: "balance_transaction", amount: -1000, fee: 1500 },
      ]),
      { currency: "usd" },
    );
    expect(opened).toMatchObject({
      kind: "reversal",
      reversal: { key: "dispute:dp_1", amount: 1000n, fees: [{ id: "txn_w", amount: 1500n }] },
    });
    const won = interpretStripeEvent(
      dispute("charge.dispute.funds_reinstated", [
        { id: "txn_w", amount: -1000, fee: 1500 },
        { id: "txn_r", amount: 1000, fee: -1500 },
      ]),
      { currency: "usd" },
    );
    expect(won).toMatchObject({
      kind: "withdrawal",
      key: "dispute:dp_1",
      fees: [
        { id: "txn_w", amount: 1500n },
        { id: "txn_r", amount: -1500n },
      ],
    });
  });

  it("has none when the dispute lists no balance transaction, and refuses a fee that is not a whole number", () => {
    const opened = interpretStripeEvent(dispute("charge.dispute.created", []), { currency: "usd" });
    expect(opened.kind).toBe("reversal");
    expect(opened).not.toHaveProperty("reversal.fees");
    expect(
      interpretStripeEvent(dispute("charge.dispute.created", [{ id: "txn_w", fee: 15.5 }]), {
        currency: "usd",
      }),
    ).toEqual({ kind: "ignored", reason: "object_invalid" });
  });
});
