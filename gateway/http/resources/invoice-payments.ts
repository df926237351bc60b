// POST /v1/invoices/:id/authorizations: a payer's EIP-3009 authorization for a USDC invoice (the typed data and the
// terms are in the invoice's instructions), submitted with the merchant's key. The rail checks the signature and
// the terms before anything is sent, then submits it from the hot wallet; the invoice is credited once the
// transaction has the confirmations (GET the invoice, or its invoice.paid event). A wallet without the key uses
// the rail's own route instead (instructions.authorization_url, with instructions.client_secret in the body).
import fp from "fastify-plugin";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { type SettlementDeps, submitInvoicePayment } from "../../settlement/index.ts";
import { tenantOf } from "../auth.ts";
import { ApiError, type ApiErrorCode } from "../errors.ts";
import { errorView, idParams } from "../schemas.ts";

export type InvoicePaymentRoutesOptions = { settlement: SettlementDeps };

const uint = z.string().regex(/^[0-9]{1,78}$/, "a whole number, in decimal");
const hex = (bytes: number) =>
  z.string().regex(new RegExp(`^0x[0-9a-fA-F]{${bytes * 2}}$`), `${bytes} bytes of 0x-prefixed hex`);

/** The payer's ReceiveWithAuthorization and its signature, as the instructions name them. */
export const invoiceAuthorizationBody = z.strictObject({
  from: hex(20),
  /** The gateway's address (instructions.authorization_to); optional, checked when given. */
  to: hex(20).optional(),
  value: uint,
  valid_after: uint,
  valid_before: uint,
  nonce: hex(32),
  signature: hex(65),
});

export const invoiceAuthorizationView = z.object({
  object: z.literal("invoice_authorization"),
  invoice: z.string(),
  status: z.literal("submitted"),
  /** The transaction that carries it; the invoice is credited once it has the confirmations. */
  transaction: z.string(),
});

/**
 * What a payer's authorization is refused with, by this route and by a rail's wallet route (rail-routes.ts); the rail
 * answers them (adapters/evm authorizations.ts signedPaymentRefusalStatus).
 */
export const authorizationRefusals = [
  "signature_invalid",
  "authorization_mismatch",
  "authorization_expired",
  "authorization_used",
  "payer_insufficient_funds",
  "invoice_not_payable",
  "rail_unavailable",
  "rail_unreachable",
  "invoice_not_found",
] as const satisfies readonly ApiErrorCode[];

/** The route's business refusals, for the OpenAPI document (openapi.ts files each under its status). */
const refusals = (...codes: ApiErrorCode[]): Record<never, never> => ({ "x-error-codes": codes });

const plugin: FastifyPluginAsyncZod<InvoicePaymentRoutesOptions> = async (app, options) => {
  app.post(
    "/invoices/:id/authorizations",
    {
      schema: {
        params: idParams("inv"),
        body: invoiceAuthorizationBody,
        response: { 202: invoiceAuthorizationView, "4xx": errorView },
        ...refusals(...authorizationRefusals),
      },
    },
    async (request, reply) => {
      const { to, ...fields } = request.body;
      const result = await submitInvoicePayment(options.settlement, {
        tenantId: tenantOf(request).id,
        id: request.params.id,
        fields: to === undefined ? fields : { ...fields, to },
      });
      if (!result.ok) throw new ApiError(result.refusal, result.message);
      return reply.code(202).send({
        object: "invoice_authorization" as const,
        invoice: result.invoice.id,
        status: "submitted" as const,
        transaction: result.railReference,
      });
    },
  );
};

export const invoicePaymentRoutes = fp(plugin, {
  name: "switchyard-invoice-payments",
  encapsulate: true,
  dependencies: ["switchyard-auth"],
  decorators: { request: ["tenant"] },
});
