// The admission limit in front of the /v1 context: at most `requestsInFlightMax` API requests in flight in this
// process. One more is answered 503 `overloaded` with Retry-After at once, by the context's first onRequest hook —
// before its API key is looked up or its body read — so a burst past saturation costs each refused request one
// small answer, not memory and queueing delay for everyone admitted.
//
// A request is in flight from that hook until its response closes: sent, or its connection gone. Node's
// ServerResponse emits 'close' once in either case (also for a client that hangs up mid-body or while its handler
// runs, when Fastify's onResponse never comes), so the count cannot leak. A handler whose client hung up may still
// be finishing its work: the ledger's own queue bounds that. Health and the OpenAPI document are siblings of the
// context, outside the limit (server.ts).
import type { FastifyPluginCallback } from "fastify";
import fp from "fastify-plugin";
import { overloaded, sendError } from "./errors.ts";
import { errorView } from "./schemas.ts";

/** The default for REQUESTS_IN_FLIGHT_MAX. */
export const requestsInFlightMaxDefault = 4_096;

/** The limit and what it counts, read by health. One per server. */
export type Admission = {
  readonly requestsInFlightMax: number;
  /** Requests admitted whose response has not closed yet. */
  requestsInFlight: number;
};

/** `requestsInFlightMax`: a positive integer (the configuration's schema checks REQUESTS_IN_FLIGHT_MAX). */
export function createAdmission(params: { requestsInFlightMax: number }): Admission {
  return { requestsInFlightMax: params.requestsInFlightMax, requestsInFlight: 0 };
}

/**
 * The answer past the limit, made once: an error made for each refused request (its stack captured, then collected) was
 * the largest item of the gateway's profile under overload — 12% of its CPU at 8,192 clients offered twice the
 * sustainable rate, where it refused ~9,000 requests a second; made once, the payments served there went from 3,873 to
 * 5,852 a second (issue #19, one run each). The answer's body is made from it for each refusal, as before.
 */
const refusal = overloaded("too many requests in flight; retry after the seconds in Retry-After");

const plugin: FastifyPluginCallback<{ admission: Admission }> = (app, { admission }, done) => {
  const release = () => {
    admission.requestsInFlight -= 1;
  };
  // Callback style, no promise: this runs for every API request.
  app.addHook("onRequest", (_request, reply, next) => {
    if (admission.requestsInFlight >= admission.requestsInFlightMax) {
      sendError(reply, refusal);
      return;
    }
    admission.requestsInFlight += 1;
    reply.raw.once("close", release);
    next();
  });
  // Every route behind the limit may answer 503: the document says so.
  app.addHook("onRoute", (route) => {
    if (route.schema !== undefined)
      route.schema.response = { ...(route.schema.response ?? {}), 503: errorView };
  });
  done();
};

// Not encapsulated: the hooks belong to the context that registers the plugin, and to the contexts inside it.
export const admissionPlugin = fp(plugin, { name: "switchyard-admission" });
