// A Lightning Address (LUD-16) paid through its LNURL-pay server (LUD-06): name@domain is asked at
// https://domain/.well-known/lnurlp/name for its pay request, whose callback answers an invoice for an amount. The
// invoice must ask exactly that amount and commit to the pay request's metadata (its description hash); anything
// else is refused before LND sees it. Every request is bounded in time and size and never follows a redirect;
// plain http only for hosts the operator names (a local LNURL server in tests). Requests go through the `fetch`
// the composition root gives (the gateway's egress guard: public addresses only, vetted on every connection), so
// an address whose domain or callback resolves to a private, loopback or metadata address is refused.
import { createHash } from "node:crypto";
import { parseBolt11 } from "../../core/bolt11.ts";
import { bareBolt11 } from "../../core/destinations.ts";
import type { RailFailureCode } from "../../core/index.ts";

/** The response an LNURL request reads: a status, headers and a body read a chunk at a time. */
export type LnurlResponse = {
  readonly ok: boolean;
  readonly status: number;
  readonly headers: { get(name: string): string | null };
  readonly body: ReadableStream<Uint8Array> | null;
};

/** A GET that never follows redirects; throws when nothing answered (or the egress guard refused the host). */
export type LnurlFetch = (
  url: URL,
  init: { readonly signal: AbortSignal; readonly headers: Record<string, string> },
) => Promise<LnurlResponse>;

export type LnurlParams = {
  /** Every request goes through it: the gateway's egress guard. */
  readonly fetch: LnurlFetch;
  /** Hosts (without port) that may be asked over plain http; every other host is asked over https. */
  readonly httpHosts: readonly string[];
  readonly timeoutMs: number;
  readonly bodyBytesMax: number;
};

export const lnurlDefaults: Omit<LnurlParams, "fetch"> = {
  httpHosts: [],
  timeoutMs: 5_000,
  bodyBytesMax: 64 * 1024,
};

export type LnurlInvoice =
  | { ok: true; invoice: string }
  | { ok: false; code: RailFailureCode; message: string; retryElsewhere: boolean };

const addressPattern = /^([a-z0-9._+-]{1,64})@([a-z0-9.-]{1,253})(?::([0-9]{1,5}))?$/;

const refused = (code: RailFailureCode, message: string, retryElsewhere: boolean): LnurlInvoice => ({
  ok: false,
  code,
  message,
  retryElsewhere,
});

/** GETs JSON from `url` within the bounds; a value or why not. */
async function getJson(
  url: URL,
  params: LnurlParams,
): Promise<{ ok: true; json: unknown } | { ok: false; why: string }> {
  let response: LnurlResponse;
  try {
    response = await params.fetch(url, {
      signal: AbortSignal.timeout(params.timeoutMs),
      headers: { accept: "application/json" },
    });
  } catch (error) {
    return {
      ok: false,
      why: `${url.host} did not answer: ${error instanceof Error ? error.message : String(error)}`,
    };
  }
  const declared = Number(response.headers.get("content-length") ?? "0");
  if (declared > params.bodyBytesMax)
    return { ok: false, why: `${url.host} answered more than ${params.bodyBytesMax} bytes` };
  let text: string;
  try {
    // Read a chunk at a time and stop at the bound: a server that streams forever costs no more than it.
    const chunks: Uint8Array[] = [];
    let size = 0;
    const reader = response.body?.getReader();
    for (;;) {
      const next = await reader?.read();
      if (next === undefined || next.done) break;
      size += next.value.byteLength;
      if (size > params.bodyBytesMax) {
        await reader?.cancel();
        return { ok: false, why: `${url.host} answered more than ${params.bodyBytesMax} bytes` };
      }
      chunks.push(next.value);
    }
    text = Buffer.concat(chunks).toString("utf8");
  } catch (error) {
    return {
      ok: false,
      why: `${url.host} broke off: ${error instanceof Error ? error.message : String(error)}`,
    };
  }
  if (!response.ok) return { ok: false, why: `${url.host} answered HTTP ${response.status}` };
  try {
    return { ok: true, json: JSON.parse(text) };
  } catch {
    return { ok: false, why: `${url.host} answered something that is not JSON` };
  }
}

/**
 * The scheme for a host: http only when the operator named it. null when the host and port make no URL (a port past
 * 65535, a last label of digits that is no IPv4 address): the API refuses such an address, but one stored before it
 * did threw here, out of execute, and left its payment processing with the funds held.
 */
function urlFor(params: LnurlParams, host: string, port: string | undefined, path: string): URL | null {
  const scheme = params.httpHosts.includes(host) ? "http" : "https";
  return URL.parse(`${scheme}://${host}${port === undefined ? "" : `:${port}`}${path}`);
}

/** An invoice of exactly `amountMsat` for the Lightning Address, from its LNURL-pay server; or why not. */
export async function invoiceForAddress(
  address: string,
  amountMsat: bigint,
  params: LnurlParams,
): Promise<LnurlInvoice> {
  const match = addressPattern.exec(address.toLowerCase());
  if (match === null) return refused("unreachable_destination", `not a Lightning Address: ${address}`, true);
  const [, name = "", host = "", port] = match;
  const url = urlFor(params, host, port, `/.well-known/lnurlp/${name}`);
  if (url === null) return refused("unreachable_destination", `not a Lightning Address: ${address}`, true);
  const first = await getJson(url, params);
  if (!first.ok) return refused("unreachable_destination", first.why, true);
  const pay = first.json as Record<string, unknown>;
  if (pay === null || typeof pay !== "object" || pay.tag !== "payRequest")
    return refused("unreachable_destination", `${address} has no LNURL pay request`, true);
  const { callback, minSendable, maxSendable, metadata } = pay;
  if (
    typeof callback !== "string" ||
    typeof metadata !== "string" ||
    !Number.isSafeInteger(minSendable) ||
    !Number.isSafeInteger(maxSendable)
  )
    return refused("unreachable_destination", `${address}'s pay request is malformed`, true);
  if (amountMsat < BigInt(minSendable as number) || amountMsat > BigInt(maxSendable as number))
    return refused(
      "rejected",
      `${address} takes ${minSendable as number}..${maxSendable as number} msat, not ${amountMsat}`,
      true,
    );
  let callbackUrl: URL;
  try {
    callbackUrl = new URL(callback);
  } catch {
    return refused("unreachable_destination", `${address}'s callback is not a URL`, true);
  }
  // The callback is held to the same scheme rule as the address's own host.
  const allowedScheme = params.httpHosts.includes(callbackUrl.hostname) ? ["http:", "https:"] : ["https:"];
  if (!allowedScheme.includes(callbackUrl.protocol))
    return refused("unreachable_destination", `${address}'s callback is not https`, true);
  callbackUrl.searchParams.set("amount", amountMsat.toString());
  const second = await getJson(callbackUrl, params);
  if (!second.ok) return refused("unreachable_destination", second.why, true);
  const answer = second.json as Record<string, unknown>;
  if (answer === null || typeof answer !== "object" || typeof answer.pr !== "string")
    return refused(
      "unreachable_destination",
      `${address} gave no invoice${typeof answer?.reason === "string" ? `: ${answer.reason.slice(0, 200)}` : ""}`,
      true,
    );
  // Paid (and stored) bare: LND refuses a `lightning:` prefix, which a wallet's server may put on `pr`. Mixed
  // case is no invoice (BIP-173): "" then, which parseBolt11 refuses.
  const invoice = bareBolt11(answer.pr) ?? "";
  const parsed = parseBolt11(invoice);
  if (!parsed.ok) return refused("rejected", `${address} gave a malformed invoice (${parsed.error})`, true);
  if (parsed.value.amountMsat !== amountMsat)
    return refused(
      "rejected",
      `${address} gave an invoice of ${parsed.value.amountMsat} msat, not ${amountMsat}`,
      true,
    );
  const expected = createHash("sha256").update(metadata, "utf8").digest("hex");
  if (parsed.value.descriptionHash !== expected)
    return refused("rejected", `${address} gave an invoice that does not commit to its pay request`, true);
  return { ok: true, invoice };
}
