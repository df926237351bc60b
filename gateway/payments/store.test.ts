// toJson's text is what jsonb columns keep and fromJson reads back: the same text, for any value, as JSON.stringify
// with a replacer that tags each bigint (what it did before it tagged them in a copy).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { fromJson, toJson } from "./store.ts";

const withReplacer = (value: unknown) =>
  JSON.stringify(value, (_key, v: unknown) => (typeof v === "bigint" ? { $bigint: v.toString() } : v));

describe("toJson", () => {
  it("writes what a bigint-tagging replacer writes, for any plain value", () => {
    // Boxed primitives (new Number(0)) are left out: nothing the gateway keeps holds one.
    const anything = fc.anything({
      withBigInt: true,
      withDate: true,
      withNullPrototype: true,
      withObjectString: true,
      withSparseArray: true,
    });
    fc.assert(
      fc.property(anything, (value) => toJson(value) === withReplacer(value)),
      {
        numRuns: 2_000,
        seed: 19,
      },
    );
  });

  it("reads back as it was written: bigints, nested, in arrays, beside toJSON", () => {
    const value = {
      amount: 1_000_000_000_000_000_000_001n,
      costs: [0n, -5n, { fee: 7n }],
      at: new Date("2026-11-25T10:00:00.000Z"),
      skipped: undefined,
    };
    const text = toJson(value);
    expect(text).toBe(
      '{"amount":{"$bigint":"1000000000000000000001"},"costs":[{"$bigint":"0"},{"$bigint":"-5"},{"fee":{"$bigint":"7"}}],"at":"2026-11-25T10:00:00.000Z"}',
    );
    expect(fromJson(text)).toEqual({
      amount: 1_000_000_000_000_000_000_001n,
      costs: [0n, -5n, { fee: 7n }],
      at: "2026-11-25T10:00:00.000Z",
    });
  });
});
