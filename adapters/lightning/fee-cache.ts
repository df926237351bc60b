// The route-fee answers the rail keeps: a bounded map with a time to live per answer, which asks once for a
// key however many callers want it at the same moment, and a deadline for a caller that cannot wait for the
// answer (the answer, when it comes, still fills the cache). Nothing here knows LND: the loader does.
import { setBounded } from "../../core/index.ts";
import { LightningRailError } from "./errors.ts";

export type Cached<V> = { readonly value: V; readonly takenAtMs: number };

export type AnswerCacheLimits = {
  readonly entriesMax: number;
  /** Loads at once (distinct keys); one more is refused rather than queued. */
  readonly loadingMax: number;
};

export type AnswerCache<V> = {
  /** Oldest first: an answer stored again moves to the end, so the first entry is the one to evict. */
  readonly entries: Map<string, Cached<V>>;
  readonly loading: Map<string, Promise<Cached<V>>>;
  readonly limits: AnswerCacheLimits;
  /** How long an answer stays good; may depend on the answer (a "no route" ages faster than a route). */
  readonly ttlMs: (value: V) => number;
  readonly now: () => number;
};

export function createAnswerCache<V>(params: {
  limits: AnswerCacheLimits;
  ttlMs: (value: V) => number;
  now: () => number;
}): AnswerCache<V> {
  return { entries: new Map(), loading: new Map(), ...params };
}

/** The answer for `key` if it is still good. */
export function lookup<V>(cache: AnswerCache<V>, key: string): Cached<V> | undefined {
  const entry = cache.entries.get(key);
  if (entry === undefined) return undefined;
  if (cache.now() - entry.takenAtMs < cache.ttlMs(entry.value)) return entry;
  cache.entries.delete(key);
  return undefined;
}

export function store<V>(cache: AnswerCache<V>, key: string, value: V): Cached<V> {
  const entry: Cached<V> = { value, takenAtMs: cache.now() };
  cache.entries.delete(key); // stored again: set anew at the end
  if (cache.limits.entriesMax > 0) setBounded(cache.entries, key, entry, cache.limits.entriesMax);
  return entry;
}

/**
 * The good answer for `key`, the load already on its way for it, or a new load whose answer is stored. A
 * rejected load stores nothing. Throws a LightningRailError when loadingMax loads are on their way already.
 */
export function load<V>(cache: AnswerCache<V>, key: string, loader: () => Promise<V>): Promise<Cached<V>> {
  const hit = lookup(cache, key);
  if (hit !== undefined) return Promise.resolve(hit);
  const pending = cache.loading.get(key);
  if (pending !== undefined) return pending;
  if (cache.loading.size >= cache.limits.loadingMax)
    return Promise.reject(
      new LightningRailError("too many route queries in flight", { details: `${cache.limits.loadingMax}` }),
    );
  const loaded = (async () => {
    try {
      return store(cache, key, await loader());
    } finally {
      cache.loading.delete(key);
    }
  })();
  cache.loading.set(key, loaded);
  return loaded;
}

/**
 * `promise`'s outcome, or `{ done: false }` once `deadlineMs` has passed. The promise runs on; its later
 * rejection is taken here (nobody else waits for it), so it is not an unhandled one.
 */
export function withDeadline<T>(
  promise: Promise<T>,
  deadlineMs: number,
): Promise<{ done: true; value: T } | { done: false }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve({ done: false }), deadlineMs);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve({ done: true, value });
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
