// The payment headers' encoding: standard base64 (`+/`, `=` padding) of UTF-8 JSON, as @x402/core encodes and
// decodes it. Strict: a value that is not exactly that, one above the size cap, or a header sent twice (two lines, a
// joined value, or both PAYMENT-SIGNATURE and X-PAYMENT) is refused with a code before anything is parsed.
import { type Refused, refusedWith } from "./refusals.ts";

/** The largest payment header taken: a 65-byte EOA signature needs about 1 KiB; a contract wallet's is longer. */
export const paymentHeaderBytesMax = 16_384;

/** The request headers a payment arrives in: v2 and v1. */
export const paymentHeaderNames = { v2: "payment-signature", v1: "x-payment" } as const;

/** The receipt headers: v2 and v1. */
export const receiptHeaderNames = { v2: "PAYMENT-RESPONSE", v1: "X-PAYMENT-RESPONSE" } as const;

/** The v2 challenge header. */
export const requiredHeaderName = "PAYMENT-REQUIRED";

const base64Pattern = /^[A-Za-z0-9+/]*={0,2}$/;

/** base64 of the UTF-8 JSON of `value`. */
export function encodeHeader(value: unknown): string {
  return Buffer.from(JSON.stringify(value), "utf8").toString("base64");
}

/** The JSON a header value carries, or why it carries none. */
export function decodeHeader(value: string): { ok: true; value: unknown } | Refused {
  if (value.length > paymentHeaderBytesMax)
    return refusedWith(
      "invalid_payload_header_too_large",
      `the payment header is longer than ${paymentHeaderBytesMax} bytes`,
    );
  if (value.includes(","))
    return refusedWith("invalid_payload_header_repeated", "the payment header was sent more than once");
  const text = value.trim();
  if (text.length === 0 || text.length % 4 !== 0 || !base64Pattern.test(text))
    return refusedWith("invalid_payload", "the payment header is not standard base64");
  const decoded = Buffer.from(text, "base64");
  const json = new TextDecoder("utf-8", { fatal: true });
  let parsed: unknown;
  try {
    parsed = JSON.parse(json.decode(decoded));
  } catch (error) {
    if (!(error instanceof SyntaxError || error instanceof TypeError)) throw error;
    return refusedWith("invalid_payload", "the payment header is not base64 of UTF-8 JSON");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
    return refusedWith("invalid_payload", "the payment header is not a JSON object");
  return { ok: true, value: parsed };
}

type Headers = Readonly<Record<string, string | readonly string[] | undefined>>;

/** Which payment header a request carries and its value; null when it carries none. */
export function paymentHeaderOf(
  headers: Headers,
  rawHeaders?: readonly string[],
): { version: 1 | 2; value: string } | Refused | null {
  const v2 = headers[paymentHeaderNames.v2];
  const v1 = headers[paymentHeaderNames.v1];
  if (v2 === undefined && v1 === undefined) return null;
  if (v2 !== undefined && v1 !== undefined)
    return refusedWith("invalid_payload_header_repeated", "both PAYMENT-SIGNATURE and X-PAYMENT were sent");
  if (rawHeaders !== undefined) {
    let lines = 0;
    for (let i = 0; i < rawHeaders.length; i += 2) {
      const name = rawHeaders[i]?.toLowerCase();
      if (name === paymentHeaderNames.v2 || name === paymentHeaderNames.v1) lines += 1;
    }
    if (lines > 1)
      return refusedWith("invalid_payload_header_repeated", "the payment header was sent more than once");
  }
  const value = v2 ?? v1;
  if (typeof value !== "string")
    return refusedWith("invalid_payload_header_repeated", "the payment header was sent more than once");
  return { version: v2 !== undefined ? 2 : 1, value };
}
