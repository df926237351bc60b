// Rates from an HTTP endpoint you run or trust. One GET, answered 200 with JSON of this shape:
//
//   { "rates": { "BTC": "100000.00", "ETH": "3000", "USDC": "0.9998" } }
//
// each value the USD price of one whole unit as a plain decimal string (no sign, exponent or spaces; a JSON
// number is refused — it would have been a float). Assets not configured are ignored. The request has a
// timeout covering the body, and the body a size bound; a redirect is refused. The rates are observed at the
// time of the fetch.

import { assetByCode } from "../../core/index.ts";
import { parsePriceDecimal, usdRateFromPrice } from "./decimal.ts";
import { RateConfigError } from "./errors.ts";
import type { PolledRateSource, RateFetchFailure, RateFetchResult, RateObservation } from "./types.ts";

export type HttpRateSourceParams = {
  /** http: or https: URL answering the documented JSON. */
  readonly url: string;
  /** The assets to read from the answer (core's codes). */
  readonly assetCodes: readonly string[];
  /** Headers sent with the GET (e.g. an API key); never logged. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Bound on the whole exchange, body included; default 5,000 ms. */
  readonly requestTimeoutMs?: number;
  /** Bound on the body; default 64 KiB. */
  readonly responseBytesMax?: number;
  /** Wall clock, ms since the epoch; default Date.now. */
  readonly nowMs?: () => number;
  /** For logs and status; default "http". */
  readonly name?: string;
};

export const httpRequestTimeoutMsDefault = 5_000;
export const httpResponseBytesMaxDefault = 64 * 1024;

class ResponseTooLarge extends Error {
  override name = "ResponseTooLarge";
}

/** A rate source over an HTTP endpoint. Throws RateConfigError for a bad URL, an unknown asset or a bad bound. */
export function httpRateSource(params: HttpRateSourceParams): PolledRateSource {
  const url = validUrl(params.url);
  const assetCodes = [...new Set(params.assetCodes)];
  for (const code of assetCodes)
    if (assetByCode(code) === null)
      throw new RateConfigError(`http rates: unknown asset ${JSON.stringify(code)}`);
  const requestTimeoutMs = positiveInteger(
    "requestTimeoutMs",
    params.requestTimeoutMs ?? httpRequestTimeoutMsDefault,
  );
  const responseBytesMax = positiveInteger(
    "responseBytesMax",
    params.responseBytesMax ?? httpResponseBytesMaxDefault,
  );
  const nowMs = params.nowMs ?? Date.now;
  const everyAsset = (reason: RateFetchFailure["reason"], details: string): RateFetchResult => ({
    observations: [],
    failures: assetCodes.map((assetCode) => ({ assetCode, reason, details })),
  });

  async function fetchBody(signal: AbortSignal): Promise<{ status: number; body: string }> {
    const response = await fetch(url, { headers: params.headers, signal, redirect: "error" });
    if (response.status !== 200) {
      await response.body?.cancel();
      return { status: response.status, body: "" };
    }
    const declared = Number(response.headers.get("content-length") ?? "0");
    if (declared > responseBytesMax) {
      await response.body?.cancel();
      throw new ResponseTooLarge(`content-length ${declared}`);
    }
    const chunks: Uint8Array[] = [];
    let total = 0;
    const reader = response.body?.getReader();
    while (reader !== undefined) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > responseBytesMax) {
        await reader.cancel();
        throw new ResponseTooLarge(`more than ${responseBytesMax} bytes`);
      }
      chunks.push(value);
    }
    return { status: 200, body: Buffer.concat(chunks).toString("utf8") };
  }

  return {
    name: params.name ?? "http",
    assetCodes,
    async fetchRates() {
      const signal = AbortSignal.timeout(requestTimeoutMs);
      let answer: { status: number; body: string };
      try {
        answer = await fetchBody(signal);
      } catch (error) {
        if (error instanceof ResponseTooLarge)
          return everyAsset("too_large", `${url.origin}: ${error.message}, bound ${responseBytesMax}`);
        if (signal.aborted)
          return everyAsset("timeout", `${url.origin}: no complete answer within ${requestTimeoutMs} ms`);
        const message = error instanceof Error ? error.message : String(error);
        return everyAsset("unreachable", `${url.origin}: ${message}`);
      }
      if (answer.status !== 200) return everyAsset("http_status", `${url.origin}: status ${answer.status}`);
      return parseRatesBody(answer.body, assetCodes, nowMs());
    },
  };
}

/** The documented JSON → an observation per configured asset it prices, a failure per one it does not. */
export function parseRatesBody(
  body: string,
  assetCodes: readonly string[],
  observedAtMs: number,
): RateFetchResult {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch (error) {
    const details = `not JSON: ${error instanceof Error ? error.message : String(error)}`;
    return {
      observations: [],
      failures: assetCodes.map((assetCode) => ({ assetCode, reason: "malformed", details })),
    };
  }
  const rates = isRecord(parsed) ? parsed.rates : undefined;
  if (!isRecord(rates)) {
    const details = 'not {"rates": {…}}';
    return {
      observations: [],
      failures: assetCodes.map((assetCode) => ({ assetCode, reason: "malformed", details })),
    };
  }
  const observations: RateObservation[] = [];
  const failures: RateFetchFailure[] = [];
  for (const assetCode of assetCodes) {
    const value = Object.hasOwn(rates, assetCode) ? rates[assetCode] : undefined;
    if (value === undefined) {
      failures.push({ assetCode, reason: "not_listed", details: `no rates.${assetCode}` });
      continue;
    }
    const price = typeof value === "string" ? parsePriceDecimal(value) : null;
    const rate = price === null ? null : usdRateFromPrice(price, assetByCode(assetCode)!.scale);
    if (rate === null) {
      const shown = JSON.stringify(value).slice(0, 40);
      failures.push({
        assetCode,
        reason: "malformed",
        details: `rates.${assetCode} is ${shown}, not a positive decimal string`,
      });
      continue;
    }
    observations.push({ assetCode, rate, observedAtMs });
  }
  return { observations, failures };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function validUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch (cause) {
    throw new RateConfigError("http rates: the URL is not a URL", { cause });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new RateConfigError(`http rates: the URL must be http: or https:, not ${url.protocol}`);
  return url;
}

function positiveInteger(what: string, value: number): number {
  if (!Number.isInteger(value) || value <= 0)
    throw new RateConfigError(`http rates: ${what} must be a positive integer, not ${value}`);
  return value;
}
