// The routes rails contribute for their providers (core's RailRoute: Stripe's webhooks, …), mounted without
// knowing which rail they belong to. Encapsulated: the raw-body parser registered here keeps the exact bytes
// the provider signed, for these routes only. No API key: the rail authenticates its provider itself, and the
// server mounts this plugin beside the /v1 context, outside the auth hook's reach, whatever the paths are.
// Left out of the OpenAPI document: these are the providers' routes, not the API's.
import type { FastifyPluginAsync } from "fastify";
import type { RailRoute } from "../../core/index.ts";

export type RailRoutesOptions = { readonly routes: readonly RailRoute[] };

export const railRoutesPlugin: FastifyPluginAsync<RailRoutesOptions> = async (app, options) => {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("application/json", { parseAs: "buffer" }, (_request, body, done) =>
    done(null, body),
  );
  for (const route of options.routes) {
    app.route({
      method: route.method,
      url: route.path,
      bodyLimit: route.bodyLimitBytes,
      schema: { hide: true },
      handler: async (request, reply) => {
        const rawBody = Buffer.isBuffer(request.body) ? request.body : emptyBody;
        const answer = await route.handle({ headers: request.headers, rawBody });
        if (answer.headers !== undefined) reply.headers(answer.headers);
        return reply.code(answer.status).send(answer.body);
      },
    });
  }
};

const emptyBody = Buffer.alloc(0);
