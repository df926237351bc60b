import { afterEach, describe, expect, it, vi } from "vitest";
import { LightningRailError } from "./errors.ts";
import { type AnswerCache, createAnswerCache, load, lookup, store, withDeadline } from "./fee-cache.ts";

type Answer = { kind: "route"; feeMsat: bigint } | { kind: "unreachable" };

function cache(limits = { entriesMax: 3, loadingMax: 2 }): {
  cache: AnswerCache<Answer>;
  clock: { ms: number };
} {
  const clock = { ms: 1_000 };
  return {
    clock,
    cache: createAnswerCache<Answer>({
      limits,
      ttlMs: (answer) => (answer.kind === "route" ? 60_000 : 5_000),
      now: () => clock.ms,
    }),
  };
}

/** A load the test settles by hand. */
function manual<T>() {
  let resolve: (value: T) => void = () => {};
  let reject: (error: unknown) => void = () => {};
  const promise = new Promise<T>((done, fail) => {
    resolve = done;
    reject = fail;
  });
  return { promise, resolve, reject };
}

const route = (feeMsat: bigint): Answer => ({ kind: "route", feeMsat });

afterEach(() => {
  vi.useRealTimers();
});

describe("the route-fee answer cache", () => {
  it("keeps an answer for its time to live, a no-route answer for its shorter one", () => {
    const { cache: c, clock } = cache();
    store(c, "a", route(7_000n));
    store(c, "b", { kind: "unreachable" });
    clock.ms += 4_999;
    expect(lookup(c, "a")?.value).toEqual(route(7_000n));
    expect(lookup(c, "b")?.value).toEqual({ kind: "unreachable" });
    clock.ms += 1;
    expect(lookup(c, "b")).toBeUndefined();
    expect(c.entries.has("b")).toBe(false);
    clock.ms += 55_000;
    expect(lookup(c, "a")).toBeUndefined();
  });

  it("holds at most entriesMax answers, evicting the oldest stored", () => {
    const { cache: c, clock } = cache();
    for (const key of ["a", "b", "c"]) {
      store(c, key, route(1n));
      clock.ms += 1;
    }
    store(c, "a", route(2n)); // stored again: now the newest
    store(c, "d", route(3n));
    expect([...c.entries.keys()]).toEqual(["c", "a", "d"]);
    expect(c.entries.size).toBe(3);
  });

  it("asks once for a key however many callers want it at once, and stores the answer", async () => {
    const { cache: c } = cache();
    const query = manual<Answer>();
    const loader = vi.fn(() => query.promise);
    const first = load(c, "a", loader);
    const second = load(c, "a", loader);
    query.resolve(route(5n));
    expect(await first).toEqual({ value: route(5n), takenAtMs: 1_000 });
    expect(await second).toBe(await first);
    expect(await load(c, "a", loader)).toBe(await first);
    expect(loader).toHaveBeenCalledTimes(1);
    expect(c.loading.size).toBe(0);
  });

  it("stores nothing for a rejected load, and refuses a load beyond loadingMax at once", async () => {
    const { cache: c } = cache();
    const failing = manual<Answer>();
    const hanging = manual<Answer>();
    const a = load(c, "a", () => failing.promise);
    load(c, "b", () => hanging.promise);
    await expect(load(c, "c", async () => route(1n))).rejects.toBeInstanceOf(LightningRailError);
    failing.reject(new Error("LND went away"));
    await expect(a).rejects.toThrow("LND went away");
    expect(c.entries.has("a")).toBe(false);
    expect((await load(c, "c", async () => route(1n))).value).toEqual(route(1n));
  });
});

describe("withDeadline", () => {
  it("gives up at the deadline; the answer arriving later still fills the cache", async () => {
    vi.useFakeTimers();
    const { cache: c } = cache();
    const query = manual<Answer>();
    const waited = withDeadline(
      load(c, "a", () => query.promise),
      2_000,
    );
    await vi.advanceTimersByTimeAsync(2_000);
    expect(await waited).toEqual({ done: false });
    query.resolve(route(9n));
    await vi.advanceTimersByTimeAsync(0);
    expect(lookup(c, "a")?.value).toEqual(route(9n));
  });

  it("answers before the deadline, and passes a rejection on", async () => {
    vi.useFakeTimers();
    expect(await withDeadline(Promise.resolve(3), 1_000)).toEqual({ done: true, value: 3 });
    await expect(withDeadline(Promise.reject(new Error("no")), 1_000)).rejects.toThrow("no");
    expect(vi.getTimerCount()).toBe(0);
  });

  it("takes a rejection that comes after the deadline (not an unhandled one)", async () => {
    vi.useFakeTimers();
    const late = manual<number>();
    const waited = withDeadline(late.promise, 10);
    await vi.advanceTimersByTimeAsync(10);
    expect(await waited).toEqual({ done: false });
    late.reject(new Error("too late"));
    await vi.advanceTimersByTimeAsync(0);
  });
});
