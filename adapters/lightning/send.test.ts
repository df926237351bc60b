// Whose payment a tracked attempt finds in LND: its own, another's (another amount), or doubtful (made before the
// attempt was journalled, by LND's clock).
import { describe, expect, it } from "vitest";
import { judgeTrackedPayment, lndClockBehindMaxMs } from "./send.ts";
import type { StoredAttempt } from "./store.ts";

const journalledAtMs = Date.parse("2026-11-24T12:00:00.000Z");
const attempt = (kind: StoredAttempt["kind"], amountMsat = 5_000_000n): StoredAttempt => ({
  attemptId: "att_1",
  paymentId: "pay_1",
  tenantId: "ten_test",
  paymentHash: "ab".repeat(32),
  kind,
  amountMsat,
  createdAtMs: journalledAtMs,
  feeMaxMsat: 50_000n,
  destination: null,
  request: "lnbcrt…",
  outcome: null,
  reported: false,
});
/** LND's confirmed payment: `mtokens` is what was sent plus the routing fee. */
const payment = (sentMsat: bigint, feeMsat: bigint, createdAt: string) => ({
  secret: "cd".repeat(32),
  fee_mtokens: feeMsat.toString(),
  mtokens: (sentMsat + feeMsat).toString(),
  created_at: createdAt,
});
const at = (offsetMs: number) => new Date(journalledAtMs + offsetMs).toISOString();

describe("judgeTrackedPayment", () => {
  it("takes a payment of the attempt's amount, made after it was journalled, as its own, whatever the fee", () => {
    expect(judgeTrackedPayment(attempt("bolt11"), payment(5_000_000n, 0n, at(40)))).toEqual({ kind: "own" });
    expect(judgeTrackedPayment(attempt("bolt11"), payment(5_000_000n, 1_234n, at(40)))).toEqual({
      kind: "own",
    });
  });

  it("allows LND's clock to be behind the gateway's by up to lndClockBehindMaxMs", () => {
    expect(judgeTrackedPayment(attempt("bolt11"), payment(5_000_000n, 7n, at(-lndClockBehindMaxMs)))).toEqual(
      {
        kind: "own",
      },
    );
    expect(
      judgeTrackedPayment(attempt("bolt11"), payment(5_000_000n, 7n, at(-lndClockBehindMaxMs - 1))),
    ).toMatchObject({
      kind: "doubtful",
      reason: expect.stringContaining("before the attempt was journalled"),
    });
  });

  it("knows a payment of another amount for another's, however its time reads", () => {
    for (const when of [at(40), at(-10 * lndClockBehindMaxMs)])
      expect(judgeTrackedPayment(attempt("bolt11"), payment(4_999_999n, 1n, when))).toMatchObject({
        kind: "foreign",
        reason: expect.stringContaining("sent 4999999 msat, the attempt pays 5000000 msat"),
      });
  });

  it("takes a keysend's payment as its own: its hash comes from the attempt id", () => {
    expect(judgeTrackedPayment(attempt("keysend"), payment(1n, 0n, at(-10 * lndClockBehindMaxMs)))).toEqual({
      kind: "own",
    });
  });
});
