// Bearer API keys. Registered inside the /v1 context (v1.ts), so its hook runs for every route there and for
// no other: no route is exempted by URL or by flag. The tenant a key names is the scope of every query the
// request makes. The key is never logged (the logger redacts the Authorization header). Valid keys are
// remembered by their digest (tenants/createAuthenticator), so most requests ask no query; a revocation by any
// process reaches that memory through the change bus.
import type { FastifyPluginAsync } from "fastify";
import fp from "fastify-plugin";
import type { ChangeFeed, Sql } from "../db/index.ts";
import { type ApiKeyCacheLimits, createAuthenticator, type Tenant } from "../tenants/index.ts";
import { ApiError } from "./errors.ts";

declare module "fastify" {
  interface FastifyRequest {
    /** Set by the auth hook on every /v1 route; null elsewhere. */
    tenant: Tenant | null;
  }
}

/** The request's tenant; only reached on authenticated routes, where the hook has set it. */
export function tenantOf(request: { tenant: Tenant | null }): Tenant {
  if (request.tenant === null)
    throw new ApiError("api_key_missing", "send your API key as Authorization: Bearer <key>");
  return request.tenant;
}

export type AuthOptions = {
  sql: Sql;
  apiKeyCache: ApiKeyCacheLimits;
  nowMs: () => number;
  /** Where revocations by any process arrive. */
  changes: ChangeFeed;
};

const bearer = /^Bearer\s+(\S+)$/i;

const plugin: FastifyPluginAsync<AuthOptions> = async (app, options) => {
  // One memory of valid keys per server, dropped with it.
  const authenticator = createAuthenticator(
    { sql: options.sql, nowMs: options.nowMs, changes: options.changes },
    options.apiKeyCache,
  );
  app.addHook("onClose", async () => authenticator.close());
  app.decorateRequest("tenant", null);
  app.addHook("onRequest", async (request) => {
    const header = request.headers.authorization;
    if (header === undefined || header.trim() === "") {
      throw new ApiError("api_key_missing", "send your API key as Authorization: Bearer <key>");
    }
    const match = bearer.exec(header.trim());
    const tenant = match === null ? null : await authenticator.authenticate(match[1]!);
    if (tenant === null) throw new ApiError("api_key_invalid", "the API key is not valid");
    request.tenant = tenant;
  });
  // The OpenAPI document says so for every route of this context.
  app.addHook("onRoute", (route) => {
    if (route.schema !== undefined) route.schema.security = [{ apiKey: [] }];
  });
};

// Not encapsulated: the hook belongs to the context that registers the plugin (the /v1 context).
export const authPlugin = fp(plugin, { name: "switchyard-auth" });
