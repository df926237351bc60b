// Idempotency-Key on POST requests, as Stripe does it: the first request with a key runs and its answer
// is kept; a repeat with the same body gets that answer again (Idempotent-Replayed: true); a repeat with
// another body is refused; a repeat while the first is still running is refused. Server errors are not
// kept, so the request can be retried. Payments also carry the key themselves (the last line of defence
// against paying twice when a process dies between running the request and keeping its answer).
import { createHash } from "node:crypto";
import type { FastifyPluginAsync } from "fastify";
import fp from "fastify-plugin";
import type { Sql } from "../db/index.ts";
import { tenantOf } from "./auth.ts";
import { ApiError } from "./errors.ts";

declare module "fastify" {
  interface FastifyRequest {
    idempotencyKey: string | null;
  }
}

export const idempotencyKeyLengthMax = 255;

export type IdempotencyOptions = {
  sql: Sql;
  /** A key whose first request has run this long without an answer is taken to have died with its process. */
  inProgressTimeoutMs: number;
};

function requestDigest(method: string, url: string, body: unknown): Buffer {
  return createHash("sha256")
    .update(`${method} ${url}\n${JSON.stringify(body ?? null)}`)
    .digest();
}

const plugin: FastifyPluginAsync<IdempotencyOptions> = async (app, options) => {
  app.decorateRequest("idempotencyKey", null);

  app.addHook("preHandler", async (request, reply) => {
    if (request.method !== "POST" || request.tenant === null) return;
    const header = request.headers["idempotency-key"];
    if (header === undefined) return;
    const key = Array.isArray(header) ? header[0] : header;
    if (
      key === undefined ||
      key.length === 0 ||
      key.length > idempotencyKeyLengthMax ||
      !/^[\x21-\x7e]+$/.test(key)
    ) {
      throw new ApiError(
        "idempotency_key_invalid",
        `Idempotency-Key must be 1 to ${idempotencyKeyLengthMax} visible ASCII characters`,
      );
    }
    const tenant = tenantOf(request);
    const digest = requestDigest(request.method, request.url, request.body);
    const claimed = await options.sql.query(
      `INSERT INTO idempotency_keys (tenant_id, key, request_sha256) VALUES ($1, $2, $3)
       ON CONFLICT (tenant_id, key) DO UPDATE SET created_at = now()
         WHERE idempotency_keys.response_status IS NULL
           AND idempotency_keys.request_sha256 = EXCLUDED.request_sha256
           AND idempotency_keys.created_at < now() - make_interval(secs => $4::double precision / 1000)
       RETURNING key`,
      [tenant.id, key, digest, options.inProgressTimeoutMs],
    );
    if (claimed.length === 1) {
      request.idempotencyKey = key;
      return;
    }
    const [stored] = await options.sql.query<{
      request_sha256: Buffer;
      response_status: number | null;
      response_body: unknown;
    }>(
      "SELECT request_sha256, response_status, response_body FROM idempotency_keys WHERE tenant_id = $1 AND key = $2",
      [tenant.id, key],
    );
    if (stored === undefined)
      throw new ApiError(
        "idempotency_key_in_use",
        "a request with this Idempotency-Key is being run; retry shortly",
      );
    if (!Buffer.from(stored.request_sha256).equals(digest)) {
      throw new ApiError(
        "idempotency_key_reused",
        "this Idempotency-Key was used with another request; use a new key for a new request",
      );
    }
    if (stored.response_status === null) {
      throw new ApiError(
        "idempotency_key_in_use",
        "a request with this Idempotency-Key is being run; retry shortly",
      );
    }
    reply.header("idempotent-replayed", "true");
    return reply.code(stored.response_status).send(stored.response_body);
  });

  // Callback style: a request without a key (most of them) passes straight through, without a promise.
  app.addHook("onSend", (request, reply, payload, done) => {
    const key = request.idempotencyKey;
    const tenant = request.tenant;
    if (key === null || tenant === null) return done(null, payload);
    const stored =
      reply.statusCode >= 500
        ? options.sql.query(
            "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND response_status IS NULL",
            [tenant.id, key],
          )
        : options.sql.query(
            "UPDATE idempotency_keys SET response_status = $3, response_body = $4 WHERE tenant_id = $1 AND key = $2",
            [
              tenant.id,
              key,
              reply.statusCode,
              typeof payload === "string" ? payload : JSON.stringify(payload),
            ],
          );
    stored.then(
      () => done(null, payload),
      (error: Error) => done(error),
    );
  });
};

export const idempotencyPlugin = fp(plugin, {
  name: "switchyard-idempotency",
  dependencies: ["switchyard-auth"],
});
