// The API's JSON body parser, in place of Fastify's own, for two answers Fastify's gives wrongly:
// - An empty body sent with Content-Type: application/json (many SDKs send the header on every request) is no body,
//   as Stripe takes it: the route's schema decides, as it does for the same request without the header. Fastify's
//   refuses it as invalid JSON, even on routes whose body is optional (a revoke, a DELETE).
// - A `__proto__` key, or a `constructor` key holding a `prototype`, is refused still (the body's objects are
//   spread and merged later, where such a key would reach a prototype), but as the parameter it is, named by its
//   path: Fastify's secure-json-parse throws, and Fastify answers that as a body that is not valid JSON, which it is.
import type { FastifyRequest } from "fastify";
import { ApiError } from "./errors.ts";
import { escapeUnstorable } from "./text-safety.ts";

/**
 * Whether the text may hold a forbidden key: it names one, or has a \u escape that may spell one. Most bodies do
 * neither and are not walked (secure-json-parse's own shortcut).
 */
function mayHoldForbiddenKey(text: string): boolean {
  return text.includes("__proto__") || text.includes("constructor") || text.includes("\\u");
}

/**
 * The dotted path of the first forbidden key in a parsed body, or null. Walked with a queue, not recursion: a body's
 * depth is the client's (bounded only by the body limit). Each entry keeps its parent's index and its own key, and
 * only a forbidden key's path is written out: a path per entry would cost the square of the depth.
 */
export function forbiddenKeyOf(value: unknown): string | null {
  const queue: { value: unknown; parent: number; key: string }[] = [{ value, parent: -1, key: "" }];
  const pathOf = (index: number, key: string) => {
    const keys = [key];
    for (let at = index; at > 0; at = queue[at]!.parent) keys.push(queue[at]!.key);
    // A key's NUL or lone surrogate written out, as text-safety names the keys it refuses: never echoed raw.
    return keys.reverse().map(escapeUnstorable).join(".");
  };
  for (let i = 0; i < queue.length; i++) {
    const node = queue[i]!.value;
    if (typeof node !== "object" || node === null) continue;
    if (Object.hasOwn(node, "__proto__")) return pathOf(i, "__proto__");
    const constructorValue = Object.hasOwn(node, "constructor")
      ? (node as { constructor: unknown }).constructor
      : null;
    if (
      typeof constructorValue === "object" &&
      constructorValue !== null &&
      Object.hasOwn(constructorValue, "prototype")
    )
      return pathOf(i, "constructor.prototype");
    for (const [key, child] of Object.entries(node)) queue.push({ value: child, parent: i, key });
  }
  return null;
}

/**
 * Whether a Content-Encoding header leaves the body as sent: absent, or only `identity`. Node does not undo a coding,
 * so a compressed body would reach JSON.parse as its compressed bytes, refused as "not valid JSON" though it may be.
 */
export function isUncoded(contentEncoding: string | undefined): boolean {
  if (contentEncoding === undefined) return true;
  for (const coding of contentEncoding.split(",")) {
    const name = coding.trim().toLowerCase();
    if (name !== "" && name !== "identity") return false;
  }
  return true;
}

/** Parses an application/json body (the server's parser for the type): undefined for an empty one. */
export function parseJsonBody(
  request: FastifyRequest,
  text: string,
  done: (error: Error | null, body?: unknown) => void,
): void {
  // A coding the API does not take is the body's media type at fault (RFC 9110 §15.5.16): 415, named by its header,
  // saying which coding is taken (RFC 7694 §3).
  if (!isUncoded(request.headers["content-encoding"])) {
    done(
      new ApiError("unsupported_media_type", "send the body uncompressed: no Content-Encoding is taken", {
        param: "content-encoding",
        headers: { "accept-encoding": "identity" },
      }),
    );
    return;
  }
  // A UTF-8 byte order mark before the JSON (some Windows and .NET clients write one), skipped as Fastify's parser did.
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (text.length === 0) {
    done(null, undefined);
    return;
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    done(new ApiError("invalid_json", "the request body is not valid JSON"));
    return;
  }
  const forbidden = mayHoldForbiddenKey(text) ? forbiddenKeyOf(body) : null;
  if (forbidden !== null) {
    done(
      new ApiError("parameter_invalid", `invalid parameter "${forbidden}": this key is not allowed`, {
        param: forbidden,
      }),
    );
    return;
  }
  done(null, body);
}
