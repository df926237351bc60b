// The API's JSON body parser (json-body.ts): an empty body is none; a key that would reach a prototype is refused,
// named by its path.
import { describe, expect, it } from "vitest";
import { ApiError } from "./errors.ts";
import { forbiddenKeyOf, isUncoded, parseJsonBody } from "./json-body.ts";

/** What the parser hands Fastify for `text` sent with `headers`: the body, or the error. */
function parsed(text: string, headers: Record<string, string> = {}): { error: Error | null; body?: unknown } {
  let answer: { error: Error | null; body?: unknown } | undefined;
  parseJsonBody({ headers } as never, text, (error, body) => {
    answer = { error, body };
  });
  return answer!;
}

describe("the JSON body parser", () => {
  it("takes a body with no Content-Encoding or only identity, and refuses any coding as unsupported_media_type", () => {
    for (const coding of [undefined, "identity", "IDENTITY", " identity ", "identity, identity", ""])
      expect([coding, isUncoded(coding)]).toEqual([coding, true]);
    for (const coding of ["gzip", "br", "deflate", "x-gzip", "identity, gzip", "GZIP"])
      expect([coding, isUncoded(coding)]).toEqual([coding, false]);
    // The text a gzip body's bytes decode to would be "not valid JSON"; the coding is refused first, even for text
    // that parses, since a coding names what the bytes are.
    const { error } = parsed('{"amount":"1"}', { "content-encoding": "gzip" });
    expect(error instanceof ApiError && [error.code, error.param, error.status]).toEqual([
      "unsupported_media_type",
      "content-encoding",
      415,
    ]);
    expect(parsed('{"amount":"1"}', { "content-encoding": "identity" })).toEqual({
      error: null,
      body: { amount: "1" },
    });
  });

  it("takes an empty body as none, and anything else not JSON as invalid_json", () => {
    expect(parsed("")).toEqual({ error: null, body: undefined });
    for (const text of [" ", "{", "{'a':1}"]) {
      const { error } = parsed(text);
      expect([text, error instanceof ApiError && error.code]).toEqual([text, "invalid_json"]);
    }
    expect(parsed('{"constructor":{"name":"x"},"prototype":1}')).toEqual({
      error: null,
      body: { constructor: { name: "x" }, prototype: 1 },
    });
  });

  it("refuses __proto__ and constructor.prototype anywhere as parameter_invalid, naming the key", () => {
    for (const [text, param] of [
      ['{"__proto__":{"x":1}}', "__proto__"],
      ['{"metadata":{"__proto__":"x"}}', "metadata.__proto__"],
      ['{"items":[{"a":1},{"\\u005f_proto__":1}]}', "items.1.__proto__"],
      ['{"a":{"constructor":{"prototype":{}}}}', "a.constructor.prototype"],
    ] as const) {
      const { error } = parsed(text);
      expect(error).toBeInstanceOf(ApiError);
      expect([text, (error as ApiError).status, (error as ApiError).body()]).toEqual([
        text,
        400,
        {
          error: {
            code: "parameter_invalid",
            message: `invalid parameter "${param}": this key is not allowed`,
            param,
          },
        },
      ]);
    }
  });

  it("walks a deep body without recursion, and names a deep key without writing every path", () => {
    const depth = 200_000;
    const deep = JSON.parse(`${"[".repeat(depth)}{"__proto__":1}${"]".repeat(depth)}`);
    const started = performance.now();
    const path = forbiddenKeyOf(deep);
    expect(path).toBe(`${"0.".repeat(depth)}__proto__`);
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});

describe("the JSON body parser, as Fastify's took a body", () => {
  it("skips a UTF-8 byte order mark before the JSON (Fastify's parser did; some Windows clients write one)", () => {
    expect(parsed('\ufeff{"amount":"1.00"}')).toEqual({ error: null, body: { amount: "1.00" } });
    expect(parsed("\ufeff")).toEqual({ error: null, body: undefined });
  });

  it("writes out a NUL or a lone surrogate of a refused key's path, never echoing it raw", () => {
    const { error } = parsed('{"a\\u0000b":{"\\ud800":{"__proto__":1}}}');
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).body()).toMatchObject({
      error: { code: "parameter_invalid", param: "a\\u0000b.\\ud800.__proto__" },
    });
  });
});
