// The gateway's HTTP server with no database and no services: for tests of what runs before any of them — the
// API-key refusals, the error shape, the OpenAPI document, the rails' provider routes. Any use of a service
// fails the test (they are null).
import type { FastifyInstance } from "fastify";
import type { RailRoute } from "../../core/index.ts";
import { createLocalChangeBus } from "../../gateway/db/index.ts";
import { buildServer, type ServerOptions } from "../../gateway/http/index.ts";

export async function buildBareServer(
  railRoutes: readonly RailRoute[],
  overrides: Partial<
    Pick<ServerOptions, "logLevel" | "logStream" | "db" | "readinessTimeoutMs" | "rails" | "requestTimeoutMs">
  > = {},
): Promise<FastifyInstance> {
  const options = {
    db: null,
    ledger: null,
    accounts: null,
    rails: new Map(),
    payments: null,
    settlement: null,
    requestTimeoutMs: 10_000,
    bodyLimitBytes: 64 * 1024,
    idempotencyInProgressTimeoutMs: 60_000,
    logLevel: "silent",
    railRoutes,
    changes: createLocalChangeBus(),
    ...overrides,
  } as unknown as ServerOptions;
  const server = await buildServer(options);
  await server.ready();
  return server;
}
