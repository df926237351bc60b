// The ledger's time-ordered u128 ids: the millisecond in the top 48 bits, then 80 bits drawn fresh each new
// millisecond and counted up within one, so that ids of one generator only grow, even when the clock stands still or
// goes back.
import { describe, expect, it } from "vitest";
import { createIdGenerator, idToUuid, uuidToId } from "./id.ts";

const msOf = (id: bigint) => Number(id >> 80n);
const randomOf = (id: bigint) => id & ((1n << 80n) - 1n);

describe("ledger ids", () => {
  it("carry their millisecond, and grow by one within it", () => {
    const clock = { ms: 1_700_000_000_000 };
    const next = createIdGenerator(() => clock.ms);
    const first = next();
    const second = next();
    expect(msOf(first)).toBe(clock.ms);
    expect(second).toBe(first + 1n);
    // Drawn with a bit of headroom: counting up never reaches the millisecond's bits.
    expect(randomOf(first) < 1n << 79n).toBe(true);
  });

  it("keep growing when the clock goes back, and draw afresh in a new millisecond", () => {
    const clock = { ms: 1_700_000_000_000 };
    const next = createIdGenerator(() => clock.ms);
    const before = next();
    clock.ms -= 5_000;
    const after = next();
    expect(after).toBe(before + 1n);
    clock.ms += 10_000;
    const later = next();
    expect(msOf(later)).toBe(clock.ms);
    expect(later > after).toBe(true);
  });

  it("differ between generators in the same millisecond (their random bits)", () => {
    const ms = 1_700_000_000_000;
    const ids = new Set(Array.from({ length: 200 }, () => createIdGenerator(() => ms)()));
    expect(ids.size).toBe(200);
  });

  it("read back from their uuid text", () => {
    const id = createIdGenerator()();
    expect(uuidToId(idToUuid(id))).toBe(id);
    expect(idToUuid(id)).toMatch(/^[0-9a-f]{32}$/);
  });
});
