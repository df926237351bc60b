import { describe, expect, it } from "vitest";
import { setBounded } from "./bounded.ts";

describe("setBounded", () => {
  it("forgets the entry set least recently once the map holds max", () => {
    const map = new Map<string, number>();
    for (const [i, key] of ["a", "b", "c", "d"].entries()) setBounded(map, key, i, 3);
    expect([...map.keys()]).toEqual(["b", "c", "d"]);
  });

  it("sets a key it holds again as the newest, forgetting nothing else", () => {
    const map = new Map<string, number>([
      ["a", 1],
      ["b", 2],
      ["c", 3],
    ]);
    setBounded(map, "b", 20, 3);
    expect([...map.entries()]).toEqual([
      ["a", 1],
      ["c", 3],
      ["b", 20],
    ]);
    setBounded(map, "d", 4, 3);
    expect([...map.keys()]).toEqual(["c", "b", "d"]);
  });
});
