// POST /v1/invoices and GET /v1/invoices/:id: money in, on the rail the router or the caller picks.
import fp from "fastify-plugin";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { everyMember } from "../../../core/index.ts";
import type { Db } from "../../db/index.ts";
import {
  createInvoice,
  getInvoice,
  type InvoiceRefusal,
  type SettlementDeps,
} from "../../settlement/index.ts";
import { tenantOf } from "../auth.ts";
import { ApiError } from "../errors.ts";
import { presentInvoice, refusalError } from "../present.ts";
import { createInvoiceBody, errorView, idParams, invoiceView } from "../schemas.ts";

export type InvoiceRoutesOptions = { db: Db; settlement: SettlementDeps };

/** Every InvoiceRefusal once, for the API's document. */
const invoiceRefusals = everyMember<InvoiceRefusal>({
  unknown_asset: true,
  account_not_found: true,
  asset_mismatch: true,
  rail_unavailable: true,
  rail_unreachable: true,
  amount_not_a_decimal: true,
  amount_not_positive: true,
  amount_too_precise: true,
  amount_too_large: true,
  amount_too_small: true,
});

/** How long an invoice stays payable when the request does not say. */
const invoiceExpirySecondsDefault = 3_600;

const plugin: FastifyPluginAsyncZod<InvoiceRoutesOptions> = async (app, options) => {
  app.post(
    "/invoices",
    {
      schema: { body: createInvoiceBody, response: { 201: invoiceView, "4xx": errorView } },
      config: { errorCodes: [...invoiceRefusals, "rail_not_found"] },
    },
    async (request, reply) => {
      const { body } = request;
      // A name no rail of this gateway has is the request's mistake (400), as an account that is not there is; a rail
      // that is there but cannot take it now stays 402 rail_unavailable (settlement's refusal).
      if (body.rail !== undefined && !options.settlement.rails.has(body.rail))
        throw new ApiError("rail_not_found", `no rail "${body.rail}"`, { param: "rail" });
      const result = await createInvoice(options.settlement, {
        tenantId: tenantOf(request).id,
        accountId: body.account,
        asset: body.asset,
        amount: body.amount,
        rail: body.rail ?? null,
        description: body.description ?? "",
        expirySeconds: body.expires_in_seconds ?? invoiceExpirySecondsDefault,
      });
      if (!result.ok) throw refusalError(result);
      return reply.code(201).send(presentInvoice(result.invoice));
    },
  );

  app.get(
    "/invoices/:id",
    { schema: { params: idParams("inv"), response: { 200: invoiceView, "4xx": errorView } } },
    async (request) => {
      const { id } = request.params;
      const invoice = await getInvoice(options.db, { tenantId: tenantOf(request).id, id });
      if (invoice === null) throw new ApiError("invoice_not_found", `no invoice "${id}"`);
      return presentInvoice(invoice);
    },
  );
};

export const invoiceRoutes = fp(plugin, {
  name: "switchyard-invoices",
  encapsulate: true,
  dependencies: ["switchyard-auth"],
  decorators: { request: ["tenant"] },
});
