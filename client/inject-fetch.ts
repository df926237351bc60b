// fetch over Fastify's inject (light-my-request): the typed client calls a server in the same process, no socket.
// The request goes as it would on the wire — method, path and query, headers, the body's bytes — and the answer
// comes back as a fetch Response.

/** What of a Fastify server this needs (structurally: the client does not depend on Fastify). */
export type Injectable = {
  inject(request: {
    method: string;
    url: string;
    headers: Record<string, string>;
    payload?: Buffer;
  }): PromiseLike<{
    statusCode: number;
    headers: Record<string, string | string[] | number | undefined>;
    rawPayload: Buffer;
  }>;
};

/** Statuses whose Response may not have a body (the fetch standard's null body statuses). */
const nullBodyStatuses: ReadonlySet<number> = new Set([101, 103, 204, 205, 304]);

export function injectFetch(server: Injectable): (request: Request) => Promise<Response> {
  return async (request) => {
    const url = new URL(request.url);
    const headers: Record<string, string> = {};
    request.headers.forEach((value, name) => {
      headers[name] = value;
    });
    const body = request.body === null ? undefined : Buffer.from(await request.arrayBuffer());
    const answer = await server.inject({
      method: request.method,
      url: `${url.pathname}${url.search}`,
      headers,
      ...(body === undefined ? {} : { payload: body }),
    });
    const responseHeaders = new Headers();
    for (const [name, value] of Object.entries(answer.headers)) {
      if (value === undefined) continue;
      for (const one of Array.isArray(value) ? value : [value]) responseHeaders.append(name, String(one));
    }
    const noBody = nullBodyStatuses.has(answer.statusCode) || request.method === "HEAD";
    return new Response(noBody ? null : new Uint8Array(answer.rawPayload), {
      status: answer.statusCode,
      headers: responseHeaders,
    });
  };
}
