// TigerBeetle-style time-based u128 ids: 48 bits of milliseconds, then 80 random bits that count up within the
// same millisecond, so ids sort by creation time and land at the right edge of the primary-key index.
import { takeRandom } from "../../core/random.ts";

const random80Max = (1n << 80n) - 1n;

const drawn = Buffer.alloc(10);
/** 79 fresh random bits (one bit of headroom, so that counting up within a millisecond never overflows in practice). */
function random79(): bigint {
  takeRandom(drawn);
  return BigInt(`0x${drawn.toString("hex")}`) >> 1n;
}

export type IdGenerator = () => bigint;

export function createIdGenerator(nowMs: () => number = Date.now): IdGenerator {
  let lastMs = 0;
  let lastRandom = 0n;
  return () => {
    let ms = nowMs();
    if (ms <= lastMs) {
      ms = lastMs; // the clock went back or stood still: keep counting from where we were
      lastRandom += 1n;
      if (lastRandom > random80Max) {
        // 2^80 ids in one millisecond cannot happen; move to the next millisecond rather than wrap
        ms = lastMs + 1;
        lastRandom = random79();
      }
    } else {
      lastRandom = random79();
    }
    lastMs = ms;
    return (BigInt(ms) << 80n) | lastRandom;
  };
}

const defaultGenerator = createIdGenerator();

/**
 * A fresh, time-ordered u128 id. (One generator per process, like TigerBeetle's `id()`: monotonic within the
 * process; across processes the 80 random bits keep ids apart.)
 */
export function ledgerId(): bigint {
  return defaultGenerator();
}

/** u128 → PostgreSQL uuid text (32 hex digits; PostgreSQL accepts them without hyphens). */
export function idToUuid(id: bigint): string {
  return id.toString(16).padStart(32, "0");
}

/** PostgreSQL uuid text → u128. */
export function uuidToId(uuid: string): bigint {
  return BigInt(`0x${uuid.replaceAll("-", "")}`);
}
