import { describe, expect, it } from "vitest";
import { createPayerHolds } from "./holds.ts";

describe("payer holds", () => {
  const clock = (start: bigint) => {
    const c = { now: start };
    return { c, holds: createPayerHolds(() => c.now) };
  };

  it("lets through what the balance covers beyond the payer's other holds, and no more", () => {
    const { holds } = clock(1_000n);
    const first = holds.take("p", 40n, 100n, 2_000n);
    const second = holds.take("p", 40n, 100n, 2_000n);
    expect("release" in first && "release" in second).toBe(true);
    expect(holds.take("p", 40n, 100n, 2_000n)).toEqual({ short: { balance: 100n, held: 80n } });
    // What was refused holds nothing; exactly the rest still fits.
    expect(holds.heldBy("p")).toBe(80n);
    expect("release" in holds.take("p", 20n, 100n, 2_000n)).toBe(true);
    // Another payer is not weighed against this one's holds.
    expect("release" in holds.take("q", 100n, 100n, 2_000n)).toBe(true);
  });

  it("gives a hold back once, however often it is released", () => {
    const { holds } = clock(1_000n);
    const a = holds.take("p", 60n, 100n, 2_000n);
    const b = holds.take("p", 40n, 100n, 2_000n);
    if (!("release" in a) || !("release" in b)) throw new Error("not held");
    a.release();
    a.release();
    expect(holds.heldBy("p")).toBe(40n);
    expect(holds.take("p", 70n, 100n, 2_000n)).toEqual({ short: { balance: 100n, held: 40n } });
    b.release();
    expect(holds.heldBy("p")).toBe(0n);
    expect(holds.payers()).toBe(0);
  });

  it("weighs nothing against a balance that was not read, but holds the amount for later payments", () => {
    const { holds } = clock(1_000n);
    expect("release" in holds.take("p", 500n, null, 2_000n)).toBe(true);
    expect(holds.take("p", 1n, 500n, 2_000n)).toEqual({ short: { balance: 500n, held: 500n } });
  });

  it("lets a hold lapse at its authorization's validBefore, and sweeps lapsed payers", () => {
    const { c, holds } = clock(1_000n);
    expect("release" in holds.take("p", 100n, 100n, 1_010n)).toBe(true);
    expect("short" in holds.take("p", 100n, 100n, 1_100n)).toBe(true);
    c.now = 1_010n;
    expect("release" in holds.take("p", 100n, 100n, 1_100n)).toBe(true);
    // The earliest hold released by hand: when its time comes, only lapsed holds go.
    const early = holds.take("s", 10n, 100n, 1_050n);
    expect("release" in holds.take("s", 20n, 100n, 1_500n)).toBe(true);
    if ("release" in early) early.release();
    c.now = 1_060n;
    expect(holds.heldBy("s")).toBe(20n);
    expect(holds.take("s", 81n, 100n, 1_500n)).toEqual({ short: { balance: 100n, held: 20n } });
    c.now = 1_010n;
    // Payers nobody asks about again are dropped by the periodic sweep.
    for (let i = 0; i < 2_000; i += 1) holds.take(`payer-${i}`, 1n, 1n, 1_020n);
    c.now = 1_200n;
    for (let i = 0; i < 2_100; i += 1) holds.take("r", 0n, 0n, 1_300n);
    // Left: "r" and "s", whose holds run to 1 300 and 1 500.
    expect(holds.payers()).toBe(2);
  });
});
