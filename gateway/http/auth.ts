// Bearer API keys. Every route under /v1 needs one; the tenant it names is the scope of every query the
// request makes. The key is never logged (the logger redacts the Authorization header). Valid keys are
// remembered by their digest for a few seconds (tenants/createAuthenticator), so most requests ask no query.
import type { FastifyPluginAsync } from "fastify";
import fp from "fastify-plugin";
import type { Sql } from "../db/index.ts";
import { type ApiKeyCacheLimits, createAuthenticator, type Tenant } from "../tenants/index.ts";
import { ApiError } from "./errors.ts";

declare module "fastify" {
  interface FastifyRequest {
    tenant: Tenant | null;
  }
}

/** The request's tenant; only reached on authenticated routes, where the hook has set it. */
export function tenantOf(request: { tenant: Tenant | null }): Tenant {
  if (request.tenant === null)
    throw new ApiError("api_key_missing", "send your API key as Authorization: Bearer <key>");
  return request.tenant;
}

const plugin: FastifyPluginAsync<{ sql: Sql; apiKeyCache: ApiKeyCacheLimits; nowMs: () => number }> = async (
  app,
  options,
) => {
  // One memory of valid keys per server, dropped with it.
  const authenticator = createAuthenticator({ sql: options.sql, nowMs: options.nowMs }, options.apiKeyCache);
  app.decorateRequest("tenant", null);
  app.addHook("onRequest", async (request) => {
    if (!request.url.startsWith("/v1/") || request.routeOptions.config?.public === true) return;
    const header = request.headers.authorization;
    if (header === undefined || header.trim() === "") {
      throw new ApiError("api_key_missing", "send your API key as Authorization: Bearer <key>");
    }
    const match = /^Bearer\s+(\S+)$/i.exec(header.trim());
    const tenant = match === null ? null : await authenticator.authenticate(match[1]!);
    if (tenant === null) throw new ApiError("api_key_invalid", "the API key is not valid");
    request.tenant = tenant;
  });
};

declare module "fastify" {
  interface FastifyContextConfig {
    /** A /v1 route that needs no API key (provider webhooks, which carry their own signatures). */
    public?: boolean;
  }
}

export const authPlugin = fp(plugin, { name: "switchyard-auth" });
