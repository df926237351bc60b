// GET /healthz: whether each rail can take payments now (and, when it cannot, why), and the API's requests in flight
// against their limit: the process is alive (a liveness probe). GET /readyz: whether it can serve payments now, that is
// whether its database answers (a readiness probe, or a load balancer's check): 503 while it does not, so that traffic
// goes to another process rather than failing here; each rail as /healthz shows it. No API key for either, and outside
// the admission limit (siblings of the /v1 context).
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import type { Rail, RailSnapshot, Sql } from "../../core/index.ts";
import type { Admission } from "./admission.ts";
import { healthView, type RailHealthView, readinessView } from "./schemas.ts";

export type HealthOptions = {
  rails: ReadonlyMap<string, Rail>;
  admission: Admission;
  db: Sql;
  /** How long /readyz waits for the database's answer before it calls it unavailable (default: readinessTimeoutMsDefault). */
  readinessTimeoutMs?: number;
};

/** A database slower than this to answer `select 1` is as good as unavailable to a payment. */
export const readinessTimeoutMsDefault = 2_000;

export const healthPlugin: FastifyPluginAsyncZod<HealthOptions> = async (app, options) => {
  const railsView = () => {
    const rails: Record<string, RailHealthView> = {};
    for (const rail of options.rails.values()) rails[rail.id] = railHealthOf(rail.snapshot());
    return rails;
  };
  app.get("/healthz", { schema: { hide: true, response: { 200: healthView } } }, async () => {
    const { requestsInFlight, requestsInFlightMax, tenantRequestsInFlightMax } = options.admission;
    return {
      status: "ok" as const,
      rails: railsView(),
      requests: {
        in_flight: requestsInFlight,
        in_flight_max: requestsInFlightMax,
        in_flight_per_tenant_max: tenantRequestsInFlightMax,
      },
    };
  });
  const probeDatabase = databaseProbe(options.db, options.readinessTimeoutMs ?? readinessTimeoutMsDefault);
  app.get(
    "/readyz",
    { schema: { hide: true, response: { 200: readinessView, 503: readinessView } } },
    async (_request, reply) => {
      const database = await probeDatabase();
      const ready = database.available;
      if (!ready) reply.code(503).header("retry-after", "1");
      return { status: ready ? ("ready" as const) : ("not_ready" as const), database, rails: railsView() };
    },
  );
};

/** A rail's availability and, when it is unavailable, why, as its snapshot says (core/rail.ts RailUnavailable). */
function railHealthOf(snapshot: RailSnapshot): RailHealthView {
  const { available, unavailable } = snapshot;
  if (available || unavailable === undefined) return { available };
  return { available, reason: { code: unavailable.code, message: unavailable.message } };
}

/**
 * Asks the database `select 1`, waiting at most `timeoutMs` for the answer. One statement at a time: probes asked for
 * while one is unanswered wait on it (each with its own bound), so that a load balancer's checks cost the database
 * one statement, and a database that does not answer one parked statement, not one more every window.
 */
function databaseProbe(db: Sql, timeoutMs: number) {
  let unanswered: Promise<boolean> | null = null;
  return async (): Promise<{ available: boolean; latency_ms: number }> => {
    const started = performance.now();
    unanswered ??= Promise.resolve()
      .then(() => db.query("select 1"))
      .then(
        () => true,
        () => false,
      )
      .finally(() => {
        unanswered = null;
      });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    try {
      const available = await Promise.race([unanswered, timedOut]);
      return { available, latency_ms: Math.round(performance.now() - started) };
    } finally {
      clearTimeout(timer);
    }
  };
}
