// Identifiers. Public ids are a prefix and 26 Crockford base32 characters (48-bit time, 80 random bits),
// sortable by creation. Ledger ids are u128 bigints; a ledger id derived from a public id and a purpose
// is the same on every retry, which is what makes a retried ledger write idempotent.
import { createHash, randomBytes } from "node:crypto";

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

export type IdPrefix = "pay" | "att" | "acct" | "ten" | "key" | "evt" | "quo" | "inv" | "we" | "nb";

export function newId(prefix: IdPrefix, nowMs: number = Date.now()): string {
  const bytes = Buffer.alloc(16);
  bytes.writeUIntBE(nowMs, 0, 6);
  randomBytes(10).copy(bytes, 6);
  let value = bytes.readBigUInt64BE(0) * 2n ** 64n + bytes.readBigUInt64BE(8);
  let text = "";
  for (let i = 0; i < 26; i += 1) {
    text = crockford[Number(value & 31n)] + text;
    value >>= 5n;
  }
  return `${prefix}_${text.toLowerCase()}`;
}

const idPattern = /^(pay|att|acct|ten|key|evt|quo|inv|we|nb)_[0-9a-hjkmnp-tv-z]{26}$/;

export function isId(prefix: IdPrefix, text: string): boolean {
  return idPattern.test(text) && text.startsWith(`${prefix}_`);
}

/** A u128 ledger id derived from a public id and what it is for: stable across retries, never 0. */
export function derivedLedgerId(publicId: string, purpose: string): bigint {
  const digest = createHash("sha256").update(`${purpose}\u0000${publicId}`).digest();
  const id = digest.readBigUInt64BE(0) * 2n ** 64n + digest.readBigUInt64BE(8);
  return id === 0n ? 1n : id;
}
