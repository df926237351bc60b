// Request rate limits (@fastify/rate-limit's counters), three of them, each a fixed window of one second:
// - per client IP, before anything else of the request is looked at — before the admission limit, the API key, the
//   body — on every route: /v1, health, the OpenAPI document, /docs, the rails' provider routes (Stripe's webhooks,
//   /pay/…). Stripe's deliveries are counted too: a 429 is a failure Stripe retries with backoff, and the limit is far
//   above Stripe's delivery rate to one account.
// - per API key, after authentication, in the /v1 context: keyed by the key's id (never its secret), the operator's
//   credential its own bucket. A tenant's keys are counted apart: a key's burst does not throttle its sibling keys.
// - per tenant, after authentication, over all of its keys (ten keys' worth in production): a tenant cannot multiply
//   its rate by making keys (it may hold a hundred), and so take the process's capacity from every other tenant.
// Past any, 429 `rate_limited` with Retry-After (whole seconds until the window ends) and X-RateLimit-Limit,
// X-RateLimit-Remaining, X-RateLimit-Reset on every counted answer (the tightest counter's when several count). A
// request is counted by the key's counter before the tenant's: one the tenant's refuses has spent a place of its key's.
//
// The counters are in this process's memory (WindowStore: at most rateLimitEntriesMax keys per limit): with N processes
// behind one address, a client may make N times the limit. The IP is the socket's peer (no trustProxy): behind a
// reverse proxy every request has the proxy's address, and the per-IP limit should then be off or set high.
import fastifyRateLimit, { type FastifyRateLimitStore, normalizeIP } from "@fastify/rate-limit";
import type { FastifyPluginAsync, FastifyReply, FastifyRequest, onRequestHookHandler } from "fastify";
import fp from "fastify-plugin";
import { setBounded } from "../../core/index.ts";
import { ApiError } from "./errors.ts";

/** Requests per second allowed; null: no limit. */
export type RateLimits = {
  /** Per client IP (IPv6 counted per /64), on every route. */
  ipRequestsPerSecondMax: number | null;
  /** Per API key (and the operator's credential), on the /v1 routes. */
  keyRequestsPerSecondMax: number | null;
  /** Per tenant, over all of its keys, on the /v1 routes (the operator's credential is not a tenant's). */
  tenantRequestsPerSecondMax: number | null;
};

/** No limit (RATE_LIMIT_PER_IP, _PER_KEY and _PER_TENANT off): load tests and benches, which measure the payment path. */
export const rateLimitsOff: RateLimits = {
  ipRequestsPerSecondMax: null,
  keyRequestsPerSecondMax: null,
  tenantRequestsPerSecondMax: null,
};

/**
 * Development's defaults: a hostile burst against `npm start` meets 429s as it would in production, while one client
 * on a laptop running a load test at what the default embedded database sustains (a few hundred payments a second)
 * is not throttled; a faster load test turns both off.
 */
export const rateLimitsDevelopmentDefault: RateLimits = {
  ipRequestsPerSecondMax: 1_000,
  keyRequestsPerSecondMax: 1_000,
  tenantRequestsPerSecondMax: 10_000,
};

/**
 * Production's defaults: 100 a second per key (Stripe's own live-mode limit), and ten times that per IP so that a few
 * busy clients behind one NAT each reach their key's limit first, and per tenant (ten keys at their limit).
 */
export const rateLimitsProductionDefault: RateLimits = {
  ipRequestsPerSecondMax: 1_000,
  keyRequestsPerSecondMax: 100,
  tenantRequestsPerSecondMax: 1_000,
};

/** The window each limit counts in. */
export const rateLimitWindowMs = 1_000;
/** The most IPs (or keys) whose counts each limit keeps; past it the least recently seen is forgotten. */
export const rateLimitEntriesMax = 10_000;

declare module "fastify" {
  interface FastifyInstance {
    /**
     * The per-key and per-tenant limits' hook, for the /v1 context to add after its auth hook (keyRateLimitPlugin);
     * null: both off.
     */
    keyRateLimit: onRequestHookHandler | null;
  }
}

type Limiter = (request: FastifyRequest) => Promise<{
  isAllowed: boolean;
  max?: number;
  remaining?: number;
  ttlInSeconds?: number;
  isExceeded?: boolean;
}>;

type Window = { count: number; startMs: number };

/**
 * The counts of one limit: a fixed window per key, at most `entriesMax` keys (the least recently counted
 * forgotten first). Instead of the library's LocalStore, which hands every caller the same mutable record: a burst of
 * concurrent requests all read the count after the last one's increment, and all are refused.
 */
class WindowStore implements FastifyRateLimitStore {
  readonly #windows = new Map<string, Window>();
  readonly #entriesMax: number;
  constructor(entriesMax: number) {
    this.#entriesMax = entriesMax;
  }
  incr(
    key: string,
    callback: (error: Error | null, result?: { current: number; ttl: number }) => void,
    timeWindow: number,
  ): void {
    const nowMs = Date.now();
    let window = this.#windows.get(key);
    if (window === undefined || window.startMs + timeWindow <= nowMs) window = { count: 0, startMs: nowMs };
    window.count += 1;
    // Set again as the newest (setBounded moves a key it holds): the Map's order is least recently counted first.
    setBounded(this.#windows, key, window, this.#entriesMax);
    callback(null, { current: window.count, ttl: window.startMs + timeWindow - nowMs });
  }
  child(): FastifyRateLimitStore {
    return new WindowStore(this.#entriesMax);
  }
}

const headerLimit = "x-ratelimit-limit";
const headerRemaining = "x-ratelimit-remaining";
const headerReset = "x-ratelimit-reset";

/** Counts the request in `limiter`; throws 429 past its limit; otherwise says how much is left, unless another counter already said less. */
async function count(limiter: Limiter, request: FastifyRequest, reply: FastifyReply, what: string) {
  const counted = await limiter(request);
  if (counted.isAllowed || counted.max === undefined) return;
  const remaining = counted.remaining ?? 0;
  const resetSeconds = Math.max(1, counted.ttlInSeconds ?? 1);
  const said = reply.getHeader(headerRemaining);
  if (counted.isExceeded === true || said === undefined || Number(said) > remaining) {
    reply.header(headerLimit, String(counted.max));
    reply.header(headerRemaining, String(remaining));
    reply.header(headerReset, String(resetSeconds));
  }
  if (counted.isExceeded === true)
    throw new ApiError(
      "rate_limited",
      `too many requests ${what}: at most ${counted.max} a second; retry after the seconds in Retry-After`,
      { retryAfterSeconds: resetSeconds },
    );
}

/**
 * The key a request's per-IP count is kept under: the library's (an IPv6 address by its /64, an IPv4-mapped one as
 * IPv4), or one key shared by every request whose peer's address is gone (a connection reset as soon as its request
 * was sent: Node then has no remoteAddress, and the library's own key threw, answering 500).
 */
function addressOf(request: FastifyRequest): string {
  const ip = request.ip as string | undefined;
  return ip === undefined ? "address-gone" : normalizeIP(ip);
}

/** The key a request's per-key count is kept under: the key's id, or the operator's. */
function principalOf(request: FastifyRequest): string {
  if (request.apiKey !== null) return request.apiKey.id;
  return request.operator ? "operator" : `ip:${request.ip}`;
}

export type RateLimitOptions = {
  limits: RateLimits;
  /** The most IPs (or keys) whose counts each limit keeps (default rateLimitEntriesMax). */
  entriesMax?: number;
};

const plugin: FastifyPluginAsync<RateLimitOptions> = async (app, { limits, entriesMax }) => {
  const windowsMax = entriesMax ?? rateLimitEntriesMax;
  await app.register(fastifyRateLimit, {
    global: false,
    timeWindow: rateLimitWindowMs,
    // The library makes its store with `new`: a class that carries the bound.
    store: class extends WindowStore {
      constructor() {
        super(windowsMax);
      }
    },
  });
  const ipMax = limits.ipRequestsPerSecondMax;
  if (ipMax !== null) {
    const limiter = app.createRateLimit({
      max: ipMax,
      timeWindow: rateLimitWindowMs,
      keyGenerator: addressOf,
    }) as Limiter;
    app.addHook("onRequest", (request, reply) => count(limiter, request, reply, "from this address"));
  }
  const keyMax = limits.keyRequestsPerSecondMax;
  const tenantMax = limits.tenantRequestsPerSecondMax;
  if (keyMax === null && tenantMax === null) {
    app.decorate("keyRateLimit", null);
    return;
  }
  const keyLimiter =
    keyMax === null
      ? null
      : (app.createRateLimit({
          max: keyMax,
          timeWindow: rateLimitWindowMs,
          keyGenerator: principalOf,
        }) as Limiter);
  const tenantLimiter =
    tenantMax === null
      ? null
      : (app.createRateLimit({
          max: tenantMax,
          timeWindow: rateLimitWindowMs,
          keyGenerator: (request) => request.tenant?.id ?? "",
        }) as Limiter);
  app.decorate("keyRateLimit", async (request: FastifyRequest, reply: FastifyReply) => {
    if (keyLimiter !== null) await count(keyLimiter, request, reply, "with this API key");
    // A tenant's key, not the operator's credential (no tenant) nor a request refused before it was known.
    if (tenantLimiter !== null && request.apiKey !== null && request.tenant !== null)
      await count(tenantLimiter, request, reply, "of this tenant");
  });
};

/**
 * At the server's root, before every route: the per-IP limit's hook, and the per-key and per-tenant limits' hook for
 * keyRateLimitPlugin.
 */
export const rateLimitPlugin = fp(plugin, { name: "switchyard-rate-limit" });

/** In the /v1 context, right after the auth plugin: the per-key and per-tenant limits' hook, once the key is known. */
export const keyRateLimitPlugin = fp(
  async (app) => {
    if (app.keyRateLimit !== null) app.addHook("onRequest", app.keyRateLimit);
  },
  { name: "switchyard-key-rate-limit", dependencies: ["switchyard-rate-limit", "switchyard-auth"] },
);
