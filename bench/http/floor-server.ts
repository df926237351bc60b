// The two floors `npm run bench -- http` measures the gateway against, each a process of its own like the
// gateway: `fastify` — a bare Fastify route that validates the payment's body with the same zod schema and does
// nothing else; `commit` — the same route plus one INSERT, committed on its own, on the bench's PostgreSQL.
// Usage: node bench/http/floor-server.ts <fastify|commit> <port> [postgres url]
import Fastify from "fastify";
import pg from "pg";
import type { ZodType } from "zod";
import { createPaymentBody } from "../../gateway/http/schemas.ts";

const [mode, portText, url] = process.argv.slice(2);
if ((mode !== "fastify" && mode !== "commit") || portText === undefined) {
  console.error("usage: floor-server.ts <fastify|commit> <port> [postgres url]");
  process.exit(2);
}
const pool = mode === "commit" ? new pg.Pool({ connectionString: url, max: 10 }) : null;
if (pool !== null)
  await pool.query("CREATE TABLE IF NOT EXISTS bench_floor (key text PRIMARY KEY, body jsonb NOT NULL)");

const app = Fastify({ logger: false, requestTimeout: 30_000, bodyLimit: 64 * 1024 });
app.setValidatorCompiler(({ schema }) => (data) => {
  const result = (schema as ZodType).safeParse(data);
  return result.success ? { value: result.data } : { error: result.error };
});
app.post("/v1/payments", { schema: { body: createPaymentBody } }, async (request, reply) => {
  if (pool !== null)
    await pool.query("INSERT INTO bench_floor (key, body) VALUES ($1, $2)", [
      request.headers["idempotency-key"],
      request.body,
    ]);
  return reply.code(201).send({ ok: true });
});
const address = await app.listen({ port: Number(portText), host: "127.0.0.1" });
console.log(`floor: listening on ${address}`);
const stop = async () => {
  await app.close();
  await pool?.end();
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
