// The closed set of error codes the API answers with, and the HTTP status of each. A code is stable:
// clients may branch on it. The Record makes the compiler find a code without a status.
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import type { ZodError } from "zod";
import { causeWhere, railUnreachableRetryAfterSeconds, SwitchyardError } from "../../core/index.ts";
import { serverSqlState } from "../db/index.ts";
import { LedgerBackpressureError, LedgerClosedError, LedgerStoreError } from "../ledger/index.ts";
import type { PayeeRefusal } from "../payees/index.ts";
import type { PaymentFailureCode, PaymentRefusal } from "../payments/index.ts";
import { type PaywallErrorCode, paywallErrorStatus } from "../paywall/paywalls.ts";
import { type InvoicePaymentRefusal, invoicePaymentRefusalStatus } from "../settlement/index.ts";
import { type TenancyErrorCode, tenancyErrorStatus } from "../tenants/index.ts";
import { type WebhookErrorCode, webhookErrorStatus } from "../webhooks/endpoints.ts";

export type ApiErrorCode =
  | PaymentRefusal
  | PaymentFailureCode
  | PayeeRefusal
  | InvoicePaymentRefusal
  | "amount_too_small"
  | "invalid_json"
  | "unsupported_media_type"
  | "body_too_large"
  | "header_too_large"
  | "bad_request"
  | "parameter_missing"
  | "parameter_invalid"
  | "parameter_unknown"
  | "api_key_missing"
  | "api_key_invalid"
  | TenancyErrorCode
  | WebhookErrorCode
  | PaywallErrorCode
  | "payment_not_found"
  | "invoice_not_found"
  | "refund_not_found"
  | "webhook_endpoint_not_found"
  | "webhook_delivery_not_found"
  | "refund_exceeds_remaining"
  | "invoice_not_paid"
  | "payment_not_succeeded"
  | "refund_unsupported"
  | "rail_not_found"
  | "capital_reference_reused"
  | "route_not_found"
  | "method_not_allowed"
  | "idempotency_key_invalid"
  | "idempotency_key_missing"
  | "idempotency_key_reused"
  | "idempotency_key_in_use"
  | "request_timeout"
  | "rate_limited"
  | "overloaded"
  | "internal_error";

export const errorStatus: Record<ApiErrorCode, number> = {
  invalid_json: 400,
  unsupported_media_type: 415,
  body_too_large: 413,
  header_too_large: 431,
  bad_request: 400,
  parameter_missing: 400,
  parameter_invalid: 400,
  parameter_unknown: 400,
  amount_not_a_decimal: 400,
  amount_not_positive: 400,
  amount_too_precise: 400,
  amount_too_large: 400,
  amount_too_small: 400,
  unknown_asset: 400,
  asset_mismatch: 400,
  same_account: 400,
  api_key_missing: 401,
  api_key_invalid: 401,
  ...tenancyErrorStatus,
  ...webhookErrorStatus,
  ...paywallErrorStatus,
  ...invoicePaymentRefusalStatus,
  insufficient_funds: 402,
  rail_unavailable: 402,
  insufficient_liquidity: 402,
  unreachable_destination: 402,
  fee_above_max: 402,
  expired: 402,
  rejected: 402,
  account_not_found: 404,
  destination_not_found: 404,
  payment_not_found: 404,
  invoice_not_found: 404,
  refund_not_found: 404,
  webhook_endpoint_not_found: 404,
  webhook_delivery_not_found: 404,
  refund_exceeds_remaining: 409,
  invoice_not_paid: 409,
  payment_not_succeeded: 409,
  refund_unsupported: 422,
  rail_not_found: 404,
  capital_reference_reused: 409,
  payee_not_found: 404,
  payee_method_duplicate: 400,
  route_not_found: 404,
  method_not_allowed: 405,
  request_timeout: 408,
  idempotency_key_invalid: 400,
  idempotency_key_missing: 400,
  idempotency_key_reused: 409,
  idempotency_key_in_use: 409,
  no_route: 422,
  destination_is_gateway: 422,
  quote_not_found: 404,
  quote_mismatch: 422,
  quote_expired: 422,
  quote_stale: 422,
  quote_used: 409,
  quote_constraints_unmet: 422,
  internal_error: 500,
  rate_limited: 429,
  overloaded: 503,
};

/**
 * An error's status: errorStatus's, but 400 for an object not found that a parameter of the request names (`param`:
 * a field of the body, a query parameter, a header), as Stripe answers `resource_missing` for one. 404 stays for the
 * object the path names, which such an error never carries a `param` for: a client (or a fuzzer) reading 404 on
 * `PATCH /v1/payees/{id}` takes the payee to be gone, when it was an account one of its methods named. Not being
 * kept by an Idempotency-Key (a 400), the request may be sent again under its key once the object exists.
 */
export function statusOf(code: ApiErrorCode, param: string | undefined): number {
  const status = errorStatus[code];
  return status === 404 && param !== undefined ? 400 : status;
}

/** What an `overloaded` answer's Retry-After says: a full queue drains within about a second. */
export const overloadedRetryAfterSeconds = 1;

/** The Retry-After of a code answered 503 whenever it is, unless the error names its own. */
const retryAfterSecondsOf: Partial<Record<ApiErrorCode, number>> = {
  overloaded: overloadedRetryAfterSeconds,
  rail_unreachable: railUnreachableRetryAfterSeconds,
};

export type ApiErrorBody = {
  error: { code: ApiErrorCode; message: string; param?: string } & Record<string, unknown>;
};

/**
 * An expected failure on its way to the client: thrown in a handler or hook, answered by the error plugin.
 * Its short message is what the client reads, so it carries no details. With `retryAfterSeconds`, the answer
 * carries a Retry-After header.
 */
export class ApiError extends SwitchyardError {
  override name = "ApiError";
  readonly code: ApiErrorCode;
  readonly param: string | undefined;
  readonly extra: Record<string, unknown>;
  readonly retryAfterSeconds: number | undefined;
  /** Headers the answer carries besides the code's own (Retry-After, a 401's challenge): what the refusal says is taken. */
  readonly headers: Readonly<Record<string, string>> | undefined;
  constructor(
    code: ApiErrorCode,
    message: string,
    options: {
      param?: string;
      extra?: Record<string, unknown>;
      retryAfterSeconds?: number;
      headers?: Readonly<Record<string, string>>;
    } = {},
  ) {
    super(message);
    this.code = code;
    this.param = options.param;
    this.extra = options.extra ?? {};
    this.retryAfterSeconds = options.retryAfterSeconds ?? retryAfterSecondsOf[code];
    this.headers = options.headers;
  }
  get status(): number {
    return statusOf(this.code, this.param);
  }
  body(): ApiErrorBody {
    return {
      error: {
        code: this.code,
        message: this.shortMessage,
        ...(this.param === undefined ? {} : { param: this.param }),
        ...this.extra,
      },
    };
  }
}

/**
 * Turns zod's first issue into one of our codes, naming the parameter by its dotted path; an issue with the whole body
 * (an array where an object is asked, or no body) names `body`, not an empty path (the only root a request's schemas
 * can refuse: Fastify gives the query and the path parameters as objects).
 */
export function fromZodError(error: ZodError, prefix = ""): ApiError {
  const issue = error.issues[0];
  if (issue === undefined) return new ApiError("parameter_invalid", "invalid request");
  const path = [prefix, ...issue.path.map(String)].filter((part) => part !== "").join(".");
  if (issue.code === "unrecognized_keys") {
    const key = [path, issue.keys[0]].filter((part) => part !== undefined && part !== "").join(".");
    return new ApiError("parameter_unknown", `unknown parameter "${key}"`, { param: key });
  }
  const param = path === "" ? "body" : path;
  // Absent: undefined, or, for the body as a whole, null (Fastify's value for a request that sent none).
  if (issue.code === "invalid_type" && (issue.input === undefined || (path === "" && issue.input === null))) {
    return new ApiError("parameter_missing", `missing parameter "${param}"`, { param });
  }
  return new ApiError("parameter_invalid", `invalid parameter "${param}": ${issue.message}`, { param });
}

/**
 * 503 `overloaded`, with Retry-After: a queue or limit of this process is full, the process is stopping, or the
 * database was too busy; the caller retries then, with the same Idempotency-Key (a part of a payment already done —
 * its rail paid before the write of its outcome timed out — is found again by the key, and finished by recovery).
 */
export function overloaded(message: string): ApiError {
  return new ApiError("overloaded", message); // its Retry-After: retryAfterSecondsOf
}

/**
 * The challenge a 401 carries (RFC 9110 §11.6.1: a 401 without one is not a valid answer), in RFC 6750's words: a
 * Bearer credential, and why the one sent was refused.
 */
const challengeOf: Partial<Record<ApiErrorCode, string>> = {
  api_key_missing: 'Bearer realm="switchyard"',
  api_key_invalid: 'Bearer realm="switchyard", error="invalid_token"',
};

export function sendError(reply: FastifyReply, error: ApiError): FastifyReply {
  if (error.retryAfterSeconds !== undefined) reply.header("retry-after", String(error.retryAfterSeconds));
  const challenge = challengeOf[error.code];
  if (challenge !== undefined) reply.header("www-authenticate", challenge);
  if (error.headers !== undefined) reply.headers(error.headers);
  return reply.code(error.status).send(error.body());
}

/**
 * The SQLSTATEs with which the database says it was too busy for the request, not that the request was wrong: a
 * statement timeout (57014), a lock not had in time (55P03), a deadlock (40P01), a serialization failure (40001).
 */
const databaseBusyStates: ReadonlySet<string> = new Set(["57014", "55P03", "40P01", "40001"]);

/**
 * Whether the database being too busy is why the request failed: a server's error with one of databaseBusyStates
 * along the error's causes (a ledger's store failure carries the server's state as its sqlState).
 */
export function isDatabaseBusy(error: unknown): boolean {
  const busy = causeWhere(error, (cause) => {
    const state = cause instanceof LedgerStoreError ? cause.sqlState : serverSqlState(cause);
    return state !== undefined && databaseBusyStates.has(state);
  });
  return busy !== undefined;
}

/**
 * Whether a full queue is why the request failed: the ledger's writer refused it (LedgerBackpressureError, never
 * queued, never partly applied), thrown as it is or along a service's error's causes.
 */
export function isBackpressure(error: unknown): boolean {
  return (
    error instanceof SwitchyardError &&
    error.walk((cause) => cause instanceof LedgerBackpressureError) !== undefined
  );
}

type FastifyLikeError = Error & { code?: string; statusCode?: number };

/**
 * What the validator compiler hands Fastify when a request part does not match its schema; the error plugin
 * answers it with fromZodError's code. The zod error is also the cause.
 */
export class RequestValidationError extends SwitchyardError {
  override name = "RequestValidationError";
  readonly zodError: ZodError;
  constructor(zodError: ZodError) {
    const issue = zodError.issues[0];
    super("the request does not match its schema", {
      cause: zodError,
      ...(issue === undefined ? {} : { details: `${issue.path.join(".")}: ${issue.message}` }),
    });
    this.zodError = zodError;
  }
}

/**
 * What Fastify answers itself, before routing: a URL that is not valid percent-encoding (FST_ERR_BAD_URL), a
 * path parameter longer than the router takes (FST_ERR_MAX_PARAM_LENGTH) — in the API's shape instead of
 * Fastify's, as the invalid parameters they are. The server's frameworkErrors option.
 */
export function answerFrameworkError(error: FastifyLikeError, _request: unknown, reply: FastifyReply): void {
  if (error.code === "FST_ERR_BAD_URL") {
    sendError(
      reply,
      new ApiError("parameter_invalid", "the URL is not valid: a part of it is not percent-encoded"),
    );
    return;
  }
  if (error.code === "FST_ERR_MAX_PARAM_LENGTH") {
    sendError(reply, new ApiError("parameter_invalid", "the URL is not valid: a parameter is too long"));
    return;
  }
  reply.log.error({ err: error }, "unexpected framework error");
  sendError(reply, new ApiError("internal_error", "something went wrong on our side"));
}

/**
 * The methods each route's path answers to, as the routes are added (the plugin's onRoute hook): a path with routes
 * under other methods than the request's is answered 405 with Allow (RFC 9110 §15.5.6), not 404.
 */
export class RouteMethods {
  /** Each path pattern's matcher and methods, in the order added. */
  readonly #patterns = new Map<string, { matcher: RegExp; methods: Set<string> }>();

  add(url: string, methods: readonly string[]): void {
    let entry = this.#patterns.get(url);
    if (entry === undefined) {
      entry = { matcher: matcherOf(url), methods: new Set() };
      this.#patterns.set(url, entry);
    }
    for (const method of methods) {
      // An OPTIONS route here is a paywall's preflight twin (paywall/fastify.ts), which answers only a CORS
      // preflight: a plain OPTIONS is not taken there, so it is not offered in Allow.
      if (method.toUpperCase() !== "OPTIONS") entry.methods.add(method.toUpperCase());
    }
    // Fastify answers HEAD for every GET route (exposeHeadRoutes), and a HEAD route is only ever such a twin — also
    // the one of the trailing-slash copy Fastify makes of a prefix's "/" route without telling onRoute of its GET.
    if (entry.methods.has("GET")) entry.methods.add("HEAD");
    if (entry.methods.has("HEAD")) entry.methods.add("GET");
  }

  /** The methods some route takes at `path` (no query), sorted; empty when no route's pattern matches it. */
  of(path: string): string[] {
    // The router matches the decoded path (a reserved character's escape, such as %2F, stays as it is).
    let decoded: string;
    try {
      decoded = decodeURI(path);
    } catch {
      return [];
    }
    const methods = new Set<string>();
    for (const { matcher, methods: own } of this.#patterns.values())
      if (matcher.test(decoded)) for (const method of own) methods.add(method);
    return [...methods].sort();
  }
}

/**
 * A Fastify path pattern as a regular expression over a request's path: `:name` is one segment (the last may be
 * empty, as the router takes it), a last `*` the rest. A pattern with anything else (a parameter's own regular
 * expression, two parameters in a segment) matches nothing: its path then answers 404, as before.
 */
function matcherOf(url: string): RegExp {
  const segments = url.split("/");
  const parts: string[] = [];
  for (const [i, segment] of segments.entries()) {
    const last = i === segments.length - 1;
    if (segment === "*" && last) parts.push(".*");
    else if (/^:[A-Za-z_][A-Za-z0-9_]*$/.test(segment)) parts.push(last ? "[^/]*" : "[^/]+");
    else if (/^[A-Za-z0-9_.~-]*$/.test(segment)) parts.push(segment.replace(/\./g, "\\."));
    else return /(?!)/;
  }
  return new RegExp(`^${parts.join("/")}$`);
}

declare module "fastify" {
  interface FastifyInstance {
    /** The methods each path answers to (errors.ts), for the 405 of a path asked with another. */
    routeMethods: RouteMethods;
  }
}

/**
 * 404 route_not_found, or 405 method_not_allowed with Allow when routes take the path under other methods; a
 * context's own not-found handler (the /v1 context's) runs that context's hooks first.
 */
export function answerNotFound(request: FastifyRequest, reply: FastifyReply): void {
  const path = request.url.split("?")[0]!;
  const allowed = request.server.routeMethods?.of(path) ?? [];
  if (allowed.length > 0 && !allowed.includes(request.method)) {
    reply.header("allow", allowed.join(", "));
    sendError(
      reply,
      new ApiError("method_not_allowed", `${path} takes ${allowed.join(", ")}, not ${request.method}`),
    );
    return;
  }
  sendError(reply, new ApiError("route_not_found", `no route ${request.method} ${path}`));
}

const plugin: FastifyPluginAsync = async (app: FastifyInstance) => {
  const routeMethods = new RouteMethods();
  app.decorate("routeMethods", routeMethods);
  app.addHook("onRoute", (route) => {
    routeMethods.add(route.url, Array.isArray(route.method) ? route.method : [route.method]);
  });
  app.setNotFoundHandler(answerNotFound);
  app.setErrorHandler((error: FastifyLikeError, request, reply) => {
    if (error instanceof ApiError) return sendError(reply, error);
    if (
      error.code === "FST_ERR_CTP_INVALID_JSON_BODY" ||
      error instanceof SyntaxError ||
      error.code === "FST_ERR_CTP_EMPTY_JSON_BODY"
    ) {
      return sendError(reply, new ApiError("invalid_json", "the request body is not valid JSON"));
    }
    // A QUERY request must say its Content-Type (RFC 10008), before its route is even looked at — but a method no
    // route takes at all is answered as such (404 or 405), whatever its body.
    if (
      error.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE" ||
      error.code === "FST_ERR_ROUTE_MISSING_CONTENT_TYPE"
    ) {
      if (request.is404) return answerNotFound(request, reply);
      return sendError(reply, new ApiError("unsupported_media_type", "send the body as application/json"));
    }
    if (error.code === "FST_ERR_CTP_BODY_TOO_LARGE")
      return sendError(reply, new ApiError("body_too_large", "the request body is too large"));
    if (error instanceof RequestValidationError) return sendError(reply, fromZodError(error.zodError));
    // Any other refusal of Fastify's own (its code FST_…, a 4xx status): the request is at fault, answered in the
    // API's shape with a fixed message, never Fastify's text.
    if (
      error.code?.startsWith("FST_") === true &&
      error.statusCode !== undefined &&
      error.statusCode >= 400 &&
      error.statusCode < 500
    ) {
      request.log.info({ err: error }, "a request Fastify refused");
      return sendError(
        reply,
        new ApiError("parameter_invalid", "the request is not valid HTTP for this API"),
      );
    }
    // Not logged: past saturation there is one per refused request, and each is the caller's to retry.
    if (isBackpressure(error))
      return sendError(
        reply,
        overloaded("the ledger's queue is full; retry after the seconds in Retry-After"),
      );
    // The database gave up a wait or a statement of the request's (its statement timeout, a lock, a deadlock): that
    // transaction rolled back — what the request committed before it stays (a payment's rail may have paid) — and
    // the caller retries later with the same Idempotency-Key, which finds it. Logged, as operators should know
    // their database is saturated; not as an error of ours.
    if (isDatabaseBusy(error)) {
      request.log.warn({ err: error }, "the database was too busy for a request");
      return sendError(
        reply,
        overloaded(
          "the database was too busy to answer in time; retry with the same Idempotency-Key after the seconds in Retry-After",
        ),
      );
    }
    // The process is stopping: nothing was written; another process (or this one, restarted) takes the retry.
    if (
      error instanceof SwitchyardError &&
      error.walk((cause) => cause instanceof LedgerClosedError) !== undefined
    )
      return sendError(reply, overloaded("the server is stopping; retry after the seconds in Retry-After"));
    request.log.error({ err: error }, "unexpected error");
    return sendError(
      reply,
      new ApiError(
        "internal_error",
        "something went wrong on our side; the request may be retried with the same Idempotency-Key",
      ),
    );
  });
};

export const errorsPlugin = fp(plugin, { name: "switchyard-errors" });
