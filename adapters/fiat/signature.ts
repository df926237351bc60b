// Stripe-Signature verification on the raw body, before anything is parsed. The header is
// `t=<unix seconds>,v1=<hex>[,v1=<hex>…]`; each v1 is HMAC-SHA256 over `<t>.<raw body>` with one endpoint
// secret. Several secrets are accepted at once (rotation: Stripe signs with the old and the new one for a
// while). Comparison is constant-time; the timestamp must lie within the tolerance on either side of now.
import { createHmac, timingSafeEqual } from "node:crypto";

export type SignatureError = "signature_missing" | "signature_invalid" | "timestamp_outside_tolerance";

export type SignatureResult = { ok: true; timestampSeconds: number } | { ok: false; error: SignatureError };

/** Stripe's libraries default to 5 minutes. */
export const stripeSignatureToleranceSecondsDefault = 300;
/** Longer headers are refused unread: Stripe sends one t and a v1 per active secret (two during rotation). */
export const signatureHeaderLengthMax = 2_048;
export const signingSecretsMax = 8;

const hexSignaturePattern = /^[0-9a-f]{64}$/;
const timestampPattern = /^[0-9]{1,12}$/;

export function verifyStripeSignature(params: {
  rawBody: Buffer;
  header: string | undefined;
  secrets: readonly string[];
  toleranceSeconds: number;
  nowSeconds: number;
}): SignatureResult {
  if (params.secrets.length === 0 || params.secrets.length > signingSecretsMax)
    throw new RangeError(
      `verifyStripeSignature: between 1 and ${signingSecretsMax} secrets, got ${params.secrets.length}`,
    );
  const header = params.header?.trim() ?? "";
  if (header === "") return { ok: false, error: "signature_missing" };
  if (header.length > signatureHeaderLengthMax) return { ok: false, error: "signature_invalid" };

  let timestamp: string | undefined;
  const signatures: Buffer[] = [];
  for (const part of header.split(",")) {
    const separator = part.indexOf("=");
    if (separator <= 0) continue;
    const key = part.slice(0, separator).trim();
    const value = part.slice(separator + 1).trim();
    if (key === "t" && timestamp === undefined) timestamp = value;
    else if (key === "v1" && hexSignaturePattern.test(value)) signatures.push(Buffer.from(value, "hex"));
    // Other schemes (v0: test-mode legacy) are ignored, as Stripe's libraries do.
  }
  if (timestamp === undefined || !timestampPattern.test(timestamp) || signatures.length === 0)
    return { ok: false, error: "signature_invalid" };

  const signedPayload = Buffer.concat([Buffer.from(`${timestamp}.`, "utf8"), params.rawBody]);
  let matched = false;
  for (const secret of params.secrets) {
    const expected = createHmac("sha256", secret).update(signedPayload).digest();
    // Every candidate is compared (no early exit), so timing does not tell which secret or slot matched.
    for (const signature of signatures) if (timingSafeEqual(expected, signature)) matched = true;
  }
  if (!matched) return { ok: false, error: "signature_invalid" };

  const timestampSeconds = Number(timestamp);
  if (Math.abs(params.nowSeconds - timestampSeconds) > params.toleranceSeconds)
    return { ok: false, error: "timestamp_outside_tolerance" };
  return { ok: true, timestampSeconds };
}
