// Accruing a payout for a netted batch, on PGlite with the real ledger: the payer's debit and the queued payout
// are written together, so recovery never finds a debited payment without its payout (and pays it again).
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { assets } from "../../core/index.ts";
import { latch } from "../../test/support/latch.ts";
import { ledgerStoppingAtReturn, type NettingFixture, nettingFixture } from "../../test/support/netting.ts";
import { getClearingAccount, getTenantAccount } from "../accounts/index.ts";
import { gatewayMigrations } from "../app.ts";
import { type Db, migrate, openPglite } from "../db/index.ts";
import { derivedLedgerId } from "../ids/index.ts";
import {
  createLedger,
  type Ledger,
  ledgerMigrations,
  reserve,
  transferCodes,
  voidLegs,
} from "../ledger/index.ts";
import { gatewayLedgerParams } from "../ledger-params.ts";
import { nettingBatchPayeesMax } from "../router/index.ts";
import {
  accruePayout,
  flushNetting,
  isPaymentNotProcessing,
  type NettingDeps,
  NettingInvariantError,
  NettingResumeError,
} from "./batch-payouts.ts";
import { accrue } from "./service.ts";

let db: Db;
let ledger: Ledger;
let netting: NettingFixture;
const payee = "0x00000000000000000000000000000000000000bb" as const;

const deps = (): NettingDeps => netting.deps();

/** A payer that pays every batch it is asked (through `on`), and records each batch's total. */
const payingDeps = (paid: bigint[], on: Db = db): NettingDeps => ({
  ...deps(),
  db: on,
  payer: {
    id: netting.rail,
    asset: assets.USDC,
    payoutBatch: async (batch) => {
      paid.push(batch.payouts.reduce((sum, payout) => sum + payout.amount, 0n));
      return {
        status: "succeeded",
        evidence: { rail: "external", railId: netting.rail, reference: batch.reference },
        fee: 0n,
      };
    },
  },
});

const insertPayment = (id: string) => netting.insertPayment(id);

/** Payment `id` of the customer's, processing, and its payout of `amount` to `to` accrued. */
async function accrued(id: string, amount: bigint, to: `0x${string}` = payee) {
  await insertPayment(id);
  expect(await accruePayout(deps(), netting.payout(id, amount, to))).toBe("accrued");
}

/**
 * A batch paid on the test's rail (payment `id`, 1 to a payee of its own): the last paid batch, which a flush on the
 * timer times from once the test has aged it.
 */
async function paidBatch(id: string) {
  await accrued(id, 1n, "0x00000000000000000000000000000000000000cc");
  const paid: bigint[] = [];
  expect(await flushNetting(payingDeps(paid), { force: true })).toMatchObject({ batches: 1 });
  expect(paid).toEqual([1n]);
}

beforeAll(async () => {
  db = await openPglite(undefined);
  await migrate(db, [ledgerMigrations, gatewayMigrations]);
  ledger = createLedger({ ...gatewayLedgerParams, db });
}, 120_000);

// Each test pays by a rail of its own, from a customer of its own holding 100: a flush plans, pauses after a refusal
// and times each rail on its own, so no payout, batch or refusal of another test's is in its way, in any order.
let fixtures = 0;
beforeEach(async () => {
  fixtures += 1;
  netting = await nettingFixture(db, ledger, `netting_${fixtures}`, 100n, `evm_${fixtures}`);
});

afterAll(async () => {
  await ledger?.close();
  await db?.close();
});

/** A payout of the customer's to the payee, for payment `id`. */
const payoutOf = (id: string, amount: bigint) => netting.payout(id, amount, payee);

const statusOf = (result: Awaited<ReturnType<typeof accrue>>) =>
  result.ok ? result.payment.status : "key taken";

const customerPosted = () => netting.customerPosted();

describe("accruePayout", () => {
  it("debits the payer and queues the payout once, under the netting's accrue code", async () => {
    await insertPayment("pay_accrued");
    const payout = payoutOf("pay_accrued", 40n);
    expect(await accruePayout(deps(), payout)).toBe("accrued");
    expect(await accruePayout(deps(), payout)).toBe("accrued");
    expect(await customerPosted()).toBe(60n);
    const queued = await db.query<{ accrue_transfer_id: string }>(
      "SELECT accrue_transfer_id::text FROM netted_payouts WHERE payment_id = 'pay_accrued'",
    );
    expect(queued).toHaveLength(1);
    const [transfer] = await ledger.lookupTransfers([BigInt(queued[0]!.accrue_transfer_id)]);
    expect(transfer?.code).toBe(transferCodes.netting.accrue);
  });

  it("is short: nothing debited, nothing queued", async () => {
    await insertPayment("pay_short");
    const payout = payoutOf("pay_short", 1_000n);
    expect(await accruePayout(deps(), payout)).toBe("insufficient_funds");
    expect(await db.query("SELECT 1 FROM netted_payouts WHERE payment_id = 'pay_short'")).toEqual([]);
  });

  it("a queued payout that cannot be written leaves the payer's debit unwritten too", async () => {
    // No payments row: the statement queues nothing and refuses (netting_payment_not_processing), so the debit goes.
    const before = await customerPosted();
    const payout = payoutOf("pay_missing", 10n);
    await expect(accruePayout(deps(), payout)).rejects.toThrow();
    expect(await customerPosted()).toBe(before);
    expect(await db.query("SELECT 1 FROM netted_payouts WHERE payment_id = 'pay_missing'")).toEqual([]);
  });
});

describe("accrual and flushes racing", () => {
  it("accrues nothing for a payment no longer processing: its debit is rolled back with the queued payout", async () => {
    await insertPayment("pay_failed_meanwhile");
    await db.query("UPDATE payments SET status = 'failed' WHERE id = 'pay_failed_meanwhile'");
    const before = await customerPosted();
    const payout = payoutOf("pay_failed_meanwhile", 10n);
    // Before: the payer was debited and the payout queued (and later paid) for a payment answered failed.
    await expect(accruePayout(deps(), payout)).rejects.toSatisfy(isPaymentNotProcessing);
    expect(await customerPosted()).toBe(before);
    expect(await db.query("SELECT 1 FROM netted_payouts WHERE payment_id = 'pay_failed_meanwhile'")).toEqual(
      [],
    );
  });

  it("a payment short when its request accrued it is not failed once recovery's accrual of it passed", async () => {
    await insertPayment("pay_short_then_funded");
    const payout = payoutOf("pay_short_then_funded", (await customerPosted()) + 5n);
    // The request's accrual finds the payer short; it stops there until recovery has accrued the payment.
    const short = latch();
    const recovered = latch();
    const real = ledger;
    const requestLedger: Ledger = {
      ...real,
      createTransfersWith: async (...args: Parameters<Ledger["createTransfersWith"]>) => {
        const results = await real.createTransfersWith(...args);
        short.release();
        await recovered.done;
        return results;
      },
    };
    const request = accrue({ db }, { ...deps(), ledger: requestLedger }, payout);
    await short.done;
    await netting.fund(30n); // leaves the payer 25 after this payout
    expect(statusOf(await accrue({ db }, deps(), payout))).toBe("processing");
    recovered.release();
    // Before: the request failed it for its funds, while its payout stayed queued (and was paid by the next batch).
    expect(statusOf(await request)).toBe("processing");
    expect(
      await db.query("SELECT 1 FROM netted_payouts WHERE payment_id = 'pay_short_then_funded'"),
    ).toHaveLength(1);
    expect(
      await db.query("SELECT 1 FROM outbox WHERE payload->>'payment_id' = 'pay_short_then_funded'"),
    ).toEqual([]);
  });

  it("never sends a batch another flush is sending: a refusal re-queues only what its own flush failed", async () => {
    for (const [id, amount] of [
      ["pay_flush_a", 15n],
      ["pay_flush_b", 5n],
    ] as const)
      await accrued(id, amount);
    const queued = async () =>
      (
        await db.query<{ total: bigint | null }>(
          "SELECT sum(amount)::bigint AS total FROM netted_payouts WHERE rail = $1 AND batch_id IS NULL",
          [netting.rail],
        )
      )[0]!.total ?? 0n;
    const owed = await queued();
    // Process A's rail refuses its batch, slowly, having sent nothing; process B's rail pays whatever it is asked.
    const slow = latch();
    const asked = latch();
    const refusing: NettingDeps = {
      ...deps(),
      payer: {
        id: netting.rail,
        asset: assets.USDC,
        payoutBatch: async () => {
          asked.release();
          await slow.done;
          return {
            status: "failed",
            code: "rail_unavailable",
            message: "the node did not answer the estimate",
          };
        },
      },
    };
    const paid: bigint[] = [];
    const paying = payingDeps(paid);
    const first = flushNetting(refusing, { force: true });
    await asked.done;
    // B's flush finds A's batch sending under A's lease: it leaves it (before: it resumed it and paid it).
    await flushNetting(paying, { force: true });
    slow.release();
    await first;
    // A's refusal put the payouts back; B pays them, once.
    await flushNetting(paying, { force: true });
    expect(paid).toEqual([owed]);
    expect(await queued()).toBe(0n);
    const statuses = await db.query<{ status: string }>(
      "SELECT status FROM payments WHERE id IN ('pay_flush_a', 'pay_flush_b')",
    );
    expect(statuses.map((row) => row.status)).toEqual(["succeeded", "succeeded"]);
  });

  it("a batch whose rail throws when it is resumed holds up neither the other batches nor the payouts waiting", async () => {
    await accrued("pay_stuck", 3n);
    let stuck: string | null = null;
    const paid: string[] = [];
    const payer = (mode: "in_flight" | "throw_for_stuck"): NettingDeps => ({
      ...deps(),
      payer: {
        id: netting.rail,
        asset: assets.USDC,
        payoutBatch: async (batch) => {
          if (mode === "in_flight") {
            stuck = batch.reference;
            return { status: "in_flight", reference: batch.reference };
          }
          if (batch.reference === stuck) throw new Error("the node answers nothing about this batch");
          paid.push(batch.reference);
          return {
            status: "succeeded",
            evidence: { rail: "external", railId: netting.rail, reference: batch.reference },
            fee: 0n,
          };
        },
      },
    });
    await flushNetting(payer("in_flight"), { force: true });
    await accrued("pay_waiting", 2n);
    // Before: the resumed batch's throw ended the flush, and the payout waiting behind it was never sent.
    await expect(flushNetting(payer("throw_for_stuck"), { force: true })).rejects.toBeInstanceOf(
      NettingResumeError,
    );
    expect(paid).toHaveLength(1);
    const [waiting] = await db.query<{ status: string }>(
      "SELECT status FROM payments WHERE id = 'pay_waiting'",
    );
    expect(waiting!.status).toBe("succeeded");
    const [held] = await db.query<{ status: string }>("SELECT status FROM payments WHERE id = 'pay_stuck'");
    expect(held!.status).toBe("processing");
  });
});

describe("flushes of two processes", () => {
  it("a flush whose payouts another flush batched first writes no batch and is no error", async () => {
    await accrued("pay_overtaken", 2n);
    const paid: bigint[] = [];
    // Process B's flush runs between A's plan and A's write: B batches the payouts A planned.
    let overtaken = false;
    const racing: Db = {
      ...db,
      transaction: async (fn) => {
        if (!overtaken) {
          overtaken = true;
          await flushNetting(payingDeps(paid), { force: true });
        }
        return db.transaction(fn);
      },
    };
    // Before: A's flush threw NettingInvariantError ("payouts taken by another flush"), an alarm for a race.
    expect(await flushNetting(payingDeps(paid, racing), { force: true })).toMatchObject({ batches: 0 });
    expect(paid).toEqual([2n]);
    const [payment] = await db.query<{ status: string }>(
      "SELECT status FROM payments WHERE id = 'pay_overtaken'",
    );
    expect(payment!.status).toBe("succeeded");
  });

  it("a refused batch does not start the timer over: its payouts go with the next flush once they waited", async () => {
    await paidBatch("pay_timer_before");
    await accrued("pay_timer", 3n);
    const refused: NettingDeps = {
      ...deps(),
      payer: {
        id: netting.rail,
        asset: assets.USDC,
        payoutBatch: async () => ({ status: "failed", code: "fee_above_max", message: "gas above the cap" }),
      },
    };
    await flushNetting(refused, { force: true });
    const paid: bigint[] = [];
    // Right after a refusal, the rail is not asked again (a pause of nettingRetryAfterRefusalMs).
    expect(await flushNetting(payingDeps(paid))).toMatchObject({ batches: 0 });
    // The last batch paid and the payout both an hour old; the refused batch made just now, refused a minute ago.
    await db.query(
      "UPDATE netting_batches SET created_at = now() - interval '1 hour' WHERE rail = $1 AND status <> 'failed'",
      [netting.rail],
    );
    await db.query(
      "UPDATE netting_batches SET updated_at = now() - interval '1 minute' WHERE rail = $1 AND status = 'failed'",
      [netting.rail],
    );
    await db.query(
      "UPDATE netted_payouts SET created_at = now() - interval '1 hour' WHERE payment_id = 'pay_timer'",
    );
    // Before: the timer ran from the refused batch, and the payout waited another interval.
    expect(await flushNetting(payingDeps(paid))).toMatchObject({ trigger: "timer", batches: 1 });
    expect(paid).toEqual([3n]);
  });
});

describe("a flush with more payees due than one batch takes", () => {
  it("pays them all in batches of nettingBatchPayeesMax, not the rest an interval later", async () => {
    await netting.fund(1_000n);
    await paidBatch("pay_many_before");
    const count = nettingBatchPayeesMax + 1;
    for (let i = 0; i < count; i++) {
      await accrued(`pay_many_${i}`, 1n, `0x${(0xc000 + i).toString(16).padStart(40, "0")}`);
    }
    const totals: bigint[] = []; // each payout is 1: a batch's total is its payee count
    const paying = payingDeps(totals);
    // The timer due (not forced): the payouts and every batch an hour old.
    await db.query(
      "UPDATE netted_payouts SET created_at = now() - interval '1 hour' WHERE rail = $1 AND batch_id IS NULL",
      [netting.rail],
    );
    await db.query(
      "UPDATE netting_batches SET created_at = now() - interval '1 hour', updated_at = now() - interval '1 hour' WHERE rail = $1",
      [netting.rail],
    );
    // Before: one batch of 200, and the last payee waited for the next interval.
    expect(await flushNetting(paying)).toMatchObject({ trigger: "timer", batches: 2, payouts: count });
    expect(totals).toEqual([BigInt(nettingBatchPayeesMax), 1n]);
    const waiting = await db.query("SELECT 1 FROM netted_payouts WHERE rail = $1 AND batch_id IS NULL", [
      netting.rail,
    ]);
    expect(waiting).toEqual([]);
  }, 60_000);
});

describe("a payee the rail refuses", () => {
  const refusedPayee = "0x00000000000000000000000000000000000000dd" as const;
  const otherPayee = "0x00000000000000000000000000000000000000ee" as const;

  /** A rail that refuses every batch paying refusedPayee, naming its payouts there, and pays any other batch. */
  const refusingDeps = (paid: string[][], over: Partial<NettingDeps> = {}): NettingDeps => ({
    ...deps(),
    ...over,
    payer: {
      id: netting.rail,
      asset: assets.USDC,
      payoutBatch: async (batch) => {
        const addresses = batch.payouts.map(({ destination }) =>
          destination.kind === "evm_address" ? destination.address : "",
        );
        const refused = addresses.flatMap((address, index) =>
          address === refusedPayee ? [{ index, code: "rejected" as const, message: "blacklisted" }] : [],
        );
        if (refused.length > 0)
          return {
            status: "failed",
            code: "rejected",
            message: "Blacklistable: account is blacklisted",
            refused,
          };
        paid.push(addresses);
        return {
          status: "succeeded",
          evidence: { rail: "external", railId: netting.rail, reference: batch.reference },
          fee: 0n,
        };
      },
    },
  });

  const paymentRow = async (id: string) =>
    (
      await db.query<{ status: string; failure_code: string | null; failure_message: string | null }>(
        "SELECT status, failure_code, failure_message FROM payments WHERE id = $1",
        [id],
      )
    )[0];
  const failedEvents = async (ids: readonly string[]) =>
    (
      await db.query<{ id: string }>(
        "SELECT payload->>'payment_id' AS id FROM outbox WHERE type = 'payment.failed' AND payload->>'payment_id' = ANY($1::text[]) ORDER BY 1",
        [ids],
      )
    ).map((row) => row.id);

  it("pays the others in the same flush; its payouts fail with the rail's code and their money goes back", async () => {
    await accrued("pay_refused_a", 3n, refusedPayee);
    await accrued("pay_refused_b", 4n, refusedPayee);
    await accrued("pay_beside", 5n, otherPayee);
    const before = await customerPosted();
    const paid: string[][] = [];
    // Before: the batch was refused whole, every payout went back in the queue, and the next batch held the same payee.
    expect(await flushNetting(refusingDeps(paid), { force: true })).toMatchObject({
      batches: 2,
      payouts: 4,
      refused: 2,
    });
    expect(paid).toEqual([[otherPayee]]);
    expect((await paymentRow("pay_beside"))!.status).toBe("succeeded");
    for (const id of ["pay_refused_a", "pay_refused_b"])
      expect(await paymentRow(id)).toEqual({
        status: "failed",
        failure_code: "rejected",
        failure_message: "blacklisted",
      });
    expect(await customerPosted()).toBe(before + 7n);
    expect(await failedEvents(["pay_refused_a", "pay_refused_b"])).toEqual([
      "pay_refused_a",
      "pay_refused_b",
    ]);
    const [batch] = await db.query<{ status: string; refused_payees: unknown }>(
      "SELECT status, refused_payees FROM netting_batches WHERE id = (SELECT batch_id FROM netted_payouts WHERE payment_id = 'pay_refused_a')",
    );
    expect(batch).toEqual({
      status: "failed",
      refused_payees: [{ payee: refusedPayee, code: "rejected", message: "blacklisted" }],
    });
    const [besideBatch] = await db.query<{ refused_payees: unknown }>(
      "SELECT refused_payees FROM netting_batches WHERE id = (SELECT batch_id FROM netted_payouts WHERE payment_id = 'pay_beside')",
    );
    expect(besideBatch!.refused_payees).toBeNull();

    // Asked again, nothing changes: no second return, no second event.
    expect(await flushNetting(refusingDeps(paid), { force: true })).toMatchObject({ batches: 0, refused: 0 });
    expect(await customerPosted()).toBe(before + 7n);
    expect(await failedEvents(["pay_refused_a", "pay_refused_b"])).toHaveLength(2);
  });

  it("gives the refused payouts back even when the rail stops answering later in the flush", async () => {
    // The refused payee's batch is answered; the next batch (the others, sent again at once) meets a node away. The
    // give-back needs no rail: the refused payment fails and its money goes back in this flush all the same.
    await accrued("pay_refused_then_down", 6n, refusedPayee);
    await accrued("pay_beside_down", 2n, otherPayee);
    const before = await customerPosted();
    const refusing = refusingDeps([]);
    let calls = 0;
    const downAfterFirst: NettingDeps = {
      ...refusing,
      payer: {
        ...refusing.payer,
        payoutBatch: async (batch) => {
          calls += 1;
          if (calls > 1) throw new Error("the node is away");
          return await refusing.payer.payoutBatch(batch);
        },
      },
    };
    await expect(flushNetting(downAfterFirst, { force: true })).rejects.toThrow("the node is away");
    expect(await paymentRow("pay_refused_then_down")).toEqual({
      status: "failed",
      failure_code: "rejected",
      failure_message: "blacklisted",
    });
    expect(await customerPosted()).toBe(before + 6n);
    expect((await paymentRow("pay_beside_down"))!.status).toBe("processing");
    // The batch the node did not answer is sent again once its lease runs out.
    await db.query("UPDATE netting_batches SET leased_until = now() WHERE rail = $1 AND status = 'sending'", [
      netting.rail,
    ]);
    const paid: string[][] = [];
    await flushNetting(refusingDeps(paid), { force: true });
    expect(paid).toEqual([[otherPayee]]);
    expect((await paymentRow("pay_beside_down"))!.status).toBe("succeeded");
  });

  it("a batch refused for a payee does not pause the rail: a payout due on the timer leaves at the next flush", async () => {
    await paidBatch("pay_refused_c_before");
    await accrued("pay_refused_c", 3n, refusedPayee);
    await flushNetting(refusingDeps([]), { force: true });
    await accrued("pay_after_refusal", 2n, otherPayee);
    // The last batch paid and the payout an hour old; the batch refused for its payee, refused just now.
    await db.query(
      "UPDATE netting_batches SET created_at = now() - interval '1 hour' WHERE rail = $1 AND refused_payees IS NULL",
      [netting.rail],
    );
    await db.query(
      "UPDATE netted_payouts SET created_at = now() - interval '1 hour' WHERE payment_id = 'pay_after_refusal'",
    );
    const paid: string[][] = [];
    // A batch refused whole would pause the rail nettingRetryAfterRefusalMs (the test above, on the timer).
    expect(await flushNetting(refusingDeps(paid))).toMatchObject({ trigger: "timer", batches: 1 });
    expect(paid).toEqual([[otherPayee]]);
  });

  it("a flush stopped before it gave the money back: the next flush gives it back, once", async () => {
    await accrued("pay_refused_stopped", 6n, refusedPayee);
    const before = await customerPosted();
    // The ledger write of the return fails (the process stops there): the refusal is kept, the money not yet back.
    const stopping = ledgerStoppingAtReturn(ledger);
    await expect(
      flushNetting(refusingDeps([], { ledger: stopping }), { force: true }),
    ).rejects.toBeInstanceOf(NettingResumeError);
    expect((await paymentRow("pay_refused_stopped"))!.status).toBe("processing");
    expect(await customerPosted()).toBe(before);
    const [kept] = await db.query<{
      refusal_code: string;
      returned_at: Date | null;
      batch_id: string | null;
    }>(
      "SELECT refusal_code, returned_at, batch_id FROM netted_payouts WHERE payment_id = 'pay_refused_stopped'",
    );
    expect(kept).toMatchObject({ refusal_code: "rejected", returned_at: null });
    expect(kept!.batch_id).not.toBeNull();

    // The next flush, whatever its rail says now (the payee is no longer sent), gives it back.
    const paid: bigint[] = [];
    expect(await flushNetting(payingDeps(paid))).toMatchObject({ refused: 1 });
    expect(paid).toEqual([]);
    expect((await paymentRow("pay_refused_stopped"))!.status).toBe("failed");
    expect(await customerPosted()).toBe(before + 6n);
    expect(await flushNetting(payingDeps(paid))).toMatchObject({ refused: 0 });
    expect(await customerPosted()).toBe(before + 6n);
    expect(await failedEvents(["pay_refused_stopped"])).toHaveLength(1);
  });

  it("a rail that names a payout its batch does not have is a bug: nothing of the batch is failed", async () => {
    await accrued("pay_bad_index", 2n, otherPayee);
    const lying: NettingDeps = {
      ...deps(),
      payer: {
        id: netting.rail,
        asset: assets.USDC,
        payoutBatch: async () => ({
          status: "failed",
          code: "rejected",
          message: "reverted",
          refused: [{ index: 1, code: "rejected", message: "no such payout" }],
        }),
      },
    };
    await expect(flushNetting(lying, { force: true })).rejects.toBeInstanceOf(NettingInvariantError);
    expect((await paymentRow("pay_bad_index"))!.status).toBe("processing");
    // Its batch is still sending: once its lease runs out, a flush asks the rail again, under the same reference.
    await db.query("UPDATE netting_batches SET leased_until = now() WHERE rail = $1 AND status = 'sending'", [
      netting.rail,
    ]);
    const paid: bigint[] = [];
    await flushNetting(payingDeps(paid));
    expect(paid).toEqual([2n]);
    expect((await paymentRow("pay_bad_index"))!.status).toBe("succeeded");
  });
});

describe("the payouts waiting that a flush reads", () => {
  let other: NettingFixture;
  const batchedOf = async (ids: string[]) =>
    (
      await db.query<{ payment_id: string }>(
        "SELECT payment_id FROM netted_payouts WHERE batch_id IS NOT NULL AND payment_id = ANY($1::text[]) ORDER BY payment_id",
        [ids],
      )
    ).map((row) => row.payment_id);
  /** A flush, forced, reading at most `readMax` payouts waiting. */
  const flushReading = (readMax: number) => {
    const paying = payingDeps([]);
    return flushNetting(
      { ...paying, config: { ...paying.config, accruedReadMax: readMax } },
      { force: true },
    );
  };
  /**
   * The first tenant's backlog: `count` payouts (`<prefix>_<i>`) to as many payees, each older than the one after, the
   * oldest two hours old.
   */
  const backlog = async (prefix: string, count: number, payeeFrom: number) => {
    for (let i = 0; i < count; i++) {
      const id = `${prefix}_${i}`;
      await accrued(id, 1n, `0x${(payeeFrom + i).toString(16).padStart(40, "0")}`);
      await db.query(
        "UPDATE netted_payouts SET created_at = now() - make_interval(mins => 120 - $2) WHERE payment_id = $1",
        [id, i],
      );
    }
  };

  // Another tenant paying by the same rail; nothing waiting on it yet (another payout would take a share).
  beforeEach(async () => {
    other = await nettingFixture(db, ledger, `${netting.tenantId}_other`, 100n, netting.rail);
    expect(
      await db.query("SELECT 1 FROM netted_payouts WHERE rail = $1 AND batch_id IS NULL", [netting.rail]),
    ).toEqual([]);
  });

  it("are an even share per tenant: one tenant's backlog does not keep another tenant's payout out of the batch", async () => {
    await backlog("pay_backlog", 6, 0xd000);
    await other.insertPayment("pay_other_tenant");
    const otherPayee = "0x000000000000000000000000000000000000e0e0" as const;
    expect(await accruePayout(deps(), other.payout("pay_other_tenant", 1n, otherPayee))).toBe("accrued");
    const [row] = await db.query<{ tenant_id: string }>(
      "SELECT tenant_id FROM netted_payouts WHERE payment_id = 'pay_other_tenant'",
    );
    expect(row?.tenant_id).toBe(other.tenantId);
    // A window of four payouts: two tenants, two each. (With the window the four oldest payouts of any tenant, it
    // would have held the first tenant's four oldest, and the other tenant's payout would have waited.)
    await flushReading(4);
    expect(await batchedOf(["pay_other_tenant", "pay_backlog_0", "pay_backlog_1", "pay_backlog_2"])).toEqual([
      "pay_backlog_0",
      "pay_backlog_1",
      "pay_other_tenant",
    ]);
  });

  it("never holds more than the window, however many tenants: one each of those whose oldest waited longest", async () => {
    // Waiting: the first tenant's window_0 to window_2, a payout accrued without a tenant (before 0054) older than
    // all, and the other tenant's newest: three shares, a window of two.
    await backlog("pay_window", 4, 0xd100);
    await db.query(
      "UPDATE netted_payouts SET tenant_id = NULL, created_at = now() - interval '3 hours' WHERE payment_id = 'pay_window_3'",
    );
    await other.insertPayment("pay_other_newest");
    const otherPayee = "0x000000000000000000000000000000000000e0e1" as const;
    expect(await accruePayout(deps(), other.payout("pay_other_newest", 1n, otherPayee))).toBe("accrued");
    await flushReading(2);
    // Before: a share of at least one each, three payouts read past a window of two.
    expect(await batchedOf(["pay_window_0", "pay_window_1", "pay_window_3", "pay_other_newest"])).toEqual([
      "pay_window_0",
      "pay_window_3",
    ]);
  });
});

describe("a batch the rail's clearing account does not hold", () => {
  /**
   * A payout of another tenant's on the test's rail, alone and in flight: `amount` reserved from its customer (funded
   * by another rail) against this rail's clearing account, which holds the 100 the test's customer was funded with.
   */
  const payoutAlone = async (id: string, amount: bigint) => {
    const elsewhere = await nettingFixture(
      db,
      ledger,
      `${netting.tenantId}_${id}`,
      100n,
      `${netting.rail}_${id}`,
    );
    const [payer, clearing] = await Promise.all([
      getTenantAccount(db, { tenantId: elsewhere.tenantId, id: elsewhere.customerId }),
      getClearingAccount(db, { rail: netting.rail, asset: assets.USDC }),
    ]);
    const reservation = {
      pendingId: derivedLedgerId(id, "reserve"),
      debitAccountId: payer!.ledgerAccountId,
      creditAccountId: clearing!.ledgerAccountId,
      amount,
      ledger: assets.USDC.ledger,
      code: transferCodes.payments.payment,
    };
    return {
      reserve: async () => (await reserve(ledger, reservation, { id: reservation.pendingId })).outcome,
      /** The payout alone failed: its reservation is released. */
      fail: () =>
        voidLegs(
          ledger,
          [{ reservation, transfer: { id: derivedLedgerId(id, "void") } }],
          `the void of ${id}`,
        ),
    };
  };
  const clearingBalance = async () => {
    const clearing = await getClearingAccount(db, { rail: netting.rail, asset: assets.USDC });
    const [account] = await ledger.lookupAccounts([clearing!.ledgerAccountId]);
    return {
      debits: account!.debitsPosted,
      credits: account!.creditsPosted,
      pending: account!.creditsPending,
    };
  };
  const batchOf = async (paymentId: string) =>
    (
      await db.query<{ status: string; failure_message: string | null }>(
        "SELECT status, failure_message FROM netting_batches WHERE rail = $1 AND id IN (SELECT batch_id FROM netted_payouts WHERE payment_id = $2) ORDER BY created_at",
        [netting.rail, paymentId],
      )
    )[0];
  const queued = async (paymentId: string) =>
    (await db.query("SELECT 1 FROM netted_payouts WHERE payment_id = $1 AND batch_id IS NULL", [paymentId]))
      .length === 1;
  const paymentStatus = async (id: string) =>
    (await db.query<{ status: string }>("SELECT status FROM payments WHERE id = $1", [id]))[0]!.status;

  it("is not sent, as a payout alone is refused insufficient_liquidity: its payouts wait until the rail holds them", async () => {
    // 80 of the 100 the rail holds are reserved for a payout in flight; the batch would be 40.
    const alone = await payoutAlone("pay_alone_first", 80n);
    expect(await alone.reserve()).toBe("reserved");
    await accrued("pay_netted_short", 40n);
    const before = await customerPosted();
    const paid: bigint[] = [];
    // Before: the batch was sent, and its booking against the clearing account refused after it (exceeds_debits):
    // the flush threw, the batch stayed sending and its payment processing, and every flush sent it again.
    expect(await flushNetting(payingDeps(paid), { force: true })).toMatchObject({ batches: 1, payouts: 1 });
    expect(paid).toEqual([]);
    expect(await batchOf("pay_netted_short")).toBeUndefined();
    expect(await queued("pay_netted_short")).toBe(true);
    expect(await paymentStatus("pay_netted_short")).toBe("processing");
    expect(await customerPosted()).toBe(before);
    const [failed] = await db.query<{ failure_message: string }>(
      "SELECT failure_message FROM netting_batches WHERE rail = $1 AND status = 'failed'",
      [netting.rail],
    );
    expect(failed!.failure_message).toMatch(/clearing account/);
    expect(await clearingBalance()).toEqual({ debits: 100n, credits: 0n, pending: 80n });

    // The payout alone fails: the rail holds the batch now, and the next flush pays it, booked once.
    await alone.fail();
    expect(await flushNetting(payingDeps(paid), { force: true })).toMatchObject({ batches: 1, payouts: 1 });
    expect(paid).toEqual([40n]);
    expect(await batchOf("pay_netted_short")).toEqual({ status: "succeeded", failure_message: null });
    expect(await paymentStatus("pay_netted_short")).toBe("succeeded");
    expect(await clearingBalance()).toEqual({ debits: 100n, credits: 40n, pending: 0n });
  });

  it("holds what it sends while it is in flight, and gives it back when the rail refuses it", async () => {
    await accrued("pay_netted_in_flight", 40n);
    const inFlight: NettingDeps = {
      ...deps(),
      payer: {
        id: netting.rail,
        asset: assets.USDC,
        payoutBatch: async (batch) => ({ status: "in_flight", reference: batch.reference }),
      },
    };
    await flushNetting(inFlight, { force: true });
    expect(await batchOf("pay_netted_in_flight")).toMatchObject({ status: "sending" });
    // Before: a payout alone reserved the 80 the batch's 40 leave the rail (which holds 100), and once the batch was
    // paid its booking was refused.
    const alone = await payoutAlone("pay_alone_beside", 80n);
    expect(await alone.reserve()).toBe("insufficient_liquidity");
    expect(await clearingBalance()).toEqual({ debits: 100n, credits: 0n, pending: 40n });

    // Asked again once its lease ran out, the rail refuses the batch (deps(): nothing sent): the hold is released.
    await db.query("UPDATE netting_batches SET leased_until = now() WHERE rail = $1 AND status = 'sending'", [
      netting.rail,
    ]);
    await flushNetting(deps(), { force: true });
    expect(await queued("pay_netted_in_flight")).toBe(true);
    expect(await clearingBalance()).toEqual({ debits: 100n, credits: 0n, pending: 0n });
    expect(await alone.reserve()).toBe("reserved");
  });

  it("a batch refused after its payment was booked is not put back in the queue to be paid again", async () => {
    await accrued("pay_netted_booked", 30n);
    const paid: bigint[] = [];
    await flushNetting(payingDeps(paid), { force: true });
    expect(paid).toEqual([30n]);
    // As if the flush had stopped after the booking, before the batch was marked paid; and the rail, asked again,
    // answered refused for a batch it paid (its bug).
    await db.query(
      "UPDATE netting_batches SET status = 'sending', lease_token = NULL, leased_until = NULL WHERE rail = $1",
      [netting.rail],
    );
    const refusing: NettingDeps = {
      ...deps(),
      payer: {
        id: netting.rail,
        asset: assets.USDC,
        payoutBatch: async () => ({
          status: "failed",
          code: "rail_unavailable",
          message: "refused after all",
        }),
      },
    };
    await expect(flushNetting(refusing, { force: true })).rejects.toThrow(/could not be finished/);
    expect(await batchOf("pay_netted_booked")).toMatchObject({ status: "sending" });
    const queued = await db.query("SELECT 1 FROM netted_payouts WHERE payment_id = $1 AND batch_id IS NULL", [
      "pay_netted_booked",
    ]);
    expect(queued).toEqual([]);
    await flushNetting(payingDeps(paid), { force: true });
    expect(paid).toEqual([30n, 30n]);
    expect(await clearingBalance()).toEqual({ debits: 100n, credits: 30n, pending: 0n });
  });

  it("resumed without a hold, waits sending until the rail holds it: it may have been sent before batches were held", async () => {
    await accrued("pay_netted_unheld", 40n);
    // The flush stops between the batch's write and its hold.
    const stopping: Ledger = {
      ...ledger,
      createTransfers: async (...args: Parameters<Ledger["createTransfers"]>) => {
        if (args[0].some((transfer) => transfer.code === transferCodes.netting.batchPaid))
          throw new Error("the process stopped");
        return ledger.createTransfers(...args);
      },
    };
    const paid: bigint[] = [];
    await expect(flushNetting({ ...payingDeps(paid), ledger: stopping }, { force: true })).rejects.toThrow(
      "the process stopped",
    );
    const alone = await payoutAlone("pay_alone_resumed", 80n);
    expect(await alone.reserve()).toBe("reserved");
    await db.query("UPDATE netting_batches SET leased_until = now() WHERE rail = $1 AND status = 'sending'", [
      netting.rail,
    ]);
    await expect(flushNetting(payingDeps(paid), { force: true })).rejects.toBeInstanceOf(NettingResumeError);
    expect(paid).toEqual([]);
    expect(await batchOf("pay_netted_unheld")).toMatchObject({ status: "sending" });
    await alone.fail();
    await flushNetting(payingDeps(paid), { force: true });
    expect(paid).toEqual([40n]);
    expect(await paymentStatus("pay_netted_unheld")).toBe("succeeded");
    expect(await clearingBalance()).toEqual({ debits: 100n, credits: 40n, pending: 0n });
  });
});
