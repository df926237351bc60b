// POST /v1/quotes: a route and its price, held for a while, that a payment can then take.
import fp from "fastify-plugin";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import type { z } from "zod";
import { formatAmount } from "../../../core/index.ts";
import { createPaymentQuote, type PaymentsDeps, quoteRefusals } from "../../payments/index.ts";
import type { Quote } from "../../router/index.ts";
import { tenantOf } from "../auth.ts";
import {
  destinationFromBody,
  policyFrom,
  presentDestination,
  presentRoute,
  refusalError,
} from "../present.ts";
import { createQuoteBody, errorView, quoteTtlSecondsMax, quoteView } from "../schemas.ts";

export type QuoteRoutesOptions = { payments: PaymentsDeps };

const microUsd = { scale: 6 };

/** A quote as the API shows it (POST /v1/quotes, and the quotes list). */
export function presentQuote(id: string, quote: Quote): z.infer<typeof quoteView> {
  return {
    id,
    object: "quote",
    amount: formatAmount(quote.intent.amount, quote.intent.asset),
    asset: quote.intent.asset.code,
    destination: presentDestination(quote.intent.destination),
    route: presentRoute(quote.decision),
    rail: quote.chosen.rail,
    rail_amount: formatAmount(quote.chosen.amount, quote.chosen.asset),
    rail_asset: quote.chosen.asset.code,
    fee_cap_usd: formatAmount(quote.chosen.feeCapMicroUsd, microUsd),
    created_at: new Date(quote.createdAtMs).toISOString(),
    expires_at: new Date(quote.expiresAtMs).toISOString(),
  };
}

const plugin: FastifyPluginAsyncZod<QuoteRoutesOptions> = async (app, options) => {
  app.post(
    "/quotes",
    {
      schema: { body: createQuoteBody, response: { 201: quoteView, "4xx": errorView } },
      config: {
        errorCodes: quoteRefusals,
      },
    },
    async (request, reply) => {
      const { body } = request;
      const result = await createPaymentQuote(options.payments, {
        tenantId: tenantOf(request).id,
        asset: body.asset,
        amount: body.amount,
        destination: destinationFromBody(body.destination),
        policy: policyFrom(body.constraints),
        ttlMs: (body.ttl_seconds ?? quoteTtlSecondsMax) * 1_000,
      });
      if (!result.ok) throw refusalError(result);
      return reply.code(201).send(presentQuote(result.id, result.quote));
    },
  );
};

export const quoteRoutes = fp(plugin, {
  name: "switchyard-quotes",
  encapsulate: true,
  dependencies: ["switchyard-auth"],
  decorators: { request: ["tenant"] },
});
