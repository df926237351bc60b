// A receipt of an invoice a reorg reversed (settlement/invoices.ts receiptRecordStatement), on PostgreSQL, where
// another writer's reversal can commit between the receipt's reads and its lock on the invoice's row: the receipt
// pays the invoice again only from reads that saw every reversal standing, so one recorded in between never leaves it
// paid over what it no longer holds. (The rules themselves, on PGlite: gateway/settlement/split-reversal.test.ts.)
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assets, type Rail } from "../../core/index.ts";
import { applyReceived, applyReversed, createInvoice } from "../../gateway/settlement/index.ts";
import { latch } from "../support/latch.ts";
import { receivingToySnapshot } from "../support/toy-rail.ts";
import { startTestGateway, type TestGateway } from "./support.ts";

/** A rail that takes USDC in for invoices, each transfer a receipt of its own (as a deposit address's). */
const toyReorg: Rail = {
  id: "toyreorg",
  kind: "fiat",
  asset: assets.USDC,
  async start() {},
  async stop() {},
  snapshot: () => receivingToySnapshot(toyReorg, 100_000_000n),
  execute: async () => ({ status: "failed", code: "rejected", message: "no payouts", retryElsewhere: true }),
  onEvent() {},
  balance: async () => 0n,
  receive: async (request) => ({
    status: "offered",
    railReference: `toy_${request.reference}`,
    expiresAtMs: null,
    instructions: { pay: request.reference },
  }),
};

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
    for (let i = 0; ; i++) {
      const waiting = await gw.app.db.query(
        `SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO invoice_receipts%'`,
      );
      if (waiting.length > 0) break;
      if (i >= 200) throw new Error("the receipt never waited for the invoice's row");
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
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
