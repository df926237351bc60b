// Identifiers. Public ids are a prefix and 26 Crockford base32 characters (48-bit time, 80 random bits),
// sortable by creation. Ledger ids are u128 bigints; a ledger id derived from a public id and a purpose
// is the same on every retry, which is what makes a retried ledger write idempotent.
import { hash } from "node:crypto";
import { takeRandom } from "../../core/random.ts";

const crockford = "0123456789abcdefghjkmnpqrstvwxyz";

export type IdPrefix =
  | "pay"
  | "att"
  | "acct"
  | "ten"
  | "key"
  | "evt"
  | "quo"
  | "inv"
  | "we"
  | "nb"
  | "pye"
  | "rfd"
  | "whd"
  | "pwl";

export function newId(prefix: IdPrefix, nowMs: number = Date.now()): string {
  return `${prefix}_${base32(newIdBytes(nowMs))}`;
}

/** A new id and its 128 bits (ownLedgerId of the id, without reading it back): for an id that names a ledger object too. */
export function newIdWithBits(prefix: IdPrefix, nowMs: number = Date.now()): { id: string; bits: bigint } {
  const bytes = newIdBytes(nowMs);
  return {
    id: `${prefix}_${base32(bytes)}`,
    bits: u128Of(bytes),
  };
}

/** An id's 16 bytes: 48 bits of `nowMs`, then 80 random bits (counting up within one millisecond). */
function newIdBytes(nowMs: number): Buffer {
  const bytes = Buffer.allocUnsafe(16);
  bytes.writeUIntBE(nowMs, 0, 6);
  if (nowMs === lastId.ms) {
    // Within one millisecond, ids of this process still sort by creation: the last one's random bits, plus a random
    // step of 1 to 2^16 (a list ordered by id is then the order things were made in, not a draw).
    lastId.random.copy(bytes, 6);
    takeRandom(step, 0);
    let carry = step.readUInt16BE(0) + 1;
    for (let i = 15; i >= 6 && carry > 0; i--) {
      const sum = bytes[i]! + carry;
      bytes[i] = sum & 0xff;
      carry = sum >> 8;
    }
    if (carry > 0) takeRandom(bytes, 6); // 80 bits run out within a millisecond: never in practice
  } else takeRandom(bytes, 6);
  lastId.ms = nowMs;
  bytes.copy(lastId.random, 0, 6);
  return bytes;
}

/** The millisecond and random bits of this process's latest id (newId keeps ids of one millisecond in order). */
const lastId = { ms: -1, random: Buffer.alloc(10) };
const step = Buffer.alloc(2);

/**
 * 128 bits as 26 lower-case Crockford characters, most significant first (two leading zero bits make 130). Written as
 * character codes and made one string at the end: appending a character at a time made a string for each.
 */
function base32(bytes: Buffer): string {
  let pending = 0; // the bits read and not written yet, at most 12
  let width = 2;
  let at = 0;
  for (const byte of bytes) {
    pending = (pending << 8) | byte;
    width += 8;
    while (width >= 5) {
      width -= 5;
      base32Codes[at++] = crockfordCodes[(pending >> width) & 31]!;
    }
    pending &= (1 << width) - 1;
  }
  return String.fromCharCode.apply(null, base32Codes as unknown as number[]);
}

const crockfordCodes = Uint8Array.from(crockford, (char) => char.charCodeAt(0));
/** base32's characters, reused: 26 codes, filled before each string is made. */
const base32Codes = new Uint16Array(26);

/** The public id of `prefix` whose 128 bits are `bits` (ownLedgerId's inverse): any u128 has one. */
export function idOfBits(prefix: IdPrefix, bits: bigint): string {
  if (bits < 0n || bits >> 128n !== 0n) throw new RangeError("not a u128");
  const bytes = Buffer.allocUnsafe(16);
  bytes.writeBigUInt64BE(bits >> 64n, 0);
  bytes.writeBigUInt64BE(bits & u64Max, 8);
  return `${prefix}_${base32(bytes)}`;
}

const u64Max = (1n << 64n) - 1n;

/** 16 bytes, most significant first, as a u128. */
const u128Of = (bytes: Buffer): bigint => (bytes.readBigUInt64BE(0) << 64n) | bytes.readBigUInt64BE(8);

const idPattern = /^(pay|att|acct|ten|key|evt|quo|inv|we|nb|pye|rfd|pwl)_[0-9a-hjkmnp-tv-z]{26}$/;

export function isId(prefix: IdPrefix, text: string): boolean {
  return idPattern.test(text) && text.startsWith(`${prefix}_`);
}

/**
 * A public id's own 128 bits (its 26 characters after the prefix, read back) as a ledger id: stable across retries like
 * derivedLedgerId, and also time-ordered (the id's 48-bit time leads), so transfers written with such ids land at the
 * right edge of the ledger's primary key, and the public id is found again from the ledger id without an index
 * (idOfBits). One per public id: for the one ledger object that public id stands for (an internal payment's transfer,
 * say); others take derivedLedgerId. A new id comes with its bits already (newIdWithBits).
 */
export function ownLedgerId(publicId: string): bigint {
  const text = publicId.slice(publicId.indexOf("_") + 1);
  if (text.length !== 26) throw new RangeError(`not a public id: ${publicId}`);
  let bits = 0n;
  for (const char of text) {
    const digit = crockford.indexOf(char);
    if (digit < 0) throw new RangeError(`not a public id: ${publicId}`);
    bits = (bits << 5n) | BigInt(digit);
  }
  if (bits >> 128n !== 0n) throw new RangeError(`not a public id: ${publicId}`); // past 128 bits
  return bits;
}

/** A u128 ledger id derived from a public id and what it is for: stable across retries, never 0. */
export function derivedLedgerId(publicId: string, purpose: string): bigint {
  const digest = hash("sha256", `${purpose}\u0000${publicId}`, "buffer");
  const id = u128Of(digest);
  return id === 0n ? 1n : id;
}
