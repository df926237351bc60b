import { describe, expect, it } from "vitest";
import { tenantShareOf } from "./shares.ts";

describe("tenantShareOf", () => {
  it("is a quarter of the pool, rounded up, and at least one", () => {
    expect([4_096, 1_000, 8, 5, 4, 3, 1].map(tenantShareOf)).toEqual([1_024, 250, 2, 2, 1, 1, 1]);
  });
});
