import { describe, expect, it } from "vitest";
import { defaultFiatFeeSchedule, fiatFee, validateFeeSchedule } from "./fees.ts";

describe("fiatFee", () => {
  it("charges 2.9 % + 30 ¢ by default, rounding the percentage up to the next cent", () => {
    // 1000 ¢ × 2.9 % = 29 ¢ exactly
    expect(fiatFee(defaultFiatFeeSchedule, 1_000n)).toEqual({ ok: true, fee: 59n });
    // 1001 ¢ × 2.9 % = 29.029 ¢ → 30 ¢ (ceil), + 30 ¢
    expect(fiatFee(defaultFiatFeeSchedule, 1_001n)).toEqual({ ok: true, fee: 60n });
    // 50 ¢ × 2.9 % = 1.45 ¢ → 2 ¢ (ceil, never 1 ¢)
    expect(fiatFee(defaultFiatFeeSchedule, 50n)).toEqual({ ok: true, fee: 32n });
  });

  it("refuses amounts below the minimum charge (a 5-cent payment is not a card payment)", () => {
    expect(fiatFee(defaultFiatFeeSchedule, 5n)).toMatchObject({
      ok: false,
      error: "below_minimum",
      amountMin: 50n,
    });
    expect(fiatFee(defaultFiatFeeSchedule, 49n)).toMatchObject({ ok: false, error: "below_minimum" });
    expect(fiatFee(defaultFiatFeeSchedule, 50n).ok).toBe(true);
  });

  it("refuses amounts above the maximum", () => {
    expect(fiatFee(defaultFiatFeeSchedule, 100_000_000n)).toMatchObject({
      ok: false,
      error: "above_maximum",
    });
  });

  it("follows a configured schedule", () => {
    const schedule = { feePpm: 15_000n, feeFixed: 0n, amountMin: 1n, amountMax: 10_000n };
    // 333 × 1.5 % = 4.995 → 5
    expect(fiatFee(schedule, 333n)).toEqual({ ok: true, fee: 5n });
    expect(fiatFee(schedule, 1n)).toEqual({ ok: true, fee: 1n });
  });

  it("validates a schedule", () => {
    expect(validateFeeSchedule(defaultFiatFeeSchedule)).toBeNull();
    expect(validateFeeSchedule({ ...defaultFiatFeeSchedule, feePpm: 1_000_000n })).toBe(
      "fee_ppm_out_of_range",
    );
    expect(validateFeeSchedule({ ...defaultFiatFeeSchedule, feeFixed: -1n })).toBe("fee_fixed_negative");
    expect(validateFeeSchedule({ ...defaultFiatFeeSchedule, amountMin: 0n })).toBe("amount_min_not_positive");
    expect(validateFeeSchedule({ ...defaultFiatFeeSchedule, amountMax: 10n })).toBe("amount_max_below_min");
  });
});
