// /v1/accounts end to end, on PGlite and on PostgreSQL: create (asset, kind, name, metadata; Idempotency-Key),
// retrieve with the balance, list with its filters, and an account's transactions — the ledger's view, with
// the payment each belongs to and the chain's evidence, paged both ways. Another tenant's account is not found
// anywhere and in no list; a refused create writes nothing.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assets } from "../../core/index.ts";
import { getClearingAccount, getTenantAccount } from "../../gateway/accounts/index.ts";
import { derivedLedgerId } from "../../gateway/ids/index.ts";
import { credit, transferCodes } from "../../gateway/ledger/index.ts";
import { createApiKey, createTenant } from "../../gateway/tenants/index.ts";
import { startTestGateway, type TestGateway } from "./support.ts";

describe.each(["pglite", "postgres"] as const)("on %s", (database) => {
  let gw: TestGateway;
  let other: { tenantId: string; key: string };

  beforeAll(async () => {
    gw = await startTestGateway({ database });
    const tenant = await createTenant(gw.app.db, { name: "Other" });
    other = {
      tenantId: tenant.id,
      key: (await createApiKey(gw.app.db, { tenantId: tenant.id, mode: "test" })).secret,
    };
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  async function accountCount(): Promise<bigint> {
    const [row] = await gw.app.db.query<{ count: bigint }>("SELECT count(*) AS count FROM accounts");
    return row!.count;
  }

  describe("create and retrieve", () => {
    it("creates an empty account with its name and metadata and reads it back with its balance", async () => {
      const created = await gw.call("POST", "/v1/accounts", {
        body: { asset: "BTC", kind: "customer", name: "Alice's sats", metadata: { user: "42" } },
      });
      expect(created.status).toBe(201);
      expect(created.body).toEqual({
        id: expect.stringMatching(/^acct_[0-9a-z]{26}$/),
        object: "account",
        asset: "BTC",
        kind: "customer",
        name: "Alice's sats",
        balance: {
          available: "0.00000000000",
          posted: "0.00000000000",
          pending_out: "0.00000000000",
          pending_in: "0.00000000000",
        },
        metadata: { user: "42" },
        created_at: expect.any(String),
      });
      const read = await gw.call("GET", `/v1/accounts/${created.body.id}`);
      expect([read.status, read.body]).toEqual([200, created.body]);
      const balance = await gw.call("GET", `/v1/accounts/${created.body.id}/balance`);
      expect(balance.body).toMatchObject({ object: "balance", asset: "BTC", available: "0.00000000000" });
    });

    it("answers a repeated Idempotency-Key with the same account and creates one", async () => {
      const before = await accountCount();
      const headers = { "idempotency-key": `acct-${database}` };
      const body = { asset: "USD", kind: "merchant" };
      const first = await gw.call("POST", "/v1/accounts", { body, headers });
      const again = await gw.call("POST", "/v1/accounts", { body, headers });
      expect(first.status).toBe(201);
      expect(again.status).toBe(201);
      expect(again.headers["idempotent-replayed"]).toBe("true");
      expect(again.body.id).toBe(first.body.id);
      expect(first.body).toMatchObject({ asset: "USD", kind: "merchant", name: "", metadata: {} });
      expect(await accountCount()).toBe(before + 1n);
    });

    it("refuses an unknown asset, the gas asset, a rail's kinds and bad fields, writing nothing", async () => {
      const before = await accountCount();
      for (const [body, status, code, param] of [
        [{ asset: "DOGE", kind: "customer" }, 400, "unknown_asset", "asset"],
        [{ asset: "ETH", kind: "customer" }, 400, "unknown_asset", "asset"],
        [{ asset: "usdc", kind: "customer" }, 400, "unknown_asset", "asset"],
        [{ asset: "USDC", kind: "clearing" }, 400, "parameter_invalid", "kind"],
        [{ asset: "USDC", kind: "fee" }, 400, "parameter_invalid", "kind"],
        [{ kind: "customer" }, 400, "parameter_missing", "asset"],
        [{ asset: "USDC", kind: "customer", name: "" }, 400, "parameter_invalid", "name"],
        [{ asset: "USDC", kind: "customer", ledger: 1 }, 400, "parameter_unknown", "ledger"],
      ] as const) {
        const response = await gw.call("POST", "/v1/accounts", { body });
        expect([
          JSON.stringify(body),
          response.status,
          response.body.error.code,
          response.body.error.param,
        ]).toEqual([JSON.stringify(body), status, code, param]);
      }
      expect(await accountCount()).toBe(before);
    });

    it("hides another tenant's account: 404 on every route, absent from its lists", async () => {
      const mine = (await gw.call("POST", "/v1/accounts", { body: { asset: "USDC", kind: "customer" } }))
        .body;
      for (const path of [
        `/v1/accounts/${mine.id}`,
        `/v1/accounts/${mine.id}/balance`,
        `/v1/accounts/${mine.id}/transactions`,
        "/v1/accounts/acct_demo_customer/transactions",
      ]) {
        const response = await gw.call("GET", path, { key: other.key });
        expect([path, response.status, response.body.error.code]).toEqual([path, 404, "account_not_found"]);
      }
      const list = await gw.call("GET", "/v1/accounts?limit=100", { key: other.key });
      expect(list.status).toBe(200);
      expect(list.body.data).toEqual([]);
      // A rail's clearing account is no tenant's.
      const [clearing] = await gw.app.db.query<{ id: string }>(
        "SELECT id FROM accounts WHERE kind = 'clearing' LIMIT 1",
      );
      const read = await gw.call("GET", `/v1/accounts/${clearing!.id}`);
      expect(read.status).toBe(404);
      // And another tenant's account as a cursor is refused as one that does not exist.
      const cursor = await gw.call("GET", `/v1/accounts?starting_after=${mine.id}`, { key: other.key });
      expect([cursor.status, cursor.body.error.code, cursor.body.error.param]).toEqual([
        400,
        "parameter_invalid",
        "starting_after",
      ]);
    });
  });

  describe("list", () => {
    it("filters by asset and kind, newest first, and pages both ways", async () => {
      const tenant = await createTenant(gw.app.db, { name: "Lister" });
      const key = (await createApiKey(gw.app.db, { tenantId: tenant.id, mode: "test" })).secret;
      const ids: string[] = [];
      for (const [asset, kind] of [
        ["USDC", "customer"],
        ["BTC", "customer"],
        ["USD", "merchant"],
        ["BTC", "merchant"],
        ["BTC", "customer"],
      ] as const) {
        const created = await gw.call("POST", "/v1/accounts", { key, body: { asset, kind } });
        ids.push(created.body.id);
      }
      const all = await gw.call("GET", "/v1/accounts", { key });
      expect(all.body).toMatchObject({ object: "list", url: "/v1/accounts", has_more: false });
      expect(all.body.data.map((account: { id: string }) => account.id)).toEqual([...ids].reverse());
      const btc = await gw.call("GET", "/v1/accounts?asset=BTC", { key });
      expect(btc.body.data.map((account: { id: string }) => account.id)).toEqual([ids[4], ids[3], ids[1]]);
      const btcCustomers = await gw.call("GET", "/v1/accounts?asset=BTC&kind=customer", { key });
      expect(btcCustomers.body.data.map((account: { id: string }) => account.id)).toEqual([ids[4], ids[1]]);
      const page = await gw.call("GET", `/v1/accounts?limit=2&starting_after=${ids[3]}`, { key });
      expect([page.body.data.map((account: { id: string }) => account.id), page.body.has_more]).toEqual([
        [ids[2], ids[1]],
        true,
      ]);
      const back = await gw.call("GET", `/v1/accounts?limit=2&ending_before=${ids[1]}`, { key });
      expect([back.body.data.map((account: { id: string }) => account.id), back.body.has_more]).toEqual([
        [ids[3], ids[2]],
        true,
      ]);
      for (const query of ["asset=ETH", "asset=XYZ", "kind=clearing"]) {
        const refused = await gw.call("GET", `/v1/accounts?${query}`, { key });
        expect([query, refused.status, refused.body.error.code]).toEqual([query, 400, "parameter_invalid"]);
      }
    });
  });

  describe("transactions", () => {
    it("shows a paid payment's transfers with the payment, their state and the chain's evidence", async () => {
      const payee = gw.app.demo!.payee!;
      const paid = await gw.call("POST", "/v1/payments", {
        body: {
          amount: "2.50",
          asset: "USDC",
          source: { account: "acct_demo_customer" },
          destination: { type: "evm_address", address: payee },
        },
      });
      expect([paid.status, paid.body.status]).toEqual([201, "succeeded"]);
      const attempt = paid.body.attempts[0];
      const page = await gw.call("GET", "/v1/accounts/acct_demo_customer/transactions?limit=100");
      expect(page.status).toBe(200);
      expect(page.body).toMatchObject({
        object: "list",
        url: "/v1/accounts/acct_demo_customer/transactions",
        has_more: false,
      });
      const mine = page.body.data.filter(
        (entry: { payment: string | null }) => entry.payment === paid.body.id,
      );
      // The reservation (a hold, now posted), its post with the chain's evidence, and the fee charged.
      const hold = mine.find(
        (entry: { phase: string; code: number }) => entry.phase === "pending" && entry.code === 1,
      );
      expect(hold).toMatchObject({
        object: "account_transaction",
        account: "acct_demo_customer",
        asset: "USDC",
        direction: "debit",
        amount: "2.500000",
        status: "posted",
        kind: "payments.payment",
        counterparty: { kind: "clearing", account: null, rail: "evm" },
        invoice: null,
        refund: null,
      });
      const post = mine.find(
        (entry: { pending_transaction: string | null }) => entry.pending_transaction === hold.id,
      );
      expect(post).toMatchObject({
        phase: "post_pending",
        status: "posted",
        direction: "debit",
        amount: "2.500000",
        payment: paid.body.id,
        evidence: { rail: "evm", reference: `${attempt.evidence.tx_hash}:${attempt.evidence.log_index}` },
      });
      expect(mine.some((entry: { kind: string }) => entry.kind === "payments.feeCharged")).toBe(true);
      // The demo funding: a credit from the chain's clearing account, with the mint as evidence, and no payment.
      const funding = page.body.data.find((entry: { kind: string }) => entry.kind === "payments.funding");
      expect(funding).toMatchObject({
        direction: "credit",
        phase: "single",
        status: "posted",
        payment: null,
        evidence: { rail: "evm", reference: expect.stringMatching(/^0x[0-9a-f]{64}:\d+$/) },
      });
      // Newest first.
      const times = page.body.data.map((entry: { created_at: string }) => entry.created_at);
      expect(times).toEqual([...times].sort().reverse());
    });

    it("pages by transaction id both ways with an exact has_more, filters by creation time", async () => {
      const tenant = await createTenant(gw.app.db, { name: "Pager" });
      const key = (await createApiKey(gw.app.db, { tenantId: tenant.id, mode: "test" })).secret;
      const payer = await gw.call("POST", "/v1/accounts", { key, body: { asset: "USDC", kind: "customer" } });
      const payee = await gw.call("POST", "/v1/accounts", { key, body: { asset: "USDC", kind: "merchant" } });
      await fund(tenant.id, payer.body.id, 5_000_000n);
      const payments: string[] = [];
      for (let index = 0; index < 4; index += 1) {
        const paid = await gw.call("POST", "/v1/payments", {
          key,
          body: {
            amount: "1.00",
            asset: "USDC",
            source: { account: payer.body.id },
            destination: { type: "account", account: payee.body.id },
          },
        });
        expect([paid.status, paid.body.status]).toEqual([201, "succeeded"]);
        payments.push(paid.body.id);
      }
      const url = `/v1/accounts/${payee.body.id}/transactions`;
      const all = (await gw.call("GET", `${url}?limit=100`, { key })).body;
      expect(all.has_more).toBe(false);
      expect(all.data.every((entry: { direction: string }) => entry.direction === "credit")).toBe(true);
      expect(new Set(all.data.map((entry: { payment: string }) => entry.payment))).toEqual(new Set(payments));
      const ids = all.data.map((entry: { id: string }) => entry.id);
      expect(ids.length).toBeGreaterThanOrEqual(4);
      const count = ids.length;

      const first = (await gw.call("GET", `${url}?limit=2`, { key })).body;
      expect([first.data.map((entry: { id: string }) => entry.id), first.has_more]).toEqual([
        ids.slice(0, 2),
        true,
      ]);
      const rest = (await gw.call("GET", `${url}?limit=${count - 2}&starting_after=${ids[1]}`, { key })).body;
      expect([rest.data.map((entry: { id: string }) => entry.id), rest.has_more]).toEqual([
        ids.slice(2),
        false,
      ]);
      const back = (await gw.call("GET", `${url}?limit=2&ending_before=${ids[count - 1]}`, { key })).body;
      expect([back.data.map((entry: { id: string }) => entry.id), back.has_more]).toEqual([
        ids.slice(count - 3, count - 1),
        count > 3,
      ]);
      const top = (await gw.call("GET", `${url}?ending_before=${ids[1]}`, { key })).body;
      expect([top.data.map((entry: { id: string }) => entry.id), top.has_more]).toEqual([[ids[0]], false]);

      const future = Math.floor(Date.now() / 1000) + 3600;
      const none = (await gw.call("GET", `${url}?created[gte]=${future}`, { key })).body;
      expect([none.data, none.has_more]).toEqual([[], false]);
      const before = (await gw.call("GET", `${url}?created[lt]=${future}&limit=100`, { key })).body;
      expect(before.data.length).toBe(count);
      const old = (await gw.call("GET", `${url}?created[lte]=1000000000`, { key })).body;
      expect(old.data).toEqual([]);

      // A transaction of another account as a cursor, or an id that is none: 400 naming the parameter.
      const foreign = (
        await gw.call("GET", `/v1/accounts/${payer.body.id}/transactions`, { key })
      ).body.data.find((entry: { direction: string; kind: string }) => entry.kind === "payments.funding");
      for (const query of [
        `starting_after=${foreign.id}`,
        `ending_before=txn_${"0".repeat(31)}1`,
        "starting_after=txn_123",
        `starting_after=${ids[0]}&ending_before=${ids[1]}`,
        "limit=0",
        "limit=101",
      ]) {
        const refused = await gw.call("GET", `${url}?${query}`, { key });
        expect([query, refused.status, refused.body.error.code]).toEqual([query, 400, "parameter_invalid"]);
      }
    });
  });

  /** Credits `amount` µUSDC to the account from the EVM rail's clearing account, as the demo funding does. */
  async function fund(tenantId: string, accountId: string, amount: bigint): Promise<void> {
    const account = await getTenantAccount(gw.app.db, { tenantId, id: accountId });
    const clearing = await getClearingAccount(gw.app.db, { rail: "evm", asset: assets.USDC });
    const outcome = await credit(
      gw.app.ledger,
      {
        debitAccountId: clearing!.ledgerAccountId,
        creditAccountId: account!.ledgerAccountId,
        amount,
        ledger: assets.USDC.ledger,
        code: transferCodes.payments.funding,
      },
      { id: derivedLedgerId(accountId, "test-funding"), label: "test funding" },
    );
    expect(outcome).toBe("credited");
  }
});
