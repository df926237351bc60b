// The collections' lists, each with the convention of ../lists.ts (limit, starting_after / ending_before,
// created[…], newest first, has_more): GET /v1/payments (status; expand[]=data.attempts for each payment's
// attempts, absent otherwise), /v1/invoices (status), /v1/quotes and /v1/payees. Accounts list in ./accounts.ts,
// webhook endpoints in ./webhook-endpoints.ts, events in ./events.ts. Items are presented as each resource's GET
// presents one, made from the page's own rows as each resource's reader makes one (a payment's attempts, when
// expanded, read for the whole page at once): a page costs the same few statements however many items it holds.
import fp from "fastify-plugin";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import type { Db } from "../../db/index.ts";
import { type PayeeRow, payeeColumns, payeeFromRow } from "../../payees/index.ts";
import { fromJson, type PaymentReadRow, paymentReadColumns, paymentsFromRows } from "../../payments/index.ts";
import type { Quote } from "../../router/index.ts";
import { type InvoiceRow, invoiceFromRow } from "../../settlement/index.ts";
import { tenantOf } from "../auth.ts";
import { clientGone, expandParam, listPage, listParams, listQuery, listView, statusParam } from "../lists.ts";
import { presentInvoice, presentPayment } from "../present.ts";
import { errorView, invoiceView, payeeView, paymentView, quoteView } from "../schemas.ts";
import { presentPayee } from "./payees.ts";
import { presentQuote } from "./quotes.ts";

export type ListRoutesOptions = { db: Db };

/** A payment in a list: its attempts only when `expand[]=data.attempts` asks for them. */
export const paymentListItemView = paymentView.extend({ attempts: paymentView.shape.attempts.optional() });

export const listPaymentsQuery = listQuery({
  idPrefix: "pay",
  extra: {
    status: statusParam(paymentView.shape.status.options),
    "expand[]": expandParam(["data.attempts"]),
  },
});

export const listInvoicesQuery = listQuery({
  idPrefix: "inv",
  extra: { status: statusParam(invoiceView.shape.status.options) },
});

export const listQuotesQuery = listQuery({ idPrefix: "quo" });
export const listPayeesQuery = listQuery({ idPrefix: "pye" });

const plugin: FastifyPluginAsyncZod<ListRoutesOptions> = async (app, options) => {
  const { db } = options;

  app.get(
    "/payments",
    {
      schema: {
        querystring: listPaymentsQuery,
        response: { 200: listView(paymentListItemView), "4xx": errorView },
      },
    },
    async (request) => {
      const params = listParams(request.query);
      const attempts = params.expand.has("data.attempts");
      return listPage(
        db,
        {
          table: "payments",
          tenantColumn: "tenant_id",
          columns: paymentReadColumns,
          noun: "payment",
          equals: { status: request.query.status },
          // The rows whole, read by the page's own statement, and the page's attempts (when expanded) by one more.
          // Before, the page read ids and then each payment again by its id, and its attempts, whether asked or not:
          // 201 statements for a page of 100.
          mapPage: async (rows: PaymentReadRow[]) =>
            (await paymentsFromRows(db, rows, { attempts })).map((payment) => {
              const view = presentPayment(payment);
              if (attempts) return view;
              const { attempts: _omitted, ...rest } = view;
              return rest;
            }),
        },
        { tenantId: tenantOf(request).id, url: "/v1/payments", params, gone: clientGone(request) },
      );
    },
  );

  app.get(
    "/invoices",
    {
      schema: { querystring: listInvoicesQuery, response: { 200: listView(invoiceView), "4xx": errorView } },
    },
    async (request) =>
      listPage(
        db,
        {
          table: "invoices",
          tenantColumn: "tenant_id",
          noun: "invoice",
          equals: { status: request.query.status },
          // Each row whole, read by the page's own statement and made an invoice as getInvoice makes one. Before, the
          // page read ids and then each invoice again by its id: a statement per invoice, 101 for a page of 100.
          map: (row: InvoiceRow) => presentInvoice(invoiceFromRow(row)),
        },
        {
          tenantId: tenantOf(request).id,
          url: "/v1/invoices",
          params: listParams(request.query),
          gone: clientGone(request),
        },
      ),
  );

  app.get(
    "/quotes",
    { schema: { querystring: listQuotesQuery, response: { 200: listView(quoteView), "4xx": errorView } } },
    async (request) =>
      listPage(
        db,
        {
          table: "quotes",
          tenantColumn: "tenant_id",
          columns: "id, quote",
          noun: "quote",
          map: (row: { id: string; quote: unknown }) => presentQuote(row.id, fromJson<Quote>(row.quote)),
        },
        {
          tenantId: tenantOf(request).id,
          url: "/v1/quotes",
          params: listParams(request.query),
          gone: clientGone(request),
        },
      ),
  );

  app.get(
    "/payees",
    { schema: { querystring: listPayeesQuery, response: { 200: listView(payeeView), "4xx": errorView } } },
    async (request) =>
      listPage(
        db,
        {
          table: "payees",
          tenantColumn: "tenant_id",
          columns: payeeColumns,
          noun: "payee",
          // Each row whole, methods and all, read by the page's own statement and made a payee as getPayee makes one.
          // Before, the page read ids and then each payee again by its id: 101 statements for a page of 100.
          map: (row: PayeeRow) => presentPayee(payeeFromRow(row)),
        },
        {
          tenantId: tenantOf(request).id,
          url: "/v1/payees",
          params: listParams(request.query),
          gone: clientGone(request),
        },
      ),
  );
};

export const listRoutes = fp(plugin, {
  name: "switchyard-lists",
  encapsulate: true,
  dependencies: ["switchyard-auth"],
  decorators: { request: ["tenant"] },
});
