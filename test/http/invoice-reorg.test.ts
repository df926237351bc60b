// A receipt of an invoice a reorg reversed (settlement/invoices.ts receiptRecordStatement), on PostgreSQL, where
// another writer's reversal can commit between the receipt's reads and its lock on the invoice's row: the receipt
// pays the invoice again only from reads that saw every reversal standing, so one recorded in between never leaves it
// paid over what it no longer holds. A reorg of one receipt of an over-paid invoice leaves it paid
// (reversalRecordStatement), from reads of its row as it stands, and a reversed invoice due again takes a payer's
// signed payment (submitInvoicePayment). (The rules themselves, on PGlite: gateway/settlement/split-reversal.test.ts.)
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assets, type Rail, type RailEventHandler } from "../../core/index.ts";
import { serverRaised } from "../../gateway/db/index.ts";
import { derivedLedgerId } from "../../gateway/ids/index.ts";
import { transferCodes } from "../../gateway/ledger/index.ts";
import {
  applyRefundEvent,
  createRefund,
  getRefund,
  recoverPendingRefunds,
} from "../../gateway/payments/index.ts";
import { claimableOf, claimStatement, failedStatement } from "../../gateway/payments/refunds-store.ts";
import {
  applyReceived,
  applyReinstated,
  applyReversed,
  createInvoice,
} from "../../gateway/settlement/index.ts";
import { latch } from "../support/latch.ts";
import { recordingLogger } from "../support/recording-logger.ts";
import { receivingToySnapshot } from "../support/toy-rail.ts";
import { invoicesHeardPaid, startTestGateway, type TestGateway } from "./support.ts";

/** A rail that takes USDC in for invoices, each transfer a receipt of its own (as a deposit address's). */
const toyReorg: Rail = {
  id: "toyreorg",
  kind: "fiat",
  asset: assets.USDC,
  async start() {},
  async stop() {},
  snapshot: () => receivingToySnapshot(toyReorg, 100_000_000n),
  execute: async () => ({ status: "failed", code: "rejected", message: "no payouts", retryElsewhere: true }),
  onEvent(handler) {
    toyEvents = handler;
  },
  balance: async () => 0n,
  receive: async (request) => ({
    status: "offered",
    railReference: `toy_${request.reference}`,
    expiresAtMs: null,
    instructions: { pay: request.reference },
  }),
  // Takes every refund and answers later (its failure or success comes as a reversal's event naming it); one in
  // `refundsFailing`, asked (again), answers that the provider failed it.
  refundReceived: async (refund) =>
    refundsFailing.has(refund.id)
      ? { status: "failed", code: "rejected", message: "the provider failed the refund" }
      : {
          status: "in_flight",
          evidence: { rail: "external", railId: "toyreorg", reference: `toy_re_${refund.id}` },
        },
  // Takes every signed payment it is handed: what the gateway lets through to the rail is what is tested.
  submitSignedPayment: async (payment) => {
    signedPayments.push(payment.reference);
    return { status: "submitted", railReference: `toy_tx_${signedPayments.length}` };
  },
};
/** The refunds the toy rail answers failed when asked about them. */
const refundsFailing = new Set<string>();
/** The invoices whose signed payments the toy rail was handed, in order. */
const signedPayments: string[] = [];
/** The gateway's handler of the toy rail's events (its one settlement path), once the gateway started the rail. */
let toyEvents: RailEventHandler | null = null;

let gw: TestGateway;

beforeAll(async () => {
  gw = await startTestGateway({ database: "postgres", extraRailModules: [() => ({ rails: [toyReorg] })] });
});
afterAll(async () => {
  await gw?.app.close();
});

const evidence = { rail: "external" as const, railId: "toyreorg", reference: "cd".repeat(32) };
const receive = (invoiceId: string, key: string, amount: bigint) =>
  applyReceived(gw.app.settlement, { rail: "toyreorg", reference: invoiceId, key, amount, evidence });
const statusOf = async (invoiceId: string) =>
  (await gw.app.db.query<{ status: string }>("SELECT status FROM invoices WHERE id = $1", [invoiceId]))[0]
    ?.status;
const invoiceOf = async (amount: string) => {
  const created = await createInvoice(gw.app.settlement, {
    tenantId: "ten_demo",
    accountId: "acct_demo_merchant",
    asset: "USDC",
    amount,
    rail: "toyreorg",
    description: "reorg",
    expirySeconds: 600,
  });
  if (!created.ok) throw new Error(created.message);
  return created.invoice.id;
};
/** The deposit watcher's reversal of receipt `receipt`, which names the receipt it takes. */
const reorgOf = (invoiceId: string, receipt: string, amount: bigint) =>
  applyReversed(gw.app.settlement, {
    rail: "toyreorg",
    reference: invoiceId,
    key: `reorg:${receipt}`,
    amount,
    evidence,
    takes: { receipt },
  });
const eventsOf = async (invoiceId: string) =>
  (
    await gw.app.db.query<{ type: string }>(
      "SELECT type FROM outbox WHERE payload->>'invoice_id' = $1 AND type LIKE 'invoice.%' ORDER BY id",
      [invoiceId],
    )
  ).map((row) => row.type);
/**
 * Waits until `count` statements whose text holds `text` wait for a lock (another writer's, held open by the test),
 * in this file's database: the run's other files share the server, each its own database, and run the same
 * statements.
 */
async function waitingOnLock(text: string, count = 1): Promise<void> {
  for (let i = 0; ; i++) {
    const waiting = await gw.app.db.query(
      `SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()
         AND query LIKE $1`,
      [`%${text}%`],
    );
    if (waiting.length >= count) return;
    if (i >= 200) throw new Error(`no statement with ${text} ever waited for a lock`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe("a receipt of an invoice a reorg reversed", () => {
  it("does not pay it over a reversal recorded between its reads and its lock on the invoice", async () => {
    const created = await createInvoice(gw.app.settlement, {
      tenantId: "ten_demo",
      accountId: "acct_demo_merchant",
      asset: "USDC",
      amount: "10",
      rail: "toyreorg",
      description: "reorg",
      expirySeconds: 600,
    });
    if (!created.ok) throw new Error(created.message);
    const id = created.invoice.id;
    expect(await receive(id, "r0", 6_000_000n)).toBe("received");
    expect(await receive(id, "r1", 4_000_000n)).toBe("applied");
    const reorg = { rail: "toyreorg", reference: id, key: "reorg:r0", amount: 6_000_000n, evidence };
    expect(await applyReversed(gw.app.settlement, { ...reorg, takes: { receipt: "r0" } })).toEqual({
      status: "applied",
      shortfall: 0n,
    });
    expect(await statusOf(id)).toBe("reversed");

    // Another writer records a reorg of r1 (what its record statement writes of the rows a receipt reads: the
    // reversal, then the invoice marked) and holds its transaction open.
    const recorded = latch();
    const commit = latch();
    const other = gw.app.db.transaction(async (tx) => {
      await tx.query(
        "INSERT INTO invoice_reversals (invoice_id, key, amount, receipt) VALUES ($1, 'reorg:r1', 4000000, 'r1')",
        [id],
      );
      await tx.query("UPDATE invoices SET status = 'reversed' WHERE id = $1", [id]);
      recorded.release();
      await commit.done;
    });
    await recorded.done;
    // The payer pays 6 again: its record statement reads the reversals (r0's alone) and waits for the invoice's row.
    const paidAgain = receive(id, "r2", 6_000_000n);
    await waitingOnLock("INSERT INTO invoice_receipts");
    commit.release();
    await other;
    // Its reads held 10 of the 10 asked, the reorg of r1 left out: it holds 6. Before the check of the row it read,
    // it was marked paid.
    expect(await paidAgain).toBe("received");
    expect(await statusOf(id)).toBe("reversed");
    // Read again, both reversals count: 4 more bring what it holds to 10.
    expect(await receive(id, "r3", 4_000_000n)).toBe("applied");
    expect(await statusOf(id)).toBe("paid");
  });
});

describe("a reorg of one receipt of an invoice", () => {
  it("leaves an over-paid invoice paid, its invoice.reversed told, and reverses one that no longer holds its amount", async () => {
    const over = await invoiceOf("10");
    expect(await receive(over, "r0", 10_000_000n)).toBe("applied");
    expect(await receive(over, "r1", 10_000_000n)).toBe("received");
    expect(await reorgOf(over, "r0", 10_000_000n)).toEqual({ status: "applied", shortfall: 0n });
    // Before: reversed, though r1 alone pays all of it.
    expect(await statusOf(over)).toBe("paid");
    expect(await eventsOf(over)).toEqual([
      "invoice.payment_received",
      "invoice.paid",
      "invoice.payment_received",
      "invoice.reversed",
    ]);

    const under = await invoiceOf("10");
    expect(await receive(under, "r0", 6_000_000n)).toBe("received");
    expect(await receive(under, "r1", 6_000_000n)).toBe("applied");
    expect(await reorgOf(under, "r0", 6_000_000n)).toEqual({ status: "applied", shortfall: 0n });
    expect(await statusOf(under)).toBe("reversed");
  });

  it("reverses it when another reorg of it, which its reads left out, is recorded before its lock on the invoice", async () => {
    const id = await invoiceOf("10");
    expect(await receive(id, "r0", 10_000_000n)).toBe("applied");
    expect(await receive(id, "r1", 10_000_000n)).toBe("received");
    // Another writer records a reorg of r0 that leaves the invoice paid (what its record statement writes of the rows
    // this one reads: the reversal, then the invoice's row changed) and holds its transaction open.
    const recorded = latch();
    const commit = latch();
    const other = gw.app.db.transaction(async (tx) => {
      await tx.query(
        "INSERT INTO invoice_reversals (invoice_id, key, amount, receipt) VALUES ($1, 'reorg:r0', 10000000, 'r0')",
        [id],
      );
      await tx.query("UPDATE invoices SET status = status WHERE id = $1", [id]);
      recorded.release();
      await commit.done;
    });
    await recorded.done;
    // The reorg of r1: its reads hold 20 less r1's 10, r0's reversal left out, and it waits for the invoice's row.
    const reversed = reorgOf(id, "r1", 10_000_000n);
    await waitingOnLock("INSERT INTO invoice_reversals");
    commit.release();
    await other;
    // Computed again from reads that see r0's reversal: nothing of the 10 is left. From its first reads, it left the
    // invoice paid.
    expect(await reversed).toEqual({ status: "applied", shortfall: 0n });
    expect(await statusOf(id)).toBe("reversed");
  });
});

describe("a reorg of one receipt of an over-paid invoice whose excess a refund took", () => {
  it("reverses it when the refund's claim commits between the reversal's reads and its touch of what is refundable", async () => {
    const id = await invoiceOf("10");
    expect(await receive(id, "r0", 10_000_000n)).toBe("applied");
    expect(await receive(id, "r1", 10_000_000n)).toBe("received");
    // Another writer claims a refund of the excess (what a refund's claim writes of the rows a reversal reads: the
    // refund, and what is refunded on the invoice's `refundable` row, none of it a discount) and holds its transaction
    // open.
    const claimed = latch();
    const commit = latch();
    const other = gw.app.db.transaction(async (tx) => {
      await tx.query(
        `INSERT INTO refunds (id, tenant_id, invoice_id, account_id, asset, amount, rail, status, hold_transfer_id)
         VALUES ($1, 'ten_demo', $2, 'acct_demo_merchant', 'USDC', 10000000, 'toyreorg', 'succeeded', $3)`,
        [`rfd_reorg_${id}`, id, derivedLedgerId(`rfd_reorg_${id}`, "refund-hold").toString()],
      );
      await tx.query(
        `INSERT INTO refundable AS r (target_id, paid, refunded) VALUES ($1, 20000000, 10000000)
         ON CONFLICT (target_id) DO UPDATE SET refunded = r.refunded + 10000000`,
        [id],
      );
      claimed.release();
      await commit.done;
    });
    await claimed.done;
    // The reorg of r1: its reads (the refunds among them) left the refund out, and its touch waits for that row.
    const reversed = reorgOf(id, "r1", 10_000_000n);
    await waitingOnLock("INSERT INTO invoice_reversals");
    commit.release();
    await other;
    expect(await reversed).toEqual({ status: "applied", shortfall: 0n });
    // It holds 20 less the 10 reorganised away less the 10 refunded: nothing of its 10. From its reads, it held 10.
    expect(await statusOf(id)).toBe("reversed");
  });
});

describe("a receipt of an open invoice a refund of is being claimed", () => {
  it("counts the refund whose claim commits between the receipt's reads and its lock on the invoice", async () => {
    const id = await invoiceOf("10");
    expect(await receive(id, "r0", 6_000_000n)).toBe("received");
    // Another writer claims a refund of the 6 the part-payment brought (the claim a refund writes with its hold: its
    // row, and what is refunded on the invoice's `refundable` row), marked paid by the rail, and holds it open.
    const read = await claimableOf(gw.app.db, id);
    const refundId = `rfd_receipt_${id}`;
    const claimed = latch();
    const commit = latch();
    const other = gw.app.db.transaction(async (tx) => {
      const claim = claimStatement({
        id: refundId,
        tenantId: "ten_demo",
        target: { kind: "invoice", invoiceId: id },
        accountId: "acct_demo_merchant",
        assetCode: "USDC",
        amount: 6_000_000n,
        rail: "toyreorg",
        reason: null,
        metadata: {},
        destination: null,
        holdTransferId: derivedLedgerId(refundId, "refund-hold"),
        idempotencyKey: null,
        requestSha256: null,
        paid: 6_000_000n,
        readAt: read.version,
      });
      await tx.query(claim.text, claim.params);
      await tx.query("UPDATE refunds SET status = 'succeeded' WHERE id = $1", [refundId]);
      claimed.release();
      await commit.done;
    });
    await claimed.done;
    // A receipt of the 4 left: its reads leave the refund out, and it waits for the `refundable` row the claim holds
    // before it locks the invoice. Before, nothing made it wait: it counted the 6 the payer got back and was done.
    const paid = receive(id, "r1", 4_000_000n);
    await Promise.race([waitingOnLock("INSERT INTO invoice_receipts"), paid]);
    commit.release();
    await other;
    // It holds 6 less the 6 refunded and the 4: 4 of its 10. Before: paid.
    expect(await paid).toBe("received");
    expect(await statusOf(id)).toBe("open");
  });
});

describe("a failure of a refund of an open invoice a reorg is reversing", () => {
  it("does not pay it over a reversal recorded while the failure waits for what is refundable", async () => {
    const id = await invoiceOf("10");
    expect(await receive(id, "r0", 6_000_000n)).toBe("received");
    // A refund of the 6 the part-payment brought, claimed and left pending (the rail answers later).
    const refundId = `rfd_failed_${id}`;
    const claim = claimStatement({
      id: refundId,
      tenantId: "ten_demo",
      target: { kind: "invoice", invoiceId: id },
      accountId: "acct_demo_merchant",
      assetCode: "USDC",
      amount: 6_000_000n,
      rail: "toyreorg",
      reason: null,
      metadata: {},
      destination: null,
      holdTransferId: derivedLedgerId(refundId, "refund-hold"),
      idempotencyKey: null,
      requestSha256: null,
      paid: 6_000_000n,
      readAt: (await claimableOf(gw.app.db, id)).version,
    });
    await gw.app.db.query(claim.text, claim.params);
    // The payer pays the 4 left: it holds 6 less the 6 refunded and the 4, 4 of its 10.
    expect(await receive(id, "r1", 4_000_000n)).toBe("received");
    // Another writer records a reorg of r1 (what its record statement writes: the touch of what is refundable, the
    // reversal, then the invoice's row changed) and holds its transaction open.
    const recorded = latch();
    const commit = latch();
    const other = gw.app.db.transaction(async (tx) => {
      await tx.query("UPDATE refundable SET paid = paid WHERE target_id = $1", [id]);
      await tx.query(
        "INSERT INTO invoice_reversals (invoice_id, key, amount, receipt) VALUES ($1, 'reorg:r1', 4000000, 'r1')",
        [id],
      );
      await tx.query("UPDATE invoices SET status = status WHERE id = $1", [id]);
      recorded.release();
      await commit.done;
    });
    await recorded.done;
    // The rail fails the refund: its statement reads the reversals (none) and waits for the `refundable` row.
    const failure = failedStatement(refundId, "pending", {
      code: "rejected",
      message: "refused",
      evidence: null,
    });
    // Its error is heard from now on: it may come before the awaits below are done, and unheard it is an unhandled
    // rejection of the run.
    const failed = gw.app.db.query(failure.text, failure.params).then(
      () => null,
      (error: unknown) => error,
    );
    await waitingOnLock("released AS");
    commit.release();
    await other;
    // From its reads it held 10 of its 10 once the 6 came back, r1's reorg left out. Before: paid, holding 6.
    const refused = await failed;
    expect(await statusOf(id)).toBe("open");
    expect(serverRaised(refused, "SYR07")).toBe(true);
    // Computed again from reads that see the reversal: the refund fails, and the invoice, holding 6, stays open.
    await gw.app.db.query(failure.text, failure.params);
    const [refund] = await gw.app.db.query<{ status: string }>("SELECT status FROM refunds WHERE id = $1", [
      refundId,
    ]);
    expect(refund?.status).toBe("failed");
    expect(await statusOf(id)).toBe("open");
    expect(await eventsOf(id)).not.toContain("invoice.paid");
  });
});

describe("a failure of a refund of a reversed invoice a reinstatement is giving back", () => {
  it("pays it once both are written, when the reinstatement commits while the failure waits for what is refundable", async () => {
    const id = await invoiceOf("10");
    expect(await receive(id, "r0", 6_000_000n)).toBe("received");
    expect(await receive(id, "r1", 6_000_000n)).toBe("applied");
    expect(await receive(id, "r2", 2_000_000n)).toBe("received");
    expect(await reorgOf(id, "r0", 6_000_000n)).toEqual({ status: "applied", shortfall: 0n });
    expect(await reorgOf(id, "r2", 2_000_000n)).toEqual({ status: "applied", shortfall: 0n });
    expect(await statusOf(id)).toBe("reversed");
    // A refund of 3 of the 6 it still holds, claimed while reversed (none of it a discount) and left pending.
    const refundId = `rfd_reinstated_${id}`;
    const claim = claimStatement({
      id: refundId,
      tenantId: "ten_demo",
      target: { kind: "invoice", invoiceId: id },
      accountId: "acct_demo_merchant",
      assetCode: "USDC",
      amount: 3_000_000n,
      rail: "toyreorg",
      reason: null,
      metadata: {},
      destination: null,
      holdTransferId: derivedLedgerId(refundId, "refund-hold"),
      idempotencyKey: null,
      requestSha256: null,
      paid: 14_000_000n,
      readAt: (await claimableOf(gw.app.db, id)).version,
    });
    await gw.app.db.query(claim.text, claim.params);
    // Neither alone pays it: r0 mined again, it holds 14 less r2's 2 and the 3 pending; the refund failed, 14 less
    // r0's 6 and r2's 2. Both together hold 12 of its 10. The invoice's row held locked, r0's reinstatement marks its
    // reversal given back, touches what is refundable and waits for the row; the rail fails the refund meanwhile: its
    // statement reads r0's reversal standing and waits for what is refundable.
    const locked = latch();
    const unlock = latch();
    const held = gw.app.db.transaction(async (tx) => {
      await tx.query("SELECT 1 FROM invoices WHERE id = $1 FOR NO KEY UPDATE", [id]);
      locked.release();
      await unlock.done;
    });
    await locked.done;
    const reinstated = applyReinstated(gw.app.settlement, {
      rail: "toyreorg",
      reference: id,
      key: "reorg:r0",
      evidence,
    });
    await waitingOnLock("SELECT 1 FROM invoices WHERE id = $1 FOR UPDATE");
    const failure = failedStatement(refundId, "pending", {
      code: "rejected",
      message: "refused",
      evidence: null,
    });
    // Its error is heard from now on: it may come before the awaits below are done, and unheard it is an unhandled
    // rejection of the run.
    const failed = gw.app.db.query(failure.text, failure.params).then(
      () => null,
      (error: unknown) => error,
    );
    await waitingOnLock("released AS");
    unlock.release();
    await held;
    expect(await reinstated).toMatchObject({ status: "applied", amount: 6_000_000n });
    // The reinstatement, its reads counting the refund pending, left it reversed and moved its row; the failure, whose
    // reads had r0's reversal standing, finds the row moved and is written again from new reads. Before: the row
    // left as it was, the failure paid nothing from its reads, and the invoice stayed reversed holding 12 of its 10.
    const refused = await failed;
    await gw.app.db.query(failure.text, failure.params);
    expect(await statusOf(id)).toBe("paid");
    expect(serverRaised(refused, "SYR07")).toBe(true);
    expect((await eventsOf(id)).slice(-2)).toEqual(["invoice.reinstated", "invoice.paid"]);
  });
});

describe("a reorg given back, told by the rail", () => {
  it("tells the process's listeners that it paid the invoice again, as a receipt that pays it does", async () => {
    const id = await invoiceOf("10");
    expect(await receive(id, "r0", 6_000_000n)).toBe("received");
    expect(await receive(id, "r1", 4_000_000n)).toBe("applied");
    expect(await reorgOf(id, "r0", 6_000_000n)).toEqual({ status: "applied", shortfall: 0n });
    expect(await statusOf(id)).toBe("reversed");
    const heard = invoicesHeardPaid(gw.app);
    // r0 mined again, through the rail's events as the deposit watcher tells it.
    expect(await toyEvents?.({ kind: "reinstated", reference: id, key: "reorg:r0", evidence })).toBe(
      "applied",
    );
    expect(await statusOf(id)).toBe("paid");
    expect((await eventsOf(id)).slice(-2)).toEqual(["invoice.reinstated", "invoice.paid"]);
    // Before: nothing heard; only a receipt that paid it was told.
    expect(heard).toEqual([id]);
  });
});

describe("a failure of a refund of a reversed invoice, told by the rail", () => {
  /** An over-paid invoice of 10 (10 + 5), and a refund of the excess 5 made of it through the provider. */
  const overPaidWithRefund = async () => {
    const id = await invoiceOf("10");
    expect(await receive(id, "r0", 10_000_000n)).toBe("applied");
    expect(await receive(id, "r1", 5_000_000n)).toBe("received");
    const made = await createRefund(gw.app.payments, {
      tenantId: "ten_demo",
      target: { kind: "invoice", invoiceId: id },
      amount: "5",
      reason: null,
      metadata: {},
      destination: null,
      idempotencyKey: null,
    });
    if (!made.ok) throw new Error(made.message);
    return { id, refund: made.refund };
  };

  /**
   * An invoice of 10 paid 10 + 5, a refund of the excess 5 that the provider answers later (pending, counted against
   * what the invoice holds), then the 5 reorganised away: 15 less 5 less the 5 pending is below its 10, reversed.
   */
  const reversedWithPendingRefund = async () => {
    const { id, refund } = await overPaidWithRefund();
    expect(refund.status).toBe("pending");
    expect(await reorgOf(id, "r1", 5_000_000n)).toEqual({ status: "applied", shortfall: 0n });
    expect(await statusOf(id)).toBe("reversed");
    return { id, refund };
  };

  /** The provider's failure of refund `refundId` of invoice `id`, as the rail's event: what the refund took is back. */
  const failedByProvider = (id: string, refundId: string) => {
    const reference = `toy_re_${refundId}`;
    return {
      kind: "reinstated" as const,
      reference: id,
      key: `refund:${reference}`,
      evidence: { ...evidence, reference },
    };
  };

  it("tells the process's listeners that it paid the invoice again, as a receipt that pays it does", async () => {
    const { id, refund } = await reversedWithPendingRefund();
    const heard = invoicesHeardPaid(gw.app);
    // The provider fails the refund, through the rail's events: the 5 is back, and it holds its amount.
    expect(await toyEvents?.(failedByProvider(id, refund.id))).toBe("applied");
    expect(await statusOf(id)).toBe("paid");
    expect((await eventsOf(id)).slice(-2)).toEqual(["invoice.reversed", "invoice.paid"]);
    // Before: nothing heard; `invoice.paid` went out to webhooks alone.
    expect(heard).toEqual([id]);
  });

  it("tells the process's listeners once when the failure comes as the rail's answer to the recovery pass", async () => {
    const { id, refund } = await reversedWithPendingRefund();
    // And a listener that throws: what committed stands, the pass goes on (logged).
    const heard = invoicesHeardPaid(gw.app, () => {
      throw new Error("a listener's own failure");
    });
    // The answer lost (a stop before the event), the recovery pass asks the provider again: it failed the refund.
    refundsFailing.add(refund.id);
    // A listener's throw does not fail the pass (it would say "1 pending refund(s) could not be driven on").
    await recoverPendingRefunds(gw.app.payments, { quietMs: 0 });
    expect((await getRefund(gw.app.db, { tenantId: "ten_demo", id: refund.id }))?.status).toBe("failed");
    expect(await refundEvents(refund.id, "refund.failed")).toBe(1);
    expect(await statusOf(id)).toBe("paid");
    expect((await eventsOf(id)).slice(-2)).toEqual(["invoice.reversed", "invoice.paid"]);
    // Before: nothing heard; what the failure paid was dropped on the way back from the rail's answer.
    expect(heard).toEqual([id]);
    // Asked again, the refund is failed already: nothing more is told.
    await recoverPendingRefunds(gw.app.payments, { quietMs: 0 });
    expect(heard).toEqual([id]);
  });

  /** How many of `type` the outbox holds of refund `refundId`. */
  const refundEvents = async (refundId: string, type: string) =>
    (
      await gw.app.db.query(`SELECT 1 FROM outbox WHERE type = $1 AND payload->>'refund_id' = $2`, [
        type,
        refundId,
      ])
    ).length;
  const paidEvents = async (invoiceId: string) =>
    (await eventsOf(invoiceId)).filter((type) => type === "invoice.paid").length;

  it("pays it once when the provider's failure is delivered again: one invoice.paid, its listeners told once", async () => {
    const { id, refund } = await reversedWithPendingRefund();
    const paidBefore = await paidEvents(id);
    const heard = invoicesHeardPaid(gw.app);
    const failed = failedByProvider(id, refund.id);
    expect(await toyEvents?.(failed)).toBe("applied");
    expect(await toyEvents?.(failed)).toBe("applied");
    expect((await getRefund(gw.app.db, { tenantId: "ten_demo", id: refund.id }))?.status).toBe("failed");
    expect(await statusOf(id)).toBe("paid");
    expect((await paidEvents(id)) - paidBefore).toBe(1);
    expect(await refundEvents(refund.id, "refund.failed")).toBe(1);
    expect(heard).toEqual([id]);
  });

  it("pays it once when the failure comes as the refund's attempt event, delivered again: its listeners told once", async () => {
    const { id, refund } = await reversedWithPendingRefund();
    const paidBefore = await paidEvents(id);
    const heard = invoicesHeardPaid(gw.app);
    // The refund's end as its attempt's event (a payout refund's: the attempt's id is the refund's), applyRefundEvent.
    const failed = {
      kind: "attempt_failed" as const,
      attemptId: refund.id,
      code: "rejected" as const,
      message: "the payout failed",
      retryElsewhere: false,
    };
    expect(await toyEvents?.(failed)).toBe("applied");
    expect(await toyEvents?.(failed)).toBe("applied");
    const ended = await getRefund(gw.app.db, { tenantId: "ten_demo", id: refund.id });
    expect(ended?.status).toBe("failed");
    expect(await statusOf(id)).toBe("paid");
    expect((await paidEvents(id)) - paidBefore).toBe(1);
    expect(await refundEvents(refund.id, "refund.failed")).toBe(1);
    expect(heard).toEqual([id]);
  });

  it("undoes a succeeded refund whose post an earlier version moved back apart: nothing moved twice, the refund failed", async () => {
    // An over-paid invoice of 10 (10 + 5), a refund of the excess 5 its provider takes, then fails.
    const { id, refund } = await overPaidWithRefund();
    const reference = `toy_re_${refund.id}`;
    const named = { reference: id, key: `refund:${reference}`, evidence: { ...evidence, reference } };
    expect(await toyEvents?.({ kind: "reversed", amount: 5_000_000n, ...named })).toBe("applied");
    expect((await getRefund(gw.app.db, { tenantId: "ten_demo", id: refund.id }))?.status).toBe("succeeded");
    // The post moved back by an earlier version, apart from the refund's status (refunds.ts undoSucceeded).
    const undone = derivedLedgerId(refund.id, "refund-undone");
    const [posted] = await gw.app.ledger.lookupTransfers([derivedLedgerId(refund.id, "refund-post")]);
    if (posted === undefined) throw new Error("the refund has no post");
    const balance = async () => {
      const [account] = await gw.app.ledger.lookupAccounts([posted.debitAccountId]);
      return (account?.creditsPosted ?? 0n) - (account?.debitsPosted ?? 0n);
    };
    const [written] = await gw.app.ledger.createTransfers([
      {
        id: undone,
        debitAccountId: posted.creditAccountId,
        creditAccountId: posted.debitAccountId,
        amount: posted.amount,
        ledger: posted.ledger,
        code: transferCodes.refunds.refundUndone,
        userData128: derivedLedgerId(refund.id, "refund-hold"),
      },
    ]);
    expect(written?.status).toBe("created");
    const before = await balance();
    const paidBefore = await paidEvents(id);
    const heard = invoicesHeardPaid(gw.app);
    // The provider fails it: every post is back already, so the give-back's chain is empty and its statement alone
    // moves the refund.
    const failed = { kind: "reinstated" as const, ...named };
    expect(await toyEvents?.(failed)).toBe("applied");
    expect(await toyEvents?.(failed)).toBe("applied");
    const ended = await getRefund(gw.app.db, { tenantId: "ten_demo", id: refund.id });
    expect(ended?.status).toBe("failed");
    expect(await refundEvents(refund.id, "refund.failed")).toBe(1);
    // Nothing moved again: the account holds what the earlier move back gave it, once.
    expect(await balance()).toBe(before);
    expect(await gw.app.ledger.lookupTransfers([undone])).toHaveLength(1);
    // Paid all along (it held 15 of its 10): its failure pays nothing, and tells nothing.
    expect(await statusOf(id)).toBe("paid");
    expect((await paidEvents(id)) - paidBefore).toBe(0);
    expect(heard).toEqual([]);
  });

  it("pays it once when the provider's failure is told again as the refund's attempt event: one invoice.paid, one refund.failed", async () => {
    const { id, refund } = await reversedWithPendingRefund();
    const paidBefore = await paidEvents(id);
    const heard = invoicesHeardPaid(gw.app);
    // Its provider's reversal given back, then the same failure as the attempt event on the refund's id.
    expect(await toyEvents?.(failedByProvider(id, refund.id))).toBe("applied");
    const attemptFailed = {
      kind: "attempt_failed" as const,
      attemptId: refund.id,
      code: "rejected" as const,
      message: "the payout failed",
      retryElsewhere: false,
    };
    // Taken as the refund's: the rail's events answer "applied" as well when it falls through to the attempts, which
    // know no attempt of that id.
    expect(await applyRefundEvent(gw.app.payments, "toyreorg", attemptFailed)).toBe(true);
    expect(await toyEvents?.(attemptFailed)).toBe("applied");
    expect((await getRefund(gw.app.db, { tenantId: "ten_demo", id: refund.id }))?.status).toBe("failed");
    expect(await statusOf(id)).toBe("paid");
    expect((await paidEvents(id)) - paidBefore).toBe(1);
    expect(await refundEvents(refund.id, "refund.failed")).toBe(1);
    expect(heard).toEqual([id]);
  });

  it("fails the refund and pays the invoice when the payments' onInvoicePaid throws: logged, the pass answers as usual", async () => {
    const { id, refund } = await reversedWithPendingRefund();
    const paidBefore = await paidEvents(id);
    const { logger, lines } = recordingLogger();
    // An embedder's hook that breaks its promise not to throw, told after the give-back committed.
    const throwing = {
      ...gw.app.payments,
      logger,
      onInvoicePaid: () => {
        throw new Error("an embedder's hook");
      },
    };
    refundsFailing.add(refund.id);
    // Before: the hook ran inside the give-back's retry, its throw left it after the commit, and the pass said
    // "1 pending refund(s) could not be driven on" (a refund's request answered 500).
    await recoverPendingRefunds(throwing, { quietMs: 0 });
    expect((await getRefund(gw.app.db, { tenantId: "ten_demo", id: refund.id }))?.status).toBe("failed");
    expect(await statusOf(id)).toBe("paid");
    expect((await paidEvents(id)) - paidBefore).toBe(1);
    expect(await refundEvents(refund.id, "refund.failed")).toBe(1);
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: "error",
        message: "onInvoicePaid threw after the invoice was paid",
        fields: expect.objectContaining({ invoiceId: id, refund: refund.id }),
      }),
    );
  });
});

describe("a receipt of an open invoice", () => {
  /**
   * Holds the invoice's row locked, unchanged, in a transaction of its own until `release`d, so that writers of the
   * invoice started meanwhile read it before the first of them changes it.
   */
  const lockedInvoice = async (id: string) => {
    const locked = latch();
    const release = latch();
    const held = gw.app.db.transaction(async (tx) => {
      await tx.query("SELECT 1 FROM invoices WHERE id = $1 FOR UPDATE", [id]);
      locked.release();
      await release.done;
    });
    await locked.done;
    return async () => {
      release.release();
      await held;
    };
  };

  it("does not count a receipt a reorg's reversal recorded between its reads and its lock on the invoice took back", async () => {
    const id = await invoiceOf("10");
    expect(await receive(id, "r0", 4_000_000n)).toBe("received");
    const unlock = await lockedInvoice(id);
    // The reorg of r0, then a receipt of 6: each reads the invoice's receipts and reversals (r0's reversal not yet
    // among them) and waits for its row, the reorg first.
    const reversed = reorgOf(id, "r0", 4_000_000n);
    await waitingOnLock("INSERT INTO invoice_reversals");
    const paid = receive(id, "r1", 6_000_000n);
    await waitingOnLock("INSERT INTO invoice_receipts");
    await unlock();
    expect(await reversed).toEqual({ status: "applied", shortfall: 0n });
    // Before: the reorg left the open invoice's row as it was, the receipt found it as it had read it and counted r0
    // with r1, and the invoice was paid holding 6 of its 10.
    expect(await paid).toBe("received");
    expect(await statusOf(id)).toBe("open");
    expect(await receive(id, "r2", 4_000_000n)).toBe("applied");
    expect(await statusOf(id)).toBe("paid");
  });

  it("counts two receipts that read the invoice at once, one after the other, and the second pays it", async () => {
    const id = await invoiceOf("10");
    const unlock = await lockedInvoice(id);
    const first = receive(id, "r0", 4_000_000n);
    await waitingOnLock("INSERT INTO invoice_receipts");
    const second = receive(id, "r1", 6_000_000n);
    await waitingOnLock("INSERT INTO invoice_receipts", 2);
    await unlock();
    expect([await first, await second].sort()).toEqual(["applied", "received"]);
    expect(await statusOf(id)).toBe("paid");
    const [row] = await gw.app.db.query<{ received: string }>(
      "SELECT received_amount::text AS received FROM invoices WHERE id = $1",
      [id],
    );
    expect(row?.received).toBe("10000000");
    expect(await eventsOf(id)).toEqual([
      "invoice.payment_received",
      "invoice.payment_received",
      "invoice.paid",
    ]);
  });
});

describe("a signed payment of an invoice a reorg reversed", () => {
  const authorization = {
    from: `0x${"11".repeat(20)}`,
    value: "10000000",
    valid_after: "0",
    valid_before: "99999999999",
    nonce: `0x${"22".repeat(32)}`,
    signature: `0x${"33".repeat(65)}`,
  };
  const submit = (invoiceId: string) =>
    gw.call("POST", `/v1/invoices/${invoiceId}/authorizations`, { body: authorization });

  it("is handed to the rail once the invoice is due again, and its receipt pays it again", async () => {
    const id = await invoiceOf("10");
    expect(await receive(id, "r0", 10_000_000n)).toBe("applied");
    const paid = await submit(id);
    expect([paid.status, paid.body.error?.code]).toEqual([409, "invoice_not_payable"]);
    expect(await reorgOf(id, "r0", 10_000_000n)).toEqual({ status: "applied", shortfall: 0n });
    expect(await statusOf(id)).toBe("reversed");

    const handed = signedPayments.length;
    const submitted = await submit(id);
    // Before: 409 invoice_not_payable, though a deposit to its address paid it again.
    expect([submitted.status, submitted.body]).toEqual([
      202,
      {
        object: "invoice_authorization",
        invoice: id,
        status: "submitted",
        transaction: `toy_tx_${handed + 1}`,
      },
    ]);
    expect(signedPayments.slice(handed)).toEqual([id]);
    // What the rail reports of it is a receipt as any other: the invoice is paid again.
    expect(await receive(id, "auth", 10_000_000n)).toBe("applied");
    expect(await statusOf(id)).toBe("paid");
    expect(await eventsOf(id)).toEqual([
      "invoice.payment_received",
      "invoice.paid",
      "invoice.reversed",
      "invoice.payment_received",
      "invoice.paid",
    ]);
    const again = await submit(id);
    expect([again.status, again.body.error?.code]).toEqual([409, "invoice_not_payable"]);
  });

  it("is refused while a dispute of its payment stands, which no receipt pays over; nothing handed to the rail", async () => {
    const id = await invoiceOf("10");
    expect(await receive(id, "r0", 10_000_000n)).toBe("applied");
    const dispute = { rail: "toyreorg", reference: id, key: "dispute:1", amount: 10_000_000n, evidence };
    expect(await applyReversed(gw.app.settlement, dispute)).toEqual({ status: "applied", shortfall: 0n });
    expect(await statusOf(id)).toBe("reversed");
    const handed = signedPayments.length;
    const refused = await submit(id);
    expect([refused.status, refused.body.error?.code]).toEqual([409, "invoice_not_payable"]);
    expect(signedPayments.length).toBe(handed);
  });
});
