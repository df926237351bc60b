// The routes rails contribute for their providers (core's RailRoute: Stripe's webhooks, …) and for wallets (an EVM
// rail's /pay/<rail>/authorizations), mounted without knowing which rail they belong to. Encapsulated: the raw-body
// parser registered here keeps the exact bytes the provider signed, for these routes only. No API key: the rail
// authenticates its caller itself (a signature, an invoice's client secret), and the server mounts this plugin
// beside the /v1 context, outside the auth hook's reach, whatever the paths are.
// A provider's route (under /v1/webhooks/) is left out of the OpenAPI document: it is the provider's, not the API's.
// The wallets' route is the API's: it is documented once for every rail, as /pay/{rail}/authorizations, by a route
// of its own that each rail's (static, so matched first) stands in front of; it answers a rail that has none.
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import type { RailRoute } from "../../core/index.ts";
import { ApiError } from "./errors.ts";
import {
  authorizationRefusals,
  invoiceAuthorizationBody,
  invoiceAuthorizationView,
} from "./resources/invoice-payments.ts";
import { errorView } from "./schemas.ts";

export type RailRoutesOptions = { readonly routes: readonly RailRoute[] };

/** The wallets' route, as the document gives it: an EVM rail's authorizationPath (adapters/evm deposits.ts). */
export const walletAuthorizationPath = "/pay/:rail/authorizations";

/** The wallet's body: the invoice's client secret (its instructions.client_secret) and the signed authorization. */
const walletAuthorizationBody = invoiceAuthorizationBody.extend({
  client_secret: z.string().regex(/^pay_secret_[0-9a-f]{48}$/, "an invoice's client secret (pay_secret_…)"),
});

export const railRoutesPlugin: FastifyPluginAsyncZod<RailRoutesOptions> = async (app, options) => {
  // Outside the raw-body context: the API's JSON parser and validation, for the document's schema.
  app.post(
    walletAuthorizationPath,
    {
      schema: {
        summary: "Submit a payer's authorization for an invoice, with its client secret (no API key)",
        params: z.strictObject({ rail: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/) }),
        body: walletAuthorizationBody,
        response: { 202: invoiceAuthorizationView, "4xx": errorView },
        // The rail's route answers these (adapters/evm authorizations.ts signedPaymentRefusalStatus), a client
        // secret that names no invoice 404 (openapi.ts: `x-not-found-codes`).
        "x-error-codes": [...authorizationRefusals],
        "x-not-found-codes": ["invoice_not_found"],
      },
    },
    async (request) => {
      throw new ApiError("rail_not_found", `no rail "${request.params.rail}" takes authorizations`);
    },
  );
  await app.register(async (raw) => {
    raw.removeAllContentTypeParsers();
    raw.addContentTypeParser("application/json", { parseAs: "buffer" }, (_request, body, done) =>
      done(null, body),
    );
    for (const route of options.routes) {
      raw.route({
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
  });
};

const emptyBody = Buffer.alloc(0);
