// Calls a gateway's HTTP API in-process (fastify.inject) with a tenant's key, for tests and benchmarks.
import type { App } from "../../gateway/app.ts";

export type ApiResponse = { status: number; body: any; headers: Record<string, unknown> };

export function apiClient(app: App, key: string = app.demo!.apiKey) {
  return async (method: "GET" | "POST", url: string, body?: unknown): Promise<ApiResponse> => {
    const response = await app.server.inject({
      method,
      url,
      headers: {
        authorization: `Bearer ${key}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
    });
    return {
      status: response.statusCode,
      body: response.body === "" ? null : response.json(),
      headers: response.headers,
    };
  };
}
