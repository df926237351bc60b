// A proxy to stripe-mock that forwards every request, and for the ones `cut` names cuts the connection once the
// upstream answered, so the caller never hears it: Stripe ran the request, its answer was lost. `answer` may
// answer a request itself (what stripe-mock, which keeps nothing, cannot: a list holding an earlier transfer), or
// refuse it as Stripe would (a ProxyAnswer: a restricted key's 403, a 404, a 500).
import http from "node:http";
import { freePort } from "../../scripts/lib/free-port.ts";

export type CuttingProxy = { port: number; close(): Promise<void> };

/** What `answer` returns for the proxy to answer with another status than 200 (Stripe's refusal of a request). */
export class ProxyAnswer {
  readonly status: number;
  readonly body: unknown;
  constructor(status: number, body: unknown) {
    this.status = status;
    this.body = body;
  }
}

export async function startCuttingProxy(
  upstreamPort: number,
  cut: (method: string, path: string) => boolean,
  answer: (method: string, path: string) => unknown | null = () => null,
): Promise<CuttingProxy> {
  const proxy = http.createServer((request, response) => {
    const own = answer(request.method ?? "", request.url ?? "");
    if (own !== null) {
      request.resume();
      const [status, body] = own instanceof ProxyAnswer ? [own.status, own.body] : [200, own];
      response.writeHead(status, { "content-type": "application/json" });
      response.end(JSON.stringify(body));
      return;
    }
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const upstream = http.request(
        {
          host: "127.0.0.1",
          port: upstreamPort,
          method: request.method,
          path: request.url,
          headers: request.headers,
        },
        (upstreamAnswer) => {
          if (cut(request.method ?? "", request.url ?? "")) {
            upstreamAnswer.resume();
            upstreamAnswer.on("end", () => request.socket.destroy());
            return;
          }
          response.writeHead(upstreamAnswer.statusCode ?? 502, upstreamAnswer.headers);
          upstreamAnswer.pipe(response);
        },
      );
      upstream.end(Buffer.concat(chunks));
    });
  });
  const port = await freePort();
  await new Promise<void>((resolve) => proxy.listen(port, "127.0.0.1", resolve));
  return { port, close: () => new Promise((resolve) => proxy.close(() => resolve())) };
}
