import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { divCeil, divFloor, divHalfEven, formatAmount, parseAmount, splitByBasisPoints } from "./money.ts";

const usdc = { scale: 6 };

describe("parseAmount", () => {
  it.each([
    ["1", 1_000_000n],
    ["0.000001", 1n],
    ["12.50", 12_500_000n],
    ["1.100000", 1_100_000n],
    ["1.1234560", 1_123_456n], // a zero past the scale changes nothing
  ])("parses %s", (text, value) => {
    expect(parseAmount(text, usdc)).toEqual({ ok: true, value });
  });

  it.each([
    ["", "amount_not_a_decimal"],
    ["+1", "amount_not_a_decimal"],
    ["1e3", "amount_not_a_decimal"],
    [" 1", "amount_not_a_decimal"],
    ["1 ", "amount_not_a_decimal"],
    ["01", "amount_not_a_decimal"],
    ["1.", "amount_not_a_decimal"],
    [".5", "amount_not_a_decimal"],
    ["-.5", "amount_not_a_decimal"],
    ["--1", "amount_not_a_decimal"],
    ["-", "amount_not_a_decimal"],
    ["0x10", "amount_not_a_decimal"],
    ["\u0661", "amount_not_a_decimal"], // an Arabic-Indic one
    ["\uff11", "amount_not_a_decimal"], // a fullwidth one
    ["1,5", "amount_not_a_decimal"],
    ["0", "amount_not_positive"],
    ["0.000000", "amount_not_positive"],
    // A negative decimal is refused as zero is, whatever else is wrong with it: the sign says what is.
    ["-1", "amount_not_positive"],
    ["-0.5", "amount_not_positive"],
    ["-0", "amount_not_positive"],
    ["-0.0000001", "amount_not_positive"],
    ["-99999999999999999999", "amount_not_positive"],
    ["0.0000001", "amount_too_precise"],
    ["9223372036854.775808", "amount_too_large"],
  ])("refuses %j with %s", (text, error) => {
    expect(parseAmount(text, usdc)).toEqual({ ok: false, error });
  });

  it("round-trips through formatAmount", () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 1n, max: 2n ** 63n - 1n }),
        fc.integer({ min: 0, max: 18 }),
        (value, scale) => {
          expect(parseAmount(formatAmount(value, { scale }), { scale })).toEqual({ ok: true, value });
        },
      ),
    );
  });
});

describe("rounding helpers", () => {
  it("floor, ceil and half-even agree with exact rationals", () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: -(10n ** 20n), max: 10n ** 20n }),
        fc.bigInt({ min: 1n, max: 10n ** 9n }),
        fc.boolean(),
        (n, d, negate) => {
          const den = negate ? -d : d;
          const floor = divFloor(n, den);
          // floor is the largest q with q <= n / den: compare n against q·den and (q+1)·den in den's direction
          const sign = den > 0n ? 1n : -1n;
          expect(sign * (n - floor * den) >= 0n && sign * (n - (floor + 1n) * den) < 0n).toBe(true);
          expect(divCeil(n, den) - floor).toBe(n % den === 0n ? 0n : 1n);
          const half = divHalfEven(n, den);
          expect(half === floor || half === floor + 1n).toBe(true);
        },
      ),
    );
    expect(divHalfEven(5n, 2n)).toBe(2n);
    expect(divHalfEven(7n, 2n)).toBe(4n);
    expect(divHalfEven(-5n, 2n)).toBe(-2n);
    expect(divFloor(-7n, 2n)).toBe(-4n);
    expect(divCeil(-7n, 2n)).toBe(-3n);
    expect(divCeil(7n, 2n)).toBe(4n);
    expect(divCeil(0n, 5n)).toBe(0n);
    expect(() => divCeil(1n, 0n)).toThrow(RangeError);
    expect(() => divCeil(-1n, 0n)).toThrow(RangeError);
  });
});

describe("splitByBasisPoints", () => {
  it("gives the remainder to the first recipient and loses nothing", () => {
    expect(splitByBasisPoints(100n, [3333, 3333, 3334])).toEqual([34n, 33n, 33n]);
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: 10n ** 18n }),
        fc.array(fc.integer({ min: 1, max: 100 }), { minLength: 1, maxLength: 20 }),
        (amount, weights) => {
          const sum = weights.reduce((a, b) => a + b, 0);
          const bps = weights.map((w) => Math.floor((w * 10_000) / sum));
          bps[0]! += 10_000 - bps.reduce((a, b) => a + b, 0);
          const shares = splitByBasisPoints(amount, bps);
          expect(shares.reduce((a, b) => a + b, 0n)).toBe(amount);
          shares.slice(1).forEach((share, i) => {
            expect(share).toBe((amount * BigInt(bps[i + 1]!)) / 10_000n);
          });
        },
      ),
    );
  });

  it("refuses basis points that do not sum to 10000", () => {
    expect(() => splitByBasisPoints(1n, [5000, 4999])).toThrow(RangeError);
  });
});
