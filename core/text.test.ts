import { describe, expect, it } from "vitest";
import { storableText } from "./text.ts";

describe("storableText", () => {
  it("makes each NUL and unpaired surrogate U+FFFD, and leaves other text as it is", () => {
    expect(storableText(`x${String.fromCharCode(0)}y${String.fromCharCode(0)}`)).toBe("x\uFFFDy\uFFFD");
    expect(storableText("a\uD800b\uDC00")).toBe("a\uFFFDb\uFFFD");
    const kept = "no route to 03ab… €, 🙂, tab\there";
    expect(storableText(kept)).toBe(kept);
  });
});
