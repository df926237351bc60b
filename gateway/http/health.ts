// GET /healthz: whether each rail can take payments now, and the API's requests in flight against their limit. No
// API key, and outside the admission limit (a sibling of the /v1 context).
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import type { Rail } from "../../core/index.ts";
import type { Admission } from "./admission.ts";
import { healthView } from "./schemas.ts";

export type HealthOptions = { rails: ReadonlyMap<string, Rail>; admission: Admission };

export const healthPlugin: FastifyPluginAsyncZod<HealthOptions> = async (app, options) => {
  app.get("/healthz", { schema: { hide: true, response: { 200: healthView } } }, async () => {
    const rails: Record<string, { available: boolean }> = {};
    for (const rail of options.rails.values()) rails[rail.id] = { available: rail.snapshot().available };
    const { requestsInFlight, requestsInFlightMax } = options.admission;
    return {
      status: "ok" as const,
      rails,
      requests: { in_flight: requestsInFlight, in_flight_max: requestsInFlightMax },
    };
  });
};
