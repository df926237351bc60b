// L402 (and its older name LSAT) as Aperture, lnget and Alby speak it: the challenge read from
// `WWW-Authenticate: L402 macaroon="…", invoice="…"` (also `token=`, and the LSAT line Aperture sends first;
// fetch joins the two lines with ", "), the BOLT11 invoice's amount read from its human-readable part, the
// credential `Authorization: L402 <macaroon>:<preimage>`, and a cache of paid tokens per scope, each kept until
// the server refuses it or its macaroon's expiry caveat passes.
import { MalformedChallengeError } from "./errors.ts";

/** The longest WWW-Authenticate value read (characters). */
export const wwwAuthenticateCharsMax = 16_384;
/** The longest BOLT11 invoice accepted (characters). */
export const invoiceCharsMax = 4_096;

export type L402Challenge = {
  /** The scheme the retry names: `L402` when the server offered it, else `LSAT`. */
  readonly scheme: "L402" | "LSAT";
  readonly macaroon: string;
  readonly invoice: string;
  readonly network: LightningNetwork;
  readonly amountMsat: bigint;
};

export type LightningNetwork = "bitcoin" | "testnet" | "signet" | "regtest";

/** The budget's and the limits' name for Lightning on a network; amounts in millisatoshis. */
export function lightningAssetId(network: LightningNetwork): string {
  return `lightning:${network}/msat`;
}

type AuthChallenge = { scheme: string; params: Map<string, string> };

/** RFC 9110 challenges of a WWW-Authenticate value (several, comma-joined, as fetch gives them). */
export function parseAuthChallenges(value: string): AuthChallenge[] {
  const challenges: AuthChallenge[] = [];
  let rest = value;
  let current: AuthChallenge | null = null;
  for (let steps = 0; steps < wwwAuthenticateCharsMax && rest.length > 0; steps += 1) {
    rest = rest.replace(/^[\s,]+/, "");
    if (rest.length === 0) break;
    const param = /^([A-Za-z][\w-]*)\s*=\s*("((?:[^"\\]|\\.)*)"|[^\s,]*)/.exec(rest);
    if (param !== null && current !== null) {
      const raw = param[3] !== undefined ? param[3].replace(/\\(.)/g, "$1") : param[2]!;
      const name = param[1]!.toLowerCase();
      if (!current.params.has(name)) current.params.set(name, raw);
      rest = rest.slice(param[0].length);
      continue;
    }
    const scheme = /^([A-Za-z][\w!#$%&'*+.^`|~-]*)(?=\s|,|$)/.exec(rest);
    if (scheme === null) break;
    current = { scheme: scheme[1]!, params: new Map() };
    challenges.push(current);
    rest = rest.slice(scheme[0].length);
  }
  return challenges;
}

const hrpNetworks: readonly (readonly [string, LightningNetwork])[] = [
  ["bcrt", "regtest"],
  ["tbs", "signet"],
  ["bc", "bitcoin"],
  ["tb", "testnet"],
];
/** msat per unit of each BOLT11 multiplier (p is a tenth of a msat: its amount must end in 0). */
const msatPerUnit: Readonly<Record<string, bigint>> = { m: 100_000_000n, u: 100_000n, n: 100n };
const msatPerBitcoin = 100_000_000_000n;

/** A BOLT11 invoice's network and amount from its human-readable part; null when it has no amount or is not BOLT11. */
export function readBolt11(invoice: string): { network: LightningNetwork; amountMsat: bigint } | null {
  if (invoice.length > invoiceCharsMax) return null;
  const lower = invoice.toLowerCase();
  if (lower !== invoice && invoice.toUpperCase() !== invoice) return null;
  const separator = lower.lastIndexOf("1");
  if (!lower.startsWith("ln") || separator < 0) return null;
  const hrp = lower.slice(2, separator);
  for (const [prefix, network] of hrpNetworks) {
    if (!hrp.startsWith(prefix)) continue;
    const match = /^(\d{1,18})([munp]?)$/.exec(hrp.slice(prefix.length));
    if (match === null) return null;
    const digits = BigInt(match[1]!);
    const multiplier = match[2]!;
    let amountMsat: bigint;
    if (multiplier === "") amountMsat = digits * msatPerBitcoin;
    else if (multiplier === "p") {
      if (digits % 10n !== 0n) return null;
      amountMsat = digits / 10n;
    } else amountMsat = digits * msatPerUnit[multiplier]!;
    return amountMsat > 0n ? { network, amountMsat } : null;
  }
  return null;
}

/**
 * The L402 challenge of a 402's WWW-Authenticate value, or null when it offers neither L402 nor LSAT. An L402
 * challenge without macaroon (or token) and invoice, or with an invoice whose amount cannot be read, throws
 * MalformedChallengeError.
 */
export function parseL402Challenge(wwwAuthenticate: string | null): L402Challenge | null {
  if (wwwAuthenticate === null) return null;
  if (wwwAuthenticate.length > wwwAuthenticateCharsMax)
    throw new MalformedChallengeError("The WWW-Authenticate header is too long", {
      details: `${wwwAuthenticate.length} characters, at most ${wwwAuthenticateCharsMax}`,
    });
  const challenges = parseAuthChallenges(wwwAuthenticate).filter((c) => /^(l402|lsat)$/i.test(c.scheme));
  if (challenges.length === 0) return null;
  const chosen = challenges.find((c) => c.scheme.toUpperCase() === "L402") ?? challenges[0]!;
  const macaroon = chosen.params.get("macaroon") ?? chosen.params.get("token");
  const invoice = chosen.params.get("invoice");
  if (macaroon === undefined || macaroon.length === 0 || invoice === undefined || invoice.length === 0)
    throw new MalformedChallengeError("The L402 challenge has no macaroon or no invoice");
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(macaroon))
    throw new MalformedChallengeError("The L402 macaroon is not base64");
  const read = readBolt11(invoice);
  if (read === null)
    throw new MalformedChallengeError("The L402 invoice is not a BOLT11 invoice with an amount", {
      details: invoice.slice(0, 32),
    });
  return { scheme: chosen.scheme.toUpperCase() as "L402" | "LSAT", macaroon, invoice, ...read };
}

/** The Authorization value of a paid token. */
export function l402Authorization(token: { scheme: string; macaroon: string; preimage: string }): string {
  return `${token.scheme} ${token.macaroon}:${token.preimage}`;
}

// ---- the macaroon's expiry

/** The most caveats read from a macaroon. */
const caveatsMax = 64;

/**
 * When the macaroon stops being valid, in ms since the epoch, from its first-party caveats: Aperture's
 * `<service>_valid_until=<unix s>` and lsat-js's `expiration=<ms>` (the earliest wins); null when it names no
 * expiry or is not a V2 binary macaroon (a token is opaque to a client: not reading it is not an error).
 */
export function macaroonExpiryMs(macaroonBase64: string): number | null {
  const bytes = Buffer.from(macaroonBase64.replace(/-/g, "+").replace(/_/g, "/"), "base64");
  const caveats = readV2Caveats(bytes);
  if (caveats === null) return null;
  let earliest: number | null = null;
  for (const caveat of caveats) {
    const seconds = /^[\w-]+_valid_until=(\d{1,12})$/.exec(caveat);
    const ms = /^expiration=(\d{1,15})$/.exec(caveat);
    const at = seconds !== null ? Number(seconds[1]) * 1000 : ms !== null ? Number(ms[1]) : null;
    if (at !== null && (earliest === null || at < earliest)) earliest = at;
  }
  return earliest;
}

/** The caveat identifiers of a V2 binary macaroon (go-macaroon's format), or null when it is not one. */
function readV2Caveats(bytes: Uint8Array): string[] | null {
  let at = 0;
  const varint = (): number | null => {
    let value = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      const byte = bytes[at++];
      if (byte === undefined) return null;
      value |= (byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return value;
    }
    return null;
  };
  /** The fields of one section up to its end-of-section (type 0): type → data. */
  const section = (): Map<number, Uint8Array> | null => {
    const fields = new Map<number, Uint8Array>();
    for (let count = 0; count < 8; count += 1) {
      const type = varint();
      if (type === null) return null;
      if (type === 0) return fields;
      const length = varint();
      if (length === null || at + length > bytes.length) return null;
      fields.set(type, bytes.subarray(at, at + length));
      at += length;
    }
    return null;
  };
  if (bytes[at++] !== 2) return null;
  const header = section();
  if (header === null || !header.has(2)) return null;
  const caveats: string[] = [];
  for (let count = 0; count <= caveatsMax; count += 1) {
    if (bytes[at] === 0) return caveats;
    const fields = section();
    if (fields === null) return null;
    // A first-party caveat has an identifier (type 2) and no verification id (type 4).
    const identifier = fields.get(2);
    if (identifier !== undefined && !fields.has(4)) caveats.push(Buffer.from(identifier).toString("utf8"));
  }
  return null;
}

// ---- the token cache

export type L402Token = {
  readonly scheme: "L402" | "LSAT";
  readonly macaroon: string;
  readonly preimage: string;
  /** ms since the epoch; null: until refused. */
  readonly expiresAtMs: number | null;
};

export type L402TokenCache = {
  get(scope: string, nowMs: number): L402Token | null;
  set(scope: string, token: L402Token): void;
  /** Forgets `token` for `scope` (refused), unless another token has replaced it meanwhile. */
  drop(scope: string, token: L402Token): void;
  readonly size: number;
};

/** The default bound of a token cache. */
export const l402TokensMaxDefault = 1_000;

/** Paid tokens per scope, at most `tokensMax` (the least recently stored is forgotten first). */
export function createL402TokenCache(options: { tokensMax?: number } = {}): L402TokenCache {
  const tokensMax = options.tokensMax ?? l402TokensMaxDefault;
  const tokens = new Map<string, L402Token>();
  return {
    get(scope, nowMs) {
      const token = tokens.get(scope);
      if (token === undefined) return null;
      if (token.expiresAtMs !== null && token.expiresAtMs <= nowMs) {
        tokens.delete(scope);
        return null;
      }
      return token;
    },
    set(scope, token) {
      tokens.delete(scope);
      tokens.set(scope, token);
      while (tokens.size > tokensMax) {
        const oldest = tokens.keys().next().value;
        if (oldest === undefined) break;
        tokens.delete(oldest);
      }
    },
    drop(scope, token) {
      if (tokens.get(scope) === token) tokens.delete(scope);
    },
    get size() {
      return tokens.size;
    },
  };
}
