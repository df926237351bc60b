// Vetting an outbound URL before anything is resolved or sent: parsed as WHATWG URL parses it (which rewrites
// every IPv4 spelling — 2130706433, 0x7f000001, 0177.0.0.1, 127.1 — to dotted decimal, lowercases the host and
// compresses IPv6), then refused when it carries credentials, is not http(s), is plain http where https is due,
// names a host that is or means a local or metadata service, or is an IP literal that is not public. A hostname
// passes here; what it resolves to is vetted when it is resolved (`resolve.ts`), at registration and on every
// connection.
import { classifyAddress } from "./address.ts";

export type EgressMode = "development" | "production";

export type EgressPolicy = {
  /** production: every URL must be https. development: plain http only to an allowed host. */
  readonly mode: EgressMode;
  /**
   * Hosts reached whatever their address (a test's local receiver, a development LNURL server): `host` (any port)
   * or `host:port`, lowercased; IPv6 in brackets. Nothing else may reach a non-public address.
   */
  readonly allowHosts: readonly string[];
};

/** Why a URL is refused; a closed set, stable for API error details. */
export type EgressRefusal =
  | "invalid_url"
  | "scheme_not_allowed"
  | "credentials_in_url"
  | "https_required"
  | "host_not_allowed"
  | "address_not_public"
  | "unresolvable";

export type UrlVerdict =
  | { readonly ok: true; readonly url: URL; readonly allowed: boolean }
  | { readonly ok: false; readonly reason: EgressRefusal; readonly message: string };

/** An outbound URL's longest length; a webhook URL past it is not one. */
export const egressUrlLengthMax = 2_048;

/** Hostnames (and their subdomains) that name this machine, its network or a cloud's metadata service. */
const localNames = ["localhost", "local", "internal", "home.arpa", "localdomain", "lan", "intranet"];
const metadataNames = [
  "metadata",
  "metadata.google.internal",
  "metadata.goog",
  "metadata.azure.internal",
  "instance-data",
  "instance-data.ec2.internal",
];

const refuse = (reason: EgressRefusal, message: string): UrlVerdict => ({ ok: false, reason, message });

/** `{ ok, url }` when `text` may be sent to (allowed: an allow-listed host, not vetted by address); else why not. */
export function vetUrl(text: string, policy: EgressPolicy): UrlVerdict {
  if (text.length > egressUrlLengthMax) return refuse("invalid_url", `longer than ${egressUrlLengthMax}`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return refuse("invalid_url", "not an absolute URL");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:")
    return refuse("scheme_not_allowed", `${url.protocol} is not http or https`);
  if (url.username !== "" || url.password !== "")
    return refuse("credentials_in_url", "a URL with a user name or password");
  const host = hostOf(url);
  const allowed = isAllowedHost(policy, host, url.port);
  if (url.protocol === "http:") {
    if (policy.mode === "production") return refuse("https_required", "https is required");
    if (!allowed) return refuse("https_required", `plain http only to an allowed host, not ${host}`);
  }
  if (allowed) return { ok: true, url, allowed };
  if (host === "") return refuse("host_not_allowed", "no host");
  const literal = host.startsWith("[") || /^[0-9.]+$/.test(host);
  if (literal) {
    const verdict = classifyAddress(host);
    if (!verdict.public)
      return refuse("address_not_public", `${host} is not a public address (${verdict.range})`);
    return { ok: true, url, allowed };
  }
  if (isLocalName(host)) return refuse("host_not_allowed", `${host} names a local or metadata service`);
  return { ok: true, url, allowed };
}

/** The URL's host without a trailing dot (`metadata.google.internal.` is `metadata.google.internal`). */
export function hostOf(url: URL): string {
  return url.hostname.replace(/\.+$/, "");
}

/** Whether the policy names `host` (already lowercase, as URL makes it), with any port or with `port`. */
export function isAllowedHost(policy: EgressPolicy, host: string, port: string): boolean {
  return policy.allowHosts.some((entry) => entry === host || (port !== "" && entry === `${host}:${port}`));
}

function isLocalName(host: string): boolean {
  // A single label (no dot) is resolved through the machine's search domains: an intranet name, never public.
  if (!host.includes(".")) return true;
  if (metadataNames.includes(host)) return true;
  return localNames.some((name) => host === name || host.endsWith(`.${name}`));
}
