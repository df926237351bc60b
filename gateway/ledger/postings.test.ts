// The postings layer on PGlite with the real ledger: each operation answers in the services' closed set, and
// anything else the ledger says is a LedgerPostingError.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Db, migrate, openPglite } from "../db/index.ts";
import { ledgerMigrations } from "./index.ts";
import { createLedger, type Ledger } from "./ledger.ts";
import {
  credit,
  debit,
  findReservation,
  type HeldLeg,
  holdLegs,
  LedgerPostingError,
  type Leg,
  openAccounts,
  type Posting,
  postLegs,
  postReservation,
  reserve,
  reverse,
  reverseLegs,
  takeBack,
  voidLegs,
  voidReservation,
  writeChainWith,
} from "./postings.ts";
import { AccountFlags, TransferFlags } from "./types.ts";

let db: Db;
let ledger: Ledger;
let nextId = 1_000n;
const id = () => {
  nextId += 1n;
  return nextId;
};
const ledgerOf = 9;
const code = 1;

/** A tenant's balance (never overdrawn) and a rail's clearing account (never below zero), funded with `held`. */
async function accounts(held: bigint): Promise<{ tenant: bigint; clearing: bigint }> {
  const tenant = id();
  const clearing = id();
  await ledger.createAccounts([
    { id: tenant, ledger: ledgerOf, code: 1, flags: AccountFlags.debitsMustNotExceedCredits },
    { id: clearing, ledger: ledgerOf, code: 10, flags: AccountFlags.creditsMustNotExceedDebits },
  ]);
  await credit(ledger, move(clearing, tenant, held), { id: id() });
  return { tenant, clearing };
}

const move = (debitAccountId: bigint, creditAccountId: bigint, amount: bigint): Posting => ({
  debitAccountId,
  creditAccountId,
  amount,
  ledger: ledgerOf,
  code,
});

const alongside = { text: "SELECT 1 AS written", params: [] };

beforeAll(async () => {
  db = await openPglite(undefined);
  await migrate(db, [ledgerMigrations]);
  ledger = createLedger({ db });
}, 120_000);

afterAll(async () => {
  await ledger?.close();
  await db?.close();
});

describe("reserve", () => {
  it("holds the funds once, and says which side is short", async () => {
    const { tenant, clearing } = await accounts(100n);
    const pendingId = id();
    const posting = move(tenant, clearing, 60n);
    expect(await reserve(ledger, posting, { id: pendingId })).toEqual({ outcome: "reserved", rows: null });
    expect(await reserve(ledger, posting, { id: pendingId })).toEqual({ outcome: "reserved", rows: null });
    // 40 left to the tenant: 50 more is the payer's shortfall.
    expect((await reserve(ledger, move(tenant, clearing, 50n), { id: id() })).outcome).toBe(
      "insufficient_funds",
    );
    // Paying 50 into a clearing account from another rail's: the rail does not hold it.
    const other = await accounts(0n);
    expect((await reserve(ledger, move(other.clearing, clearing, 50n), { id: id() })).outcome).toBe(
      "insufficient_liquidity",
    );
  });

  it("writes the statement alongside whatever the ledger answers", async () => {
    const { tenant, clearing } = await accounts(10n);
    const made = await reserve(ledger, move(tenant, clearing, 5n), { id: id(), alongside });
    expect(made).toEqual({ outcome: "reserved", rows: [{ written: 1 }] });
    const short = await reserve(ledger, move(tenant, clearing, 50n), { id: id(), alongside });
    expect(short).toEqual({ outcome: "insufficient_funds", rows: [{ written: 1 }] });
  });

  it("answers rejected for any other refusal (an account that does not exist), holding nothing", async () => {
    const { tenant } = await accounts(10n);
    const pendingId = id();
    const result = await reserve(ledger, move(tenant, id(), 5n), {
      id: pendingId,
      label: "the test's reservation",
    });
    expect(result.outcome).toBe("rejected");
    expect(await findReservation(ledger, pendingId)).toBeNull();
  });
});

describe("post and void", () => {
  it("post moves the held funds, void releases them; each writes its statement only when the ledger holds it", async () => {
    const { tenant, clearing } = await accounts(100n);
    const posted = { ...move(tenant, clearing, 30n), pendingId: id() };
    const voided = { ...move(tenant, clearing, 20n), pendingId: id() };
    await reserve(ledger, posted, { id: posted.pendingId });
    await reserve(ledger, voided, { id: voided.pendingId });
    expect(await findReservation(ledger, posted.pendingId)).toEqual(posted);
    expect(await findReservation(ledger, id())).toBeNull();
    const postId = id();
    expect(await postReservation(ledger, posted, { id: postId, alongside })).toEqual([{ written: 1 }]);
    expect(await postReservation(ledger, posted, { id: postId, alongside })).toEqual([{ written: 1 }]);
    expect(await voidReservation(ledger, voided, { id: id(), alongside })).toEqual([{ written: 1 }]);
    const [account] = await ledger.lookupAccounts([tenant]);
    expect([account?.debitsPosted, account?.debitsPending]).toEqual([30n, 0n]);
    // Voiding what was posted is refused, and its statement is not written.
    await expect(voidReservation(ledger, posted, { id: id(), alongside })).rejects.toThrow(
      LedgerPostingError,
    );
  });
});

describe("credit, debit, takeBack, reverse", () => {
  it("credit answers conflict when the id was used with other details", async () => {
    const { tenant, clearing } = await accounts(0n);
    const transferId = id();
    expect(await credit(ledger, move(clearing, tenant, 7n), { id: transferId })).toBe("credited");
    expect(await credit(ledger, move(clearing, tenant, 7n), { id: transferId })).toBe("credited");
    expect(await credit(ledger, move(clearing, tenant, 8n), { id: transferId })).toBe("conflict");
  });

  it("debit moves nothing when the payer is short", async () => {
    const { tenant, clearing } = await accounts(10n);
    expect(await debit(ledger, move(tenant, clearing, 11n), { id: id() })).toBe("insufficient_funds");
    expect(await debit(ledger, move(tenant, clearing, 10n), { id: id() })).toBe("debited");
  });

  it("takeBack takes at most what the account holds, and says how much; reverse gives exactly that back", async () => {
    const { tenant, clearing } = await accounts(25n);
    const takenId = id();
    expect(await takeBack(ledger, move(tenant, clearing, 40n), { id: takenId })).toBe(25n);
    expect(await takeBack(ledger, move(tenant, clearing, 40n), { id: takenId })).toBe(25n);
    const backId = id();
    expect(await reverse(ledger, takenId, 5, { id: backId })).toBe(25n);
    expect(await reverse(ledger, takenId, 5, { id: backId })).toBe(25n);
    expect(await reverse(ledger, id(), 5, { id: id() })).toBe(0n); // nothing to reverse: nothing written
    const [account] = await ledger.lookupAccounts([tenant]);
    expect((account?.creditsPosted ?? 0n) - (account?.debitsPosted ?? 0n)).toBe(25n);
    const [back] = await ledger.lookupTransfers([backId]);
    expect([back?.debitAccountId, back?.creditAccountId, back?.code]).toEqual([clearing, tenant, 5]);
  });
});

describe("openAccounts", () => {
  it("maps each balance rule to its flag, counts an account already open as opened, and names a refused one", async () => {
    const [tenant, clearing, memo] = [id(), id(), id()];
    const specs = [
      { id: tenant, ledger: ledgerOf, code: 1, balance: "debits_within_credits" as const },
      { id: clearing, ledger: ledgerOf, code: 10, balance: "credits_within_debits" as const },
      { id: memo, ledger: ledgerOf, code: 20, balance: "none" as const },
    ];
    await openAccounts(ledger, specs);
    await openAccounts(ledger, specs);
    const opened = await ledger.lookupAccounts([tenant, clearing, memo]);
    expect(opened.map((account) => account.flags)).toEqual([
      AccountFlags.debitsMustNotExceedCredits,
      AccountFlags.creditsMustNotExceedDebits,
      0,
    ]);
    // The same id under another rule is refused, and the error names it as the caller labels it.
    await expect(
      openAccounts(
        ledger,
        [{ id: memo, ledger: ledgerOf, code: 20, balance: "debits_within_credits" }],
        (spec) => `memo ${spec.id}`,
      ),
    ).rejects.toThrow(new LedgerPostingError(`memo ${memo}`, "exists_with_different_flags"));
  });
});

describe("chains of legs", () => {
  /** Two legs out of an account without limits, into two others: a Distributed event's shape. */
  async function chain(amounts: [bigint, bigint]): Promise<{ from: bigint; legs: Leg[] }> {
    const [from, a, b] = [id(), id(), id()];
    await openAccounts(
      ledger,
      [from, a, b].map((account) => ({ id: account, ledger: ledgerOf, code: 20, balance: "none" as const })),
    );
    return {
      from,
      legs: [
        { posting: move(from, a, amounts[0]), transfer: { id: id() } },
        { posting: move(from, b, amounts[1]), transfer: { id: id() } },
      ],
    };
  }
  const held = (legs: Leg[]): HeldLeg[] =>
    legs.map(({ posting, transfer }) => ({
      reservation: { ...posting, pendingId: transfer.id },
      transfer: { id: id(), userData128: transfer.id },
    }));

  it("holdLegs writes a linked chain of pending legs, all or none; a retry of the whole chain is success", async () => {
    const { from, legs } = await chain([3n, 4n]);
    await holdLegs(ledger, legs, "the test's chain");
    await holdLegs(ledger, legs, "the test's chain");
    const written = await ledger.lookupTransfers(legs.map((leg) => leg.transfer.id));
    expect(written.map((t) => t.flags)).toEqual([
      TransferFlags.pending | TransferFlags.linked,
      TransferFlags.pending,
    ]);
    // A chain whose second leg names an account that does not exist: neither leg is written.
    const broken: Leg[] = [
      { posting: move(from, legs[0]?.posting.creditAccountId ?? 0n, 1n), transfer: { id: id() } },
      { posting: move(from, id(), 1n), transfer: { id: id() } },
    ];
    await expect(holdLegs(ledger, broken, "the broken chain")).rejects.toThrow(
      new LedgerPostingError("the broken chain", "linked_event_failed"),
    );
    expect(await ledger.lookupTransfers(broken.map((leg) => leg.transfer.id))).toEqual([]);
  });

  it("postLegs and voidLegs resolve each held leg; resolving one already resolved is harmless", async () => {
    const posted = await chain([3n, 4n]);
    const voided = await chain([5n, 6n]);
    await holdLegs(ledger, posted.legs, "posted");
    await holdLegs(ledger, voided.legs, "voided");
    const posts = held(posted.legs);
    const voids = held(voided.legs);
    await postLegs(ledger, posts, "post");
    await postLegs(ledger, posts, "post");
    await voidLegs(ledger, voids, "void");
    await voidLegs(ledger, voids, "void");
    // A late void of legs already posted, under new ids: the pending legs are resolved, so it is not an error.
    await voidLegs(ledger, held(posted.legs), "late void");
    await voidLegs(ledger, [], "nothing");
    const [postedFrom, voidedFrom] = await ledger.lookupAccounts([posted.from, voided.from]);
    expect([postedFrom?.debitsPosted, postedFrom?.debitsPending]).toEqual([7n, 0n]);
    expect([voidedFrom?.debitsPosted, voidedFrom?.debitsPending]).toEqual([0n, 0n]);
    const [post] = await ledger.lookupTransfers([posts[0]?.transfer.id ?? 0n]);
    expect([post?.flags, post?.pendingId, post?.userData128]).toEqual([
      TransferFlags.postPendingTransfer,
      posted.legs[0]?.transfer.id,
      posted.legs[0]?.transfer.id,
    ]);
    // Posting a leg that was never held is refused.
    await expect(postLegs(ledger, held((await chain([1n, 1n])).legs), "post unheld")).rejects.toThrow(
      LedgerPostingError,
    );
  });

  it("reverseLegs moves each leg back under the given code, as one linked chain", async () => {
    const { from, legs } = await chain([3n, 4n]);
    for (const { posting } of legs) await credit(ledger, posting, { id: id() });
    const reversals: Leg[] = legs.map(({ posting, transfer }) => ({
      posting,
      transfer: { id: id(), userData128: transfer.id },
    }));
    await reverseLegs(ledger, reversals, 7, "reverse");
    await reverseLegs(ledger, reversals, 7, "reverse");
    const written = await ledger.lookupTransfers(reversals.map((leg) => leg.transfer.id));
    expect(written.map((t) => [t.debitAccountId, t.creditAccountId, t.amount, t.code, t.flags])).toEqual([
      [legs[0]?.posting.creditAccountId, from, 3n, 7, TransferFlags.linked],
      [legs[1]?.posting.creditAccountId, from, 4n, 7, 0],
    ]);
    const [account] = await ledger.lookupAccounts([from]);
    expect((account?.debitsPosted ?? 0n) - (account?.creditsPosted ?? 0n)).toBe(0n);
  });
});

describe("writeChainWith", () => {
  it("holds a chain all or none: one short member refuses every member, and says which shortfall it was", async () => {
    const { tenant, clearing } = await accounts(100n);
    const fees = id();
    await ledger.createAccounts([{ id: fees, ledger: ledgerOf, code: 20 }]);
    const [amountId, feeId] = [id(), id()];
    const refused = await writeChainWith(
      ledger,
      [
        { kind: "hold", posting: move(tenant, clearing, 90n), transfer: { id: amountId } },
        { kind: "hold", posting: move(tenant, fees, 20n), transfer: { id: feeId } },
      ],
      { statement: alongside, when: "always" },
      "the chain",
    );
    expect(refused.outcome).toBe("insufficient_funds");
    expect(refused.rows).toEqual([{ written: 1 }]); // `always`: the refusal is recorded too
    expect(await ledger.lookupTransfers([amountId, feeId])).toEqual([]);
  });

  it("posts less than a hold (the rest released) beside a move, and a repeat of the whole chain is success", async () => {
    const { tenant, clearing } = await accounts(100n);
    const fees = id();
    await ledger.createAccounts([{ id: fees, ledger: ledgerOf, code: 20 }]);
    const [amountId, feeId] = [id(), id()];
    const held = await writeChainWith(
      ledger,
      [
        { kind: "hold", posting: move(tenant, clearing, 60n), transfer: { id: amountId } },
        { kind: "hold", posting: move(tenant, fees, 30n), transfer: { id: feeId } },
      ],
      { statement: alongside, when: "always" },
      "the holds",
    );
    expect(held.outcome).toBe("reserved");
    const [amountHold, feeHold] = [
      await findReservation(ledger, amountId),
      await findReservation(ledger, feeId),
    ];
    const members = [
      { kind: "post" as const, reservation: amountHold!, transfer: { id: id() } },
      { kind: "post" as const, reservation: feeHold!, transfer: { id: id() }, amount: 7n },
      { kind: "move" as const, posting: move(fees, clearing, 7n), transfer: { id: id() } },
    ];
    const statement = { text: "SELECT 2 AS written", params: [] };
    const posted = await writeChainWith(ledger, members, { statement, when: "held", sql: db }, "the posts");
    expect(posted).toEqual({ outcome: "reserved", rows: [{ written: 2 }] });
    const [account] = await ledger.lookupAccounts([tenant]);
    expect(account).toMatchObject({ debitsPosted: 67n, debitsPending: 0n }); // 60 + 7; the hold's other 23 released
    // The same chain again: every member exists, and the `held` statement is written on its own.
    const again = await writeChainWith(ledger, members, { statement, when: "held", sql: db }, "the posts");
    expect(again).toEqual({ outcome: "reserved", rows: [{ written: 2 }] });
    expect((await ledger.lookupAccounts([tenant]))[0]).toMatchObject({ debitsPosted: 67n });
  });
});
