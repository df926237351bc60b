import { describe, expect, it } from "vitest";
import { accountCodes, namedCodes, transferCodes } from "./codes.ts";
import { u16Max } from "./types.ts";

describe.each([
  ["account", accountCodes],
  ["transfer", transferCodes],
])("%s codes", (_kind, table) => {
  const codes = namedCodes(table);

  it("are unique: no two kinds share a code", () => {
    const byCode = new Map<number, string[]>();
    for (const { name, code } of codes) byCode.set(code, [...(byCode.get(code) ?? []), name]);
    const shared = [...byCode.entries()].filter(([, names]) => names.length > 1);
    expect(shared).toEqual([]);
  });

  it("are nonzero and within TigerBeetle's u16", () => {
    for (const { name, code } of codes) {
      expect(Number.isInteger(code), name).toBe(true);
      expect(code, name).toBeGreaterThan(0);
      expect(code, name).toBeLessThanOrEqual(u16Max);
    }
  });
});

it("namedCodes lists every kind of every group", () => {
  expect(namedCodes({ a: { x: 1, y: 2 }, b: { z: 3 } })).toEqual([
    { name: "a.x", code: 1 },
    { name: "a.y", code: 2 },
    { name: "b.z", code: 3 },
  ]);
});
