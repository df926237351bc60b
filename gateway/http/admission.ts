// The admission limit in front of the /v1 context: at most `requestsInFlightMax` API requests in flight in this
// process. One more is answered 503 `overloaded` with Retry-After at once, by the context's first onRequest hook —
// before its API key is looked up or its body read — so a burst past saturation costs each refused request one
// small answer, not memory and queueing delay for everyone admitted.
//
// A request is in flight from that hook until its response closes: sent, or its connection gone. Node's
// ServerResponse emits 'close' once in either case (also for a client that hangs up mid-body or while its handler
// runs, when Fastify's onResponse never comes), so the count cannot leak. A handler whose client hung up may still
// be finishing its work: the ledger's own queue bounds that. Health and the OpenAPI document are siblings of the
// context, outside the limit (server.ts).
//
// While the limit is reached, a request that comes over a socket is refused sooner still, by the HTTP server's own
// request listener (refusingFirst), before Fastify makes a request and a reply of it: the same answer for about 40%
// less of the process's CPU. The hook stays the one that counts, and refuses what that listener lets through.
//
// One pool for every tenant let one tenant take all of it: requests that each wait long (a settlement waits up to a
// minute and a half for its transaction; a payment on a slow rail up to its wait_ms) pile up even under the per-key
// rate limit (100 a second in production is 9,000 in flight at 90 s each), and every other tenant was then answered
// 503. So a second limit, per tenant, once auth has found the key (tenantAdmissionPlugin, as Stripe's concurrent
// requests limiter): at most `tenantRequestsInFlightMax` of one tenant's requests in flight (a quarter of the pool
// by default), one more answered 429 `rate_limited` with Retry-After — the tenant's own excess, not the server's.
// The operator's credential is counted apart; a request without a key is not counted there (auth refuses it, or it
// is a route of no tenant).
import type { IncomingMessage, RequestListener, ServerResponse } from "node:http";
import type { FastifyPluginCallback, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { tenantShareOf } from "../../core/index.ts";
import { ApiError, overloaded, overloadedRetryAfterSeconds, sendError } from "./errors.ts";
import { errorView } from "./schemas.ts";
import { currentApiVersion, requestedApiVersion, versionHeaderLowerCase } from "./versioning.ts";

/** The default for REQUESTS_IN_FLIGHT_MAX. */
export const requestsInFlightMaxDefault = 4_096;

/** The default for REQUESTS_IN_FLIGHT_PER_TENANT_MAX: a quarter of the pool, so that one tenant never fills it. */
export function tenantRequestsInFlightMaxDefault(requestsInFlightMax: number): number {
  return tenantShareOf(requestsInFlightMax);
}

/** The limits and what they count, read by health. One per server. */
export type Admission = {
  readonly requestsInFlightMax: number;
  /** Requests admitted whose response has not closed yet. */
  requestsInFlight: number;
  /** The most of one tenant's requests in flight at once; null: no limit of its own, only the pool's. */
  readonly tenantRequestsInFlightMax: number | null;
  /** Each tenant's requests (the operator's under "operator") in flight, for those with any. */
  readonly requestsInFlightByTenant: Map<string, number>;
};

/**
 * `requestsInFlightMax`: a positive integer (the configuration's schema checks REQUESTS_IN_FLIGHT_MAX);
 * `tenantRequestsInFlightMax`: a positive integer, null for none, or unset for the default (a quarter of the pool).
 */
export function createAdmission(params: {
  requestsInFlightMax: number;
  tenantRequestsInFlightMax?: number | null | undefined;
}): Admission {
  return {
    requestsInFlightMax: params.requestsInFlightMax,
    requestsInFlight: 0,
    tenantRequestsInFlightMax:
      params.tenantRequestsInFlightMax === undefined
        ? tenantRequestsInFlightMaxDefault(params.requestsInFlightMax)
        : params.tenantRequestsInFlightMax,
    requestsInFlightByTenant: new Map(),
  };
}

/**
 * The answer past the limit, made once: an error made for each refused request (its stack captured, then collected) was
 * the largest item of the gateway's profile under overload — 12% of its CPU at 8,192 clients offered twice the
 * sustainable rate, where it refused ~9,000 requests a second; made once, the payments served there went from 3,873 to
 * 5,852 a second (issue #19, one run each). The answer's body is made from it for each refusal, as before.
 */
const refusal = overloaded("too many requests in flight; retry after the seconds in Retry-After");

/**
 * The HTTP server's request listener in front of Fastify's `handler`: while the limit is reached, an API request
 * (/v1/…) is answered here what the context's hook answers it — 503, Retry-After, the same body, in the version it
 * names or else the current one — without Fastify making a request and a reply of it, finding its route, or running
 * the hooks that every request runs before the hook's. Goes on to Fastify: any other request, the paths in `outside`
 * among them (the rails' provider routes, /v1/webhooks/…, siblings of the context: outside the limit); an API request
 * while the limit is not reached; one naming a version that is none (the versioning hook answers it 400); and every
 * one while `fastifyAnswers()` (when refusals are logged, or when a per-address rate limit counts every request and
 * says so in its headers).
 *
 * What it saves (issue #19): with the limit held reached and 256 connections sending payments as fast as they were
 * answered, the gateway's process spent 32.6 µs of CPU a refusal through Fastify, 19.2 µs here (3 rounds of 8 s each,
 * 33.4/32.3/32.6 against 19.5/19.2/19.2); of those 19 µs, about 6 are the kernel's (reading the request, writing
 * the answer). In the HTTP bench's overload case at 8,192 clients (4,096 in flight, ~11,000 refused a second), the
 * payments served went from 5,381 and 5,500 a second to 6,011 and 6,142 (two runs each, taking turns).
 */
export function refusingFirst(
  admission: Admission,
  handler: RequestListener,
  fastifyAnswers: () => boolean,
  outside: ReadonlySet<string>,
): RequestListener {
  const body = Buffer.from(JSON.stringify(refusal.body()));
  const headersByVersion = new Map<string, string[]>();
  const headersIn = (version: string) => {
    let headers = headersByVersion.get(version);
    if (headers === undefined) {
      headers = refusalHeaderLines(refusal, version, body);
      headersByVersion.set(version, headers);
    }
    return headers;
  };
  return (request: IncomingMessage, response: ServerResponse) => {
    const url = request.url;
    if (
      admission.requestsInFlight < admission.requestsInFlightMax ||
      url?.startsWith("/v1/") !== true ||
      fastifyAnswers()
    ) {
      handler(request, response);
      return;
    }
    const path = pathOf(url);
    // A path with an escape in it may be one of `outside` once the router has decoded it.
    if (outside.has(path) || path.includes("%")) {
      handler(request, response);
      return;
    }
    let version: string;
    try {
      version = requestedApiVersion(request.headers[versionHeaderLowerCase]) ?? currentApiVersion;
    } catch {
      handler(request, response);
      return;
    }
    response.writeHead(refusal.status, headersIn(version));
    response.end(body);
  };
}

/** A request target's path: what comes before its query. */
function pathOf(url: string): string {
  const query = url.indexOf("?");
  return query < 0 ? url : url.slice(0, query);
}

/**
 * The tenant a response holds a place of (set by the tenant hook), given back with its place in the pool by the one
 * 'close' listener: one listener a request, not one for each count.
 */
const heldShare = Symbol("switchyard.admission.share");
type CountedResponse = ServerResponse & { [heldShare]?: string };

const plugin: FastifyPluginCallback<{ admission: Admission }> = (app, { admission }, done) => {
  const counts = admission.requestsInFlightByTenant;
  // A plain listener, not `once`'s wrapper made for each request: a response emits 'close' once.
  function release(this: CountedResponse) {
    admission.requestsInFlight -= 1;
    const share = this[heldShare];
    if (share === undefined) return;
    const left = (counts.get(share) ?? 1) - 1;
    if (left === 0) counts.delete(share);
    else counts.set(share, left);
  }
  // Callback style, no promise: this runs for every API request.
  app.addHook("onRequest", (_request, reply, next) => {
    if (admission.requestsInFlight >= admission.requestsInFlightMax) {
      sendError(reply, refusal);
      return;
    }
    admission.requestsInFlight += 1;
    reply.raw.on("close", release);
    next();
  });
  // Every route behind the limit may answer 503: the document says so.
  app.addHook("onRoute", (route) => {
    if (route.schema !== undefined)
      route.schema.response = { ...(route.schema.response ?? {}), 503: errorView };
  });
  done();
};

// Not encapsulated: the hooks belong to the context that registers the plugin, and to the contexts inside it.
export const admissionPlugin = fp(plugin, { name: "switchyard-admission" });

/** Whose share of the pool a request counts against: its tenant's, the operator's, or none (no key). */
function shareOf(request: FastifyRequest): string | null {
  if (request.tenant !== null) return request.tenant.id;
  return request.operator ? "operator" : null;
}

const tenantPlugin: FastifyPluginCallback<{ admission: Admission }> = (app, { admission }, done) => {
  const max = admission.tenantRequestsInFlightMax;
  if (max === null) {
    done();
    return;
  }
  const counts = admission.requestsInFlightByTenant;
  // Callback style, no promise: this runs for every API request.
  app.addHook("onRequest", (request, reply, next) => {
    const share = shareOf(request);
    // A response whose connection closed while auth waited on the database (a key not remembered, the operator's)
    // has emitted its one 'close' already: counted now, it would hold a place of its tenant's for good.
    if (share === null || reply.raw.destroyed) {
      next();
      return;
    }
    const count = counts.get(share) ?? 0;
    if (count >= max) {
      next(
        new ApiError(
          "rate_limited",
          `too many of this tenant's requests in flight: at most ${max} at once; retry after the seconds in Retry-After`,
          { retryAfterSeconds: overloadedRetryAfterSeconds },
        ),
      );
      return;
    }
    counts.set(share, count + 1);
    (reply.raw as CountedResponse)[heldShare] = share; // given back by the pool's 'close' listener (release)
    next();
  });
  done();
};

/**
 * In the /v1 context, once auth has found the key: the per-tenant limit's hook (above); inside the pool's context,
 * whose 'close' listener gives its count back.
 */
export const tenantAdmissionPlugin = fp(tenantPlugin, {
  name: "switchyard-tenant-admission",
  dependencies: ["switchyard-admission", "switchyard-auth"],
});

/**
 * The header lines of a 503 answered by a listener before Fastify, as the error plugin's answer has them: sendError's,
 * send's, the versioning hook's, then `more`, then the length.
 */
function refusalHeaderLines(
  answer: ApiError,
  version: string,
  body: Buffer,
  more: readonly string[] = [],
): string[] {
  return [
    "retry-after",
    String(answer.retryAfterSeconds),
    "content-type",
    "application/json; charset=utf-8",
    versionHeaderLowerCase,
    version,
    ...more,
    "content-length",
    String(body.length),
  ];
}

/**
 * The HTTP server's request listener in front of `next` once the server is stopping (`stopping()`: Fastify's close
 * has begun): every request is answered 503 `overloaded` with Retry-After and `Connection: close`, in the API's shape,
 * so that the client retries elsewhere or after the restart. Fastify answered those itself, without Retry-After, in a
 * body of its own.
 */
export function stoppingFirst(stopping: () => boolean, next: RequestListener): RequestListener {
  const stoppingRefusal = overloaded("the server is stopping; retry after the seconds in Retry-After");
  const body = Buffer.from(JSON.stringify(stoppingRefusal.body()));
  const headers = refusalHeaderLines(stoppingRefusal, currentApiVersion, body, ["connection", "close"]);
  return (request: IncomingMessage, response: ServerResponse) => {
    if (!stopping()) {
      next(request, response);
      return;
    }
    response.writeHead(stoppingRefusal.status, headers);
    response.end(body);
  };
}
