// A request whose answer waits on a settlement (an x402 transaction mined: up to a minute) says nothing on its socket
// meanwhile, and a server's idle timeout (Node's server.setTimeout: the gateway's REQUEST_TIMEOUT_MS, 30 s) destroys
// a socket silent that long, handler still running: the settlement goes on, the payer is charged, and the answer
// that would have served it has nowhere to go. Such a request's socket is given the wait, and only it.
import type { IncomingMessage } from "node:http";

/** Lets `request`'s socket stay silent for `waitMs` (never shortens a longer timeout, nor sets one where none is). */
export function outlastingWait(request: IncomingMessage, waitMs: number): void {
  const socket = request.socket as (IncomingMessage["socket"] & { timeout?: number }) | null;
  if (socket === null || socket === undefined) return;
  const current = socket.timeout ?? 0;
  if (current !== 0 && current < waitMs) socket.setTimeout(waitMs);
}
