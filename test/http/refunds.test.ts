// /v1/refunds end to end on PGlite and on PostgreSQL, through the typed client, on the internal rail: a payment between two accounts refunded
// in part and in full, posted as a ledger reversal with its events; never more than was paid, also when two refunds
// race for the last of it; an Idempotency-Key repeated; another tenant's objects not found; lists; and every refusal
// with its stable code and nothing moved or written.
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import type { RequestBody } from "../../client/index.ts";
import { assets, type Rail, type RailEventHandler } from "../../core/index.ts";
import {
  accountCacheDefaults,
  createAccount,
  createAccountCache,
  getClearingAccount,
  getTenantAccount,
} from "../../gateway/accounts/index.ts";
import { derivedLedgerId } from "../../gateway/ids/index.ts";
import { transferCodes, writeChainWith } from "../../gateway/ledger/index.ts";
import { railAccountOpened, recoverPendingRefunds } from "../../gateway/payments/index.ts";
import {
  claimStatement,
  listPendingRefunds,
  touchPendingRefunds,
} from "../../gateway/payments/refunds-store.ts";
import { createApiKey, createTenant } from "../../gateway/tenants/index.ts";
import { wellFormedInvoice } from "../support/bolt11.ts";
import { receivingToySnapshot } from "../support/toy-rail.ts";
import { startTestGateway, type TestGateway } from "./support.ts";

/** A toy rail's `receive`: offers the invoice under `prefix`_<reference>, paid when the test says so. */
const offeredAs =
  (prefix: string): NonNullable<Rail["receive"]> =>
  async (request) => ({
    status: "offered",
    railReference: `${prefix}_${request.reference}`,
    expiresAtMs: null,
    instructions: { pay: request.reference },
  });

/**
 * A rail built from the Rail contract alone that takes USDC in for invoices and refunds it through its "provider"
 * (refundReceived); `amountMax` is what it moves at once (lowered by a test after money came in); a refund of
 * exactly 1 USDC the provider fails, one of exactly 2 USDC it takes and answers later (in flight).
 */
function createRefundingToyRail() {
  const refunds = new Map<string, bigint>();
  let handler: RailEventHandler | null = null;
  const limits = { amountMax: 100_000_000n };
  const rail: Rail = {
    id: "toyrefunds",
    kind: "fiat",
    asset: assets.USDC,
    async start() {},
    async stop() {},
    snapshot: () => receivingToySnapshot(rail, limits.amountMax),
    execute: async () => ({
      status: "failed",
      code: "rejected",
      message: "no payouts",
      retryElsewhere: true,
    }),
    onEvent(next) {
      handler = next;
    },
    balance: async () => 0n,
    receive: offeredAs("toy"),
    async refundReceived(refund) {
      if (refund.amount === 1_000_000n)
        return { status: "failed", code: "rejected", message: "the toy provider refuses 1 USDC" };
      if (refund.amount === 2_000_000n)
        return {
          status: "in_flight",
          evidence: { rail: "external", railId: "toyrefunds", reference: `toy_re_${refund.id}` },
        };
      refunds.set(refund.id, refund.amount);
      return {
        status: "succeeded",
        evidence: { rail: "external", railId: "toyrefunds", reference: `toy_re_${refund.id}` },
        fee: 0n,
      };
    },
  };
  return {
    rail,
    refunds,
    limits,
    /** The toy's provider says something else about an invoice's money (a dispute, a refund's end). */
    async emit(event: Parameters<RailEventHandler>[0]) {
      return await handler!(event);
    },
    /** The toy's provider says the invoice was paid `amount`. */
    async pay(invoiceId: string, amount: bigint) {
      await handler!({
        kind: "received",
        reference: invoiceId,
        amount,
        evidence: { rail: "external", railId: "toyrefunds", reference: `toy_in_${invoiceId}` },
      });
    },
  };
}

/**
 * A Lightning-kind rail built from the Rail contract alone: takes BTC in for invoices (its `pay`), and pays a refund to
 * the BOLT11 invoice given, reporting `fee` msat of routing fee beside it (as LND does a route through a hop that
 * charges); a refund of exactly 2 sat it finds no route for.
 */
function createLightningToyRail(fee: bigint) {
  let handler: RailEventHandler | null = null;
  const paid = new Map<string, bigint>();
  const rail: Rail = {
    id: "toyln",
    kind: "lightning",
    asset: assets.BTC,
    async start() {},
    async stop() {},
    snapshot: () => receivingToySnapshot(rail, 10n ** 12n),
    async execute(attempt) {
      if (attempt.amount === 2_000n)
        return {
          status: "failed",
          code: "unreachable_destination",
          message: "no route",
          retryElsewhere: false,
        };
      paid.set(attempt.id, attempt.amount);
      return {
        status: "succeeded",
        evidence: { rail: "external", railId: "toyln", reference: `toyln_out_${attempt.id}` },
        fee,
      };
    },
    onEvent(next) {
      handler = next;
    },
    balance: async () => 0n,
    receive: offeredAs("toyln"),
  };
  return {
    rail,
    paid,
    async pay(invoiceId: string, amount: bigint) {
      await handler!({
        kind: "received",
        reference: invoiceId,
        amount,
        evidence: { rail: "external", railId: "toyln", reference: `toyln_in_${invoiceId}` },
      });
    },
  };
}

const customer = "acct_demo_customer";
const merchant = "acct_demo_merchant";

describe.each(["pglite", "postgres"] as const)("on %s", (database) => {
  let gw: TestGateway;
  let otherKey: string;
  const toy = createRefundingToyRail();
  const toyLightning = createLightningToyRail(7_000n);

  beforeAll(async () => {
    gw = await startTestGateway({
      database,
      extraRailModules: [() => ({ rails: [toy.rail, toyLightning.rail] })],
    });
    const tenant = await createTenant(gw.app.db, { name: "Other" });
    otherKey = (await createApiKey(gw.app.db, { tenantId: tenant.id, mode: "test" })).secret;
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  async function ledgerAccount(account: string) {
    const record = await getTenantAccount(gw.app.db, { tenantId: "ten_demo", id: account });
    const [found] = await gw.app.ledger.lookupAccounts([record!.ledgerAccountId]);
    return found!;
  }

  /** Posted balance in minor units (USDC, scale 6). */
  async function posted(account: string): Promise<bigint> {
    const found = await ledgerAccount(account);
    return found.creditsPosted - found.debitsPosted;
  }

  async function pendingOut(account: string): Promise<bigint> {
    return (await ledgerAccount(account)).debitsPending;
  }

  async function count(table: "refunds" | "outbox"): Promise<bigint> {
    const [row] = await gw.app.db.query<{ count: bigint }>(`SELECT count(*) AS count FROM ${table}`);
    return row!.count;
  }

  async function pay(amount: string, from = customer, to = merchant): Promise<string> {
    const response = await gw.call("POST", "/v1/payments", {
      body: {
        amount,
        asset: "USDC",
        source: { account: from },
        destination: { type: "account", account: to },
      },
    });
    expect(response.status).toBe(201);
    expect(response.body.status).toBe("succeeded");
    return response.body.id;
  }

  /** A USDC merchant account `id` of the demo tenant's own, empty: balances exact whatever other tests paid. */
  async function ownAccount(id: string): Promise<string> {
    await createAccount(
      { sql: gw.app.db, ledger: gw.app.ledger },
      { tenantId: "ten_demo", kind: "merchant", asset: assets.USDC, name: id, id },
    );
    return id;
  }

  /** An invoice to `account` on the toy rail of `usdc` whole USDC, paid in full through the toy's provider. */
  async function paidToyInvoice(account: string, usdc: number): Promise<string> {
    const created = await gw.call("POST", "/v1/invoices", {
      body: { account, amount: String(usdc), asset: "USDC", rail: "toyrefunds" },
    });
    expect(created.body).toMatchObject({ status: "open" });
    const invoiceId: string = created.body.id;
    await toy.pay(invoiceId, BigInt(usdc) * 1_000_000n);
    expect((await gw.call("GET", `/v1/invoices/${invoiceId}`)).body.status).toBe("paid");
    return invoiceId;
  }

  type Answer = { status: number; body: any; headers: Record<string, string> };
  const answerOf = (sent: { data?: unknown; error?: unknown; response: Response }): Answer => ({
    status: sent.response.status,
    body: sent.data ?? sent.error ?? null,
    headers: Object.fromEntries(sent.response.headers),
  });
  const clientOf = (key: string | undefined) => (key === undefined ? gw.client : gw.clientFor(key));

  /** POST /v1/refunds through the typed client; `body` may be anything, to send bad input too. */
  async function refund(body: unknown, options: { key?: string; idempotencyKey?: string } = {}) {
    return answerOf(
      await clientOf(options.key).POST("/v1/refunds", {
        body: body as RequestBody<"/v1/refunds", "post">,
        ...(options.idempotencyKey === undefined
          ? {}
          : { params: { header: { "Idempotency-Key": options.idempotencyKey } } }),
      }),
    );
  }

  async function readRefund(id: string, key?: string) {
    return answerOf(await clientOf(key).GET("/v1/refunds/{id}", { params: { path: { id } } }));
  }

  async function listRefunds(query: Record<string, string | number>, key?: string) {
    return answerOf(await clientOf(key).GET("/v1/refunds", { params: { query: query as never } }));
  }

  /** Runs `act` and checks that it moved nothing, wrote no refund and no event. */
  async function movesNothing(act: () => Promise<void>) {
    const before = {
      transfers: await gw.ledgerTransferCount(),
      refunds: await count("refunds"),
      outbox: await count("outbox"),
      customer: await posted(customer),
      merchant: await posted(merchant),
    };
    await act();
    expect({
      transfers: await gw.ledgerTransferCount(),
      refunds: await count("refunds"),
      outbox: await count("outbox"),
      customer: await posted(customer),
      merchant: await posted(merchant),
    }).toEqual(before);
  }

  describe("refunds of an internal payment", () => {
    it("refunds in part, then the rest, posted as a reversal with its events, and no more", async () => {
      const payment = await pay("10");
      const customerBefore = await posted(customer);
      const merchantBefore = await posted(merchant);

      const first = await refund({
        payment,
        amount: "4",
        reason: "requested_by_customer",
        metadata: { ticket: "T-1" },
      });
      expect(first.status).toBe(201);
      expect(first.body).toEqual({
        id: expect.stringMatching(/^rfd_[0-9a-z]{26}$/),
        object: "refund",
        status: "succeeded",
        amount: "4.000000",
        asset: "USDC",
        invoice: null,
        payment,
        account: merchant,
        rail: "internal-usdc",
        reason: "requested_by_customer",
        destination: null,
        rail_reference: null,
        evidence: { rail: "internal" },
        fee: "0.000000",
        network_fee: null,
        failure: null,
        metadata: { ticket: "T-1" },
        created_at: expect.any(String),
        updated_at: expect.any(String),
      });
      expect(await posted(merchant)).toBe(merchantBefore - 4_000_000n);
      expect(await posted(customer)).toBe(customerBefore + 4_000_000n);
      expect(await pendingOut(merchant)).toBe(0n);

      // The ledger's post carries the refund's id; its hold is posted in full.
      const transfers = await gw.app.db.query<{ code: number; amount: bigint; flags: number; evidence: any }>(
        `SELECT code, amount, flags, evidence FROM ledger_transfers WHERE code = $1 ORDER BY timestamp`,
        [transferCodes.refunds.refund],
      );
      expect(transfers.length).toBeGreaterThanOrEqual(2);
      expect(JSON.stringify(transfers.map((t) => t.evidence))).toContain(first.body.id);

      // refund.created and refund.succeeded, in that order.
      const events = await gw.app.db.query<{ type: string; payload: any }>(
        "SELECT type, payload FROM outbox WHERE payload->>'refund_id' = $1 ORDER BY id",
        [first.body.id],
      );
      expect(events.map((e) => e.type)).toEqual(["refund.created", "refund.succeeded"]);
      expect(events[1]!.payload).toEqual({
        refund_id: first.body.id,
        payment_id: payment,
        asset: "USDC",
        amount: "4000000",
        status: "succeeded",
      });

      const fetched = await readRefund(first.body.id);
      expect(fetched.status).toBe(200);
      expect(fetched.body).toEqual(first.body);

      // Without an amount: all that is left.
      const rest = await refund({ payment });
      expect(rest.status).toBe(201);
      expect(rest.body.amount).toBe("6.000000");
      expect(await posted(merchant)).toBe(merchantBefore - 10_000_000n);

      await movesNothing(async () => {
        const more = await refund({ payment, amount: "0.000001" });
        expect(more.status).toBe(409);
        expect(more.body.error).toMatchObject({ code: "refund_exceeds_remaining", param: "amount" });
        const none = await refund({ payment });
        expect(none.status).toBe(409);
        expect(none.body.error.code).toBe("refund_exceeds_remaining");
      });
    });

    it("refuses a refund above what is left, and takes one up to it", async () => {
      const payment = await pay("3");
      await movesNothing(async () => {
        const over = await refund({ payment, amount: "3.000001" });
        expect(over.status).toBe(409);
        expect(over.body.error.code).toBe("refund_exceeds_remaining");
        // Said in the API's decimals and asset, as the amount was asked, not in minor units.
        expect(over.body.error.message).toBe(
          `the refund is above what is left to refund of ${payment} (3.000000 USDC)`,
        );
      });
      expect((await refund({ payment, amount: "3" })).status).toBe(201);
    });

    it("lets only one of two refunds racing for the last of a payment pass", async () => {
      // The merchant holds more than the payment: the ledger would take every hold, the claim decides.
      await pay("20");
      const payment = await pay("5");
      const merchantBefore = await posted(merchant);
      const answers = await Promise.all([
        refund({ payment, amount: "3" }),
        refund({ payment, amount: "3" }),
        refund({ payment, amount: "3" }),
      ]);
      const statuses = answers.map((a) => a.status).sort();
      expect(statuses).toEqual([201, 409, 409]);
      for (const answer of answers.filter((a) => a.status === 409))
        expect(answer.body.error.code).toBe("refund_exceeds_remaining");
      expect(await posted(merchant)).toBe(merchantBefore - 3_000_000n);
      // The losers' holds were released.
      expect(await pendingOut(merchant)).toBe(0n);
      const [left] = await gw.app.db.query<{ refunded: bigint }>(
        "SELECT refunded FROM refundable WHERE target_id = $1",
        [payment],
      );
      expect(left!.refunded).toBe(3_000_000n);
    });

    it("gives the same refund twice under one Idempotency-Key, moving the money once", async () => {
      const payment = await pay("2");
      const merchantBefore = await posted(merchant);
      const idempotencyKey = `refund-${payment}`;
      const first = await refund({ payment, amount: "1" }, { idempotencyKey });
      expect(first.status).toBe(201);
      const transfers = await gw.ledgerTransferCount();
      const again = await refund({ payment, amount: "1" }, { idempotencyKey });
      expect(again.status).toBe(201);
      expect(again.headers["idempotent-replayed"]).toBe("true");
      expect(again.body.id).toBe(first.body.id);
      expect(await gw.ledgerTransferCount()).toBe(transfers);
      expect(await posted(merchant)).toBe(merchantBefore - 1_000_000n);
      // Another body under the same key is refused.
      const reused = await refund({ payment, amount: "0.5" }, { idempotencyKey });
      expect(reused.status).toBe(409);
      expect(reused.body.error.code).toBe("idempotency_key_reused");
    });

    it("keeps its key to the request past the key's record (24 h): the same request answers the refund, another is refused 409", async () => {
      const payment = await pay("2");
      const idempotencyKey = `refund-gone-${payment}`;
      const first = await refund({ payment, amount: "1" }, { idempotencyKey });
      expect(first.status).toBe(201);
      const forget = () => gw.app.db.query("DELETE FROM idempotency_keys WHERE key = $1", [idempotencyKey]);
      // The record's 24 hours over (the prune): the key is claimed anew, and the refund under it says whose it is.
      await forget();
      const transfers = await gw.ledgerTransferCount();
      const reused = await refund({ payment, amount: "0.5" }, { idempotencyKey });
      expect([reused.status, reused.body.error?.code]).toEqual([409, "idempotency_key_reused"]);
      // Nothing of the refused request is kept under the key: the refund's own request is answered it.
      const again = await refund({ payment, amount: "1" }, { idempotencyKey });
      expect([again.status, again.body.id, again.body.amount]).toEqual([
        201,
        first.body.id,
        first.body.amount,
      ]);
      expect(await gw.ledgerTransferCount()).toBe(transfers);
    });

    it("refuses when the receiving account no longer holds the amount: 402, nothing written", async () => {
      const payment = await pay("1", customer, merchant);
      // The merchant pays all it has onward.
      const all = await posted(merchant);
      const whole = all / 1_000_000n;
      const fraction = (all % 1_000_000n).toString().padStart(6, "0");
      await pay(`${whole}.${fraction}`, merchant, customer);
      await movesNothing(async () => {
        const response = await refund({ payment });
        expect(response.status).toBe(402);
        expect(response.body.error.code).toBe("insufficient_funds");
      });
      expect(await pendingOut(merchant)).toBe(0n);
    });

    it("refuses a payment's refund to a key without the payments scope: 403 scope_missing, its key left free", async () => {
      const payment = await pay("1");
      const invoicesOnly = (
        await createApiKey(gw.app.db, { tenantId: "ten_demo", mode: "test", scopes: ["invoices"] })
      ).secret;
      const idempotencyKey = `refund-scope-${payment}`;
      await movesNothing(async () => {
        // Before: the invoices scope refunded (reversed) a transfer a payments key had made.
        const refused = await refund({ payment }, { key: invoicesOnly, idempotencyKey });
        expect(refused.status).toBe(403);
        expect(refused.body.error).toMatchObject({ code: "scope_missing", scope: "payments" });
      });
      // An invoice's refund is still the invoices scope's; the refused request kept nothing under its key.
      const invoice = await paidToyInvoice(await ownAccount("acct_refund_scope"), 3);
      expect((await refund({ invoice }, { key: invoicesOnly })).status).toBe(201);
      const withScope = (
        await createApiKey(gw.app.db, {
          tenantId: "ten_demo",
          mode: "test",
          scopes: ["invoices", "payments"],
        })
      ).secret;
      const refunded = await refund({ payment }, { key: withScope, idempotencyKey });
      expect([refunded.status, refunded.body.amount]).toEqual([201, "1.000000"]);
    });

    it("refuses when the rail holds less than the refund: 402 insufficient_liquidity, nothing written", async () => {
      const account = await ownAccount("acct_refund_rail_short");
      const invoice = await paidToyInvoice(account, 3);
      // The rail pays out what it holds for others (a cross-asset payout draws on it so): its clearing account is left
      // with nothing beyond what is held already.
      const clearing = (await getClearingAccount(gw.app.db, { rail: "toyrefunds", asset: assets.USDC }))!;
      const capital = await railAccountOpened(
        {
          accounts: createAccountCache({ sql: gw.app.db }, accountCacheDefaults),
          db: gw.app.db,
          ledger: gw.app.ledger,
        },
        { kind: "capital", rail: "toyrefunds", asset: assets.USDC },
      );
      const [held] = await gw.app.ledger.lookupAccounts([clearing.ledgerAccountId]);
      const headroom = held!.debitsPosted - held!.creditsPosted - held!.creditsPending;
      const move = (id: string, debit: bigint, credit: bigint) =>
        gw.app.ledger.createTransfers([
          {
            id: derivedLedgerId(id, "test"),
            debitAccountId: debit,
            creditAccountId: credit,
            amount: headroom,
            ledger: assets.USDC.ledger,
            code: transferCodes.payments.capitalIn,
          },
        ]);
      expect(
        (await move(`${invoice}-out`, capital.ledgerAccountId, clearing.ledgerAccountId))[0]?.status,
      ).toBe("created");
      const before = await posted(account);
      await movesNothing(async () => {
        const response = await refund({ invoice });
        // Before: the ledger's refusal was thrown as an invariant broken, 500 internal_error.
        expect(response.status).toBe(402);
        expect(response.body.error).toMatchObject({ code: "insufficient_liquidity" });
        expect(response.body.error.message).toMatch(/rail toyrefunds does not hold enough/);
      });
      expect(await posted(account)).toBe(before);
      expect(await pendingOut(account)).toBe(0n);
      // The whole of it is still refundable once the rail holds it again.
      await move(`${invoice}-back-early`, clearing.ledgerAccountId, capital.ledgerAccountId);
      const refunded = await refund({ invoice });
      expect([refunded.status, refunded.body.amount]).toEqual([201, "3.000000"]);
    });
  });

  describe("refunds paid out on a Lightning rail", () => {
    const deps = () => ({
      accounts: createAccountCache({ sql: gw.app.db }, accountCacheDefaults),
      db: gw.app.db,
      ledger: gw.app.ledger,
    });
    /** A BTC account of the demo tenant, paid `paidMsat` for an invoice of 1 sat on the toy Lightning rail. */
    async function paidLightningInvoice(account: string, paidMsat: bigint): Promise<string> {
      await createAccount(
        { sql: gw.app.db, ledger: gw.app.ledger },
        { tenantId: "ten_demo", kind: "merchant", asset: assets.BTC, name: account, id: account },
      );
      const created = await gw.call("POST", "/v1/invoices", {
        body: { account, amount: "0.00000001", asset: "BTC", rail: "toyln" },
      });
      expect(created.status).toBe(201);
      await toyLightning.pay(created.body.id, paidMsat);
      return created.body.id;
    }
    /** A ledger account's balance (credits less debits; for a debit-normal one, the other way) and its holds. */
    async function balanceOf(ledgerAccountId: bigint, normal: "credit" | "debit" = "credit") {
      const [found] = await gw.app.ledger.lookupAccounts([ledgerAccountId]);
      const credit = found!.creditsPosted - found!.debitsPosted;
      return { posted: normal === "credit" ? credit : -credit, held: found!.debitsPending };
    }
    async function lightningAccounts(account: string) {
      const tenant = (await getTenantAccount(gw.app.db, { tenantId: "ten_demo", id: account }))!;
      const clearing = await railAccountOpened(deps(), {
        kind: "clearing",
        rail: "toyln",
        asset: assets.BTC,
      });
      const fees = await railAccountOpened(deps(), { kind: "fee", rail: "toyln", asset: assets.BTC });
      const capital = await railAccountOpened(deps(), { kind: "capital", rail: "toyln", asset: assets.BTC });
      return async () => ({
        tenant: await balanceOf(tenant.ledgerAccountId),
        clearing: (await balanceOf(clearing.ledgerAccountId, "debit")).posted,
        fees: (await balanceOf(fees.ledgerAccountId)).posted,
        capital: (await balanceOf(capital.ledgerAccountId)).posted,
      });
    }
    const bolt11Refund = (invoice: string) =>
      refund({ invoice, destination: { type: "bolt11", invoice: wellFormedInvoice() } });

    it("charges the routing fee to the tenant, held at the most the route may cost beside the refund", async () => {
      // 1 sat in for the invoice refunded, 10 sat more on the account (another invoice): room for the fee's hold.
      const account = "acct_refund_ln_fee";
      const invoice = await paidLightningInvoice(account, 1_000n);
      const other = await gw.call("POST", "/v1/invoices", {
        body: { account, amount: "0.0000001", asset: "BTC", rail: "toyln" },
      });
      await toyLightning.pay(other.body.id, 10_000n);
      const balances = await lightningAccounts(account);
      const before = await balances();
      expect(before.tenant).toEqual({ posted: 11_000n, held: 0n });
      // Refunded whole to a 1-sat BOLT11; the route costs 7 sat (the rail's cap: 10 sat, held beside the refund).
      const response = await bolt11Refund(invoice);
      expect(response.status).toBe(201);
      expect(response.body).toMatchObject({
        status: "succeeded",
        amount: "0.00000001000",
        fee: "0.00000007000",
      });
      // Before: the tenant was charged the 1 sat only, and the operator's capital paid the 7 sat route.
      const after = await balances();
      expect(after.tenant).toEqual({ posted: 11_000n - 1_000n - 7_000n, held: 0n });
      // The fee account takes the 7 sat from the tenant and pays them to the node's clearing account: nothing is left
      // on it, nothing asked of the capital, and the clearing account falls by the refund and its fee, as the node.
      expect(after.fees - before.fees).toBe(0n);
      expect(after.capital - before.capital).toBe(0n);
      expect(after.clearing - before.clearing).toBe(-8_000n);
      const [charged, funded] = await gw.app.ledger.lookupTransfers([
        derivedLedgerId(response.body.id, "refund-fee-post"),
        derivedLedgerId(response.body.id, "refund-fee-funded"),
      ]);
      expect(charged).toMatchObject({ amount: 7_000n, code: transferCodes.payments.feeCharged });
      expect(funded).toBeUndefined();
    });

    it("releases the fee's hold with the refund's when the rail fails it: the account whole, nothing held", async () => {
      const account = "acct_refund_ln_failed";
      const invoice = await paidLightningInvoice(account, 12_000n);
      const balances = await lightningAccounts(account);
      const before = await balances();
      const response = await refund({
        invoice,
        destination: { type: "bolt11", invoice: wellFormedInvoice({ amount: "20n" }) },
      });
      expect(response.status).toBe(201);
      expect(response.body).toMatchObject({ status: "failed", amount: "0.00000002000" });
      expect(await balances()).toEqual(before);
      const [voided] = await gw.app.ledger.lookupTransfers([
        derivedLedgerId(response.body.id, "refund-fee-void"),
      ]);
      expect(voided).toMatchObject({ amount: 10_000n });
    });

    it("refuses a refund whose account cannot also hold the most its route may cost: 402 insufficient_funds, nothing written", async () => {
      const account = "acct_refund_ln_short";
      const invoice = await paidLightningInvoice(account, 1_000n); // 1 sat: all the account holds
      const balances = await lightningAccounts(account);
      const before = await balances();
      const refunds = await gw.app.db.query("SELECT count(*) FROM refunds");
      const paidOut = toyLightning.paid.size;
      const response = await bolt11Refund(invoice);
      // Before: succeeded, the 7 sat route paid by the platform for a tenant that paid nothing for it.
      expect(response.status).toBe(402);
      expect(response.body.error).toMatchObject({ code: "insufficient_funds", param: "amount" });
      expect(response.body.error.message).toContain("routing");
      expect(await balances()).toEqual(before);
      expect(await gw.app.db.query("SELECT count(*) FROM refunds")).toEqual(refunds);
      expect(toyLightning.paid.size).toBe(paidOut);
    });

    it("funds the fee from the operator's capital when the rail's clearing account holds less, still charging the tenant", async () => {
      // The account's 10 sat beside the invoice's 1 came in on another rail: the toy's clearing account holds the
      // invoice's 1 sat alone, less than the refund and its route's 7.
      const account = "acct_refund_ln_elsewhere";
      const invoice = await paidLightningInvoice(account, 1_000n);
      const tenant = (await getTenantAccount(gw.app.db, { tenantId: "ten_demo", id: account }))!;
      const elsewhere = await railAccountOpened(deps(), {
        kind: "clearing",
        rail: "toyln_other",
        asset: assets.BTC,
      });
      const [funding] = await gw.app.ledger.createTransfers([
        {
          id: derivedLedgerId(account, "test-funding"),
          debitAccountId: elsewhere.ledgerAccountId,
          creditAccountId: tenant.ledgerAccountId,
          amount: 10_000n,
          ledger: assets.BTC.ledger,
          code: transferCodes.payments.funding,
        },
      ]);
      expect(funding?.status).toBe("created");
      // What other tests left on the toy's clearing account is put aside to its capital for this test (the rail paid
      // it out for others), and back after.
      const clearing = await railAccountOpened(deps(), {
        kind: "clearing",
        rail: "toyln",
        asset: assets.BTC,
      });
      const capital = await railAccountOpened(deps(), { kind: "capital", rail: "toyln", asset: assets.BTC });
      const [held] = await gw.app.ledger.lookupAccounts([clearing.ledgerAccountId]);
      const headroom = held!.debitsPosted - held!.creditsPosted - held!.creditsPending - 1_000n;
      const aside = async (id: string, debit: bigint, credit: bigint) => {
        if (headroom <= 0n) return;
        const [moved] = await gw.app.ledger.createTransfers([
          {
            id: derivedLedgerId(`${invoice}-${id}`, "test"),
            debitAccountId: debit,
            creditAccountId: credit,
            amount: headroom,
            ledger: assets.BTC.ledger,
            code: transferCodes.payments.capitalIn,
          },
        ]);
        expect(moved?.status).toBe("created");
      };
      await aside("out", capital.ledgerAccountId, clearing.ledgerAccountId);
      onTestFinished(() => aside("back", clearing.ledgerAccountId, capital.ledgerAccountId));
      const balances = await lightningAccounts(account);
      const before = await balances();
      expect(before.clearing).toBe(1_000n);
      const response = await bolt11Refund(invoice);
      expect(response.status).toBe(201);
      // Before the capital's leg (aec0c05): the post was refused there and the refund stayed pending for good.
      expect(response.body).toMatchObject({ status: "succeeded", amount: "0.00000001000" });
      const after = await balances();
      expect(after.tenant).toEqual({ posted: 11_000n - 1_000n - 7_000n, held: 0n });
      expect(after.capital - before.capital).toBe(7_000n);
      expect(after.clearing - before.clearing).toBe(-1_000n);
      expect(after.fees - before.fees).toBe(0n);
    });
  });

  describe("refunds through a rail's provider (refundReceived)", () => {
    it("refunds a paid invoice through the provider, and refuses above the rail's maximum before asking it", async () => {
      const invoiceId = await paidToyInvoice(merchant, 10);
      const refundsBefore = toy.refunds.size; // what other tests had the provider pay back
      // The rail moves at most 5 USDC at once now; put back after, since the toy is shared with every other test
      // of this database (its invoices above 5 USDC would be refused).
      const amountMax = toy.limits.amountMax;
      toy.limits.amountMax = 5_000_000n;
      onTestFinished(() => {
        toy.limits.amountMax = amountMax;
      });

      await movesNothing(async () => {
        const above = await refund({ invoice: invoiceId, amount: "6" });
        expect(above.status).toBe(400);
        expect(above.body.error).toMatchObject({ code: "amount_too_large", param: "amount" });
        // All that is left (10) is above it too.
        const all = await refund({ invoice: invoiceId });
        expect(all.body.error.code).toBe("amount_too_large");
      });
      expect(toy.refunds.size).toBe(refundsBefore);

      const merchantBefore = await posted(merchant);
      const ok = await refund({ invoice: invoiceId, amount: "4" });
      expect(ok.status).toBe(201);
      expect(ok.body).toMatchObject({
        status: "succeeded",
        rail: "toyrefunds",
        invoice: invoiceId,
        rail_reference: `toy_re_${ok.body.id}`,
        evidence: { rail: "external", rail_id: "toyrefunds", reference: `toy_re_${ok.body.id}` },
      });
      expect(toy.refunds.get(ok.body.id)).toBe(4_000_000n);
      expect(await posted(merchant)).toBe(merchantBefore - 4_000_000n);
    });

    it("fails a refund the provider refuses: the hold released, the amount refundable again", async () => {
      // An invoice and an account of its own: nothing another test refunded or held counts here.
      const owner = await ownAccount(`acct_refused_${database}`);
      const invoiceId = await paidToyInvoice(owner, 10);
      // 4 of the 10 given back first: a refund that succeeded counts, the failed one below does not.
      const first = await refund({ invoice: invoiceId, amount: "4" });
      expect(first.body).toMatchObject({ status: "succeeded" });
      const ownerBefore = await posted(owner);
      const failed = await refund({ invoice: invoiceId, amount: "1" });
      expect(failed.status).toBe(201);
      expect(failed.body).toMatchObject({ status: "failed", failure: { code: "rejected" } });
      expect(await posted(owner)).toBe(ownerBefore);
      expect(await pendingOut(owner)).toBe(0n);
      const events = await gw.app.db.query<{ type: string; payload: any }>(
        "SELECT type, payload FROM outbox WHERE payload->>'refund_id' = $1 ORDER BY id",
        [failed.body.id],
      );
      expect(events.map((e) => e.type)).toEqual(["refund.created", "refund.failed"]);
      // No reversal of the invoice fell short: the release collected nothing, all of it stayed on the account.
      expect(events[1]!.payload).toMatchObject({
        amount: "1000000",
        shortfall_collected: "0",
        net: "1000000",
      });
      // 10 paid, 4 refunded: 6 are left, the failed 1 among them, and all of it can be refunded.
      const [left] = await gw.app.db.query<{ left: bigint }>(
        "SELECT paid - refunded AS left FROM refundable WHERE target_id = $1",
        [invoiceId],
      );
      expect(left!.left).toBe(6_000_000n);
      const rest = await refund({ invoice: invoiceId });
      expect(rest.body).toMatchObject({ status: "succeeded", amount: "6.000000" });
      expect(await posted(owner)).toBe(ownerBefore - 6_000_000n);
    });
  });

  describe("a dispute while a refund is in flight, and the refund fails", () => {
    it("settles the dispute's shortfall from the hold released: the account keeps nothing the provider took", async () => {
      const owner = await ownAccount(`acct_in_flight_${database}`);
      const invoiceId = await paidToyInvoice(owner, 5);
      const inFlight = await refund({ invoice: invoiceId, amount: "2" });
      expect(inFlight.body).toMatchObject({
        status: "pending",
        rail_reference: `toy_re_${inFlight.body.id}`,
      });
      expect(await pendingOut(owner)).toBe(2_000_000n);
      // The provider takes all 5 for a dispute; the account had 3 of it not held.
      const evidence = (reference: string) => ({
        rail: "external" as const,
        railId: "toyrefunds",
        reference,
      });
      await toy.emit({
        kind: "reversed",
        reference: invoiceId,
        key: "dispute:toy",
        amount: 5_000_000n,
        evidence: evidence("toy_dispute"),
      });
      expect(await posted(owner)).toBe(2_000_000n);
      // The refund fails: the hold is released, and what it held settles the dispute's shortfall.
      const failed = {
        kind: "reinstated" as const,
        reference: invoiceId,
        key: `refund:toy_re_${inFlight.body.id}`,
        evidence: evidence(`toy_re_${inFlight.body.id}`),
      };
      await Promise.all([toy.emit(failed), toy.emit(failed)]);
      expect((await readRefund(inFlight.body.id)).body.status).toBe("failed");
      expect(await pendingOut(owner)).toBe(0n);
      expect(await posted(owner)).toBe(0n);
      const shortfalls = await gw.app.db.query(
        "SELECT reversal_key, amount, collected FROM reversal_shortfalls WHERE invoice_id = $1",
        [invoiceId],
      );
      expect(shortfalls).toEqual([
        { reversal_key: "dispute:toy", amount: 2_000_000n, collected: 2_000_000n },
      ]);
      // Told again: nothing more.
      await toy.emit(failed);
      expect(await posted(owner)).toBe(0n);
      // The events say where the money went: the dispute took 3, the refund's 2 all went to its shortfall, so a
      // balance mirrored from them is the ledger's 0, not 2.
      const events = await gw.app.db.query<{ type: string; payload: any }>(
        `SELECT type, payload FROM outbox WHERE type IN ('invoice.reversed', 'refund.failed')
           AND (payload->>'invoice_id' = $1 OR payload->>'refund_id' = $2) ORDER BY id`,
        [invoiceId, inFlight.body.id],
      );
      expect(
        events.map((e) => [e.type, e.payload.amount, e.payload.shortfall_collected, e.payload.net]),
      ).toEqual([
        ["invoice.reversed", "3000000", undefined, undefined],
        ["refund.failed", "2000000", "2000000", "0"],
      ]);
    });
  });

  describe("recovery", () => {
    /** What createRefund writes before it asks the rail (the hold, the row, the claim, refund.created), and no more. */
    async function crashedRefund(id: string, payment: string, amount: bigint, paid: bigint) {
      const payer = await getTenantAccount(gw.app.db, { tenantId: "ten_demo", id: merchant });
      const payee = await getTenantAccount(gw.app.db, { tenantId: "ten_demo", id: customer });
      const holdId = derivedLedgerId(id, "refund-hold");
      await writeChainWith(
        gw.app.ledger,
        [
          {
            kind: "hold",
            posting: {
              debitAccountId: payer!.ledgerAccountId,
              creditAccountId: payee!.ledgerAccountId,
              amount,
              ledger: 1,
              code: transferCodes.refunds.refund,
            },
            transfer: { id: holdId },
          },
        ],
        {
          statement: claimStatement({
            id,
            tenantId: "ten_demo",
            target: { kind: "payment", paymentId: payment },
            accountId: merchant,
            assetCode: "USDC",
            amount,
            rail: "internal-usdc",
            reason: null,
            metadata: {},
            destination: null,
            holdTransferId: holdId,
            idempotencyKey: null,
            requestSha256: null,
            paid,
          }),
          when: "held",
          sql: gw.app.db,
        },
        "a refund's hold",
      );
    }

    it("drives on a refund a crash left pending after its write, once", async () => {
      const payment = await pay("2");
      const merchantBefore = await posted(merchant);
      const customerBefore = await posted(customer);
      const id = "rfd_01m7zfckv29pdrb3m0gz9e4j5r";
      await crashedRefund(id, payment, 1_500_000n, 2_000_000n);
      expect((await readRefund(id)).body.status).toBe("pending");
      expect(await pendingOut(merchant)).toBe(1_500_000n);
      // What is claimed is not refundable twice meanwhile.
      const over = await refund({ payment, amount: "0.6" });
      expect(over.body.error.code).toBe("refund_exceeds_remaining");

      expect(await recoverPendingRefunds(gw.app.payments, { quietMs: 0 })).toBeGreaterThanOrEqual(1);
      const read = await readRefund(id);
      expect(read.body).toMatchObject({
        status: "succeeded",
        amount: "1.500000",
        evidence: { rail: "internal" },
      });
      expect(await posted(merchant)).toBe(merchantBefore - 1_500_000n);
      expect(await posted(customer)).toBe(customerBefore + 1_500_000n);
      expect(await pendingOut(merchant)).toBe(0n);
      // Again: nothing more.
      await movesNothing(async () => {
        await recoverPendingRefunds(gw.app.payments, { quietMs: 0 });
      });
      const events = await gw.app.db.query<{ type: string }>(
        "SELECT type FROM outbox WHERE payload->>'refund_id' = $1 ORDER BY id",
        [id],
      );
      expect(events.map((e) => e.type)).toEqual(["refund.created", "refund.succeeded"]);
    });

    it("leaves a refund on a rail this process lacks to a process with it, and takes those it looked at after the others", async () => {
      const payment = await pay("2");
      const [older, younger] = ["rfd_01m8gaaaaaaaaaaaaaaaaaaaaa", "rfd_01m8gbbbbbbbbbbbbbbbbbbbbb"];
      await crashedRefund(older, payment, 500_000n, 2_000_000n);
      await crashedRefund(younger, payment, 500_000n, 2_000_000n);
      // A process without the rail: neither is its to drive (before: both listed, and skipped, every pass).
      const withoutRail = { ...gw.app.payments, rails: new Map<string, Rail>() };
      expect(await recoverPendingRefunds(withoutRail, { quietMs: 0 })).toBe(0);
      // Looked at and left pending, a refund goes behind the ones not looked at: a batch of refunds no pass can end
      // (500 a pass) never holds back the ones after it. Before: the oldest first, every pass.
      const rails = ["internal-usdc"];
      const first = await listPendingRefunds(gw.app.db, { quietMs: 0, limit: 1, rails });
      expect(first.map((r) => r.id)).toEqual([older]);
      await touchPendingRefunds(gw.app.db, [older]);
      const next = await listPendingRefunds(gw.app.db, { quietMs: 0, limit: 1, rails });
      expect(next.map((r) => r.id)).toEqual([younger]);
      expect((await readRefund(older)).body.updated_at).toBe((await readRefund(older)).body.created_at);
      await recoverPendingRefunds(gw.app.payments, { quietMs: 0 });
      for (const id of [older, younger]) expect((await readRefund(id)).body.status).toBe("succeeded");
    });
  });

  describe("refusals", () => {
    it("refuses a payout on a rail that cannot pull it back: 422 refund_unsupported", async () => {
      const response = await gw.call("POST", "/v1/payments", {
        body: {
          amount: "2",
          asset: "USDC",
          source: { account: customer },
          destination: { type: "evm_address", address: gw.app.demo!.payee! },
        },
      });
      expect([201, 202]).toContain(response.status);
      let payment = response.body;
      for (let i = 0; i < 100 && payment.status === "processing"; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        payment = (await gw.call("GET", `/v1/payments/${payment.id}`)).body;
      }
      expect(payment).toMatchObject({ status: "succeeded", rail: "evm" });
      await movesNothing(async () => {
        const refused = await refund({ payment: response.body.id });
        expect(refused.status).toBe(422);
        expect(refused.body.error).toMatchObject({ code: "refund_unsupported", param: "payment" });
        expect(refused.body.error.message).toMatch(/cannot pull money back/);
      });
    });

    it("refuses a payment that did not succeed: 409 payment_not_succeeded", async () => {
      const failed = await gw.call("POST", "/v1/payments", {
        body: {
          amount: "1000000",
          asset: "USDC",
          source: { account: customer },
          destination: { type: "account", account: merchant },
        },
      });
      expect(failed.status).toBe(402);
      const id = failed.body.error.payment.id;
      await movesNothing(async () => {
        const response = await refund({ payment: id });
        expect(response.status).toBe(409);
        expect(response.body.error.code).toBe("payment_not_succeeded");
      });
    });

    it("refuses an invoice not paid (409 invoice_not_paid) and one paid on a rail that cannot refund (422)", async () => {
      const open = "inv_01m7zfckv29pdrb3m0gz9e4j50";
      const paid = "inv_01m7zfckv29pdrb3m0gz9e4j51";
      await gw.app.db.query(
        `INSERT INTO invoices (id, tenant_id, account_id, asset, amount, rail, status, description, received_amount)
         VALUES ($1, 'ten_demo', $3, 'USDC', 1000000, 'evm', 'open', '', NULL),
                ($2, 'ten_demo', $3, 'USDC', 1000000, 'evm', 'paid', '', 1000000)`,
        [open, paid, merchant],
      );
      await movesNothing(async () => {
        const notPaid = await refund({ invoice: open });
        expect(notPaid.status).toBe(409);
        expect(notPaid.body.error).toMatchObject({ code: "invoice_not_paid", param: "invoice" });
        const unsupported = await refund({ invoice: paid });
        expect(unsupported.status).toBe(422);
        expect(unsupported.body.error.code).toBe("refund_unsupported");
      });
    });

    it("answers another tenant's payment and invoice named in the body 400, its refund read by path 404, and changes nothing", async () => {
      const payment = await pay("1");
      const mine = await refund({ payment, amount: "0.1" });
      expect(mine.status).toBe(201);
      await movesNothing(async () => {
        const theirs = await refund({ payment }, { key: otherKey });
        expect(theirs.status).toBe(400);
        expect(theirs.body.error).toMatchObject({ code: "payment_not_found", param: "payment" });
        const invoice = await refund({ invoice: "inv_01m7zfckv29pdrb3m0gz9e4j51" }, { key: otherKey });
        expect(invoice.status).toBe(400);
        expect(invoice.body.error).toMatchObject({ code: "invoice_not_found", param: "invoice" });
        const read = await readRefund(mine.body.id, otherKey);
        expect(read.status).toBe(404);
        expect(read.body.error.code).toBe("refund_not_found");
        const list = await listRefunds({}, otherKey);
        expect(list.status).toBe(200);
        expect(list.body.data).toEqual([]);
      });
    });

    it("answers bad input with a stable 4xx and writes nothing", async () => {
      const payment = await pay("1");
      const cases: Array<[unknown, number, string, string?]> = [
        [{}, 400, "parameter_missing", "invoice"],
        [{ payment, invoice: "inv_01m7zfckv29pdrb3m0gz9e4j51" }, 400, "parameter_invalid", "payment"],
        [{ payment, amount: "abc" }, 400, "amount_not_a_decimal", "amount"],
        [{ payment, amount: "0" }, 400, "amount_not_positive", "amount"],
        [{ payment, amount: "-1" }, 400, "amount_not_positive", "amount"],
        [{ payment, amount: "0.0000001" }, 400, "amount_too_precise", "amount"],
        [{ payment, amount: 1 }, 400, "parameter_invalid", "amount"],
        [{ payment, reason: "because" }, 400, "parameter_invalid", "reason"],
        [{ payment, surprise: true }, 400, "parameter_unknown", "surprise"],
        [{ payment: "pay_nope" }, 400, "parameter_invalid", "payment"],
        [{ payment: "pay_01m7zfckv29pdrb3m0gz9e4j5g" }, 400, "payment_not_found", "payment"],
        [
          { payment, destination: { type: "bolt11", invoice: wellFormedInvoice() } },
          400,
          "parameter_invalid",
          "destination",
        ],
        [{ payment, destination: { type: "bolt11", invoice: "not an invoice" } }, 400, "parameter_invalid"],
      ];
      await movesNothing(async () => {
        for (const [body, status, code, param] of cases) {
          const response = await refund(body);
          expect({ body, status: response.status, code: response.body.error?.code }).toEqual({
            body,
            status,
            code,
          });
          if (param !== undefined) expect(response.body.error.param).toBe(param);
        }
        const unknown = await readRefund("rfd_01m7zfckv29pdrb3m0gz9e4j5g");
        expect(unknown.status).toBe(404);
        expect(unknown.body.error.code).toBe("refund_not_found");
        // Of a refund id's shape, mistyped (too short): not found, as an invoice's is (before: 400).
        const mistyped = await readRefund("rfd_abc");
        expect([mistyped.status, mistyped.body.error.code]).toEqual([404, "refund_not_found"]);
        const malformed = await readRefund("re_123");
        expect(malformed.status).toBe(400);
      });
    });
  });

  describe("the list", () => {
    it("pages newest first with Stripe's parameters and filters by status and payment", async () => {
      // A failed refund of its own to filter for (the toy's provider refuses 1 USDC), not one another test left.
      const refused = await refund({ invoice: await paidToyInvoice(merchant, 1), amount: "1" });
      expect(refused.body.status).toBe("failed");
      const payment = await pay("3");
      const made: string[] = [];
      for (const amount of ["1", "1", "1"]) {
        const response = await refund({ payment, amount });
        expect(response.status).toBe(201);
        made.push(response.body.id);
      }
      const byPayment = await listRefunds({ payment });
      expect(byPayment.status).toBe(200);
      expect(byPayment.body).toMatchObject({ object: "list", url: "/v1/refunds", has_more: false });
      expect(byPayment.body.data.map((r: { id: string }) => r.id)).toEqual([...made].reverse());

      const first = await listRefunds({ payment, limit: 2 });
      expect(first.body.data.map((r: { id: string }) => r.id)).toEqual([made[2], made[1]]);
      expect(first.body.has_more).toBe(true);
      const next = await listRefunds({ payment, limit: 2, starting_after: made[1]! });
      expect(next.body.data.map((r: { id: string }) => r.id)).toEqual([made[0]]);
      expect(next.body.has_more).toBe(false);
      const back = await listRefunds({ payment, ending_before: made[0]! });
      expect(back.body.data.map((r: { id: string }) => r.id)).toEqual([made[2], made[1]]);

      const failed = await listRefunds({ status: "failed" });
      expect(failed.status).toBe(200);
      expect(failed.body.data.length).toBeGreaterThanOrEqual(1);
      expect(failed.body.data.map((r: { id: string }) => r.id)).toContain(refused.body.id);
      expect(failed.body.data.every((r: { status: string }) => r.status === "failed")).toBe(true);
      const succeeded = await listRefunds({ status: "succeeded", limit: 100 });
      expect(succeeded.body.data.length).toBeGreaterThanOrEqual(3);

      const badLimit = await listRefunds({ limit: 101 });
      expect(badLimit.status).toBe(400);
      const foreign = await listRefunds({ starting_after: made[0]! }, otherKey);
      expect(foreign.status).toBe(400);
      expect(foreign.body.error).toMatchObject({ code: "parameter_invalid", param: "starting_after" });
    });
  });
});
