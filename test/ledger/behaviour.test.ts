import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { SwitchyardError } from "../../core/errors.ts";
import type { Db } from "../../gateway/db/index.ts";
import {
  AccountFlags,
  type AccountInput,
  AlongsideStatementError,
  amountMax,
  createLedger,
  type Ledger,
  LedgerBackpressureError,
  LedgerRequestInvalidError,
  LedgerRequestTooLargeError,
  LedgerStoreError,
  ledgerId,
  selectLedgerTotals,
  TransferFlags,
} from "../../gateway/ledger/index.ts";
import { openStore, storeNames } from "./stores.ts";

// The ledger's behaviour, end to end through the writer, the same on both stores: idempotency, bad input with the
// precise result code, linked chains, two-phase with partial posts, voids and expiry, cursors, limits, and a caller's
// statement written with its transfers.
// One piece by nature: a vitest suite, whose tests share the store opened in its beforeAll (and its clock, which only
// moves forward); each test is short, and makes its own accounts.
for (const storeName of storeNames)
  describe(`ledger behaviour on ${storeName}`, () => {
    let db: Db;
    let ledger: Ledger;
    let now = 1_700_000_000_000_000_000n;
    const L = 1;
    const accounts = { a: ledgerId(), b: ledgerId(), limited: ledgerId(), other: ledgerId() };

    beforeAll(async () => {
      db = await openStore(storeName);
      ledger = createLedger({ db, limits: { expiryIntervalMs: 0 }, nowNs: () => now });
    });
    // Each test its own accounts, so that none starts from balances another left: they pass in any order.
    beforeEach(async () => {
      Object.assign(accounts, { a: ledgerId(), b: ledgerId(), limited: ledgerId(), other: ledgerId() });
      const results = await ledger.createAccounts([
        { id: accounts.a, ledger: L, code: 10 },
        { id: accounts.b, ledger: L, code: 10, userData64: 2n ** 64n - 1n },
        { id: accounts.limited, ledger: L, code: 20, flags: AccountFlags.debitsMustNotExceedCredits },
        { id: accounts.other, ledger: 2, code: 10 },
      ]);
      expect(results.map((r) => r.status)).toEqual(["created", "created", "created", "created"]);
    });
    afterAll(async () => {
      await ledger.close();
      await db.close();
    });

    it("creates accounts idempotently and looks them up", async () => {
      const again = await ledger.createAccounts([
        { id: accounts.a, ledger: L, code: 10 },
        { id: accounts.a, ledger: L, code: 11 },
        { id: 0n, ledger: L, code: 1 },
        { id: ledgerId(), ledger: 0, code: 1 },
        { id: ledgerId(), ledger: 1, code: 1, flags: 2 | 4 },
      ]);
      expect(again.map((r) => r.status)).toEqual([
        "exists",
        "exists_with_different_code",
        "id_must_not_be_zero",
        "ledger_must_not_be_zero",
        "flags_are_mutually_exclusive",
      ]);
      const [b] = await ledger.lookupAccounts([accounts.b]);
      expect(b?.userData64).toBe(2n ** 64n - 1n);
      expect(b?.debitsPosted).toBe(0n);
    });

    it("posts a transfer, is idempotent, and keeps the books balanced", async () => {
      const id = ledgerId();
      const transfer = {
        id,
        debitAccountId: accounts.a,
        creditAccountId: accounts.b,
        amount: 500n,
        ledger: L,
        code: 1,
        userData128: 42n,
        evidence: { rail: "evm", reference: "0xabc:3", detail: { chainId: "31337" } },
      };
      const [first] = await ledger.createTransfers([transfer]);
      expect(first?.status).toBe("created");
      const [again, different] = await ledger.createTransfers([transfer, { ...transfer, amount: 501n }]);
      expect(again).toEqual({ status: "exists", timestamp: first!.timestamp });
      expect(different?.status).toBe("exists_with_different_amount");
      const [stored] = await ledger.lookupTransfers([id]);
      expect(stored).toMatchObject({ id, amount: 500n, userData128: 42n, timestamp: first!.timestamp });
      expect(stored?.evidence).toEqual(transfer.evidence);
      const [a, b] = await ledger.lookupAccounts([accounts.a, accounts.b]);
      expect(a?.debitsPosted).toBe(500n);
      expect(b?.creditsPosted).toBe(500n);
      for (const total of await selectLedgerTotals(db)) {
        expect(total.debitsPosted).toBe(total.creditsPosted);
        expect(total.debitsPending).toBe(total.creditsPending);
      }
    });

    it("rejects bad input with the precise code", async () => {
      const base = { debitAccountId: accounts.a, creditAccountId: accounts.b, ledger: L, code: 1 };
      const results = await ledger.createTransfers([
        { ...base, id: ledgerId(), amount: -1n },
        { ...base, id: ledgerId(), amount: amountMax + 1n },
        { ...base, id: ledgerId(), amount: 1n << 128n },
        { ...base, id: ledgerId(), amount: 1n, creditAccountId: accounts.a },
        { ...base, id: ledgerId(), amount: 1n, creditAccountId: accounts.other },
        { ...base, id: ledgerId(), amount: 1n, ledger: 2 },
        { ...base, id: ledgerId(), amount: 1n, debitAccountId: ledgerId() },
        { ...base, id: ledgerId(), amount: 1n, creditAccountId: ledgerId() },
        { ...base, id: ledgerId(), amount: 1n, debitAccountId: accounts.limited },
        { ...base, id: ledgerId(), amount: 0n },
        { ...base, id: ledgerId(), amount: 1n, timeout: 5 },
        { ...base, id: ledgerId(), amount: 1n, evidence: { rail: "", reference: "x" } },
        // What jsonb cannot store: the transfer's own result, not its batch's failure.
        {
          ...base,
          id: ledgerId(),
          amount: 1n,
          evidence: { rail: "evm", reference: `x${String.fromCharCode(0)}` },
        },
        {
          ...base,
          id: ledgerId(),
          amount: 1n,
          evidence: { rail: "evm", reference: "x", detail: { note: "\uD800" } },
        },
      ]);
      expect(results.map((r) => r.status)).toEqual([
        "amount_must_not_be_negative",
        // Any u128 is an amount, as in TigerBeetle: past our int8 balances it is their overflow.
        "overflows_debits_posted",
        "amount_must_not_exceed_max",
        "accounts_must_be_different",
        "accounts_must_have_the_same_ledger",
        "transfer_must_have_the_same_ledger_as_accounts",
        "debit_account_not_found",
        "credit_account_not_found",
        "exceeds_credits",
        "created",
        "timeout_reserved_for_pending_transfer",
        "evidence_invalid",
        "evidence_invalid",
        "evidence_invalid",
      ]);
    });

    it("refuses the fields the ledger sets, with TigerBeetle's codes in its order: timestamp, reserved, balances", async () => {
      const account = (fields: Partial<AccountInput>): AccountInput => ({
        id: ledgerId(),
        ledger: L,
        code: 10,
        ...fields,
      });
      const accountResults = await ledger.createAccounts([
        account({ timestamp: 1n, reserved: 1, flags: 1 << 15 }),
        account({ reserved: 1, flags: 1 << 15 }),
        account({ debitsPending: 1n, ledger: 0 }),
        account({ debitsPosted: 1n }),
        account({ creditsPending: 1n }),
        account({ creditsPosted: 1n, code: 0 }),
        // An account that exists is `exists` whatever balances are asked (TigerBeetle compares flags, user data,
        // ledger and code), but a timestamp is refused before the id is looked at.
        { id: accounts.a, ledger: L, code: 10, creditsPosted: 5n },
        { id: accounts.a, ledger: L, code: 10, timestamp: 7n },
        account({ timestamp: 0n, reserved: 0, debitsPending: 0n }),
      ]);
      expect(accountResults.map((r) => r.status)).toEqual([
        "timestamp_must_be_zero",
        "reserved_field",
        "debits_pending_must_be_zero",
        "debits_posted_must_be_zero",
        "credits_pending_must_be_zero",
        "credits_posted_must_be_zero",
        "exists",
        "timestamp_must_be_zero",
        "created",
      ]);
      const base = {
        debitAccountId: accounts.a,
        creditAccountId: accounts.b,
        ledger: L,
        code: 1,
        amount: 1n,
      };
      const transferResults = await ledger.createTransfers([
        { ...base, id: ledgerId(), timestamp: 1n, flags: 1 << 15 },
        { ...base, id: 0n, timestamp: 1n },
        // Imported after a first that is not: TigerBeetle says so before anything else of it.
        { ...base, id: ledgerId(), timestamp: 1n, flags: TransferFlags.imported | (1 << 15) },
        { ...base, id: ledgerId(), timestamp: 0n },
      ]);
      expect(transferResults.map((r) => r.status)).toEqual([
        "timestamp_must_be_zero",
        "timestamp_must_be_zero",
        "imported_event_not_expected",
        "created",
      ]);
    });

    it("applies a linked chain all or nothing, and fails an open chain", async () => {
      const [before] = await ledger.lookupAccounts([accounts.a]);
      const base = { debitAccountId: accounts.a, creditAccountId: accounts.b, ledger: L, code: 1 };
      const broken = await ledger.createTransfers([
        { ...base, id: ledgerId(), amount: 7n, flags: TransferFlags.linked },
        {
          ...base,
          id: ledgerId(),
          amount: 1n,
          flags: TransferFlags.linked,
          debitAccountId: accounts.limited,
        },
        { ...base, id: ledgerId(), amount: 3n },
        { ...base, id: ledgerId(), amount: 2n, flags: TransferFlags.linked },
      ]);
      expect(broken.map((r) => r.status)).toEqual([
        "linked_event_failed",
        "exceeds_credits",
        "linked_event_failed",
        "linked_event_chain_open",
      ]);
      const [after] = await ledger.lookupAccounts([accounts.a]);
      expect(after?.debitsPosted).toBe(before!.debitsPosted);
    });

    it("reserves, partially posts, voids and expires pending transfers", async () => {
      const base = { debitAccountId: accounts.a, creditAccountId: accounts.b, ledger: L, code: 1 };
      const p1 = ledgerId();
      const p2 = ledgerId();
      const p3 = ledgerId();
      const created = await ledger.createTransfers([
        { ...base, id: p1, amount: 100n, flags: TransferFlags.pending },
        { ...base, id: p2, amount: 50n, flags: TransferFlags.pending },
        { ...base, id: p3, amount: 30n, flags: TransferFlags.pending, timeout: 10 },
      ]);
      expect(created.map((r) => r.status)).toEqual(["created", "created", "created"]);
      const [a0] = await ledger.lookupAccounts([accounts.a]);
      expect(a0?.debitsPending).toBe(180n);

      const post = { id: ledgerId(), debitAccountId: 0n, creditAccountId: 0n, ledger: 0, code: 0 };
      const resolved = await ledger.createTransfers([
        { ...post, amount: 60n, pendingId: p1, flags: TransferFlags.postPendingTransfer },
        { ...post, id: ledgerId(), amount: 0n, pendingId: p1, flags: TransferFlags.voidPendingTransfer },
        { ...post, id: ledgerId(), amount: 0n, pendingId: p2, flags: TransferFlags.voidPendingTransfer },
        { ...post, id: ledgerId(), amount: 200n, pendingId: p3, flags: TransferFlags.postPendingTransfer },
      ]);
      expect(resolved.map((r) => r.status)).toEqual([
        "created",
        "pending_transfer_already_posted",
        "created",
        "exceeds_pending_transfer_amount",
      ]);
      const [posted] = await ledger.lookupTransfers([post.id]);
      expect(posted).toMatchObject({ amount: 60n, debitAccountId: accounts.a, pendingId: p1 });

      now += 11n * 1_000_000_000n;
      const [late] = await ledger.createTransfers([
        {
          ...post,
          id: ledgerId(),
          amount: amountMax,
          pendingId: p3,
          flags: TransferFlags.postPendingTransfer,
        },
      ]);
      expect(late?.status).toBe("pending_transfer_expired");
      expect(await ledger.expirePendingTransfers()).toBe(1);
      expect(await ledger.expirePendingTransfers()).toBe(0);
      const [a1] = await ledger.lookupAccounts([accounts.a]);
      expect(a1?.debitsPending).toBe(0n);
      expect(a1!.debitsPosted - a0!.debitsPosted).toBe(60n);
      const [again] = await ledger.createTransfers([
        { ...post, id: ledgerId(), amount: 0n, pendingId: p3, flags: TransferFlags.voidPendingTransfer },
      ]);
      expect(again?.status).toBe("pending_transfer_expired");
      const [postVoided] = await ledger.createTransfers([
        {
          ...post,
          id: ledgerId(),
          amount: amountMax,
          pendingId: p2,
          flags: TransferFlags.postPendingTransfer,
        },
      ]);
      expect(postVoided?.status).toBe("pending_transfer_already_voided");
    });

    it("resolves a pending transfer within the batch that opened it, and never expires it later", async () => {
      const base = { debitAccountId: accounts.a, creditAccountId: accounts.b, ledger: L, code: 1 };
      const resolve = { debitAccountId: 0n, creditAccountId: 0n, ledger: 0, code: 0 };
      const [before] = await ledger.lookupAccounts([accounts.a]);
      const posted = ledgerId();
      const voided = ledgerId();
      const results = await ledger.createTransfers([
        { ...base, id: posted, amount: 40n, flags: TransferFlags.pending, timeout: 5 },
        { ...base, id: voided, amount: 25n, flags: TransferFlags.pending, timeout: 5 },
        {
          ...resolve,
          id: ledgerId(),
          amount: 30n,
          pendingId: posted,
          flags: TransferFlags.postPendingTransfer,
        },
        {
          ...resolve,
          id: ledgerId(),
          amount: 0n,
          pendingId: voided,
          flags: TransferFlags.voidPendingTransfer,
        },
      ]);
      expect(results.map((r) => r.status)).toEqual(["created", "created", "created", "created"]);
      const open = await db.query("SELECT id FROM ledger_pending_open");
      expect(open).toEqual([]);
      now += 6n * 1_000_000_000n;
      expect(await ledger.expirePendingTransfers()).toBe(0);
      const [after] = await ledger.lookupAccounts([accounts.a]);
      expect(after!.debitsPending).toBe(before!.debitsPending);
      expect(after!.debitsPosted - before!.debitsPosted).toBe(30n);
    });

    it("writes a caller's statement with its transfers, chosen from their results, all or none", async () => {
      await db.exec("CREATE TABLE notes (id text PRIMARY KEY, status text NOT NULL)");
      const note = (id: string) => ({
        statement: (results: readonly { status: string }[]) =>
          results.every((r) => r.status === "created")
            ? {
                text: "INSERT INTO notes (id, status) VALUES ($1, $2) RETURNING id, status",
                params: [id, results[0]!.status],
              }
            : null,
      });
      const t = (amount: bigint) => ({
        id: ledgerId(),
        debitAccountId: accounts.a,
        creditAccountId: accounts.b,
        amount,
        ledger: L,
        code: 1,
      });
      const notes = async () =>
        (await db.query<{ id: string }>("SELECT id FROM notes ORDER BY id")).map((row) => row.id);

      const made = await ledger.createTransfersWith([t(3n)], note("n1"));
      expect(made.results.map((r) => r.status)).toEqual(["created"]);
      expect(made.rows).toEqual([{ id: "n1", status: "created" }]);
      // Refused by the ledger: the caller chose no statement, and nothing is written.
      const refused = await ledger.createTransfersWith([t(-1n)], note("n0"));
      expect(refused).toEqual({
        results: [expect.objectContaining({ status: "amount_must_not_be_negative" })],
        rows: null,
      });

      // Three callers in one batch; the second one's statement fails (its note exists): only its transfer is
      // not written, and only it hears of the failure.
      const [before] = await ledger.lookupAccounts([accounts.a]);
      const [first, second, third] = [t(1n), t(10n), t(100n)];
      const calls = [
        ledger.createTransfers([first]),
        ledger.createTransfersWith([second], note("n1")),
        ledger.createTransfersWith([third], note("n3")),
      ] as const;
      await expect(calls[1]).rejects.toSatisfy(
        (error) => error instanceof LedgerStoreError && (error.cause as { code?: string }).code === "23505",
      );
      expect((await calls[0]).map((r) => r.status)).toEqual(["created"]);
      expect((await calls[2]).rows).toEqual([{ id: "n3", status: "created" }]);
      expect((await ledger.lookupTransfers([first.id, second.id, third.id])).map((x) => x.id)).toEqual([
        first.id,
        third.id,
      ]);
      const [after] = await ledger.lookupAccounts([accounts.a]);
      expect(after!.debitsPosted - before!.debitsPosted).toBe(101n);
      expect(await notes()).toEqual(["n1", "n3"]);
      // The writer goes on: the failed request, retried with a free note, is written.
      expect((await ledger.createTransfersWith([second], note("n2"))).rows).toEqual([
        { id: "n2", status: "created" },
      ]);
      for (const total of await selectLedgerTotals(db)) expect(total.debitsPosted).toBe(total.creditsPosted);
    });

    it("tells a caller's statement what each transfer its batch creates moves: a balancing debit what it took", async () => {
      const [x, y, z] = [ledgerId(), ledgerId(), ledgerId()];
      await ledger.createAccounts([
        { id: x, ledger: L, code: 10, flags: AccountFlags.debitsMustNotExceedCredits },
        { id: y, ledger: L, code: 10 },
        { id: z, ledger: L, code: 10, flags: AccountFlags.debitsMustNotExceedCredits },
      ]);
      await ledger.createTransfers([
        { id: ledgerId(), debitAccountId: y, creditAccountId: x, amount: 7n, ledger: L, code: 1 },
        { id: ledgerId(), debitAccountId: y, creditAccountId: z, amount: 3n, ledger: L, code: 1 },
      ]);
      const taking = (from: bigint, asked: bigint) => ({
        id: ledgerId(),
        debitAccountId: from,
        creditAccountId: y,
        amount: asked,
        ledger: L,
        code: 1,
        flags: TransferFlags.balancingDebit,
      });
      const stranger = ledgerId();
      const telling = (ids: readonly bigint[]) => ({
        statement: (_: unknown, written: { amountOf(id: bigint): bigint | undefined }) => ({
          text: "SELECT $1::text AS moved",
          params: [ids.map((id) => String(written.amountOf(id) ?? "none")).join(",")],
        }),
      });
      // Two callers, submitted together (one batch where the writer groups them): each hears its own amounts.
      const fromX = taking(x, 10n);
      const fromZ = [taking(z, 2n), taking(z, 5n)];
      const [one, two] = await Promise.all([
        ledger.createTransfersWith([fromX], telling([fromX.id, stranger, fromZ[0]!.id])),
        ledger.createTransfersWith(fromZ, telling(fromZ.map((t) => t.id))),
      ]);
      // Another caller's transfer is none of its business, as one nobody made.
      expect(one.rows).toEqual([{ moved: "7,none,none" }]);
      expect(two.rows).toEqual([{ moved: "2,1" }]);
      expect(
        (await ledger.lookupTransfers([fromX.id, ...fromZ.map((t) => t.id)])).map((t) => t.amount),
      ).toEqual([7n, 2n, 1n]);
    });

    it("pages through an account's transfers with a cursor", async () => {
      const base = { debitAccountId: accounts.a, creditAccountId: accounts.b, ledger: L, code: 1 };
      // Five, in two batches: a page boundary falls inside a batch and between them.
      const made = [
        ...(await ledger.createTransfers(
          [1n, 2n, 3n].map((amount) => ({ ...base, id: ledgerId(), amount })),
        )),
        ...(await ledger.createTransfers([4n, 5n].map((amount) => ({ ...base, id: ledgerId(), amount })))),
      ];
      expect(made.map((r) => r.status)).toEqual(["created", "created", "created", "created", "created"]);
      const all: bigint[] = [];
      let cursor: bigint | undefined;
      for (;;) {
        const page = await ledger.getAccountTransfers({ accountId: accounts.b, limit: 2, after: cursor });
        all.push(...page.transfers.map((t) => t.timestamp));
        if (page.nextCursor === null) break;
        cursor = page.nextCursor;
      }
      expect(all).toEqual(made.map((r) => r.timestamp));
    });

    // Four divergences from TigerBeetle that its state-machine test tables found (issue #18).
    it("refuses to post a pending transfer that closed an account, and voiding it reopens the account", async () => {
      const ids = [ledgerId(), ledgerId(), ledgerId(), ledgerId()] as const;
      const made = await ledger.createAccounts(ids.map((id) => ({ id, ledger: L, code: 30 })));
      expect(made.map((r) => r.status)).toEqual(["created", "created", "created", "created"]);
      const closesDebit = ledgerId();
      const closesCredit = ledgerId();
      const opened = await ledger.createTransfers([
        {
          id: closesDebit,
          debitAccountId: ids[0],
          creditAccountId: ids[1],
          amount: 5n,
          ledger: L,
          code: 1,
          flags: TransferFlags.pending | TransferFlags.closingDebit,
        },
        {
          id: closesCredit,
          debitAccountId: ids[2],
          creditAccountId: ids[3],
          amount: 6n,
          ledger: L,
          code: 1,
          flags: TransferFlags.pending | TransferFlags.closingCredit,
        },
      ]);
      expect(opened.map((r) => r.status)).toEqual(["created", "created"]);
      const resolve = { debitAccountId: 0n, creditAccountId: 0n, ledger: 0, code: 0 };
      const posts = await ledger.createTransfers([
        {
          ...resolve,
          id: ledgerId(),
          amount: amountMax,
          pendingId: closesDebit,
          flags: TransferFlags.postPendingTransfer,
        },
        {
          ...resolve,
          id: ledgerId(),
          amount: 6n,
          pendingId: closesCredit,
          flags: TransferFlags.postPendingTransfer,
        },
      ]);
      expect(posts.map((r) => r.status)).toEqual([
        "debit_account_already_closed",
        "credit_account_already_closed",
      ]);
      const closed = await ledger.lookupAccounts([...ids]);
      expect(closed.map((a) => (a.flags & AccountFlags.closed) !== 0)).toEqual([true, false, false, true]);
      expect(closed.map((a) => a.debitsPosted + a.creditsPosted)).toEqual([0n, 0n, 0n, 0n]);
      const voids = await ledger.createTransfers([
        {
          ...resolve,
          id: ledgerId(),
          amount: 0n,
          pendingId: closesDebit,
          flags: TransferFlags.voidPendingTransfer,
        },
        {
          ...resolve,
          id: ledgerId(),
          amount: 0n,
          pendingId: closesCredit,
          flags: TransferFlags.voidPendingTransfer,
        },
      ]);
      expect(voids.map((r) => r.status)).toEqual(["created", "created"]);
      const reopened = await ledger.lookupAccounts([...ids]);
      expect(reopened.map((a) => a.flags & AccountFlags.closed)).toEqual([0, 0, 0, 0]);
      expect(reopened.map((a) => a.debitsPending + a.creditsPending)).toEqual([0n, 0n, 0n, 0n]);
    });

    it("lists an account's transfers by TigerBeetle's filter: debits or credits, user data, code, timestamps", async () => {
      const [x, y] = [ledgerId(), ledgerId()];
      await ledger.createAccounts([
        { id: x, ledger: L, code: 40 },
        { id: y, ledger: L, code: 40 },
      ]);
      const t = (debitAccountId: bigint, creditAccountId: bigint, amount: bigint) => ({
        id: ledgerId(),
        debitAccountId,
        creditAccountId,
        amount,
        ledger: L,
        code: 1,
        // TigerBeetle's filter fields, each set on some of the four.
        userData128: amount % 2n === 0n ? 7n : 0n,
        userData64: amount <= 2n ? 64n : amount === 4n ? 2n ** 64n - 5n : 0n,
        userData32: amount === 3n ? 32 : 0,
      });
      const made = await ledger.createTransfers([t(x, y, 1n), t(y, x, 2n), t(x, y, 3n), t(y, x, 4n)]);
      expect(made.map((r) => r.status)).toEqual(["created", "created", "created", "created"]);
      const amounts = async (filter: Partial<Parameters<Ledger["getAccountTransfers"]>[0]>) =>
        (await ledger.getAccountTransfers({ accountId: x, limit: 10, ...filter })).transfers.map(
          (r) => r.amount,
        );
      expect(await amounts({})).toEqual([1n, 2n, 3n, 4n]);
      expect(await amounts({ credits: false })).toEqual([1n, 3n]);
      expect(await amounts({ debits: false })).toEqual([2n, 4n]);
      expect(await amounts({ credits: false, reversed: true })).toEqual([3n, 1n]);
      expect(await amounts({ debits: false, credits: false })).toEqual([]);
      // TigerBeetle's AccountFilter: user data and code filter when not 0; the timestamps bound both ends, inclusive;
      // a filter that matches nothing (limit 0, min after max) is an empty page, not an error.
      expect(await amounts({ userData128: 7n })).toEqual([2n, 4n]);
      expect(await amounts({ userData64: 64n })).toEqual([1n, 2n]);
      expect(await amounts({ userData32: 32 })).toEqual([3n]);
      expect(await amounts({ userData128: 7n, userData64: 64n })).toEqual([2n]);
      expect(await amounts({ userData128: 0n, userData64: 0n, userData32: 0, code: 0 })).toEqual([
        1n,
        2n,
        3n,
        4n,
      ]);
      expect(await amounts({ code: 2 })).toEqual([]);
      const stamps = (await ledger.getAccountTransfers({ accountId: x, limit: 10 })).transfers.map(
        (r) => r.timestamp,
      );
      expect(await amounts({ timestampMin: stamps[1]!, timestampMax: stamps[2]! })).toEqual([2n, 3n]);
      expect(await amounts({ timestampMin: stamps[2]! })).toEqual([3n, 4n]);
      expect(await amounts({ timestampMax: stamps[1]!, reversed: true })).toEqual([2n, 1n]);
      expect(await amounts({ timestampMin: stamps[2]!, timestampMax: stamps[1]! })).toEqual([]);
      expect(await ledger.getAccountTransfers({ accountId: x, limit: 0 })).toEqual({
        transfers: [],
        nextCursor: null,
      });
      // u64's whole range, stored as int8; a bound beyond every timestamp; u64's maximum (invalid in TigerBeetle).
      const u64Max = 2n ** 64n - 1n;
      expect(await amounts({ userData64: 2n ** 64n - 5n })).toEqual([4n]);
      expect(await amounts({ timestampMax: 2n ** 63n + 5n })).toEqual([1n, 2n, 3n, 4n]);
      expect(await amounts({ timestampMin: 2n ** 63n + 5n })).toEqual([]);
      expect(await amounts({ timestampMax: u64Max })).toEqual([]);
      expect(await amounts({ after: u64Max })).toEqual([]);
      expect(await amounts({ after: u64Max, reversed: true })).toEqual([4n, 3n, 2n, 1n]);
      expect(await amounts({ accountId: 0n })).toEqual([]);
      // A limit beyond what one answer carries is cut to it; a field outside its type is refused.
      expect((await ledger.getAccountTransfers({ accountId: x, limit: 100_000 })).transfers).toHaveLength(4);
      await expect(amounts({ userData128: -1n })).rejects.toBeInstanceOf(LedgerRequestInvalidError);
      await expect(amounts({ userData64: 2n ** 64n })).rejects.toBeInstanceOf(LedgerRequestInvalidError);
      await expect(amounts({ userData32: 2 ** 32 })).rejects.toBeInstanceOf(LedgerRequestInvalidError);
      const first = await ledger.getAccountTransfers({ accountId: x, limit: 1, debits: false });
      expect(first.transfers.map((r) => r.amount)).toEqual([2n]);
      const next = await ledger.getAccountTransfers({
        accountId: x,
        limit: 1,
        debits: false,
        after: first.nextCursor!,
      });
      expect(next.transfers.map((r) => r.amount)).toEqual([4n]);
    });

    it("answers a post retried with the maximum amount after a partial post with exists_with_different_amount", async () => {
      const base = { debitAccountId: accounts.a, creditAccountId: accounts.b, ledger: L, code: 1 };
      const [partly, fully, voided] = [ledgerId(), ledgerId(), ledgerId()];
      const pendings = await ledger.createTransfers(
        [partly, fully, voided].map((id) => ({ ...base, id, amount: 100n, flags: TransferFlags.pending })),
      );
      expect(pendings.map((r) => r.status)).toEqual(["created", "created", "created"]);
      const resolve = (pendingId: bigint, amount: bigint, flags: number) => ({
        id: ledgerId(),
        debitAccountId: 0n,
        creditAccountId: 0n,
        ledger: 0,
        code: 0,
        amount,
        pendingId,
        flags,
      });
      const partPost = resolve(partly, 40n, TransferFlags.postPendingTransfer);
      const fullPost = resolve(fully, amountMax, TransferFlags.postPendingTransfer);
      const wholeVoid = resolve(voided, 0n, TransferFlags.voidPendingTransfer);
      const first = await ledger.createTransfers([partPost, fullPost, wholeVoid]);
      expect(first.map((r) => r.status)).toEqual(["created", "created", "created"]);
      const retried = await ledger.createTransfers([
        // the stored post moved 40, not the whole 100 that amountMax asks for
        { ...partPost, amount: amountMax },
        partPost,
        { ...partPost, amount: 41n },
        // a whole post is the pending amount, asked for either way
        fullPost,
        { ...fullPost, amount: 100n },
        { ...fullPost, amount: 99n },
        // a void is always whole: 0 and the pending amount are the same request
        wholeVoid,
        { ...wholeVoid, amount: 100n },
      ]);
      expect(retried.map((r) => r.status)).toEqual([
        "exists_with_different_amount",
        "exists",
        "exists_with_different_amount",
        "exists",
        "exists",
        "exists_with_different_amount",
        "exists",
        "exists",
      ]);
    });

    it("takes TigerBeetle's AMOUNT_MAX (u128's maximum) where TigerBeetle does: a whole post, a balance, after exists", async () => {
      // It was refused with amount_must_not_exceed_max before anything else was looked at, so TigerBeetle's rows
      // with AMOUNT_MAX — a whole post, a balancing transfer, a retried id — each answered that instead.
      const u128Max = (1n << 128n) - 1n;
      const base = { debitAccountId: accounts.a, creditAccountId: accounts.b, ledger: L, code: 1 };
      const [pending, single] = [ledgerId(), ledgerId()];
      const made = await ledger.createTransfers([
        { ...base, id: pending, amount: 70n, flags: TransferFlags.pending },
        { ...base, id: single, amount: 5n },
      ]);
      expect(made.map((r) => r.status)).toEqual(["created", "created"]);
      const post = {
        id: ledgerId(),
        debitAccountId: 0n,
        creditAccountId: 0n,
        ledger: 0,
        code: 0,
        amount: u128Max,
        pendingId: pending,
        flags: TransferFlags.postPendingTransfer,
      };
      const results = await ledger.createTransfers([
        post,
        // Retried: the same request; an id already used: its exists_* code, not the amount's.
        post,
        { ...base, id: single, amount: u128Max },
        // Past the balances (TigerBeetle would take it; ours stop at int8): the overflow, as a balance past the max.
        { ...base, id: ledgerId(), amount: u128Max, flags: TransferFlags.pending },
      ]);
      expect(results.map((r) => r.status)).toEqual([
        "created",
        "exists",
        "exists_with_different_amount",
        "overflows_debits_pending",
      ]);
      const [stored] = await ledger.lookupTransfers([post.id]);
      expect(stored?.amount).toBe(70n);
    });

    it("answers a post or void retried with user data 0 after it stored its own with exists_with_different_user_data", async () => {
      const base = { debitAccountId: accounts.a, creditAccountId: accounts.b, ledger: L, code: 1 };
      const [posted, voided, inherits] = [ledgerId(), ledgerId(), ledgerId()];
      const pendings = await ledger.createTransfers(
        [posted, voided, inherits].map((id) => ({
          ...base,
          id,
          amount: 100n,
          flags: TransferFlags.pending,
          userData128: 1n,
          userData64: 2n,
          userData32: 3,
        })),
      );
      expect(pendings.map((r) => r.status)).toEqual(["created", "created", "created"]);
      const resolve = { debitAccountId: 0n, creditAccountId: 0n, ledger: 0, code: 0 };
      const ownPost = {
        ...resolve,
        id: ledgerId(),
        amount: 100n,
        pendingId: posted,
        flags: TransferFlags.postPendingTransfer,
        userData128: 11n,
        userData64: 12n,
        userData32: 13,
      };
      const ownVoid = {
        ...resolve,
        id: ledgerId(),
        amount: 0n,
        pendingId: voided,
        flags: TransferFlags.voidPendingTransfer,
        userData64: 22n,
      };
      const inheritPost = {
        ...resolve,
        id: ledgerId(),
        amount: 100n,
        pendingId: inherits,
        flags: TransferFlags.postPendingTransfer,
      };
      const first = await ledger.createTransfers([ownPost, ownVoid, inheritPost]);
      expect(first.map((r) => r.status)).toEqual(["created", "created", "created"]);
      const retried = await ledger.createTransfers([
        // user data 0 means the pending transfer's; these stored their own
        { ...ownPost, userData128: 0n },
        { ...ownPost, userData64: 0n },
        { ...ownPost, userData32: 0 },
        ownPost,
        { ...ownVoid, userData64: 0n },
        ownVoid,
        // a post that took the pending transfer's user data matches 0 and that user data alike
        inheritPost,
        { ...inheritPost, userData128: 1n, userData64: 2n, userData32: 3 },
        { ...inheritPost, userData32: 4 },
      ]);
      expect(retried.map((r) => r.status)).toEqual([
        "exists_with_different_user_data_128",
        "exists_with_different_user_data_64",
        "exists_with_different_user_data_32",
        "exists",
        "exists_with_different_user_data_64",
        "exists",
        "exists",
        "exists",
        "exists_with_different_user_data_32",
      ]);
    });

    it("translates the database's errors once, at the store: LedgerStoreError with the SQLSTATE, its cause kept", async () => {
      const t = {
        id: ledgerId(),
        debitAccountId: accounts.a,
        creditAccountId: accounts.b,
        amount: 1n,
        ledger: L,
        code: 1,
      };
      const failed = await ledger
        .createTransfersWith([t], { statement: () => ({ text: "SELECT * FROM no_such_table", params: [] }) })
        .then(
          () => null,
          (error: unknown) => error,
        );
      expect(failed).toBeInstanceOf(LedgerStoreError);
      expect(failed).toBeInstanceOf(SwitchyardError);
      const error = failed as LedgerStoreError;
      // Which statement failed is said too: only its caller hears of it (writer-locked.ts).
      expect(error.name).toBe("AlongsideStatementError");
      expect(error).toBeInstanceOf(AlongsideStatementError);
      expect((error as AlongsideStatementError).statementIndex).toBe(0);
      expect(error.sqlState).toBe("42P01");
      expect((error.cause as { code?: string }).code).toBe("42P01");
      expect(error.cause).not.toBeInstanceOf(SwitchyardError);
      expect(error.shortMessage).toBe("ledger statement written alongside failed");
      expect(await ledger.lookupTransfers([t.id])).toEqual([]);
      await expect(ledger.getAccountTransfers({ accountId: accounts.a, limit: -1 })).rejects.toBeInstanceOf(
        LedgerRequestInvalidError,
      );
    });

    it("bounds requests and the queue", async () => {
      // On the suite's clock: one on the real clock, which is later, would move every later timestamp past it, and a
      // test after this one that waits out a timeout by moving `now` would wait in vain.
      const small = createLedger({
        db,
        limits: { batchTransfersMax: 2, queueTransfersMax: 3, expiryIntervalMs: 0 },
        nowNs: () => now,
      });
      const t = () => ({
        id: ledgerId(),
        debitAccountId: accounts.a,
        creditAccountId: accounts.b,
        amount: 1n,
        ledger: L,
        code: 1,
      });
      await expect(small.createTransfers([t(), t(), t()])).rejects.toBeInstanceOf(LedgerRequestTooLargeError);
      const first = small.createTransfers([t(), t()]);
      const second = small.createTransfers([t()]);
      await expect(small.createTransfers([t()])).rejects.toBeInstanceOf(LedgerBackpressureError);
      expect((await first).map((r) => r.status)).toEqual(["created", "created"]);
      expect((await second).map((r) => r.status)).toEqual(["created"]);
      await small.close();
      // A request larger than the whole queue is taken when nothing waits (before: refused at every retry).
      const smallQueue = createLedger({
        db,
        limits: { batchTransfersMax: 4, queueTransfersMax: 1, expiryIntervalMs: 0 },
        nowNs: () => now,
      });
      const whole = smallQueue.createTransfers([t(), t(), t()]);
      await expect(smallQueue.createTransfers([t()])).rejects.toBeInstanceOf(LedgerBackpressureError);
      expect((await whole).map((r) => r.status)).toEqual(["created", "created", "created"]);
      await smallQueue.close();
    });
  });
