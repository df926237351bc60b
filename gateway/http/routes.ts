// The /v1 routes and /healthz. A handler parses (the schemas did), calls one function, maps the result.
import type { FastifyInstance, FastifyPluginAsync } from "fastify";
import type { z } from "zod";
import type { Rail } from "../../core/index.ts";
import { assetByCode, formatAmount } from "../../core/index.ts";
import { type AccountCache, balanceOf } from "../accounts/index.ts";
import type { Db } from "../db/index.ts";
import type { Ledger } from "../ledger/index.ts";
import { createPayment, createPaymentQuote, getPayment, type PaymentsDeps } from "../payments/index.ts";
import type { RouteDecision, RoutePolicy } from "../router/types.ts";
import { createInvoice, getInvoice, type Invoice, type SettlementDeps } from "../settlement/index.ts";
import { createWebhookEndpoint } from "../webhooks/index.ts";
import { tenantOf } from "./auth.ts";
import { ApiError, type ApiErrorCode } from "./errors.ts";
import { destinationFromBody, presentDestination, presentPayment, presentRoute } from "./present.ts";
import {
  balanceView,
  type ConstraintsBody,
  createInvoiceBody,
  createPaymentBody,
  createQuoteBody,
  createWebhookEndpointBody,
  errorView,
  healthView,
  idParams,
  invoiceView,
  paymentView,
  quoteTtlSecondsMax,
  quoteView,
  webhookEndpointView,
} from "./schemas.ts";

export type RoutesOptions = {
  db: Db;
  ledger: Ledger;
  accounts: AccountCache;
  rails: ReadonlyMap<string, Rail>;
  payments: PaymentsDeps;
  settlement: SettlementDeps;
};

function presentInvoice(invoice: Invoice) {
  const scale = assetByCode(invoice.assetCode)?.scale ?? 0;
  return {
    id: invoice.id,
    object: "invoice" as const,
    status: invoice.status,
    account: invoice.accountId,
    amount: formatAmount(invoice.amount, { scale }),
    asset: invoice.assetCode,
    rail: invoice.rail,
    description: invoice.description,
    instructions: invoice.instructions,
    received_amount: invoice.receivedAmount === null ? null : formatAmount(invoice.receivedAmount, { scale }),
    expires_at: invoice.expiresAt?.toISOString() ?? null,
    created_at: invoice.createdAt.toISOString(),
    paid_at: invoice.paidAt?.toISOString() ?? null,
  };
}

function policyFrom(constraints: ConstraintsBody | undefined): RoutePolicy {
  if (constraints === undefined) return {};
  const microUsd = constraints.max_fee_usd === undefined ? undefined : usdToMicro(constraints.max_fee_usd);
  return {
    ...(constraints.max_fee_bps === undefined ? {} : { maxFeeBps: constraints.max_fee_bps }),
    ...(microUsd === undefined ? {} : { maxFeeMicroUsd: microUsd }),
    ...(constraints.max_latency_ms === undefined ? {} : { maxLatencyMs: constraints.max_latency_ms }),
    ...(constraints.rails?.allow === undefined ? {} : { allowedRails: constraints.rails.allow }),
    ...(constraints.rails?.deny === undefined ? {} : { deniedRails: constraints.rails.deny }),
  };
}

/** "0.25" USD → 250000 micro-USD; the schema allows 6 decimals at most, so this is exact. */
function usdToMicro(text: string): bigint {
  const [whole = "0", fraction = ""] = text.split(".");
  return BigInt(whole) * 1_000_000n + BigInt(fraction.padEnd(6, "0"));
}

/** A refusal from a service (payments, quotes, invoices) as the API error it is, with the route when there is one. */
function refusalError(result: {
  refusal: ApiErrorCode;
  message: string;
  param?: string;
  decision?: RouteDecision;
}): ApiError {
  return new ApiError(result.refusal, result.message, {
    ...(result.param === undefined ? {} : { param: result.param }),
    ...(result.decision === undefined ? {} : { extra: { route: presentRoute(result.decision) } }),
  });
}

const routes: FastifyPluginAsync<RoutesOptions> = async (app: FastifyInstance, options) => {
  app.get(
    "/healthz",
    {
      schema: { response: { 200: healthView } },
    },
    async () => ({
      status: "ok" as const,
      rails: Object.fromEntries(
        [...options.rails.values()].map((rail) => [rail.id, { available: rail.snapshot().available }]),
      ),
    }),
  );

  app.post(
    "/v1/payments",
    {
      schema: { body: createPaymentBody, response: { 201: paymentView, 202: paymentView, "4xx": errorView } },
    },
    async (request, reply) => {
      const body = request.body as z.infer<typeof createPaymentBody>;
      const tenant = tenantOf(request);
      const result = await createPayment(options.payments, {
        tenantId: tenant.id,
        asset: body.asset,
        amount: body.amount,
        sourceAccountId: body.source.account,
        destination: destinationFromBody(body.destination),
        policy: policyFrom(body.constraints),
        metadata: body.metadata ?? {},
        idempotencyKey: request.idempotencyKey,
        quoteId: body.quote ?? null,
      });
      if (!result.ok) throw refusalError(result);
      const view = presentPayment(result.payment);
      if (result.payment.status === "failed") {
        const code = (result.payment.failureCode ?? "rejected") as ApiErrorCode;
        throw new ApiError(code, result.payment.failureMessage ?? "the payment failed", {
          extra: { payment: view },
        });
      }
      return reply.code(result.payment.status === "succeeded" ? 201 : 202).send(view);
    },
  );

  app.post(
    "/v1/quotes",
    { schema: { body: createQuoteBody, response: { 201: quoteView, "4xx": errorView } } },
    async (request, reply) => {
      const body = request.body as z.infer<typeof createQuoteBody>;
      const result = await createPaymentQuote(options.payments, {
        tenantId: tenantOf(request).id,
        asset: body.asset,
        amount: body.amount,
        destination: destinationFromBody(body.destination),
        policy: policyFrom(body.constraints),
        ttlMs: (body.ttl_seconds ?? quoteTtlSecondsMax) * 1_000,
      });
      if (!result.ok) throw refusalError(result);
      const { quote } = result;
      return reply.code(201).send({
        id: result.id,
        object: "quote" as const,
        amount: formatAmount(quote.intent.amount, quote.intent.asset),
        asset: quote.intent.asset.code,
        destination: presentDestination(quote.intent.destination),
        route: presentRoute(quote.decision),
        rail: quote.chosen.rail,
        rail_amount: formatAmount(quote.chosen.amount, quote.chosen.asset),
        rail_asset: quote.chosen.asset.code,
        fee_cap_usd: formatAmount(quote.chosen.feeCapMicroUsd, { scale: 6 }),
        created_at: new Date(quote.createdAtMs).toISOString(),
        expires_at: new Date(quote.expiresAtMs).toISOString(),
      });
    },
  );

  app.get(
    "/v1/payments/:id",
    { schema: { params: idParams("pay"), response: { 200: paymentView, "4xx": errorView } } },
    async (request) => {
      const { id } = request.params as { id: string };
      const payment = await getPayment(options.db, { tenantId: tenantOf(request).id, id });
      if (payment === null) throw new ApiError("payment_not_found", `no payment "${id}"`);
      return presentPayment(payment);
    },
  );

  app.post(
    "/v1/invoices",
    { schema: { body: createInvoiceBody, response: { 201: invoiceView, "4xx": errorView } } },
    async (request, reply) => {
      const body = request.body as z.infer<typeof createInvoiceBody>;
      const result = await createInvoice(options.settlement, {
        tenantId: tenantOf(request).id,
        accountId: body.account,
        asset: body.asset,
        amount: body.amount,
        rail: body.rail ?? null,
        description: body.description ?? "",
        expirySeconds: body.expires_in_seconds ?? 3_600,
      });
      if (!result.ok) throw refusalError(result);
      return reply.code(201).send(presentInvoice(result.invoice));
    },
  );

  app.get(
    "/v1/invoices/:id",
    { schema: { params: idParams("inv"), response: { 200: invoiceView, "4xx": errorView } } },
    async (request) => {
      const { id } = request.params as { id: string };
      const invoice = await getInvoice(options.db, { tenantId: tenantOf(request).id, id });
      if (invoice === null) throw new ApiError("invoice_not_found", `no invoice "${id}"`);
      return presentInvoice(invoice);
    },
  );

  app.post(
    "/v1/webhook_endpoints",
    { schema: { body: createWebhookEndpointBody, response: { 201: webhookEndpointView, "4xx": errorView } } },
    async (request, reply) => {
      const body = request.body as z.infer<typeof createWebhookEndpointBody>;
      const endpoint = await createWebhookEndpoint(options.db, {
        tenantId: tenantOf(request).id,
        url: body.url,
      });
      return reply.code(201).send({
        id: endpoint.id,
        object: "webhook_endpoint" as const,
        url: endpoint.url,
        secret: endpoint.secret,
      });
    },
  );

  app.get(
    "/v1/accounts/:id/balance",
    { schema: { params: idParams("acct"), response: { 200: balanceView, "4xx": errorView } } },
    async (request) => {
      const { id } = request.params as { id: string };
      const account = await options.accounts.tenantAccount({ tenantId: tenantOf(request).id, id });
      if (account === null) throw new ApiError("account_not_found", `no account "${id}"`);
      const [ledgerAccount] = await options.ledger.lookupAccounts([account.ledgerAccountId]);
      if (ledgerAccount === undefined) throw new Error(`account ${id} has no ledger account`);
      const balance = balanceOf(account.kind, ledgerAccount);
      const format = (value: bigint) => formatAmount(value, account.asset);
      return {
        object: "balance" as const,
        account: account.id,
        asset: account.asset.code,
        available: format(balance.available),
        posted: format(balance.posted),
        pending_out: format(balance.pendingOut),
        pending_in: format(balance.pendingIn),
      };
    },
  );
};

export { routes };
