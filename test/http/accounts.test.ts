// /v1/accounts end to end through the typed client, on PGlite and on PostgreSQL: create (asset, kind, name,
// metadata; Idempotency-Key), retrieve with the balance, list with its filters, and an account's transactions — the
// ledger's view, with the payment each belongs to and the chain's evidence, paged both ways. Another tenant's
// account is not found anywhere and in no list; a refused create writes nothing. Bodies the client would not send
// (a rail's kind, an unknown field) go raw.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SwitchyardClient } from "../../client/index.ts";
import { assets } from "../../core/index.ts";
import { getClearingAccount, getTenantAccount } from "../../gateway/accounts/index.ts";
import { derivedLedgerId } from "../../gateway/ids/index.ts";
import { credit, LedgerStoreError, transferCodes } from "../../gateway/ledger/index.ts";
import { createApiKey, createTenant } from "../../gateway/tenants/index.ts";
import { startTestGateway, type TestGateway } from "./support.ts";

describe.each(["pglite", "postgres"] as const)("on %s", (database) => {
  let gw: TestGateway;
  let other: { tenantId: string; key: string; client: SwitchyardClient };

  async function newTenant(name: string) {
    const tenant = await createTenant(gw.app.db, { name });
    const key = (await createApiKey(gw.app.db, { tenantId: tenant.id, mode: "test" })).secret;
    return { tenantId: tenant.id, key, client: gw.clientFor(key) };
  }

  beforeAll(async () => {
    gw = await startTestGateway({ database });
    other = await newTenant("Other");
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  async function accountCount(): Promise<bigint> {
    const [row] = await gw.app.db.query<{ count: bigint }>("SELECT count(*) AS count FROM accounts");
    return row!.count;
  }

  const createIn = async (
    client: SwitchyardClient,
    body: {
      asset: "USDC" | "USD" | "BTC";
      kind: "customer" | "merchant";
      name?: string;
      metadata?: Record<string, string>;
    },
  ) => {
    const { data, response } = await client.POST("/v1/accounts", { body });
    expect(response.status).toBe(201);
    return data!;
  };

  describe("create and retrieve", () => {
    it("creates an empty account with its name and metadata and reads it back with its balance", async () => {
      const created = await createIn(gw.client, {
        asset: "BTC",
        kind: "customer",
        name: "Alice's sats",
        metadata: { user: "42" },
      });
      expect(created).toEqual({
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
      const read = await gw.client.GET("/v1/accounts/{id}", { params: { path: { id: created.id } } });
      expect([read.response.status, read.data]).toEqual([200, created]);
      const balance = await gw.client.GET("/v1/accounts/{id}/balance", {
        params: { path: { id: created.id } },
      });
      expect(balance.data).toMatchObject({ object: "balance", asset: "BTC", available: "0.00000000000" });
    });

    it("answers a repeated Idempotency-Key with the same account and creates one", async () => {
      const before = await accountCount();
      const request = {
        body: { asset: "USD" as const, kind: "merchant" as const },
        params: { header: { "Idempotency-Key": `acct-${database}` } },
      };
      const first = await gw.client.POST("/v1/accounts", request);
      const again = await gw.client.POST("/v1/accounts", request);
      expect([first.response.status, again.response.status]).toEqual([201, 201]);
      expect(again.response.headers.get("idempotent-replayed")).toBe("true");
      expect(again.data?.id).toBe(first.data?.id);
      expect(first.data).toMatchObject({ asset: "USD", kind: "merchant", name: "", metadata: {} });
      expect(await accountCount()).toBe(before + 1n);
    });

    it("answers an account it wrote even when reads fail after the write: a retry with its key makes no second one", async () => {
      const before = await accountCount();
      // The database too busy for every balance read while the account is made (a statement timeout).
      const ledger = gw.app.ledger;
      const lookupAccounts = ledger.lookupAccounts;
      ledger.lookupAccounts = async () => {
        throw new LedgerStoreError("lookup failed", {
          cause: Object.assign(new Error("canceling statement due to statement timeout"), {
            code: "57014",
            severity: "ERROR",
          }),
        });
      };
      const request = {
        body: { asset: "USDC" as const, kind: "customer" as const },
        params: { header: { "Idempotency-Key": `acct-busy-${database}` } },
      };
      const first = await gw.client.POST("/v1/accounts", request).finally(() => {
        ledger.lookupAccounts = lookupAccounts;
      });
      // Before: 503 overloaded for an account made, its key given back; the retry made a second account.
      expect(first.response.status).toBe(201);
      const again = await gw.client.POST("/v1/accounts", request);
      expect([again.response.status, again.data?.id]).toEqual([201, first.data?.id]);
      expect(await accountCount()).toBe(before + 1n);
    });

    it("refuses an unknown asset, the gas asset, a rail's kinds and bad fields, writing nothing", async () => {
      const before = await accountCount();
      for (const asset of ["DOGE", "ETH", "usdc"]) {
        const { error, response } = await gw.client.POST("/v1/accounts", {
          // Codes the document does not list: sent past the client's types, as any HTTP client could.
          body: { asset: asset as "USDC", kind: "customer" },
        });
        expect([asset, response.status, error?.error.code, error?.error.param]).toEqual([
          asset,
          400,
          "unknown_asset",
          "asset",
        ]);
      }
      const empty = await gw.client.POST("/v1/accounts", {
        body: { asset: "USDC", kind: "customer", name: "" },
      });
      expect([empty.response.status, empty.error?.error.param]).toEqual([400, "name"]);
      for (const [body, code, param] of [
        [{ asset: "USDC", kind: "clearing" }, "parameter_invalid", "kind"],
        [{ asset: "USDC", kind: "fee" }, "parameter_invalid", "kind"],
        [{ kind: "customer" }, "parameter_missing", "asset"],
        [{ asset: "USDC", kind: "customer", ledger: 1 }, "parameter_unknown", "ledger"],
      ] as const) {
        const response = await gw.call("POST", "/v1/accounts", { body });
        expect([
          JSON.stringify(body),
          response.status,
          response.body.error.code,
          response.body.error.param,
        ]).toEqual([JSON.stringify(body), 400, code, param]);
      }
      expect(await accountCount()).toBe(before);
    });

    it("hides another tenant's account: 404 on every route, absent from its lists", async () => {
      const mine = await createIn(gw.client, { asset: "USDC", kind: "customer" });
      for (const id of [mine.id, "acct_demo_customer"]) {
        const path = { params: { path: { id } } };
        for (const { error, response } of [
          await other.client.GET("/v1/accounts/{id}", path),
          await other.client.GET("/v1/accounts/{id}/balance", path),
          await other.client.GET("/v1/accounts/{id}/transactions", path),
        ])
          expect([id, response.status, error?.error.code]).toEqual([id, 404, "account_not_found"]);
      }
      const list = await other.client.GET("/v1/accounts", { params: { query: { limit: 100 } } });
      expect([list.response.status, list.data?.data]).toEqual([200, []]);
      // A rail's clearing account is no tenant's.
      const [clearing] = await gw.app.db.query<{ id: string }>(
        "SELECT id FROM accounts WHERE kind = 'clearing' LIMIT 1",
      );
      const read = await gw.client.GET("/v1/accounts/{id}", { params: { path: { id: clearing!.id } } });
      expect(read.response.status).toBe(404);
      // And another tenant's account as a cursor is refused as one that does not exist.
      const cursor = await other.client.GET("/v1/accounts", {
        params: { query: { starting_after: mine.id } },
      });
      expect([cursor.response.status, cursor.error?.error.code, cursor.error?.error.param]).toEqual([
        400,
        "parameter_invalid",
        "starting_after",
      ]);
    });
  });

  describe("list", () => {
    it("filters by asset and kind, newest first, and pages both ways", async () => {
      const { client } = await newTenant("Lister");
      const ids: string[] = [];
      for (const [asset, kind] of [
        ["USDC", "customer"],
        ["BTC", "customer"],
        ["USD", "merchant"],
        ["BTC", "merchant"],
        ["BTC", "customer"],
      ] as const)
        ids.push((await createIn(client, { asset, kind })).id);
      type Query = {
        limit?: number;
        starting_after?: string;
        ending_before?: string;
        asset?: "USDC" | "USD" | "BTC";
        kind?: "customer" | "merchant";
      };
      const list = async (params: { query?: Query }) => {
        const { data, response } = await client.GET("/v1/accounts", { params });
        expect(response.status).toBe(200);
        return { ids: data!.data.map((account) => account.id), hasMore: data!.has_more, url: data!.url };
      };
      expect(await list({})).toEqual({ ids: [...ids].reverse(), hasMore: false, url: "/v1/accounts" });
      expect((await list({ query: { asset: "BTC" } })).ids).toEqual([ids[4], ids[3], ids[1]]);
      expect((await list({ query: { asset: "BTC", kind: "customer" } })).ids).toEqual([ids[4], ids[1]]);
      expect(await list({ query: { limit: 2, starting_after: ids[3] } })).toMatchObject({
        ids: [ids[2], ids[1]],
        hasMore: true,
      });
      expect(await list({ query: { limit: 2, ending_before: ids[1] } })).toMatchObject({
        ids: [ids[3], ids[2]],
        hasMore: true,
      });
      for (const query of ["asset=ETH", "asset=XYZ", "kind=clearing"]) {
        const refused = await gw.call("GET", `/v1/accounts?${query}`);
        expect([query, refused.status, refused.body.error.code]).toEqual([query, 400, "parameter_invalid"]);
      }
    });
  });

  describe("transactions", () => {
    it("shows a paid payment's transfers with the payment, their state and the chain's evidence", async () => {
      const paid = await gw.client.POST("/v1/payments", {
        body: {
          amount: "2.50",
          asset: "USDC",
          source: { account: "acct_demo_customer" },
          destination: { type: "evm_address", address: gw.app.demo!.payee! },
        },
        params: { header: { "Idempotency-Key": `evidence-${database}` } },
      });
      expect([paid.response.status, paid.data?.status]).toEqual([201, "succeeded"]);
      const payment = paid.data!;
      const evidence = payment.attempts[0]!.evidence as { tx_hash: string; log_index: number };
      const { data: page, response } = await gw.client.GET("/v1/accounts/{id}/transactions", {
        params: { path: { id: "acct_demo_customer" }, query: { limit: 100 } },
      });
      expect(response.status).toBe(200);
      expect(page).toMatchObject({
        object: "list",
        url: "/v1/accounts/acct_demo_customer/transactions",
        has_more: false,
      });
      const mine = page!.data.filter((entry) => entry.payment === payment.id);
      // The reservation (a hold, now posted), its post with the chain's evidence, and the fee charged.
      const hold = mine.find((entry) => entry.phase === "pending" && entry.code === 1);
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
      const post = mine.find((entry) => entry.pending_transaction === hold!.id);
      expect(post).toMatchObject({
        phase: "post_pending",
        status: "posted",
        direction: "debit",
        amount: "2.500000",
        payment: payment.id,
        evidence: { rail: "evm", reference: `${evidence.tx_hash}:${evidence.log_index}` },
      });
      expect(mine.some((entry) => entry.kind === "payments.feeCharged")).toBe(true);
      // The demo funding: a credit from the chain's clearing account, with the mint as evidence, and no payment.
      const funding = page!.data.find((entry) => entry.kind === "payments.funding");
      expect(funding).toMatchObject({
        direction: "credit",
        phase: "single",
        status: "posted",
        payment: null,
        evidence: { rail: "evm", reference: expect.stringMatching(/^0x[0-9a-f]{64}:\d+$/) },
      });
      // Newest first.
      const times = page!.data.map((entry) => entry.created_at);
      expect(times).toEqual([...times].sort().reverse());
    });

    it("pages by transaction id both ways with an exact has_more, filters by creation time", async () => {
      const { tenantId, client } = await newTenant("Pager");
      const payer = await createIn(client, { asset: "USDC", kind: "customer" });
      const payee = await createIn(client, { asset: "USDC", kind: "merchant" });
      await fund(tenantId, payer.id, 5_000_000n);
      const payments: string[] = [];
      for (let index = 0; index < 4; index += 1) {
        const paid = await client.POST("/v1/payments", {
          body: {
            amount: "1.00",
            asset: "USDC",
            source: { account: payer.id },
            destination: { type: "account", account: payee.id },
          },
          params: { header: { "Idempotency-Key": `pager-${index}` } },
        });
        expect([paid.response.status, paid.data?.status]).toEqual([201, "succeeded"]);
        payments.push(paid.data!.id);
      }
      type Query = { limit?: number; starting_after?: string; ending_before?: string } & Record<
        string,
        unknown
      >;
      const page = async (account: string, query: Query) => {
        const { data, response } = await client.GET("/v1/accounts/{id}/transactions", {
          params: { path: { id: account }, query },
        });
        expect(response.status).toBe(200);
        return data!;
      };
      const all = await page(payee.id, { limit: 100 });
      expect(all.has_more).toBe(false);
      expect(all.data.every((entry) => entry.direction === "credit")).toBe(true);
      expect(new Set(all.data.map((entry) => entry.payment))).toEqual(new Set(payments));
      const ids = all.data.map((entry) => entry.id);
      expect(ids.length).toBeGreaterThanOrEqual(4);
      const count = ids.length;
      const idsOf = (body: { data: { id: string }[]; has_more: boolean }) => [
        body.data.map((entry) => entry.id),
        body.has_more,
      ];

      expect(idsOf(await page(payee.id, { limit: 2 }))).toEqual([ids.slice(0, 2), true]);
      expect(idsOf(await page(payee.id, { limit: count - 2, starting_after: ids[1] }))).toEqual([
        ids.slice(2),
        false,
      ]);
      expect(idsOf(await page(payee.id, { limit: 2, ending_before: ids[count - 1] }))).toEqual([
        ids.slice(count - 3, count - 1),
        count > 3,
      ]);
      expect(idsOf(await page(payee.id, { ending_before: ids[1] }))).toEqual([[ids[0]], false]);

      const future = Math.floor(Date.now() / 1000) + 3600;
      expect(idsOf(await page(payee.id, { "created[gte]": future }))).toEqual([[], false]);
      expect((await page(payee.id, { "created[lt]": future, limit: 100 })).data.length).toBe(count);
      expect((await page(payee.id, { "created[lte]": 1_000_000_000 })).data).toEqual([]);

      // A transaction of another account as a cursor, or an id that is none: 400 naming the parameter.
      const key = (await createApiKey(gw.app.db, { tenantId, mode: "test" })).secret;
      const foreign = (await page(payer.id, {})).data.find((entry) => entry.kind === "payments.funding");
      for (const query of [
        `starting_after=${foreign!.id}`,
        `ending_before=txn_${"0".repeat(31)}1`,
        "starting_after=txn_123",
        `starting_after=${ids[0]}&ending_before=${ids[1]}`,
        "limit=0",
        "limit=101",
      ]) {
        const refused = await gw.call("GET", `/v1/accounts/${payee.id}/transactions?${query}`, { key });
        expect([query, refused.status, refused.body.error.code]).toEqual([query, 400, "parameter_invalid"]);
      }
    });
  });

  describe("a refund's transactions", () => {
    it("names the refund on the hold and the post that give the money back", async () => {
      const { tenantId, key, client } = await newTenant("Refunder");
      const payer = await createIn(client, { asset: "USDC", kind: "customer" });
      const payee = await createIn(client, { asset: "USDC", kind: "merchant" });
      await fund(tenantId, payer.id, 5_000_000n);
      const paid = await client.POST("/v1/payments", {
        body: {
          amount: "2.00",
          asset: "USDC",
          source: { account: payer.id },
          destination: { type: "account", account: payee.id },
        },
      });
      expect(paid.data?.status).toBe("succeeded");
      const refunded = await gw.call("POST", "/v1/refunds", {
        key,
        body: { payment: paid.data!.id, amount: "0.50" },
      });
      expect([refunded.status, refunded.body.status]).toEqual([201, "succeeded"]);
      const { data } = await client.GET("/v1/accounts/{id}/transactions", {
        params: { path: { id: payee.id } },
      });
      const back = data!.data.filter((entry) => entry.refund === refunded.body.id);
      expect(back.length).toBeGreaterThan(0);
      expect(back.every((entry) => entry.direction === "debit" && entry.amount === "0.500000")).toBe(true);
      expect(back.some((entry) => entry.status === "posted" && entry.phase !== "pending")).toBe(true);
      // The payment's own credit is still there, named by its payment.
      expect(
        data!.data.some((entry) => entry.payment === paid.data!.id && entry.direction === "credit"),
      ).toBe(true);
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
