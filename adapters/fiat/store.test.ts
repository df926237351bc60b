// The in-memory webhook store's kept fees, as test/fiat/sql-store.test.ts checks the SQL store's: kept once, taken once
// a try with the wait doubling up to an hour, forgotten only as read, and given up after a week.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  createMemoryStripeWebhookStore,
  type ParkedFee,
  parkedFeeKeptMsMax,
  parkedFeeRetryMsMax,
  parkedFeeRetryMsMin,
} from "./store.ts";

const refund = {
  rail: "fiat",
  kind: "refund",
  objectId: "re_kept",
  failure: false,
  invoice: "inv_kept",
  paymentIntent: "pi_kept",
} as const satisfies ParkedFee;
const payout = {
  rail: "fiat",
  kind: "payout",
  objectId: "po_kept",
  failure: true,
  movements: [
    {
      direction: "out",
      amount: 1_300n,
      reference: "stripe_payout:po_kept",
      description: "Stripe payout po_kept",
    },
  ],
} as const satisfies ParkedFee;

let nowMs = 1_800_000_000_000;
const elapse = (ms: number) => {
  nowMs += ms;
  vi.setSystemTime(nowMs);
};

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["Date"] });
  vi.setSystemTime(nowMs);
});
afterEach(() => {
  vi.useRealTimers();
});

describe("memory webhook store: the fees Stripe refused to tell", () => {
  it("keeps each once, takes one due for one try at a time, its wait doubling up to an hour, and forgets it only as read", async () => {
    const store = createMemoryStripeWebhookStore();
    expect(await store.parkFee(refund)).toEqual({ parked: true });
    // Its event delivered again, a refund undone since: its failure's fee is asked too, and it is said kept once.
    expect(await store.parkFee({ ...refund, failure: true })).toEqual({ parked: false });
    expect(await store.parkFee(payout)).toEqual({ parked: true });
    expect(await store.parkFee({ ...payout, rail: "fiat_eu" })).toEqual({ parked: true });
    // The first try is a minute on.
    elapse(parkedFeeRetryMsMin - 1);
    expect(await store.takeDueFees({ rail: "fiat", max: 10 })).toEqual([]);
    elapse(1);
    const taken = await store.takeDueFees({ rail: "fiat", max: 10 });
    expect(taken.sort((x, y) => x.objectId.localeCompare(y.objectId))).toEqual([
      { ...payout, tries: 1, revision: 2 },
      { ...refund, failure: true, tries: 1, revision: 1 },
    ]);
    // Taken, not again before its next try (another pass finds nothing).
    expect(await store.takeDueFees({ rail: "fiat", max: 10 })).toEqual([]);
    // Each wait twice the last, up to an hour: a moment before it ends nothing is due, at its end the fee is.
    const waits: number[] = [];
    for (
      let wait = 2 * parkedFeeRetryMsMin;
      waits.length < 7;
      wait = Math.min(2 * wait, parkedFeeRetryMsMax)
    ) {
      elapse(wait - 1);
      expect(await store.takeDueFees({ rail: "fiat", max: 10 })).toEqual([]);
      elapse(1);
      expect(await store.takeDueFees({ rail: "fiat", max: 1 })).toHaveLength(1);
      expect(await store.takeDueFees({ rail: "fiat", max: 1 })).toHaveLength(1);
      waits.push(wait / parkedFeeRetryMsMin);
    }
    expect(waits).toEqual([2, 4, 8, 16, 32, 60, 60]);

    // Kept again after its try read it: that try's booking leaves it, for the next try to book what came since.
    expect(await store.parkFee(refund)).toEqual({ parked: false });
    await store.unparkFee({ rail: "fiat", objectId: "re_kept", revision: 1 });
    await store.unparkFee({ rail: "fiat", objectId: "po_kept", revision: 2 });
    elapse(parkedFeeRetryMsMax);
    expect(await store.takeDueFees({ rail: "fiat", max: 10 })).toEqual([
      { ...refund, failure: true, tries: 9, revision: 4 },
    ]);
    await store.unparkFee({ rail: "fiat", objectId: "re_kept", revision: 4 });
    elapse(parkedFeeRetryMsMax);
    expect(await store.takeDueFees({ rail: "fiat", max: 10 })).toEqual([]);
    // Another rail's is its own: neither taken nor given up with this one's.
    expect(await store.giveUpFees({ rail: "fiat_eu", max: 10 })).toEqual([]);
    expect(await store.takeDueFees({ rail: "fiat_eu", max: 10 })).toEqual([
      { ...payout, rail: "fiat_eu", tries: 1, revision: 3 },
    ]);
  });

  it("gives a fee kept longer than a week up, once, takes it no more, and keeps it anew when it is kept again", async () => {
    const store = createMemoryStripeWebhookStore();
    await store.parkFee(refund);
    elapse(parkedFeeKeptMsMax - parkedFeeRetryMsMin);
    await store.parkFee({ ...refund, objectId: "re_new" });
    expect(await store.giveUpFees({ rail: "fiat", max: 10 })).toEqual([]);
    elapse(parkedFeeRetryMsMin);
    // Past its week it is not taken, even before it is given up.
    expect((await store.takeDueFees({ rail: "fiat", max: 10 })).map((fee) => fee.objectId)).toEqual([
      "re_new",
    ]);
    expect(await store.giveUpFees({ rail: "fiat", max: 10 })).toEqual([
      { rail: "fiat", objectId: "re_kept", kind: "refund", tries: 0 },
    ]);
    expect(await store.giveUpFees({ rail: "fiat", max: 10 })).toEqual([]);
    elapse(parkedFeeRetryMsMax);
    expect((await store.takeDueFees({ rail: "fiat", max: 10 })).map((fee) => fee.objectId)).toEqual([
      "re_new",
    ]);
    // Kept again (another event of its refund, Stripe still refusing): kept anew, said so, its first try a minute on
    // and its week from now. Before, it stayed given up until the operator's SQL.
    expect(await store.parkFee({ ...refund, failure: true })).toEqual({ parked: true });
    elapse(parkedFeeRetryMsMin - 1);
    expect(await store.takeDueFees({ rail: "fiat", max: 10 })).toEqual([]);
    elapse(1);
    expect(await store.takeDueFees({ rail: "fiat", max: 10 })).toEqual([
      { ...refund, failure: true, tries: 1, revision: 2 },
    ]);
    expect(await store.giveUpFees({ rail: "fiat", max: 10 })).toEqual([]);
    // Kept again while asked for, it is said kept once.
    expect(await store.parkFee(refund)).toEqual({ parked: false });
  });

  it("keeps anew a fee past its week that no pass gave up yet, when it is kept again", async () => {
    // Before, only one given up was: one past its week was said kept still (not logged), no pass took it, and the next
    // gave it up as if no event of it had come.
    const store = createMemoryStripeWebhookStore();
    await store.parkFee(refund);
    elapse(parkedFeeKeptMsMax + parkedFeeRetryMsMin);
    expect(await store.takeDueFees({ rail: "fiat", max: 10 })).toEqual([]);
    expect(await store.parkFee({ ...refund, failure: true })).toEqual({ parked: true });
    expect(await store.giveUpFees({ rail: "fiat", max: 10 })).toEqual([]);
    elapse(parkedFeeRetryMsMin - 1);
    expect(await store.takeDueFees({ rail: "fiat", max: 10 })).toEqual([]);
    elapse(1);
    expect(await store.takeDueFees({ rail: "fiat", max: 10 })).toEqual([
      { ...refund, failure: true, tries: 1, revision: 1 },
    ]);
  });

  it("forgets a fee its event booked, unless it asks for its failure's fee and that was not booked", async () => {
    const store = createMemoryStripeWebhookStore();
    await store.parkFee(refund);
    await store.parkFee(payout);
    await store.parkFee({ ...refund, rail: "fiat_eu" });
    await store.forgetBookedFee({ rail: "fiat", objectId: "po_kept", revision: 1, failure: false });
    await store.forgetBookedFee({ rail: "fiat", objectId: "re_kept", revision: 0, failure: false });
    elapse(parkedFeeRetryMsMin);
    expect(await store.takeDueFees({ rail: "fiat", max: 10 })).toEqual([
      { ...payout, tries: 1, revision: 1 },
    ]);
    // Given up, it is forgotten all the same; only as the event's lookup read it.
    elapse(parkedFeeKeptMsMax);
    expect(await store.giveUpFees({ rail: "fiat", max: 10 })).toHaveLength(1);
    expect(await store.keptFeeRevision({ rail: "fiat", objectId: "po_kept" })).toBe(1);
    await store.forgetBookedFee({ rail: "fiat", objectId: "po_kept", revision: 0, failure: true });
    expect(await store.keptFeeRevision({ rail: "fiat", objectId: "po_kept" })).toBe(1);
    await store.forgetBookedFee({ rail: "fiat", objectId: "po_kept", revision: 1, failure: true });
    expect(await store.keptFeeRevision({ rail: "fiat", objectId: "po_kept" })).toBeNull();
    expect(await store.parkFee(payout)).toEqual({ parked: true });
    expect(await store.takeDueFees({ rail: "fiat_eu", max: 10 })).toEqual([]);
    expect(await store.giveUpFees({ rail: "fiat_eu", max: 10 })).toHaveLength(1);
  });

  it("never gives a revision twice: a try's booking leaves a fee forgotten and kept anew since it read it", async () => {
    // A pass's try reads the fee; another event of its refund is told it and forgets it; a refund.failed, Stripe
    // refusing it, keeps it anew asking for its failure's fee. Before, that row began at revision 0 again, and the try's
    // unparkFee (revision 0) deleted it: the failure's fee was never booked.
    const store = createMemoryStripeWebhookStore();
    await store.parkFee(refund);
    elapse(parkedFeeRetryMsMin);
    const [taken] = await store.takeDueFees({ rail: "fiat", max: 10 });
    expect(taken).toMatchObject({ objectId: "re_kept", failure: false });
    // The event's lookup read the row as the try did (keptFeeRevision).
    const read = taken?.revision ?? -1;
    await store.forgetBookedFee({ rail: "fiat", objectId: "re_kept", revision: read, failure: false });
    expect(await store.parkFee({ ...refund, failure: true })).toEqual({ parked: true });
    await store.unparkFee({ rail: "fiat", objectId: "re_kept", revision: taken?.revision ?? -1 });
    // Nor does an event's forgetting, its revision read before the row was kept anew.
    await store.forgetBookedFee({ rail: "fiat", objectId: "re_kept", revision: read, failure: true });
    elapse(parkedFeeRetryMsMin);
    expect(await store.takeDueFees({ rail: "fiat", max: 10 })).toEqual([
      { ...refund, failure: true, tries: 1, revision: 1 },
    ]);
  });

  it("takes and gives up fees due at once by object id, as the SQL store does", async () => {
    // Before, by when each was kept, then by when it was first kept here: not the SQL store's order.
    const store = createMemoryStripeWebhookStore();
    for (const objectId of ["re_c", "re_a", "re_b"]) await store.parkFee({ ...refund, objectId });
    elapse(parkedFeeRetryMsMin);
    const taken: string[] = [];
    for (let each = 0; each < 3; each += 1)
      taken.push(...(await store.takeDueFees({ rail: "fiat", max: 1 })).map((fee) => fee.objectId));
    expect(taken).toEqual(["re_a", "re_b", "re_c"]);
    elapse(parkedFeeKeptMsMax);
    const givenUp: string[] = [];
    for (let each = 0; each < 3; each += 1)
      givenUp.push(...(await store.giveUpFees({ rail: "fiat", max: 1 })).map((fee) => fee.objectId));
    expect(givenUp).toEqual(["re_a", "re_b", "re_c"]);
  });

  it("takes only the kinds it is asked for", async () => {
    const store = createMemoryStripeWebhookStore();
    await store.parkFee(refund);
    await store.parkFee(payout);
    elapse(parkedFeeRetryMsMin);
    expect(await store.takeDueFees({ rail: "fiat", max: 10, kinds: ["refund"] })).toEqual([
      { ...refund, tries: 1, revision: 0 },
    ]);
    expect(await store.takeDueFees({ rail: "fiat", max: 10, kinds: ["refund"] })).toEqual([]);
    expect(await store.takeDueFees({ rail: "fiat", max: 10 })).toEqual([
      { ...payout, tries: 1, revision: 1 },
    ]);
  });
});
