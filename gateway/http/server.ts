// Builds the Fastify server. Zod checks requests (typed through the zod type provider) and responses; the
// error plugin answers every failure in one shape. Three siblings need no API key — health, the OpenAPI
// document, the rails' provider routes — and one encapsulated /v1 context holds auth, Idempotency-Key and the
// resources (v1.ts), inside the admission limit (admission.ts: at most so many API requests in flight, the rest
// answered 503 at once). Every limit explicit: Fastify's request timeout defaults to none.
import http from "node:http";
import Fastify, { type FastifyInstance, type FastifySchemaCompiler, LogController } from "fastify";
import { serializerCompiler, type ZodTypeProvider } from "fastify-type-provider-zod";
import type { ZodType } from "zod";
import type { RailRoute } from "../../core/index.ts";
import type { ChangeBus } from "../db/index.ts";
import { type ApiKeyCacheLimits, apiKeyCacheDefaults } from "../tenants/index.ts";
import {
  type Admission,
  admissionPlugin,
  createAdmission,
  refusingFirst,
  requestsInFlightMaxDefault,
  stoppingFirst,
} from "./admission.ts";
import { answerClientError } from "./client-errors.ts";
import { docsPlugin } from "./docs.ts";
import { answerFrameworkError, errorsPlugin, RequestValidationError } from "./errors.ts";
import { healthPlugin } from "./health.ts";
import { parseJsonBody } from "./json-body.ts";
import { openApiPlugin } from "./openapi.ts";
import { railRoutesPlugin } from "./rail-routes.ts";
import { type RateLimits, rateLimitPlugin, rateLimitsOff } from "./rate-limit.ts";
import { noQueryParameters } from "./schemas.ts";
import { textSafetyPlugin } from "./text-safety.ts";
import { type RoutesOptions, v1Plugin } from "./v1.ts";
import { versioningPlugin } from "./versioning.ts";

export type { RoutesOptions } from "./v1.ts";

export type ServerOptions = RoutesOptions & {
  requestTimeoutMs: number;
  bodyLimitBytes: number;
  idempotencyInProgressTimeoutMs: number;
  /** How many answers of inline routes the Idempotency-Key plugin remembers (default: its rememberedAnswersMax). */
  idempotencyRememberedAnswersMax?: number;
  /** How long it remembers each (default: its rememberedAnswerTtlMs). */
  idempotencyRememberedAnswerTtlMs?: number;
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  /** Where log lines go (default: standard output); a test reads them here. */
  logStream?: { write(line: string): void };
  /** Applied to every line written (the configuration's secrets redacted: app/secrets.ts). */
  logScrub?: (line: string) => string;
  /** How many valid API keys each server remembers, and for how long (default: apiKeyCacheDefaults). */
  apiKeyCache?: ApiKeyCacheLimits;
  /** Where API-key revocations by any process arrive, and where this one's are announced (the app's change bus). */
  changes: ChangeBus;
  /** The deployment's mode: development takes only sk_test_ keys, production only sk_live_ ones. */
  mode: "development" | "production";
  /** The rails' provider routes (core's RailRoute), mounted beside /v1 without an API key. */
  railRoutes?: readonly RailRoute[];
  /** The most API requests in flight at once; more are answered 503 `overloaded` (default: requestsInFlightMaxDefault). */
  requestsInFlightMax?: number;
  /**
   * The most of one tenant's API requests in flight at once; more are answered 429 `rate_limited` (null: none; default:
   * tenantRequestsInFlightMaxDefault, a quarter of requestsInFlightMax).
   */
  tenantRequestsInFlightMax?: number | null;
  /** Requests a second per client IP and per API key, past which 429 rate_limited (default: none, rateLimitsOff). */
  rateLimits?: RateLimits;
  /** How long GET /readyz waits for the database's answer (default: readinessTimeoutMsDefault). */
  readinessTimeoutMs?: number;
};

declare module "fastify" {
  interface FastifyInstance {
    /** The admission limit of the API's requests, and how many are in flight now. */
    admission: Admission;
  }
}

/** The version the OpenAPI document states. */
export const apiVersion = "1.0.0";

/**
 * Zod for requests, with the input reported so that a missing parameter can be told from a wrong one
 * (parameter_missing, parameter_invalid): fastify-type-provider-zod's validatorCompiler parses without it.
 */
const validatorCompiler: FastifySchemaCompiler<ZodType> = ({ schema, httpPart }) => {
  const validate = (data: unknown) => {
    const result = schema.safeParse(data, { reportInput: true });
    if (result.success) return { value: result.data };
    // No body (none sent, an empty one, or JSON null) where the route asks for one: refused naming the first required
    // parameter, as Stripe answers "Missing required param: amount." (before: parameter_invalid, its param "",
    // "expected object, received null"), or, when every parameter is optional, the body itself as missing — still
    // refused: a route that takes an empty object acts on {} only when it is sent.
    if (httpPart === "body" && (data === undefined || data === null)) {
      const empty = schema.safeParse({}, { reportInput: true });
      if (!empty.success) return { error: new RequestValidationError(empty.error) };
    }
    return { error: new RequestValidationError(result.error) };
  };
  if (schema !== noQueryParameters) return validate;
  // An empty query passes as it is (a payment's); any key goes through zod, which names it.
  return (data) => {
    for (const _key in data as object) return validate(data);
    return { value: data };
  };
};

/** How long a connection is kept open with no request on it. */
const keepAliveTimeoutMs = 5_000;

/**
 * The server's timeouts, all from the request timeout: a request whose headers and body are not received whole in time
 * is answered 408 request_timeout (client-errors.ts). Node checks that only every connectionsCheckingInterval (30 s by
 * default; here a quarter of the bound, at most 1 s) and only once headersTimeout has passed too (60 s by default; here
 * the bound itself), and it closes a socket idle past its timeout with no answer: that one is set two checks past the
 * bound, so that the 408 comes first. Before, the idle timeout was the bound itself, and a stalled request got a bare
 * close.
 */
export function requestTimeouts(requestTimeoutMs: number) {
  const connectionsCheckingInterval = Math.max(10, Math.min(1_000, Math.floor(requestTimeoutMs / 4)));
  return {
    server: {
      requestTimeout: requestTimeoutMs,
      headersTimeout: requestTimeoutMs,
      connectionsCheckingInterval,
      keepAliveTimeout: keepAliveTimeoutMs,
    },
    // Node's timers take at most 2^31 - 1 ms (a longer one fires at once).
    socketIdleMs: Math.min(2 ** 31 - 1, requestTimeoutMs + 2 * connectionsCheckingInterval),
  };
}

export async function buildServer(options: ServerOptions): Promise<FastifyInstance> {
  const admission = createAdmission({
    requestsInFlightMax: options.requestsInFlightMax ?? requestsInFlightMaxDefault,
    tenantRequestsInFlightMax: options.tenantRequestsInFlightMax,
  });
  const rateLimits = options.rateLimits ?? rateLimitsOff;
  // Read once a request comes, when `app` (made by the call below) is there.
  const fastifyAnswers = () => {
    const level = app.log.level;
    return rateLimits.ipRequestsPerSecondMax !== null || level === "debug" || level === "trace";
  };
  // Set once Fastify's close begins (preClose, below): every request is then answered 503 with Retry-After.
  let stopping = false;
  const timeouts = requestTimeouts(options.requestTimeoutMs);
  const app = Fastify({
    requestTimeout: options.requestTimeoutMs,
    connectionTimeout: timeouts.socketIdleMs,
    keepAliveTimeout: keepAliveTimeoutMs,
    // Fastify's own server, with the admission limit's refusals answered before its handler (admission.ts), except
    // while they are logged or a per-address limit counts every request; the rails' provider routes are outside the
    // limit. The settings Fastify gives the server it makes.
    serverFactory: (handler) => {
      const railPaths = new Set((options.railRoutes ?? []).map((route) => route.path));
      const server = http.createServer(
        timeouts.server,
        stoppingFirst(() => stopping, refusingFirst(admission, handler, fastifyAnswers, railPaths)),
      );
      server.setTimeout(timeouts.socketIdleMs);
      return server;
    },
    bodyLimit: options.bodyLimitBytes,
    frameworkErrors: answerFrameworkError,
    // Bytes Node's parser refuses before any request exists (a header block too large, a malformed Content-Length):
    // answered in the API's shape too, with Switchyard-Version.
    clientErrorHandler: answerClientError,
    // One line per answered request, written below, instead of Fastify's two (incoming, completed). Through a
    // LogController: the top-level disableRequestLogging is deprecated, and npm start printed the warning.
    logController: new LogController({ disableRequestLogging: true }),
    logger: {
      level: options.logLevel,
      ...(options.logStream === undefined ? {} : { stream: options.logStream }),
      ...(options.logScrub === undefined ? {} : { hooks: { streamWrite: options.logScrub } }),
      redact: {
        paths: ["req.headers.authorization", 'req.headers["stripe-signature"]'],
        censor: "[redacted]",
      },
    },
  }).withTypeProvider<ZodTypeProvider>();
  // The access log: a refused or failed request (4xx, 5xx) at info, so that it shows at the default level; an answered
  // one at debug (LOG_LEVEL=debug), and so is load shed (429, 503: a line each when there are most of them). Fastify's
  // two info lines for every request (incoming, completed) cost a fifth of the embedded default's payments:
  // 5,558–5,885/s against 6,785–6,939/s without them (PGlite, 224 clients, issue #19).
  app.addHook("preClose", (done) => {
    stopping = true;
    done();
  });
  app.addHook("onResponse", (request, reply, done) => {
    const status = reply.statusCode;
    // An answered request's line is not even built below debug (the hot path's).
    const level =
      status >= 400 && status !== 429 && status !== 503
        ? "info"
        : request.log.level === "debug" || request.log.level === "trace"
          ? "debug"
          : null;
    if (level !== null)
      request.log[level](
        { method: request.method, url: request.url, statusCode: status, responseTimeMs: reply.elapsedTime },
        "request answered",
      );
    done();
  });
  // Bodies are JSON: Fastify's own text/plain parser would hand a route a string, refused as a wrong type (400)
  // where the request's fault is its media type (415 unsupported_media_type, as for any other).
  app.removeContentTypeParser("text/plain");
  // An empty JSON body is no body, and a `__proto__` key a refused parameter rather than invalid JSON (json-body.ts).
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, parseJsonBody);
  app.setValidatorCompiler(validatorCompiler);
  // Responses are checked against their schema too: a response that does not match is a bug, answered 500.
  app.setSerializerCompiler(serializerCompiler);
  app.decorate("admission", admission);
  await app.register(errorsPlugin);
  // Switchyard-Version on every response, errors too; hooks before every other.
  await app.register(versioningPlugin);
  await app.register(textSafetyPlugin);
  // The per-IP limit's hook before every route's own (admission's, auth's); the per-key one is added after auth (v1.ts).
  await app.register(rateLimitPlugin, { limits: rateLimits });
  await app.register(openApiPlugin, { version: apiVersion });
  await app.register(docsPlugin);
  await app.register(healthPlugin, {
    rails: options.rails,
    admission,
    db: options.db,
    ...(options.readinessTimeoutMs === undefined ? {} : { readinessTimeoutMs: options.readinessTimeoutMs }),
  });
  await app.register(railRoutesPlugin, { routes: options.railRoutes ?? [] });
  // The admission limit's hook runs before any of the /v1 context's own (auth's first): a context around it.
  await app.register(async (admitted) => {
    await admitted.register(admissionPlugin, { admission });
    await admitted.register(v1Plugin, {
      prefix: "/v1",
      db: options.db,
      ledger: options.ledger,
      accounts: options.accounts,
      rails: options.rails,
      payments: options.payments,
      settlement: options.settlement,
      egress: options.egress,
      webhookResolver: options.webhookResolver,
      paywalls: options.paywalls,
      x402: options.x402,
      apiKeyCache: options.apiKeyCache ?? apiKeyCacheDefaults,
      changes: options.changes,
      mode: options.mode,
      idempotencyInProgressTimeoutMs: options.idempotencyInProgressTimeoutMs,
      idempotencyRememberedAnswersMax: options.idempotencyRememberedAnswersMax,
      idempotencyRememberedAnswerTtlMs: options.idempotencyRememberedAnswerTtlMs,
    });
  });
  return app;
}
