// TigerBeetle's query_accounts and query_transfers: the accounts or transfers whose fields equal the filter's (0: any),
// in timestamp order, newest first when reversed. TigerBeetle's two tables, the same matrix for each, and what ours
// adds: a cursor, and no spent id's row among the transfers.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../../gateway/db/index.ts";
import {
  AccountFlags,
  createLedger,
  type Ledger,
  LedgerRequestInvalidError,
  type QueryFilter,
} from "../../gateway/ledger/index.ts";
import { openStore, storeNames } from "./stores.ts";

type Fields = [ud128: bigint, ud64: bigint, ud32: number, ledger: number, code: number];
const fieldsOf = ([userData128, userData64, userData32, ledger, code]: Fields) => ({
  userData128,
  userData64,
  userData32,
  ledger,
  code,
});

/** Eight rows of TigerBeetle's table: user data 128, 64 and 32, ledger and code (code i + 1 in the transfers'). */
const table: Fields[] = [
  [1000n, 10n, 1, 1, 1],
  [1000n, 11n, 2, 2, 2],
  [1000n, 10n, 3, 3, 3],
  [1000n, 11n, 4, 4, 4],
  [2000n, 10n, 1, 3, 5],
  [2000n, 11n, 2, 2, 6],
  [2000n, 10n, 3, 1, 7],
  [1000n, 10n, 1, 1, 1],
];

for (const storeName of storeNames)
  describe(`queries on ${storeName}`, () => {
    let db: Db;
    let ledger: Ledger;
    /** Timestamps of accounts 1..8 and of transfers 1..8. */
    const accountAt: bigint[] = [];
    const transferAt: bigint[] = [];

    beforeAll(async () => {
      db = await openStore(storeName);
      ledger = createLedger({ db, limits: { expiryIntervalMs: 0 } });
      const made = await ledger.createAccounts(
        table.map((row, i) => ({ id: BigInt(i + 1), ...fieldsOf(row) })),
      );
      expect(made.map((r) => r.status)).toEqual(table.map(() => "created"));
      accountAt.push(...made.map((r) => r.timestamp));
      // Transfers on two ledgers: 101, 102 on ledger 1 and 103, 104 on ledger 2, as TigerBeetle's A1..A4.
      await ledger.createAccounts([
        { id: 101n, ledger: 1, code: 1 },
        { id: 102n, ledger: 1, code: 1 },
        { id: 103n, ledger: 2, code: 1 },
        { id: 104n, ledger: 2, code: 1 },
      ]);
      const pairs: [bigint, bigint][] = [
        [101n, 102n],
        [103n, 104n],
        [102n, 101n],
        [104n, 103n],
        [102n, 101n],
        [104n, 103n],
        [101n, 102n],
        [102n, 101n],
      ];
      const transferTable: Fields[] = [
        [1000n, 10n, 1, 1, 1],
        [1000n, 11n, 2, 2, 2],
        [1000n, 10n, 3, 1, 3],
        [1000n, 11n, 4, 2, 4],
        [2000n, 10n, 1, 1, 5],
        [2000n, 11n, 2, 2, 6],
        [2000n, 10n, 3, 1, 7],
        [1000n, 10n, 1, 1, 1],
      ];
      const created = await ledger.createTransfers(
        transferTable.map((row, i) => ({
          id: BigInt(i + 1),
          debitAccountId: pairs[i]![0],
          creditAccountId: pairs[i]![1],
          amount: i === 0 ? 0n : BigInt(10 + i),
          ...fieldsOf(row),
        })),
      );
      expect(created.map((r) => r.status)).toEqual(transferTable.map(() => "created"));
      transferAt.push(...created.map((r) => r.timestamp));
      // A spent id (a transfer refused for a balance limit) leaves a row that is no transfer.
      await ledger.createAccounts([
        { id: 105n, ledger: 1, code: 1, flags: AccountFlags.debitsMustNotExceedCredits },
      ]);
      const [refused] = await ledger.createTransfers([
        { id: 9n, debitAccountId: 105n, creditAccountId: 101n, amount: 1n, ledger: 1, code: 1 },
      ]);
      expect(refused!.status).toBe("exceeds_credits");
    });
    afterAll(async () => {
      await ledger.close();
      await db.close();
    });

    /** The same matrix for both, as TigerBeetle runs it; `at` names an object's timestamp by its number. */
    const matrix = (at: (n: number) => bigint): [QueryFilter, number[]][] => [
      [{ limit: 10, userData128: 1000n }, [1, 2, 3, 4, 8]],
      [{ limit: 10, userData128: 1000n, reversed: true }, [8, 4, 3, 2, 1]],
      [{ limit: 10, userData64: 10n, userData32: 3 }, [3, 7]],
      [{ limit: 10, userData64: 10n, userData32: 3, reversed: true }, [7, 3]],
      [{ limit: 10, userData64: 11n, userData32: 2, ledger: 2 }, [2, 6]],
      [{ limit: 10, userData128: 1000n, userData64: 10n, userData32: 1, ledger: 1, code: 1 }, [1, 8]],
      [
        { limit: 10, userData128: 1000n, userData64: 10n, userData32: 1, ledger: 1, code: 1, reversed: true },
        [8, 1],
      ],
      [{ limit: 10, userData128: 1000n, timestampMin: at(3) }, [3, 4, 8]],
      [{ limit: 10, userData128: 1000n, timestampMax: at(3) }, [1, 2, 3]],
      [{ limit: 10, userData128: 1000n, timestampMin: at(2), timestampMax: at(4) }, [2, 3, 4]],
      [{ limit: 10 }, [1, 2, 3, 4, 5, 6, 7, 8]],
      [{ limit: 10, reversed: true }, [8, 7, 6, 5, 4, 3, 2, 1]],
      [{ limit: 3, timestampMin: at(2) }, [2, 3, 4]],
      [{ limit: 1 }, [1]],
      [{ limit: 1, reversed: true }, [8]],
      [{ limit: 0 }, []],
      [{ limit: 10, userData128: 3000n }, []],
      [{ limit: 10, userData128: 1000n, code: 5 }, []],
      [{ limit: 10, userData128: 1000n, userData64: 10n, userData32: 1, ledger: 1, code: 2 }, []],
      [{ limit: 10, userData128: 1000n, timestampMin: at(5), timestampMax: at(7) }, []],
      [{ limit: 10, timestampMin: at(7), timestampMax: at(5) }, []],
    ];

    it("queries accounts (TigerBeetle: query_accounts)", async () => {
      const at = (n: number) => accountAt[n - 1]!;
      for (const [filter, expected] of matrix(at)) {
        // TigerBeetle's table has these eight accounts only: the transfers' accounts, made after them, are left out.
        const { accounts } = await ledger.queryAccounts({ timestampMax: at(8), ...filter });
        expect(
          accounts.map((a) => Number(a.id)),
          JSON.stringify(filter, bigints),
        ).toEqual(expected);
      }
    });

    it("queries transfers (TigerBeetle: query_transfers), never a spent id", async () => {
      const at = (n: number) => transferAt[n - 1]!;
      for (const [filter, expected] of matrix(at)) {
        const { transfers } = await ledger.queryTransfers(filter);
        expect(
          transfers.map((t) => Number(t.id)),
          JSON.stringify(filter, bigints),
        ).toEqual(expected);
      }
      expect((await ledger.queryTransfers({ limit: 10, timestampMin: at(8) + 1n })).transfers).toEqual([]);
    });

    it("pages with a cursor, and refuses a field outside its type", async () => {
      const first = await ledger.queryTransfers({ limit: 3, userData128: 1000n });
      expect(first.transfers.map((t) => t.id)).toEqual([1n, 2n, 3n]);
      const second = await ledger.queryTransfers({ limit: 3, userData128: 1000n, after: first.nextCursor! });
      expect(second.transfers.map((t) => t.id)).toEqual([4n, 8n]);
      expect(second.nextCursor).toBeNull();
      const back = await ledger.queryAccounts({ limit: 2, reversed: true, ledger: 1 });
      expect(back.accounts.map((a) => a.id)).toEqual([105n, 102n]);
      const older = await ledger.queryAccounts({
        limit: 2,
        reversed: true,
        ledger: 1,
        after: back.nextCursor!,
      });
      expect(older.accounts.map((a) => a.id)).toEqual([101n, 8n]);
      await expect(ledger.queryAccounts({ limit: 10, ledger: 2 ** 32 })).rejects.toBeInstanceOf(
        LedgerRequestInvalidError,
      );
      await expect(ledger.queryTransfers({ limit: -1 })).rejects.toBeInstanceOf(LedgerRequestInvalidError);
    });
  });

const bigints = (_key: string, value: unknown) => (typeof value === "bigint" ? value.toString() : value);
