// x402 as the official clients speak it (@x402/fetch 2.x, x402-fetch 1.x): the offer read from a 402 (v2: the
// PAYMENT-REQUIRED header; v1: the JSON body's `accepts`), the `exact` scheme's EIP-3009 TransferWithAuthorization
// signed by the payer, the payment header for the retry (v2 PAYMENT-SIGNATURE, v1 X-PAYMENT) and the receipt
// (PAYMENT-RESPONSE, X-PAYMENT-RESPONSE). Framework-free: strings and objects in, strings and objects out.
import { getAddress } from "viem";
import { z } from "zod";
import { MalformedChallengeError } from "./errors.ts";

export const paymentRequiredHeader = "payment-required";
export const paymentSignatureHeader = "payment-signature";
export const paymentResponseHeader = "payment-response";
export const xPaymentHeader = "x-payment";
export const xPaymentResponseHeader = "x-payment-response";

/** The longest x402 header decoded (characters of base64). */
export const x402HeaderCharsMax = 65_536;

type Hex = `0x${string}`;

/** What signs the EIP-3009 authorization: its address and EIP-712 typed-data signing (see payers.ts). */
export type EvmPayer = {
  getAddress(): Promise<Hex>;
  signTypedData(typedData: {
    domain: { name: string; version: string; chainId: number; verifyingContract: Hex };
    types: typeof transferWithAuthorizationTypes;
    primaryType: "TransferWithAuthorization";
    message: {
      from: Hex;
      to: Hex;
      value: bigint;
      validAfter: bigint;
      validBefore: bigint;
      nonce: Hex;
    };
  }): Promise<Hex>;
};

export const transferWithAuthorizationTypes = {
  TransferWithAuthorization: [
    { name: "from", type: "address" },
    { name: "to", type: "address" },
    { name: "value", type: "uint256" },
    { name: "validAfter", type: "uint256" },
    { name: "validBefore", type: "uint256" },
    { name: "nonce", type: "bytes32" },
  ],
} as const;

/** x402 v1's network names and their chain ids (the official SDK's map, @x402/evm's EVM_NETWORK_CHAIN_ID_MAP). */
export const x402V1Networks: Readonly<Record<string, number>> = {
  ethereum: 1,
  sepolia: 11_155_111,
  abstract: 2741,
  "abstract-testnet": 11_124,
  "base-sepolia": 84_532,
  base: 8453,
  "avalanche-fuji": 43_113,
  avalanche: 43_114,
  iotex: 4689,
  sei: 1329,
  "sei-testnet": 1328,
  polygon: 137,
  "polygon-amoy": 80_002,
  peaq: 3338,
  story: 1514,
  educhain: 41_923,
  "skale-base-sepolia": 324_705_682,
  megaeth: 4326,
  monad: 143,
  stable: 988,
  "stable-testnet": 2201,
  celo: 42_220,
  flare: 14,
};

/** The budget's and the limits' name for a token on a chain: CAIP-19 (`eip155:8453/erc20:0x8335…`, lower case). */
export function x402AssetId(network: string, asset: string): string {
  return `${network}/erc20:${asset.toLowerCase()}`;
}

/** One entry of `accepts`, read. `requirement` is the entry as the server sent it (v2 echoes it in `accepted`). */
export type X402Offer = {
  readonly version: 1 | 2;
  readonly scheme: string;
  /** As the server named it: CAIP-2 in v2, a name (`base-sepolia`) in v1. */
  readonly network: string;
  /** CAIP-2 (`eip155:84532`) for either version, or null when the network is not an EVM chain we know. */
  readonly caip2: string | null;
  readonly chainId: number | null;
  readonly asset: string;
  readonly amount: bigint;
  readonly payTo: string;
  readonly maxTimeoutSeconds: number;
  readonly extra: Readonly<Record<string, unknown>>;
  readonly requirement: Readonly<Record<string, unknown>>;
};

export type X402Challenge = {
  readonly version: 1 | 2;
  readonly offers: readonly X402Offer[];
  /** Entries that could not be read, one line each (kept for the error that says what was offered). */
  readonly unreadable: readonly string[];
  /** v2: the `resource` and `extensions` to echo in the payment. */
  readonly resource: unknown;
  readonly extensions: unknown;
};

const decimal = z.string().regex(/^\d{1,78}$/);
const requirementV2 = z.looseObject({
  scheme: z.string().min(1),
  network: z.string().min(1),
  amount: decimal,
  asset: z.string().min(1),
  payTo: z.string().min(1),
  maxTimeoutSeconds: z.number().int().positive(),
  extra: z.record(z.string(), z.unknown()).optional(),
});
const requirementV1 = z.looseObject({
  scheme: z.string().min(1),
  network: z.string().min(1),
  maxAmountRequired: decimal,
  asset: z.string().min(1),
  payTo: z.string().min(1),
  maxTimeoutSeconds: z.number().int().positive(),
  extra: z.record(z.string(), z.unknown()).nullish(),
});
const paymentRequiredV2 = z.looseObject({
  x402Version: z.literal(2),
  accepts: z.array(z.unknown()).max(64),
  resource: z.unknown().optional(),
  extensions: z.unknown().optional(),
  error: z.string().optional(),
});
const paymentRequiredV1 = z.looseObject({
  x402Version: z.literal(1),
  accepts: z.array(z.unknown()).max(64),
  error: z.string().optional(),
});

/** Standard base64 (with padding) of UTF-8 JSON, as the official packages write it; anything else is null. */
export function decodeBase64Json(value: string): unknown {
  const trimmed = value.trim();
  if (trimmed.length === 0 || trimmed.length > x402HeaderCharsMax || !/^[A-Za-z0-9+/]*={0,2}$/.test(trimmed))
    return null;
  try {
    return JSON.parse(Buffer.from(trimmed, "base64").toString("utf8"));
  } catch (error) {
    if (error instanceof SyntaxError) return null;
    throw error;
  }
}

export function encodeBase64Json(value: unknown): string {
  return Buffer.from(JSON.stringify(value), "utf8").toString("base64");
}

function caip2Of(network: string, version: 1 | 2): { caip2: string | null; chainId: number | null } {
  if (version === 1) {
    const chainId = x402V1Networks[network];
    return chainId === undefined ? { caip2: null, chainId: null } : { caip2: `eip155:${chainId}`, chainId };
  }
  const match = /^eip155:([1-9]\d{0,15})$/.exec(network);
  if (match === null) return { caip2: null, chainId: null };
  const chainId = Number(match[1]);
  return Number.isSafeInteger(chainId) ? { caip2: network, chainId } : { caip2: null, chainId: null };
}

function readOffers(accepts: readonly unknown[], version: 1 | 2) {
  const offers: X402Offer[] = [];
  const unreadable: string[] = [];
  for (const [index, entry] of accepts.entries()) {
    if (version === 2) {
      const parsed = requirementV2.safeParse(entry);
      if (!parsed.success) {
        unreadable.push(`x402 v2 accepts[${index}] unreadable`);
        continue;
      }
      const r = parsed.data;
      offers.push({
        version,
        scheme: r.scheme,
        network: r.network,
        ...caip2Of(r.network, 2),
        asset: r.asset,
        amount: BigInt(r.amount),
        payTo: r.payTo,
        maxTimeoutSeconds: r.maxTimeoutSeconds,
        extra: r.extra ?? {},
        requirement: entry as Record<string, unknown>,
      });
    } else {
      const parsed = requirementV1.safeParse(entry);
      if (!parsed.success) {
        unreadable.push(`x402 v1 accepts[${index}] unreadable`);
        continue;
      }
      const r = parsed.data;
      offers.push({
        version,
        scheme: r.scheme,
        network: r.network,
        ...caip2Of(r.network, 1),
        asset: r.asset,
        amount: BigInt(r.maxAmountRequired),
        payTo: r.payTo,
        maxTimeoutSeconds: r.maxTimeoutSeconds,
        extra: r.extra ?? {},
        requirement: entry as Record<string, unknown>,
      });
    }
  }
  if (offers.length === 0 && unreadable.length > 0)
    throw new MalformedChallengeError("No x402 offer in the 402 can be read", {
      details: unreadable.join("; "),
    });
  return { offers, unreadable };
}

/**
 * The x402 challenge of a 402, or null when it carries none: the v2 header first, then a v1 body (`body` is the
 * 402's body as text, or null when it was not read). A header or body that claims x402 and cannot be read throws
 * MalformedChallengeError.
 */
export function parseX402Challenge(headers: Headers, body: string | null): X402Challenge | null {
  const header = headers.get(paymentRequiredHeader);
  if (header !== null) {
    const decoded = paymentRequiredV2.safeParse(decodeBase64Json(header));
    if (!decoded.success)
      throw new MalformedChallengeError("The PAYMENT-REQUIRED header cannot be read", {
        details: "not base64 JSON of an x402 v2 PaymentRequired",
      });
    return {
      version: 2,
      ...readOffers(decoded.data.accepts, 2),
      resource: decoded.data.resource,
      extensions: decoded.data.extensions,
    };
  }
  if (body === null) return null;
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (error) {
    if (error instanceof SyntaxError) return null;
    throw error;
  }
  if (typeof json !== "object" || json === null || (json as { x402Version?: unknown }).x402Version !== 1)
    return null;
  const decoded = paymentRequiredV1.safeParse(json);
  if (!decoded.success)
    throw new MalformedChallengeError("The x402 v1 body cannot be read", { details: "no `accepts` array" });
  return { version: 1, ...readOffers(decoded.data.accepts, 1), resource: undefined, extensions: undefined };
}

/** Why an offer cannot be paid with EIP-3009 `exact`, or null when it can. */
export function unpayableReason(offer: X402Offer): string | null {
  if (offer.scheme !== "exact") return `scheme ${offer.scheme}`;
  if (offer.chainId === null) return `network ${offer.network}`;
  if (!/^0x[0-9a-fA-F]{40}$/.test(offer.asset) || !/^0x[0-9a-fA-F]{40}$/.test(offer.payTo))
    return "asset or payTo not an address";
  if (typeof offer.extra.name !== "string" || typeof offer.extra.version !== "string")
    return "no EIP-712 domain (extra.name, extra.version)";
  const method = offer.extra.assetTransferMethod;
  if (method !== undefined && method !== "eip3009") return `transfer method ${String(method)}`;
  return null;
}

export function describeOffer(offer: X402Offer): string {
  return `x402 v${offer.version} ${offer.scheme} ${offer.network} ${offer.asset} ${offer.amount}`;
}

/** How far back an authorization is valid from (the official clients' 10 minutes, for clock skew). */
export const validAfterSkewSeconds = 600;

/**
 * The longest an authorization is valid for by default, whatever the server's maxTimeoutSeconds: one the server
 * refused, or never answered, stays a bearer authorization of the payer's money until it lapses.
 */
export const validSecondsMaxDefault = 600;

/**
 * Signs `offer` (checked by `unpayableReason` first) and returns the payment header for the retry: its name
 * (PAYMENT-SIGNATURE for v2, X-PAYMENT for v1) and value. `nowMs` and `nonce` (32 random bytes, 0x hex) are given.
 */
export async function createX402Payment(params: {
  payer: EvmPayer;
  challenge: X402Challenge;
  offer: X402Offer;
  nowMs: number;
  nonce: Hex;
  /** The longest the authorization is valid for (s), below the offer's maxTimeoutSeconds; default 600. */
  validSecondsMax?: number;
}): Promise<{ name: string; value: string }> {
  const { payer, challenge, offer, nonce } = params;
  const now = BigInt(Math.floor(params.nowMs / 1000));
  const validSeconds = Math.min(offer.maxTimeoutSeconds, params.validSecondsMax ?? validSecondsMaxDefault);
  const authorization = {
    from: getAddress(await payer.getAddress()),
    to: getAddress(offer.payTo),
    value: offer.amount,
    validAfter: now - BigInt(validAfterSkewSeconds),
    validBefore: now + BigInt(validSeconds),
    nonce,
  };
  const signature = await payer.signTypedData({
    domain: {
      name: offer.extra.name as string,
      version: offer.extra.version as string,
      chainId: offer.chainId!,
      verifyingContract: getAddress(offer.asset),
    },
    types: transferWithAuthorizationTypes,
    primaryType: "TransferWithAuthorization",
    message: authorization,
  });
  const payload = {
    signature,
    authorization: {
      from: authorization.from,
      to: authorization.to,
      value: authorization.value.toString(),
      validAfter: authorization.validAfter.toString(),
      validBefore: authorization.validBefore.toString(),
      nonce,
    },
  };
  if (offer.version === 1)
    return {
      name: xPaymentHeader,
      value: encodeBase64Json({ x402Version: 1, scheme: offer.scheme, network: offer.network, payload }),
    };
  return {
    name: paymentSignatureHeader,
    value: encodeBase64Json({
      x402Version: 2,
      ...(challenge.resource === undefined ? {} : { resource: challenge.resource }),
      accepted: offer.requirement,
      payload,
      ...(challenge.extensions === undefined ? {} : { extensions: challenge.extensions }),
    }),
  };
}

/** The settlement receipt a paid answer carries (PAYMENT-RESPONSE, else X-PAYMENT-RESPONSE), as sent. */
export type X402Receipt = {
  readonly success: boolean;
  readonly transaction: string;
  readonly network: string;
  readonly payer?: string;
  readonly errorReason?: string;
};

const receiptSchema = z.looseObject({
  success: z.boolean(),
  transaction: z.string().optional().default(""),
  network: z.string().optional().default(""),
  payer: z.string().optional(),
  errorReason: z.string().optional(),
});

/** The receipt of an answer, or null when it has none (or one that cannot be read). */
export function readX402Receipt(headers: Headers): X402Receipt | null {
  const header = headers.get(paymentResponseHeader) ?? headers.get(xPaymentResponseHeader);
  if (header === null) return null;
  const parsed = receiptSchema.safeParse(decodeBase64Json(header));
  return parsed.success ? parsed.data : null;
}

/** The server's reason for refusing a paid retry: the receipt's errorReason, a fresh challenge's or a body's `error`. */
export function x402RefusalReason(headers: Headers, body: string | null): string | null {
  const receipt = readX402Receipt(headers);
  if (receipt?.errorReason !== undefined) return receipt.errorReason;
  const required = headers.get(paymentRequiredHeader);
  if (required !== null) {
    const decoded = decodeBase64Json(required) as { error?: unknown } | null;
    if (typeof decoded?.error === "string") return decoded.error;
  }
  return bodyReason(body);
}

/** A refusal code in a JSON body: Switchyard's `refusal.code`, an API error's `code`, x402 v1's `error`. */
export function bodyReason(body: string | null): string | null {
  if (body === null) return null;
  try {
    const json = JSON.parse(body) as Record<string, unknown> | null;
    if (typeof json !== "object" || json === null) return null;
    const refusal = json.refusal as { code?: unknown } | undefined;
    if (typeof refusal?.code === "string") return refusal.code;
    const error = json.error as { code?: unknown } | string | undefined;
    if (typeof error === "string" && error.length > 0) return error;
    if (typeof error === "object" && error !== null && typeof error.code === "string") return error.code;
    if (typeof json.code === "string") return json.code;
    return null;
  } catch (error) {
    if (error instanceof SyntaxError) return null;
    throw error;
  }
}
