// The `macaroon` package (go-macaroon compatible: V2 binary, the root key derived as go-macaroon derives it), typed
// for what L402 uses: mint a V2 macaroon with first-party caveats, read one back, and check its HMAC chain. The
// package ships no types; it is loaded through require so that its shape is declared once, here.
import { createRequire } from "node:module";
import { SwitchyardError } from "../../core/index.ts";

type MacaroonObject = {
  readonly identifier: Uint8Array;
  readonly location: string;
  readonly caveats: readonly { identifier: Uint8Array; location?: string; vid?: Uint8Array }[];
  readonly signature: Uint8Array;
  addFirstPartyCaveat(condition: string): void;
  verify(rootKey: Uint8Array, check: (condition: string) => string | null): void;
};

type MacaroonModule = {
  newMacaroon(params: {
    identifier: Uint8Array;
    location: string;
    rootKey: Uint8Array;
    version: 2;
  }): MacaroonObject;
  importMacaroon(bytes: Uint8Array): MacaroonObject;
};

const macaroonLibrary = createRequire(import.meta.url)("macaroon") as MacaroonModule;

/** Aperture mints with location "lsat" (lightninglabs/aperture:mint/mint.go). */
export const macaroonLocation = "lsat";

export class L402MacaroonError extends SwitchyardError {
  override name = "L402MacaroonError";
}

/** A V2 binary macaroon over `identifier`, signed with `rootKey`, carrying `caveats` in order. */
export function mintMacaroon(params: {
  identifier: Uint8Array;
  rootKey: Uint8Array;
  caveats: readonly string[];
}): Uint8Array {
  const macaroon = macaroonLibrary.newMacaroon({
    identifier: params.identifier,
    location: macaroonLocation,
    rootKey: params.rootKey,
    version: 2,
  });
  for (const caveat of params.caveats) macaroon.addFirstPartyCaveat(caveat);
  return encodeBinaryV2(macaroon);
}

/**
 * A holder's attenuation: `conditions` appended to a presented macaroon, its chain extended from the signature
 * it carries (no root key needed). What Aperture-family clients do with `preimage=…`.
 */
export function attenuateMacaroon(bytes: Uint8Array, conditions: readonly string[]): Uint8Array {
  const macaroon = macaroonLibrary.importMacaroon(bytes);
  for (const condition of conditions) macaroon.addFirstPartyCaveat(condition);
  return encodeBinaryV2(macaroon);
}

// ---- V2 binary, written here: macaroon@3.0.4's exportBinary doubles its buffer on every field it appends
// (ByteBuffer._grow compares with an undefined `_capacity`), so four caveats ask for gigabytes. The layout is the
// package's and go-macaroon's: version 2, [location], identifier, EOS; per caveat [location], identifier, [vid],
// EOS; EOS; signature. A field is its type byte, its length as a uvarint, its bytes.

const field = { eos: 0, location: 1, identifier: 2, vid: 4, signature: 6 } as const;

function uvarint(value: number): number[] {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  bytes.push(rest);
  return bytes;
}

function encodeBinaryV2(macaroon: MacaroonObject): Uint8Array {
  const parts: Uint8Array[] = [Uint8Array.of(2)];
  const put = (type: number, data: Uint8Array) =>
    parts.push(Uint8Array.of(type, ...uvarint(data.length)), data);
  const eos = () => parts.push(Uint8Array.of(field.eos));
  const utf8Bytes = (text: string) => new Uint8Array(Buffer.from(text, "utf8"));
  if (macaroon.location) put(field.location, utf8Bytes(macaroon.location));
  put(field.identifier, macaroon.identifier);
  eos();
  for (const caveat of macaroon.caveats) {
    if (caveat.location) put(field.location, utf8Bytes(caveat.location));
    put(field.identifier, caveat.identifier);
    if (caveat.vid !== undefined) put(field.vid, caveat.vid);
    eos();
  }
  eos();
  put(field.signature, macaroon.signature);
  return new Uint8Array(Buffer.concat(parts));
}

/** A presented macaroon, read but not yet verified. */
export type PresentedMacaroon = {
  readonly identifier: Uint8Array;
  /** Whether it carries third-party caveats (never minted here; such a macaroon cannot verify). */
  readonly thirdParty: boolean;
  /** Its first-party caveats' conditions, in order. */
  readonly conditions: readonly string[];
  /** Checks the HMAC chain over every caveat with `rootKey`: true when the signature is the chain's end. */
  verifies(rootKey: Uint8Array): boolean;
};

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * The most caveats a presented macaroon may carry: a minted one has a handful, and a holder narrows it with a few
 * more. Each costs an HMAC to verify, and a holder may append any number without a key.
 */
export const macaroonCaveatsMax = 32;

/**
 * One V2 binary macaroon, or null when the bytes are not one (or carry caveats that are not UTF-8, or more than
 * macaroonCaveatsMax).
 */
export function readMacaroon(bytes: Uint8Array): PresentedMacaroon | null {
  let macaroon: MacaroonObject;
  const conditions: string[] = [];
  let thirdParty = false;
  try {
    macaroon = macaroonLibrary.importMacaroon(bytes);
    if (macaroon.caveats.length > macaroonCaveatsMax) return null;
    for (const caveat of macaroon.caveats) {
      if (caveat.vid !== undefined) thirdParty = true;
      else conditions.push(utf8.decode(caveat.identifier));
    }
  } catch (error) {
    // The package throws plain Errors for anything it cannot read; the caller answers "malformed".
    if (error instanceof Error) return null;
    throw error;
  }
  return {
    identifier: macaroon.identifier,
    thirdParty,
    conditions,
    verifies(rootKey) {
      if (thirdParty) return false;
      try {
        macaroon.verify(rootKey, () => null);
        return true;
      } catch (error) {
        // "signature mismatch after caveat verification": a forged, removed or added caveat, or another key.
        if (error instanceof Error) return false;
        throw error;
      }
    },
  };
}
