import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { evmRail, staticSnapshot, usdc } from "./fixtures.ts";
import {
  type AccruedPayout,
  NettingInputError,
  nettingVerdict,
  nettingVerdictForDecision,
  planNettingBatch,
  route,
} from "./index.ts";

describe("netting: when a payout accrues", () => {
  it.each([
    { amount: 1_000_000n, fee: 10_000n, share: 100, verdict: "pay_now" }, // exactly 1 %
    { amount: 1_000_000n, fee: 10_001n, share: 100, verdict: "accrue" },
    { amount: 10_000n, fee: 1_950n, share: 500, verdict: "accrue" }, // 19.5 % > 5 %
    { amount: 1n, fee: 0n, share: 0, verdict: "pay_now" },
  ] as const)("amount $amount, fee $fee, max share $share bps → $verdict", (c) => {
    expect(nettingVerdict({ amountMicroUsd: c.amount, feeMicroUsd: c.fee, maxFeeShareBps: c.share })).toBe(
      c.verdict,
    );
  });

  it("judges a routed payout by its cheapest rail's fee", () => {
    const snapshot = staticSnapshot([evmRail]);
    const to = { kind: "evm_address", address: "0x01" } as const;
    const cent = route({ asset: usdc, amount: 10_000n, destination: to }, snapshot, {});
    const dollars = route({ asset: usdc, amount: 10_000_000n, destination: to }, snapshot, {});
    expect(nettingVerdictForDecision(cent, 500)).toBe("accrue");
    expect(nettingVerdictForDecision(dollars, 500)).toBe("pay_now");
    const none = route(
      { asset: usdc, amount: 10_000n, destination: { kind: "account", accountId: "a" } },
      snapshot,
      {},
    );
    expect(nettingVerdictForDecision(none, 500)).toBeNull();
  });
});

const p = (id: string, payee: string, amount: bigint): AccruedPayout => ({ id, payee, amount });

describe("netting: planning a batch", { timeout: 60_000 }, () => {
  const accrued = [
    p("1", "alice", 300n),
    p("2", "bob", 50n),
    p("3", "alice", 400n),
    p("4", "carol", -20n),
    p("5", "carol", 10n),
  ];

  it("settles only payees whose net reaches the per-payee threshold before the timer", () => {
    const plan = planNettingBatch(accrued, { perPayee: 500n }, 1_000, 0, 60_000);
    expect(plan.trigger).toBe("per_payee");
    expect(plan.settle).toEqual([{ payee: "alice", amount: 700n, payoutIds: ["1", "3"] }]);
    expect(plan.kept.map((k) => k.id)).toEqual(["2", "4", "5"]);
    expect(plan.nextFlushAtMs).toBe(60_000);
  });

  it("settles every payee with a positive net when the timer fires; a negative net stays", () => {
    const plan = planNettingBatch(accrued, { perPayee: 500n }, 60_000, 0, 60_000);
    expect(plan.trigger).toBe("timer");
    expect(plan.settle.map((s) => [s.payee, s.amount])).toEqual([
      ["alice", 700n],
      ["bob", 50n],
    ]);
    expect(plan.kept.map((k) => k.id)).toEqual(["4", "5"]);
    expect(plan.nextFlushAtMs).toBe(120_000);
  });

  it("settles everyone once the positive nets add up to the total threshold", () => {
    expect(planNettingBatch(accrued, { total: 750n }, 1, 0, 60_000).trigger).toBe("total");
    expect(planNettingBatch(accrued, { total: 751n }, 1, 0, 60_000)).toMatchObject({
      trigger: null,
      settle: [],
    });
  });

  it("caps a batch at payeesMax, largest first", () => {
    const plan = planNettingBatch(accrued, {}, 60_000, 0, 60_000, 1);
    expect(plan.settle.map((s) => s.payee)).toEqual(["alice"]);
    expect(plan.kept.map((k) => k.id)).toEqual(["2", "4", "5"]);
    expect(() => planNettingBatch(accrued, {}, 0, 0, 1, 0)).toThrow(NettingInputError);
  });

  it("never creates or loses money: settled plus kept is what accrued, per payee", () => {
    const payout = fc.record({
      id: fc.uuid(),
      payee: fc.constantFrom("a", "b", "c", "d"),
      amount: fc.bigInt({ min: -1_000n, max: 10_000n }),
    });
    fc.assert(
      fc.property(
        fc.array(payout, { maxLength: 50 }),
        fc.option(fc.bigInt({ min: 0n, max: 20_000n }), { nil: undefined }),
        fc.option(fc.bigInt({ min: 0n, max: 100_000n }), { nil: undefined }),
        fc.integer({ min: 0, max: 120_000 }),
        fc.integer({ min: 1, max: 4 }),
        (payouts, perPayee, total, nowMs, payeesMax) => {
          const plan = planNettingBatch(payouts, { perPayee, total }, nowMs, 0, 60_000, payeesMax);
          const sum = (xs: readonly { amount: bigint }[]) => xs.reduce((s, x) => s + x.amount, 0n);
          expect(sum(plan.settle) + sum(plan.kept)).toBe(sum(payouts));
          expect(plan.settle.length <= payeesMax).toBe(true);
          for (const s of plan.settle) {
            expect(s.amount > 0n).toBe(true);
            expect(sum(payouts.filter((x) => x.payee === s.payee))).toBe(s.amount);
            expect(plan.kept.some((k) => k.payee === s.payee)).toBe(false);
          }
          const ids = [...plan.settle.flatMap((s) => s.payoutIds), ...plan.kept.map((k) => k.id)].sort();
          expect(ids).toEqual(payouts.map((x) => x.id).sort());
        },
      ),
      { seed: 6, numRuns: 500 },
    );
  });
});
