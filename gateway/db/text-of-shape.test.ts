import { describe, expect, it } from "vitest";
import { textOfShape } from "./index.ts";

describe("textOfShape", () => {
  it("sends a shape's first text again, and refuses a text of another length for it", () => {
    const kept = new Map<string, string>();
    const made = (n: number) => ["SELECT ", String(n)].join("");
    const first = textOfShape(kept, "a", made(1));
    expect(textOfShape(kept, "a", made(2))).toBe(first); // the first text sent again, not the one made now
    expect(textOfShape(kept, "b", made(3))).toBe("SELECT 3");
    expect(() => textOfShape(kept, "a", made(10))).toThrow(/shape "a" changed/);
  });
});
