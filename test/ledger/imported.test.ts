// TigerBeetle's imported events: accounts and transfers that bring their own timestamps from the past, as a migration
// into the ledger does. The four tables of TigerBeetle's state machine tests ("imported events": imported batch,
// timestamp, pending transfers, linked chain), with its clock: each request's slots are set through `nowNs` to those
// TigerBeetle's batch would take (the k-th event of a batch after `p` takes p + 1 + k, and `now` is the last one), so
// that every result's timestamp is TigerBeetle's too. Then what the writer adds: an import goes alone down the locked
// path among pipelined batches, its bounds are read from the database (another writer's events count), and a broken
// chain gives its timestamps back within the request.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Db } from "../../gateway/db/index.ts";
import {
  AccountFlags,
  type AccountInput,
  createLedger,
  type Ledger,
  TransferFlags,
  type TransferInput,
} from "../../gateway/ledger/index.ts";
import { ledgerInvariantProblems } from "../support/ledger-invariants.ts";
import { openStore, type StoreName, storeNames } from "./stores.ts";

const IMP = AccountFlags.imported;
const TIMP = TransferFlags.imported;
const LNK = 1;
const u64MaxMinus1 = (1n << 64n) - 2n;

const account = (id: bigint, flags = 0, timestamp?: bigint): AccountInput => ({
  id,
  ledger: 1,
  code: 1,
  flags,
  ...(timestamp === undefined ? {} : { timestamp }),
});

const transfer = (
  id: bigint,
  debitAccountId: bigint,
  creditAccountId: bigint,
  fields: Partial<TransferInput> = {},
): TransferInput => ({ id, debitAccountId, creditAccountId, amount: 3n, ledger: 1, code: 2, ...fields });

/** Results as `status@timestamp`, TigerBeetle's table's way of saying both. */
const said = (results: readonly { status: string; timestamp: bigint }[]) =>
  results.map((r) => `${r.status}@${r.timestamp}`);

for (const storeName of storeNames)
  describe(`imported events on ${storeName}`, () => {
    let db: Db;
    let ledger: Ledger;
    let now = 0n;
    /** The batch after TigerBeetle's prepare timestamp `p`: its first event takes p + 2 (after the clock's own tick). */
    const batchAfter = (p: bigint) => {
      now = p + 2n;
    };
    const accounts = async (events: AccountInput[]) => said(await ledger.createAccounts(events));
    const transfers = async (events: TransferInput[]) => said(await ledger.createTransfers(events));
    const balances = async (id: bigint) => {
      const [a] = await ledger.lookupAccounts([id]);
      return [a!.debitsPending, a!.debitsPosted, a!.creditsPending, a!.creditsPosted];
    };

    beforeEach(async () => {
      db = await openStore(storeName);
      now = 0n;
      ledger = createLedger({ db, limits: { expiryIntervalMs: 0 }, nowNs: () => now });
    });
    afterEach(async () => {
      await ledger.close();
      expect(await ledgerInvariantProblems(db)).toEqual([]);
      await db.close();
    });

    it("the first event says whether a request imports (TigerBeetle: imported batch)", async () => {
      batchAfter(10n);
      expect(await accounts([account(1n, IMP, 1n), account(2n), account(2n, IMP, 2n)])).toEqual([
        "created@1",
        "imported_event_expected@13",
        "created@2",
      ]);
      batchAfter(14n);
      expect(await accounts([account(3n), account(4n, IMP, 3n)])).toEqual([
        "created@16",
        "imported_event_not_expected@17",
      ]);
      // Accounts and transfers are checked apart: a transfer at 10 after an account at 16 is fine.
      batchAfter(17n);
      expect(
        await transfers([transfer(1n, 1n, 2n, { flags: TIMP, timestamp: 10n }), transfer(2n, 1n, 2n)]),
      ).toEqual(["created@10", "imported_event_expected@20"]);
      batchAfter(20n);
      expect(
        await transfers([transfer(3n, 1n, 2n), transfer(4n, 1n, 2n, { flags: TIMP, timestamp: 0n })]),
      ).toEqual(["created@22", "imported_event_not_expected@23"]);
    });

    it("an imported timestamp is in range, in the past, after the latest of its kind and no other's (TigerBeetle: timestamp)", async () => {
      batchAfter(10n);
      expect(
        await accounts([
          account(1n, IMP, 0n),
          account(1n, IMP, u64MaxMinus1),
          account(1n, IMP, 99n),
          account(1n, IMP, 2n),
          account(2n, IMP, 1n),
          account(2n, IMP, 3n),
          account(3n, IMP, 9n),
        ]),
      ).toEqual([
        "imported_event_timestamp_out_of_range@12",
        "imported_event_timestamp_out_of_range@13",
        "imported_event_timestamp_must_not_advance@14",
        "created@2",
        "imported_event_timestamp_must_not_regress@16",
        "created@3",
        "created@9",
      ]);
      // `exists` whatever the timestamp, once it is not from the future.
      batchAfter(18n);
      expect(
        await accounts([
          account(2n, IMP, 99n),
          account(2n, IMP, 1n),
          account(2n, IMP, 3n),
          account(2n, IMP, 4n),
          account(3n, IMP, 9n),
        ]),
      ).toEqual([
        "imported_event_timestamp_must_not_advance@20",
        "exists@3",
        "exists@3",
        "exists@3",
        "exists@9",
      ]);
      batchAfter(24n);
      const t = (id: bigint, dr: bigint, cr: bigint, timestamp: bigint) =>
        transfer(id, dr, cr, { flags: TIMP, timestamp });
      expect(
        await transfers([
          t(1n, 1n, 2n, 0n),
          t(1n, 1n, 2n, u64MaxMinus1),
          t(1n, 1n, 2n, 99n),
          t(1n, 1n, 2n, 2n), // an account's timestamp (A1's)
          t(1n, 1n, 2n, 3n), // A2's
          t(1n, 3n, 2n, 4n),
          t(1n, 1n, 3n, 4n),
          t(1n, 1n, 2n, 4n),
          t(2n, 1n, 2n, 3n),
          t(2n, 1n, 2n, 5n),
        ]),
      ).toEqual([
        "imported_event_timestamp_out_of_range@26",
        "imported_event_timestamp_out_of_range@27",
        "imported_event_timestamp_must_not_advance@28",
        "imported_event_timestamp_must_not_regress@29",
        "imported_event_timestamp_must_not_regress@30",
        "imported_event_timestamp_must_postdate_debit_account@31",
        "imported_event_timestamp_must_postdate_credit_account@32",
        "created@4",
        "imported_event_timestamp_must_not_regress@34",
        "created@5",
      ]);
      batchAfter(35n);
      expect(
        await transfers([t(2n, 1n, 2n, 99n), t(2n, 1n, 2n, 4n), t(2n, 1n, 2n, 5n), t(2n, 1n, 2n, 6n)]),
      ).toEqual(["imported_event_timestamp_must_not_advance@37", "exists@5", "exists@5", "exists@5"]);
      batchAfter(40n);
      expect(await transfers([t(3n, 1n, 2n, 10n)])).toEqual(["created@10"]);
      // Above every account's timestamp, but a transfer's.
      batchAfter(42n);
      expect(await accounts([account(4n, IMP, 10n)])).toEqual([
        "imported_event_timestamp_must_not_regress@44",
      ]);
    });

    it("an imported pending transfer has no timeout, and an imported post resolves it (TigerBeetle: pending transfers)", async () => {
      batchAfter(10n);
      expect(await accounts([account(1n, IMP, 1n), account(2n, IMP, 2n)])).toEqual([
        "created@1",
        "created@2",
      ]);
      batchAfter(13n);
      const pending = TransferFlags.pending | TIMP;
      expect(
        await transfers([
          transfer(1n, 1n, 2n, { flags: TIMP, timestamp: 3n }),
          transfer(2n, 1n, 2n, { amount: 4n, timeout: 1, flags: pending, timestamp: 4n }),
          transfer(2n, 1n, 2n, { amount: 4n, flags: pending, timestamp: 4n }),
        ]),
      ).toEqual(["created@3", "imported_event_timeout_must_be_zero@16", "created@4"]);
      expect(await balances(1n)).toEqual([4n, 3n, 0n, 0n]);
      expect(await balances(2n)).toEqual([0n, 0n, 4n, 3n]);
      batchAfter(18n);
      expect(
        await transfers([
          transfer(3n, 1n, 2n, {
            amount: 4n,
            pendingId: 2n,
            flags: TransferFlags.postPendingTransfer | TIMP,
            timestamp: 5n,
          }),
        ]),
      ).toEqual(["created@5"]);
      expect(await balances(1n)).toEqual([0n, 7n, 0n, 0n]);
      expect(await balances(2n)).toEqual([0n, 0n, 0n, 7n]);
      expect((await ledger.lookupTransfers([1n, 2n, 3n])).map((x) => x.timestamp)).toEqual([3n, 4n, 5n]);
    });

    it("a broken chain of imports leaves nothing, and its timestamps and ids are taken again (TigerBeetle: linked chain)", async () => {
      batchAfter(10n);
      expect(
        await accounts([account(1n, IMP | LNK, 1n), account(2n, IMP | LNK, 2n), account(3n, IMP, 0n)]),
      ).toEqual([
        "linked_event_failed@1",
        "linked_event_failed@2",
        "imported_event_timestamp_out_of_range@14",
      ]);
      batchAfter(14n);
      expect(
        await accounts([account(1n, IMP | LNK, 1n), account(2n, IMP | LNK, 2n), account(3n, IMP, 3n)]),
      ).toEqual(["created@1", "created@2", "created@3"]);
      batchAfter(18n);
      const t = (id: bigint, flags: number, timestamp: bigint) => transfer(id, 1n, 2n, { flags, timestamp });
      expect(await transfers([t(1n, TIMP | LNK, 4n), t(2n, TIMP | LNK, 5n), t(3n, TIMP, 0n)])).toEqual([
        "linked_event_failed@4",
        "linked_event_failed@5",
        "imported_event_timestamp_out_of_range@22",
      ]);
      batchAfter(22n);
      expect(await transfers([t(1n, TIMP | LNK, 4n), t(2n, TIMP | LNK, 5n), t(3n, TIMP, 6n)])).toEqual([
        "created@4",
        "created@5",
        "created@6",
      ]);
      expect(await balances(1n)).toEqual([0n, 9n, 0n, 0n]);
      expect(await balances(2n)).toEqual([0n, 0n, 0n, 9n]);
      expect(await balances(3n)).toEqual([0n, 0n, 0n, 0n]);
      expect((await ledger.lookupTransfers([1n, 2n, 3n])).map((x) => x.timestamp)).toEqual([4n, 5n, 6n]);
    });

    it("within one request, a broken chain gives back the timestamps it had taken", async () => {
      batchAfter(10n);
      expect(
        await accounts([
          account(1n, IMP | LNK, 1n),
          account(2n, IMP, 0n),
          account(1n, IMP, 1n),
          account(2n, IMP, 2n),
        ]),
      ).toEqual([
        "linked_event_failed@1",
        "imported_event_timestamp_out_of_range@13",
        "created@1",
        "created@2",
      ]);
      batchAfter(20n);
      const t = (id: bigint, flags: number, timestamp: bigint) => transfer(id, 1n, 2n, { flags, timestamp });
      expect(
        await transfers([t(1n, TIMP | LNK, 5n), t(2n, TIMP, 1n), t(1n, TIMP, 5n), t(3n, TIMP, 6n)]),
      ).toEqual([
        "linked_event_failed@5",
        "imported_event_timestamp_must_not_regress@23",
        "created@5",
        "created@6",
      ]);
    });

    it("the bounds come from the database: another writer's events, and the ledger's own clock, count", async () => {
      // A ledger on the real clock: its events take today's timestamps.
      const live = createLedger({ db, limits: { expiryIntervalMs: 0 } });
      try {
        expect(
          said(await live.createAccounts([account(1n), account(2n)])).map((s) => s.split("@")[0]),
        ).toEqual(["created", "created"]);
        const [one] = await live.createTransfers([transfer(1n, 1n, 2n)]);
        expect(one!.status).toBe("created");
        const [a2] = await live.lookupAccounts([2n]);
        // This ledger's clock stands at 0: anything from before `now` (its first slot) must not advance.
        batchAfter(one!.timestamp);
        // Before the other writer's transfer: regresses; at one of its accounts' timestamps: regresses too.
        expect(
          await transfers([transfer(2n, 1n, 2n, { flags: TIMP, timestamp: one!.timestamp - 1n })]),
        ).toEqual([`imported_event_timestamp_must_not_regress@${one!.timestamp + 2n}`]);
        batchAfter(one!.timestamp + 10n);
        expect(
          (await transfers([transfer(2n, 1n, 2n, { flags: TIMP, timestamp: one!.timestamp + 1n })]))[0],
        ).toBe(`created@${one!.timestamp + 1n}`);
        // An account at the transfer's timestamp, though after every account's.
        batchAfter(one!.timestamp + 20n);
        expect(await accounts([account(3n, IMP, one!.timestamp + 1n)])).toEqual([
          `imported_event_timestamp_must_not_regress@${one!.timestamp + 22n}`,
        ]);
        expect(a2!.timestamp).toBeLessThan(one!.timestamp);
        // The live ledger goes on after the imports, at its own (later) timestamps.
        const [two] = await live.createTransfers([transfer(4n, 1n, 2n)]);
        expect(two!.status).toBe("created");
        expect(two!.timestamp).toBeGreaterThan(one!.timestamp + 22n);
      } finally {
        await live.close();
      }
    });

    it("an import waits its turn among concurrent transfers, and runs alone after those before it", async () => {
      batchAfter(1_000n);
      expect(await accounts([account(1n, IMP, 1n), account(2n, IMP, 2n)])).toEqual([
        "created@1",
        "created@2",
      ]);
      batchAfter(2_000n);
      const plain = Array.from({ length: 40 }, (_, i) =>
        ledger.createTransfers([transfer(100n + BigInt(i), 1n, 2n)]),
      );
      const imported = ledger.createTransfers([
        transfer(10n, 1n, 2n, { flags: TIMP, timestamp: 3n }),
        transfer(11n, 1n, 2n, { flags: TIMP, timestamp: 4n }),
      ]);
      const more = Array.from({ length: 40 }, (_, i) =>
        ledger.createTransfers([transfer(200n + BigInt(i), 1n, 2n)]),
      );
      for (const results of await Promise.all([...plain, ...more]))
        expect(results.map((r) => r.status)).toEqual(["created"]);
      // The plain transfers before it took timestamps after 4: the import, run after them, regresses.
      const statuses = (await imported).map((r) => r.status);
      expect(statuses).toEqual([
        "imported_event_timestamp_must_not_regress",
        "imported_event_timestamp_must_not_regress",
      ]);
      const [debit] = await ledger.lookupAccounts([1n]);
      expect(debit!.debitsPosted).toBe(80n * 3n);
    });
  });

// The import order TigerBeetle documents (accounts, then transfers, from the past) through a ledger on the real clock.
describe.each(storeNames)("a migration into the ledger on %s", (storeName: StoreName) => {
  it("keeps the imported history in time order, and the ledger goes on from today", async () => {
    const db = await openStore(storeName);
    const ledger = createLedger({ db, limits: { expiryIntervalMs: 0 } });
    try {
      const day = 86_400n * 1_000_000_000n;
      const t0 = 1_600_000_000n * 1_000_000_000n;
      expect(
        (await ledger.createAccounts([account(1n, IMP | LNK, t0), account(2n, IMP, t0 + 1n)])).map(
          (r) => r.status,
        ),
      ).toEqual(["created", "created"]);
      const history = [1n, 2n, 3n].map((i) =>
        transfer(10n + i, 1n, 2n, { amount: i, flags: TIMP, timestamp: t0 + i * day }),
      );
      expect((await ledger.createTransfers(history)).map((r) => r.status)).toEqual([
        "created",
        "created",
        "created",
      ]);
      const [today] = await ledger.createTransfers([transfer(20n, 1n, 2n, { amount: 10n })]);
      expect(today!.status).toBe("created");
      const page = await ledger.getAccountTransfers({ accountId: 1n, limit: 10 });
      expect(page.transfers.map((t) => t.id)).toEqual([11n, 12n, 13n, 20n]);
      expect(page.transfers.map((t) => t.timestamp).slice(0, 3)).toEqual([
        t0 + day,
        t0 + 2n * day,
        t0 + 3n * day,
      ]);
      const [a] = await ledger.lookupAccounts([1n]);
      expect(a!.debitsPosted).toBe(16n);
      expect(a!.timestamp).toBe(t0);
    } finally {
      await ledger.close();
      expect(await ledgerInvariantProblems(db)).toEqual([]);
      await db.close();
    }
  });
});
