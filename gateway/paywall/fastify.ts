// The paywall in a tenant's own Fastify app: `app.register(switchyardPaywall, { paywall })`, where `paywall` is
// createPaywall(…) in-process or remotePaywall(…) over HTTP. The verdict runs in onRequest (a 402 or a preflight
// is answered there, before any body is read; inside an encapsulated scope `preflightRoutes` gives routes an
// OPTIONS twin so that a preflight reaches the hook); a paid request runs its handler, and in onSend — the answer
// serialized, not yet written — the verdict is completed: settled only when the handler answered below 400;
// a settlement that fails discards the handler's answer for a 402 (reference §1.3, "Express adapter flow").
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import type { PaywallCheck, PaywallVerdict } from "./core.ts";
import { remotePaywallCompleteTimeoutMsDefault } from "./remote.ts";
import type { HeaderLine, PaywallRequest } from "./scheme.ts";
import { outlastingWait } from "./socket-wait.ts";

declare module "fastify" {
  interface FastifyRequest {
    /** The paywall's paid verdict for this request, until it is completed; null otherwise. */
    paywallPaid: Extract<PaywallVerdict, { kind: "paid" }> | null;
    /**
     * The answer's header names when the paid verdict was given: a settlement refused keeps only these, so that
     * nothing the handler set (a Location, a Set-Cookie, a link to the paid content) goes out with the 402.
     */
    paywallHeadersBefore: ReadonlySet<string> | null;
  }
}

export type SwitchyardPaywallOptions = {
  readonly paywall: PaywallCheck;
  /** The origin clients use (`https://api.example.com`), for the absolute resource URL; default: the request's. */
  readonly publicOrigin?: string;
  /**
   * Give each route registered after the plugin an OPTIONS twin, so that a browser's preflight reaches the paywall
   * when the plugin is registered inside an encapsulated scope (at the top level it is not needed). Default false.
   */
  readonly preflightRoutes?: boolean;
  /**
   * How long a paid request may wait for its payment's settlement (default: remotePaywallCompleteTimeoutMsDefault,
   * 90 s): its socket is kept open that long, past the server's idle timeout, so that the answer reaches the payer.
   */
  readonly settlementWaitMs?: number;
};

/**
 * A Host header as RFC 9110 has it: a name (RFC 3986's reg-name: `my_service` too) or an IPv4 address, or an IPv6
 * one in brackets, and a port. Nothing that ends a URL's authority (`/`, `?`, `#`, `@`, `\`, a space).
 */
const plainHost = /^(?:[A-Za-z0-9._~!$&'()*+,;=%-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/;

/**
 * The path Fastify's router (find-my-way) routes a target on. An absolute-form one (`GET http://host/path`): the
 * scheme http or https in any case, the authority up to the first `/` or `?`, then the path (`/` when there is none,
 * the query after `/` when it comes first). Any other target not starting with `/` (Node's parser takes `*paid`):
 * its first character taken for the `/`, as the router does — `GET *paid/report` ran `/paid/report`'s handler.
 */
export function routedTarget(target: string): string {
  if (target.startsWith("/")) return target;
  const schemeEnd = target.indexOf("://");
  const scheme = schemeEnd < 0 ? "" : target.slice(0, schemeEnd).toLowerCase();
  if (scheme !== "http" && scheme !== "https") return `/${target.slice(1)}`;
  const authorityStart = schemeEnd + 3;
  const slash = target.indexOf("/", authorityStart);
  const question = target.indexOf("?", authorityStart);
  const ends = [slash, question].filter((at) => at >= 0);
  if (ends.length === 0) return "/";
  const end = Math.min(...ends);
  return end === slash ? target.slice(end) : `/${target.slice(end)}`;
}

/**
 * The framework-free request of a Fastify one. Its URL's path is the one Fastify routes on: an absolute-form target
 * is read as its path, and the origin is the request's only when its Host is a plain host and port. Node takes any
 * text as Host, and the URL was the two pasted together: `Host: x/free?` made `GET /paid` read as `/free`, and `GET
 * http://evil/paid` as `/evil/paid`, each free while Fastify ran the paid route's handler. Without a plain Host
 * (and without publicOrigin) the URL is the path alone.
 */
export function paywallRequestOf(request: FastifyRequest, publicOrigin?: string): PaywallRequest {
  const target = routedTarget(request.url);
  const path = target.startsWith("/") ? target : `/${target}`;
  const origin =
    publicOrigin ?? (plainHost.test(request.host) ? `${request.protocol}://${request.host}` : "");
  return {
    method: request.method,
    url: `${origin}${path}`,
    headers: request.headers,
    rawHeaders: request.raw.rawHeaders,
  };
}

/** Sets header lines on the reply; a name given more than once becomes that many lines. */
export function setHeaderLines(reply: FastifyReply, lines: readonly HeaderLine[]): void {
  const byName = new Map<string, { name: string; values: string[] }>();
  for (const [name, value] of lines) {
    const entry = byName.get(name.toLowerCase()) ?? { name, values: [] };
    entry.values.push(value);
    byName.set(name.toLowerCase(), entry);
  }
  for (const { name, values } of byName.values())
    reply.header(name, values.length === 1 ? values[0] : values);
}

const plugin: FastifyPluginAsync<SwitchyardPaywallOptions> = async (app, options) => {
  app.decorateRequest("paywallPaid", null);
  app.decorateRequest("paywallHeadersBefore", null);

  // A browser preflights the paid retry (OPTIONS with Access-Control-Request-Method). Registered at the top level,
  // the hook runs for every request, also the OPTIONS no route matches (Fastify's 404 runs the root's hooks). Inside
  // an encapsulated scope it does not: there `preflightRoutes` gives each route registered after the plugin an
  // OPTIONS twin (not HEAD routes, not a path that has one), so the hook answers a paywalled path's preflight;
  // anything else reaching a twin is the 404 it was.
  if (options.preflightRoutes === true) {
    const twinned = new Set<string>();
    app.addHook("onRoute", function addPreflightRoute(route) {
      const methods = (Array.isArray(route.method) ? route.method : [route.method]).map((m) =>
        m.toUpperCase(),
      );
      if (methods.includes("OPTIONS") || methods.every((method) => method === "HEAD")) return;
      if (twinned.has(route.url) || this.hasRoute({ method: "OPTIONS", url: route.url })) return;
      twinned.add(route.url);
      this.route({
        method: "OPTIONS",
        url: route.routePath,
        schema: { hide: true },
        handler: (_request, reply) => reply.callNotFound(),
      });
    });
  }

  app.addHook("onRequest", async (request, reply) => {
    const verdict = await options.paywall(paywallRequestOf(request, options.publicOrigin));
    switch (verdict.kind) {
      case "free":
        return;
      case "preflight":
        setHeaderLines(reply, verdict.headers);
        return reply.code(204).send();
      case "challenge":
        setHeaderLines(reply, verdict.headers);
        return reply.code(verdict.status).type("application/json").send(verdict.body);
      case "paid":
        request.paywallPaid = verdict;
        request.paywallHeadersBefore = new Set(Object.keys(reply.getHeaders()));
        outlastingWait(request.raw, options.settlementWaitMs ?? remotePaywallCompleteTimeoutMsDefault);
        return;
    }
  });

  app.addHook("onSend", async (request, reply, payload) => {
    const paid = request.paywallPaid;
    if (paid === null) return payload;
    request.paywallPaid = null;
    const served = reply.statusCode < 400;
    const done = await paid.complete({ served });
    if (!served) return payload;
    if (done.kind === "settled") {
      setHeaderLines(reply, done.headers);
      // Paid, and the payer gone before the answer was written (it gave up while the payment settled, or the
      // connection broke): the same payment sent again is served. Before, its retry was refused as a nonce used.
      if (done.undelivered !== undefined) whenUndelivered(reply, done.undelivered);
      return payload;
    }
    // The handler's answer is discarded, its headers with it (the content's length among them).
    const before = request.paywallHeadersBefore;
    for (const name of Object.keys(reply.getHeaders()))
      if (before === null || !before.has(name)) reply.removeHeader(name);
    setHeaderLines(reply, done.headers);
    reply.code(done.status).type("application/json");
    return JSON.stringify(done.body);
  });

  // A request that ends without an answer sent (the client went away): nothing is settled.
  app.addHook("onRequestAbort", async (request) => {
    const paid = request.paywallPaid;
    if (paid === null) return;
    request.paywallPaid = null;
    await paid.complete({ served: false });
  });
};

/**
 * Says a paid answer `undelivered` (once, its failure logged) if it is not written whole: the connection (HTTP/1) or
 * stream (HTTP/2) closed before it was, or already had. Written whole: ended and flushed (an HTTP/2 stream cancelled
 * reads as flushed, not ended).
 */
export function whenUndelivered(reply: FastifyReply, undelivered: () => Promise<boolean>): void {
  const then = () => {
    undelivered().catch((error: unknown) =>
      reply.log.warn({ err: error }, "paywall: a paid answer never delivered could not be recorded owed"),
    );
  };
  const response = reply.raw as FastifyReply["raw"] & { stream?: { destroyed: boolean } };
  const delivered = () => response.writableEnded && response.writableFinished;
  if (delivered()) return;
  // The response's own state: a request is destroyed once its body was read (Node 24), a response only once its
  // connection is gone; an HTTP/2 response has no `destroyed`, its stream has.
  const gone = response.destroyed ?? response.stream?.destroyed ?? false;
  if (gone) {
    then();
    return;
  }
  response.once("close", () => {
    if (!delivered()) then();
  });
}

export const switchyardPaywall = fp(plugin, { name: "switchyard-paywall", fastify: "5.x" });
