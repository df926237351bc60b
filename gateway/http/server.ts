// Builds the Fastify server: zod for requests and responses, the error, auth and idempotency plugins,
// then the routes. Every limit explicit: Fastify's request timeout defaults to none.
import Fastify, { type FastifyInstance } from "fastify";
import type { ZodType } from "zod";
import { type ApiKeyCacheLimits, apiKeyCacheDefaults } from "../tenants/index.ts";
import { authPlugin } from "./auth.ts";
import { errorsPlugin, RequestValidationError } from "./errors.ts";
import { idempotencyPlugin } from "./idempotency.ts";
import { type RoutesOptions, routes } from "./routes.ts";

export type ServerOptions = RoutesOptions & {
  requestTimeoutMs: number;
  bodyLimitBytes: number;
  idempotencyInProgressTimeoutMs: number;
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  /** How many valid API keys each server remembers, and for how long (default: apiKeyCacheDefaults). */
  apiKeyCache?: ApiKeyCacheLimits;
  /** Extra plugins (a rail's webhook route) registered after the core ones. */
  plugins?: ReadonlyArray<(app: FastifyInstance) => Promise<void>>;
};

export async function buildServer(options: ServerOptions): Promise<FastifyInstance> {
  const app = Fastify({
    requestTimeout: options.requestTimeoutMs,
    connectionTimeout: options.requestTimeoutMs,
    keepAliveTimeout: 5_000,
    bodyLimit: options.bodyLimitBytes,
    logger: {
      level: options.logLevel,
      redact: {
        paths: ["req.headers.authorization", 'req.headers["stripe-signature"]'],
        censor: "[redacted]",
      },
    },
  });
  app.setValidatorCompiler(({ schema }) => (data) => {
    const result = (schema as ZodType).safeParse(data, { reportInput: true }); // input lets a missing field be told from a wrong one
    return result.success ? { value: result.data } : { error: new RequestValidationError(result.error) };
  });
  // Responses are checked against their schema too: a response that does not match is a bug, answered 500.
  app.setSerializerCompiler(
    ({ schema }) =>
      (data) =>
        JSON.stringify((schema as ZodType).parse(data)),
  );
  await app.register(errorsPlugin);
  await app.register(authPlugin, {
    sql: options.db,
    apiKeyCache: options.apiKeyCache ?? apiKeyCacheDefaults,
    nowMs: Date.now,
  });
  await app.register(idempotencyPlugin, {
    sql: options.db,
    inProgressTimeoutMs: options.idempotencyInProgressTimeoutMs,
  });
  await app.register(routes, {
    db: options.db,
    ledger: options.ledger,
    accounts: options.accounts,
    rails: options.rails,
    payments: options.payments,
    settlement: options.settlement,
  });
  for (const plugin of options.plugins ?? []) await plugin(app);
  return app;
}
