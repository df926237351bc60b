// Sending to a vetted URL. The URL is vetted (`vetUrl`), then every connection resolves its hostname once, vets
// every address it got and connects only to those (an undici Agent whose connector's `lookup` is ours): a name
// that answered a public address at registration and a private one now (DNS rebinding) is refused when it
// connects, and the address vetted is the address connected to. SNI and Host stay the URL's hostname. Redirects
// are never followed (a 3xx is the answer); an IP literal is vetted by `vetUrl` and connected to as written.
import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import { Resolver as DnsResolver } from "node:dns/promises";
import type { LookupFunction } from "node:net";
import { Agent, type Response, type RequestInit as UndiciRequestInit, fetch as undiciFetch } from "undici";
import { SwitchyardError } from "../../core/index.ts";
import { classifyAddress } from "./address.ts";
import { type EgressPolicy, type EgressRefusal, hostOf, type UrlVerdict, vetUrl } from "./url.ts";

/** What a hostname resolves to: every address, as `dns.lookup(host, { all: true })` answers. */
export type Resolver = (hostname: string) => Promise<readonly LookupAddress[]>;

/**
 * The system's resolution (getaddrinfo: /etc/hosts, then DNS), for the hosts the operator allows (EGRESS_ALLOW_HOSTS
 * may name one only /etc/hosts knows). It runs in libuv's thread pool (four threads), and a lookup whose nameserver
 * never answers holds its thread until the system gives up, whatever the caller's timeout: not for names a tenant
 * chooses.
 */
export const systemResolver: Resolver = (hostname) =>
  new Promise((resolve, reject) =>
    dnsLookup(hostname, { all: true, verbatim: true }, (error, addresses) =>
      error === null ? resolve(addresses) : reject(error),
    ),
  );

/** How long each nameserver is given to answer a query, and how many times it is asked (c-ares' own bound). */
export const dnsQueryTimeoutMs = 1_000;
export const dnsQueryTries = 2;

/**
 * Resolution by DNS queries on the event loop's own sockets (c-ares: Node's `dns.Resolver`, the nameservers of
 * /etc/resolv.conf as the process read it when it started, 127.0.0.1 without one, unless `servers` names others): the
 * A and AAAA records, every address of both, answered when both are (a nameserver that drops AAAA queries delays
 * every answer by its timeout). Nothing waits in the thread pool, and a query unanswered ends by its own bound
 * (dnsQueryTimeoutMs, doubled at each of dnsQueryTries per nameserver: about 3 s for one silent nameserver); the
 * callers' own timeouts (resolveTimeoutMs, registrationResolveTimeoutMs) bound what they wait. For the names
 * tenants choose (webhook endpoints, Lightning Addresses): before, each went through getaddrinfo, and a tenant's
 * names under a nameserver that never answers held the pool's four threads, stalling every other tenant's deliveries
 * (and the process's file and crypto work) behind them. /etc/hosts is not read: such names are the operator's.
 */
export function dnsResolver(options: { servers?: readonly string[] } = {}): Resolver {
  const dns = new DnsResolver({ timeout: dnsQueryTimeoutMs, tries: dnsQueryTries });
  if (options.servers !== undefined) dns.setServers([...options.servers]);
  return async (hostname) => {
    const [v4, v6] = await Promise.allSettled([dns.resolve4(hostname), dns.resolve6(hostname)]);
    const addresses: LookupAddress[] = [
      ...(v4.status === "fulfilled" ? v4.value.map((address) => ({ address, family: 4 })) : []),
      ...(v6.status === "fulfilled" ? v6.value.map((address) => ({ address, family: 6 })) : []),
    ];
    if (addresses.length > 0) return addresses;
    // No address: the name's failure (not found, no answer), unless each kind merely has no record of its type.
    for (const answer of [v4, v6])
      if (answer.status === "rejected" && (answer.reason as NodeJS.ErrnoException).code !== "ENODATA")
        throw answer.reason;
    return [];
  };
}

/** The resolution of names tenants choose, unless a test gives its own: dnsResolver on the system's nameservers. */
let publicResolverOnce: Resolver | null = null;
function publicResolver(): Resolver {
  publicResolverOnce ??= dnsResolver();
  return publicResolverOnce;
}

export type EgressLimits = {
  /** A connection not made within this is abandoned. */
  readonly connectTimeoutMs: number;
  /** The resolution of one hostname, for a connection. */
  readonly resolveTimeoutMs: number;
  /**
   * The resolution at registration, which the registering request waits for. It only refuses early what every
   * connection refuses anyway (a name that does not answer in time is accepted and vetted when it connects), so a
   * slow resolver should not hold the request: a lost DNS packet is asked again only after dnsQueryTimeoutMs.
   */
  readonly registrationResolveTimeoutMs: number;
};

export const egressLimitsDefault: EgressLimits = {
  connectTimeoutMs: 5_000,
  resolveTimeoutMs: 5_000,
  registrationResolveTimeoutMs: 1_000,
};

/** An outbound request refused by the egress guard; `reason` is from a closed set. */
export class EgressRefusedError extends SwitchyardError {
  override name = "EgressRefusedError";
  readonly reason: EgressRefusal;
  constructor(reason: EgressRefusal, message: string) {
    super(`egress refused: ${message}`);
    this.reason = reason;
  }
}

export type EgressInit = Omit<UndiciRequestInit, "dispatcher" | "redirect">;

export type Egress = {
  readonly policy: EgressPolicy;
  /** The URL alone, without resolving it: `vetUrl` under this policy. */
  vetUrl(text: string): UrlVerdict;
  /**
   * At registration: the URL, and every address its hostname resolves to now. A name that does not resolve is
   * accepted (it is vetted again at every connection); one that resolves to any non-public address is not.
   */
  vetRegistration(text: string): Promise<UrlVerdict>;
  /** fetch, to vetted addresses only, never following a redirect; refusals throw `EgressRefusedError`. */
  fetch(url: string | URL, init?: EgressInit): Promise<Response>;
  /**
   * A webhook's POST of a JSON body through `fetch`, the answer's body left unread: its status, or why none came
   * (an egress refusal names its reason). Never throws; the shape of the delivery loop's `Send`.
   */
  send(request: EgressPost): Promise<{ statusCode: number } | { error: string; reason?: EgressRefusal }>;
  /** Closes the pooled connections. */
  close(): Promise<void>;
};

export type EgressPost = {
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  readonly signal: AbortSignal;
};

export type EgressParams = {
  readonly policy: EgressPolicy;
  /**
   * Resolves every name, allowed or vetted, when given (tests give one that answers what they need); else an allowed
   * host by the system's resolver and every other name by DNS queries (dnsResolver).
   */
  readonly resolver?: Resolver;
  readonly limits?: EgressLimits;
};

export function createEgress(params: EgressParams): Egress {
  const { policy } = params;
  const resolver = params.resolver ?? publicResolver();
  const allowedResolver = params.resolver ?? systemResolver;
  const limits = params.limits ?? egressLimitsDefault;
  // Two connectors: an allowed URL's (its host and port as the allow-list names them) is resolved as the resolver
  // answers; every other one's only to vetted addresses. The lookup is told the host alone: deciding there from the
  // host let an entry `host:8443` open every port of that host (a Lightning Address `x@host:6443`, or an LNURL
  // callback naming that port, reached a private address unvetted).
  const connector = (trusted: boolean) =>
    new Agent({
      connect: {
        lookup: vettedLookup(trusted, trusted ? allowedResolver : resolver, limits),
        timeout: limits.connectTimeoutMs,
      },
    });
  const allowedDispatcher = connector(true);
  const vettedDispatcher = connector(false);
  const egress: Egress = {
    policy,
    vetUrl: (text) => vetUrl(text, policy),
    vetRegistration: (text) => vetRegistration(text, policy, { resolver, limits }),
    async fetch(url, init = {}) {
      const verdict = vetUrl(String(url), policy);
      if (!verdict.ok) throw new EgressRefusedError(verdict.reason, verdict.message);
      try {
        const dispatcher = verdict.allowed ? allowedDispatcher : vettedDispatcher;
        return await undiciFetch(verdict.url, { ...init, redirect: "manual", dispatcher });
      } catch (error) {
        throw refusalIn(error) ?? error;
      }
    },
    async send(request) {
      try {
        const response = await egress.fetch(request.url, {
          method: "POST",
          headers: { "content-type": "application/json", ...request.headers },
          body: request.body,
          signal: request.signal,
        });
        await response.body?.cancel();
        return { statusCode: response.status };
      } catch (error) {
        if (error instanceof EgressRefusedError) return { error: error.shortMessage, reason: error.reason };
        return { error: error instanceof Error ? error.message : String(error) };
      }
    },
    close: async () => {
      await Promise.all([allowedDispatcher.close(), vettedDispatcher.close()]);
    },
  };
  return egress;
}

/**
 * At registration (a webhook endpoint's URL): `vetUrl`, then every address the hostname resolves to now must be
 * public. A name that does not resolve now, or not within `registrationResolveTimeoutMs`, is accepted: it is vetted
 * again on every connection.
 */
export async function vetRegistration(
  text: string,
  policy: EgressPolicy,
  params: { readonly resolver?: Resolver; readonly limits?: EgressLimits } = {},
): Promise<UrlVerdict> {
  const verdict = vetUrl(text, policy);
  if (!verdict.ok || verdict.allowed || isLiteral(hostOf(verdict.url))) return verdict;
  const limits = params.limits ?? egressLimitsDefault;
  const resolved = await resolveVetted(hostOf(verdict.url), params.resolver ?? publicResolver(), {
    resolveTimeoutMs: limits.registrationResolveTimeoutMs,
  });
  if (!resolved.ok && resolved.reason !== "unresolvable") return resolved;
  return verdict;
}

type Resolution =
  | { readonly ok: true; readonly addresses: readonly LookupAddress[] }
  | { readonly ok: false; readonly reason: EgressRefusal; readonly message: string };

/** Resolves `hostname` once and vets every address: all public, or refused. */
export async function resolveVetted(
  hostname: string,
  resolver: Resolver,
  limits: Pick<EgressLimits, "resolveTimeoutMs">,
): Promise<Resolution> {
  let addresses: readonly LookupAddress[];
  try {
    addresses = await withTimeout(resolver(hostname), limits.resolveTimeoutMs);
  } catch (error) {
    return {
      ok: false,
      reason: "unresolvable",
      message: `${hostname} did not resolve: ${error instanceof Error ? error.message : String(error)}`,
    };
  }
  if (addresses.length === 0)
    return { ok: false, reason: "unresolvable", message: `${hostname} has no address` };
  for (const { address } of addresses) {
    const verdict = classifyAddress(address);
    if (!verdict.public)
      return {
        ok: false,
        reason: "address_not_public",
        // Not the address itself: the message reaches the tenant (the API's 400, a delivery attempt's error), and the
        // name's answer is the gateway's network's (a split-horizon zone's internal addresses), not the tenant's.
        message: `${hostname} resolves to an address that is not public (${verdict.range})`,
      };
  }
  return { ok: true, addresses };
}

/** A connector's lookup: an allowed URL's (`trusted`) as the resolver answers it, any other only to vetted addresses. */
function vettedLookup(trusted: boolean, resolver: Resolver, limits: EgressLimits): LookupFunction {
  return (hostname, options, callback) => {
    const host = hostname.toLowerCase().replace(/\.+$/, "");
    const answer = trusted
      ? withTimeout(resolver(host), limits.resolveTimeoutMs).then(
          (addresses): Resolution => ({ ok: true, addresses }),
          (error: unknown): Resolution => ({
            ok: false,
            reason: "unresolvable",
            message: `${host} did not resolve: ${error instanceof Error ? error.message : String(error)}`,
          }),
        )
      : resolveVetted(host, resolver, limits);
    void answer.then((resolution) => {
      if (!resolution.ok) {
        callback(new EgressRefusedError(resolution.reason, resolution.message), "", 4);
        return;
      }
      const family = options.family === 4 || options.family === 6 ? options.family : 0;
      const fitting = resolution.addresses.filter((a) => family === 0 || a.family === family);
      const first = fitting[0];
      if (first === undefined) {
        callback(new EgressRefusedError("unresolvable", `${host} has no IPv${family} address`), "", 4);
        return;
      }
      if (options.all === true) (callback as unknown as AllCallback)(null, fitting);
      else callback(null, first.address, first.family);
    });
  };
}

type AllCallback = (error: NodeJS.ErrnoException | null, addresses: readonly LookupAddress[]) => void;

function isLiteral(host: string): boolean {
  return host.startsWith("[") || /^[0-9.]+$/.test(host);
}

/** The egress refusal along an error's cause chain (undici wraps the connector's error in "fetch failed"). */
function refusalIn(error: unknown): EgressRefusedError | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < causeDepthMax && current !== undefined; depth += 1) {
    if (current instanceof EgressRefusedError) return current;
    current = current instanceof Error ? current.cause : undefined;
  }
  return undefined;
}

const causeDepthMax = 8;

function withTimeout<T>(promise: Promise<T>, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
