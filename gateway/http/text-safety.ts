// Text PostgreSQL cannot store is refused at the door, for every route at once: a NUL character (text refuses
// the byte, jsonb the \u0000 escape) and an unpaired UTF-16 surrogate (jsonb refuses its escape; text takes the
// UTF-8 encoder's replacement character instead, silently changing what was sent). Checked on the path
// parameters and the query string as the request arrives (onRequest: before the API key is looked at, before
// any hook of the /v1 context), and on the parsed JSON body before it is validated (preValidation: before the
// Idempotency-Key is claimed, before any handler). Answered 400 `parameter_invalid` naming the parameter by its
// dotted path, as zod's errors are (`metadata.order`, `methods.0.address`); a key that is itself unstorable is
// named with the offending code units written out (`metadata.a\u0000`), so the answer carries none of them.
// Registered once in server.ts, not encapsulated: routes added later are covered without a line of their own.
import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { isStorableText } from "../../core/index.ts";
import { ApiError } from "./errors.ts";

const isHighSurrogate = (unit: number) => unit >= 0xd800 && unit <= 0xdbff;
const isLowSurrogate = (unit: number) => unit >= 0xdc00 && unit <= 0xdfff;

/** The text with each unstorable code unit written out as `\uXXXX`, safe to echo in an answer. */
export function escapeUnstorable(text: string): string {
  let escaped = "";
  for (let index = 0; index < text.length; index += 1) {
    const unit = text.charCodeAt(index);
    const next = index + 1 < text.length ? text.charCodeAt(index + 1) : -1;
    if (isHighSurrogate(unit) && isLowSurrogate(next)) {
      escaped += text.slice(index, index + 2);
      index += 1;
    } else if (unit === 0 || isHighSurrogate(unit) || isLowSurrogate(unit)) {
      escaped += `\\u${unit.toString(16).padStart(4, "0")}`;
    } else {
      escaped += text[index];
    }
  }
  return escaped;
}

/** Where unstorable text was found: the parameter's dotted path, and whether it was a key or a value. */
export type UnstorableText = { param: string; in: "key" | "value" };

/** A value on the walk's stack: its key under its parent, the parent's own entry (null at the top). */
type Visit = { value: unknown; key: string | null; parent: Visit | null };

/** The dotted path of a visit, from the top; built only for the one reported. */
function pathOf(visit: Visit | null, last?: string): string {
  const parts: string[] = last === undefined ? [] : [last];
  for (let at = visit; at !== null; at = at.parent) if (at.key !== null) parts.push(at.key);
  return parts.reverse().join(".");
}

/**
 * The first string, key or value, that PostgreSQL cannot store, in a parsed JSON value (objects, arrays,
 * strings, numbers, booleans, null), walked with an explicit stack of parent links — no recursion over client
 * data, no path copied per value, so a deeply nested body costs what its size does (the body limit bounds it);
 * null when every string is storable.
 */
export function findUnstorableText(value: unknown): UnstorableText | null {
  // Almost every request holds none: looked for first without a path to keep (no visit, no entry pair per value:
  // the walk with them was about 1.5 of the 42 KB an internal payment allocated), then walked again to name it.
  if (allStorable(value)) return null;
  const stack: Visit[] = [{ value, key: null, parent: null }];
  while (stack.length > 0) {
    const visit = stack.pop()!;
    const item = visit.value;
    if (typeof item === "string") {
      if (!isStorableText(item)) return { param: pathOf(visit), in: "value" };
    } else if (Array.isArray(item)) {
      for (let index = item.length - 1; index >= 0; index -= 1)
        stack.push({ value: item[index], key: String(index), parent: visit });
    } else if (item !== null && typeof item === "object" && !Buffer.isBuffer(item)) {
      const entries = Object.entries(item);
      for (let index = entries.length - 1; index >= 0; index -= 1) {
        const [key, child] = entries[index]!;
        if (!isStorableText(key)) return { param: pathOf(visit, escapeUnstorable(key)), in: "key" };
        stack.push({ value: child, key, parent: visit });
      }
    }
  }
  return null;
}

/** Whether every string of a parsed JSON value, key or value, is storable: findUnstorableText's walk, keeping nothing. */
function allStorable(value: unknown): boolean {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const item = stack.pop();
    if (typeof item === "string") {
      if (!isStorableText(item)) return false;
    } else if (Array.isArray(item)) {
      for (let index = 0; index < item.length; index += 1) stack.push(item[index]);
    } else if (item !== null && typeof item === "object" && !Buffer.isBuffer(item)) {
      for (const key in item) {
        if (!Object.hasOwn(item, key)) continue;
        if (!isStorableText(key)) return false;
        stack.push((item as Record<string, unknown>)[key]);
      }
    }
  }
  return true;
}

/** The longest parameter name an answer carries (a longer path is cut, marked with an ellipsis). */
export const paramLengthMax = 256;

/** The 400 an unstorable string is answered with. */
export function unstorableTextError(found: UnstorableText): ApiError {
  const what = found.in === "key" ? "the parameter's name" : "the parameter";
  const named = found.param === "" ? "body" : found.param;
  // A path into a deeply nested body can be longer than anything worth sending back: its start names it.
  const param = named.length > paramLengthMax ? `${named.slice(0, paramLengthMax)}…` : named;
  return new ApiError(
    "parameter_invalid",
    `invalid parameter "${param}": ${what} holds a NUL character or an unpaired UTF-16 surrogate, which cannot be stored`,
    { param },
  );
}

function checkUrl(request: FastifyRequest): void {
  const found =
    findUnstorableText(request.params ?? {}) ?? findUnstorableText((request.query as unknown) ?? {});
  if (found !== null) throw unstorableTextError(found);
}

const plugin: FastifyPluginAsync = async (app) => {
  // Callback style, no promise: these run for every request (Fastify answers what a hook throws as its error).
  app.addHook("onRequest", (request, _reply, done) => {
    checkUrl(request);
    done();
  });
  app.addHook("preValidation", (request, _reply, done) => {
    const found = findUnstorableText(request.body);
    if (found !== null) throw unstorableTextError(found);
    done();
  });
};

/** Not encapsulated: registered at the root, its hooks run for every route, before any context's own. */
export const textSafetyPlugin = fp(plugin, { name: "switchyard-text-safety" });
