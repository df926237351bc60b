// How a delivery is signed, as Standard Webhooks (standardwebhooks.com) says: `webhook-id` (the event's id),
// `webhook-timestamp` (unix seconds), and `webhook-signature`: `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`
// keyed with the secret's base64 part decoded, one space-separated signature per secret in force (during a
// rotation's overlap, the new one and the one before). Receivers verify with any Standard Webhooks library.
//
// For one release the signature of before stays alongside, `Switchyard-Signature: t=<unix seconds>,v1=<hex>`
// (HMAC-SHA256 of "<t>.<body>" keyed with the whole secret text, whsec_ included), with one `v1=` per secret.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { Webhook } from "standardwebhooks";

/** How many random bytes a secret holds (Standard Webhooks: 24 to 64). */
export const webhookSecretBytes = 32;

export const legacySignatureHeader = "switchyard-signature";

/** A new secret: `whsec_` and the base64 of its random bytes. */
export function newWebhookSecret(): string {
  return `whsec_${randomBytes(webhookSecretBytes).toString("base64")}`;
}

/**
 * The key a secret stands for: its base64 part decoded. Secrets made before Standard Webhooks signing were
 * base64url (24 bytes); Node decodes both alphabets, so they keep signing (receivers whose library takes only
 * base64 rotate to a new secret).
 */
function keyOf(secret: string): Buffer {
  return Buffer.from(secret.startsWith("whsec_") ? secret.slice("whsec_".length) : secret, "base64");
}

export type SignedHeaders = {
  "webhook-id": string;
  "webhook-timestamp": string;
  "webhook-signature": string;
  "switchyard-signature": string;
};

/**
 * The headers of one delivery of `body` (the exact bytes sent) for the event `eventId`, signed with each of the
 * endpoint's secrets in force, newest first.
 */
export function signedHeaders(
  secrets: readonly string[],
  eventId: string,
  timestampSeconds: number,
  body: string,
): SignedHeaders {
  if (secrets.length === 0) throw new RangeError("a delivery is signed with at least one secret");
  const at = new Date(timestampSeconds * 1000);
  return {
    "webhook-id": eventId,
    "webhook-timestamp": String(timestampSeconds),
    "webhook-signature": secrets
      .map((secret) => new Webhook(keyOf(secret), { format: "raw" }).sign(eventId, at, body))
      .join(" "),
    [legacySignatureHeader]: [
      `t=${timestampSeconds}`,
      ...secrets.map((secret) => `v1=${legacyMac(secret, body, timestampSeconds)}`),
    ].join(","),
  };
}

function legacyMac(secret: string, body: string, timestampSeconds: number): string {
  return createHmac("sha256", secret).update(`${timestampSeconds}.${body}`).digest("hex");
}

/** For receivers of Switchyard-Signature (and tests): any `v1=` matching, within the tolerance. */
export function verifyLegacySignature(params: {
  secret: string;
  body: string;
  header: string;
  nowSeconds: number;
  toleranceSeconds: number;
}): boolean {
  const parts = params.header.split(",").map((part) => part.split("=", 2) as [string, string | undefined]);
  const timestamp = Number(parts.find(([name]) => name === "t")?.[1]);
  if (!Number.isInteger(timestamp) || Math.abs(params.nowSeconds - timestamp) > params.toleranceSeconds)
    return false;
  const expected = Buffer.from(legacyMac(params.secret, params.body, timestamp), "hex");
  return parts.some(([name, value]) => {
    if (name !== "v1" || value === undefined) return false;
    const given = Buffer.from(value, "hex");
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}
