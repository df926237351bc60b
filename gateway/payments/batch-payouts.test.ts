// Accruing a payout for a netted batch, on PGlite with the real ledger: the payer's debit and the queued payout
// are written together, so recovery never finds a debited payment without its payout (and pays it again).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assets } from "../../core/index.ts";
import { latch } from "../../test/support/latch.ts";
import { type NettingFixture, nettingFixture } from "../../test/support/netting.ts";
import { gatewayMigrations } from "../app.ts";
import { type Db, migrate, openPglite } from "../db/index.ts";
import { createLedger, type Ledger, ledgerMigrations, transferCodes } from "../ledger/index.ts";
import { nettingBatchPayeesMax } from "../router/index.ts";
import {
  accruePayout,
  flushNetting,
  isPaymentNotProcessing,
  type NettingDeps,
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
    id: "evm",
    asset: assets.USDC,
    payoutBatch: async (batch) => {
      paid.push(batch.payouts.reduce((sum, payout) => sum + payout.amount, 0n));
      return {
        status: "succeeded",
        evidence: { rail: "external", railId: "evm", reference: batch.reference },
        fee: 0n,
      };
    },
  },
});

const insertPayment = (id: string) => netting.insertPayment(id);

beforeAll(async () => {
  db = await openPglite(undefined);
  await migrate(db, [ledgerMigrations, gatewayMigrations]);
  ledger = createLedger({ db });
  netting = await nettingFixture(db, ledger, "netting", 100n);
}, 120_000);

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
    await netting.fund(30n); // leaves the payer 25 after this payout, what the next test accrues
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
    ] as const) {
      await insertPayment(id);
      const payout = payoutOf(id, amount);
      expect(await accruePayout(deps(), payout)).toBe("accrued");
    }
    const queued = async () =>
      (
        await db.query<{ total: bigint | null }>(
          "SELECT sum(amount)::bigint AS total FROM netted_payouts WHERE batch_id IS NULL",
        )
      )[0]!.total ?? 0n;
    const owed = await queued();
    // Process A's rail refuses its batch, slowly, having sent nothing; process B's rail pays whatever it is asked.
    const slow = latch();
    const asked = latch();
    const refusing: NettingDeps = {
      ...deps(),
      payer: {
        id: "evm",
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
    const accrueOne = async (id: string, amount: bigint) => {
      await insertPayment(id);
      const payout = payoutOf(id, amount);
      expect(await accruePayout(deps(), payout)).toBe("accrued");
    };
    await accrueOne("pay_stuck", 3n);
    let stuck: string | null = null;
    const paid: string[] = [];
    const payer = (mode: "in_flight" | "throw_for_stuck"): NettingDeps => ({
      ...deps(),
      payer: {
        id: "evm",
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
            evidence: { rail: "external", railId: "evm", reference: batch.reference },
            fee: 0n,
          };
        },
      },
    });
    await flushNetting(payer("in_flight"), { force: true });
    await accrueOne("pay_waiting", 2n);
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
  const accrueOne = async (id: string, amount: bigint) => {
    await insertPayment(id);
    expect(await accruePayout(deps(), payoutOf(id, amount))).toBe("accrued");
  };

  beforeAll(async () => {
    await netting.fund(10n);
  });

  it("a flush whose payouts another flush batched first writes no batch and is no error", async () => {
    await flushNetting(payingDeps([]), { force: true }); // what earlier tests left sending or waiting
    await accrueOne("pay_overtaken", 2n);
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
    await accrueOne("pay_timer", 3n);
    const refused: NettingDeps = {
      ...deps(),
      payer: {
        id: "evm",
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
      "UPDATE netting_batches SET created_at = now() - interval '1 hour' WHERE status <> 'failed'",
    );
    await db.query(
      "UPDATE netting_batches SET updated_at = now() - interval '1 minute' WHERE status = 'failed'",
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
    const count = nettingBatchPayeesMax + 1;
    for (let i = 0; i < count; i++) {
      const id = `pay_many_${i}`;
      await insertPayment(id);
      const payee = `0x${(0xc000 + i).toString(16).padStart(40, "0")}` as const;
      expect(await accruePayout(deps(), { ...payoutOf(id, 1n), payee })).toBe("accrued");
    }
    const totals: bigint[] = []; // each payout is 1: a batch's total is its payee count
    const paying = payingDeps(totals);
    // The timer due (not forced): the payouts and every batch an hour old.
    await db.query("UPDATE netted_payouts SET created_at = now() - interval '1 hour' WHERE batch_id IS NULL");
    await db.query(
      "UPDATE netting_batches SET created_at = now() - interval '1 hour', updated_at = now() - interval '1 hour'",
    );
    // Before: one batch of 200, and the last payee waited for the next interval.
    expect(await flushNetting(paying)).toMatchObject({ trigger: "timer", batches: 2, payouts: count });
    expect(totals).toEqual([BigInt(nettingBatchPayeesMax), 1n]);
    const waiting = await db.query("SELECT 1 FROM netted_payouts WHERE batch_id IS NULL");
    expect(waiting).toEqual([]);
  }, 60_000);
});
