import { describe, expect, it } from "vitest";
import type { PayoutReversal } from "../../core/index.ts";
import {
  type FiatEvent,
  interpretStripeEvent,
  parseStripeEvent,
  platformPayoutEventReference,
  platformPayoutHandReference,
  type StripeLookups,
  toRailEvent,
} from "./events.ts";
import type { FiatPspIds } from "./store.ts";

const envelope = {
  id: "evt_1",
  object: "event" as const,
  type: "payment_intent.succeeded",
  created: 1_800_000_000,
  livemode: false,
  data: { object: { id: "pi_1" } },
};

/** For events that name no transfer's reversals beyond those they list. */
const noReversals = async (): Promise<PayoutReversal[]> => {
  throw new Error("no transfer's reversals are asked for this event");
};
const noPayoutFees = async (): Promise<{ fee: bigint; failureFee: bigint }> => {
  throw new Error("no payout's fees are asked for this event");
};
const noRefundFees = async (): Promise<{ fee: bigint; failureFee: bigint }> => {
  throw new Error("no refund's fees are asked for this event");
};

/** Money in of `amount` for `reference` by PaymentIntent `intent`, as the receiver hands it over. */
const receivedOf = (reference: string, intent: string, amount: bigint): FiatEvent => ({
  kind: "received",
  reference,
  paymentId: "pay_1",
  attemptId: "att_1",
  amount,
  evidence: { rail: "fiat", pspId: intent },
  pspIds: { paymentIntent: intent },
});

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
  const noFees: StripeLookups = {
    transferFee: noTransfer,
    chargeFee: async () => {
      throw new Error("no charge's fee is asked for this event");
    },
    transferReversals: noReversals,
    payoutFees: noPayoutFees,
    refundFees: noRefundFees,
  };

  it("gives the RailEvent inside received and attempt_failed", async () => {
    const received = receivedOf("cust_1", "pi_1", 500n);
    expect(await toRailEvent(received, { ...noFees, chargeFee: freeCharge })).toEqual({
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
    const received = receivedOf("inv_1", "pi_9", 1000n);
    const railEvent = await toRailEvent(received, {
      ...noFees,
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

  it("fails money in when Stripe does not answer for its fee: the event is not applied, and comes again", async () => {
    const received = receivedOf("inv_1", "pi_9", 1000n);
    await expect(
      toRailEvent(received, {
        ...noFees,
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
        { id: "txn_w", object: "balance_transaction", amount: -1000, currency: "usd", fee: 1500 },
      ]),
      { currency: "usd" },
    );
    expect(opened).toMatchObject({
      kind: "reversal",
      reversal: { key: "dispute:dp_1", amount: 1000n, fees: [{ id: "txn_w", amount: 1500n }] },
    });
    const won = interpretStripeEvent(
      dispute("charge.dispute.funds_reinstated", [
        { id: "txn_w", amount: -1000, currency: "usd", fee: 1500 },
        { id: "txn_r", amount: 1000, currency: "usd", fee: -1500 },
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

  it("has none when the dispute lists no balance transaction", () => {
    const opened = interpretStripeEvent(dispute("charge.dispute.created", []), { currency: "usd" });
    expect(opened.kind).toBe("reversal");
    expect(opened).not.toHaveProperty("reversal.fees");
  });

  it("leaves out an entry that is no balance transaction, or in another currency, and keeps the reversal", () => {
    const opened = interpretStripeEvent(
      dispute("charge.dispute.created", [
        { id: "txn_half", currency: "usd", fee: 15.5 },
        "txn_unexpanded",
        { id: "txn_eur", currency: "eur", fee: 1500 },
        { id: "txn_w", currency: "USD", fee: 1500 },
      ]),
      { currency: "usd" },
    );
    expect(opened).toMatchObject({
      kind: "reversal",
      reversal: { amount: 1000n, fees: [{ id: "txn_w", amount: 1500n }] },
    });
  });

  it("takes nothing for an inquiry until its funds are withdrawn (it was a reversal that nothing gave back)", () => {
    const inquiry = (type: string, status: string, balanceTransactions: unknown[]) => {
      const event = dispute(type, balanceTransactions);
      return { ...event, data: { object: { ...event.data.object, status } } };
    };
    expect(
      interpretStripeEvent(inquiry("charge.dispute.created", "warning_needs_response", []), {
        currency: "usd",
      }),
    ).toEqual({ kind: "ignored", reason: "dispute_inquiry" });
    // Escalated: withdrawn then, as any dispute's reversal.
    expect(
      interpretStripeEvent(
        inquiry("charge.dispute.funds_withdrawn", "needs_response", [
          { id: "txn_w", currency: "usd", fee: 1500 },
        ]),
        { currency: "usd" },
      ),
    ).toMatchObject({ kind: "reversal", reversal: { key: "dispute:dp_1", amount: 1000n } });
    // A dispute that is no inquiry is taken when it opens, as before.
    expect(
      interpretStripeEvent(inquiry("charge.dispute.created", "needs_response", []), { currency: "usd" }).kind,
    ).toBe("reversal");
  });

  it("reads funds_withdrawn as the dispute's reversal again, with the withdrawal's fee", () => {
    const withdrawn = interpretStripeEvent(
      dispute("charge.dispute.funds_withdrawn", [{ id: "txn_w", currency: "usd", fee: 1500 }]),
      { currency: "usd" },
    );
    expect(withdrawn).toMatchObject({
      kind: "reversal",
      reversal: { key: "dispute:dp_1", amount: 1000n, fees: [{ id: "txn_w", amount: 1500n }] },
    });
  });
});

describe("a charge's balance transaction set later (asynchronous capture)", () => {
  const updated = (previous: Record<string, unknown> | undefined, object: Record<string, unknown>) => ({
    ...envelope,
    id: "evt_charge_updated",
    type: "charge.updated",
    data: {
      object: {
        id: "ch_1",
        object: "charge",
        currency: "usd",
        payment_intent: "pi_1",
        balance_transaction: "txn_1",
        metadata: { switchyard_payment_id: "inv_1" },
        ...object,
      },
      ...(previous === undefined ? {} : { previous_attributes: previous }),
    },
  });

  it("is the fee of the charge's PaymentIntent when the update set the balance transaction", () => {
    expect(interpretStripeEvent(updated({ balance_transaction: null }, {}), { currency: "usd" })).toEqual({
      kind: "charge_fee",
      intentId: "pi_1",
      pspIds: { event: "evt_charge_updated", paymentIntent: "pi_1", charge: "ch_1" },
    });
  });

  it("is nothing when the update changed something else, or left no balance transaction", () => {
    for (const event of [
      updated(undefined, {}),
      updated({ description: "old" }, {}),
      updated({ balance_transaction: null }, { balance_transaction: null }),
    ])
      expect(interpretStripeEvent(event, { currency: "usd" })).toEqual({
        kind: "ignored",
        reason: "fee_unchanged",
      });
  });

  const fee: FiatEvent = {
    kind: "fee",
    reference: "inv_1",
    paymentId: "inv_1",
    attemptId: "invoice",
    intentId: "pi_1",
    evidence: { rail: "fiat", pspId: "pi_1" },
    pspIds: { paymentIntent: "pi_1" },
  };
  const transferFee = async (): Promise<bigint> => 0n;

  it("asks Stripe for the fee when delivered, and fails while Stripe shows no balance transaction", async () => {
    expect(
      await toRailEvent(fee, {
        transferFee,
        chargeFee: async () => ({ id: "txn_1", amount: 62n }),
        transferReversals: noReversals,
        payoutFees: noPayoutFees,
        refundFees: noRefundFees,
      }),
    ).toEqual({
      kind: "fee",
      reference: "inv_1",
      evidence: { rail: "fiat", pspId: "pi_1" },
      fees: [{ id: "txn_1", amount: 62n }],
    });
    await expect(
      toRailEvent(fee, {
        transferFee,
        chargeFee: async () => null,
        transferReversals: noReversals,
        payoutFees: noPayoutFees,
        refundFees: noRefundFees,
      }),
    ).rejects.toThrow("no balance transaction yet");
  });

  it("credits money in at once when its charge has no balance transaction yet, without a fee", async () => {
    const received = receivedOf("inv_1", "pi_1", 1000n);
    expect(
      await toRailEvent(received, {
        transferFee,
        chargeFee: async () => null,
        transferReversals: noReversals,
        payoutFees: noPayoutFees,
        refundFees: noRefundFees,
      }),
    ).toEqual({
      kind: "received",
      reference: "inv_1",
      amount: 1000n,
      evidence: { rail: "fiat", pspId: "pi_1" },
    });
  });
});

describe("a transfer's reversals", () => {
  /** A transfer event of attempt att_r, with `fields` on its Transfer object. */
  const transferEvent = (
    type: string,
    fields: Record<string, unknown>,
    previous?: Record<string, unknown>,
  ) => ({
    ...envelope,
    id: `evt_${type}`,
    type,
    data: {
      object: {
        id: "tr_r",
        object: "transfer",
        amount: 1_000,
        currency: "usd",
        destination: "acct_1",
        metadata: { switchyard_attempt_id: "att_r", switchyard_payment_id: "pay_r" },
        ...fields,
      },
      ...(previous === undefined ? {} : { previous_attributes: previous }),
    },
  });
  const reversal = (id: string, amount: number, extra: Record<string, unknown> = {}) => ({
    id,
    object: "transfer_reversal",
    amount,
    currency: "usd",
    transfer: "tr_r",
    ...extra,
  });

  it("names each reversal the transfer lists once, leaving out another transfer's and another currency's", () => {
    const event = transferEvent("transfer.reversed", {
      amount_reversed: 400,
      reversals: {
        object: "list",
        data: [
          reversal("trr_2", 300),
          reversal("trr_1", 100),
          reversal("trr_1", 100),
          reversal("trr_other", 50, { transfer: "tr_other" }),
          reversal("trr_eur", 50, { currency: "eur" }),
          { id: "trr_bad", object: "transfer_reversal", amount: "ten" },
        ],
        has_more: false,
      },
    });
    expect(interpretStripeEvent(event, { currency: "usd" })).toEqual({
      kind: "stateless",
      event: {
        kind: "attempt_succeeded",
        attemptId: "att_r",
        evidence: { rail: "fiat", pspId: "tr_r" },
        transferId: "tr_r",
        pspIds: { event: "evt_transfer.reversed", transfer: "tr_r" },
        reversed: {
          listed: [
            { key: "trr_2", amount: 300n },
            { key: "trr_1", amount: 100n },
          ],
          amount: 400n,
        },
      },
    });
  });

  it("reads a transfer.updated only when it changed what was reversed", () => {
    const fields = { amount_reversed: 100, reversals: { data: [reversal("trr_1", 100)] } };
    expect(
      interpretStripeEvent(transferEvent("transfer.updated", fields, { description: null }), {
        currency: "usd",
      }),
    ).toEqual({ kind: "ignored", reason: "reversal_unchanged" });
    expect(
      interpretStripeEvent(transferEvent("transfer.updated", fields, { amount_reversed: 0 }), {
        currency: "usd",
      }),
    ).toMatchObject({ kind: "stateless", event: { reversed: { listed: [{ key: "trr_1", amount: 100n }] } } });
  });

  it("asks Stripe for the reversals an event did not list (it lists 10 at most), each once", async () => {
    const asked: string[] = [];
    const succeeded: FiatEvent = {
      kind: "attempt_succeeded",
      attemptId: "att_r",
      evidence: { rail: "fiat", pspId: "tr_r" },
      transferId: "tr_r",
      pspIds: { transfer: "tr_r" },
      reversed: { listed: [{ key: "trr_11", amount: 100n }], amount: 300n },
    };
    const lookups: StripeLookups = {
      transferFee: async () => 0n,
      chargeFee: async () => null,
      transferReversals: async (transferId) => {
        asked.push(transferId);
        return [
          { key: "trr_11", amount: 100n },
          { key: "trr_1", amount: 200n },
        ];
      },
      payoutFees: noPayoutFees,
      refundFees: noRefundFees,
    };
    expect(await toRailEvent(succeeded, lookups)).toEqual({
      kind: "attempt_succeeded",
      attemptId: "att_r",
      evidence: { rail: "fiat", pspId: "tr_r" },
      fee: 0n,
      reversals: [
        { key: "trr_11", amount: 100n },
        { key: "trr_1", amount: 200n },
      ],
    });
    expect(asked).toEqual(["tr_r"]);
    // Listed whole: Stripe is not asked.
    const whole = { ...succeeded, reversed: { listed: [{ key: "trr_11", amount: 300n }], amount: 300n } };
    expect(await toRailEvent(whole, { ...lookups, transferReversals: noReversals })).toMatchObject({
      reversals: [{ key: "trr_11", amount: 300n }],
    });
  });
});

describe("a refund's fees", () => {
  const taken = (pspIds: FiatPspIds): FiatEvent => ({
    kind: "reversed",
    key: pspIds.refund === undefined ? "dispute:dp_1" : `refund:${pspIds.refund}`,
    reason: pspIds.refund === undefined ? "dispute" : "refund",
    reference: "inv_1",
    paymentId: "inv_1",
    attemptId: "invoice",
    amount: 1000n,
    evidence: { rail: "fiat", pspId: pspIds.refund ?? "dp_1" },
    pspIds,
  });
  const lookups = (asked: string[]): StripeLookups => ({
    transferFee: async () => 0n,
    chargeFee: async () => null,
    transferReversals: noReversals,
    payoutFees: noPayoutFees,
    refundFees: async (refundId) => {
      asked.push(refundId);
      return { fee: 30n, failureFee: -30n };
    },
  });

  it("books what its balance transaction took with its reversal, and with its undoing what its failure's gave back", async () => {
    const asked: string[] = [];
    expect(await toRailEvent(taken({ refund: "re_1", paymentIntent: "pi_1" }), lookups(asked))).toMatchObject(
      {
        kind: "reversed",
        fees: [{ id: "stripe_refund_fee:re_1", amount: 30n }],
      },
    );
    const undone: FiatEvent = {
      kind: "reinstated",
      key: "refund:re_1",
      reference: "inv_1",
      paymentId: "inv_1",
      attemptId: "invoice",
      evidence: { rail: "fiat", pspId: "re_1" },
      pspIds: { refund: "re_1", paymentIntent: "pi_1" },
    };
    expect(await toRailEvent(undone, lookups(asked))).toMatchObject({
      kind: "reinstated",
      fees: [
        { id: "stripe_refund_fee:re_1", amount: 30n },
        { id: "stripe_refund_failure_fee:re_1", amount: -30n },
      ],
    });
    // A dispute's fees are in its event: no refund's is asked.
    expect(
      await toRailEvent(taken({ dispute: "dp_1", paymentIntent: "pi_1" }), lookups(asked)),
    ).not.toHaveProperty("fees");
    expect(asked).toEqual(["re_1", "re_1"]);
  });

  it("carries none when the refund's balance transaction took nothing", async () => {
    const free = { ...lookups([]), refundFees: async () => ({ fee: 0n, failureFee: 0n }) };
    expect(await toRailEvent(taken({ refund: "re_free" }), free)).not.toHaveProperty("fees");
  });
});

describe("a payout booked by hand", () => {
  it("is looked for under the payout's own id for its taking, and for nothing else", () => {
    expect(platformPayoutHandReference("stripe_payout:po_1")).toBe("po_1");
    expect(platformPayoutHandReference("stripe_payout_returned:po_1")).toBeNull();
    expect(platformPayoutHandReference("stripe_payout_fee:po_1")).toBeNull();
    expect(platformPayoutHandReference("stripe_payout:")).toBeNull();
    expect(platformPayoutHandReference("po_1")).toBeNull();
  });

  it("under a payout's id is booked as the payout's taking, and under no other reference", () => {
    expect(platformPayoutEventReference("po_1")).toBe("stripe_payout:po_1");
    expect(platformPayoutHandReference(platformPayoutEventReference("po_1")!)).toBe("po_1");
    expect(platformPayoutEventReference("po_")).toBeNull();
    expect(platformPayoutEventReference(`po_${"x".repeat(98)}`)).toBeNull();
    expect(platformPayoutEventReference("stripe_payout:po_1")).toBeNull();
    expect(platformPayoutEventReference("tu_1")).toBeNull();
  });
});
