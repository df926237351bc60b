// Random bytes drawn from the system's generator a page at a time. A draw of a few bytes through crypto.randomBytes
// costs about 2 µs warm and, on a machine that idled a moment, 8 µs or far more (a lone payment's ledger batch drew
// its clock token so: 45 µs a payment in a profile of one payment at a time). From a page, one call per 4 KB. Only
// what was drawn is handed out, never a byte twice.
import { randomFillSync } from "node:crypto";

const pool = { bytes: Buffer.allocUnsafe(4096), at: 4096 };

/** The offset of `count` fresh bytes in the pool (`count` at most a page), drawing a new page when too few are left. */
function drawn(count: number): number {
  if (pool.at + count > pool.bytes.length) {
    randomFillSync(pool.bytes);
    pool.at = 0;
  }
  const at = pool.at;
  pool.at += count;
  return at;
}

/** Fills `into` from byte `from` on with fresh random bytes. */
export function takeRandom(into: Buffer, from = 0): void {
  const count = into.length - from;
  if (count > pool.bytes.length) {
    randomFillSync(into, from);
    return;
  }
  const at = drawn(count);
  pool.bytes.copy(into, from, at, at + count);
}

/** A random signed 64-bit integer. */
export function randomInt64(): bigint {
  return pool.bytes.readBigInt64BE(drawn(8));
}
