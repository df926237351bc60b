import { describe, expect, it } from "vitest";
import { randomInt64, takeRandom } from "./random.ts";

describe("pooled random bytes", () => {
  it("hands out fresh bytes across page refills, never the same draw twice", () => {
    const seen = new Set<bigint>();
    // 3,000 draws of 8 bytes: six 4 KB pages, the token and byte draws interleaved.
    for (let i = 0; i < 1_500; i++) {
      seen.add(randomInt64());
      const bytes = Buffer.alloc(8);
      takeRandom(bytes);
      seen.add(bytes.readBigInt64BE());
    }
    expect(seen.size).toBe(3_000);
  });

  it("fills only from the offset on, and fills more than a page directly", () => {
    const small = Buffer.alloc(16);
    takeRandom(small, 10);
    expect(small.subarray(0, 10).every((byte) => byte === 0)).toBe(true);
    const big = Buffer.alloc(10_000);
    takeRandom(big, 1);
    expect(big[0]).toBe(0);
    // 9,999 random bytes are all zero once in 2^79,992.
    expect(big.subarray(1).some((byte) => byte !== 0)).toBe(true);
  });
});
