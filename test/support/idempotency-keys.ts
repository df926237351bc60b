// The routes that move money require an Idempotency-Key (POST /v1/payments, POST /v1/refunds: without one a retry
// would pay twice). The tests' helpers act as an SDK does: a call to one of them that names no key of its own gets
// a new random one, so a test that is not about keys need not make them up (the typed client does so itself:
// client/index.ts). A test about the key sends its own, or calls the server without these helpers.
import { randomUUID } from "node:crypto";
import { idempotencyKeyRequired } from "../../client/openapi.generated.ts";

/** Whether the operation requires an Idempotency-Key: the document's list, as the typed client reads it. */
function needsKey(method: string, url: string): boolean {
  const path = url.startsWith("/") ? url.split("?")[0] : new URL(url).pathname;
  return idempotencyKeyRequired.includes(`${method.toUpperCase()} ${path}`);
}

/** `headers` with a new Idempotency-Key when the request needs one and names none. */
export function withIdempotencyKey(
  method: string,
  url: string,
  headers: Record<string, string>,
): Record<string, string> {
  if (!needsKey(method, url)) return headers;
  if (Object.keys(headers).some((name) => name.toLowerCase() === "idempotency-key")) return headers;
  return { ...headers, "idempotency-key": `test-${randomUUID()}` };
}
