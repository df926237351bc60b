import { describe, expect, it } from "vitest";
import { storableText, utf8Prefix } from "./text.ts";

describe("storableText", () => {
  it("makes each NUL and unpaired surrogate U+FFFD, and leaves other text as it is", () => {
    expect(storableText(`x${String.fromCharCode(0)}y${String.fromCharCode(0)}`)).toBe("x\uFFFDy\uFFFD");
    expect(storableText("a\uD800b\uDC00")).toBe("a\uFFFDb\uFFFD");
    const kept = "no route to 03ab… €, 🙂, tab\there";
    expect(storableText(kept)).toBe(kept);
  });
});

describe("utf8Prefix", () => {
  it("keeps text that fits, and otherwise cuts between code points at the last one that fits", () => {
    expect(utf8Prefix("abc", 3)).toBe("abc");
    expect(utf8Prefix("abc", 2)).toBe("ab");
    // "é" is 2 bytes, "€" 3, "🙂" 4 (a surrogate pair in UTF-16): none is cut in half.
    expect(utf8Prefix("aé€🙂", 3)).toBe("aé");
    expect(utf8Prefix("aé€🙂", 5)).toBe("aé");
    expect(utf8Prefix("aé€🙂", 6)).toBe("aé€");
    expect(utf8Prefix("aé€🙂", 9)).toBe("aé€");
    expect(utf8Prefix("aé€🙂", 10)).toBe("aé€🙂");
    expect(utf8Prefix("🙂", 0)).toBe("");
    const long = "日本語".repeat(300);
    const cut = utf8Prefix(long, 639);
    expect(Buffer.byteLength(cut)).toBe(639);
    expect(long.startsWith(cut)).toBe(true);
  });
});
