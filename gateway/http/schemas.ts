// Request and response schemas of the API, in zod. Requests are strict: an unknown parameter is an error,
// as at Stripe. Amounts travel as decimal strings in the asset's major unit ("1.50"), never as numbers.
import { isAddress } from "viem";
import { z } from "zod";
import {
  assets,
  decimalDigitsMax,
  everyMember,
  isStorableText,
  type RailUnavailableCode,
  wholeNumber,
} from "../../core/index.ts";
import { tenantAccountAssets } from "../accounts/index.ts";
import { payeeMethodsMax, payeesListLimitMax } from "../payees/index.ts";

const accountId = z.string().regex(/^acct_[0-9a-z_]{1,64}$/, "an account id (acct_…)");

/** The codes of the assets the gateway holds. */
export const assetCodes: readonly string[] = Object.values(assets).map((asset) => asset.code);

/** What the OpenAPI document says of a schema beyond what zod writes of it: openapi.ts adds each to its registry. */
export type DocumentedAlso = {
  enum?: string[];
  pattern?: string;
  maxLength?: number;
  uniqueItems?: boolean;
  /** Exactly one of these alternatives holds (an object that takes exactly one of two fields: `{ required: [name] }` each). */
  oneOf?: { required: string[] }[];
};
export const documentedAlso = new Map<z.ZodType, DocumentedAlso>();

/** `schema`, with `more` said of it in the document. */
export function documented<T extends z.ZodType>(schema: T, more: DocumentedAlso): T {
  documentedAlso.set(schema, more);
  return schema;
}

/**
 * A request header a route reads itself (not through a headers schema, so that it refuses with its own code and
 * words), for the document: spread into the route's schema, it becomes one of the operation's parameters.
 */
export type DocumentedHeader = {
  name: string;
  required: boolean;
  description: string;
  schema: { type: "string"; minLength?: number; maxLength?: number };
};
export const documentedHeaders = (...headers: DocumentedHeader[]): Record<never, never> => ({
  "x-headers": headers,
});

/**
 * `schema` (an asset code in a request), with the codes it may take listed in the document (`enum`), so that a client
 * generated from it, or a fuzzer, knows them. Parsed as the schema says, not against the list: a code of the right
 * shape that names no asset is the route's to refuse, with its own code (unknown_asset, 400) and what it takes.
 */
export const listingAssets = (schema: z.ZodString, codes: readonly string[] = assetCodes) =>
  documented(schema, { enum: [...codes] });

/**
 * What parseAmount reads as a decimal, zero in any spelling (0, 0.00) left out: every amount a request names is
 * more than zero. Without lookahead, which some generators from patterns do not read.
 */
export const positiveDecimalPattern = "^(0\\.[0-9]*[1-9][0-9]*|[1-9][0-9]*(\\.[0-9]+)?)$";

/**
 * An amount in a request: a decimal string in the asset's major unit ("1.50"). The document gives the decimal's shape
 * (parseAmount's, more than zero); the route parses it for its asset and refuses it with the reason's own code
 * (amount_not_a_decimal, amount_too_precise, amount_not_positive, amount_too_large).
 */
export const decimalAmount = () =>
  documented(z.string().max(64), { pattern: positiveDecimalPattern, maxLength: decimalDigitsMax });

/** An asset code in a request: see listingAssets. */
export const assetCode = (example: string) =>
  listingAssets(z.string().regex(/^[A-Z0-9]{2,12}$/, `an asset code such as ${example}`));

const hex = (bytes: number) =>
  z.string().regex(new RegExp(`^0x[0-9a-fA-F]{${bytes * 2}}$`), `0x and ${bytes * 2} hex digits`);

/**
 * LUD-16: user@domain (a port allowed, as a local LNURL server has one), whose domain and port make a URL: a port
 * past 65535, or a last label of digits only that is no IPv4 address (`example.123`, `256.0.0.1`), is refused here,
 * not when the rail asks the address for an invoice. At most 254 characters, as an email address (RFC 5321): that
 * keeps the domain within the 253 the rail reads (RFC 1035) and lets the document say so, which no pattern without
 * lookahead can of the domain alone. The pattern spells both cases and bounds the port, as the document gives it
 * (a flag does not reach it); a last label of digits that is no IPv4 address is the one refusal it leaves unsaid.
 */
const lightningAddress = z
  .string()
  .max(254)
  .regex(
    /^[a-zA-Z0-9._+-]{1,64}@(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)*[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?::(?:[0-5]?[0-9]{1,4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?$/,
    "a Lightning Address (name@domain)",
  )
  .refine(
    (address) => URL.canParse(`https://${address.slice(address.indexOf("@") + 1)}`),
    "a Lightning Address whose domain and port make a URL",
  );

/** An EVM address whose checksum (EIP-55), when it is written in mixed case, is right. */
export const checksummedAddress = hex(20).refine(
  (address) => isAddress(address, { strict: true }),
  "an EVM address with a wrong EIP-55 checksum (write it all lower case, or with its checksum)",
);

/**
 * What may be a BOLT11 invoice, as a QR code or a wallet gives it (any one case, a `lightning:` prefix allowed; up
 * to the length LND reads). bolt11Destination reads the rest: a changed character is refused there.
 */
export const bolt11Shape = /^(lightning:)?ln[a-z0-9]{8,7087}$/i;

export const destinationSchema = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("account"), account: accountId }),
  z.strictObject({
    type: z.literal("evm_address"),
    address: checksummedAddress,
    /** Pay on this chain only; absent: on any EVM rail. */
    chain_id: z
      .number()
      .int()
      .positive()
      .max(2 ** 53 - 1)
      .optional(),
  }),
  z.strictObject({ type: z.literal("evm_split"), split_id: hex(32) }),
  z.strictObject({
    type: z.literal("bolt11"),
    invoice: z.string().regex(bolt11Shape, "a BOLT11 invoice"),
  }),
  z.strictObject({
    type: z.literal("lightning_node"),
    pubkey: z.string().regex(/^0[23][0-9a-f]{64}$/, "a 33-byte compressed node key in hex"),
  }),
  z.strictObject({
    type: z.literal("stripe_account"),
    account: z.string().regex(/^acct_[0-9A-Za-z]{1,64}$/, "a Stripe account id"),
  }),
  /** A Lightning Address: its LNURL-pay server is asked for an invoice of the amount, then the invoice is paid. */
  z.strictObject({ type: z.literal("lightning_address"), address: lightningAddress }),
  /** A payee of the tenant's: every rail that reaches one of its methods competes. */
  z.strictObject({
    type: z.literal("payee"),
    payee: z.string().regex(/^pye_[0-9a-z_]{1,64}$/, "a payee id"),
  }),
]);

const railName = z.string().regex(/^[a-z][a-z0-9-]{0,31}$/);

const constraints = z.strictObject({
  max_fee_bps: z.number().int().min(0).max(10_000).optional(),
  max_fee_usd: z
    .string()
    .regex(/^(0|[1-9][0-9]{0,12})(\.[0-9]{1,6})?$/, "a USD amount with at most 6 decimals")
    .optional(),
  max_latency_ms: z.number().int().positive().max(86_400_000).optional(),
  rails: z
    .strictObject({ allow: z.array(railName).max(16).optional(), deny: z.array(railName).max(16).optional() })
    .optional(),
});
export type ConstraintsBody = z.infer<typeof constraints>;

export const quoteTtlSecondsMax = 900;

export const createQuoteBody = z.strictObject({
  amount: decimalAmount(),
  asset: assetCode("USDC"),
  destination: destinationSchema,
  constraints: constraints.optional(),
  ttl_seconds: z.number().int().min(1).max(quoteTtlSecondsMax).optional(),
});

/** Text without a NUL character (U+0000). */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching the NUL character is this pattern's purpose.
export const withoutNul = /^[^\u0000]*$/;

/**
 * Text PostgreSQL can store as sent: no NUL character, no unpaired surrogate. text-safety.ts refuses such text on
 * every route before validation; the schema says it too, so that the document and a direct parse agree. The document
 * says the NUL part as a pattern (when the text has no pattern of its own), which any tool reads; an unpaired
 * surrogate has no pattern that reads the same outside ECMAScript.
 */
export const storable = (schema: z.ZodString) => {
  const refined = schema.refine(isStorableText, "no NUL character or unpaired UTF-16 surrogate");
  const hasFormat = (schema._zod.def.checks ?? []).some((check) => check._zod.def.check === "string_format");
  return hasFormat ? refined : documented(refined, { pattern: withoutNul.source });
};

/** A resource's metadata (payments, payees, …): at most 20 keys of short text, each storable. */
export const metadataSchema = z
  .record(storable(z.string().max(40)), storable(z.string().max(500)))
  .refine((m) => Object.keys(m).length <= 20, "at most 20 keys");

export const createPaymentBody = z.strictObject({
  quote: z
    .string()
    .regex(/^quo_[0-9a-z]{26}$/, "a quote id (quo_…)")
    .optional(),
  amount: decimalAmount(),
  asset: assetCode("USDC"),
  source: z.strictObject({ account: accountId }),
  destination: destinationSchema,
  constraints: constraints.optional(),
  metadata: metadataSchema.optional(),
});
export type CreatePaymentBody = z.infer<typeof createPaymentBody>;

export const idParams = (prefix: "pay" | "acct" | "inv" | "pye" | "rfd") =>
  z.strictObject({ id: z.string().regex(new RegExp(`^${prefix}_[0-9a-z_]{1,64}$`)) });

const costView = z.object({
  network_usd: z.string(),
  provider_usd: z.string(),
  fx_usd: z.string(),
  /** network + provider + fx: what the payment really costs, which its caps bound. */
  fee_usd: z.string(),
  failure_usd: z.string(),
  latency_usd: z.string(),
  /** fee + failure + latency: what the router ranks by. */
  total_usd: z.string(),
});

export const routeView = z.object({
  chosen: z.string().nullable(),
  candidates: z.array(
    z.object({
      rail: z.string(),
      kind: z.string(),
      /** The destination this rail pays (for a payee, the method it reaches). */
      destination: z.record(z.string(), z.union([z.string(), z.number()])),
      /** What is sent on the rail, in its asset. */
      amount: z.string(),
      asset: z.string(),
      cost: costView,
      /** The most this payment may spend in fees on this rail. */
      fee_cap_usd: z.string(),
      latency_ms: z.number(),
    }),
  ),
  excluded: z.array(z.object({ rail: z.string(), reason: z.string(), detail: z.string() })),
});

/** A settled leg's proof, per rail: tx hash and log, preimage, PSP id. */
export const evidenceView = z.union([
  z.object({ rail: z.literal("internal") }),
  z.object({
    rail: z.literal("evm"),
    chain_id: z.number(),
    tx_hash: z.string(),
    log_index: z.number(),
    block_number: z.string(),
  }),
  z.object({ rail: z.literal("lightning"), payment_hash: z.string(), preimage: z.string() }),
  z.object({ rail: z.literal("fiat"), psp_id: z.string() }),
  z.object({ rail: z.literal("external"), rail_id: z.string(), reference: z.string() }),
]);

const failureView = z.object({ code: z.string(), message: z.string() }).nullable();

/** What an attempt or a refund paid in another asset than its rail's (gas): the asset, and the amount in it. */
export const networkFeeView = z.object({ asset: z.string(), amount: z.string() });

export const paymentView = z.object({
  id: z.string(),
  object: z.literal("payment"),
  status: z.enum(["processing", "succeeded", "failed"]),
  amount: z.string(),
  asset: z.string(),
  source: z.object({ account: z.string() }),
  destination: z.record(z.string(), z.union([z.string(), z.number()])),
  rail: z.string().nullable(),
  route: routeView.nullable(),
  attempts: z.array(
    z.object({
      id: z.string(),
      rail: z.string(),
      status: z.string(),
      /** The rail's asset, in which amount and fee are. */
      asset: z.string(),
      amount: z.string(),
      fee: z.string().nullable(),
      /**
       * What the attempt paid in another asset than its rail's: an on-chain payout's gas (ETH), as the ledger books it
       * (what the payer was charged for it is a transaction of its account). null when none, or when its gas was a
       * netted batch's.
       */
      network_fee: networkFeeView.nullable(),
      /**
       * What the rail's provider took back of the payout since it succeeded (a Stripe transfer reversal, whole or in
       * part: its `amount_reversed`), given back to the source account; zero when nothing. Each reversal is a
       * `payment.reversed` event.
       */
      amount_reversed: z.string(),
      evidence: evidenceView.nullable(),
      failure: failureView,
    }),
  ),
  failure: failureView,
  metadata: z.record(z.string(), z.string()),
  created_at: z.string(),
  updated_at: z.string(),
});
export type PaymentView = z.infer<typeof paymentView>;

export const quoteView = z.object({
  id: z.string(),
  object: z.literal("quote"),
  amount: z.string(),
  asset: z.string(),
  destination: z.record(z.string(), z.union([z.string(), z.number()])),
  route: routeView,
  rail: z.string(),
  /** What the chosen rail sends, in its asset, and the most it may spend in fees. */
  rail_amount: z.string(),
  rail_asset: z.string(),
  fee_cap_usd: z.string(),
  created_at: z.string(),
  expires_at: z.string(),
});

export const balanceView = z.object({
  object: z.literal("balance"),
  account: z.string(),
  asset: z.string(),
  available: z.string(),
  posted: z.string(),
  pending_out: z.string(),
  pending_in: z.string(),
});

/**
 * The query of a /v1 route that takes no query parameters: any is 400 parameter_unknown, as at Stripe (a client's
 * misspelt `?limit=` on a route without lists, or a filter it believes exists, is told so instead of ignored). The
 * v1 context gives it to every route of its own that declares no querystring; the server's validator checks it
 * without zod when the query is empty, which is every request that is not refused.
 */
export const noQueryParameters = z.strictObject({});

export const errorView = z.object({
  error: z
    .object({ code: z.string(), message: z.string(), param: z.string().optional() })
    .catchall(z.unknown()),
});

/** Every RailUnavailableCode once (core/rail.ts says what each means). */
const railUnavailableCodes = everyMember<RailUnavailableCode>({
  not_started: true,
  journal_torn: true,
  journal_lock_lost: true,
  node_unreachable: true,
  node_not_synced: true,
  token_unreadable: true,
  provider_unreachable: true,
});

/**
 * A rail as the health routes show it: whether it can take payments now and, when it cannot, why (`reason`: a stable
 * code and a line for the operator, naming no address, path or credential). `reason` is absent while the rail is
 * available, and from a rail that does not say why.
 */
export const railHealthView = z.object({
  available: z.boolean(),
  reason: z.object({ code: z.enum(railUnavailableCodes), message: z.string() }).optional(),
});
export type RailHealthView = z.infer<typeof railHealthView>;

export const healthView = z.object({
  status: z.literal("ok"),
  rails: z.record(z.string(), railHealthView),
  requests: z.object({
    in_flight: z.number().int(),
    in_flight_max: z.number().int(),
    /** Each tenant's share of the pool (REQUESTS_IN_FLIGHT_PER_TENANT_MAX); null: none of its own. */
    in_flight_per_tenant_max: z.number().int().nullable(),
  }),
});

export const readinessView = z.object({
  status: z.enum(["ready", "not_ready"]),
  database: z.object({ available: z.boolean(), latency_ms: z.number().int() }),
  rails: z.record(z.string(), railHealthView),
});

/** The OpenAPI document: only its frame is checked; the rest is what @fastify/swagger generated. */
export const openApiView = z.looseObject({
  openapi: z.string(),
  info: z.looseObject({ title: z.string(), version: z.string() }),
  paths: z.record(z.string(), z.unknown()),
});

export const invoiceExpirySecondsMax = 7 * 24 * 3600;

export const createInvoiceBody = z.strictObject({
  account: accountId,
  amount: decimalAmount(),
  // The invoice's account holds its asset: only a tenant account's assets are listed (ETH, which none holds, is
  // refused as asset_mismatch).
  asset: listingAssets(
    z.string().regex(/^[A-Z0-9]{2,12}$/, "an asset code such as BTC"),
    tenantAccountAssets.map((asset) => asset.code),
  ),
  /** A configured rail's id; a name no rail of this gateway has is refused (rail_not_found, 400). */
  rail: railName.optional(),
  description: storable(z.string().max(500)).optional(),
  expires_in_seconds: z.number().int().min(60).max(invoiceExpirySecondsMax).optional(),
});

export const invoiceView = z.object({
  id: z.string(),
  object: z.literal("invoice"),
  status: z.enum(["open", "paid", "reversed"]),
  account: z.string(),
  amount: z.string(),
  asset: z.string(),
  rail: z.string(),
  description: z.string(),
  /**
   * How to pay it, as its rail says: a BOLT11 request, a PaymentIntent's client secret, an EVM chain's terms. Text,
   * but an EVM invoice's `chain_id`: a number, as in a payment's evidence and destination (EIP-155, viem's
   * `chainId`). Each rail's fields are named, so that a generated client types them; a field of a rail added later
   * is text or a number.
   */
  instructions: z
    .object({
      method: z.string().optional(),
      // Lightning's.
      bolt11: z.string().optional(),
      payment_hash: z.string().optional(),
      // Stripe's (and an EVM invoice's, for its rail's wallet route: client_secret).
      payment_intent: z.string().optional(),
      client_secret: z.string().optional(),
      // An EVM rail's: the chain, the token, the deposit address and the EIP-3009 authorization's terms.
      chain_id: z.number().int().optional(),
      token: z.string().optional(),
      amount_minor: z.string().optional(),
      deposit_address: z.string().optional(),
      authorization_to: z.string().optional(),
      authorization_value: z.string().optional(),
      authorization_valid_after: z.string().optional(),
      authorization_valid_before: z.string().optional(),
      authorization_nonce: z.string().optional(),
      authorization_typed_data: z.string().optional(),
      authorization_url: z.string().optional(),
    })
    .catchall(z.union([z.string(), z.number()])),
  received_amount: z.string().nullable(),
  /** Who paid (a USDC payer's address): where a refund goes back to. */
  payer: z.string().nullable(),
  expires_at: z.string().nullable(),
  created_at: z.string(),
  paid_at: z.string().nullable(),
});
export type InvoiceView = z.infer<typeof invoiceView>;

export const createWebhookEndpointBody = z.strictObject({
  url: storable(
    z
      .string()
      .max(2_048)
      .regex(/^https?:\/\/[^\s]+$/, "an http(s) URL"),
  ),
});

export const webhookEndpointView = z.object({
  id: z.string(),
  object: z.literal("webhook_endpoint"),
  url: z.string(),
  /** Shown once: what every delivery to this endpoint is signed with (Switchyard-Signature). */
  secret: z.string(),
});

// ---- Payees

export const payeeNameLengthMax = 256;

/**
 * No control character (Unicode's Cc: U+0000–U+001F, U+007F–U+009F), written with plain escapes rather than
 * \p{Cc}, so that the OpenAPI document's pattern is one every JSON Schema tool can read.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is this pattern's purpose.
export const withoutControlCharacters = /^[^\u0000-\u001f\u007f-\u009f]*$/;

export const payeeMethodSchema = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("evm_address"),
    address: checksummedAddress,
    /** Only the rail on this chain pays it; absent or null: any chain's. */
    chain_id: z.number().int().positive().nullable().optional(),
  }),
  z.strictObject({
    type: z.literal("lightning_node"),
    pubkey: z.string().regex(/^0[23][0-9a-f]{64}$/, "a 33-byte compressed node key in lower-case hex"),
  }),
  z.strictObject({ type: z.literal("lightning_address"), address: lightningAddress }),
  z.strictObject({
    type: z.literal("stripe_account"),
    account: z.string().regex(/^acct_[0-9A-Za-z]{1,64}$/, "a Stripe account id"),
  }),
  z.strictObject({ type: z.literal("account"), account: accountId }),
]);
export type PayeeMethodBody = z.infer<typeof payeeMethodSchema>;

const payeeName = storable(
  z
    .string()
    .min(1)
    .max(payeeNameLengthMax)
    .regex(withoutControlCharacters, "a name without control characters"),
);

// Each method once: the service refuses a repeat (payee_method_duplicate), also one that differs only in how it is
// written (an address's case); the document says what a schema can, that no two are the same.
const payeeMethods = documented(z.array(payeeMethodSchema).min(1).max(payeeMethodsMax), {
  uniqueItems: true,
});

export const createPayeeBody = z.strictObject({
  name: payeeName,
  methods: payeeMethods,
  metadata: metadataSchema.optional(),
});
export type CreatePayeeBody = z.infer<typeof createPayeeBody>;

/** Each field given replaces the stored one whole; a field left out is kept. */
export const updatePayeeBody = z.strictObject({
  name: payeeName.optional(),
  methods: payeeMethods.optional(),
  metadata: metadataSchema.optional(),
});
export type UpdatePayeeBody = z.infer<typeof updatePayeeBody>;

export const listPayeesQuery = z.strictObject({
  limit: wholeNumber(1, payeesListLimitMax).optional(),
  /** A payee id: the page starts after it (older payees). */
  starting_after: z
    .string()
    .regex(/^pye_[0-9a-z]{26}$/, "a payee id (pye_…)")
    .optional(),
});

const payeeMethodView = z.discriminatedUnion("type", [
  z.object({ type: z.literal("evm_address"), address: z.string(), chain_id: z.number().nullable() }),
  z.object({ type: z.literal("lightning_node"), pubkey: z.string() }),
  z.object({ type: z.literal("lightning_address"), address: z.string() }),
  z.object({ type: z.literal("stripe_account"), account: z.string() }),
  z.object({ type: z.literal("account"), account: z.string() }),
]);

export const payeeView = z.object({
  id: z.string(),
  object: z.literal("payee"),
  name: z.string(),
  methods: z.array(payeeMethodView),
  metadata: z.record(z.string(), z.string()),
  created_at: z.string(),
  updated_at: z.string(),
});
export type PayeeView = z.infer<typeof payeeView>;

export const payeeListView = z.object({
  object: z.literal("list"),
  data: z.array(payeeView),
  has_more: z.boolean(),
});
