import { describe, expect, it } from "vitest";
import { type FiatEvent, parseStripeEvent, toRailEvent } from "./events.ts";

const envelope = {
  id: "evt_1",
  object: "event",
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
    expect(await toRailEvent(received, noTransfer)).toEqual({
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
    expect(await toRailEvent(failed, noTransfer)).toEqual({
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
    const railEvent = await toRailEvent(succeeded, async (transferId) => {
      asked.push(transferId);
      return 7n;
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
    expect(await toRailEvent(payoutFailed, noTransfer)).toBeNull();
  });
});
