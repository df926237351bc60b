// L402 on the wire. The challenge is Aperture's (lightninglabs/aperture:auth/authenticator.go
// FreshChallengeHeader): two WWW-Authenticate lines, `LSAT macaroon="<b64>", invoice="<bolt11>"` first (old
// Loop clients, lsat-js) and `L402 …` second, key order macaroon then invoice — the Go clients' regexes need
// exactly that. (Cache-Control: no-store is the paywall's, on every 402 it answers: gateway/paywall/core.ts.)
// The credential is `Authorization: L402|LSAT <b64>[,<b64>…]:<hex>`, the scheme in any case. Node keeps only the first Authorization header in `headers`, and Aperture-family
// clients send `LSAT …` then `L402 …`, so the raw header list is read when there is one; a proxy that joined
// the two lines with ", " is read too.
import type { HeaderLine, PaywallRequest } from "../paywall/scheme.ts";

/** Aperture's challenge lines for a minted macaroon (V2 binary) and its BOLT11 invoice. */
export function challengeLines(params: { macaroon: Uint8Array; invoice: string }): HeaderLine[] {
  const macaroon = Buffer.from(params.macaroon).toString("base64");
  const value = `macaroon="${macaroon}", invoice="${params.invoice}"`;
  return [
    ["WWW-Authenticate", `LSAT ${value}`],
    ["WWW-Authenticate", `L402 ${value}`],
  ];
}

export const credentialLimits = {
  /** The longest Authorization value read; a longer one is refused unread. */
  authorizationLengthMax: 16_384,
  /** The most macaroons one credential may carry before its colon. */
  macaroonsPerCredentialMax: 4,
  /** The most Authorization values looked at. */
  authorizationValuesMax: 4,
};

/** One `L402|LSAT <macaroons>:<preimage>` credential. */
export type L402Credential = {
  readonly scheme: "L402" | "LSAT";
  /** Each macaroon's V2 binary bytes, in the order given. */
  readonly macaroons: readonly Uint8Array[];
  /** 64 lower-case hex characters. */
  readonly preimage: string;
};

export type CredentialParse =
  | { kind: "none" }
  | { kind: "malformed"; message: string }
  | { kind: "credentials"; credentials: readonly L402Credential[] };

/** Every Authorization value of the request: from the raw list when the framework kept it, else `headers`. */
export function authorizationValues(request: PaywallRequest): string[] {
  const values: string[] = [];
  if (request.rawHeaders !== undefined) {
    for (let i = 0; i + 1 < request.rawHeaders.length; i += 2)
      if (request.rawHeaders[i]?.toLowerCase() === "authorization")
        values.push(request.rawHeaders[i + 1] ?? "");
    return values;
  }
  const header = request.headers.authorization;
  if (typeof header === "string") values.push(header);
  else if (header !== undefined) values.push(...header);
  return values;
}

/** Where an L402 or LSAT credential starts: at the value's start or after a comma (a joined line), any case. */
const schemeStart = /(?:^|,)\s*(l402|lsat)(?=\s)/gi;
const credentialPattern =
  /^(l402|lsat)\s+([A-Za-z0-9+/_-]+={0,2}(?:\s*,\s*[A-Za-z0-9+/_-]+={0,2})*)\s*:\s*([0-9a-fA-F]{64})\s*$/i;

/** schemeStart without the global flag: `test` keeps no state between calls. */
const carriesPattern = new RegExp(schemeStart.source, "i");

export function carriesL402(request: PaywallRequest): boolean {
  return authorizationValues(request).some((value) => carriesPattern.test(value));
}

/** Splits a value at each scheme start: "LSAT a:p, L402 a:p" is two credentials. */
function credentialTexts(value: string): string[] {
  const starts = [...value.matchAll(schemeStart)].map(
    (match) => match.index + match[0].indexOf(match[1] ?? ""),
  );
  return starts.map((start, i) =>
    value
      .slice(start, starts[i + 1] ?? value.length)
      .trim()
      .replace(/,$/, "")
      .trim(),
  );
}

/**
 * The L402/LSAT credentials a request carries, in the order sent. Any credential that does not read (a bad
 * base64, a preimage that is not 32 bytes hex, too many macaroons) makes the whole answer `malformed`: a client
 * that sends two credentials sends the same token twice.
 */
export function parseCredentials(request: PaywallRequest): CredentialParse {
  const values = authorizationValues(request).slice(0, credentialLimits.authorizationValuesMax);
  const credentials: L402Credential[] = [];
  for (const value of values) {
    if (value.length > credentialLimits.authorizationLengthMax)
      return {
        kind: "malformed",
        message: `Authorization over ${credentialLimits.authorizationLengthMax} characters`,
      };
    for (const text of credentialTexts(value)) {
      const match = credentialPattern.exec(text);
      if (match === null)
        return { kind: "malformed", message: "Authorization is not L402 <base64 macaroon>:<hex preimage>" };
      const [, scheme = "", macaroonList = "", preimage = ""] = match;
      const encoded = macaroonList.split(",").map((part) => part.trim());
      if (encoded.length > credentialLimits.macaroonsPerCredentialMax)
        return {
          kind: "malformed",
          message: `more than ${credentialLimits.macaroonsPerCredentialMax} macaroons in one credential`,
        };
      credentials.push({
        scheme: scheme.toUpperCase() === "LSAT" ? "LSAT" : "L402",
        macaroons: encoded.map((part) => new Uint8Array(Buffer.from(part, "base64"))),
        preimage: preimage.toLowerCase(),
      });
    }
  }
  return credentials.length === 0 ? { kind: "none" } : { kind: "credentials", credentials };
}
