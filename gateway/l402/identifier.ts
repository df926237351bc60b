// The L402 macaroon identifier, as Aperture lays it out (lightninglabs/aperture:l402/identifier.go): 66 bytes,
// big-endian — uint16 version 0 ‖ the invoice's 32-byte payment hash ‖ a 32-byte random token id. The payment
// hash binds the token to one invoice; sha256(identifier) names the token's root key (tokens.ts).
import { createHash } from "node:crypto";

export const identifierVersion = 0;
export const identifierLengthBytes = 66;
const hashLengthBytes = 32;

export type L402Identifier = {
  /** The invoice's payment hash, 64 lower-case hex characters. */
  readonly paymentHash: string;
  /** The token's random id, 64 lower-case hex characters. */
  readonly tokenId: string;
};

const hex32 = /^[0-9a-f]{64}$/;

export function encodeIdentifier(identifier: L402Identifier): Uint8Array {
  if (!hex32.test(identifier.paymentHash) || !hex32.test(identifier.tokenId))
    throw new RangeError("an L402 identifier takes a 32-byte payment hash and a 32-byte token id, hex");
  const bytes = Buffer.alloc(identifierLengthBytes);
  bytes.writeUInt16BE(identifierVersion, 0);
  Buffer.from(identifier.paymentHash, "hex").copy(bytes, 2);
  Buffer.from(identifier.tokenId, "hex").copy(bytes, 2 + hashLengthBytes);
  return new Uint8Array(bytes);
}

/** The identifier's fields, or null for anything but a 66-byte version-0 identifier. */
export function decodeIdentifier(bytes: Uint8Array): L402Identifier | null {
  if (bytes.length !== identifierLengthBytes) return null;
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buffer.readUInt16BE(0) !== identifierVersion) return null;
  return {
    paymentHash: buffer.subarray(2, 2 + hashLengthBytes).toString("hex"),
    tokenId: buffer.subarray(2 + hashLengthBytes).toString("hex"),
  };
}

/** sha256(identifier), hex: the name the token's root key is stored under. */
export function rootKeyId(identifier: Uint8Array): string {
  return createHash("sha256").update(identifier).digest("hex");
}
