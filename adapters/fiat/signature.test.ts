// Signatures made by the stripe package's own test helper, verified by our check.
import Stripe from "stripe";
import { describe, expect, it } from "vitest";
import { verifyStripeSignature } from "./signature.ts";

const stripe = new Stripe("sk_test_123");
const secret = "whsec_current";
const oldSecret = "whsec_previous";
const now = 1_800_000_000;
const payload = JSON.stringify({ id: "evt_1", object: "event", type: "payment_intent.succeeded" });
const rawBody = Buffer.from(payload);

function sign(params: { secret: string; timestamp?: number; body?: string }): string {
  return stripe.webhooks.generateTestHeaderString({
    payload: params.body ?? payload,
    secret: params.secret,
    timestamp: params.timestamp ?? now,
  });
}

const verify = (
  header: string | undefined,
  overrides: { secrets?: string[]; body?: Buffer; nowSeconds?: number } = {},
) =>
  verifyStripeSignature({
    rawBody: overrides.body ?? rawBody,
    header,
    secrets: overrides.secrets ?? [secret],
    toleranceSeconds: 300,
    nowSeconds: overrides.nowSeconds ?? now,
  });

describe("verifyStripeSignature", () => {
  it("accepts a header signed with the secret", () => {
    expect(verify(sign({ secret }))).toEqual({ ok: true, timestampSeconds: now });
  });

  it("agrees with stripe's own constructEvent on the same header", () => {
    const header = sign({ secret, timestamp: Math.floor(Date.now() / 1000) });
    expect(stripe.webhooks.constructEvent(payload, header, secret).id).toBe("evt_1");
    expect(verify(header, { nowSeconds: Math.floor(Date.now() / 1000) }).ok).toBe(true);
  });

  it("refuses a missing or empty header", () => {
    expect(verify(undefined)).toEqual({ ok: false, error: "signature_missing" });
    expect(verify("  ")).toEqual({ ok: false, error: "signature_missing" });
  });

  it("refuses a header signed with another secret", () => {
    expect(verify(sign({ secret: "whsec_attacker" }))).toEqual({ ok: false, error: "signature_invalid" });
  });

  it("refuses a body changed by one byte", () => {
    const header = sign({ secret });
    const tampered = Buffer.from(payload.replace("evt_1", "evt_2"));
    expect(verify(header, { body: tampered })).toEqual({ ok: false, error: "signature_invalid" });
    // Re-serialized JSON (spaces) is not the signed bytes either.
    const reformatted = Buffer.from(JSON.stringify(JSON.parse(payload), null, 1));
    expect(verify(header, { body: reformatted })).toEqual({ ok: false, error: "signature_invalid" });
  });

  it("refuses malformed headers", () => {
    expect(verify("garbage")).toEqual({ ok: false, error: "signature_invalid" });
    expect(verify(`t=${now}`)).toEqual({ ok: false, error: "signature_invalid" });
    expect(verify(`v1=${"a".repeat(64)}`)).toEqual({ ok: false, error: "signature_invalid" });
    expect(verify(`t=${now},v1=zz`)).toEqual({ ok: false, error: "signature_invalid" });
    expect(verify(`t=abc,v1=${"a".repeat(64)}`)).toEqual({ ok: false, error: "signature_invalid" });
    expect(verify(`t=${now},v1=${"a".repeat(5000)}`)).toEqual({ ok: false, error: "signature_invalid" });
  });

  it("refuses a timestamp older or newer than the tolerance, and accepts one at its edge", () => {
    expect(verify(sign({ secret, timestamp: now - 301 }))).toEqual({
      ok: false,
      error: "timestamp_outside_tolerance",
    });
    expect(verify(sign({ secret, timestamp: now + 301 }))).toEqual({
      ok: false,
      error: "timestamp_outside_tolerance",
    });
    expect(verify(sign({ secret, timestamp: now - 300 })).ok).toBe(true);
  });

  it("checks the signature before the timestamp: a forged old header is invalid, not old", () => {
    expect(verify(sign({ secret: "whsec_attacker", timestamp: now - 10_000 }))).toEqual({
      ok: false,
      error: "signature_invalid",
    });
  });

  it("accepts either secret during a rotation, and headers carrying a signature per secret", () => {
    const secrets = [secret, oldSecret];
    expect(verify(sign({ secret: oldSecret }), { secrets }).ok).toBe(true);
    expect(verify(sign({ secret }), { secrets }).ok).toBe(true);
    // Stripe signs with both secrets during a roll: t=…,v1=<new>,v1=<old>
    const both = `${sign({ secret })},v1=${sign({ secret: oldSecret }).split("v1=")[1]}`;
    expect(verify(both, { secrets: [oldSecret] }).ok).toBe(true);
    expect(verify(both, { secrets: [secret] }).ok).toBe(true);
    // After the old secret is dropped, its signatures no longer pass.
    expect(verify(sign({ secret: oldSecret }), { secrets: [secret] })).toEqual({
      ok: false,
      error: "signature_invalid",
    });
  });

  it("refuses to run without secrets", () => {
    expect(() => verify(sign({ secret }), { secrets: [] })).toThrow(RangeError);
  });
});
