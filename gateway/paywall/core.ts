// The paywall, framework-free: `createPaywall(deps)` gives `(request) → verdict`. A request outside every paywall
// of the tenant is free; inside one, a request without payment gets ONE 402 that offers every configured way at
// once (each scheme adds its headers and body fields: x402's PAYMENT-REQUIRED and v1 body, L402's two
// WWW-Authenticate lines), at prices locked for the window (price.ts); a request with a credential is verified by
// the scheme it belongs to and, when paid, carries a `complete` to call once after the handler.
// Refusals (a 402 again, with a fresh challenge — also when settling fails after a verify) carry a stable
// `error` code in the body and in PAYMENT-REQUIRED's JSON (x402 v2's `error`); precedence: a CORS
// preflight is answered first, then more than one scheme's credential (payment_ambiguous), then a credential of a
// scheme this paywall does not offer (payment_scheme_not_offered), then the scheme's own refusal.
// pathOf remembers the path of the URLs it read lately, at most pathsRememberedLimits of them.
import type { Asset, Logger } from "../../core/index.ts";
import { setBounded, silentLogger } from "../../core/index.ts";
import type { Sql } from "../db/index.ts";
import type { RateSource } from "../router/index.ts";
import { corsHeaders, isPreflight, type PaywallCorsOrigins, preflightHeaders } from "./cors.ts";
import { type Paywall, tenantPaywalls } from "./paywalls.ts";
import { createPriceLocks, type PriceLocks } from "./price.ts";
import type {
  ChallengePart,
  HeaderLine,
  PaymentRefusal,
  PaymentScheme,
  PaywallRequest,
  PricedResource,
  SchemePrice,
} from "./scheme.ts";

/** The code in a 402's body when no payment came with the request. */
export const paymentRequiredCode = "payment_required";

/** What the paywall says about a request. */
export type PaywallVerdict =
  | { readonly kind: "free" }
  | { readonly kind: "preflight"; readonly status: 204; readonly headers: readonly HeaderLine[] }
  | {
      readonly kind: "challenge";
      /**
       * 402; 503 when no way to pay can be offered now (no rate for any scheme's asset, or every scheme's rail out of
       * reach: paywall_rate_unavailable, paywall_rail_unavailable); 400 for a path whose dot segments make which
       * paywall covers it ambiguous (path_not_normalized).
       */
      readonly status: 400 | 402 | 503;
      readonly headers: readonly HeaderLine[];
      readonly body: Readonly<Record<string, unknown>>;
    }
  | {
      readonly kind: "paid";
      readonly paywallId: string;
      readonly scheme: string;
      readonly payer: string;
      /**
       * Once, after the handler: `served` when it answered below 400. `settled`: add `headers` to the answer.
       * `refused`: discard the handler's answer and send this 402 instead. Called again, it answers the first result.
       */
      complete(outcome: { served: boolean }): Promise<PaywallCompletion>;
    };

export type PaywallCompletion =
  | {
      readonly kind: "settled";
      readonly headers: readonly HeaderLine[];
      /** The answer never reached the payer: the same payment sent again is served once (the scheme's). */
      readonly undelivered?: () => Promise<boolean>;
    }
  | {
      readonly kind: "refused";
      readonly status: 402;
      readonly headers: readonly HeaderLine[];
      readonly body: Readonly<Record<string, unknown>>;
    };

/** The paywall as a function: the same shape in-process (createPaywall) and remote (remotePaywall). */
export type PaywallCheck = (request: PaywallRequest) => Promise<PaywallVerdict>;

export type PaywallDeps = {
  readonly sql: Sql;
  readonly tenantId: string;
  /** Every scheme the gateway can take; a paywall offers those it lists. */
  readonly schemes: readonly PaymentScheme[];
  readonly rates: Pick<RateSource, "usdRate">;
  readonly nowMs?: () => number;
  /** Default `*`. */
  readonly corsOrigins?: PaywallCorsOrigins;
  /** How long the tenant's paywalls are used before they are read again (default paywallsRefreshMsDefault). */
  readonly paywallsRefreshMs?: number;
  /** Shared between the tenants of one process when given (the service's). */
  readonly priceLocks?: PriceLocks;
  readonly logger?: Logger;
};

export const paywallsRefreshMsDefault = 1_000;

// ---- matching a request to a paywall

/** How many URLs pathOf remembers the path of, and the longest URL it remembers (a longer one is read each time). */
export const pathsRememberedLimits = { urlsMax: 1_000, urlLengthMax: 1_024 } as const;

/**
 * The path of an absolute or relative URL, without query or fragment, and up to a `;` (Fastify with
 * useSemicolonDelimiter serves `/paid;x` from `/paid`; a router that strips `;…` from each segment, as Spring does,
 * is not matched: `/paid;x/report` reads `/paid`), as loosely as any router could read it: each
 * segment percent-decoded (a segment that does not decode is kept as sent), repeated slashes as one, lower case.
 * A paywall is matched on this form and so is its resource: `/demo/p%61id/x`, `//Demo/paid/x` and `/demo/paid/x/`
 * reach the same handler in a router that decodes, merges slashes, ignores case or a trailing slash, and all pay.
 * URLs read lately are remembered (every paid request reads its own twice: the paywall's, the caveats'), within
 * pathsRememberedLimits.
 */
export const pathOf: (url: string) => string = pathReader(pathsRememberedLimits, new Map());

/**
 * pathOf over the memory `paths`: at most `urlsMax` URLs of at most `urlLengthMax` characters, the one remembered
 * first forgotten first (reading a remembered URL again does not make it newer).
 */
export function pathReader(
  limits: { readonly urlsMax: number; readonly urlLengthMax: number },
  paths: Map<string, string>,
): (url: string) => string {
  return (url) => {
    const remembered = url.length <= limits.urlLengthMax;
    const known = remembered ? paths.get(url) : undefined;
    if (known !== undefined) return known;
    const rest = fromPath(url);
    const end = rest === null ? -1 : rest.search(/[?#;]/);
    const path = rest === null ? "/" : looseForm(end < 0 ? rest : rest.slice(0, end));
    if (remembered) setBounded(paths, url, path, limits.urlsMax);
    return path;
  };
}

/** A URL from its path's first `/` on (the whole of a relative URL); null when it has no path. */
function fromPath(url: string): string | null {
  const start = url.startsWith("/") ? 0 : url.indexOf("/", url.indexOf("//") + 2);
  return start < 0 ? null : url.slice(start);
}

function looseForm(path: string): string {
  const decoded = path.split("/").map((segment) => {
    try {
      return decodeURIComponent(segment);
    } catch (error) {
      if (!(error instanceof URIError)) throw error;
      return segment;
    }
  });
  return decoded
    .join("/")
    .replace(/\/{2,}/g, "/")
    .toLowerCase();
}

/**
 * The paywall covering `path` (as pathOf gives it): an exact resource first, else the longest `*` prefix; null when
 * none. A trailing slash is no way around either: `/a/` pays as `/a`, and `/reports` as a prefix `/reports/*` would.
 */
export function matchPaywall(paywalls: readonly Paywall[], path: string): Paywall | null {
  const bare = path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
  let best: Paywall | null = null;
  for (const paywall of paywalls) {
    const { resource } = paywall;
    if (!resource.endsWith("*")) {
      const exact = pathOf(resource);
      if (exact === path || exact === bare || exact === `${bare}/`) return paywall;
      continue;
    }
    const prefix = pathOf(resource.slice(0, -1));
    if (
      (path.startsWith(prefix) || `${bare}/`.startsWith(prefix)) &&
      (best === null || resource.length > best.resource.length)
    )
      best = paywall;
  }
  return best;
}

/**
 * The path without its `.` and `..` segments (RFC 3986 remove_dot_segments) over pathOf's form: the file a static
 * handler serves for `/files/public/../secret/a.pdf` is `secret/a.pdf`.
 */
export function withoutDotSegments(path: string): string {
  const segments = path.split("/").slice(1);
  if (!segments.some((segment) => segment === "." || segment === "..")) return path;
  const kept: string[] = [];
  for (const segment of segments) {
    if (segment === "..") kept.pop();
    else if (segment !== ".") kept.push(segment);
  }
  const last = segments.at(-1);
  return `/${kept.join("/")}${(last === "." || last === "..") && kept.length > 0 ? "/" : ""}`;
}

/**
 * The paywall covering a request's URL, or "ambiguous". A path without dot segments is matched on pathOf's form. One
 * with `.` or `..` segments reaches what its handler makes of them, which the paywall cannot know: a router such as
 * find-my-way keeps them (and a `;` and what follows it) in a wildcard's value, and a static file server behind it
 * resolves them (`/files/public/../secret/a.pdf` serves `secret/a.pdf`, `/x;/../full/a.pdf` serves `full/a.pdf`).
 * Such a path is matched in every reading — as sent, cut at `;` or not, its dot segments resolved — and when the
 * readings do not agree on one paywall (or on none) it is "ambiguous": answered 400, neither free nor priced as one
 * of them (before, `/public/../secret/a.pdf` was free, and the more specific reading by length was a cheaper one to
 * pick). Ordinary clients never send dot segments: browsers and fetch resolve them first.
 */
export function paywallOfUrl(paywalls: readonly Paywall[], url: string): Paywall | null | "ambiguous" {
  const path = pathOf(url);
  // A dot segment needs a `.`, plain or percent-encoded, in the path as sent: without one (nearly every request),
  // nothing more is read.
  const rest = fromPath(url) ?? "/";
  const end = rest.search(/[?#]/);
  const sent = end < 0 ? rest : rest.slice(0, end);
  if (!/\.|%2e/i.test(sent)) return matchPaywall(paywalls, path);
  const whole = looseForm(sent);
  if (!hasDotSegment(whole)) return matchPaywall(paywalls, path);
  const readings = [
    path,
    withoutDotSegments(path),
    withoutDotSegments(whole),
    withoutDotSegments(whole.replace(/;[^/]*/g, "")),
  ];
  const matched = new Set(readings.map((reading) => matchPaywall(paywalls, reading)));
  return matched.size === 1 ? ([...matched][0] ?? null) : "ambiguous";
}

/** Whether a path (pathOf's loose form) has a `.` or `..` segment, a segment's `;…` aside. */
function hasDotSegment(path: string): boolean {
  return path.split("/").some((segment) => {
    const bare = segment.split(";")[0];
    return bare === "." || bare === "..";
  });
}

// ---- the paywall

type Offer = { rail: string; price: SchemePrice };
type SchemeGroup = { scheme: PaymentScheme; asset: Asset; resource: PricedResource; rails: string[] };

/** x402's challenge header, whose JSON carries a refusal's code in `error` (x402 v2's PaymentRequired). */
const paymentRequiredHeader = "payment-required";

/**
 * The challenge lines with the refusal's stable code as the `error` of each PAYMENT-REQUIRED object (base64
 * JSON); a line that is not such an object is left as it is.
 */
export function withRefusalCode(lines: readonly HeaderLine[], refusal: PaymentRefusal): HeaderLine[] {
  return lines.map((line): HeaderLine => {
    const [name, value] = line;
    if (name.toLowerCase() !== paymentRequiredHeader) return line;
    let decoded: unknown;
    try {
      decoded = JSON.parse(Buffer.from(value, "base64").toString("utf8"));
    } catch (error) {
      if (error instanceof SyntaxError) return line;
      throw error;
    }
    if (typeof decoded !== "object" || decoded === null || Array.isArray(decoded)) return line;
    const withError = { ...(decoded as Record<string, unknown>), error: refusal.code };
    return [name, Buffer.from(JSON.stringify(withError), "utf8").toString("base64")];
  });
}

/** Refusals that ask for the same payment again rather than a new one (x402's: the payment may still be good). */
const sendAgainCodes: ReadonlySet<string> = new Set(["unexpected_settle_error", "unexpected_verify_error"]);

/** A 503 for want of a rate: a price feed's next reading, or a rail's return, is a matter of seconds. */
const rateUnavailableRetryAfterSeconds = 5;

export function createPaywall(deps: PaywallDeps): PaywallCheck {
  const nowMs = deps.nowMs ?? Date.now;
  const origins = deps.corsOrigins ?? "*";
  const refreshMs = deps.paywallsRefreshMs ?? paywallsRefreshMsDefault;
  const logger = deps.logger ?? silentLogger;
  const locks = deps.priceLocks ?? createPriceLocks({ sql: deps.sql, rates: deps.rates, nowMs });
  let held: { paywalls: Paywall[]; readAtMs: number } | null = null;
  let reading: Promise<Paywall[]> | null = null;

  async function paywalls(): Promise<Paywall[]> {
    if (held !== null && nowMs() - held.readAtMs < refreshMs) return held.paywalls;
    reading ??= tenantPaywalls(deps.sql, { tenantId: deps.tenantId })
      .then((found) => {
        held = { paywalls: found, readAtMs: nowMs() };
        return found;
      })
      .finally(() => {
        reading = null;
      });
    return reading;
  }

  // A paywall's groups are the same for as long as its object is (a read of the tenant's paywalls makes new ones).
  const grouped = new WeakMap<Paywall, readonly SchemeGroup[]>();
  function groups(paywall: Paywall): readonly SchemeGroup[] {
    let found = grouped.get(paywall);
    if (found === undefined) {
      found = groupsOf(paywall);
      grouped.set(paywall, found);
    }
    return found;
  }

  function groupsOf(paywall: Paywall): SchemeGroup[] {
    const found: SchemeGroup[] = [];
    for (const offer of paywall.offers) {
      const existing = found.find((group) => group.scheme.id === offer.scheme);
      if (existing !== undefined) {
        existing.rails.push(offer.rail);
        continue;
      }
      const scheme = deps.schemes.find((candidate) => candidate.id === offer.scheme);
      const asset = scheme?.assetFor(offer.rail) ?? null;
      if (scheme === undefined || asset === null) continue; // a scheme no longer configured: not offered
      const accountId = paywall.accounts[asset.code];
      if (accountId === undefined) continue;
      const resource: PricedResource = {
        tenantId: paywall.tenantId,
        paywallId: paywall.id,
        accountId,
        service: paywall.id,
        description: paywall.description,
        mimeType: paywall.mimeType,
        split: paywall.split.flatMap((share) => {
          const splitAccount = share.accounts[asset.code];
          return splitAccount === undefined
            ? []
            : [{ accountId: splitAccount, basisPoints: share.basisPoints }];
        }),
        credential: { lifetimeSeconds: paywall.tokenLifetimeSeconds, requestsMax: paywall.tokenRequestsMax },
      };
      found.push({ scheme, asset, resource, rails: [offer.rail] });
    }
    return found;
  }

  function offersAt(group: SchemeGroup, prices: ReadonlyMap<string, bigint>): Offer[] | null {
    const amount = prices.get(group.asset.code);
    if (amount === undefined) return null;
    return group.rails.map((rail) => ({ rail, price: { asset: group.asset, amount } }));
  }

  async function challenge(
    request: PaywallRequest,
    paywall: Paywall,
    found: readonly SchemeGroup[],
    refusal: PaymentRefusal,
  ): Promise<PaywallVerdict> {
    const prices = await locks.current(
      paywall,
      found.map((group) => group.asset),
    );
    /** Each scheme's part: offered, or left out for want of a price, or because its rail made no offer now. */
    const parts = await Promise.all(
      found.map(async (group): Promise<ChallengePart | "unpriced" | "unavailable"> => {
        const offers = offersAt(group, prices);
        if (offers === null) return "unpriced";
        // A scheme that cannot make its offer now (its rail down) is left out of the 402; the others stand.
        return group.scheme.challenge(group.resource, offers, request).catch((error: unknown) => {
          logger.warn({ err: error, paywall: paywall.id, scheme: group.scheme.id }, "paywall: no challenge");
          return "unavailable" as const;
        });
      }),
    );
    const headers: HeaderLine[] = [["Cache-Control", "no-store"], ...corsHeaders(request, origins)];
    let body: Record<string, unknown> = {};
    let offered = 0;
    for (const part of parts) {
      if (typeof part === "string") continue;
      // A part that offers nothing still says why in the body.
      body = { ...body, ...part.body };
      if (part.unavailable === true) continue;
      offered += 1;
      headers.push(
        ...(refusal.code === paymentRequiredCode ? part.headers : withRefusalCode(part.headers, refusal)),
      );
    }
    if (offered === 0 && found.length > 0) {
      // Before, a part that made no offer (LND out of reach, an amount outside the rail's range) counted as one: a 402
      // with nothing to pay.
      const unpriced = parts.every((part) => part === "unpriced");
      return {
        kind: "challenge",
        status: 503,
        headers: [...headers, ["Retry-After", String(rateUnavailableRetryAfterSeconds)]],
        body: {
          ...body,
          // A payment the request carried was refused too: said beside, as a 402 would have.
          ...(refusal.code === paymentRequiredCode
            ? {}
            : { refusal: { code: refusal.code, message: refusal.message } }),
          ...(unpriced
            ? { error: "paywall_rate_unavailable", message: "no way to pay can be priced now; retry later" }
            : {
                error: "paywall_rail_unavailable",
                message:
                  "no way to pay can be offered now: its rail made no offer (out of reach, or refused); retry later",
              }),
        },
      };
    }
    return {
      kind: "challenge",
      status: 402,
      headers,
      body: { ...body, error: refusal.code, message: refusal.message, paywall: paywall.id },
    };
  }

  /** The scheme's verdict at the prices of this window, else of the window before (a challenge made just before). */
  async function verifyLocked(request: PaywallRequest, paywall: Paywall, group: SchemeGroup) {
    const prices = await locks.current(paywall, [group.asset]);
    const offers = offersAt(group, prices);
    // No rate to price it now: a token paid for before is still good (verifyPrepaid); a payment still to be made is
    // refused below, unless the previous window's price was locked.
    if (offers === null && group.scheme.verifyPrepaid !== undefined)
      return group.scheme.verifyPrepaid(group.resource, group.rails, request);
    const first =
      offers === null
        ? ({
            kind: "refused",
            refusal: { code: "paywall_rate_unavailable", message: "no rate now" },
          } as const)
        : await group.scheme.verify(group.resource, offers, request);
    if (first.kind === "paid") return first;
    const before = await locks.previous(paywall);
    const earlier = before === null ? null : offersAt(group, before);
    if (earlier === null || earlier[0]?.price.amount === offers?.[0]?.price.amount) return first;
    const second = await group.scheme.verify(group.resource, earlier, request);
    if (second.kind === "paid") return second;
    // Neither paid: a refusal that asks for the same payment again (x402's unexpected_settle_error or
    // unexpected_verify_error: it may have been mined, or the chain could not be read) is said over a final one from
    // the other window. A final refusal tells the client to sign a new payment, and a payer whose first one is mined
    // then pays twice; the same payment sent again costs one more request.
    return sendAgainCodes.has(second.refusal.code) && !sendAgainCodes.has(first.refusal.code)
      ? second
      : first;
  }

  function paid(
    request: PaywallRequest,
    paywall: Paywall,
    found: readonly SchemeGroup[],
    group: SchemeGroup,
    verdict: Extract<Awaited<ReturnType<PaymentScheme["verify"]>>, { kind: "paid" }>,
  ): PaywallVerdict {
    let result: Promise<PaywallCompletion> | null = null;
    const complete = async (outcome: { served: boolean }): Promise<PaywallCompletion> => {
      const done = await verdict.complete(outcome);
      if (done.settled)
        return {
          kind: "settled",
          headers: [...done.headers, ...corsHeaders(request, origins)],
          ...(done.undelivered === undefined ? {} : { undelivered: done.undelivered }),
        };
      logger.warn(
        { paywall: paywall.id, scheme: group.scheme.id, refusal: done.refusal.code },
        "paywall: not settled",
      );
      // The 402 of any refusal: every way to pay offered afresh (x402 v2 and v1, L402), the refusal's code in
      // PAYMENT-REQUIRED's `error` and the body's, and the scheme's own lines (a failed PAYMENT-RESPONSE).
      const again = await challenge(request, paywall, found, done.refusal);
      const offered = again.kind === "challenge" ? again : null;
      return {
        kind: "refused",
        status: 402,
        headers: [...(offered?.headers ?? corsHeaders(request, origins)), ...done.headers],
        body: {
          ...offered?.body,
          error: done.refusal.code,
          message: done.refusal.message,
          paywall: paywall.id,
        },
      };
    };
    return {
      kind: "paid",
      paywallId: paywall.id,
      scheme: group.scheme.id,
      payer: verdict.payer,
      complete(outcome) {
        result ??= complete(outcome);
        return result;
      },
    };
  }

  return async (request) => {
    const paywall = paywallOfUrl(await paywalls(), request.url);
    if (paywall === null) return { kind: "free" };
    if (paywall === "ambiguous")
      return {
        kind: "challenge",
        status: 400,
        headers: [["Cache-Control", "no-store"], ...corsHeaders(request, origins)],
        body: {
          error: "path_not_normalized",
          message: "the path's . or .. segments make what it reaches unclear: send it with them resolved",
        },
      };
    if (isPreflight(request))
      return { kind: "preflight", status: 204, headers: preflightHeaders(request, origins) };
    const found = groups(paywall);
    const carried = deps.schemes.filter((scheme) => scheme.carries(request));
    if (carried.length === 0)
      return challenge(request, paywall, found, {
        code: paymentRequiredCode,
        message: "this resource is paid: pay by one of the ways offered",
      });
    if (carried.length > 1)
      return challenge(request, paywall, found, {
        code: "payment_ambiguous",
        message: `the request carries credentials of ${carried.map((scheme) => scheme.id).join(" and ")}: send one`,
      });
    const group = found.find((candidate) => candidate.scheme.id === carried[0]!.id);
    if (group === undefined)
      return challenge(request, paywall, found, {
        code: "payment_scheme_not_offered",
        message: `this resource is not paid by ${carried[0]!.id}`,
      });
    const verdict = await verifyLocked(request, paywall, group);
    if (verdict.kind === "refused") return challenge(request, paywall, found, verdict.refusal);
    return paid(request, paywall, found, group, verdict);
  };
}
