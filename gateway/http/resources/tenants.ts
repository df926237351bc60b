// /v1/tenants: the operator's routes (only the operator's credential is answered here; auth.ts). Create a tenant
// (name, metadata) with its first API key — every scope, the deployment's mode, the secret shown once —, list them
// (Stripe's convention, `status`), retrieve one, suspend it (its keys are refused `tenant_suspended` on every process
// within 1 s) and reactivate it (its keys work again), and make a key for it (a tenant that revoked its last one).
// Suspending a suspended tenant, or reactivating an active one, changes nothing and answers the tenant.
import fp from "fastify-plugin";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import type { ChangeBus, Db } from "../../db/index.ts";
import {
  createTenantWithKey,
  getTenant,
  issueApiKey,
  listTenants,
  scopes,
  setTenantStatus,
  type TenantRecord,
  type TenantStatus,
} from "../../tenants/index.ts";
import { keyModeOf } from "../auth.ts";
import { ApiError } from "../errors.ts";
import { listParams, listQuery, listView, statusParam } from "../lists.ts";
import { errorView, metadataSchema } from "../schemas.ts";
import {
  apiKeyNameLengthMax,
  apiKeyWithSecretView,
  labelSchema,
  noBody,
  presentApiKey,
  scopesSchema,
} from "./api-keys.ts";

export type TenantRoutesOptions = {
  db: Db;
  changes: ChangeBus;
  mode: "development" | "production";
  nowMs: () => number;
};

export const tenantNameLengthMax = 200;

const tenantParams = z.strictObject({
  id: z.string().regex(/^ten_[0-9a-z_]{1,64}$/, "a tenant id (ten_…)"),
});

export const createTenantBody = z.strictObject({
  name: labelSchema(tenantNameLengthMax),
  metadata: metadataSchema.optional(),
});

export const tenantView = z.object({
  id: z.string(),
  object: z.literal("tenant"),
  name: z.string(),
  status: z.enum(["active", "suspended"]),
  metadata: z.record(z.string(), z.string()),
  created_at: z.string(),
  suspended_at: z.string().nullable(),
});
export type TenantView = z.infer<typeof tenantView>;

/** A new tenant, with its first key and that key's secret (shown this once). */
export const createdTenantView = tenantView.extend({ api_key: apiKeyWithSecretView });

/** A key the operator makes for a tenant (one that lost its last key, say): every scope unless told. */
export const createTenantApiKeyBody = z
  .strictObject({
    name: labelSchema(apiKeyNameLengthMax).optional(),
    scopes: scopesSchema.optional(),
  })
  .nullish(); // a POST without a body is one with every default

export const listTenantsQuery = listQuery({
  idPrefix: "ten",
  extra: { status: statusParam(["active", "suspended"]) },
});

export function presentTenant(tenant: TenantRecord): TenantView {
  return {
    id: tenant.id,
    object: "tenant",
    name: tenant.name,
    status: tenant.status,
    metadata: tenant.metadata,
    created_at: tenant.createdAt.toISOString(),
    suspended_at: tenant.suspendedAt?.toISOString() ?? null,
  };
}

const plugin: FastifyPluginAsyncZod<TenantRoutesOptions> = async (app, options) => {
  const deps = { db: options.db, changes: options.changes };

  app.post(
    "/tenants",
    {
      // The operator's routes take no Idempotency-Key (the idempotency plugin keys by tenant; the operator is none).
      config: { idempotency: "none" },
      schema: {
        description:
          "Make a tenant and its first API key (every scope, this deployment's mode; the secret in this answer only). The operator's credential only; an Idempotency-Key is not applied.",
        body: createTenantBody,
        response: { 201: createdTenantView, "4xx": errorView },
      },
    },
    async (request, reply) => {
      const made = await createTenantWithKey(deps, {
        name: request.body.name,
        metadata: request.body.metadata ?? {},
        mode: keyModeOf(options.mode),
      });
      return reply.code(201).send({
        ...presentTenant(made.tenant),
        api_key: { ...presentApiKey(made.key, options.nowMs()), secret: made.secret },
      });
    },
  );

  app.get(
    "/tenants",
    { schema: { querystring: listTenantsQuery, response: { 200: listView(tenantView), "4xx": errorView } } },
    async (request) => {
      const params = listParams(request.query);
      const page = await listTenants(options.db, {
        limit: params.limit,
        cursor: params.cursor === null ? null : { direction: params.cursor.direction, id: params.cursor.id },
        createdFromSeconds: params.createdFromSeconds,
        createdUntilSeconds: params.createdUntilSeconds,
        status: request.query.status ?? null,
      });
      if (!page.ok)
        throw new ApiError("parameter_invalid", `no tenant "${params.cursor?.id}"`, {
          param: params.cursor?.param ?? "starting_after",
        });
      return {
        object: "list" as const,
        url: "/v1/tenants",
        data: page.tenants.map(presentTenant),
        has_more: page.hasMore,
      };
    },
  );

  app.get(
    "/tenants/:id",
    { schema: { params: tenantParams, response: { 200: tenantView, "4xx": errorView } } },
    async (request) => {
      const { id } = request.params;
      const tenant = await getTenant(options.db, id);
      if (tenant === null) throw new ApiError("tenant_not_found", `no tenant "${id}"`);
      return presentTenant(tenant);
    },
  );

  app.post(
    "/tenants/:id/api_keys",
    {
      // The operator's routes take no Idempotency-Key (the idempotency plugin keys by tenant; the operator is none).
      config: { idempotency: "none" },
      schema: {
        description:
          "Make an API key for a tenant (one that lost its keys, say): every scope unless told, this deployment's mode; the secret in this answer only.",
        params: tenantParams,
        body: createTenantApiKeyBody,
        response: { 201: apiKeyWithSecretView, "4xx": errorView },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const issued = await issueApiKey(deps, {
        tenantId: id,
        mode: keyModeOf(options.mode),
        name: request.body?.name ?? null,
        scopes: request.body?.scopes ?? scopes,
      });
      if (!issued.ok) {
        if (issued.refusal === "tenant_not_found")
          throw new ApiError("tenant_not_found", `no tenant "${id}"`);
        if (issued.refusal === "tenant_suspended")
          throw new ApiError("tenant_suspended", `the tenant "${id}" is suspended: reactivate it first`);
        throw new ApiError(
          "api_keys_too_many",
          "the tenant has as many working API keys as it may: revoke one first",
        );
      }
      return reply.code(201).send({ ...presentApiKey(issued.key, options.nowMs()), secret: issued.secret });
    },
  );

  const setStatus = (status: TenantStatus) => async (request: { params: { id: string } }) => {
    const { id } = request.params;
    const tenant = await setTenantStatus(deps, { id, status });
    if (tenant === null) throw new ApiError("tenant_not_found", `no tenant "${id}"`);
    return presentTenant(tenant);
  };
  app.post(
    "/tenants/:id/suspend",
    {
      // The operator's routes take no Idempotency-Key (the idempotency plugin keys by tenant; the operator is none).
      config: { idempotency: "none" },
      schema: {
        description:
          "Suspend a tenant: its keys are refused 403 tenant_suspended on every process within 1 s; reactivating makes them work again.",
        params: tenantParams,
        body: noBody,
        response: { 200: tenantView, "4xx": errorView },
      },
    },
    setStatus("suspended"),
  );
  app.post(
    "/tenants/:id/reactivate",
    {
      config: { idempotency: "none" },
      schema: { params: tenantParams, body: noBody, response: { 200: tenantView, "4xx": errorView } },
    },
    setStatus("active"),
  );
};

export const tenantRoutes = fp(plugin, {
  name: "switchyard-tenants",
  encapsulate: true,
  dependencies: ["switchyard-auth"],
});
