// A pending transfer's hold is let go when its timeout passes, as TigerBeetle expires it, not at the interval
// sweep's next tick: TigerBeetle's own client tests sleep just past a 1 s timeout and read the balances released.
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { createLedger, ledgerId, TransferFlags } from "../../gateway/ledger/index.ts";
import { openStore, storeNames } from "./stores.ts";

for (const storeName of storeNames)
  describe(`expiry on ${storeName}`, () => {
    it("releases a 1 s timeout's pending balances with no interval sweep to come, the earlier first", async () => {
      const db = await openStore(storeName);
      // An interval that never comes within the test: only the sweep timed for the timeout can release it.
      const ledger = createLedger({ db, limits: { expiryIntervalMs: 60_000 } });
      try {
        const [a, b] = [ledgerId(), ledgerId()];
        await ledger.createAccounts([
          { id: a, ledger: 1, code: 1 },
          { id: b, ledger: 1, code: 1 },
        ]);
        const [first, second] = [ledgerId(), ledgerId()];
        // The later one first: the timer is moved to the earlier expiry, and the later one is timed after it.
        const made = await ledger.createTransfers([
          {
            id: second,
            debitAccountId: a,
            creditAccountId: b,
            amount: 5n,
            ledger: 1,
            code: 1,
            flags: TransferFlags.pending,
            // Two seconds after the first: a machine that stalls a second between two polls still sees the
            // balance in between (a gap of one second made this test flake on a loaded CI run).
            timeout: 3,
          },
        ]);
        const madeToo = await ledger.createTransfers([
          {
            id: first,
            debitAccountId: a,
            creditAccountId: b,
            amount: 7n,
            ledger: 1,
            code: 1,
            flags: TransferFlags.pending,
            timeout: 1,
          },
        ]);
        expect([...made, ...madeToo].map((r) => r.status)).toEqual(["created", "created"]);
        const pendingOf = async () => (await ledger.lookupAccounts([a]))[0]?.debitsPending;
        expect(await pendingOf()).toBe(12n);
        // Polled, not slept exactly past each second (a loaded machine delays a timer): released within 12 s at
        // all is what only the timed sweep can do here. Every balance seen on the way down is kept, in order: the
        // later hold let go first would show 7 on the way.
        const seen: bigint[] = [12n];
        const deadline = Date.now() + 12_000;
        while (seen.at(-1) !== 0n && Date.now() < deadline) {
          await sleep(50);
          const now = await pendingOf();
          if (now !== undefined && now !== seen.at(-1)) seen.push(now);
        }
        expect(seen).toEqual([12n, 5n, 0n]);
      } finally {
        await ledger.close();
        await db.close();
      }
    });

    it("tries a sweep that failed again in a second, not at the interval's tick", async () => {
      const db = await openStore(storeName);
      // The first look for what is due fails (the database busy or away), once.
      let failOnce = true;
      const flaky: typeof db = new Proxy(db, {
        get(target, key) {
          if (key === "query")
            return async (text: string, params?: readonly unknown[]) => {
              if (failOnce && /expires_at <= \$1 LIMIT 1/.test(text)) {
                failOnce = false;
                throw new Error("the database went away for a moment");
              }
              return target.query(text, params);
            };
          const value = Reflect.get(target, key, target);
          return typeof value === "function" ? value.bind(target) : value;
        },
      });
      const ledger = createLedger({ db: flaky, limits: { expiryIntervalMs: 60_000 } });
      try {
        const [a, b] = [ledgerId(), ledgerId()];
        await ledger.createAccounts([
          { id: a, ledger: 1, code: 1 },
          { id: b, ledger: 1, code: 1 },
        ]);
        const made = await ledger.createTransfers([
          {
            id: ledgerId(),
            debitAccountId: a,
            creditAccountId: b,
            amount: 3n,
            ledger: 1,
            code: 1,
            flags: TransferFlags.pending,
            timeout: 1,
          },
        ]);
        expect(made.map((r) => r.status)).toEqual(["created"]);
        const deadline = Date.now() + 10_000;
        const pendingOf = async () => (await ledger.lookupAccounts([a]))[0]?.debitsPending;
        while ((await pendingOf()) !== 0n && Date.now() < deadline) await sleep(50);
        // Before: the timed sweep failed, and nothing swept again until the interval, a minute on.
        expect(failOnce).toBe(false);
        expect(await pendingOf()).toBe(0n);
      } finally {
        await ledger.close();
        await db.close();
      }
    });
  });
