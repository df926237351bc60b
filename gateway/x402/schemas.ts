// x402's wire objects, v1 and v2, as the specification (coinbase/x402 specs/x402-specification-v1.md, -v2.md) and
// the official packages (@x402/core's schemas, x402's legacy ones) shape them. Incoming objects are parsed as the
// reference parses them (unknown fields kept, so a v2 `accepted` can be compared whole); what the gateway emits is
// built from the types below and checked against the same schemas in tests.
import { z } from "zod";

const nonEmpty = z.string().min(1);
const record = z.record(z.string(), z.unknown());

/** A CAIP-2 network id (`eip155:84532`): v2. */
export const caip2Network = z
  .string()
  .min(3)
  .refine((value) => value.includes(":"), "a CAIP-2 network, e.g. eip155:84532");

// ---- v1

export const paymentRequirementsV1 = z.object({
  scheme: nonEmpty,
  network: nonEmpty,
  maxAmountRequired: nonEmpty,
  resource: nonEmpty,
  description: z.string(),
  mimeType: z.string().optional(),
  outputSchema: record.nullish(),
  payTo: nonEmpty,
  maxTimeoutSeconds: z.number().positive(),
  asset: nonEmpty,
  extra: record.nullish(),
});
export type PaymentRequirementsV1 = z.infer<typeof paymentRequirementsV1>;

export const paymentRequiredV1 = z.object({
  x402Version: z.literal(1),
  error: z.string().optional(),
  accepts: z.array(paymentRequirementsV1).min(1),
});
export type PaymentRequiredV1 = z.infer<typeof paymentRequiredV1>;

export const paymentPayloadV1 = z.object({
  x402Version: z.literal(1),
  scheme: nonEmpty,
  network: nonEmpty,
  payload: record,
});
export type PaymentPayloadV1 = z.infer<typeof paymentPayloadV1>;

// ---- v2

export const resourceInfo = z.object({
  url: nonEmpty,
  description: z.string().nullish(),
  mimeType: z.string().nullish(),
});
export type ResourceInfo = z.infer<typeof resourceInfo>;

export const paymentRequirementsV2 = z.object({
  scheme: nonEmpty,
  network: caip2Network,
  amount: nonEmpty,
  asset: nonEmpty,
  payTo: nonEmpty,
  maxTimeoutSeconds: z.number().positive(),
  extra: record.nullish(),
});
export type PaymentRequirementsV2 = z.infer<typeof paymentRequirementsV2>;

export const paymentRequiredV2 = z.object({
  x402Version: z.literal(2),
  error: z.string().nullish(),
  resource: resourceInfo,
  accepts: z.array(paymentRequirementsV2).min(1),
  extensions: record.nullish(),
});
export type PaymentRequiredV2 = z.infer<typeof paymentRequiredV2>;

export const paymentPayloadV2 = z.object({
  x402Version: z.literal(2),
  resource: resourceInfo.nullish(),
  accepted: paymentRequirementsV2,
  payload: record,
  extensions: record.nullish(),
});
export type PaymentPayloadV2 = z.infer<typeof paymentPayloadV2>;

export const paymentPayload = z.discriminatedUnion("x402Version", [paymentPayloadV1, paymentPayloadV2]);
export type PaymentPayload = z.infer<typeof paymentPayload>;

export const paymentRequirements = z.union([paymentRequirementsV2, paymentRequirementsV1]);
export type PaymentRequirements = PaymentRequirementsV1 | PaymentRequirementsV2;

// ---- the `exact` scheme on EVM (EIP-3009)

const uint256Text = z.string().regex(/^[0-9]{1,78}$/, "a whole number in decimal");
const hexOf = (bytes: number) => z.string().regex(new RegExp(`^0x[0-9a-fA-F]{${bytes * 2}}$`));

/** `payload` of an `exact` EVM payment by EIP-3009: the authorization and its signature (65 bytes, or longer for a contract wallet). */
export const exactEvmPayload = z.object({
  signature: z.string().regex(/^0x([0-9a-fA-F]{2}){65,4096}$/, "a hex signature"),
  authorization: z.object({
    from: hexOf(20),
    to: hexOf(20),
    value: uint256Text,
    validAfter: uint256Text,
    validBefore: uint256Text,
    nonce: hexOf(32),
  }),
});
export type ExactEvmPayload = z.infer<typeof exactEvmPayload>;

// ---- answers

/** SettleResponse, also the `PAYMENT-RESPONSE` / `X-PAYMENT-RESPONSE` receipt. */
export const settleResponse = z.object({
  success: z.boolean(),
  errorReason: z.string().optional(),
  errorMessage: z.string().optional(),
  payer: z.string().optional(),
  transaction: z.string(),
  network: z.string(),
  amount: z.string().optional(),
});
export type SettleResponse = z.infer<typeof settleResponse>;

export const verifyResponse = z.object({
  isValid: z.boolean(),
  invalidReason: z.string().optional(),
  invalidMessage: z.string().optional(),
  payer: z.string().optional(),
});
export type VerifyResponse = z.infer<typeof verifyResponse>;

export const supportedKind = z.object({
  x402Version: z.number().int(),
  scheme: z.string(),
  network: z.string(),
  extra: record.optional(),
});

export const supportedResponse = z.object({
  kinds: z.array(supportedKind),
  extensions: z.array(z.string()),
  signers: z.record(z.string(), z.array(z.string())),
});
export type SupportedResponse = z.infer<typeof supportedResponse>;

/** The facilitator's request body for /verify and /settle (the official HTTPFacilitatorClient's). */
export const facilitatorRequest = z.object({
  x402Version: z.number().int(),
  paymentPayload: record,
  paymentRequirements: record,
});
