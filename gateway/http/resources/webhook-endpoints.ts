// POST /v1/webhook_endpoints: where the tenant's events are delivered, and the secret they are signed with.
import fp from "fastify-plugin";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import type { Db } from "../../db/index.ts";
import { createWebhookEndpoint } from "../../webhooks/index.ts";
import { tenantOf } from "../auth.ts";
import { createWebhookEndpointBody, errorView, webhookEndpointView } from "../schemas.ts";

export type WebhookEndpointRoutesOptions = { db: Db };

const plugin: FastifyPluginAsyncZod<WebhookEndpointRoutesOptions> = async (app, options) => {
  app.post(
    "/webhook_endpoints",
    { schema: { body: createWebhookEndpointBody, response: { 201: webhookEndpointView, "4xx": errorView } } },
    async (request, reply) => {
      const endpoint = await createWebhookEndpoint(options.db, {
        tenantId: tenantOf(request).id,
        url: request.body.url,
      });
      return reply.code(201).send({
        id: endpoint.id,
        object: "webhook_endpoint",
        url: endpoint.url,
        secret: endpoint.secret,
      });
    },
  );
};

export const webhookEndpointRoutes = fp(plugin, {
  name: "switchyard-webhook-endpoints",
  encapsulate: true,
  dependencies: ["switchyard-auth"],
  decorators: { request: ["tenant"] },
});
