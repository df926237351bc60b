// /v1/api_keys: a tenant manages its own keys. Create (a name, scopes — at most the caller's own —, the
// deployment's mode, an API version; the secret shown once), list and retrieve (the hint only, never the secret),
// roll (a new key with the same name, scopes, mode and version; the old one works `expires_in_seconds` more, default
// 24 h, 0: revoked now) and revoke (POST …/revoke or DELETE). Revoking, and a roll's end, reach every process
// within 1 s (gateway/tenants/authenticator.ts). Another tenant's key is not found, never forbidden.
//
// An Idempotency-Key is not applied to the two routes that answer a secret (create, roll): the answer would have to
// be stored to be given again, and a secret is never stored. A retried request makes another key (list and revoke
// the one you did not get).
import fp from "fastify-plugin";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { everyMember } from "../../../core/index.ts";
import type { ChangeBus, Db } from "../../db/index.ts";
import {
  type ApiKeyRecord,
  type ApiKeyRow,
  apiKeyColumns,
  apiKeyOfRow,
  apiVersions,
  currentApiVersion,
  getApiKey,
  type IssueRefusal,
  isApiVersion,
  issueApiKey,
  type RevokeResult,
  type RollResult,
  revokeTenantApiKey,
  rollApiKey,
  rollOverlapSecondsDefault,
  rollOverlapSecondsMax,
  scopes,
  scopesBeyond,
  type Tenant,
} from "../../tenants/index.ts";
import { apiKeyOf, keyModeOf, tenantOf } from "../auth.ts";
import { ApiError } from "../errors.ts";
import { clientGone, listPage, listParams, listQuery, listView } from "../lists.ts";
import { documented, errorView, withoutControlCharacters } from "../schemas.ts";

export type ApiKeyRoutesOptions = {
  db: Db;
  changes: ChangeBus;
  mode: "development" | "production";
  nowMs: () => number;
};

export const apiKeyNameLengthMax = 200;

const apiKeyId = z.string().regex(/^key_[0-9a-z]{26}$/, "an API key id (key_…)");
const keyParams = z.strictObject({ id: apiKeyId });

/** A short label: no control characters, no lone surrogates (PostgreSQL cannot store them). */
export const labelSchema = (lengthMax: number) =>
  z
    .string()
    .min(1)
    .max(lengthMax)
    .regex(withoutControlCharacters, "text without control characters")
    .refine((text) => text.isWellFormed(), "text without lone surrogates");

/** A new key's scopes: each at most once (said in the document as uniqueItems). */
export const scopesSchema = documented(
  z
    .array(z.enum(scopes))
    .min(1)
    .max(scopes.length)
    .refine((given) => new Set(given).size === given.length, "each scope once"),
  { uniqueItems: true },
);

export const createApiKeyBody = z
  .strictObject({
    name: labelSchema(apiKeyNameLengthMax).optional(),
    /** What the key may do; default: every scope the calling key has. At most the calling key's own. */
    scopes: scopesSchema.optional(),
    /** The deployment's mode (default): test on a development deployment, live on a production one. */
    mode: z.enum(["test", "live"]).optional(),
    /**
     * The API version the key is pinned to; default: the current one. The document lists the versions; another is
     * the route's to refuse (api_version_invalid), not a parse error.
     */
    api_version: documented(z.string().max(32), {
      enum: apiVersions.map((entry) => entry.version),
    }).optional(),
  })
  .nullish(); // a POST without a body is one with every default

export const rollApiKeyBody = z
  .strictObject({
    /** How long the old key keeps working beside the new one; 0: it stops now. */
    expires_in_seconds: z.number().int().min(0).max(rollOverlapSecondsMax).optional(),
  })
  .nullish(); // a POST without a body is one with every default

/** A POST that takes no parameters: no body, or an empty object. */
export const noBody = z.strictObject({}).nullish();

export const apiKeyView = z.object({
  id: z.string(),
  object: z.literal("api_key"),
  name: z.string().nullable(),
  mode: z.enum(["test", "live"]),
  scopes: z.array(z.enum(scopes)),
  api_version: z.string(),
  /** The secret's first 8 and last 4 characters. */
  hint: z.string(),
  /** `expiring`: rolled, working until expires_at. */
  status: z.enum(["active", "expiring", "expired", "revoked"]),
  created_at: z.string(),
  expires_at: z.string().nullable(),
  revoked_at: z.string().nullable(),
  /** The key a roll made in this one's place. */
  rolled_to: z.string().nullable(),
});
export type ApiKeyView = z.infer<typeof apiKeyView>;

/** A new key, with its secret: the only answer that carries one. */
export const apiKeyWithSecretView = apiKeyView.extend({ secret: z.string() });

export const rollApiKeyView = apiKeyWithSecretView.extend({ rolled: apiKeyView });

export const listApiKeysQuery = listQuery({ idPrefix: "key" });

export function presentApiKey(key: ApiKeyRecord, nowMs: number): ApiKeyView {
  const status =
    key.revokedAt !== null
      ? "revoked"
      : key.expiresAt === null
        ? "active"
        : key.expiresAt.getTime() <= nowMs
          ? "expired"
          : "expiring";
  return {
    id: key.id,
    object: "api_key",
    name: key.name,
    mode: key.mode,
    scopes: key.scopes,
    api_version: key.apiVersion,
    hint: key.hint,
    status,
    created_at: key.createdAt.toISOString(),
    expires_at: key.expiresAt?.toISOString() ?? null,
    revoked_at: key.revokedAt?.toISOString() ?? null,
    rolled_to: key.rolledTo,
  };
}

// The refusals each route answers beside those every keyed route does, in the OpenAPI document (config.errorCodes),
// from the tenants layer's refusal unions: a refusal added there is a compile error here until it is listed.
// tenant_not_found is left out of a key's making: it is the calling key's own tenant gone under the request.
type RevokeRefusal = Extract<RevokeResult, { ok: false }>["refusal"];
type RollRefusal = Extract<RollResult, { ok: false }>["refusal"];
const issueRefusals = everyMember<Exclude<IssueRefusal, "tenant_not_found">>({
  tenant_suspended: true,
  api_keys_too_many: true,
});
const revokeRefusals = everyMember<RevokeRefusal>({
  api_key_not_found: true,
  api_key_revoked: true,
  scope_missing: true,
});
const rollRefusals = everyMember<RollRefusal>({
  api_key_not_found: true,
  api_key_revoked: true,
  api_key_rolled: true,
  tenant_suspended: true,
  api_keys_too_many: true,
  scope_missing: true,
});

function revokedOrRefused(result: RevokeResult, id: string): ApiKeyRecord {
  if (result.ok) return result.key;
  if (result.refusal === "api_key_not_found") throw new ApiError("api_key_not_found", `no API key "${id}"`);
  if (result.refusal === "scope_missing")
    throw new ApiError(
      "scope_missing",
      `the API key "${id}" has ${result.scopes.map((scope) => `"${scope}"`).join(", ")}, which this key lacks: a key revokes only keys within its own scopes`,
      { extra: { scope: result.scopes[0] } },
    );
  throw new ApiError("api_key_revoked", `the API key "${id}" is already revoked or expired`);
}

const plugin: FastifyPluginAsyncZod<ApiKeyRoutesOptions> = async (app, options) => {
  const deps = { db: options.db, changes: options.changes };
  const deploymentKeyMode = keyModeOf(options.mode);

  app.post(
    "/api_keys",
    {
      // Takes no Idempotency-Key (see the header): the answer holds a secret.
      config: { idempotency: "none", errorCodes: issueRefusals },
      schema: {
        description:
          "Make an API key: its secret is in this answer only. Scopes at most the calling key's own (default: the same). An Idempotency-Key is not applied (the answer holds a secret, which is never stored).",
        body: createApiKeyBody,
        response: { 201: apiKeyWithSecretView, "4xx": errorView },
      },
    },
    async (request, reply) => {
      const body = request.body ?? {};
      const caller = apiKeyOf(request);
      if (body.mode !== undefined && body.mode !== deploymentKeyMode)
        throw new ApiError(
          "parameter_invalid",
          `invalid parameter "mode": this ${options.mode} deployment makes only ${deploymentKeyMode} keys`,
          { param: "mode" },
        );
      if (body.api_version !== undefined && !isApiVersion(body.api_version))
        throw new ApiError("api_version_invalid", `"${body.api_version}" is no version of this API`, {
          param: "api_version",
        });
      const wanted = body.scopes ?? caller.scopes;
      const beyond = scopesBeyond(caller.scopes, wanted);
      if (beyond.length > 0)
        throw new ApiError(
          "scope_missing",
          `a key cannot make a key with more scopes than its own: this one lacks ${beyond.map((scope) => `"${scope}"`).join(", ")}`,
          { param: "scopes", extra: { scope: beyond[0] } },
        );
      const issued = await issueApiKey(deps, {
        tenantId: tenantOf(request).id,
        mode: deploymentKeyMode,
        name: body.name ?? null,
        scopes: wanted,
        apiVersion: body.api_version ?? currentApiVersion,
      });
      if (!issued.ok) {
        if (issued.refusal === "api_keys_too_many")
          throw new ApiError(
            "api_keys_too_many",
            "this tenant has as many working API keys as it may: revoke one first",
          );
        if (issued.refusal === "tenant_suspended")
          throw new ApiError("tenant_suspended", "the tenant is suspended");
        throw new ApiError("tenant_not_found", "the key's tenant is gone");
      }
      return reply.code(201).send({ ...presentApiKey(issued.key, options.nowMs()), secret: issued.secret });
    },
  );

  app.get(
    "/api_keys",
    {
      schema: {
        description: "The tenant's API keys, newest first (hints, never secrets).",
        querystring: listApiKeysQuery,
        response: { 200: listView(apiKeyView), "4xx": errorView },
      },
    },
    async (request) => {
      const nowMs = options.nowMs();
      return listPage(
        options.db,
        {
          table: "api_keys",
          tenantColumn: "tenant_id",
          columns: apiKeyColumns,
          noun: "API key",
          map: (row: ApiKeyRow) => presentApiKey(apiKeyOfRow(row), nowMs),
        },
        {
          tenantId: tenantOf(request).id,
          url: "/v1/api_keys",
          params: listParams(request.query),
          gone: clientGone(request),
        },
      );
    },
  );

  app.get(
    "/api_keys/:id",
    { schema: { params: keyParams, response: { 200: apiKeyView, "4xx": errorView } } },
    async (request) => {
      const { id } = request.params;
      const key = await getApiKey(options.db, { tenantId: tenantOf(request).id, id });
      if (key === null) throw new ApiError("api_key_not_found", `no API key "${id}"`);
      return presentApiKey(key, options.nowMs());
    },
  );

  app.post(
    "/api_keys/:id/roll",
    {
      // Takes no Idempotency-Key (see the header): the answer holds a secret.
      config: { idempotency: "none", errorCodes: rollRefusals },
      schema: {
        description:
          "Roll a key: a new key with its name, scopes, mode and API version (the secret in this answer only); the old one keeps working expires_in_seconds more (default 86400; 0: revoked now). An Idempotency-Key is not applied.",
        params: keyParams,
        body: rollApiKeyBody,
        response: { 200: rollApiKeyView, "4xx": errorView },
      },
    },
    async (request) => {
      const { id } = request.params;
      const result = await rollApiKey(deps, {
        tenantId: tenantOf(request).id,
        id,
        overlapSeconds: request.body?.expires_in_seconds ?? rollOverlapSecondsDefault,
        grantedScopes: apiKeyOf(request).scopes,
      });
      if (!result.ok) {
        switch (result.refusal) {
          case "api_key_not_found":
            throw new ApiError("api_key_not_found", `no API key "${id}"`);
          case "api_key_revoked":
            throw new ApiError(
              "api_key_revoked",
              `the API key "${id}" is revoked or expired: make a new one`,
            );
          case "api_key_rolled":
            throw new ApiError("api_key_rolled", `the API key "${id}" was already rolled`);
          case "tenant_suspended":
            throw new ApiError("tenant_suspended", "the tenant is suspended");
          case "api_keys_too_many":
            throw new ApiError(
              "api_keys_too_many",
              "this tenant has as many working API keys as it may, and the rolled key would keep working through its overlap: revoke one first, or roll with expires_in_seconds 0",
            );
          case "scope_missing":
            throw new ApiError(
              "scope_missing",
              `rolling gives the new key the old one's scopes, and this key lacks ${result.scopes.map((scope) => `"${scope}"`).join(", ")}`,
              { extra: { scope: result.scopes[0] } },
            );
        }
      }
      const nowMs = options.nowMs();
      return {
        ...presentApiKey(result.key, nowMs),
        secret: result.secret,
        rolled: presentApiKey(result.rolled, nowMs),
      };
    },
  );

  const revokeDescription =
    "Revoke a key: refused on every process of the deployment within 1 s (apiKeyTrustMsMax), typically at once. A key revoked or expired already: 409 api_key_revoked.";
  const revoke = async (request: {
    params: { id: string };
    tenant: Tenant | null;
    apiKey: ApiKeyRecord | null;
  }) => {
    const { id } = request.params;
    const key = revokedOrRefused(
      await revokeTenantApiKey(deps, {
        tenantId: tenantOf(request).id,
        id,
        grantedScopes: apiKeyOf(request).scopes,
      }),
      id,
    );
    return presentApiKey(key, options.nowMs());
  };
  app.post(
    "/api_keys/:id/revoke",
    {
      config: { errorCodes: revokeRefusals },
      schema: {
        description: revokeDescription,
        params: keyParams,
        body: noBody,
        response: { 200: apiKeyView, "4xx": errorView },
      },
    },
    async (request) => revoke(request),
  );
  app.delete(
    "/api_keys/:id",
    {
      config: { errorCodes: revokeRefusals },
      schema: {
        description: revokeDescription,
        params: keyParams,
        response: { 200: apiKeyView, "4xx": errorView },
      },
    },
    async (request) => revoke(request),
  );
};

export const apiKeyRoutes = fp(plugin, {
  name: "switchyard-api-keys",
  encapsulate: true,
  dependencies: ["switchyard-auth"],
  decorators: { request: ["tenant", "apiKey"] },
});
