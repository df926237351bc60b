// Bytes Node's parser refuses before any request exists, sent raw to a listening server: answered in the API's error
// shape with a stable code and Switchyard-Version, and the connection closed.
import { connect } from "node:net";
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildBareServer } from "../../test/support/bare-server.ts";
import { answerClientError } from "./client-errors.ts";
import { currentApiVersion } from "./versioning.ts";

let server: FastifyInstance;
let port: number;

beforeAll(async () => {
  server = await buildBareServer([]);
  await server.listen({ port: 0, host: "127.0.0.1" });
  port = (server.server.address() as { port: number }).port;
});

afterAll(async () => {
  await server?.close();
});

type RawAnswer = { statusLine: string; headers: Map<string, string>; body: unknown };

/** Sends `bytes` on a new connection and reads all the server writes until it closes the connection. */
async function sendRaw(bytes: string): Promise<RawAnswer> {
  const socket = connect(port, "127.0.0.1");
  let answer = "";
  socket.on("data", (chunk) => {
    answer += chunk;
  });
  // The server may close while the request is still being written: the write then fails, which is expected.
  socket.on("error", () => {});
  const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
  socket.write(bytes);
  await closed;
  const [head = "", body = ""] = answer.split("\r\n\r\n", 2);
  const [statusLine = "", ...headerLines] = head.split("\r\n");
  const headers = new Map(
    headerLines.map((line) => {
      const colon = line.indexOf(":");
      return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()] as const;
    }),
  );
  return { statusLine, headers, body: JSON.parse(body) };
}

describe("a connection whose bytes are not a readable request", () => {
  it("is answered 431 header_too_large for a header block past the limit", async () => {
    const answer = await sendRaw(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(100_000)}\r\n\r\n`);
    expect(answer.statusLine).toBe("HTTP/1.1 431 Request Header Fields Too Large");
    expect(answer.body).toEqual({
      error: { code: "header_too_large", message: "the request's headers are too large" },
    });
    expect(answer.headers.get("switchyard-version")).toBe(currentApiVersion);
    expect(answer.headers.get("connection")).toBe("close");
    expect(answer.headers.get("content-type")).toBe("application/json; charset=utf-8");
  });

  it.each([
    [
      "a Content-Length that is not a number",
      "POST /v1/payments HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    ],
    [
      "Content-Length and Transfer-Encoding together",
      "POST /v1/payments HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ],
    ["a NUL in a header", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Nul: a\u0000b\r\n\r\n"],
    ["a request line that is not HTTP", "NOT HTTP AT ALL\r\n\r\n"],
  ])("is answered 400 bad_request for %s", async (_name, bytes) => {
    const answer = await sendRaw(bytes);
    expect(answer.statusLine).toBe("HTTP/1.1 400 Bad Request");
    expect(answer.body).toEqual({ error: { code: "bad_request", message: "the request is not valid HTTP" } });
    expect(answer.headers.get("switchyard-version")).toBe(currentApiVersion);
    expect(answer.headers.get("connection")).toBe("close");
    expect(Number(answer.headers.get("content-length"))).toBe(Buffer.byteLength(JSON.stringify(answer.body)));
  });

  it("leaves a well-formed request on another connection answered as usual", async () => {
    const answer = await sendRaw("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    expect(answer.statusLine).toBe("HTTP/1.1 200 OK");
  });
});

describe("a keep-alive connection whose next request is not readable while one is still unanswered", () => {
  it("is closed without a refusal the client would read as the earlier request's answer", async () => {
    // The server's own handler on a real Fastify: a route that answers after 200 ms, as a payment may.
    const slow = Fastify({ clientErrorHandler: answerClientError, logger: false });
    let handled = 0;
    slow.post("/slow", async () => {
      await new Promise((resolve) => setTimeout(resolve, 200));
      handled += 1;
      return { ok: true };
    });
    await slow.listen({ port: 0, host: "127.0.0.1" });
    try {
      const socket = connect((slow.server.address() as { port: number }).port, "127.0.0.1");
      let answer = "";
      socket.on("data", (chunk) => {
        answer += chunk;
      });
      socket.on("error", () => {});
      const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
      socket.write(
        "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}" +
          "GET /second HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
      );
      await closed;
      // Before: "HTTP/1.1 400 …bad_request", the only bytes the client read, while the first request's handler ran.
      expect(answer).not.toMatch(/bad_request/);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(handled).toBe(1);
    } finally {
      await slow.close();
    }
  });
});
