// The payment header's codec: standard base64 of UTF-8 JSON only; oversized, doubled and malformed values refused
// with their codes before anything is parsed.
import { describe, expect, it } from "vitest";
import { decodeHeader, encodeHeader, paymentHeaderBytesMax, paymentHeaderOf } from "./codec.ts";

describe("the payment header codec", () => {
  it("round-trips UTF-8 JSON through standard base64", () => {
    const value = { x402Version: 2, note: "é ✓", n: "1" };
    expect(decodeHeader(encodeHeader(value))).toEqual({ ok: true, value });
  });

  it("refuses malformed, oversized and joined values with a code", () => {
    const code = (text: string) => {
      const decoded = decodeHeader(text);
      return decoded.ok ? "ok" : decoded.refusal;
    };
    expect(code("not base64!")).toBe("invalid_payload");
    expect(code("eyJ")).toBe("invalid_payload"); // not a multiple of 4
    expect(code(Buffer.from("{not json").toString("base64"))).toBe("invalid_payload");
    expect(code(Buffer.from("[1,2]").toString("base64"))).toBe("invalid_payload");
    expect(code(Buffer.from([0xff, 0xfe, 0x7b, 0x7d]).toString("base64"))).toBe("invalid_payload");
    expect(code(encodeHeader({ a: 1 }).replace(/=+$/, "").concat("-_"))).toBe("invalid_payload");
    expect(code("A".repeat(paymentHeaderBytesMax + 4))).toBe("invalid_payload_header_too_large");
    expect(code(`${encodeHeader({ a: 1 })}, ${encodeHeader({ a: 2 })}`)).toBe(
      "invalid_payload_header_repeated",
    );
  });

  it("finds the v2 or v1 header, and refuses two of them", () => {
    expect(paymentHeaderOf({})).toBeNull();
    expect(paymentHeaderOf({ "payment-signature": "e30=" })).toEqual({ version: 2, value: "e30=" });
    expect(paymentHeaderOf({ "x-payment": "e30=" })).toEqual({ version: 1, value: "e30=" });
    const both = paymentHeaderOf({ "payment-signature": "e30=", "x-payment": "e30=" });
    expect(both).toMatchObject({ ok: false, refusal: "invalid_payload_header_repeated" });
    const array = paymentHeaderOf({ "x-payment": ["e30=", "e30="] });
    expect(array).toMatchObject({ ok: false, refusal: "invalid_payload_header_repeated" });
    const raw = paymentHeaderOf({ "payment-signature": "e30=" }, [
      "Payment-Signature",
      "e30=",
      "PAYMENT-SIGNATURE",
      "e30=",
    ]);
    expect(raw).toMatchObject({ ok: false, refusal: "invalid_payload_header_repeated" });
  });
});
