// TigerBeetle's `history` flag and get_account_balances: an account with it keeps its balances as they were right after
// each of its transfers, read back through getAccountTransfers' filter. TigerBeetle's three tables (single-phase,
// two-phase, invalid filter), then what our writer adds: a broken chain keeps none, pipelined batches keep them in
// order, expiry is no transfer, and an account without the flag costs nothing.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Db } from "../../gateway/db/index.ts";
import {
  type AccountBalance,
  AccountFlags,
  type AccountTransfersFilter,
  createLedger,
  type Ledger,
  TransferFlags,
  type TransferInput,
} from "../../gateway/ledger/index.ts";
import { ledgerInvariantProblems } from "../support/ledger-invariants.ts";
import { openStore, storeNames } from "./stores.ts";

const HIST = AccountFlags.history;

const move = (
  id: bigint,
  debitAccountId: bigint,
  creditAccountId: bigint,
  amount: bigint,
  fields: Partial<TransferInput> = {},
): TransferInput => ({ id, debitAccountId, creditAccountId, amount, ledger: 1, code: 1, ...fields });

/** A balance as TigerBeetle's tables write it: the transfer, then debits pending, posted, credits pending, posted. */
type Row = [transfer: bigint, dp: bigint, dpost: bigint, cp: bigint, cpost: bigint];

for (const storeName of storeNames)
  describe(`account balances on ${storeName}`, () => {
    let db: Db;
    let ledger: Ledger;
    const timestampOf = new Map<bigint, bigint>();
    const idAt = new Map<bigint, bigint>();
    const create = async (transfers: TransferInput[]) => {
      const results = await ledger.createTransfers(transfers);
      expect(results.map((r) => r.status)).toEqual(transfers.map(() => "created"));
      transfers.forEach((t, i) => {
        timestampOf.set(t.id, results[i]!.timestamp);
        idAt.set(results[i]!.timestamp, t.id);
      });
    };
    const rows = (balances: readonly AccountBalance[]): Row[] =>
      balances.map((b) => [
        idAt.get(b.timestamp) ?? -1n,
        b.debitsPending,
        b.debitsPosted,
        b.creditsPending,
        b.creditsPosted,
      ]);
    /** Accounts 1 and 2 on ledger 1, with these flags. */
    const twoAccounts = async (flags1: number, flags2: number) =>
      expect(
        (
          await ledger.createAccounts([
            { id: 1n, ledger: 1, code: 1, flags: flags1 },
            { id: 2n, ledger: 1, code: 1, flags: flags2 },
          ])
        ).map((r) => r.status),
      ).toEqual(["created", "created"]);
    const balancesOf = async (filter: Partial<AccountTransfersFilter> & { accountId: bigint }) =>
      rows((await ledger.getAccountBalances({ limit: 10, ...filter })).balances);
    /** The filter's timestamp bounds, named by transfer as TigerBeetle's tables name them. */
    const ts = (id: bigint) => timestampOf.get(id)!;

    beforeEach(async () => {
      db = await openStore(storeName);
      ledger = createLedger({ db, limits: { expiryIntervalMs: 0 } });
      timestampOf.clear();
      idAt.clear();
    });
    afterEach(async () => {
      await ledger.close();
      expect(await ledgerInvariantProblems(db)).toEqual([]);
      await db.close();
    });

    it("keeps an account's balances after each transfer, filtered as its transfers are (TigerBeetle: single-phase)", async () => {
      await twoAccounts(HIST, HIST);
      await create([
        move(1n, 1n, 2n, 10n, { userData128: 1000n, userData64: 10n, userData32: 1, code: 1 }),
        move(2n, 2n, 1n, 11n, { userData128: 1001n, userData64: 10n, userData32: 2, code: 2 }),
        move(3n, 1n, 2n, 12n, { userData128: 1000n, userData64: 20n, userData32: 2, code: 1 }),
        move(4n, 2n, 1n, 13n, { userData128: 1001n, userData64: 20n, userData32: 1, code: 2 }),
      ]);
      const all: Row[] = [
        [1n, 0n, 10n, 0n, 0n],
        [2n, 0n, 10n, 0n, 11n],
        [3n, 0n, 22n, 0n, 11n],
        [4n, 0n, 22n, 0n, 24n],
      ];
      const [t1, t2, t3, t4] = all;
      expect(await balancesOf({ accountId: 1n })).toEqual(all);
      expect(await balancesOf({ accountId: 1n, limit: 2 })).toEqual([t1, t2]);
      expect(await balancesOf({ accountId: 1n, timestampMin: ts(3n) })).toEqual([t3, t4]);
      expect(await balancesOf({ accountId: 1n, timestampMax: ts(2n) })).toEqual([t1, t2]);
      expect(await balancesOf({ accountId: 1n, timestampMin: ts(2n), timestampMax: ts(3n) })).toEqual([
        t2,
        t3,
      ]);
      expect(await balancesOf({ accountId: 1n, reversed: true })).toEqual([t4, t3, t2, t1]);
      expect(await balancesOf({ accountId: 1n, credits: false })).toEqual([t1, t3]);
      expect(await balancesOf({ accountId: 1n, debits: false })).toEqual([t2, t4]);
      expect(await balancesOf({ accountId: 1n, userData128: 1001n })).toEqual([t2, t4]);
      expect(await balancesOf({ accountId: 1n, userData64: 10n })).toEqual([t1, t2]);
      expect(await balancesOf({ accountId: 1n, userData32: 1 })).toEqual([t1, t4]);
      expect(await balancesOf({ accountId: 1n, code: 1 })).toEqual([t1, t3]);
      const every = { userData128: 1000n, userData64: 10n, userData32: 1, code: 1 };
      expect(
        await balancesOf({ accountId: 1n, ...every, timestampMin: ts(1n), timestampMax: ts(3n) }),
      ).toEqual([t1]);
      expect(
        await balancesOf({
          accountId: 1n,
          ...every,
          timestampMin: ts(1n),
          timestampMax: ts(3n),
          credits: false,
        }),
      ).toEqual([t1]);
      expect(
        await balancesOf({ accountId: 1n, userData128: 1000n, userData64: 20n, userData32: 2, code: 2 }),
      ).toEqual([]);
      expect(
        await balancesOf({
          accountId: 2n,
          ...every,
          timestampMin: ts(1n),
          timestampMax: ts(3n),
          debits: false,
        }),
      ).toEqual([[1n, 0n, 0n, 0n, 10n]]);
      // The cursor, as getAccountTransfers': a full page names where the next starts.
      const first = await ledger.getAccountBalances({ accountId: 1n, limit: 3 });
      expect(first.nextCursor).toBe(ts(3n));
      const next = await ledger.getAccountBalances({ accountId: 1n, limit: 3, after: first.nextCursor! });
      expect(rows(next.balances)).toEqual([t4]);
      expect(next.nextCursor).toBeNull();
    });

    it("moves a pending amount to posted (TigerBeetle: two-phase)", async () => {
      await twoAccounts(HIST, HIST);
      await create([move(1n, 1n, 2n, 1n, { flags: TransferFlags.pending })]);
      await create([
        move(2n, 0n, 0n, 1n, { flags: TransferFlags.postPendingTransfer, pendingId: 1n, ledger: 0, code: 0 }),
      ]);
      expect(await balancesOf({ accountId: 1n })).toEqual([
        [1n, 1n, 0n, 0n, 0n],
        [2n, 0n, 1n, 0n, 0n],
      ]);
      expect(await balancesOf({ accountId: 2n })).toEqual([
        [1n, 0n, 0n, 1n, 0n],
        [2n, 0n, 0n, 0n, 1n],
      ]);
    });

    it("answers nothing for a filter that can match nothing, or an account without history (TigerBeetle: invalid filter)", async () => {
      await twoAccounts(HIST, 0);
      await create([move(1n, 1n, 2n, 2n), move(2n, 1n, 2n, 1n, { code: 2 })]);
      expect(await balancesOf({ accountId: 3n })).toEqual([]);
      expect(await balancesOf({ accountId: 2n })).toEqual([]);
      expect(await balancesOf({ accountId: 1n, debits: false, credits: false })).toEqual([]);
      expect(await balancesOf({ accountId: 1n, timestampMin: ts(2n), timestampMax: ts(1n) })).toEqual([]);
      expect(await balancesOf({ accountId: 1n, limit: 0 })).toEqual([]);
      expect(await balancesOf({ accountId: 1n, code: 1 })).toEqual([[1n, 0n, 2n, 0n, 0n]]);
      expect(await balancesOf({ accountId: 1n })).toEqual([
        [1n, 0n, 2n, 0n, 0n],
        [2n, 0n, 3n, 0n, 0n],
      ]);
      // Nothing was kept for the account without the flag.
      const [kept] = await db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM ledger_account_balances WHERE account_id = '00000000-0000-0000-0000-000000000002'",
      );
      expect(kept!.n).toBe(0);
    });

    it("keeps nothing of a broken chain, and the balance a balancing transfer left", async () => {
      await twoAccounts(HIST | AccountFlags.debitsMustNotExceedCredits, HIST);
      await create([move(1n, 2n, 1n, 5n)]);
      const broken = await ledger.createTransfers([
        move(2n, 1n, 2n, 2n, { flags: TransferFlags.linked }),
        move(3n, 1n, 2n, 9n),
      ]);
      expect(broken.map((r) => r.status)).toEqual(["linked_event_failed", "exceeds_credits"]);
      await create([move(4n, 1n, 2n, 100n, { flags: TransferFlags.balancingDebit })]);
      expect(await balancesOf({ accountId: 1n })).toEqual([
        [1n, 0n, 0n, 0n, 5n],
        [4n, 0n, 5n, 0n, 5n],
      ]);
      // Not merely hidden by the join to the transfers: no row was written for the chain's (an imported chain's
      // timestamps are taken again, and a row left behind would refuse the balance of the one that takes it).
      const kept = await db.query<{ timestamp: bigint }>(
        "SELECT timestamp FROM ledger_account_balances ORDER BY account_id, timestamp",
      );
      expect(kept.map((r) => BigInt(r.timestamp))).toEqual([ts(1n), ts(4n), ts(1n), ts(4n)]);
    });

    it("skips a transfer kept without a balance (written before history was kept) rather than end the page", async () => {
      await twoAccounts(HIST, 0);
      for (const id of [1n, 2n, 3n, 4n, 5n]) await create([move(id, 2n, 1n, id)]);
      // As a ledger upgraded to migration 003 has them: the first three transfers kept nothing.
      await db.query("DELETE FROM ledger_account_balances WHERE timestamp <= $1", [ts(3n)]);
      const page = await ledger.getAccountBalances({ accountId: 1n, limit: 2 });
      expect(rows(page.balances)).toEqual([
        [4n, 0n, 0n, 0n, 10n],
        [5n, 0n, 0n, 0n, 15n],
      ]);
      expect(page.nextCursor).toBe(ts(5n));
      expect(await balancesOf({ accountId: 1n, reversed: true, limit: 3 })).toEqual([
        [5n, 0n, 0n, 0n, 15n],
        [4n, 0n, 0n, 0n, 10n],
      ]);
    });

    it("keeps them in order through batches written while others commit, and an expiry is no transfer", async () => {
      await twoAccounts(HIST, 0);
      // Many callers at once: on PostgreSQL the writer pipelines their batches.
      const calls = Array.from({ length: 60 }, (_, i) =>
        ledger.createTransfers([move(100n + BigInt(i), 2n, 1n, 1n)]),
      );
      for (const results of await Promise.all(calls)) expect(results[0]!.status).toBe("created");
      const page = await ledger.getAccountBalances({ accountId: 1n, limit: 100 });
      expect(page.balances.map((b) => b.creditsPosted)).toEqual(
        Array.from({ length: 60 }, (_, i) => BigInt(i + 1)),
      );
      const transfers = await ledger.getAccountTransfers({ accountId: 1n, limit: 100 });
      expect(page.balances.map((b) => b.timestamp)).toEqual(transfers.transfers.map((t) => t.timestamp));
      // A pending transfer with a timeout expires: the sweep moves the balance, and keeps no balance of its own.
      const [pending] = await ledger.createTransfers([
        move(7n, 1n, 2n, 4n, { flags: TransferFlags.pending, timeout: 1 }),
      ]);
      expect(pending!.status).toBe("created");
      expect(await ledger.expirePendingTransfers(pending!.timestamp + 2_000_000_000n)).toBe(1);
      const after = await ledger.getAccountBalances({ accountId: 1n, limit: 2, reversed: true });
      expect(after.balances.map((b) => [b.debitsPending, b.creditsPosted])).toEqual([
        [4n, 60n],
        [0n, 60n],
      ]);
      await create([move(8n, 2n, 1n, 1n)]);
      const [latest] = (await ledger.getAccountBalances({ accountId: 1n, limit: 1, reversed: true }))
        .balances;
      expect([latest!.debitsPending, latest!.creditsPosted]).toEqual([0n, 61n]);
    });
  });
