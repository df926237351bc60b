import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createSentSettles, type HtlcEvent } from "./htlc-settles.ts";

const preimage = Buffer.alloc(32, 7);
const paymentHash = createHash("sha256").update(preimage).digest("hex");

const htlc = (type: string, htlcId: string, event: Partial<HtlcEvent>): HtlcEvent => ({
  event_type: type,
  outgoing_channel_id: "123456789",
  outgoing_htlc_id: htlcId,
  ...event,
});
const forward = (htlcId: string, amountMsat: string, type = "SEND") =>
  htlc(type, htlcId, { event: "forward_event", forward_event: { info: { outgoing_amt_msat: amountMsat } } });
const settle = (htlcId: string, image: Uint8Array = preimage, type = "SEND") =>
  htlc(type, htlcId, { event: "settle_event", settle_event: { preimage: image } });

describe("settles of sent HTLCs", () => {
  it("pairs a settle with its HTLC's forward event: payment hash, preimage and what left the node", () => {
    const settles = createSentSettles(10);
    expect(settles.take(forward("4", "1001000"))).toBeNull();
    expect(settles.take(settle("4"))).toEqual({
      paymentHash,
      preimage: preimage.toString("hex"),
      sentMsat: 1_001_000n,
    });
    // Taken once: a second settle of the same HTLC finds no amount.
    expect(settles.take(settle("4"))).toBeNull();
  });

  it("gives nothing for a settle whose forward it did not see, or another channel's HTLC of the same id", () => {
    const settles = createSentSettles(10);
    expect(settles.take(settle("9"))).toBeNull();
    settles.take(forward("5", "2000"));
    expect(settles.take({ ...settle("5"), outgoing_channel_id: "987" })).toBeNull();
    expect(settles.take(settle("5"))?.sentMsat).toBe(2_000n);
  });

  it("ignores HTLCs it did not send: forwards and receives", () => {
    const settles = createSentSettles(10);
    settles.take(forward("1", "5000", "FORWARD"));
    expect(settles.take(settle("1", preimage, "FORWARD"))).toBeNull();
    expect(settles.take(settle("1", preimage, "RECEIVE"))).toBeNull();
    expect(settles.take(settle("1"))).toBeNull();
  });

  it("forgets a failed HTLC, so its id's next settle is not paired with the old amount", () => {
    const settles = createSentSettles(10);
    settles.take(forward("2", "3000"));
    settles.take(htlc("SEND", "2", { event: "forward_fail_event" }));
    expect(settles.take(settle("2"))).toBeNull();
    settles.take(forward("3", "3000"));
    settles.take(htlc("SEND", "3", { event: "link_fail_event" }));
    expect(settles.take(settle("3"))).toBeNull();
  });

  it("refuses a preimage that is not 32 bytes and an amount that is not a whole number", () => {
    const settles = createSentSettles(10);
    settles.take(forward("6", "1000"));
    expect(settles.take(settle("6", Buffer.alloc(31, 1)))).toBeNull();
    settles.take(forward("7", "-5"));
    settles.take(forward("8", "1.5"));
    expect(settles.take(settle("7"))).toBeNull();
    expect(settles.take(settle("8"))).toBeNull();
  });

  it("remembers at most entriesMax HTLCs, forgetting the oldest, and nothing after clear", () => {
    const settles = createSentSettles(2);
    settles.take(forward("10", "1000"));
    settles.take(forward("11", "1100"));
    settles.take(forward("12", "1200"));
    expect(settles.take(settle("10"))).toBeNull();
    expect(settles.take(settle("11"))?.sentMsat).toBe(1_100n);
    settles.take(forward("13", "1300"));
    settles.clear();
    expect(settles.take(settle("12"))).toBeNull();
    expect(settles.take(settle("13"))).toBeNull();
  });
});
