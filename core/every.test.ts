import { describe, expect, it } from "vitest";
import { everyMember } from "./every.ts";

describe("everyMember", () => {
  it("lists each member of the union the Record names, in the order written", () => {
    expect(everyMember<"b" | "a">({ b: true, a: true })).toEqual(["b", "a"]);
  });
});
