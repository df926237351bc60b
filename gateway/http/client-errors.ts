// What the server answers a connection whose bytes are not an HTTP request it can read: a header block past Node's
// limit, a Content-Length that is not a number, Content-Length and Transfer-Encoding together, a NUL in a header, a
// chunked body whose framing breaks, a request not received within requestTimeout. Node's parser refuses these before
// a route sees them (before any request exists, or while it reads a request's body); Node emits 'clientError' with the
// socket, and Fastify's own handler of it answers in Fastify's shape, without Switchyard-Version. This one answers in
// the API's shape, the version header too, then closes the connection: after a parse error nothing more on it can be
// read. The server's clientErrorHandler option.
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { FastifyInstance } from "fastify";
import { currentApiVersion } from "../tenants/index.ts";
import { ApiError, type ApiErrorCode } from "./errors.ts";
import { versionHeader } from "./versioning.ts";

/** The refusal of each error Node's parser names (its `code`); any other is a request that is not valid HTTP. */
function refusalOf(code: string | undefined): ApiError {
  switch (code) {
    case "HPE_HEADER_OVERFLOW":
      return new ApiError("header_too_large", "the request's headers are too large");
    case "HPE_CHUNK_EXTENSIONS_OVERFLOW":
      return new ApiError("body_too_large", "the request body's chunk extensions are too large");
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return new ApiError("request_timeout", "the request was not received in time");
    default:
      return new ApiError("bad_request", "the request is not valid HTTP");
  }
}

/** The raw HTTP/1.1 response of a refusal, with the connection closed after it. */
export function clientErrorResponse(error: ApiError): string {
  const body = JSON.stringify(error.body());
  const status = error.status;
  return [
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? "Error"}`,
    "Content-Type: application/json; charset=utf-8",
    `Content-Length: ${Buffer.byteLength(body)}`,
    `${versionHeader}: ${currentApiVersion}`,
    "Connection: close",
    "",
    body,
  ].join("\r\n");
}

/** Node's server socket: the response it is writing or is next to write, and the parser with the request it read last. */
type ServerSocket = Duplex & {
  _httpMessage?: ServerResponse | null;
  parser?: { incoming?: IncomingMessage | null } | null;
};

/**
 * Whether the refusal may be written as the answer to the bytes that failed: no earlier request's response is owed on
 * the connection, or the one owed is that of the request whose body failed (its headers were read, the parser was
 * still in its body: `complete` false) and nothing of it is written. A response owed to an earlier request (pipelined
 * before it, or its handler still running) comes first on the wire: the client would read the refusal as that
 * request's answer while its handler goes on and commits (a payment made, the client told bad_request).
 */
function answerable(socket: ServerSocket): boolean {
  const response = socket._httpMessage;
  const request = socket.parser?.incoming;
  if (request != null && !request.complete) return response?.req === request && !response.headersSent;
  return response == null;
}

/** Sockets already refused: Node calls the handler again for each later chunk (the parser stays failed), or on EOF. */
const refused = new WeakSet<Duplex>();

/**
 * Answers a connection's client error (Node's 'clientError': the socket, and no request, or one whose body failed) —
 * nothing when the peer reset the connection (the socket is gone) — then closes the socket. When the refusal is not
 * answerable (above), the connection is only destroyed, and the client retries with its Idempotency-Key. The refusal is
 * ended onto the socket rather than written and destroyed at once, which dropped what was still queued on it (an
 * earlier response's tail to a slow reader); the peer's further bytes are read and dropped meanwhile (a repeat call is
 * ignored: destroying then would reset the connection under the refusal), and the socket is destroyed after
 * closeAfterMs if the peer keeps it open. The failed request's handler, if running, answers into nothing: Node buffers
 * a response written once the socket is ended, and drops it when the socket closes. Bound to the Fastify instance,
 * whose log it writes to.
 */
export function answerClientError(
  this: FastifyInstance,
  error: Error & { code?: string },
  socket: ServerSocket,
): void {
  if (refused.has(socket) || error.code === "ECONNRESET" || socket.destroyed) return;
  // Timed out before sending a byte (a connection opened ahead, by a pool or a proxy): nothing was asked, and a 408 on
  // it would be read as the answer to whatever request the client sends on it next. Closed, as an idle one is.
  if (error.code === "ERR_HTTP_REQUEST_TIMEOUT" && (socket as { bytesRead?: number }).bytesRead === 0) {
    socket.destroy();
    return;
  }
  refused.add(socket);
  const refusal = refusalOf(error.code);
  this.log.debug({ err: error, code: refusal.code satisfies ApiErrorCode }, "a connection's bytes refused");
  if (!socket.writable || !answerable(socket)) {
    socket.destroy(error);
    return;
  }
  socket.end(clientErrorResponse(refusal));
  setTimeout(() => socket.destroy(), closeAfterMs).unref();
}

/** How long a refused connection's peer has to read the refusal before the socket is destroyed. */
const closeAfterMs = 5_000;
