// A dispute that arrives while a refund of the same card payment stands takes only what the account still holds; the
// rest is its shortfall, which Stripe took all the same. When the refund then fails, what it gives back settles that
// shortfall first and only the rest reaches the account, so that the rail's clearing account says what Stripe holds.
// Found by the re-fuzz (T6, Stripe delivering out of order): the whole refund went back to the account, which ended
// above what Stripe held. Two gateway processes on one PostgreSQL database, against stripe-mock, the webhooks through
// the real route.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type App, createApp } from "../../gateway/app.ts";
import { apiClient } from "../support/api.ts";
import { testConfig } from "../support/config.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { paidCardInvoice } from "./card-invoice.ts";
import { deliverStripeEvent, stripeEvents, stripeMockEnv, twoStripeMockGateways } from "./stripe-events.ts";

const secret = "whsec_reversal_shortfall_test";
let a: App;
let b: App;

beforeAll(async () => {
  [a, b] = await twoStripeMockGateways(secret, "fiat_shortfall");
});
afterAll(async () => {
  await a?.close();
  await b?.close();
});

const deliver = (app: App, event: unknown) => deliverStripeEvent(app, event, { secret });

// The helpers below work through process `a` unless given another (one on a database of its own).
const call = (method: "GET" | "POST", url: string, body?: unknown, app: App = a) =>
  apiClient(app)(method, url, body);

/** A ledger account's balance: credits less debits (a tenant's), or debits less credits (`debit-normal`). */
async function balanceOf(ledgerAccountId: bigint, normal: "credit" | "debit", app: App = a): Promise<bigint> {
  const [found] = await app.ledger.lookupAccounts([ledgerAccountId]);
  const credit = found!.creditsPosted - found!.debitsPosted;
  return normal === "credit" ? credit : -credit;
}

async function ledgerAccountOf(where: string, params: unknown[], app: App = a): Promise<bigint> {
  const [row] = await app.db.query<{ ledger_account_id: bigint }>(
    `SELECT ledger_account_id FROM accounts WHERE ${where}`,
    params,
  );
  return BigInt(row!.ledger_account_id);
}

/** What the rail's clearing account says Stripe holds, in cents. */
async function clearing(app: App = a): Promise<bigint> {
  const id = await ledgerAccountOf("kind = 'clearing' AND rail = 'fiat' AND asset = 'USD'", [], app);
  return await balanceOf(id, "debit", app);
}

type Shortfall = { reversal_key: string; account_id: string; amount: bigint; collected: bigint };

async function shortfallsOf(invoiceId: string, app: App = a): Promise<Shortfall[]> {
  return await app.db.query<Shortfall>(
    `SELECT reversal_key, account_id, amount, collected FROM reversal_shortfalls WHERE invoice_id = $1
     ORDER BY reversal_key, account_id`,
    [invoiceId],
  );
}

/**
 * The invoice's events that move its account's balance after the payment, in order, each as
 * `type amount shortfall_collected net` (`-` for a field the event does not carry).
 */
async function balanceEventsOf(invoiceId: string, app: App = a): Promise<string[]> {
  const rows = await app.db.query<{ type: string; payload: Record<string, string | undefined> }>(
    `SELECT type, payload FROM outbox WHERE payload->>'invoice_id' = $1
       AND type IN ('invoice.reversed', 'invoice.reinstated', 'refund.succeeded', 'refund.failed') ORDER BY id`,
    [invoiceId],
  );
  return rows.map(({ type, payload }) =>
    [type, payload.amount, payload.shortfall_collected, payload.net].map((field) => field ?? "-").join(" "),
  );
}

/** A customer account of its own, and a paid card invoice of 25.00 into it. */
async function paidInvoice(name: string, app: App = a) {
  const { accountId, invoiceId, intentId } = await paidCardInvoice(app, name, secret);
  const account = await ledgerAccountOf("id = $1", [accountId], app);
  const posted = () => balanceOf(account, "credit", app);
  expect(await posted()).toBe(2500n);
  return { accountId, invoiceId, intentId, posted };
}

/** A refund through the API (Stripe, here stripe-mock, answers it succeeded); its Stripe refund id. */
async function refund(
  invoiceId: string,
  amount: string,
  app: App = a,
): Promise<{ id: string; stripeRefundId: string }> {
  const response = await call("POST", "/v1/refunds", { invoice: invoiceId, amount }, app);
  expect(response.status).toBe(201);
  expect(response.body.status).toBe("succeeded");
  return { id: response.body.id, stripeRefundId: response.body.rail_reference };
}

describe("a dispute while a refund stands, and the refund fails", () => {
  it("settles the dispute's shortfall first: the account gets only the rest, the clearing account says what Stripe holds", async () => {
    const before = await clearing();
    const { accountId, invoiceId, intentId, posted } = await paidInvoice("shortfall_refund_failed");
    const refunded = await refund(invoiceId, "10.00");
    expect(await posted()).toBe(1500n);
    // Stripe takes the whole 25.00 for the dispute; the account holds 15.00 of it.
    const dispute = { disputeId: "dp_shortfall", intentId, amount: 2500 };
    expect((await deliver(a, stripeEvents.disputeCreated("evt_shortfall_dispute", dispute))).status).toBe(
      200,
    );
    expect(await posted()).toBe(0n);
    // 25.00 in, 10.00 refunded, 15.00 taken: the ledger says Stripe holds nothing of the payment, while Stripe is
    // 10.00 short of it. That is the dispute's shortfall, owed by the account.
    expect(await clearing()).toBe(before);

    // Stripe fails the refund: its 10.00 is back at Stripe, which took 25.00 for the dispute: it holds nothing of
    // the payment. Delivered to both processes at once, as refund.failed and as refund.updated: one give-back.
    const failed = { refundId: refunded.stripeRefundId, intentId, amount: 1000 };
    const answers = await Promise.all([
      deliver(a, stripeEvents.refundFailed("evt_shortfall_refund_failed", failed)),
      deliver(b, stripeEvents.refundFailed("evt_shortfall_refund_failed", failed)),
      deliver(b, {
        ...stripeEvents.refundFailed("evt_shortfall_refund_updated", failed),
        type: "refund.updated",
      }),
    ]);
    expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200]);
    expect(await posted()).toBe(0n);
    expect(await clearing()).toBe(before);
    expect((await call("GET", `/v1/refunds/${refunded.id}`)).body.status).toBe("failed");
    // The shortfall is recorded with the dispute, and collected once.
    expect(await shortfallsOf(invoiceId)).toEqual([
      { reversal_key: "dispute:dp_shortfall", account_id: accountId, amount: 1000n, collected: 1000n },
    ]);

    // Redelivered later, to either process: nothing more.
    expect((await deliver(b, stripeEvents.refundFailed("evt_shortfall_refund_failed", failed))).status).toBe(
      200,
    );
    expect(
      (await deliver(a, stripeEvents.refundFailed("evt_shortfall_refund_failed_2", failed))).status,
    ).toBe(200);
    expect(await posted()).toBe(0n);
    expect(await clearing()).toBe(before);
    // The refund's failure no longer says the amount is back on the account: it went to the shortfall.
    expect((await call("GET", `/v1/refunds/${refunded.id}`)).body.failure.message).toContain(
      "less what settles the shortfalls",
    );

    // The dispute won: Stripe gives back all 25.00; so does the ledger — what the dispute took and what it collected.
    const won = stripeEvents.disputeFundsReinstated("evt_shortfall_dispute_won", dispute);
    expect((await deliver(b, won)).status).toBe(200);
    expect((await deliver(a, won)).status).toBe(200);
    expect(await posted()).toBe(2500n);
    expect(await clearing()).toBe(before + 2500n);
    // Mirrored from the events, once each, the balance is the ledger's at every step: 25.00 − 10.00 − 15.00
    // + (10.00 − 10.00 collected) + 25.00 (all the dispute took, and what was collected for it).
    expect(await balanceEventsOf(invoiceId)).toEqual([
      "refund.succeeded 1000 - -",
      "invoice.reversed 1500 - -",
      "refund.failed 1000 1000 0",
      "invoice.reinstated 2500 0 2500",
    ]);
  });

  it("settles it too when the refund was made at Stripe, not through the gateway", async () => {
    const before = await clearing();
    const { accountId, invoiceId, intentId, posted } = await paidInvoice("shortfall_stripe_refund");
    // A refund made in Stripe's dashboard reaches the gateway as a reversal of the invoice of its own.
    const refunded = { refundId: "re_made_at_stripe", intentId, amount: 1000 };
    expect((await deliver(a, stripeEvents.refundCreated("evt_stripe_refund", refunded))).status).toBe(200);
    expect(await posted()).toBe(1500n);
    const dispute = { disputeId: "dp_after_stripe_refund", intentId, amount: 2500 };
    expect((await deliver(b, stripeEvents.disputeCreated("evt_after_stripe_refund", dispute))).status).toBe(
      200,
    );
    expect(await posted()).toBe(0n);

    const failed = stripeEvents.refundFailed("evt_stripe_refund_failed", refunded);
    const answers = await Promise.all([deliver(a, failed), deliver(b, failed)]);
    expect(answers.map((answer) => answer.status)).toEqual([200, 200]);
    expect(await posted()).toBe(0n);
    expect(await clearing()).toBe(before);
    expect(await shortfallsOf(invoiceId)).toEqual([
      {
        reversal_key: "dispute:dp_after_stripe_refund",
        account_id: accountId,
        amount: 1000n,
        collected: 1000n,
      },
    ]);
    expect((await deliver(b, stripeEvents.refundFailed("evt_stripe_refund_failed_2", refunded))).status).toBe(
      200,
    );
    expect(await posted()).toBe(0n);

    const won = stripeEvents.disputeFundsReinstated("evt_after_stripe_refund_won", dispute);
    expect((await deliver(a, won)).status).toBe(200);
    expect(await posted()).toBe(2500n);
    expect(await clearing()).toBe(before + 2500n);
    // The refund made at Stripe is a reversal of its own: its give-back says it collected all it gave back.
    expect(await balanceEventsOf(invoiceId)).toEqual([
      "invoice.reversed 1000 - -",
      "invoice.reversed 1500 - -",
      "invoice.reinstated 1000 1000 0",
      "invoice.reinstated 2500 0 2500",
    ]);
  });

  it("changes nothing when the dispute took all it asked: the failed refund goes back to the account whole", async () => {
    const before = await clearing();
    const { invoiceId, intentId, posted } = await paidInvoice("no_shortfall");
    const refunded = await refund(invoiceId, "10.00");
    // A dispute of what was not refunded: the account holds all of it.
    const dispute = { disputeId: "dp_no_shortfall", intentId, amount: 1500 };
    expect((await deliver(a, stripeEvents.disputeCreated("evt_no_shortfall_dispute", dispute))).status).toBe(
      200,
    );
    expect(await posted()).toBe(0n);
    expect(await shortfallsOf(invoiceId)).toEqual([]);
    const failed = { refundId: refunded.stripeRefundId, intentId, amount: 1000 };
    expect((await deliver(b, stripeEvents.refundFailed("evt_no_shortfall_failed", failed))).status).toBe(200);
    expect((await deliver(a, stripeEvents.refundFailed("evt_no_shortfall_failed", failed))).status).toBe(200);
    expect(await posted()).toBe(1000n);
    expect(await clearing()).toBe(before + 1000n);
    expect(await shortfallsOf(invoiceId)).toEqual([]);
    // Nothing was collected: the event says so, and all of the refund stayed on the account.
    expect(await balanceEventsOf(invoiceId)).toEqual([
      "refund.succeeded 1000 - -",
      "invoice.reversed 1500 - -",
      "refund.failed 1000 0 1000",
    ]);
  });
});

/** Waits until `seen` holds, polling every 10 ms, for at most `timeoutMs`; returns whether it did. */
async function seenWithin(seen: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await seen()) return true;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return false;
}

/**
 * Whether a session of the test's database waits for a lock the session `blockedBy` (a backend's pid) holds, or runs
 * or last ran a statement with `text` in its first kilobyte (all pg_stat_activity keeps of it).
 */
async function sessionSeen(
  client: pg.Client,
  what: { blockedBy: number } | { text: string },
): Promise<boolean> {
  const { rows } = await client.query<{ count: string }>(
    `SELECT count(*) AS count FROM pg_stat_activity
     WHERE datname = current_database() AND pid <> pg_backend_pid()
       AND CASE WHEN $1::int4 IS NOT NULL THEN pg_blocking_pids(pid) @> ARRAY[$1::int4]
                ELSE position($2 in query) > 0 END`,
    "blockedBy" in what ? [what.blockedBy, null] : [null, what.text],
  );
  return Number(rows[0]!.count) > 0;
}

/**
 * Settles once `app`'s ledger is handed a request whose statement must run under its lock (Alongside.underLock): a
 * give-back with a collection, computed from the shortfalls it read before.
 */
function underLockRequested(app: App): Promise<void> {
  const ledger = app.ledger;
  const createTransfersWith = ledger.createTransfersWith;
  return new Promise((resolve) => {
    ledger.createTransfersWith = (transfers, alongside) => {
      if (alongside.underLock === true) {
        ledger.createTransfersWith = createTransfersWith;
        resolve();
      }
      return createTransfersWith(transfers, alongside);
    };
  });
}

describe("a dispute and a refund's failure of one invoice in one process, their ledger batches both in flight", () => {
  // One process alone on its database: its ledger writer pipelines (another process's writes would send its batches
  // down the locked path for a while, where the check runs under the ledger's lock).
  let solo: App;
  let databaseUrl: string;
  beforeAll(async () => {
    databaseUrl = await createTestDatabase(inject("postgresUrl"), "fiat_shortfall_solo");
    solo = await createApp(testConfig({ ...stripeMockEnv(secret), DATABASE_URL: databaseUrl }));
  });
  afterAll(async () => {
    await solo?.close();
  });

  // The give-back read the shortfalls before the dispute's record committed, and its batch was sent behind the
  // dispute's (pipelined, on the writer's other connection): its collection's check must see the dispute's shortfall
  // — recorded before it in the ledger's order — and have the give-back computed again, as the ledger's lock would.
  // Pipelined, the check ran before that lock, while the dispute's batch was still uncommitted: it passed, and the
  // refund's 10.00 stayed on the account with the dispute's 10.00 shortfall left uncollected.
  it("collects the dispute's shortfall from what the refund gives back", async () => {
    const before = await clearing(solo);
    const { accountId, invoiceId, intentId, posted } = await paidInvoice("shortfall_in_flight", solo);
    const refunded = await refund(invoiceId, "10.00", solo);
    expect(await posted()).toBe(1500n);
    const watcher = new pg.Client({ connectionString: databaseUrl });
    const holder = new pg.Client({ connectionString: databaseUrl });
    await watcher.connect();
    await holder.connect();
    /** Whether the give-back's statement ran while the dispute's batch was still in flight. */
    let ranInFlight: boolean;
    try {
      const holderPid: number = (await holder.query("SELECT pg_backend_pid() AS pid")).rows[0].pid;
      // The clock's row held elsewhere: the dispute's batch writes its record and then waits for the clock, in flight.
      await holder.query("BEGIN");
      await holder.query("SELECT 1 FROM ledger_clock WHERE singleton FOR UPDATE");
      const dispute = { disputeId: "dp_in_flight", intentId, amount: 2500 };
      const disputed = deliver(solo, stripeEvents.disputeCreated("evt_in_flight_dispute", dispute));
      expect(
        await seenWithin(() => sessionSeen(watcher, { blockedBy: holderPid }), 10_000),
        "the dispute's batch waits for the clock",
      ).toBe(true);
      // The refund fails meanwhile, in the same process: its give-back reads no shortfall yet, and is handed to the
      // ledger.
      let requested = false;
      void underLockRequested(solo).then(() => {
        requested = true;
      });
      const failed = { refundId: refunded.stripeRefundId, intentId, amount: 1000 };
      const refundFailed = deliver(solo, stripeEvents.refundFailed("evt_in_flight_refund_failed", failed));
      expect(
        await seenWithin(async () => requested, 10_000),
        "the give-back, its shortfalls read, is handed to the ledger",
      ).toBe(true);
      // Pipelined, its statement is sent at once; under the ledger's lock it waits for the dispute's batch (a bounded
      // wait: nothing to see then).
      ranInFlight = await seenWithin(
        () => sessionSeen(watcher, { text: "UPDATE refunds SET status = 'failed'" }),
        1_500,
      );
      await holder.query("ROLLBACK");
      expect((await disputed).status).toBe(200);
      expect((await refundFailed).status).toBe(200);
    } finally {
      await holder.end();
      await watcher.end();
    }
    // Stripe took 25.00 for the dispute and holds the refund's 10.00 again: it holds nothing of the payment, nor does
    // the account, whose 10.00 back settled the dispute's shortfall.
    expect((await call("GET", `/v1/refunds/${refunded.id}`, undefined, solo)).body.status).toBe("failed");
    expect(await shortfallsOf(invoiceId, solo)).toEqual([
      { reversal_key: "dispute:dp_in_flight", account_id: accountId, amount: 1000n, collected: 1000n },
    ]);
    expect(await posted()).toBe(0n);
    expect(await clearing(solo)).toBe(before);
    expect(await balanceEventsOf(invoiceId, solo)).toEqual([
      "refund.succeeded 1000 - -",
      "invoice.reversed 1500 - -",
      "refund.failed 1000 1000 0",
    ]);
    expect(ranInFlight, "the give-back's statement ran while the dispute's batch was in flight").toBe(false);
  });
});
