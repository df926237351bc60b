// Property: for random accounts, transfers, flags, linked chains, two-phase sequences, timeouts and duplicate ids,
// the ledger (through its group-commit writer, several requests at once) gives the same result codes, timestamps,
// balances and stored transfers as the reference model. On PGlite and on PostgreSQL.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../../gateway/db/index.ts";
import {
  AccountFlags,
  type AccountInput,
  amountMax,
  type CreateTransferResult,
  createLedger,
  selectLedgerTotals,
  TransferFlags,
  type TransferInput,
} from "../../gateway/ledger/index.ts";
import { modelCreateAccounts, modelCreateTransfers, modelExpire, newModel } from "./model.ts";
import { openStore, storeNames } from "./stores.ts";

const accountSlots = 6;
const transferSlots = 12;
const runsPerStore = Number(process.env.LEDGER_PROPERTY_RUNS ?? 40);
/**
 * The runs are the same every time unless LEDGER_PROPERTY_SEED names another seed: the check below that the
 * generators reached every interesting result holds for this seed, where a fresh seed each time missed one now
 * and then (pending_transfer_already_posted, 1 run in ~20). To explore, give any integer; a failure prints its
 * seed and path for fast-check to replay.
 */
const seed = Number(process.env.LEDGER_PROPERTY_SEED ?? 20261121);

type Op =
  | { kind: "accounts"; accounts: AccountInput[] }
  | { kind: "transfers"; requests: TransferInput[][] }
  /** a client retrying an earlier request exactly */
  | { kind: "retry"; index: number; tweak: boolean }
  /** reserve, then post or void the reservation, in one batch or in two */
  | {
      kind: "two_phase";
      pending: TransferInput;
      resolve: TransferInput;
      together: boolean;
      again: TransferInput | null;
    }
  | { kind: "tick"; seconds: number };

/** Ids are slots; a run maps slot s to (prefix << 16) | s, so runs on one database never meet. Slot 0 stays 0. */
type Slotted<T> = T;

/**
 * An imported event's timestamp, as an offset from the ledger's last timestamp when the event is sent (withPrefix):
 * just after it (in the past of the request's own slots when it has several, or after a tick), at it, or before it.
 */
const importedTimestampArb = fc.constantFrom(1n, 1n, 2n, 3n, 0n, -5n);

const accountArb = fc.record({
  id: fc.integer({ min: 0, max: accountSlots }).map(BigInt),
  ledger: fc.constantFrom(1, 1, 1, 2, 0),
  code: fc.constantFrom(1, 1, 1, 7, 0),
  flags: fc.constantFrom(0, 0, 0, 2, 2, 4, 6, 8, 32, 1, 1 | 2, 16, 16, 16 | 1),
  userData64: fc.constantFrom(0n, 0n, 5n, 2n ** 64n - 1n),
  timestamp: importedTimestampArb,
}) as fc.Arbitrary<Slotted<AccountInput>>;

const amountArb = fc.oneof(
  { weight: 20, arbitrary: fc.bigInt({ min: 0n, max: 40n }) },
  { weight: 1, arbitrary: fc.constantFrom(amountMax, amountMax - 10n, -1n, amountMax + 1n) },
);

const plainFlags = [
  0,
  0,
  0,
  0,
  0,
  0,
  TransferFlags.linked,
  TransferFlags.balancingDebit,
  TransferFlags.balancingCredit,
  TransferFlags.imported,
  TransferFlags.imported | TransferFlags.linked,
];
const pendingFlags = [
  TransferFlags.pending,
  TransferFlags.pending,
  TransferFlags.pending,
  TransferFlags.pending | TransferFlags.linked,
  TransferFlags.pending | TransferFlags.closingDebit,
  TransferFlags.pending | TransferFlags.imported,
];
const resolveFlags = [
  TransferFlags.postPendingTransfer,
  TransferFlags.postPendingTransfer,
  TransferFlags.postPendingTransfer,
  TransferFlags.postPendingTransfer,
  TransferFlags.voidPendingTransfer,
  TransferFlags.voidPendingTransfer,
  TransferFlags.postPendingTransfer | TransferFlags.linked,
  TransferFlags.postPendingTransfer | TransferFlags.voidPendingTransfer,
  TransferFlags.voidPendingTransfer | TransferFlags.pending,
  TransferFlags.postPendingTransfer | TransferFlags.imported,
];

const transferArb = fc
  .record({
    id: fc.integer({ min: 0, max: transferSlots }).map(BigInt),
    debit: fc.constantFrom(1n, 1n, 2n, 2n, 3n, 3n, 4n, 4n, 1n, 2n, 5n, 6n, 0n),
    credit: fc.constantFrom(1n, 1n, 2n, 2n, 3n, 3n, 4n, 4n, 1n, 2n, 5n, 6n, 0n),
    amount: amountArb,
    ledger: fc.constantFrom(1, 1, 1, 1, 1, 1, 1, 1, 2, 0),
    code: fc.constantFrom(1, 1, 1, 1, 1, 1, 1, 0),
    kind: fc.constantFrom("plain", "plain", "plain", "pending", "pending", "resolve", "resolve"),
    plainFlags: fc.constantFrom(...plainFlags),
    pendingFlags: fc.constantFrom(...pendingFlags),
    resolveFlags: fc.constantFrom(...resolveFlags),
    pendingId: fc.integer({ min: 0, max: transferSlots }).map(BigInt),
    timeout: fc.constantFrom(0, 0, 1, 2, 5),
    userData128: fc.constantFrom(0n, 0n, 9n),
    withEvidence: fc.boolean(),
    zeroAccounts: fc.constantFrom(true, true, true, false),
    fullAmount: fc.boolean(),
    timestamp: importedTimestampArb,
  })
  .map((r): TransferInput => {
    const evidence = r.withEvidence
      ? { rail: "evm", reference: "0xfeed:1", detail: { chainId: "31337" } }
      : undefined;
    if (r.kind === "resolve") {
      return {
        id: r.id,
        debitAccountId: r.zeroAccounts ? 0n : r.debit,
        creditAccountId: r.zeroAccounts ? 0n : r.credit,
        amount: r.fullAmount
          ? (r.resolveFlags & TransferFlags.voidPendingTransfer) !== 0
            ? 0n
            : amountMax
          : r.amount,
        ledger: r.zeroAccounts ? 0 : r.ledger,
        code: r.zeroAccounts ? 0 : r.code,
        flags: r.resolveFlags,
        pendingId: r.pendingId,
        userData128: r.userData128,
        timestamp: r.timestamp,
        ...(evidence === undefined ? {} : { evidence }),
      };
    }
    return {
      id: r.id,
      debitAccountId: r.debit,
      creditAccountId: r.credit,
      amount: r.amount,
      ledger: r.ledger,
      code: r.code,
      flags: r.kind === "pending" ? r.pendingFlags : r.plainFlags,
      ...(r.kind === "pending" ? { timeout: r.timeout } : {}),
      userData128: r.userData128,
      timestamp: r.timestamp,
      ...(evidence === undefined ? {} : { evidence }),
    };
  });

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("accounts" as const),
      accounts: fc.array(accountArb, { minLength: 1, maxLength: 4 }),
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant("transfers" as const),
      requests: fc.array(fc.array(transferArb, { minLength: 1, maxLength: 6 }), {
        minLength: 1,
        maxLength: 3,
      }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant("retry" as const), index: fc.nat(), tweak: fc.boolean() }),
  },
  {
    weight: 3,
    arbitrary: fc
      .record({
        pending: transferArb,
        resolve: transferArb,
        pendingFlags: fc.constantFrom(...pendingFlags.filter((f) => (f & TransferFlags.linked) === 0)),
        post: fc.boolean(),
        together: fc.boolean(),
        again: fc.constantFrom(null, TransferFlags.postPendingTransfer, TransferFlags.voidPendingTransfer),
      })
      .map(({ pending, resolve, pendingFlags: flags, post, together, again }) => {
        const [debit, credit] = pending.amount % 2n === 0n ? [1n, 2n] : [2n, 3n];
        const p: TransferInput = {
          ...pending,
          id: pending.id === 0n ? 1n : pending.id,
          debitAccountId: debit,
          creditAccountId: credit,
          ledger: 1,
          code: 1,
          amount: pending.amount < 0n || pending.amount > 1000n ? 10n : pending.amount,
          flags,
          timeout: pending.timeout ?? 0,
        };
        const r: TransferInput = {
          ...resolve,
          id: resolve.id === p.id ? (p.id % BigInt(transferSlots)) + 1n : resolve.id,
          flags: post ? TransferFlags.postPendingTransfer : TransferFlags.voidPendingTransfer,
          pendingId: p.id,
          debitAccountId: 0n,
          creditAccountId: 0n,
          ledger: 0,
          code: 0,
          amount: post ? (resolve.amount % 2n === 0n ? amountMax : resolve.amount) : 0n,
        };
        // a second post or void of the same reservation, under another id
        const second: TransferInput | null =
          again === null
            ? null
            : {
                ...r,
                id: (r.id % BigInt(transferSlots)) + 1n,
                flags: again,
                amount: again === TransferFlags.voidPendingTransfer ? 0n : amountMax,
              };
        return { kind: "two_phase" as const, pending: p, resolve: r, together, again: second };
      }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant("tick" as const), seconds: fc.integer({ min: 0, max: 3 }) }),
  },
);

// A run starts with a few good accounts so that most transfers get past "not found".
const seedAccounts: AccountInput[] = [
  { id: 1n, ledger: 1, code: 1 },
  { id: 2n, ledger: 1, code: 1 },
  { id: 3n, ledger: 1, code: 1, flags: 2 },
  { id: 4n, ledger: 1, code: 1, flags: 4 },
  { id: 5n, ledger: 2, code: 1 },
];

/**
 * Slot ids to this run's, and an imported event's timestamp offset (importedTimestampArb) to a timestamp after the
 * ledger's last one (`lastTimestamp`, read as the event is sent); an event not imported carries none.
 */
function withPrefix(prefix: bigint, lastTimestamp: () => bigint) {
  const map = (id: bigint) => (id === 0n ? 0n : (prefix << 16n) | id);
  const at = <E extends { flags?: number; timestamp?: bigint }>(e: E, bit: number) => {
    const { timestamp, ...rest } = e;
    return ((e.flags ?? 0) & bit) !== 0 && timestamp !== undefined
      ? { ...rest, timestamp: lastTimestamp() + timestamp }
      : rest;
  };
  return {
    map,
    account: (a: AccountInput): AccountInput => ({ ...at(a, AccountFlags.imported), id: map(a.id) }),
    transfer: (t: TransferInput): TransferInput => ({
      ...at(t, TransferFlags.imported),
      id: map(t.id),
      debitAccountId: map(t.debitAccountId),
      creditAccountId: map(t.creditAccountId),
      ...(t.pendingId === undefined ? {} : { pendingId: map(t.pendingId) }),
    }),
  };
}

// One piece by nature: a vitest suite, whose tests share the store opened in its beforeAll; each test is short.
for (const storeName of storeNames) {
  describe(`ledger vs reference model on ${storeName}`, () => {
    let db: Db;
    let runIndex = 0;
    const seen = new Map<string, number>();
    const count = (results: readonly { status: string }[]) => {
      for (const r of results) seen.set(r.status, (seen.get(r.status) ?? 0) + 1);
    };
    beforeAll(async () => {
      db = await openStore(storeName);
    });
    afterAll(async () => {
      await db.close();
    });

    it("gives the model's results, timestamps, balances and transfers", async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 12 }), async (ops) => {
          runIndex++;
          const ids = withPrefix(BigInt(runIndex) * 7919n + BigInt(Date.now()), () => model.lastTimestamp);
          const [clock] = await db.query<{ timestamp_last: bigint }>(
            "SELECT timestamp_last FROM ledger_clock",
          );
          // Far enough ahead that every pending transfer of earlier runs (on this database) has expired.
          let now = clock!.timestamp_last + 1_000n * 1_000_000_000n;
          // Every third run keeps every batch on the locked path (reads under the clock lock), the rest pipeline. Half
          // the runs (of either parity) with transient failures retryable, as the gateway runs the ledger.
          const sticky = runIndex % 4 === 0 || runIndex % 4 === 3;
          const ledger = createLedger({
            db,
            transientFailures: sticky ? "sticky" : "retryable",
            limits: { expiryIntervalMs: 0, ...(runIndex % 3 === 0 ? { pipelineDepthMax: 0 } : {}) },
            nowNs: () => now,
          });
          await ledger.expirePendingTransfers(now);
          const [after] = await db.query<{ timestamp_last: bigint }>(
            "SELECT timestamp_last FROM ledger_clock",
          );
          const model = newModel({ sticky });
          model.lastTimestamp = after!.timestamp_last;
          try {
            const seeded = await ledger.createAccounts(seedAccounts.map(ids.account));
            expect(seeded).toEqual(modelCreateAccounts(model, now, seedAccounts.map(ids.account)));
            const history: TransferInput[][][] = [];
            const submit = async (requests: TransferInput[][]) => {
              history.push(requests);
              // All requests at once: the writer takes them into one batch, in call order.
              // On odd runs the requests reach the writer a moment apart, so that on PostgreSQL they go in separate
              // batches, the next validated and sent while the one before commits (the pipelined path).
              const calls: Promise<CreateTransferResult[]>[] = [];
              for (const request of requests) {
                calls.push(ledger.createTransfers(request));
                if (runIndex % 2 === 1) await new Promise((resolve) => setImmediate(resolve));
              }
              const actual = await Promise.all(calls);
              actual.forEach(count);
              // What imported requests came to (a created import is told from another created only here).
              actual.forEach((results, i) => {
                if (((requests[i]![0]?.flags ?? 0) & TransferFlags.imported) !== 0)
                  count(results.map((r) => ({ status: `imported:${r.status}` })));
              });
              expect(actual).toEqual(modelCreateTransfers(model, now, requests));
            };
            for (const op of ops) {
              if (op.kind === "retry") {
                const earlier = history[op.index % Math.max(history.length, 1)];
                if (earlier !== undefined)
                  await submit(
                    op.tweak ? earlier.map((r) => r.map((t) => ({ ...t, amount: t.amount + 1n }))) : earlier,
                  );
              } else if (op.kind === "two_phase") {
                const pending = ids.transfer(op.pending);
                const resolve = ids.transfer(op.resolve);
                if (op.together) await submit([[pending], [resolve]]);
                else {
                  await submit([[pending]]);
                  await submit([[resolve]]);
                }
                if (op.again !== null) await submit([[ids.transfer(op.again)]]);
              } else if (op.kind === "accounts") {
                const input = op.accounts.map(ids.account);
                const actual = await ledger.createAccounts(input);
                expect(actual).toEqual(modelCreateAccounts(model, now, input));
              } else if (op.kind === "transfers") {
                await submit(op.requests.map((r) => r.map(ids.transfer)));
              } else {
                now += BigInt(op.seconds) * 1_000_000_000n;
                const expired = await ledger.expirePendingTransfers(now);
                expect(expired).toBe(modelExpire(model, now));
              }
            }
            const accountIds = Array.from({ length: accountSlots }, (_, i) => ids.map(BigInt(i + 1)));
            const accounts = await ledger.lookupAccounts(accountIds);
            expect(accounts).toEqual(accountIds.flatMap((id) => model.accounts.get(id) ?? []));
            const transferIds = Array.from({ length: transferSlots }, (_, i) => ids.map(BigInt(i + 1)));
            const transfers = await ledger.lookupTransfers(transferIds);
            expect(transfers).toEqual(transferIds.flatMap((id) => model.transfers.get(id) ?? []));
          } finally {
            await ledger.close();
          }
        }),
        { numRuns: runsPerStore, seed },
      );
      // The generators reach the interesting paths (a guard against a test that only ever sees "not found").
      if (process.env.LEDGER_PROPERTY_STATS) console.log(storeName, Object.fromEntries(seen));
      for (const status of [
        "created",
        "exists",
        "linked_event_failed",
        "exceeds_credits",
        "pending_transfer_not_found",
        "pending_transfer_already_posted",
        "exists_with_different_amount",
        "debit_account_not_found",
        "id_already_failed",
        "imported:created",
        "imported_event_timestamp_must_not_regress",
        "imported_event_expected",
      ]) {
        expect(seen.get(status) ?? 0, status).toBeGreaterThan(0);
      }
      for (const total of await selectLedgerTotals(db)) {
        expect(total.debitsPosted).toBe(total.creditsPosted);
        expect(total.debitsPending).toBe(total.creditsPending);
      }
    });
  });
}
