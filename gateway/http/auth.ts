// Bearer credentials (or Basic ones naming the key, as Stripe takes them) and what each may do. Registered inside the
// /v1 context (v1.ts), so its hook runs for every route there and for no other: no route is exempted by URL or by
// flag. Two kinds of credential:
// - a tenant's API key (sk_test_… / sk_live_…): only the deployment's mode (development takes test keys, production
//   live ones), and only on a tenant's route, with the scope the route needs. The tenant it names is the scope of
//   every query the request makes. Valid keys are remembered by their digest (tenants/createAuthenticator) for at
//   most 1 s; a revocation or a suspension by any process reaches that memory at once through the change bus.
// - the operator's credential (op_…): only on the operator's routes (/v1/tenants, /v1/rails).
//
// Every route's need is found when the route is added, from its first path segment and its method (routeScopes:
// a GET or HEAD takes `read` or the resource's scope, anything else the resource's scope), or from its
// `config.scope`. A route for which neither says anything makes the server fail to start: no route slips through
// unguarded. The need is written into the route's OpenAPI operation (security, x-switchyard-scope).
// The key is never logged (the logger redacts the Authorization header).
import type { FastifyPluginAsync, FastifyRequest, RouteOptions } from "fastify";
import fp from "fastify-plugin";
import { SwitchyardError } from "../../core/index.ts";
import type { ChangeFeed, Sql } from "../db/index.ts";
import {
  type ApiKeyCacheLimits,
  type ApiKeyRecord,
  createAuthenticator,
  isOperatorKey,
  type KeyCheck,
  type KeyMode,
  modeOfSecret,
  type ResourceScope,
  type ScopeRequirement,
  scopeGranted,
  type Tenant,
} from "../tenants/index.ts";
import { ApiError } from "./errors.ts";

/** What a route needs: the operator's credential, or a tenant's key with a scope. */
export type RouteAccess = { kind: "operator" } | { kind: "tenant"; requirement: ScopeRequirement };

declare module "fastify" {
  interface FastifyRequest {
    /** Set by the auth hook on every /v1 route called with a tenant's key; null elsewhere. */
    tenant: Tenant | null;
    /** The tenant's key the request was made with; null elsewhere. */
    apiKey: ApiKeyRecord | null;
    /** Whether the request was made with the operator's credential. */
    operator: boolean;
  }
  interface FastifyContextConfig {
    /** The scope this route needs, when its first path segment does not say it (routeScopes) or says another. */
    scope?: ResourceScope | "operator";
    /** Set by the auth plugin when the route is added: what the route needs. */
    access?: RouteAccess;
  }
}

/** The scope each /v1 collection needs, by the first segment of its path. */
export const routeScopes: Readonly<Record<string, ResourceScope | "operator">> = {
  payments: "payments",
  quotes: "payments",
  invoices: "invoices",
  refunds: "invoices",
  // A paywall is a standing way to be paid into the tenant's accounts, as an invoice is; its verdicts likewise.
  paywalls: "invoices",
  paywall_verdicts: "invoices",
  // The x402 facilitator settles payments into the tenant's accounts, as an invoice is paid.
  x402: "invoices",
  accounts: "accounts",
  payees: "accounts",
  webhook_endpoints: "webhooks",
  events: "webhooks",
  api_keys: "keys",
  tenants: "operator",
  // A rail's balances and the operator's own funds on it (resources/rails.ts): no tenant's.
  rails: "operator",
};

/** The OpenAPI extension that names the scope an operation needs ("operator": the operator's credential). */
export const scopeExtension = "x-switchyard-scope";

export class RouteScopeError extends SwitchyardError {
  override name = "RouteScopeError";
}

/** What a route under the /v1 context needs, from its config or its path and method; null when nothing says. */
export function routeAccess(route: {
  method: string;
  path: string;
  scope?: ResourceScope | "operator";
}): RouteAccess | null {
  const segment = route.path.split("/")[1] ?? "";
  const scope = route.scope ?? routeScopes[segment];
  if (scope === undefined) return null;
  if (scope === "operator") return { kind: "operator" };
  const readSuffices = route.method === "GET" || route.method === "HEAD";
  return { kind: "tenant", requirement: { scope, readSuffices } };
}

/** The request's tenant; only reached on tenants' routes, where the hook has set it. */
export function tenantOf(request: { tenant: Tenant | null }): Tenant {
  if (request.tenant === null)
    throw new ApiError("api_key_missing", "send your API key as Authorization: Bearer <key>");
  return request.tenant;
}

/**
 * Refuses the request (403 scope_missing) unless its key has `scope` too: for a route whose body asks for more than
 * its own scope covers (a refund of a payment reverses money a `payments` key moved).
 */
export function requireScope(request: { apiKey: ApiKeyRecord | null }, scope: ResourceScope): void {
  if (!scopeGranted(apiKeyOf(request).scopes, { scope, readSuffices: false }))
    throw scopeMissing({ scope, readSuffices: false });
}

/** The key of the request; only reached on tenants' routes, where the hook has set it. */
export function apiKeyOf(request: { apiKey: ApiKeyRecord | null }): ApiKeyRecord {
  if (request.apiKey === null)
    throw new ApiError("api_key_missing", "send your API key as Authorization: Bearer <key>");
  return request.apiKey;
}

export type AuthOptions = {
  sql: Sql;
  apiKeyCache: ApiKeyCacheLimits;
  nowMs: () => number;
  /** Where revocations by any process arrive. */
  changes: ChangeFeed;
  /** The deployment's mode: development takes only sk_test_ keys, production only sk_live_ ones. */
  mode: "development" | "production";
};

const bearer = /^Bearer\s+(\S+)$/i;
const basic = /^Basic\s+([A-Za-z0-9+/]+={0,2})$/i;

/**
 * The credential an Authorization header carries, or null for any other shape: `Bearer <key>`, or HTTP Basic with
 * the key as the user name and no password, as Stripe takes it (`curl -u sk_test_…:`, a library's (key, "") pair).
 * A Basic credential with a password is refused: which half is the key would be a guess.
 */
export function credentialOf(header: string): string | null {
  const trimmed = header.trim();
  const asBearer = bearer.exec(trimmed);
  if (asBearer !== null) return asBearer[1]!;
  const asBasic = basic.exec(trimmed);
  if (asBasic === null) return null;
  const decoded = Buffer.from(asBasic[1]!, "base64").toString("latin1");
  const colon = decoded.indexOf(":");
  return colon > 0 && colon === decoded.length - 1 ? decoded.slice(0, colon) : null;
}

/** How many Authorization headers a request's raw headers (name, value, name, value…) hold. */
function authorizationHeadersOf(rawHeaders: readonly string[]): number {
  let count = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length === 13 && name.toLowerCase() === "authorization") count += 1;
  }
  return count;
}

/** The mode of key a deployment takes. */
export function keyModeOf(mode: "development" | "production"): KeyMode {
  return mode === "production" ? "live" : "test";
}

function modeMismatch(keyMode: KeyMode, deployment: "development" | "production"): ApiError {
  const wanted = keyModeOf(deployment);
  return new ApiError(
    "api_key_mode_mismatch",
    `this is a ${keyMode} key (sk_${keyMode}_…) and this is a ${deployment} deployment, which takes only ${wanted} keys (sk_${wanted}_…): use a ${wanted} key of your tenant here` +
      (keyMode === "live" ? "" : ", or send this test key to a development deployment"),
  );
}

function scopeMissing(requirement: ScopeRequirement): ApiError {
  const also = requirement.readSuffices ? ` (or "read")` : "";
  return new ApiError(
    "scope_missing",
    `this API key lacks the "${requirement.scope}" scope${also} that this route needs; make a key with it (POST /v1/api_keys)`,
    { extra: { scope: requirement.scope } },
  );
}

const plugin: FastifyPluginAsync<AuthOptions> = async (app, options) => {
  // One memory of valid keys per server, dropped with it.
  const authenticator = createAuthenticator(
    { sql: options.sql, nowMs: options.nowMs, changes: options.changes },
    options.apiKeyCache,
  );
  const deploymentKeyMode = keyModeOf(options.mode);
  app.addHook("onClose", async () => authenticator.close());
  app.decorateRequest("tenant", null);
  app.decorateRequest("apiKey", null);
  app.decorateRequest("operator", false);

  const authenticateOperator = async (
    request: FastifyRequest,
    secret: string,
    access: RouteAccess | undefined,
  ) => {
    if (!(await isOperatorKey(options.sql, secret)))
      throw new ApiError("api_key_invalid", "the API key is not valid");
    if (access?.kind === "tenant")
      throw new ApiError(
        "tenant_key_required",
        "the operator's credential manages tenants and rails (/v1/tenants, /v1/rails) only; call this route with one of the tenant's API keys",
      );
    request.operator = true;
  };

  /** The request as the key's check leaves it: its tenant and key, or the refusal thrown. */
  const admit = (request: FastifyRequest, checked: KeyCheck, access: RouteAccess | undefined) => {
    if (!checked.ok) {
      if (checked.refusal === "tenant_suspended")
        throw new ApiError(
          "tenant_suspended",
          "this API key's tenant is suspended; its keys work again when the operator reactivates it",
        );
      throw new ApiError("api_key_invalid", "the API key is not valid");
    }
    request.tenant = checked.principal.tenant;
    request.apiKey = checked.principal.key;
    request.apiVersion = checked.principal.key.apiVersion;
    if (access?.kind === "operator")
      throw new ApiError("operator_only", "only the operator's credential may call this route");
    if (access !== undefined && !scopeGranted(checked.principal.key.scopes, access.requirement))
      throw scopeMissing(access.requirement);
  };

  // Callback style: a key remembered (most requests) is checked without a promise. Fastify answers what the hook
  // throws as its error; what a promise rejects with goes to `done`.
  app.addHook("onRequest", (request, _reply, done) => {
    // Node keeps the first of two Authorization headers and drops the other: a proxy that appends its own credential
    // would see it ignored, and which credential the request is made with would depend on the headers' order.
    if (authorizationHeadersOf(request.raw.rawHeaders) > 1)
      throw new ApiError("parameter_invalid", "send one Authorization header, not several", {
        param: "Authorization",
      });
    const header = request.headers.authorization;
    if (header === undefined || header.trim() === "") {
      throw new ApiError("api_key_missing", "send your API key as Authorization: Bearer <key>");
    }
    const secret = credentialOf(header);
    if (secret === null) throw new ApiError("api_key_invalid", "the API key is not valid");
    // Undefined on the context's not-found route: authenticated, then answered 404.
    const access = request.routeOptions.config.access;
    if (secret.startsWith("op_")) {
      authenticateOperator(request, secret, access).then(() => done(), done);
      return;
    }
    const keyMode = modeOfSecret(secret);
    if (keyMode === null) throw new ApiError("api_key_invalid", "the API key is not valid");
    if (keyMode !== deploymentKeyMode) throw modeMismatch(keyMode, options.mode);
    const checked = authenticator.checkNow(secret);
    if (!(checked instanceof Promise)) {
      admit(request, checked, access);
      done();
      return;
    }
    checked.then((looked) => {
      let refusal: unknown;
      try {
        admit(request, looked, access);
      } catch (error) {
        refusal = error;
      }
      done(refusal as Error | undefined);
    }, done);
  });

  // Every route's need, found as it is added; a route nothing says anything of fails the start (onReady).
  const unguarded: string[] = [];
  app.addHook("onRoute", (route: RouteOptions) => {
    const path = route.url.startsWith(app.prefix) ? route.url.slice(app.prefix.length) : route.url;
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    // One route for several methods needs what its most demanding one needs (a write's scope, not `read`).
    const method = methods.find((name) => name !== "GET" && name !== "HEAD") ?? methods[0]!;
    const access = routeAccess({
      method,
      path,
      ...(route.config?.scope === undefined ? {} : { scope: route.config.scope }),
    });
    if (access === null) {
      unguarded.push(`${methods.join(",")} ${route.url}`);
      return;
    }
    route.config = { ...route.config, access };
    if (route.schema !== undefined && method !== "HEAD") {
      if (access.kind === "operator") {
        route.schema.security = [{ apiKey: ["operator"] }];
        (route.schema as Record<string, unknown>)[scopeExtension] = "operator";
      } else {
        const { scope, readSuffices } = access.requirement;
        route.schema.security = readSuffices
          ? [{ apiKey: [scope] }, { apiKey: ["read"] }]
          : [{ apiKey: [scope] }];
        (route.schema as Record<string, unknown>)[scopeExtension] = scope;
      }
    }
  });
  app.addHook("onReady", async () => {
    if (unguarded.length > 0)
      throw new RouteScopeError(
        "a /v1 route needs no known scope: add its collection to routeScopes or give it config.scope",
        {
          details: unguarded.join(", "),
        },
      );
  });
};

// Not encapsulated: the hook belongs to the context that registers the plugin (the /v1 context).
export const authPlugin = fp(plugin, { name: "switchyard-auth" });
