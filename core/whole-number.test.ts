import { describe, expect, it } from "vitest";
import { wholeBigint, wholeNumber } from "./whole-number.ts";

describe("wholeNumber", () => {
  const limit = wholeNumber(1, 100);
  it("reads decimal digits, and a number as it is", () => {
    expect(limit.parse("1")).toBe(1);
    expect(limit.parse("100")).toBe(100);
    expect(limit.parse("007")).toBe(7);
    expect(limit.parse(42)).toBe(42);
  });
  it("refuses what Number() would read but a client did not write as a number", () => {
    for (const value of [
      "",
      " ",
      " 7",
      "7 ",
      "+7",
      "0x10",
      "1e1",
      "7.0",
      "7.",
      "Infinity",
      "NaN",
      ["7"],
      null,
      true,
    ])
      expect(limit.safeParse(value).success, JSON.stringify(value)).toBe(false);
    expect(limit.safeParse("").error?.issues[0]?.message).toBe(
      "a whole number from 1 to 100, in decimal digits",
    );
  });
  it("keeps its bounds, and never reads more digits than a number holds exactly", () => {
    // Out of bounds, the message says the bounds (it is a whole number in digits, just not one of these).
    expect(limit.safeParse("0").error?.issues[0]?.message).toBe(
      "a whole number from 1 to 100, in decimal digits",
    );
    expect(limit.safeParse("101").error?.issues[0]?.message).toBe(
      "a whole number from 1 to 100, in decimal digits",
    );
    expect(wholeNumber(1).safeParse("0").error?.issues[0]?.message).toBe(
      "a whole number of at least 1, in decimal digits",
    );
    expect(limit.safeParse(7.5).success).toBe(false);
    expect(wholeNumber(0).parse("999999999999999")).toBe(999_999_999_999_999);
    expect(wholeNumber(0).safeParse("9007199254740993").success).toBe(false);
  });
});

describe("wholeBigint", () => {
  const block = wholeBigint(0n, 2n ** 63n - 1n);
  it("reads decimal digits and JSON integers as bigints, within its bounds", () => {
    expect(block.parse("18446744073")).toBe(18_446_744_073n);
    expect(block.parse(12)).toBe(12n);
    expect(block.parse(0n)).toBe(0n);
    expect(block.safeParse((2n ** 63n).toString()).success).toBe(false);
  });
  it("refuses what BigInt() would read but is not a number in digits", () => {
    for (const value of ["", " 1", "0x10", "1e3", "-1", 1.5, "1n"])
      expect(block.safeParse(value).success, JSON.stringify(value)).toBe(false);
  });
});
