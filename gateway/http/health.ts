// GET /healthz: whether each rail can take payments now. No API key (a sibling of the /v1 context).
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import type { Rail } from "../../core/index.ts";
import { healthView } from "./schemas.ts";

export type HealthOptions = { rails: ReadonlyMap<string, Rail> };

export const healthPlugin: FastifyPluginAsyncZod<HealthOptions> = async (app, options) => {
  app.get("/healthz", { schema: { hide: true, response: { 200: healthView } } }, async () => {
    const rails: Record<string, { available: boolean }> = {};
    for (const rail of options.rails.values()) rails[rail.id] = { available: rail.snapshot().available };
    return { status: "ok" as const, rails };
  });
};
