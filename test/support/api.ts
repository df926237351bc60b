// Calls a gateway's HTTP API in-process (fastify.inject) with a tenant's key, for tests and benchmarks: the typed
// client, or raw requests (apiClient) for what it would not send. Both add an Idempotency-Key where one is required.
import { createSwitchyardClient, injectFetch, type SwitchyardClient } from "../../client/index.ts";
import type { App } from "../../gateway/app.ts";
import { withIdempotencyKey } from "./idempotency-keys.ts";

export type ApiResponse = { status: number; body: any; headers: Record<string, unknown> };

export function apiClient(app: App, key: string = app.demo!.apiKey) {
  return async (method: "GET" | "POST", url: string, body?: unknown): Promise<ApiResponse> => {
    const response = await app.server.inject({
      method,
      url,
      headers: withIdempotencyKey(method, url, {
        authorization: `Bearer ${key}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      }),
      ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
    });
    return {
      status: response.statusCode,
      body: response.body === "" ? null : response.json(),
      headers: response.headers,
    };
  };
}

/**
 * The typed client (client/) with a tenant's key (the demo's by default), calling the app's server in-process; a
 * POST that names no Idempotency-Key gets a new one (the client's own, client/index.ts).
 */
export function typedClient(app: App, key: string = app.demo!.apiKey): SwitchyardClient {
  return createSwitchyardClient({
    baseUrl: "http://gateway.test",
    apiKey: key,
    fetch: injectFetch(app.server),
  });
}
