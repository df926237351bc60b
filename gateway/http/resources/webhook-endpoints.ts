// /v1/webhook_endpoints: where the tenant's events are delivered. Create (the secret in that answer, and in a replay
// with the same Idempotency-Key while it is still the endpoint's; the key's record keeps only its hash), retrieve,
// list, update (POST /v1/webhook_endpoints/:id: each field given replaced), delete, and rotate the secret
// (POST /v1/webhook_endpoints/:id/rotate_secret: the new secret shown, as on creation; the one before keeps signing for
// `expires_in_seconds`, 24 h unless said). At most webhookEndpointsPerTenantMax per tenant: one more is 409
// webhook_endpoint_limit_reached. Another tenant's endpoint is not found.
//
// A URL is vetted in two steps (gateway/egress): its text first, then the addresses its name resolves to now. The
// second waits on DNS, so what refuses a request without it comes before it: the tenant's limit on a create, the
// endpoint's existence on an update. A refusal that does not depend on the URL never waits for its lookup.
import type { FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import type { Db } from "../../db/index.ts";
import {
  type EgressPolicy,
  type Resolver,
  type UrlVerdict,
  vetRegistration,
  vetUrl,
} from "../../egress/index.ts";
import {
  allEventTypes,
  createWebhookEndpoint,
  deleteWebhookEndpoint,
  deliveryTarget,
  eventTypes,
  getWebhookEndpoint,
  hasRoomForWebhookEndpoint,
  rotateWebhookSecret,
  secretOverlapDefaultSeconds,
  secretOverlapMaxSeconds,
  updateWebhookEndpoint,
  type WebhookEndpoint,
  webhookEndpointsPerTenantMax,
} from "../../webhooks/endpoints.ts";
import { tenantOf } from "../auth.ts";
import { ApiError } from "../errors.ts";
import { omittedDigest } from "../idempotency.ts";
import { clientGone, listPage, listParams, listQuery, listView } from "../lists.ts";
import { createWebhookEndpointBody, errorView, storable } from "../schemas.ts";

/**
 * `egress`: the policy a URL is vetted under (gateway/egress): public addresses only, but for the hosts allowed.
 * `resolver`: what a URL's name resolves to when it is registered (DNS queries, egress's dnsResolver, unless given:
 * tests).
 */
export type WebhookEndpointRoutesOptions = { db: Db; egress: EgressPolicy; resolver?: Resolver | undefined };

/** A refused URL: 400 parameter_invalid on `url`, with the egress guard's `reason`. */
function refuseUrlUnlessOk(verdict: UrlVerdict): void {
  if (!verdict.ok)
    throw new ApiError("parameter_invalid", `url: ${verdict.message}`, {
      param: "url",
      extra: { reason: verdict.reason },
    });
}

/** The most event types one endpoint names. */
export const enabledEventsMax = 64;
export const webhookDescriptionLengthMax = 500;

const eventType = z.enum([allEventTypes, ...eventTypes], {
  error: `an event type the gateway sends (${eventTypes.join(", ")}), or "*" for all`,
});
const enabledEvents = z.array(eventType).min(1).max(enabledEventsMax);
const description = storable(z.string().max(webhookDescriptionLengthMax));
const url = createWebhookEndpointBody.shape.url;

export const createWebhookEndpointRequest = z.strictObject({
  url,
  /** Event types delivered to it; ["*"] (the default) for all. */
  enabled_events: enabledEvents.optional(),
  description: description.optional(),
});

export const updateWebhookEndpointRequest = z.strictObject({
  url: url.optional(),
  enabled_events: enabledEvents.optional(),
  /** null removes it. */
  description: description.nullable().optional(),
  /** false: nothing is delivered to it until it is enabled again. */
  enabled: z.boolean().optional(),
});

export const rotateWebhookSecretRequest = z
  .strictObject({
    /** How long the secret before keeps signing too (0: not at all); 24 h unless said, at most 7 days. */
    expires_in_seconds: z.number().int().min(0).max(secretOverlapMaxSeconds).optional(),
  })
  .nullish(); // a POST without a body is one with every default

export const webhookEndpointParams = z.strictObject({ id: z.string().regex(/^we_[0-9a-z_]{1,64}$/) });

export const webhookEndpointItemView = z.object({
  id: z.string(),
  object: z.literal("webhook_endpoint"),
  url: z.string(),
  description: z.string().nullable(),
  enabled: z.boolean(),
  enabled_events: z.array(z.string()),
  /** Until when the secret before the last rotation still signs too; null when only the current one does. */
  previous_secret_expires_at: z.string().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
});

/** The answer of a creation or rotation: the secret shown (a replay shows it while it is still the endpoint's). */
export const webhookEndpointWithSecretView = webhookEndpointItemView.extend({
  /** `whsec_` and base64: what deliveries are signed with (Standard Webhooks). Absent in a replay once rotated since. */
  secret: z.string().optional(),
});

export const deletedWebhookEndpointView = z.object({
  id: z.string(),
  object: z.literal("webhook_endpoint"),
  deleted: z.literal(true),
});

export const listWebhookEndpointsQuery = listQuery({ idPrefix: "we" });

export function presentWebhookEndpoint(endpoint: WebhookEndpoint): z.infer<typeof webhookEndpointItemView> {
  return {
    id: endpoint.id,
    object: "webhook_endpoint",
    url: endpoint.url,
    description: endpoint.description,
    enabled: endpoint.enabled,
    enabled_events: endpoint.enabledEvents,
    previous_secret_expires_at: endpoint.previousSecretExpiresAt?.toISOString() ?? null,
    created_at: endpoint.createdAt.toISOString(),
    updated_at: endpoint.updatedAt.toISOString(),
  };
}

/** Duplicates dropped; "*" among others is all of them. */
function normalizedEvents(types: readonly string[]): string[] {
  return types.includes(allEventTypes) ? [allEventTypes] : [...new Set(types)];
}

const notFound = (id: string) => new ApiError("webhook_endpoint_not_found", `no webhook endpoint "${id}"`);
const limitReached = () =>
  new ApiError(
    "webhook_endpoint_limit_reached",
    `a tenant has at most ${webhookEndpointsPerTenantMax} webhook endpoints; delete one first`,
  );

const plugin: FastifyPluginAsyncZod<WebhookEndpointRoutesOptions> = async (app, options) => {
  const { db, egress } = options;
  /** A URL that may not be delivered to (a private, loopback or metadata address, credentials, http): refused. */
  const vetAddresses = async (url: string) =>
    refuseUrlUnlessOk(
      await vetRegistration(
        url,
        egress,
        options.resolver === undefined ? {} : { resolver: options.resolver },
      ),
    );

  /**
   * A replay of an answer that showed the endpoint's secret (its creation, a rotation) shows it again while it is
   * still the one the answer showed: the Idempotency-Key's retry of a request whose answer was lost gets what the
   * first answer said (before, the new secret could never be read, and the next rotation dropped the one the
   * receiver held). Rotated since, it is not shown.
   */
  const secretStillCurrent = async (
    request: FastifyRequest,
    answer: Readonly<Record<string, unknown>>,
    digests: Readonly<Record<string, string>>,
  ): Promise<Record<string, unknown>> => {
    if (typeof answer.id !== "string" || digests.secret === undefined) return {};
    // The secrets in force, newest first: the endpoint's own is the first.
    const target = await deliveryTarget(db, { tenantId: tenantOf(request).id, endpointId: answer.id });
    const secret = target?.secrets[0];
    return secret !== undefined && omittedDigest(secret) === digests.secret ? { secret } : {};
  };

  app.post(
    "/webhook_endpoints",
    {
      schema: {
        body: createWebhookEndpointRequest,
        response: { 201: webhookEndpointWithSecretView, "4xx": errorView },
      },
      config: {
        idempotencyOmit: ["secret"],
        idempotencyRestore: secretStillCurrent,
        errorCodes: ["webhook_endpoint_limit_reached"],
      },
    },
    async (request, reply) => {
      const { body } = request;
      const tenantId = tenantOf(request).id;
      refuseUrlUnlessOk(vetUrl(body.url, egress));
      if (!(await hasRoomForWebhookEndpoint(db, tenantId))) throw limitReached();
      await vetAddresses(body.url);
      const created = await createWebhookEndpoint(db, {
        tenantId,
        url: body.url,
        description: body.description ?? null,
        enabledEvents: normalizedEvents(body.enabled_events ?? [allEventTypes]),
      });
      if (!created.ok) throw limitReached();
      return reply.code(201).send({ ...presentWebhookEndpoint(created.endpoint), secret: created.secret });
    },
  );

  app.get(
    "/webhook_endpoints/:id",
    {
      schema: { params: webhookEndpointParams, response: { 200: webhookEndpointItemView, "4xx": errorView } },
    },
    async (request) => {
      const { id } = request.params;
      const endpoint = await getWebhookEndpoint(db, { tenantId: tenantOf(request).id, id });
      if (endpoint === null) throw notFound(id);
      return presentWebhookEndpoint(endpoint);
    },
  );

  app.post(
    "/webhook_endpoints/:id",
    {
      schema: {
        params: webhookEndpointParams,
        body: updateWebhookEndpointRequest,
        response: { 200: webhookEndpointItemView, "4xx": errorView },
      },
    },
    async (request) => {
      const { body } = request;
      const { id } = request.params;
      const tenantId = tenantOf(request).id;
      if (body.url !== undefined) {
        refuseUrlUnlessOk(vetUrl(body.url, egress));
        if ((await getWebhookEndpoint(db, { tenantId, id })) === null) throw notFound(id);
        await vetAddresses(body.url);
      }
      const endpoint = await updateWebhookEndpoint(db, {
        tenantId,
        id,
        ...(body.url === undefined ? {} : { url: body.url }),
        ...(body.description === undefined ? {} : { description: body.description }),
        ...(body.enabled === undefined ? {} : { enabled: body.enabled }),
        ...(body.enabled_events === undefined
          ? {}
          : { enabledEvents: normalizedEvents(body.enabled_events) }),
      });
      if (endpoint === null) throw notFound(id);
      return presentWebhookEndpoint(endpoint);
    },
  );

  app.delete(
    "/webhook_endpoints/:id",
    {
      schema: {
        params: webhookEndpointParams,
        response: { 200: deletedWebhookEndpointView, "4xx": errorView },
      },
    },
    async (request) => {
      const { id } = request.params;
      if (!(await deleteWebhookEndpoint(db, { tenantId: tenantOf(request).id, id }))) throw notFound(id);
      return { id, object: "webhook_endpoint" as const, deleted: true as const };
    },
  );

  app.post(
    "/webhook_endpoints/:id/rotate_secret",
    {
      schema: {
        params: webhookEndpointParams,
        body: rotateWebhookSecretRequest,
        response: { 200: webhookEndpointWithSecretView, "4xx": errorView },
      },
      config: { idempotencyOmit: ["secret"], idempotencyRestore: secretStillCurrent },
    },
    async (request) => {
      const { id } = request.params;
      const rotated = await rotateWebhookSecret(db, {
        tenantId: tenantOf(request).id,
        id,
        overlapSeconds: request.body?.expires_in_seconds ?? secretOverlapDefaultSeconds,
      });
      if (rotated === null) throw notFound(id);
      return { ...presentWebhookEndpoint(rotated.endpoint), secret: rotated.secret };
    },
  );

  app.get(
    "/webhook_endpoints",
    {
      schema: {
        querystring: listWebhookEndpointsQuery,
        response: { 200: listView(webhookEndpointItemView), "4xx": errorView },
      },
    },
    async (request) => {
      const tenantId = tenantOf(request).id;
      return listPage(
        db,
        {
          table: "webhook_endpoints",
          tenantColumn: "tenant_id",
          columns: "id",
          noun: "webhook endpoint",
          mapPage: async (rows: { id: string }[]) =>
            (await Promise.all(rows.map((row) => getWebhookEndpoint(db, { tenantId, id: row.id }))))
              .filter((endpoint) => endpoint !== null)
              .map(presentWebhookEndpoint),
        },
        {
          tenantId,
          url: "/v1/webhook_endpoints",
          params: listParams(request.query),
          gone: clientGone(request),
        },
      );
    },
  );
};

export const webhookEndpointRoutes = fp(plugin, {
  name: "switchyard-webhook-endpoints",
  encapsulate: true,
  dependencies: ["switchyard-auth"],
  decorators: { request: ["tenant"] },
});
