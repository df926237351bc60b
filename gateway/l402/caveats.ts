// The caveats an L402 token is minted with, and how presented caveats are judged. Conditions are UTF-8
// `key=value` strings (lightninglabs/L402:macaroon-spec.md):
// - `services=<service>:0`           the service the token was bought for, tier 0 (Aperture's layout);
// - `<service>_valid_until=<unix s>` serves while now < that second (Aperture's timeout caveat);
// - `<service>_path=<path>`          the request's path, compared exactly: minted as the path the 402 answered,
//                                    as the paywall reads it (pathOf); a `*` in it is a literal character, never a
//                                    prefix, so a token bought for the literal path `/a/*` serves only `/a/*`;
// - `<service>_requests=<n>`         the most requests the token serves (1…tokenRequestsMaxLimit); minted as what
//                                    was bought, counted in the database (tokens.ts), never in the macaroon.
// A holder may append caveats (the HMAC chain lets anyone add, no one remove) and every occurrence of a known
// caveat must hold, so an appended one can only tighten: a later valid_until, another path or a larger count
// never widens what the first one allowed. Conditions this gateway does not know (`preimage=…` appended by
// Aperture-family clients, another service's caveats) are skipped, as the spec says.

/** A service's name as caveat keys carry it: lower case, only [a-z0-9_-] (anything else becomes `-`). */
export function caveatServiceName(service: string): string {
  const name = service
    .toLowerCase()
    .replace(/[^a-z0-9_-]/g, "-")
    .slice(0, serviceNameLengthMax);
  return name.length === 0 ? "service" : name;
}

const serviceNameLengthMax = 64;

export type MintedCaveats = {
  service: string;
  validUntilSeconds: number;
  path: string;
  /** Null: no count caveat (any number of requests until it expires). */
  requestsMax: number | null;
};

/**
 * A path as a condition's value: whitespace at its end percent-encoded, since a condition's value is read trimmed
 * (readCondition), and so every `%` before it, so that two paths never give one value. Minted as it was, the path
 * `/files/report ` (a request for `/files/report%20`) read back as `/files/report`, and its paid token never opened
 * it; with only the whitespace encoded, `/files/report ` and `/files/report%20` (a request for
 * `/files/report%2520`) gave the same value, and a token for one opened the other.
 */
function conditionPath(path: string): string {
  return path
    .replaceAll("%", "%25")
    .replace(/\s+$/u, (end) => [...end].map((c) => encodeURIComponent(c)).join(""));
}

export function mintCaveats(params: MintedCaveats): string[] {
  const name = caveatServiceName(params.service);
  return [
    `services=${name}:0`,
    `${name}_valid_until=${params.validUntilSeconds}`,
    `${name}_path=${conditionPath(params.path)}`,
    ...(params.requestsMax === null ? [] : [`${name}_requests=${params.requestsMax}`]),
  ];
}

export type CaveatRefusalCode =
  | "l402_caveat_invalid"
  | "l402_service_mismatch"
  | "l402_expired"
  | "l402_path_mismatch";

/** When several caveats fail, the first of these is said. */
const refusalPrecedence: readonly CaveatRefusalCode[] = [
  "l402_caveat_invalid",
  "l402_service_mismatch",
  "l402_expired",
  "l402_path_mismatch",
];

export type CaveatJudgement =
  | {
      ok: true /** The smallest of the token's bound and the caveats' counts, null when none says. */;
      requestsMax: number | null;
    }
  | { ok: false; code: CaveatRefusalCode; message: string };

const unsignedInteger = /^[0-9]{1,15}$/;
const tierPattern = /^[0-9]{1,3}$/;

/** The most requests a counted token may open, minted or presented (the column is an integer). */
export const tokenRequestsMaxLimit = 1_000_000_000;

/** A condition's key and value (`key=value`, each trimmed); null when it has no key. */
export function readCondition(condition: string): { key: string; value: string } | null {
  const separator = condition.indexOf("=");
  if (separator <= 0) return null;
  return { key: condition.slice(0, separator).trim(), value: condition.slice(separator + 1).trim() };
}

/**
 * Judges presented conditions for a request to `service` at `path` at `nowMs`. `requestsMax` is the token's own
 * stored bound (null: uncounted): a presented count can only lower it.
 */
export function judgeCaveats(
  conditions: readonly string[],
  request: { service: string; path: string; nowMs: number; requestsMax?: number | null },
): CaveatJudgement {
  const name = caveatServiceName(request.service);
  const failures = new Map<CaveatRefusalCode, string>();
  const fail = (code: CaveatRefusalCode, message: string) => {
    if (!failures.has(code)) failures.set(code, message);
  };
  let requestsMax: number | null = request.requestsMax ?? null;
  let servicesSeen = false;
  for (const condition of conditions) {
    const read = readCondition(condition);
    if (read === null) continue;
    const { key, value } = read;
    if (key === "services") {
      servicesSeen = true;
      const entries = value.split(",").map((entry) => entry.trim().split(":"));
      if (
        entries.some(
          ([service, tier, ...rest]) => !service || !tierPattern.test(tier ?? "") || rest.length > 0,
        )
      )
        fail("l402_caveat_invalid", `services caveat "${value}" is not name:tier[,…]`);
      else if (!entries.some(([service]) => service === name))
        fail("l402_service_mismatch", `the token is for ${value}, not ${name}`);
    } else if (key === `${name}_valid_until`) {
      if (!unsignedInteger.test(value)) fail("l402_caveat_invalid", `${key} "${value}" is not unix seconds`);
      else if (request.nowMs >= Number(value) * 1000) fail("l402_expired", `the token expired at ${value}`);
    } else if (key === `${name}_path`) {
      if (!value.startsWith("/")) fail("l402_caveat_invalid", `${key} "${value}" is not a path`);
      else if (value !== conditionPath(request.path))
        fail("l402_path_mismatch", `the token is for ${value}, not ${request.path}`);
    } else if (key === `${name}_requests`) {
      if (!unsignedInteger.test(value) || Number(value) === 0)
        fail("l402_caveat_invalid", `${key} "${value}" is not a positive count`);
      else if (Number(value) > tokenRequestsMaxLimit)
        fail("l402_caveat_invalid", `${key} "${value}" is above ${tokenRequestsMaxLimit} requests`);
      else requestsMax = Math.min(requestsMax ?? Number.MAX_SAFE_INTEGER, Number(value));
    }
  }
  // A token minted here always names its service; one without is not for this one.
  if (!servicesSeen) fail("l402_service_mismatch", "the token names no service");
  for (const code of refusalPrecedence) {
    const message = failures.get(code);
    if (message !== undefined) return { ok: false, code, message };
  }
  return { ok: true, requestsMax };
}
