// TigerBeetle's sticky transient failures (since 0.16.4): a transfer that fails with a result that depends on the
// ledger's state at the time (an account not found or closed, a pending transfer not found, a balance limit) spends its
// id, and the id asked again fails with id_already_failed whatever changed meanwhile; any other failure leaves the id
// free. The same on both stores, through the locked and the pipelined writer, across writers on one database, and
// `transientFailures: "retryable"` (the gateway's) evaluating the id again.
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from "vitest";
import { type Db, migrate, openPglite, openPostgres } from "../../gateway/db/index.ts";
import {
  AccountFlags,
  type CreateLedgerParams,
  createLedger,
  idToUuid,
  type Ledger,
  ledgerId,
  ledgerMigrations,
  selectTransfersWithStatus,
  TransferFlags,
  type TransferInput,
} from "../../gateway/ledger/index.ts";
import { ledgerInvariantProblems } from "../support/ledger-invariants.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { noteRefusals } from "../support/recording-db.ts";
import { type StoreName, storeNames } from "./stores.ts";

const L = 1;

/** A store, and a way to open it again as another process would (PGlite: the same, it has one connection). */
async function openShared(name: StoreName): Promise<{ db: Db; another(): Promise<Db> }> {
  if (name === "pglite") {
    const db = await openPglite(undefined);
    await migrate(db, [ledgerMigrations]);
    return { db, another: async () => db };
  }
  const url = await createTestDatabase(inject("postgresUrl"), "ledger");
  const open = () => openPostgres({ url, poolSizeMax: 4, statementTimeoutMs: 60_000 });
  const db = open();
  await migrate(db, [ledgerMigrations]);
  return { db, another: async () => open() };
}

for (const storeName of storeNames)
  describe(`transient failures on ${storeName}`, () => {
    let db: Db;
    let another: () => Promise<Db>;
    let ledger: Ledger;
    const opened: { ledger: Ledger; db: Db }[] = [];
    const accounts = { payer: ledgerId(), payee: ledgerId(), late: ledgerId() };
    const ledgerOn = (on: Db, params: Partial<CreateLedgerParams> = {}) => {
      const made = createLedger({ db: on, limits: { expiryIntervalMs: 0 }, ...params });
      opened.push({ ledger: made, db: on });
      return made;
    };
    const move = (id: bigint, amount: bigint, fields: Partial<TransferInput> = {}): TransferInput => ({
      id,
      debitAccountId: accounts.payer,
      creditAccountId: accounts.payee,
      amount,
      ledger: L,
      code: 1,
      ...fields,
    });
    const statuses = async (on: Ledger, transfers: TransferInput[]) =>
      (await on.createTransfers(transfers)).map((result) => result.status);
    /** Credits the payer from the payee (whose balance has no limit). */
    const fund = async (amount: bigint) =>
      expect(
        await statuses(ledger, [
          move(ledgerId(), amount, { debitAccountId: accounts.payee, creditAccountId: accounts.payer }),
        ]),
      ).toEqual(["created"]);

    beforeAll(async () => {
      ({ db, another } = await openShared(storeName));
      ledger = ledgerOn(db);
    });
    // Each test its own accounts: a balance one test leaves (funded, or spent) is no other's starting point, so the
    // tests pass in any order (`--sequence.shuffle`).
    beforeEach(async () => {
      Object.assign(accounts, { payer: ledgerId(), payee: ledgerId(), late: ledgerId() });
      const made = await ledger.createAccounts([
        { id: accounts.payer, ledger: L, code: 10, flags: AccountFlags.debitsMustNotExceedCredits },
        { id: accounts.payee, ledger: L, code: 10 },
      ]);
      expect(made.map((r) => r.status)).toEqual(["created", "created"]);
    });
    afterAll(async () => {
      for (const { ledger: made } of opened) await made.close();
      for (const on of new Set(opened.map(({ db: used }) => used))) await on.close();
    });

    it("a transfer short of funds spends its id: funded since, it is id_already_failed; a new id is created", async () => {
      const id = ledgerId();
      expect(await statuses(ledger, [move(id, 1_000_000n)])).toEqual(["exceeds_credits"]);
      await fund(1_000_000n);
      expect(await statuses(ledger, [move(id, 1_000_000n)])).toEqual(["id_already_failed"]);
      // The same id with other fields too: the id is spent, not the transfer.
      expect(await statuses(ledger, [move(id, 1n, { code: 2 })])).toEqual(["id_already_failed"]);
      expect(await ledger.lookupTransfers([id])).toEqual([]);
      expect(await statuses(ledger, [move(ledgerId(), 1_000_000n)])).toEqual(["created"]);
    });

    it("an account not found, then created: the transfer's id stays spent", async () => {
      const id = ledgerId();
      const toLate = move(id, 1n, { debitAccountId: accounts.payee, creditAccountId: accounts.late });
      expect(await statuses(ledger, [toLate])).toEqual(["credit_account_not_found"]);
      expect((await ledger.createAccounts([{ id: accounts.late, ledger: L, code: 10 }]))[0]?.status).toBe(
        "created",
      );
      expect(await statuses(ledger, [toLate])).toEqual(["id_already_failed"]);
    });

    it("a post of a pending transfer not there yet spends the post's id, and a pending id that was spent is not found", async () => {
      const pendingId = ledgerId();
      const postId = ledgerId();
      const post = move(postId, 5n, {
        flags: TransferFlags.postPendingTransfer,
        pendingId,
        debitAccountId: 0n,
        creditAccountId: 0n,
      });
      expect(await statuses(ledger, [post])).toEqual(["pending_transfer_not_found"]);
      await fund(5n);
      expect(await statuses(ledger, [move(pendingId, 5n, { flags: TransferFlags.pending })])).toEqual([
        "created",
      ]);
      expect(await statuses(ledger, [post])).toEqual(["id_already_failed"]);
      // Posted under a new id, the reservation goes through.
      expect(await statuses(ledger, [{ ...post, id: ledgerId() }])).toEqual(["created"]);

      // A spent id is no transfer: a post naming it as its pending transfer does not find one.
      const spent = ledgerId();
      expect(await statuses(ledger, [move(spent, 10n ** 15n)])).toEqual(["exceeds_credits"]);
      const postOfSpent = move(ledgerId(), 1n, {
        flags: TransferFlags.postPendingTransfer,
        pendingId: spent,
        debitAccountId: 0n,
        creditAccountId: 0n,
      });
      expect(await statuses(ledger, [postOfSpent])).toEqual(["pending_transfer_not_found"]);
    });

    it("in a linked chain, only the event that failed transiently is spent; the others take linked_event_failed and stay free", async () => {
      const [first, short] = [ledgerId(), ledgerId()];
      await fund(1n); // the first would pass alone
      const chain = [move(first, 1n, { flags: TransferFlags.linked }), move(short, 10n ** 15n)];
      expect(await statuses(ledger, chain)).toEqual(["linked_event_failed", "exceeds_credits"]);
      expect(await statuses(ledger, [move(first, 1n)])).toEqual(["created"]);
      expect(await statuses(ledger, [move(short, 1n)])).toEqual(["id_already_failed"]);
    });

    it("a failure that does not depend on the ledger's state leaves the id free", async () => {
      const id = ledgerId();
      expect(await statuses(ledger, [move(id, 1n, { creditAccountId: accounts.payer })])).toEqual([
        "accounts_must_be_different",
      ]);
      expect(await statuses(ledger, [move(id, 1n, { ledger: 2 })])).toEqual([
        "transfer_must_have_the_same_ledger_as_accounts",
      ]);
      await fund(1n);
      expect(await statuses(ledger, [move(id, 1n)])).toEqual(["created"]);
      // Checks that come before the id's: still theirs on a spent id.
      const spent = ledgerId();
      expect(await statuses(ledger, [move(spent, 10n ** 15n)])).toEqual(["exceeds_credits"]);
      expect(await statuses(ledger, [move(spent, 1n, { flags: 1 << 15 })])).toEqual(["reserved_flag"]);
    });

    it("within one request, and across requests sent together: a later event sees the id spent by an earlier one", async () => {
      const id = ledgerId();
      expect(await statuses(ledger, [move(id, 10n ** 15n), move(id, 10n ** 15n)])).toEqual([
        "exceeds_credits",
        "id_already_failed",
      ]);
      const other = ledgerId();
      const [shortOne, again] = await Promise.all([
        ledger.createTransfers([move(other, 10n ** 15n)]),
        ledger.createTransfers([move(other, 10n ** 15n)]),
      ]);
      expect([shortOne[0]?.status, again[0]?.status]).toEqual(["exceeds_credits", "id_already_failed"]);
    });

    it("the other transient results spend the id too: a credit limit, a debit account not found, a closed account", async () => {
      const [capped, closable, missing] = [ledgerId(), ledgerId(), ledgerId()];
      const made = await ledger.createAccounts([
        { id: capped, ledger: L, code: 10, flags: AccountFlags.creditsMustNotExceedDebits },
        { id: closable, ledger: L, code: 10 },
      ]);
      expect(made.map((r) => r.status)).toEqual(["created", "created"]);
      const overCap = move(ledgerId(), 1n, { debitAccountId: accounts.payee, creditAccountId: capped });
      const fromMissing = move(ledgerId(), 1n, { debitAccountId: missing });
      const closing = move(ledgerId(), 0n, {
        debitAccountId: closable,
        creditAccountId: accounts.payee,
        flags: TransferFlags.pending | TransferFlags.closingDebit,
      });
      const fromClosed = move(ledgerId(), 0n, { debitAccountId: closable });
      expect(await statuses(ledger, [overCap, fromMissing, closing, fromClosed])).toEqual([
        "exceeds_debits",
        "debit_account_not_found",
        "created",
        "debit_account_already_closed",
      ]);
      // Each cause gone: the cap met by a debit first, the account made, the closing voided.
      expect(
        await statuses(ledger, [
          move(ledgerId(), 1n, { debitAccountId: capped, creditAccountId: accounts.payee }),
        ]),
      ).toEqual(["created"]);
      expect((await ledger.createAccounts([{ id: missing, ledger: L, code: 10 }]))[0]?.status).toBe(
        "created",
      );
      const reopen = {
        ...closing,
        id: ledgerId(),
        flags: TransferFlags.voidPendingTransfer,
        pendingId: closing.id,
        amount: 0n,
      };
      expect(await statuses(ledger, [reopen])).toEqual(["created"]);
      expect(await statuses(ledger, [overCap, fromMissing, fromClosed])).toEqual([
        "id_already_failed",
        "id_already_failed",
        "id_already_failed",
      ]);
    });

    it("a writer remembers the ids its committed batches spent: a retry is refused from memory, not by the key", async () => {
      // Its own batches only, one after another: each after the first goes pipelined (the clock's token is its own),
      // where an id the writer does not know is taken for new, and the spent id's row then refuses the insert (23505):
      // the batch, and any behind it, ran again locked. Now the id is answered from what the writer remembers.
      const refused: string[] = [];
      // Closed with the suite's database, not on its own.
      const own = ledgerOn({ ...noteRefusals(db, refused), close: async () => undefined });
      const id = ledgerId();
      expect(await statuses(own, [move(id, 10n ** 17n)])).toEqual(["exceeds_credits"]);
      const topUp = { debitAccountId: accounts.payee, creditAccountId: accounts.payer };
      expect(await statuses(own, [move(ledgerId(), 10n ** 17n, topUp)])).toEqual(["created"]);
      for (let i = 0; i < 3; i++)
        expect(await statuses(own, [move(id, 10n ** 17n), move(ledgerId(), 0n)])).toEqual([
          "id_already_failed",
          "created",
        ]);
      // An id spent by a pipelined batch (the first above ran locked: the writer knew no clock yet) is remembered too.
      const later = ledgerId();
      expect(await statuses(own, [move(later, 10n ** 18n)])).toEqual(["exceeds_credits"]);
      expect(await statuses(own, [move(ledgerId(), 10n ** 18n, topUp)])).toEqual(["created"]);
      expect(await statuses(own, [move(later, 10n ** 18n), move(ledgerId(), 0n)])).toEqual([
        "id_already_failed",
        "created",
      ]);
      expect(refused).toEqual([]);
    });

    it("holds across writers on one database, and for a writer started later", async () => {
      const id = ledgerId();
      expect(await statuses(ledger, [move(id, 10n ** 15n)])).toEqual(["exceeds_credits"]);
      await fund(10n ** 15n);
      // Another writer, which never saw the failure: its first batch of the id (pipelined on PostgreSQL: an id it does
      // not know is taken to be new) finds it spent.
      const other = ledgerOn(await another());
      // Its first batch runs locked (it knows no clock yet); the next, with nothing written between, is pipelined.
      expect(await statuses(other, [move(ledgerId(), 0n)])).toEqual(["created"]);
      expect(await statuses(other, [move(id, 10n ** 15n)])).toEqual(["id_already_failed"]);
      // A failure of the other writer's, seen by the first.
      const otherId = ledgerId();
      expect(await statuses(other, [move(otherId, 10n ** 16n)])).toEqual(["exceeds_credits"]);
      await fund(10n ** 16n);
      expect(await statuses(ledger, [move(otherId, 10n ** 16n)])).toEqual(["id_already_failed"]);
    });

    it("the spent ids' rows are in no balance, listing or lookup: the books still check", async () => {
      // Spent here, beside a transfer that is created: its balance is the only one the books may show.
      const spent = [ledgerId(), ledgerId(), ledgerId()];
      await fund(5n);
      expect(
        await statuses(ledger, [...spent.map((id) => move(id, 10n ** 18n)), move(ledgerId(), 5n)]),
      ).toEqual(["exceeds_credits", "exceeds_credits", "exceeds_credits", "created"]);
      const [row] = await db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM ledger_transfers WHERE timestamp = 0 AND id = ANY($1::uuid[])",
        [spent.map(idToUuid)],
      );
      expect(row?.n).toBe(3);
      const [payer] = await ledger.lookupAccounts([accounts.payer]);
      expect([payer?.debitsPosted, payer?.creditsPosted]).toEqual([5n, 5n]);
      expect(await ledgerInvariantProblems(db)).toEqual([]);
      // Looked up by id, a spent id is no transfer, through the ledger and through the exported status read, though
      // its row is there.
      const id = spent[0]!;
      const [stored] = await db.query<{ timestamp: bigint }>(
        "SELECT timestamp FROM ledger_transfers WHERE id = $1::uuid",
        [idToUuid(id)],
      );
      expect(stored?.timestamp).toBe(0n);
      expect(await ledger.lookupTransfers([id])).toEqual([]);
      expect(await selectTransfersWithStatus(db, [id])).toEqual([]);
    });

    it("under transientFailures: retryable, nothing is spent: the id asked again is evaluated again", async () => {
      const retrying = ledgerOn(await another(), { transientFailures: "retryable" });
      const id = ledgerId();
      expect(await statuses(retrying, [move(id, 10n ** 17n)])).toEqual(["exceeds_credits"]);
      await fund(10n ** 17n);
      expect(await statuses(retrying, [move(id, 10n ** 17n)])).toEqual(["created"]);
    });
  });
