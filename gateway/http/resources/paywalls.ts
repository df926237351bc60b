// /v1/paywalls: a tenant's priced resources (create with Idempotency-Key as other POSTs, retrieve, list, update —
// each field given replaced whole — and delete), and /v1/paywall_verdicts: the paywall's verdict for a request
// the tenant's own server received (remotePaywall), and the completion of a paid one after its handler. Another
// tenant's paywall or verdict is not found, never forbidden.
import fp from "fastify-plugin";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { assetByCode, everyMember, formatAmount, parseAmount } from "../../../core/index.ts";
import type { AccountCache } from "../../accounts/index.ts";
import type { Db } from "../../db/index.ts";
import { whenUndelivered } from "../../paywall/fastify.ts";
import {
  addPaywall,
  deletePaywall,
  getPaywall,
  type HeaderLine,
  type Paywall,
  type PaywallFields,
  type PaywallRefusal,
  type PaywallResult,
  type PaywallService,
  type PaywallsDeps,
  paywallOffersMax,
  paywallResourceLengthMax,
  paywallResourcePattern,
  paywallSplitSharesMax,
  paywallTokenLifetimeSecondsDefault,
  paywallTokenLifetimeSecondsMax,
  updatePaywall,
} from "../../paywall/index.ts";
import { remotePaywallCompleteTimeoutMsDefault } from "../../paywall/remote.ts";
import { outlastingWait } from "../../paywall/socket-wait.ts";
import { tenantOf } from "../auth.ts";
import { ApiError } from "../errors.ts";
import { clientGone, listPage, listParams, listQuery, listView } from "../lists.ts";
import { assetCode, decimalAmount, documented, errorView, metadataSchema, storable } from "../schemas.ts";

export type PaywallRoutesOptions = {
  db: Db;
  accounts: AccountCache;
  paywalls: PaywallService;
  nowMs: () => number;
};

/** What a paywall's fields may be refused with, made or changed: every PaywallRefusal but the ids in a path (404s). */
const paywallFieldRefusals = everyMember<
  Exclude<PaywallRefusal, "paywall_not_found" | "paywall_verdict_not_found">
>({
  paywall_resource_taken: true,
  paywall_scheme_unavailable: true,
  paywall_account_missing: true,
  paywall_split_invalid: true,
  paywalls_too_many: true,
  account_not_found: true,
  payee_not_found: true,
  unknown_asset: true,
  amount_not_a_decimal: true,
  amount_not_positive: true,
  amount_too_precise: true,
  amount_too_large: true,
  parameter_invalid: true,
});

const paywallId = z.string().regex(/^pwl_[0-9a-z]{1,64}$/, "a paywall id (pwl_…)");
const priceSchema = z.strictObject({
  amount: decimalAmount(),
  asset: assetCode("USD"),
});
const offerSchema = z.strictObject({
  scheme: z.enum(["x402", "l402"]),
  rail: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/),
});
const splitSchema = z.strictObject({
  payee: z.string().regex(/^pye_[0-9a-z_]{1,64}$/, "a payee id (pye_…)"),
  basis_points: z.number().int().min(1).max(10_000),
});
const accountsSchema = z
  .array(z.string().regex(/^acct_[0-9a-z_]{1,64}$/, "an account id (acct_…)"))
  .min(1)
  .max(paywallOffersMax);
const l402Schema = z.strictObject({
  token_lifetime_seconds: z.number().int().min(60).max(paywallTokenLifetimeSecondsMax).optional(),
  token_requests_max: z.number().int().min(1).max(1_000_000_000).nullable().optional(),
});

const fieldsShape = {
  // Checked by the paywall service (parameter_invalid, its own words); the document states the same pattern.
  resource: documented(z.string().min(1).max(paywallResourceLengthMax), {
    pattern: paywallResourcePattern.source,
  }),
  description: storable(z.string().max(500)),
  mime_type: z
    .string()
    .regex(/^[a-z0-9.+-]+\/[a-z0-9.+-]+$/i)
    .max(100),
  price: priceSchema,
  offers: z.array(offerSchema).min(1).max(paywallOffersMax),
  accounts: accountsSchema,
  split: z.array(splitSchema).max(paywallSplitSharesMax),
  l402: l402Schema,
  metadata: metadataSchema,
};

export const createPaywallBody = z.strictObject({
  ...fieldsShape,
  description: fieldsShape.description.optional(),
  mime_type: fieldsShape.mime_type.optional(),
  split: fieldsShape.split.optional(),
  l402: fieldsShape.l402.optional(),
  metadata: fieldsShape.metadata.optional(),
});
export const updatePaywallBody = z.strictObject({
  resource: fieldsShape.resource.optional(),
  description: fieldsShape.description.optional(),
  mime_type: fieldsShape.mime_type.optional(),
  price: fieldsShape.price.optional(),
  offers: fieldsShape.offers.optional(),
  accounts: fieldsShape.accounts.optional(),
  split: fieldsShape.split.optional(),
  l402: fieldsShape.l402.optional(),
  metadata: fieldsShape.metadata.optional(),
});

export const paywallView = z.object({
  id: z.string(),
  object: z.literal("paywall"),
  resource: z.string(),
  description: z.string(),
  mime_type: z.string(),
  price: z.object({ amount: z.string(), asset: z.string() }),
  offers: z.array(z.object({ scheme: z.string(), rail: z.string() })),
  /** The account credited in each asset offered. */
  accounts: z.record(z.string(), z.string()),
  split: z.array(
    z.object({ payee: z.string(), basis_points: z.number(), accounts: z.record(z.string(), z.string()) }),
  ),
  l402: z.object({ token_lifetime_seconds: z.number(), token_requests_max: z.number().nullable() }),
  metadata: z.record(z.string(), z.string()),
  created_at: z.string(),
  updated_at: z.string(),
});
type PaywallView = z.infer<typeof paywallView>;

export function presentPaywall(paywall: Paywall): PaywallView {
  return {
    id: paywall.id,
    object: "paywall",
    resource: paywall.resource,
    description: paywall.description,
    mime_type: paywall.mimeType,
    price: {
      amount: formatAmount(paywall.price.amount, paywall.price.asset),
      asset: paywall.price.asset.code,
    },
    offers: paywall.offers.map((offer) => ({ scheme: offer.scheme, rail: offer.rail })),
    accounts: { ...paywall.accounts },
    split: paywall.split.map((share) => ({
      payee: share.payeeId,
      basis_points: share.basisPoints,
      accounts: { ...share.accounts },
    })),
    l402: {
      token_lifetime_seconds: paywall.tokenLifetimeSeconds,
      token_requests_max: paywall.tokenRequestsMax,
    },
    metadata: { ...paywall.metadata },
    created_at: paywall.createdAt.toISOString(),
    updated_at: paywall.updatedAt.toISOString(),
  };
}

// A header line, [name, value]: an array of two strings rather than a tuple, whose JSON Schema (prefixItems) tools
// reading the document as OpenAPI 3.0 (schemathesis among them) cannot take.
const headerLine = z.array(z.string()).length(2);
// The request's text is storable as every body's is (text-safety.ts refuses a NUL on every route): said here too, so
// that the document does not offer a URL or header holding one.
const headerText = () => storable(z.string().max(16_384));
export const verdictBody = z.strictObject({
  method: z.string().regex(/^[A-Z]{1,16}$/),
  url: storable(z.string().min(1).max(8_192)),
  headers: z
    .record(storable(z.string().max(256)), z.union([headerText(), z.array(headerText()).max(16)]))
    .refine((headers) => Object.keys(headers).length <= 128, "at most 128 headers"),
  raw_headers: z.array(headerText()).max(256).optional(),
});
const verdictView = z.union([
  z.object({ verdict: z.literal("free") }),
  z.object({
    verdict: z.enum(["preflight", "challenge"]),
    status: z.number(),
    headers: z.array(headerLine),
    body: z.record(z.string(), z.unknown()).optional(),
  }),
  z.object({
    verdict: z.literal("paid"),
    id: z.string(),
    paywall: z.string(),
    scheme: z.string(),
    payer: z.string(),
  }),
]);
const completeBody = z.strictObject({ served: z.boolean() });
const completionView = z.union([
  z.object({ result: z.literal("settled"), headers: z.array(headerLine) }),
  z.object({
    result: z.literal("refused"),
    status: z.number(),
    headers: z.array(headerLine),
    body: z.record(z.string(), z.unknown()),
  }),
]);

/** Header lines as the view's mutable tuples. */
const lines = (headers: readonly HeaderLine[]): [string, string][] =>
  headers.map(([name, value]) => [name, value]);

function paywallOf(result: PaywallResult): Paywall {
  if (result.ok) return result.paywall;
  throw new ApiError(
    result.refusal,
    result.message,
    result.param === undefined ? {} : { param: result.param },
  );
}

function priceOf(body: z.infer<typeof priceSchema>): PaywallFields["price"] {
  const asset = assetByCode(body.asset);
  if (asset === null)
    throw new ApiError("unknown_asset", `no asset "${body.asset}"`, { param: "price.asset" });
  const amount = parseAmount(body.amount, asset);
  if (!amount.ok)
    throw new ApiError(amount.error, `"${body.amount}" is not a valid ${asset.code} price`, {
      param: "price.amount",
    });
  return { asset, amount: amount.value };
}

/** The fields a body gives, in the store's terms (an update leaves out what it does not give). */
function fieldsOf(body: z.infer<typeof updatePaywallBody>): Partial<PaywallFields> {
  return {
    ...(body.resource === undefined ? {} : { resource: body.resource }),
    ...(body.description === undefined ? {} : { description: body.description }),
    ...(body.mime_type === undefined ? {} : { mimeType: body.mime_type }),
    ...(body.price === undefined ? {} : { price: priceOf(body.price) }),
    ...(body.offers === undefined ? {} : { offers: body.offers }),
    ...(body.accounts === undefined ? {} : { accountIds: body.accounts }),
    ...(body.split === undefined
      ? {}
      : { split: body.split.map((share) => ({ payeeId: share.payee, basisPoints: share.basis_points })) }),
    ...(body.l402?.token_lifetime_seconds === undefined
      ? {}
      : { tokenLifetimeSeconds: body.l402.token_lifetime_seconds }),
    ...(body.l402?.token_requests_max === undefined
      ? {}
      : { tokenRequestsMax: body.l402.token_requests_max }),
    ...(body.metadata === undefined ? {} : { metadata: body.metadata }),
  };
}

const plugin: FastifyPluginAsyncZod<PaywallRoutesOptions> = async (app, options) => {
  const deps: PaywallsDeps = {
    sql: options.db,
    accounts: options.accounts,
    schemes: options.paywalls.schemes,
    rates: options.paywalls.rates,
    nowMs: options.nowMs,
  };
  const idParams = z.strictObject({ id: paywallId });

  app.post(
    "/paywalls",
    {
      schema: { body: createPaywallBody, response: { 201: paywallView, "4xx": errorView } },
      config: { errorCodes: paywallFieldRefusals },
    },
    async (request, reply) => {
      const { body } = request;
      const given = fieldsOf(body);
      const fields: PaywallFields = {
        description: "",
        mimeType: "application/json",
        split: [],
        tokenLifetimeSeconds: paywallTokenLifetimeSecondsDefault,
        tokenRequestsMax: null,
        metadata: {},
        ...given,
        resource: body.resource,
        price: given.price!,
        offers: body.offers,
        accountIds: body.accounts,
      };
      const paywall = paywallOf(await addPaywall(deps, { tenantId: tenantOf(request).id, fields }));
      options.paywalls.changed(paywall.tenantId);
      return reply.code(201).send(presentPaywall(paywall));
    },
  );

  app.get(
    "/paywalls/:id",
    { schema: { params: idParams, response: { 200: paywallView, "4xx": errorView } } },
    async (request) => {
      const paywall = await getPaywall(options.db, { tenantId: tenantOf(request).id, id: request.params.id });
      if (paywall === null) throw new ApiError("paywall_not_found", `no paywall "${request.params.id}"`);
      return presentPaywall(paywall);
    },
  );

  app.get(
    "/paywalls",
    {
      schema: {
        querystring: listQuery({ idPrefix: "pwl" }),
        response: { 200: listView(paywallView), "4xx": errorView },
      },
    },
    async (request) => {
      const tenantId = tenantOf(request).id;
      return listPage(
        options.db,
        {
          table: "paywalls",
          tenantColumn: "tenant_id",
          columns: "id",
          noun: "paywall",
          mapPage: async (rows: { id: string }[]) => {
            const found = await Promise.all(
              rows.map((row) => getPaywall(options.db, { tenantId, id: row.id })),
            );
            return found.flatMap((paywall) => (paywall === null ? [] : [presentPaywall(paywall)]));
          },
        },
        { tenantId, url: "/v1/paywalls", params: listParams(request.query), gone: clientGone(request) },
      );
    },
  );

  app.patch(
    "/paywalls/:id",
    {
      schema: { params: idParams, body: updatePaywallBody, response: { 200: paywallView, "4xx": errorView } },
      config: { errorCodes: paywallFieldRefusals },
    },
    async (request) => {
      const result = await updatePaywall(deps, {
        tenantId: tenantOf(request).id,
        id: request.params.id,
        fields: fieldsOf(request.body),
      });
      options.paywalls.changed(tenantOf(request).id);
      return presentPaywall(paywallOf(result));
    },
  );

  app.delete(
    "/paywalls/:id",
    {
      schema: {
        params: idParams,
        response: {
          200: z.object({ id: z.string(), object: z.literal("paywall"), deleted: z.literal(true) }),
          "4xx": errorView,
        },
      },
    },
    async (request) => {
      const deleted = await deletePaywall(options.db, {
        tenantId: tenantOf(request).id,
        id: request.params.id,
      });
      if (!deleted) throw new ApiError("paywall_not_found", `no paywall "${request.params.id}"`);
      options.paywalls.changed(tenantOf(request).id);
      return { id: request.params.id, object: "paywall" as const, deleted: true as const };
    },
  );

  app.post(
    "/paywall_verdicts",
    { schema: { body: verdictBody, response: { 200: verdictView, "4xx": errorView } } },
    async (request) => {
      const tenantId = tenantOf(request).id;
      const { body } = request;
      const verdict = await options.paywalls.forTenant(tenantId)({
        method: body.method,
        url: body.url,
        headers: Object.fromEntries(
          Object.entries(body.headers).map(([name, value]) => [name.toLowerCase(), value]),
        ),
        ...(body.raw_headers === undefined ? {} : { rawHeaders: body.raw_headers }),
      });
      switch (verdict.kind) {
        case "free":
          return { verdict: "free" as const };
        case "preflight":
          return { verdict: "preflight" as const, status: verdict.status, headers: lines(verdict.headers) };
        case "challenge":
          return {
            verdict: "challenge" as const,
            status: verdict.status,
            headers: lines(verdict.headers),
            body: { ...verdict.body },
          };
        case "paid": {
          const id = options.paywalls.hold(tenantId, verdict);
          if (id === null) {
            await verdict.complete({ served: false });
            throw new ApiError("overloaded", "too many paid requests wait for completion", {
              retryAfterSeconds: 1,
            });
          }
          return {
            verdict: "paid" as const,
            id,
            paywall: verdict.paywallId,
            scheme: verdict.scheme,
            payer: verdict.payer,
          };
        }
      }
    },
  );

  app.post(
    "/paywall_verdicts/:id/complete",
    {
      schema: {
        params: z.strictObject({ id: z.string().regex(/^pwv_[0-9a-f]{32}$/) }),
        body: completeBody,
        response: { 200: completionView, "4xx": errorView },
      },
    },
    async (request, reply) => {
      // A settlement's wait, as long as remotePaywall waits for this answer: the socket outlasts the idle timeout.
      outlastingWait(request.raw, remotePaywallCompleteTimeoutMsDefault);
      const done = await options.paywalls.complete(tenantOf(request).id, request.params.id, request.body);
      if (done === null)
        throw new ApiError("paywall_verdict_not_found", `no verdict "${request.params.id}" waits`);
      if (done.kind === "settled") {
        // The tenant's app gone before this answer reached it (it gave up, or the connection broke): its payer is
        // not served either, so the same payment sent again is.
        if (request.body.served && done.undelivered !== undefined) whenUndelivered(reply, done.undelivered);
        return { result: "settled" as const, headers: lines(done.headers) };
      }
      return {
        result: "refused" as const,
        status: done.status,
        headers: lines(done.headers),
        body: { ...done.body },
      };
    },
  );
};

export const paywallRoutes = fp(plugin, {
  name: "switchyard-paywalls",
  encapsulate: true,
  dependencies: ["switchyard-auth"],
  decorators: { request: ["tenant"] },
});
