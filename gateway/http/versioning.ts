// API versions, Stripe's way: dated versions (gateway/tenants/versions.ts holds the list, since a key is pinned to
// one when it is made — the tenants layer cannot import this one). A request is answered in the version its key is
// pinned to, or in the one it names in `Switchyard-Version` (an unknown one: 400 api_version_invalid); a request
// without a key (health, the OpenAPI document) in the current one. Every response says which in
// `Switchyard-Version`, errors too.
//
// Registered at the root of the server (not encapsulated), so that its hooks run for every route and before the
// /v1 context's: auth (auth.ts) sets the version of the key it found.
import type { FastifyPluginAsync } from "fastify";
import fp from "fastify-plugin";
import { apiVersions, currentApiVersion, isApiVersion } from "../tenants/index.ts";
import { ApiError } from "./errors.ts";

export { type ApiVersion, apiVersions, currentApiVersion, isApiVersion } from "../tenants/index.ts";

/** The header a request names a version in, and every response says its version in. */
export const versionHeader = "Switchyard-Version";
/** The same, as Node names request and response headers. */
export const versionHeaderLowerCase = versionHeader.toLowerCase();

declare module "fastify" {
  interface FastifyRequest {
    /** The version the request named in Switchyard-Version (a known one), or null. */
    apiVersionRequested: string | null;
    /** The version the request is answered in: set by auth for a key (its pinned one, unless the request named one). */
    apiVersion: string | null;
  }
}

/** The version a request is answered in: the one it named, else its key's, else the current one. */
export function apiVersionOf(request: {
  apiVersionRequested: string | null;
  apiVersion: string | null;
}): string {
  return request.apiVersionRequested ?? request.apiVersion ?? currentApiVersion;
}

/** The version a request names, checked: null when it names none; 400 api_version_invalid for an unknown one. */
export function requestedApiVersion(header: string | string[] | undefined): string | null {
  if (header === undefined) return null;
  if (typeof header === "string" && isApiVersion(header.trim())) return header.trim();
  throw new ApiError(
    "api_version_invalid",
    `${versionHeader} names no version of this API; the versions are ${apiVersions.map((entry) => entry.version).join(", ")} (leave the header out to use your key's)`,
    { param: versionHeader },
  );
}

const plugin: FastifyPluginAsync = async (app) => {
  app.decorateRequest("apiVersionRequested", null);
  app.decorateRequest("apiVersion", null);
  // Callback style, no promise: this runs for every request (Fastify answers what a hook throws as its error).
  app.addHook("onRequest", (request, _reply, done) => {
    request.apiVersionRequested = requestedApiVersion(request.headers[versionHeaderLowerCase]);
    done();
  });
  // Callback style: no promise per response.
  app.addHook("onSend", (request, reply, payload, done) => {
    reply.header(versionHeader, apiVersionOf(request));
    done(null, payload);
  });
};

export const versioningPlugin = fp(plugin, { name: "switchyard-versioning" });
