// A typed client of the Switchyard API: openapi-fetch over the types generated from the gateway's OpenAPI
// document (client/openapi.generated.ts), with the API key, the pinned API version and, per request, an
// Idempotency-Key (`params: { header: { "Idempotency-Key": … } }`, typed on every POST). A request to an operation
// that requires one (payments, refunds: idempotencyKeyRequired, from the document) and names none gets a new random
// one, as Stripe's SDKs do — but only a key of your own, sent again on a retry of the same operation, makes that
// retry safe: pass one for anything that moves money. (The types show the header optional for that reason.)
//
//   const switchyard = createSwitchyardClient({ baseUrl: "http://localhost:3000", apiKey: "sk_test_…" });
//   const { data, error, response } = await switchyard.POST("/v1/payments", { body, params: { header: { "Idempotency-Key": "order-42" } } });
//
// `data` is the operation's success body, `error` its error body (`error.code` one of the stable codes), and
// `response` the fetch Response (status, headers). With `fetch: injectFetch(server)` it calls a Fastify server
// in-process, without a socket (tests).
import createClient, { type Client } from "openapi-fetch";
import { type components, idempotencyKeyRequired, type paths } from "./openapi.generated.ts";

export { injectFetch } from "./inject-fetch.ts";
export type { components, paths } from "./openapi.generated.ts";

export type SwitchyardClient = Client<paths>;

/** The JSON body an operation takes: `RequestBody<"/v1/payments", "post">`. */
export type RequestBody<P extends keyof paths, M extends keyof paths[P]> = paths[P][M] extends {
  requestBody?: { content: { "application/json": infer Body } };
}
  ? Body
  : never;

/** A stable error code of the API. */
export type ErrorCode = components["schemas"]["ErrorCode"];
/** The body of every error answer. */
export type ErrorBody = components["schemas"]["Error"];

export type SwitchyardClientOptions = {
  /** Where the gateway listens, without /v1: the paths carry it. */
  baseUrl: string;
  /** The secret API key (`sk_test_…`, `sk_live_…`), sent as a bearer token; null sends none. */
  apiKey: string | null;
  /** The API version to ask for (Switchyard-Version); absent: the version the key is pinned to. */
  version?: string;
  /** Another fetch: `injectFetch(server)` for a server in the same process. */
  fetch?: (request: Request) => Promise<Response>;
  /** A new random Idempotency-Key on a request that requires one and names none (default: true). */
  newIdempotencyKeys?: boolean;
};

/**
 * Gives a request to an operation that requires an Idempotency-Key (idempotencyKeyRequired) and names none a new
 * random one (crypto.randomUUID: Node and browsers alike). `basePath`: the base URL's own path, before /v1.
 */
function newIdempotencyKey(basePath: string) {
  return {
    onRequest({ request }: { request: Request }): Request | undefined {
      if (request.headers.has("idempotency-key")) return undefined;
      const path = new URL(request.url).pathname.slice(basePath.length);
      if (!idempotencyKeyRequired.includes(`${request.method} ${path}`)) return undefined;
      request.headers.set("idempotency-key", globalThis.crypto.randomUUID());
      return request;
    },
  };
}

export function createSwitchyardClient(options: SwitchyardClientOptions): SwitchyardClient {
  const headers: Record<string, string> = {};
  if (options.apiKey !== null) headers.authorization = `Bearer ${options.apiKey}`;
  if (options.version !== undefined) headers["switchyard-version"] = options.version;
  const client = createClient<paths>({
    baseUrl: options.baseUrl,
    headers,
    ...(options.fetch === undefined ? {} : { fetch: options.fetch }),
  });
  if (options.newIdempotencyKeys !== false)
    client.use(newIdempotencyKey(new URL(options.baseUrl).pathname.replace(/\/$/, "")));
  return client;
}
