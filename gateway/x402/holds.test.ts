import { describe, expect, it } from "vitest";
import { createPayerHolds } from "./holds.ts";

describe("payer holds", () => {
  const clock = (start: bigint) => {
    const c = { now: start };
    const holds = createPayerHolds(() => c.now);
    /** A take by a verification that began just before it. */
    const take = (payer: string, amount: bigint, balance: bigint | null, expiresAtS: bigint) => {
      const reading = holds.begin();
      try {
        return holds.take(payer, amount, balance, expiresAtS, reading);
      } finally {
        holds.end(reading);
      }
    };
    return { c, holds, take };
  };
  const unsettled = { settled: false };

  it("lets through what the balance covers beyond the payer's other holds, and no more", () => {
    const { holds, take } = clock(1_000n);
    const first = take("p", 40n, 100n, 2_000n);
    const second = take("p", 40n, 100n, 2_000n);
    expect("release" in first && "release" in second).toBe(true);
    expect(take("p", 40n, 100n, 2_000n)).toEqual({ short: { balance: 100n, held: 80n } });
    // What was refused holds nothing; exactly the rest still fits.
    expect(holds.heldBy("p")).toBe(80n);
    expect("release" in take("p", 20n, 100n, 2_000n)).toBe(true);
    // Another payer is not weighed against this one's holds.
    expect("release" in take("q", 100n, 100n, 2_000n)).toBe(true);
  });

  it("gives a hold back once, however often it is released", () => {
    const { holds, take } = clock(1_000n);
    const a = take("p", 60n, 100n, 2_000n);
    const b = take("p", 40n, 100n, 2_000n);
    if (!("release" in a) || !("release" in b)) throw new Error("not held");
    a.release(unsettled);
    a.release(unsettled);
    expect(holds.heldBy("p")).toBe(40n);
    expect(take("p", 70n, 100n, 2_000n)).toEqual({ short: { balance: 100n, held: 40n } });
    b.release({ settled: true });
    expect(holds.heldBy("p")).toBe(0n);
    expect(holds.payers()).toBe(0);
  });

  it("counts a settled release as held for a verification that began before it: its balance may predate the transfer", () => {
    const { holds, take } = clock(1_000n);
    const spent = take("p", 100n, 100n, 2_000n);
    const other = take("p", 1n, 101n, 2_000n);
    if (!("release" in spent) || !("release" in other)) throw new Error("not held");
    const before = holds.begin();
    // Read 100 while the first payment's transfer was not mined yet; that payment settles and is released; then the
    // verification weighs: the released 100 still counts, so nothing of the 100 is left.
    spent.release({ settled: true });
    // Given back unsettled (nothing moved on chain): not counted.
    other.release(unsettled);
    expect(holds.take("p", 100n, 100n, 2_000n, before)).toEqual({ short: { balance: 100n, held: 100n } });
    // A verification begun after the release reads a balance that shows the transfer: the release is not counted.
    const after = holds.begin();
    expect("release" in holds.take("p", 100n, 100n, 2_000n, after)).toBe(true);
    holds.end(after);
    holds.end(before);
  });

  it("forgets settled releases once no verification that began before them is under way", () => {
    const { holds, take } = clock(1_000n);
    const a = take("p", 10n, 10n, 2_000n);
    if (!("release" in a)) throw new Error("not held");
    const reading = holds.begin();
    a.release({ settled: true });
    expect(holds.payers()).toBe(1);
    holds.end(reading);
    // Tidied on the payer's next take, which the release no longer concerns.
    const b = take("p", 10n, 10n, 2_000n);
    if (!("release" in b)) throw new Error("not held");
    b.release({ settled: true });
    expect(holds.payers()).toBe(0);
  });

  it("weighs nothing against a balance that was not read, but holds the amount for later payments", () => {
    const { take } = clock(1_000n);
    expect("release" in take("p", 500n, null, 2_000n)).toBe(true);
    expect(take("p", 1n, 500n, 2_000n)).toEqual({ short: { balance: 500n, held: 500n } });
  });

  it("lets a hold lapse at its authorization's validBefore, and sweeps lapsed payers", () => {
    const { c, holds, take } = clock(1_000n);
    expect("release" in take("p", 100n, 100n, 1_010n)).toBe(true);
    expect("short" in take("p", 100n, 100n, 1_100n)).toBe(true);
    c.now = 1_010n;
    expect("release" in take("p", 100n, 100n, 1_100n)).toBe(true);
    // The earliest hold released by hand: when its time comes, only lapsed holds go.
    const early = take("s", 10n, 100n, 1_050n);
    expect("release" in take("s", 20n, 100n, 1_500n)).toBe(true);
    if ("release" in early) early.release(unsettled);
    c.now = 1_060n;
    expect(holds.heldBy("s")).toBe(20n);
    expect(take("s", 81n, 100n, 1_500n)).toEqual({ short: { balance: 100n, held: 20n } });
    c.now = 1_010n;
    // Payers nobody asks about again are dropped by the periodic sweep.
    for (let i = 0; i < 2_000; i += 1) take(`payer-${i}`, 1n, 1n, 1_020n);
    c.now = 1_200n;
    for (let i = 0; i < 2_100; i += 1) take("r", 0n, 0n, 1_300n);
    // Left: "r" and "s", whose holds run to 1 300 and 1 500.
    expect(holds.payers()).toBe(2);
  });
});
