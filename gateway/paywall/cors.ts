// CORS for paid resources: a browser must be allowed to send the payment headers (and the request header
// `Access-Control-Expose-Headers`, which both official x402 fetch clients send, so the paid retry is preflighted)
// and to read the challenge and receipt headers (reference §4 items 11 and 19).
import type { HeaderLine, PaywallRequest } from "./scheme.ts";

export const paywallExposedHeaders = [
  "PAYMENT-REQUIRED",
  "PAYMENT-RESPONSE",
  "X-PAYMENT-RESPONSE",
  "WWW-Authenticate",
  "Payment-Receipt",
] as const;

export const paywallAllowedHeaders = [
  "PAYMENT-SIGNATURE",
  "X-PAYMENT",
  "Authorization",
  "Access-Control-Expose-Headers",
  "Content-Type",
] as const;

/** How long a browser may reuse a preflight's answer. */
export const preflightMaxAgeSeconds = 600;

/** `*`, or the origins allowed (an Origin not listed gets no Allow-Origin, and the browser keeps the answer). */
export type PaywallCorsOrigins = "*" | readonly string[];

function firstHeader(request: PaywallRequest, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : (value as string | undefined);
}

function allowOrigin(request: PaywallRequest, origins: PaywallCorsOrigins): HeaderLine[] {
  if (origins === "*") return [["Access-Control-Allow-Origin", "*"]];
  const origin = firstHeader(request, "origin");
  if (origin === undefined || !origins.includes(origin)) return [["Vary", "Origin"]];
  return [
    ["Access-Control-Allow-Origin", origin],
    ["Vary", "Origin"],
  ];
}

/** On every answer the paywall shapes (a challenge, a paid answer's receipt). */
export function corsHeaders(request: PaywallRequest, origins: PaywallCorsOrigins): HeaderLine[] {
  return [
    ...allowOrigin(request, origins),
    ["Access-Control-Expose-Headers", paywallExposedHeaders.join(", ")],
  ];
}

/** Whether the request is a CORS preflight (OPTIONS with Access-Control-Request-Method). */
export function isPreflight(request: PaywallRequest): boolean {
  return (
    request.method.toUpperCase() === "OPTIONS" &&
    firstHeader(request, "access-control-request-method") !== undefined
  );
}

/** The answer to a preflight for a paid resource: the payment headers allowed, with whatever else was asked. */
export function preflightHeaders(request: PaywallRequest, origins: PaywallCorsOrigins): HeaderLine[] {
  const asked = (firstHeader(request, "access-control-request-headers") ?? "")
    .split(",")
    .map((name) => name.trim())
    .filter((name) => /^[A-Za-z0-9-]{1,64}$/.test(name))
    .slice(0, 32);
  const known = new Set(paywallAllowedHeaders.map((name) => name.toLowerCase()));
  const allowed = [...paywallAllowedHeaders, ...asked.filter((name) => !known.has(name.toLowerCase()))];
  return [
    ...allowOrigin(request, origins),
    ["Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"],
    ["Access-Control-Allow-Headers", allowed.join(", ")],
    ["Access-Control-Expose-Headers", paywallExposedHeaders.join(", ")],
    ["Access-Control-Max-Age", String(preflightMaxAgeSeconds)],
  ];
}
