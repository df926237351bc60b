// The /v1 context: everything a client calls with its API key. Auth and Idempotency-Key are registered here,
// so their hooks run for these routes and for no other: health, the OpenAPI document and the rails' provider
// routes are siblings of this context (server.ts), and no hook looks at the URL.
import type { FastifyPluginAsync } from "fastify";
import type { Rail } from "../../core/index.ts";
import type { AccountCache } from "../accounts/index.ts";
import type { ChangeBus, Db } from "../db/index.ts";
import type { EgressPolicy, Resolver } from "../egress/index.ts";
import type { Ledger } from "../ledger/index.ts";
import type { PaymentsDeps } from "../payments/index.ts";
import type { PaywallService } from "../paywall/index.ts";
import type { SettlementDeps } from "../settlement/index.ts";
import type { ApiKeyCacheLimits } from "../tenants/index.ts";
import type { X402Deps } from "../x402/index.ts";
import { tenantAdmissionPlugin } from "./admission.ts";
import { authPlugin } from "./auth.ts";
import { answerNotFound } from "./errors.ts";
import { idempotencyPlugin } from "./idempotency.ts";
import { keyRateLimitPlugin } from "./rate-limit.ts";
import { accountRoutes } from "./resources/accounts.ts";
import { apiKeyRoutes } from "./resources/api-keys.ts";
import { eventRoutes } from "./resources/events.ts";
import { invoicePaymentRoutes } from "./resources/invoice-payments.ts";
import { invoiceRoutes } from "./resources/invoices.ts";
import { listRoutes } from "./resources/lists.ts";
import { payeeRoutes } from "./resources/payees.ts";
import { paymentRoutes } from "./resources/payments.ts";
import { paywallRoutes } from "./resources/paywalls.ts";
import { quoteRoutes } from "./resources/quotes.ts";
import { railRoutes } from "./resources/rails.ts";
import { refundRoutes } from "./resources/refunds.ts";
import { tenantRoutes } from "./resources/tenants.ts";
import { webhookDeliveryRoutes } from "./resources/webhook-deliveries.ts";
import { webhookEndpointRoutes } from "./resources/webhook-endpoints.ts";
import { x402Routes } from "./resources/x402.ts";
import { noQueryParameters } from "./schemas.ts";

/** What the routes need: the services, and the stores they read. */
export type RoutesOptions = {
  db: Db;
  ledger: Ledger;
  accounts: AccountCache;
  rails: ReadonlyMap<string, Rail>;
  payments: PaymentsDeps;
  settlement: SettlementDeps;
  /** What webhook endpoint URLs are vetted under; public addresses only (no host allowed) unless given. */
  egress?: EgressPolicy | undefined;
  /** What their names resolve to when they are registered: DNS queries (egress's dnsResolver) unless given (tests). */
  webhookResolver?: Resolver | undefined;
  /** The paywalls' service (/v1/paywalls, /v1/paywall_verdicts); the routes are absent without it. */
  paywalls?: PaywallService | undefined;
  /** x402 (gateway/x402): the facilitator's routes (/v1/x402/verify, settle, supported); absent without it. */
  x402?: X402Deps | undefined;
};

export type V1Options = RoutesOptions & {
  apiKeyCache: ApiKeyCacheLimits;
  /** Where API-key revocations by any process arrive, and where this one's are announced. */
  changes: ChangeBus;
  /** The deployment's mode: development takes only sk_test_ keys, production only sk_live_ ones. */
  mode: "development" | "production";
  idempotencyInProgressTimeoutMs: number;
  /** How many answers of inline routes the Idempotency-Key plugin remembers (default: its rememberedAnswersMax). */
  idempotencyRememberedAnswersMax?: number | undefined;
  /** How long it remembers each (default: its rememberedAnswerTtlMs). */
  idempotencyRememberedAnswerTtlMs?: number | undefined;
};

export const v1Plugin: FastifyPluginAsync<V1Options> = async (app, options) => {
  await app.register(authPlugin, {
    sql: options.db,
    apiKeyCache: options.apiKeyCache,
    nowMs: Date.now,
    changes: options.changes,
    mode: options.mode,
  });
  // The per-key rate limit, once auth has found the key (rate-limit.ts); then the tenant's share of the requests in
  // flight (admission.ts).
  await app.register(keyRateLimitPlugin);
  await app.register(tenantAdmissionPlugin, { admission: app.admission });
  // An unknown /v1 route asks for the key first, as every /v1 route does: without one, 401, not 404.
  app.setNotFoundHandler(answerNotFound);
  // A route that declares no query parameters refuses any (400 parameter_unknown), as its body refuses an unknown
  // field. Only this context's routes: the rails' provider routes and health are siblings, and read what they read.
  app.addHook("onRoute", (route) => {
    if (route.schema === undefined) route.schema = { querystring: noQueryParameters };
    else if (route.schema.querystring === undefined) route.schema.querystring = noQueryParameters;
  });
  await app.register(idempotencyPlugin, {
    sql: options.db,
    inProgressTimeoutMs: options.idempotencyInProgressTimeoutMs,
    rememberedAnswersMax: options.idempotencyRememberedAnswersMax,
    rememberedAnswerTtlMs: options.idempotencyRememberedAnswerTtlMs,
  });
  await app.register(paymentRoutes, {
    db: options.db,
    payments: options.payments,
    idempotencyInProgressTimeoutMs: options.idempotencyInProgressTimeoutMs,
  });
  await app.register(quoteRoutes, { payments: options.payments });
  await app.register(invoiceRoutes, { db: options.db, settlement: options.settlement });
  await app.register(invoicePaymentRoutes, { settlement: options.settlement });
  await app.register(webhookEndpointRoutes, {
    db: options.db,
    egress: options.egress ?? { mode: options.mode, allowHosts: [] },
    resolver: options.webhookResolver,
  });
  await app.register(webhookDeliveryRoutes, { db: options.db });
  await app.register(eventRoutes, { db: options.db, mode: options.mode });
  await app.register(accountRoutes, { db: options.db, accounts: options.accounts, ledger: options.ledger });
  await app.register(payeeRoutes, {
    db: options.db,
    accounts: options.accounts,
    rails: options.rails,
    nowMs: Date.now,
  });
  await app.register(listRoutes, { db: options.db });
  await app.register(refundRoutes, { refunds: options.payments });
  if (options.paywalls !== undefined)
    await app.register(paywallRoutes, {
      db: options.db,
      accounts: options.accounts,
      paywalls: options.paywalls,
      nowMs: Date.now,
    });
  if (options.x402 !== undefined)
    await app.register(x402Routes, { x402: options.x402, accounts: options.accounts });
  const keyed = { db: options.db, changes: options.changes, mode: options.mode, nowMs: Date.now };
  await app.register(tenantRoutes, keyed);
  await app.register(apiKeyRoutes, keyed);
  await app.register(railRoutes, {
    db: options.db,
    ledger: options.ledger,
    accounts: options.accounts,
    rails: options.rails,
  });
};
