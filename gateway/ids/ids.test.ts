import { describe, expect, it } from "vitest";
import { derivedLedgerId, idOfBits, isId, newId, newIdWithBits, ownLedgerId } from "./index.ts";

const alphabet = "0123456789abcdefghjkmnpqrstvwxyz";
/** The 128 bits an id's 26 characters spell (read back with bigints, independently of how they were written). */
const bitsOf = (id: string) =>
  [...id.slice(id.indexOf("_") + 1)].reduce(
    (value, char) => value * 32n + BigInt(alphabet.indexOf(char)),
    0n,
  );

describe("newId", () => {
  it("spells 48 bits of time then 80 random bits in Crockford base32, sortable by time", () => {
    for (const nowMs of [0, 1, 1_795_000_000_000, 2 ** 48 - 1]) {
      const id = newId("pay", nowMs);
      expect(isId("pay", id)).toBe(true);
      expect(bitsOf(id) >> 80n).toBe(BigInt(nowMs));
    }
    expect(newId("att", 1_000) < newId("att", 1_001)).toBe(true);
  });

  it("does not repeat, across many more ids than one draw of random bytes covers", () => {
    const ids = new Set(Array.from({ length: 20_000 }, () => newId("pay", 5)));
    expect(ids.size).toBe(20_000);
    const randomParts = new Set([...ids].map((id) => bitsOf(id) & ((1n << 80n) - 1n)));
    expect(randomParts.size).toBe(20_000);
  });

  it("made within one millisecond, sorts in the order made (a list by id is the order of creation)", () => {
    const nowMs = Date.now() + 3_600_000;
    const made = Array.from({ length: 5_000 }, () => newId("pye", nowMs));
    // Before: the random bits were drawn afresh, and ids of one millisecond sorted at random (lists.test.ts's payees).
    expect([...made].sort()).toEqual(made);
    expect(new Set(made).size).toBe(made.length);
    expect(made.every((id) => bitsOf(id) >> 80n === BigInt(nowMs))).toBe(true);
  });
});

describe("derivedLedgerId", () => {
  it("is the same for the same id and purpose, and differs by purpose", () => {
    expect(derivedLedgerId("pay_x", "reserve")).toBe(derivedLedgerId("pay_x", "reserve"));
    expect(derivedLedgerId("pay_x", "reserve")).not.toBe(derivedLedgerId("pay_x", "post"));
  });
});

describe("ownLedgerId and idOfBits", () => {
  it("read an id's own 128 bits, and spell any u128 as an id again", () => {
    const ids = [newId("pay", 0), newId("att", 1_795_000_000_000), newId("pay", 2 ** 48 - 1)];
    for (const id of ids) {
      expect(ownLedgerId(id)).toBe(bitsOf(id));
      expect(idOfBits(id.startsWith("pay") ? "pay" : "att", ownLedgerId(id))).toBe(id);
    }
    for (const bits of [0n, 1n, (1n << 128n) - 1n, 0x0123456789abcdef0123456789abcdefn]) {
      const id = idOfBits("pay", bits);
      expect(isId("pay", id)).toBe(true);
      expect(ownLedgerId(id)).toBe(bits);
    }
  });

  it("newIdWithBits gives the bits its id spells, and its ids sort as newId's do", () => {
    const made = Array.from({ length: 1_000 }, (_, i) => newIdWithBits("att", 1_795_000_000_000 + (i >> 4)));
    for (const { id, bits } of made) expect([isId("att", id), bits]).toEqual([true, ownLedgerId(id)]);
    expect(made.map(({ id }) => id)).toEqual(made.map(({ id }) => id).sort());
  });

  it("refuses what is not an id's 26 characters, or spells more than 128 bits", () => {
    expect(() => ownLedgerId("pay_0123")).toThrow(RangeError);
    expect(() => ownLedgerId(`pay_${"u".repeat(26)}`)).toThrow(RangeError); // u is not Crockford's
    expect(() => ownLedgerId(`pay_8${"0".repeat(25)}`)).toThrow(RangeError); // 8 << 125 needs 129 bits
    expect(() => idOfBits("pay", 1n << 128n)).toThrow(RangeError);
    expect(() => idOfBits("pay", -1n)).toThrow(RangeError);
  });

  it("ownLedgerId is time-ordered as ids are, where derivedLedgerId is not", () => {
    const made = Array.from({ length: 200 }, (_, i) => newId("att", 1_795_000_000_000 + i));
    const own = made.map(ownLedgerId);
    expect([...own].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))).toEqual(own);
    const derived = made.map((id) => derivedLedgerId(id, "reserve"));
    expect([...derived].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))).not.toEqual(derived);
  });
});
