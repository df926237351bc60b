import { describe, expect, it } from "vitest";
import { isStorableText } from "../../core/index.ts";
import { escapeUnstorable, findUnstorableText, paramLengthMax, unstorableTextError } from "./text-safety.ts";

const nul = String.fromCharCode(0);
const high = String.fromCharCode(0xd800);
const low = String.fromCharCode(0xdc00);

describe("isStorableText", () => {
  it("refuses a NUL and an unpaired surrogate, takes a pair and every other character", () => {
    expect(isStorableText(`a${nul}`)).toBe(false);
    expect(isStorableText(`a${high}`)).toBe(false);
    expect(isStorableText(`${low}a`)).toBe(false);
    expect(isStorableText(`${low}${high}`)).toBe(false);
    expect(isStorableText("😀 é \u0001 \uffff \u202e")).toBe(true);
    expect(isStorableText("")).toBe(true);
  });
});

describe("escapeUnstorable", () => {
  it("writes out each unstorable code unit and keeps pairs whole", () => {
    expect(escapeUnstorable(`a${nul}b${high}c😀${low}`)).toBe("a\\u0000b\\ud800c😀\\udc00");
  });
});

describe("findUnstorableText", () => {
  it("names a value by its dotted path, arrays by index", () => {
    expect(findUnstorableText({ metadata: { order: `x${nul}` } })).toEqual({
      param: "metadata.order",
      in: "value",
    });
    expect(findUnstorableText({ methods: [{ a: "ok" }, { address: high }] })).toEqual({
      param: "methods.1.address",
      in: "value",
    });
  });

  it("names a key with its code units written out", () => {
    expect(findUnstorableText({ metadata: { [`o${nul}`]: "1" } })).toEqual({
      param: "metadata.o\\u0000",
      in: "key",
    });
  });

  it("finds nothing in storable values of every JSON kind", () => {
    expect(findUnstorableText({ a: [1, true, null, "😀", { b: 2.5 }] })).toBeNull();
    expect(findUnstorableText(undefined)).toBeNull();
  });

  it("walks a value nested far deeper than the call stack would allow", () => {
    let value: unknown = `bottom${nul}`;
    for (let depth = 0; depth < 200_000; depth += 1) value = [value];
    expect(findUnstorableText(value)?.in).toBe("value");
  });

  it("answers 400 parameter_invalid naming the parameter, the body as a whole named body", () => {
    expect(unstorableTextError({ param: "metadata.order", in: "value" }).body()).toEqual({
      error: { code: "parameter_invalid", message: expect.any(String), param: "metadata.order" },
    });
    expect(unstorableTextError({ param: "", in: "value" }).param).toBe("body");
  });
});

describe("a deep path", () => {
  it("is cut to paramLengthMax characters in the answer", () => {
    const error = unstorableTextError({ param: "0.".repeat(1_000).concat("0"), in: "value" });
    expect(error.param?.length).toBe(paramLengthMax + 1);
    expect(error.param?.endsWith("…")).toBe(true);
  });
});
