// The check a rail's event carries into the gateway's transaction (core/rail.ts `stands`), on PostgreSQL, where a
// reorg's removal of the event (adapters/evm watcher-poll.ts checkReorg) runs in another session beside the credit:
// the EVM deposit watcher's evm_watch_event_stands (EVM migration 0021) locks the event's row, so that a removal marked
// after it waits for the checking transaction's commit, and one marked before makes it raise (SYE01). A named receipt's
// credit and a reversal's give-back make it in their own transactions (settlement/invoices.ts receiptRecordStatement,
// giveBack); a receipt that names none, or a check that names no SQL function, is refused before the ledger's writer
// takes it. (Two watchers and a lease lost on Hardhat: test/evm/deposits.test.ts.)
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it, onTestFinished } from "vitest";
import { assets, type Rail, type RailEventHandler } from "../../core/index.ts";
import { balanceOf, createAccount } from "../../gateway/accounts/index.ts";
import { serverRaised } from "../../gateway/db/index.ts";
import {
  applyReceived,
  applyReinstated,
  applyReversed,
  createInvoice,
  type SettlementDeps,
  SettlementInvariantError,
} from "../../gateway/settlement/index.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { crashingOnce } from "../support/recording-db.ts";
import { recordingLogger } from "../support/recording-logger.ts";
import { receivingToySnapshot } from "../support/toy-rail.ts";
import { invoicesHeardPaid, startTestGateway, type TestGateway } from "./support.ts";

/** A rail that takes USDC in for invoices, each transfer a receipt of its own (as a deposit address's). */
const toyStands: Rail = {
  id: "toystands",
  kind: "fiat",
  asset: assets.USDC,
  async start() {},
  async stop() {},
  snapshot: () => receivingToySnapshot(toyStands, 100_000_000n),
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
};

/** The gateway's handler of the toy rail's events (its one settlement path), once the gateway started the rail. */
let toyEvents: RailEventHandler | null = null;

let url: string;
let gw: TestGateway;
/** Where the gateway's log lines go while a test reads them (gatewayLogLines). */
let logging: Array<Record<string, unknown>> | null = null;
const sessions: pg.Client[] = [];

beforeAll(async () => {
  url = await createTestDatabase(inject("postgresUrl"), "stands");
  gw = await startTestGateway({
    database: "postgres",
    databaseUrl: url,
    extraRailModules: [() => ({ rails: [toyStands] })],
    // Errors only, kept while a test reads them (gatewayLogLines), dropped otherwise.
    env: { LOG_LEVEL: "error" },
    logStream: { write: (line) => void logging?.push(JSON.parse(line)) },
  });
});
afterEach(async () => {
  for (const session of sessions.splice(0)) await session.end();
});
afterAll(async () => {
  await gw?.app.close();
});

/** A session of its own on this file's database (ended after the test). */
async function session(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  sessions.push(client);
  return client;
}

// A watched event of a chain and token no watcher of the gateway follows: only the test moves its row.
const chainId = 999_001;
const token = "0x00000000000000000000000000000000000000aa";
let events = 0;

/** A new watched event's row (`pending`, generation `generation`); its transaction hash. */
async function watchedEvent(generation = 1): Promise<string> {
  const txHash = `0x${(++events).toString(16).padStart(64, "0")}`;
  await gw.app.db.query(
    `INSERT INTO evm_watch_events
       (chain_id, contract, tx_hash, log_index, block_number, block_hash, event_name, args, status, generation)
     VALUES ($1, $2, $3, 0, 1, $4, 'Transfer', '{}', 'pending', $5)`,
    [chainId, token, txHash, `0x${"bb".repeat(32)}`, generation],
  );
  return txHash;
}
const stands = (txHash: string, generation = 1) => ({
  check: "evm_watch_event_stands",
  args: [chainId, token, txHash, 0, generation],
});
/** The watcher's marking of a reorg's removal (checkReorg), or of the log mined again as `generation`. */
const removal = "UPDATE evm_watch_events SET status = 'removed', updated_at = now() WHERE tx_hash = $1";
const minedAgain = (txHash: string, generation: number) =>
  gw.app.db.query("UPDATE evm_watch_events SET status = 'pending', generation = $2 WHERE tx_hash = $1", [
    txHash,
    generation,
  ]);

/** Waits until a statement whose text holds `text` waits for a lock, in this file's database. */
async function waitingOnLock(text: string): Promise<void> {
  for (let i = 0; ; i++) {
    const waiting = await gw.app.db.query(
      `SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()
         AND query LIKE $1`,
      [`%${text}%`],
    );
    if (waiting.length > 0) return;
    if (i >= 200) throw new Error(`no statement with ${text} ever waited for a lock`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe("evm_watch_event_stands", () => {
  it("holds the event's row until the checking transaction commits: a reorg's removal marked after it waits", async () => {
    const txHash = await watchedEvent();
    const [checking, removing] = [await session(), await session()];
    await checking.query("BEGIN");
    const checked = await checking.query("SELECT evm_watch_event_stands($1, $2, $3, 0, 1) AS stands", [
      chainId,
      token,
      txHash,
    ]);
    expect(checked.rows).toEqual([{ stands: true }]);
    let removed = false;
    const removing_ = removing.query(removal, [txHash]).then((result) => {
      removed = true;
      return result.rowCount;
    });
    await waitingOnLock("SET status = 'removed'");
    expect(removed).toBe(false);
    await checking.query("COMMIT");
    expect(await removing_).toBe(1);
  });

  it("raises SYE01 once a removal committed first (its wait on the removing transaction ends in it), or for another generation", async () => {
    const txHash = await watchedEvent();
    const [checking, removing] = [await session(), await session()];
    await removing.query("BEGIN");
    await removing.query(removal, [txHash]);
    await checking.query("BEGIN");
    const check = checking
      .query("SELECT evm_watch_event_stands($1, $2, $3, 0, 1)", [chainId, token, txHash])
      .then(
        () => null,
        (error: unknown) => error,
      );
    await waitingOnLock("evm_watch_event_stands");
    await removing.query("COMMIT");
    expect(serverRaised(await check, "SYE01")).toBe(true);
    await checking.query("ROLLBACK");

    await minedAgain(txHash, 2);
    // The generation the credit was made for is gone, though the log stands again as the next one.
    const stale = await checking
      .query("SELECT evm_watch_event_stands($1, $2, $3, 0, 1)", [chainId, token, txHash])
      .then(
        () => null,
        (error: unknown) => error,
      );
    expect(serverRaised(stale, "SYE01")).toBe(true);
  });
});

const evidence = { rail: "external" as const, railId: "toystands", reference: "ef".repeat(32) };
const invoiceOf = async (amount: string, split?: { accountId: string; basisPoints: number }[]) => {
  const created = await createInvoice(gw.app.settlement, {
    tenantId: "ten_demo",
    accountId: "acct_demo_merchant",
    asset: "USDC",
    amount,
    rail: "toystands",
    description: "stands",
    expirySeconds: 600,
    ...(split === undefined ? {} : { split }),
  });
  if (!created.ok) throw new Error(created.message);
  return created.invoice.id;
};
const statusOf = async (invoiceId: string) =>
  (await gw.app.db.query<{ status: string }>("SELECT status FROM invoices WHERE id = $1", [invoiceId]))[0]
    ?.status;
const receiptsOf = async (invoiceId: string) =>
  (
    await gw.app.db.query<{ key: string }>(
      "SELECT key FROM invoice_receipts WHERE invoice_id = $1 ORDER BY key",
      [invoiceId],
    )
  ).map((row) => row.key);

describe("a rail's check carried by an event", () => {
  it("is refused on a receipt that names no key (only a named receipt's statement makes it): nothing credited", async () => {
    const id = await invoiceOf("1");
    const txHash = await watchedEvent();
    await gw.app.db.query(removal, [txHash]);
    const received = applyReceived(gw.app.settlement, {
      rail: "toystands",
      reference: id,
      amount: 1_000_000n,
      evidence,
      stands: stands(txHash),
    });
    // Before: credited, the check left out, though its event was removed.
    await expect(received).rejects.toThrow(SettlementInvariantError);
    expect(await statusOf(id)).toBe("open");
  });

  it("that names no SQL function is refused before the ledger's writer takes the receipt; a receipt beside it is credited", async () => {
    const [bad, good] = [await invoiceOf("1"), await invoiceOf("1")];
    const txHash = await watchedEvent();
    const [refused, credited] = await Promise.allSettled([
      applyReceived(gw.app.settlement, {
        rail: "toystands",
        reference: bad,
        key: "r0",
        amount: 1_000_000n,
        evidence,
        stands: { check: "evm_watch_event_stands(1); --", args: [] },
      }),
      applyReceived(gw.app.settlement, {
        rail: "toystands",
        reference: good,
        key: "r0",
        amount: 1_000_000n,
        evidence,
        stands: stands(txHash),
      }),
    ]);
    expect(refused.status === "rejected" && refused.reason instanceof SettlementInvariantError).toBe(true);
    expect(credited).toEqual({ status: "fulfilled", value: "applied" });
    expect([await statusOf(bad), await receiptsOf(bad)]).toEqual(["open", []]);
  });

  it("refuses a reversal's give-back once the log that gives it back was removed, and gives it back while it stands", async () => {
    const id = await invoiceOf("2");
    const txHash = await watchedEvent();
    const receipt = `${txHash}:0#1`;
    expect(
      await applyReceived(gw.app.settlement, {
        rail: "toystands",
        reference: id,
        key: receipt,
        amount: 2_000_000n,
        evidence,
        stands: stands(txHash),
      }),
    ).toBe("applied");
    await gw.app.db.query(removal, [txHash]);
    const reorg = { rail: "toystands", reference: id, key: `reorg:${receipt}`, evidence };
    expect(
      await applyReversed(gw.app.settlement, { ...reorg, amount: 2_000_000n, takes: { receipt } }),
    ).toEqual({
      status: "applied",
      shortfall: 0n,
    });
    expect(await statusOf(id)).toBe("reversed");

    // Mined again as generation 2, and removed again before its give-back's transaction.
    await minedAgain(txHash, 2);
    await gw.app.db.query(removal, [txHash]);
    const refusal = await applyReinstated(gw.app.settlement, { ...reorg, stands: stands(txHash, 2) }).then(
      () => null,
      (error: unknown) => error,
    );
    // Before: given back, the invoice paid with nothing on chain.
    expect(serverRaised(refusal, "SYE01")).toBe(true);
    expect(await statusOf(id)).toBe("reversed");
    const [record] = await gw.app.db.query<{ reinstated: boolean }>(
      "SELECT reinstated_at IS NOT NULL AS reinstated FROM invoice_reversals WHERE invoice_id = $1",
      [id],
    );
    expect(record).toEqual({ reinstated: false });

    // Mined a third time, and standing: given back.
    await minedAgain(txHash, 3);
    expect(await applyReinstated(gw.app.settlement, { ...reorg, stands: stands(txHash, 3) })).toEqual({
      status: "applied",
      amount: 2_000_000n,
      paidNow: true,
    });
    expect(await statusOf(id)).toBe("paid");
  });

  it("takes back a give-back of a split of 100% (the payees' shares only) that committed before the removal, and its mark stands beside it", async () => {
    const payee = await createAccount(
      { sql: gw.app.db, ledger: gw.app.ledger },
      { tenantId: "ten_demo", kind: "customer", asset: assets.USDC, name: "stands payee" },
    );
    const payeePosted = async () => {
      const [account] = await gw.app.ledger.lookupAccounts([payee.ledgerAccountId]);
      return balanceOf("customer", account!).posted;
    };
    const id = await invoiceOf("1.7", [{ accountId: payee.id, basisPoints: 10_000 }]);
    const txHash = await watchedEvent();
    const receipt = `${txHash}:0#1`;
    expect(
      await applyReceived(gw.app.settlement, {
        rail: "toystands",
        reference: id,
        key: receipt,
        amount: 1_700_000n,
        evidence,
        stands: stands(txHash),
      }),
    ).toBe("applied");
    await gw.app.db.query(removal, [txHash]);
    const reorg = { rail: "toystands", reference: id, key: `reorg:${receipt}`, evidence };
    expect(
      await applyReversed(gw.app.settlement, { ...reorg, amount: 1_700_000n, takes: { receipt } }),
    ).toEqual({ status: "applied", shortfall: 0n });
    // All of it from the payee: the invoice's account took nothing.
    expect(await payeePosted()).toBe(0n);

    // Mined again as generation 2: its give-back's chain commits (the payee's share back), and before its mark the
    // log is removed again and the removal applied (the watcher that took over the lease, its wait on the event's row
    // ended by the chain's commit).
    await minedAgain(txHash, 2);
    const again = `${txHash}:0#2`;
    let removed: Awaited<ReturnType<typeof applyReversed>> | undefined;
    const settlement = gw.app.settlement;
    let marking = false;
    const removedBeforeMark: SettlementDeps = {
      ...settlement,
      db: {
        ...settlement.db,
        transaction: async (fn) => {
          if (!marking) {
            marking = true;
            expect(await payeePosted()).toBe(1_700_000n);
            await gw.app.db.query(removal, [txHash]);
            removed = await applyReversed(settlement, {
              ...reorg,
              key: `reorg:${again}`,
              amount: 1_700_000n,
              takes: { reinstated: reorg.key },
            });
          }
          return settlement.db.transaction(fn);
        },
      },
    };
    const given = await applyReinstated(removedBeforeMark, { ...reorg, stands: stands(txHash, 2) }).catch(
      (error: unknown) => error,
    );
    expect(marking).toBe(true);
    // Before: not_received (only the invoice's leg was looked for), the payee keeping 1.70 with nothing on chain, and
    // the mark refused (SYE01). The removal marked the reversal given back, then took it again from the payee.
    expect(removed).toEqual({ status: "applied", shortfall: 0n });
    expect(given).toEqual({ status: "duplicate", amount: 0n, paidNow: false });
    expect(await payeePosted()).toBe(0n);
    expect(await statusOf(id)).toBe("reversed");
    const records = await gw.app.db.query<{ key: string; reinstated: boolean }>(
      `SELECT key, reinstated_at IS NOT NULL AS reinstated FROM invoice_reversals WHERE invoice_id = $1
       ORDER BY key`,
      [id],
    );
    expect(records).toEqual([
      { key: `reorg:${receipt}`, reinstated: true },
      { key: `reorg:${again}`, reinstated: false },
    ]);
  });

  /**
   * An invoice of 2 credited, its log removed and the reversal recorded, then mined again as generation 2: the
   * give-back's chain commits and its process dies before its mark, and the log is removed again. What the two tests
   * of a removal finding that give-back unmarked start from, and the invoice's events as told (`told`).
   */
  const giveBackUnmarked = async () => {
    const id = await invoiceOf("2");
    const txHash = await watchedEvent();
    const receipt = `${txHash}:0#1`;
    expect(
      await applyReceived(gw.app.settlement, {
        rail: "toystands",
        reference: id,
        key: receipt,
        amount: 2_000_000n,
        evidence,
        stands: stands(txHash),
      }),
    ).toBe("applied");
    await gw.app.db.query(removal, [txHash]);
    const reorg = { rail: "toystands", reference: id, key: `reorg:${receipt}`, evidence };
    expect(
      await applyReversed(gw.app.settlement, { ...reorg, amount: 2_000_000n, takes: { receipt } }),
    ).toEqual({ status: "applied", shortfall: 0n });
    await minedAgain(txHash, 2);
    const crashing = {
      ...gw.app.settlement,
      db: crashingOnce(
        gw.app.settlement.db,
        "INSERT INTO invoice_reversals (invoice_id, key, amount, reinstated_at)",
      ),
    };
    await expect(applyReinstated(crashing, { ...reorg, stands: stands(txHash, 2) })).rejects.toThrow("crash");
    await gw.app.db.query(removal, [txHash]);
    const again = { ...reorg, key: `reorg:${txHash}:0#2` };
    const told = async () =>
      (
        await gw.app.db.query<{ type: string }>(
          "SELECT type FROM outbox WHERE payload->>'invoice_id' = $1 AND type LIKE 'invoice.%' ORDER BY id",
          [id],
        )
      ).map((row) => row.type);
    return { id, txHash, reorg, again, told };
  };

  it("marks a give-back whose process died before its mark when a removal takes it again, so that it is counted once", async () => {
    // The log removed before the event is delivered again, the removal takes the unmarked give-back again.
    const { id, txHash, reorg, again, told } = await giveBackUnmarked();
    const toldBefore = (await told()).length;
    expect(
      await applyReversed(gw.app.settlement, {
        ...again,
        amount: 2_000_000n,
        takes: { reinstated: reorg.key },
      }),
    ).toEqual({ status: "applied", shortfall: 0n });
    // The mark it finished tells its give-back, and pays nothing: the deposit is known gone. Before, it was paid
    // there with `invoice.paid`, a webhook receiver fulfilling on it, and reversed again by this removal's record.
    expect((await told()).slice(toldBefore)).toEqual(["invoice.reinstated", "invoice.reversed"]);
    const records = () =>
      gw.app.db.query<{ key: string; reinstated: boolean }>(
        `SELECT key, reinstated_at IS NOT NULL AS reinstated FROM invoice_reversals WHERE invoice_id = $1
         ORDER BY key`,
        [id],
      );
    // Before: the first reversal left standing beside the second (no run of its give-back came again).
    expect(await records()).toEqual([
      { key: reorg.key, reinstated: true },
      { key: again.key, reinstated: false },
    ]);
    expect(await statusOf(id)).toBe("reversed");

    // Mined a third time: the second reversal given back pays the invoice, the deposit counted once.
    await minedAgain(txHash, 3);
    expect(await applyReinstated(gw.app.settlement, { ...again, stands: stands(txHash, 3) })).toEqual({
      status: "applied",
      amount: 2_000_000n,
      paidNow: true,
    });
    expect(await statusOf(id)).toBe("paid");
    expect((await told()).slice(toldBefore)).toEqual([
      "invoice.reinstated",
      "invoice.reversed",
      "invoice.reinstated",
      "invoice.paid",
    ]);
  });

  it("pays an invoice the mark a removal finished left reversed, when that removal's record failed and its reinstatement came first (withdrawn)", async () => {
    // The removal finishes the unmarked give-back's mark (paying nothing), then fails before its own chain and record.
    const { id, txHash, reorg, again, told } = await giveBackUnmarked();
    const toldBefore = (await told()).length;
    const { ledger } = gw.app.settlement;
    let failed = false;
    const recordFailing: SettlementDeps = {
      ...gw.app.settlement,
      ledger: {
        ...ledger,
        createTransfersWith: async (...args) => {
          if (failed) return await ledger.createTransfersWith(...args);
          failed = true;
          throw new Error("crash");
        },
      },
    };
    const removed = { ...again, amount: 2_000_000n, takes: { reinstated: reorg.key } };
    await expect(applyReversed(recordFailing, removed)).rejects.toThrow("crash");
    const records = () =>
      gw.app.db.query<{ key: string; reinstated: boolean }>(
        `SELECT key, reinstated_at IS NOT NULL AS reinstated FROM invoice_reversals WHERE invoice_id = $1
         ORDER BY key`,
        [id],
      );
    expect(await records()).toEqual([{ key: reorg.key, reinstated: true }]);
    expect(await statusOf(id)).toBe("reversed");

    // Mined a third time before the removal is retried: its reinstatement finds nothing recorded and nothing taken,
    // and is recorded withdrawn; the invoice holds its amount (the first reversal given back) with no dispute, so it
    // is paid there. Before, it returned before the invoice's row and the retry took nothing (withdrawn): the
    // deposit on chain and credited, the invoice reversed for good, no `invoice.paid`.
    await minedAgain(txHash, 3);
    expect(await applyReinstated(gw.app.settlement, { ...again, stands: stands(txHash, 3) })).toEqual({
      status: "withdrawn",
      amount: 0n,
      paidNow: true,
    });
    expect(await statusOf(id)).toBe("paid");
    expect(await applyReversed(gw.app.settlement, removed)).toEqual({ status: "withdrawn", shortfall: 0n });
    expect(await statusOf(id)).toBe("paid");
    expect(await records()).toEqual([
      { key: reorg.key, reinstated: true },
      { key: again.key, reinstated: true },
    ]);
    expect((await told()).slice(toldBefore)).toEqual(["invoice.reinstated", "invoice.paid"]);
  });

  it("pays the invoice by the mark a removal finished when that removal was withdrawn while it marked (the watcher that took over the lease)", async () => {
    const { id, txHash, reorg, again, told } = await giveBackUnmarked();
    const toldBefore = (await told()).length;
    // As the removal's process opens the mark's transaction, the log is mined a third time and the watcher that took
    // over the lease applies its reinstatement: nothing recorded and nothing taken, recorded withdrawn; the first
    // reversal still stands unmarked, so the invoice is not due there.
    const settlement = gw.app.settlement;
    let withdrawn: Awaited<ReturnType<typeof applyReinstated>> | undefined;
    const withdrawnBeforeMark: SettlementDeps = {
      ...settlement,
      db: {
        ...settlement.db,
        transaction: async (fn) => {
          if (withdrawn === undefined) {
            await minedAgain(txHash, 3);
            withdrawn = await applyReinstated(settlement, { ...again, stands: stands(txHash, 3) });
          }
          return settlement.db.transaction(fn);
        },
      },
    };
    const heard = invoicesHeardPaid(gw.app);
    const removed = await applyReversed(withdrawnBeforeMark, {
      ...again,
      amount: 2_000_000n,
      takes: { reinstated: reorg.key },
    });
    expect(withdrawn).toEqual({ status: "withdrawn", amount: 0n, paidNow: false });
    // The mark sees the withdrawal (committed before it locked the invoice's row) and pays. Before, it was told the
    // removal stood (read before the withdrawal) and paid nothing: the invoice reversed for good, the deposit
    // credited, and no redelivery of either event changed it. Heard as the mark committed, not returned for the caller
    // to tell.
    expect(removed).toEqual({ status: "withdrawn", shortfall: 0n });
    expect(heard).toEqual([id]);
    expect(await statusOf(id)).toBe("paid");
    expect((await told()).slice(toldBefore)).toEqual(["invoice.reinstated", "invoice.paid"]);
  });

  /**
   * A give-back left unmarked (giveBackUnmarked), then mined a third time before the removal is delivered: its
   * reinstatement finds nothing recorded and nothing taken, and is recorded withdrawn. `toldBefore` counts the
   * invoice's events told before the withdrawal.
   */
  const removalWithdrawn = async () => {
    const unmarked = await giveBackUnmarked();
    const { txHash, again, told } = unmarked;
    const toldBefore = (await told()).length;
    await minedAgain(txHash, 3);
    expect(await applyReinstated(gw.app.settlement, { ...again, stands: stands(txHash, 3) })).toEqual({
      status: "withdrawn",
      amount: 0n,
      paidNow: false,
    });
    return { ...unmarked, toldBefore };
  };

  it("tells the process's listeners that the mark a removal finished paid the invoice, that removal withdrawn already", async () => {
    const { id, reorg, again, told, toldBefore } = await removalWithdrawn();
    // The first reversal still stands unmarked, so the invoice is not due yet.
    expect(await statusOf(id)).toBe("reversed");
    const heard = invoicesHeardPaid(gw.app);
    // The removal delivered late, through the rail's events as the deposit watcher tells it: it finishes the first
    // give-back's mark, which pays the invoice (the removal is withdrawn), and takes nothing itself.
    expect(
      await toyEvents?.({
        kind: "reversed",
        reference: id,
        key: again.key,
        amount: 2_000_000n,
        evidence,
        takes: { reinstated: reorg.key },
      }),
    ).toBe("applied");
    expect(await statusOf(id)).toBe("paid");
    expect((await told()).slice(toldBefore)).toEqual(["invoice.reinstated", "invoice.paid"]);
    // Before: nothing heard; what the mark paid was dropped, told to webhooks alone.
    expect(heard).toEqual([id]);
  });

  it("tells the process's listeners that the mark a removal finished paid the invoice when the removal's own give-back then fails, once", async () => {
    const { id, reorg, again, told, toldBefore } = await removalWithdrawn();
    const heard = invoicesHeardPaid(gw.app);
    // The removal's give-back of itself (withdrawn) fails once the mark it finished committed and paid the invoice.
    const { ledger } = gw.app.settlement;
    let failed = false;
    const giveBackFailing: SettlementDeps = {
      ...gw.app.settlement,
      ledger: {
        ...ledger,
        lookupTransfers: async (...args) => {
          if (!failed && (await statusOf(id)) === "paid") {
            failed = true;
            throw new Error("crash");
          }
          return await ledger.lookupTransfers(...args);
        },
      },
    };
    const removed = {
      kind: "reversed" as const,
      reference: id,
      key: again.key,
      amount: 2_000_000n,
      evidence,
      takes: { reinstated: reorg.key },
    };
    await expect(applyReversed(giveBackFailing, { rail: "toystands", ...removed })).rejects.toThrow("crash");
    expect(failed).toBe(true);
    expect(await statusOf(id)).toBe("paid");
    expect((await told()).slice(toldBefore)).toEqual(["invoice.reinstated", "invoice.paid"]);
    // Heard as the mark committed. Before: nothing, and the redelivery below found the mark made and told nothing
    // either: `invoice.paid` went to webhooks alone, a paywall waiting in this process never heard it.
    expect(heard).toEqual([id]);
    // Redelivered through the rail's events: it takes nothing and tells nothing again.
    expect(await toyEvents?.(removed)).toBe("applied");
    expect(await statusOf(id)).toBe("paid");
    expect((await told()).slice(toldBefore)).toEqual(["invoice.reinstated", "invoice.paid"]);
    expect(heard).toEqual([id]);
  });
});

describe("an invoice paid, told to the process", () => {
  const paidEvents = async (invoiceId: string) =>
    (
      await gw.app.db.query(
        "SELECT 1 FROM outbox WHERE type = 'invoice.paid' AND payload->>'invoice_id' = $1",
        [invoiceId],
      )
    ).length;

  /** What the gateway logs (at `error`, as the app serializes it) until the test finishes, each line as its JSON. */
  const gatewayLogLines = (): Array<Record<string, unknown>> => {
    const lines: Array<Record<string, unknown>> = [];
    logging = lines;
    onTestFinished(() => {
      logging = null;
    });
    return lines;
  };

  it("is heard by every listener, one that throws or whose promise rejects logged, not silencing the rest", async () => {
    const logged = gatewayLogLines();
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => void unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    const throwing = () => {
      throw new Error("a listener that throws");
    };
    const rejecting = async () => {
      throw new Error("a listener that rejects");
    };
    const once: string[] = [];
    gw.app.events.on("invoice.paid", throwing);
    gw.app.events.on("invoice.paid", rejecting);
    gw.app.events.once("invoice.paid", (invoiceId: string) => void once.push(invoiceId));
    onTestFinished(() => {
      gw.app.events.off("invoice.paid", throwing);
      gw.app.events.off("invoice.paid", rejecting);
      process.off("unhandledRejection", onUnhandled);
    });
    // Heard after the two that fail.
    const heard = invoicesHeardPaid(gw.app);
    const [first, second] = [await invoiceOf("1"), await invoiceOf("1")];
    for (const id of [first, second]) {
      expect(
        await toyEvents?.({ kind: "received", reference: id, key: "r0", amount: 1_000_000n, evidence }),
      ).toBe("applied");
      expect(await statusOf(id)).toBe("paid");
    }
    // Before: emit stopped at the listener that threw, and nothing after it heard either invoice.
    expect(heard).toEqual([first, second]);
    // A listener added with `once` hears the first alone, as emit tells it.
    expect(once).toEqual([first]);
    // The rejection is caught, logged: none left unhandled. Before: two, one per invoice.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(unhandled).toEqual([]);
    // Each failing listener logged once per invoice, its error's message under `err`.
    const threw = logged.filter((line) => line.msg === "a listener of invoice.paid threw");
    const told = threw.map((line) => [
      line.invoiceId,
      (line.err as { message?: unknown } | undefined)?.message,
    ]);
    expect(told).toHaveLength(4);
    expect(told).toEqual(
      expect.arrayContaining([
        [first, "a listener that throws"],
        [first, "a listener that rejects"],
        [second, "a listener that throws"],
        [second, "a listener that rejects"],
      ]),
    );
  });

  it("a receipt that pays it is applied, committed and told to webhooks when the settlement's onInvoicePaid throws: logged", async () => {
    const id = await invoiceOf("1");
    const { logger, lines } = recordingLogger();
    // An embedder's hook that breaks its promise not to throw, told after the receipt committed.
    const throwing: SettlementDeps = {
      ...gw.app.settlement,
      logger,
      onInvoicePaid: () => {
        throw new Error("an embedder's hook");
      },
    };
    const receipt = { rail: "toystands", reference: id, key: "r0", amount: 1_000_000n, evidence };
    // Before: it threw after the credit committed, and its redelivery found it a duplicate and told nothing.
    expect(await applyReceived(throwing, receipt)).toBe("applied");
    expect(await statusOf(id)).toBe("paid");
    expect(await receiptsOf(id)).toEqual(["r0"]);
    expect(await paidEvents(id)).toBe(1);
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: "error",
        message: "onInvoicePaid threw after the invoice was paid",
        fields: expect.objectContaining({ invoiceId: id }),
      }),
    );
    expect(await applyReceived(throwing, receipt)).toBe("duplicate");
    expect(await paidEvents(id)).toBe(1);
  });
});
