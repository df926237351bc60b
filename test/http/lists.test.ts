// The list convention on every collection, through the typed client, on PGlite and on PostgreSQL: newest first,
// pages both ways with an exact has_more, created[…] by whole second, status filters, expand[]=data.attempts,
// limit bounds, a cursor that is not the tenant's refused, and one tenant's objects in no other tenant's list.
// Queries the client's types would not send (limit=x, an unknown parameter) go raw.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SwitchyardClient } from "../../client/index.ts";
import { assets } from "../../core/index.ts";
import { getClearingAccount, getTenantAccount } from "../../gateway/accounts/index.ts";
import { derivedLedgerId } from "../../gateway/ids/index.ts";
import { credit, transferCodes } from "../../gateway/ledger/index.ts";
import { createApiKey, createTenant } from "../../gateway/tenants/index.ts";
import { buildBareServer } from "../support/bare-server.ts";
import { noteStatements } from "../support/recording-db.ts";
import { startTestGateway, type TestGateway } from "./support.ts";

type Listed = { id: string };
const idsOf = (body: { data: Listed[] }) => body.data.map((item) => item.id);

describe.each(["pglite", "postgres"] as const)("on %s", (database) => {
  let gw: TestGateway;
  /** A tenant of its own, with a funded USDC customer account and a merchant account. */
  let tenant: { id: string; key: string; client: SwitchyardClient; payer: string; payee: string };
  let other: { id: string; key: string; client: SwitchyardClient };

  async function newTenant(name: string) {
    const created = await createTenant(gw.app.db, { name });
    const key = (await createApiKey(gw.app.db, { tenantId: created.id, mode: "test" })).secret;
    return { id: created.id, key, client: gw.clientFor(key) };
  }

  /** A tenant of its own with a customer account funded with 100 USDC, and a merchant account. */
  async function fundedTenant(name: string) {
    const made = await newTenant(name);
    const account = async (kind: "customer" | "merchant") =>
      (await made.client.POST("/v1/accounts", { body: { asset: "USDC", kind } })).data!.id;
    const own = { ...made, payer: await account("customer"), payee: await account("merchant") };
    const payer = await getTenantAccount(gw.app.db, { tenantId: own.id, id: own.payer });
    const clearing = await getClearingAccount(gw.app.db, { rail: "evm", asset: assets.USDC });
    const funded = await credit(
      gw.app.ledger,
      {
        debitAccountId: clearing!.ledgerAccountId,
        creditAccountId: payer!.ledgerAccountId,
        amount: 100_000_000n,
        ledger: assets.USDC.ledger,
        code: transferCodes.payments.funding,
      },
      { id: derivedLedgerId(own.payer, "test-funding"), label: "test funding" },
    );
    expect(funded).toBe("credited");
    return own;
  }

  /**
   * The gateway's own routes over a database that notes each statement whose text `counted` matches (the key's
   * lookup and the tenant's are not counted), and `read(url, key)`: a GET's body and the statements it cost.
   */
  async function countingServer(counted: RegExp) {
    const statements: string[] = [];
    const server = await buildBareServer([], {
      db: noteStatements(gw.app.db, (texts) =>
        statements.push(...texts.filter((text) => counted.test(text))),
      ),
    });
    const read = async (url: string, key: string) => {
      statements.length = 0;
      const response = await server.inject({
        method: "GET",
        url,
        headers: { authorization: `Bearer ${key}` },
      });
      expect(response.statusCode).toBe(200);
      return {
        body: response.json() as { data: (Listed & Record<string, unknown>)[]; has_more: boolean },
        statements: statements.length,
      };
    };
    return { server, read };
  }

  beforeAll(async () => {
    gw = await startTestGateway({ database });
    tenant = await fundedTenant("Lists");
    other = await newTenant("Other");
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  const pay = async () => {
    const { data, response } = await tenant.client.POST("/v1/payments", {
      body: {
        amount: "1.00",
        asset: "USDC",
        source: { account: tenant.payer },
        destination: { type: "account", account: tenant.payee },
      },
    });
    expect([response.status, data?.status]).toEqual([201, "succeeded"]);
    return data!.id;
  };
  /** A raw GET, for the queries the typed client would not send. */
  const list = (path: string, key = tenant.key) => gw.call("GET", path, { key });
  type PaymentsQuery = {
    limit?: number;
    starting_after?: string;
    ending_before?: string;
    created?: number;
    "created[gte]"?: number;
    "created[gt]"?: number;
    "created[lte]"?: number;
    "created[lt]"?: number;
    status?: "processing" | "succeeded" | "failed";
    "expand[]"?: "data.attempts" | "data.attempts"[];
  };
  const payments = async (query: PaymentsQuery, client = tenant.client) => {
    const { data, response } = await client.GET("/v1/payments", { params: { query } });
    expect(response.status).toBe(200);
    return data!;
  };
  const page = (body: { data: Listed[]; has_more: boolean }) => [idsOf(body), body.has_more];

  describe("payments", () => {
    let ids: string[];
    beforeAll(async () => {
      ids = [];
      for (let index = 0; index < 5; index += 1) ids.unshift(await pay());
      // Creation times a second apart and more, set by hand, so that created[…] has edges to test.
      for (const [index, id] of ids.entries())
        await gw.app.db.query("UPDATE payments SET created_at = to_timestamp($2) WHERE id = $1", [
          id,
          2_000_000_000 - index * 10 + 0.5,
        ]);
    });

    it("lists newest first, attempts only when expanded", async () => {
      const all = await payments({});
      expect(all).toMatchObject({ object: "list", url: "/v1/payments", has_more: false });
      expect(idsOf(all)).toEqual(ids);
      expect(all.data[0]).not.toHaveProperty("attempts");
      expect(all.data[0]).toMatchObject({ object: "payment", status: "succeeded", amount: "1.000000" });
      const expanded = await payments({ "expand[]": "data.attempts" });
      expect(expanded.data[0]!.attempts).toEqual([
        expect.objectContaining({ rail: "internal-usdc", status: "succeeded" }),
      ]);
      const one = await tenant.client.GET("/v1/payments/{id}", { params: { path: { id: ids[0]! } } });
      expect(expanded.data[0]).toEqual(one.data);
      const twice = await payments({ "expand[]": ["data.attempts", "data.attempts"], limit: 1 });
      expect(twice.data[0]!.attempts).toHaveLength(1);
    });

    it("pages both ways, has_more exact at every edge", async () => {
      expect(page(await payments({ limit: 2 }))).toEqual([ids.slice(0, 2), true]);
      expect(page(await payments({ limit: 2, starting_after: ids[1] }))).toEqual([ids.slice(2, 4), true]);
      expect(page(await payments({ limit: 2, starting_after: ids[3] }))).toEqual([[ids[4]], false]);
      expect(page(await payments({ limit: 3, starting_after: ids[1] }))).toEqual([ids.slice(2), false]);
      expect(page(await payments({ starting_after: ids[4] }))).toEqual([[], false]);

      expect(page(await payments({ limit: 2, ending_before: ids[4] }))).toEqual([ids.slice(2, 4), true]);
      expect(page(await payments({ limit: 2, ending_before: ids[2] }))).toEqual([ids.slice(0, 2), false]);
      expect(page(await payments({ ending_before: ids[0] }))).toEqual([[], false]);
    });

    it("filters by creation time in whole seconds, and by status", async () => {
      // ids[i] was created at 2,000,000,000 − 10·i + 0.5 s.
      const at = (index: number) => 2_000_000_000 - index * 10;
      for (const [query, expected] of [
        [{ "created[gte]": at(2) }, ids.slice(0, 3)],
        [{ "created[gt]": at(2) }, ids.slice(0, 2)],
        [{ "created[lte]": at(2) }, ids.slice(2)],
        [{ "created[lt]": at(2) }, ids.slice(3)],
        [{ created: at(2) }, [ids[2]]],
        [{ "created[gte]": at(3), "created[lte]": at(1) }, ids.slice(1, 4)],
        [{ "created[gte]": at(0) + 1 }, []],
        [{ "created[gte]": at(3), limit: 1, starting_after: ids[1] }, [ids[2]]],
        [{ status: "succeeded" }, ids],
        [{ status: "failed" }, []],
        [{ status: "processing" }, []],
      ] as const satisfies readonly (readonly [PaymentsQuery, readonly (string | undefined)[]])[]) {
        expect([query, idsOf(await payments(query))]).toEqual([query, expected]);
      }
    });

    it("refuses bad parameters with 400 naming them", async () => {
      for (const [query, code, param] of [
        ["limit=0", "parameter_invalid", "limit"],
        ["limit=101", "parameter_invalid", "limit"],
        ["limit=x", "parameter_invalid", "limit"],
        [`starting_after=${ids[0]}&ending_before=${ids[1]}`, "parameter_invalid", "ending_before"],
        ["starting_after=pay_01m7zfckv29pdrb3m0gz9e4j5g", "parameter_invalid", "starting_after"],
        ["ending_before=pay_01m7zfckv29pdrb3m0gz9e4j5g", "parameter_invalid", "ending_before"],
        ["starting_after=inv_01m7zfckv29pdrb3m0gz9e4j5g", "parameter_invalid", "starting_after"],
        ["status=paid", "parameter_invalid", "status"],
        ["expand[]=data.route", "parameter_invalid", "expand[]"],
        ["created[gte]=-1", "parameter_invalid", "created[gte]"],
        // Whole seconds in decimal digits: an empty value is not 0, nor 1e9 a billion, nor 0x10 sixteen.
        ["created[lt]=", "parameter_invalid", "created[lt]"],
        ["created=", "parameter_invalid", "created"],
        ["created[gte]=1e9", "parameter_invalid", "created[gte]"],
        ["created[lte]=0x10", "parameter_invalid", "created[lte]"],
        ["created[gt]=%2012", "parameter_invalid", "created[gt]"],
        ["limit=", "parameter_invalid", "limit"],
        ["limit=1e1", "parameter_invalid", "limit"],
        ["created[after]=1", "parameter_unknown", "created[after]"],
        ["order=asc", "parameter_unknown", "order"],
      ] as const) {
        const response = await list(`/v1/payments?${query}`);
        expect([query, response.status, response.body.error?.code, response.body.error?.param]).toEqual([
          query,
          400,
          code,
          param,
        ]);
      }
      const hundred = await list("/v1/payments?limit=100");
      expect(hundred.status).toBe(200);
    });

    it("documents an account's transaction cursors as the shape it checks (txn_ and 32 hex digits)", async () => {
      // The shape was checked after the schema, whose document said `txn_[0-9a-z_]{1,64}`: a fuzzer's `txn_0`
      // followed the document and was refused.
      const document = await gw.call("GET", "/openapi.json", { key: null });
      const operation = document.body.paths["/v1/accounts/{id}/transactions"].get as {
        parameters: { name: string; schema: { pattern: string } }[];
      };
      for (const name of ["starting_after", "ending_before"]) {
        const pattern = new RegExp(operation.parameters.find((p) => p.name === name)!.schema.pattern);
        for (const value of [
          "txn_0",
          `txn_${"0".repeat(32)}`,
          `txn_${"a".repeat(31)}`,
          `txn_${"A".repeat(32)}`,
        ]) {
          const response = await list(`/v1/accounts/${tenant.payer}/transactions?${name}=${value}`);
          const shapeRefused = /txn_ and 32 hex digits/.test(response.body.error?.message ?? "");
          expect([name, value, pattern.test(value)]).toEqual([name, value, !shapeRefused]);
        }
      }
    });

    it("shows another tenant nothing, and refuses a payment of this one as its cursor", async () => {
      expect(idsOf(await payments({ limit: 100 }, other.client))).toEqual([]);
      const cursor = await other.client.GET("/v1/payments", {
        params: { query: { starting_after: ids[0] } },
      });
      expect([cursor.response.status, cursor.error?.error.code, cursor.error?.error.param]).toEqual([
        400,
        "parameter_invalid",
        "starting_after",
      ]);
      const unknown = await other.client.GET("/v1/payments", {
        params: { query: { starting_after: "pay_01m7zfckv29pdrb3m0gz9e4j5g" } },
      });
      expect(unknown.error?.error.message.replace(/"[^"]*"/, "")).toBe(
        cursor.error?.error.message.replace(/"[^"]*"/, ""),
      );
    });

    it("reads a page of payments in one statement, and its attempts in one more, however many it holds", async () => {
      const own = await fundedTenant("Payment page");
      const pay = async (
        destination: { type: "account"; account: string } | { type: "evm_address"; address: string },
      ) => {
        const { data, response } = await own.client.POST("/v1/payments", {
          body: { amount: "1.00", asset: "USDC", source: { account: own.payer }, destination },
        });
        expect([response.status, data?.status]).toEqual([201, "succeeded"]);
        return data!.id;
      };
      // Internal payments (no attempt row, a decision shared by its digest) and EVM ones (attempt rows, the decision
      // kept with the payment); creation times set by hand, a second apart, for an order the clock does not decide.
      const made: string[] = [];
      for (let index = 0; index < 12; index += 1)
        made.unshift(
          await pay(
            index % 4 === 1
              ? { type: "evm_address", address: gw.app.demo!.payee! }
              : { type: "account", account: own.payee },
          ),
        );
      for (const [index, id] of made.entries())
        await gw.app.db.query("UPDATE payments SET created_at = to_timestamp($2) WHERE id = $1", [
          id,
          1_950_000_000 - index,
        ]);
      // An EVM payment of the first page with two attempts, the first failed, their rows written in the other order
      // (as a read in the table's order would list them).
      const evm = made[6]!;
      expect((await own.client.GET("/v1/payments/{id}", { params: { path: { id: evm } } })).data!.rail).toBe(
        "evm",
      );
      await gw.app.db.query("UPDATE attempts SET seq = 1 WHERE payment_id = $1 AND seq = 0", [evm]);
      await gw.app.db.query(
        `INSERT INTO attempts (id, payment_id, seq, rail, status, amount, fee_max, reserve_transfer_id, failure_code,
           failure_message)
         SELECT 'att_page' || $2, payment_id, 0, rail, 'failed', amount, fee_max, reserve_transfer_id + 1,
           'rail_unavailable', 'paged'
         FROM attempts WHERE payment_id = $1 AND seq = 1`,
        [evm, database],
      );
      const { server, read } = await countingServer(/\b(payments|attempts)\b/);
      try {
        const list = (query: string) => read(`/v1/payments?${query}`, own.key);
        const first = await list("limit=10");
        expect([idsOf(first.body), first.body.has_more]).toEqual([made.slice(0, 10), true]);
        // The page's own: its rows whole, attempts not asked. Before, each payment of the page was read again by its
        // id, and its attempts: 21 here.
        expect(first.statements).toBe(1);
        const expanded = await list("limit=10&expand[]=data.attempts");
        expect([idsOf(expanded.body), expanded.statements]).toEqual([made.slice(0, 10), 2]);
        expect(expanded.body.data.find((item) => item.id === evm)!.attempts).toEqual([
          expect.objectContaining({ status: "failed" }),
          expect.objectContaining({ status: "succeeded" }),
        ]);
        // A cursor is checked by a statement of its own; a filter costs none.
        const next = await list(`limit=10&starting_after=${made[9]}&expand[]=data.attempts`);
        expect([idsOf(next.body), next.statements]).toEqual([made.slice(10), 3]);
        const succeeded = await list("status=succeeded&limit=100&expand[]=data.attempts");
        expect([idsOf(succeeded.body), succeeded.statements]).toEqual([made, 2]);
        // Each item as GET /v1/payments/:id answers it, without its attempts unless they were asked.
        for (const [index, item] of [...expanded.body.data, ...next.body.data].entries()) {
          const one = await own.client.GET("/v1/payments/{id}", { params: { path: { id: item.id } } });
          expect(item).toEqual(one.data);
          if (index >= first.body.data.length) continue;
          const { attempts: _omitted, ...rest } = one.data!;
          expect(first.body.data[index]).toEqual(rest);
        }
      } finally {
        await server.close();
      }
    });
  });

  describe("the other collections", () => {
    it("lists invoices by status", async () => {
      // No rail takes invoices in the default test gateway: rows as the invoices service writes them.
      const made: string[] = [];
      for (const [index, status] of ["open", "paid", "open"].entries()) {
        const id = `inv_list${database}${index}`;
        await gw.app.db.query(
          `INSERT INTO invoices (id, tenant_id, account_id, asset, amount, rail, status, description, created_at)
           VALUES ($1, $2, $3, 'USDC', 1000000, 'evm', $4, 'listed', to_timestamp($5))`,
          [id, tenant.id, tenant.payee, status, 1_900_000_000 + index],
        );
        made.unshift(id);
      }
      const invoices = async (
        query: { status?: "open" | "paid" | "reversed"; ending_before?: string; limit?: number },
        client = tenant.client,
      ) => (await client.GET("/v1/invoices", { params: { query } })).data!;
      const all = await invoices({});
      expect([idsOf(all), all.url]).toEqual([made, "/v1/invoices"]);
      expect(all.data[0]).toMatchObject({ object: "invoice", status: "open", amount: "1.000000" });
      const one = await tenant.client.GET("/v1/invoices/{id}", { params: { path: { id: made[0]! } } });
      expect(all.data[0]).toEqual(one.data);
      expect(idsOf(await invoices({ status: "open" }))).toEqual([made[0], made[2]]);
      expect(idsOf(await invoices({ status: "paid" }))).toEqual([made[1]]);
      expect(idsOf(await invoices({ ending_before: made[2], limit: 1 }))).toEqual([made[1]]);
      expect((await list("/v1/invoices?status=succeeded")).status).toBe(400);
      expect(idsOf(await invoices({}, other.client))).toEqual([]);
    });

    it("reads a page of invoices in one statement, however many it holds", async () => {
      const tenantOwn = await newTenant("Invoice page");
      const account = (
        await tenantOwn.client.POST("/v1/accounts", { body: { asset: "USDC", kind: "merchant" } })
      ).data!.id;
      const made: string[] = [];
      for (let index = 0; index < 12; index += 1) {
        const id = `inv_page${database}${index}`;
        await gw.app.db.query(
          `INSERT INTO invoices (id, tenant_id, account_id, asset, amount, rail, status, description, created_at)
           VALUES ($1, $2, $3, 'USDC', $4, 'evm', $5, 'paged', to_timestamp($6))`,
          [
            id,
            tenantOwn.id,
            account,
            1_000_000 + index,
            index % 3 === 1 ? "paid" : "open",
            1_900_000_100 + index,
          ],
        );
        made.unshift(id);
      }
      const { server, read: readCounted } = await countingServer(/invoices/);
      try {
        const read = (query: string) => readCounted(`/v1/invoices?${query}`, tenantOwn.key);
        const first = await read("limit=10");
        expect([idsOf(first.body), first.body.has_more]).toEqual([made.slice(0, 10), true]);
        // The page's own: its rows whole. Before, each invoice of the page was read again by its id: 11 here.
        expect(first.statements).toBe(1);
        // A cursor is checked by a statement of its own; a filter costs none.
        const next = await read(`limit=10&starting_after=${made[9]}`);
        expect([idsOf(next.body), next.statements]).toEqual([made.slice(10), 2]);
        const open = await read("status=open&limit=100");
        expect([open.body.data.length, open.statements]).toEqual([8, 1]);
        // Each item as GET /v1/invoices/:id answers it.
        for (const item of [...first.body.data, ...next.body.data]) {
          const one = await tenantOwn.client.GET("/v1/invoices/{id}", { params: { path: { id: item.id } } });
          expect(item).toEqual(one.data);
        }
      } finally {
        await server.close();
      }
    });

    it("lists quotes", async () => {
      const made: string[] = [];
      for (let index = 0; index < 3; index += 1) {
        const quote = await tenant.client.POST("/v1/quotes", {
          body: {
            amount: "1.00",
            asset: "USDC",
            destination: { type: "evm_address", address: gw.app.demo!.payee! },
          },
        });
        expect(quote.response.status).toBe(201);
        made.unshift(quote.data!.id);
        await gw.app.db.query("UPDATE quotes SET created_at = to_timestamp($2) WHERE id = $1", [
          quote.data!.id,
          1_900_000_000 + index,
        ]);
      }
      const quotes = async (query: { limit?: number; starting_after?: string }, client = tenant.client) =>
        (await client.GET("/v1/quotes", { params: { query } })).data!;
      const all = await quotes({ limit: 2 });
      expect([...page(all), all.url]).toEqual([made.slice(0, 2), true, "/v1/quotes"]);
      expect(all.data[0]).toMatchObject({ object: "quote", asset: "USDC", amount: "1.000000" });
      expect(page(await quotes({ starting_after: made[1] }))).toEqual([[made[2]], false]);
      expect(idsOf(await quotes({}, other.client))).toEqual([]);
    });

    it("lists webhook endpoints without their secrets", async () => {
      const made: string[] = [];
      for (let index = 0; index < 2; index += 1) {
        const endpoint = await tenant.client.POST("/v1/webhook_endpoints", {
          body: { url: `https://example.com/hooks/${index}` },
        });
        expect(endpoint.response.status).toBe(201);
        made.unshift(endpoint.data!.id);
        await gw.app.db.query("UPDATE webhook_endpoints SET created_at = to_timestamp($2) WHERE id = $1", [
          endpoint.data!.id,
          1_900_000_000 + index,
        ]);
      }
      const all = await tenant.client.GET("/v1/webhook_endpoints");
      expect(all.data).toEqual({
        object: "list",
        url: "/v1/webhook_endpoints",
        data: [
          {
            id: made[0],
            object: "webhook_endpoint",
            url: "https://example.com/hooks/1",
            description: null,
            enabled: true,
            enabled_events: ["*"],
            previous_secret_expires_at: null,
            created_at: new Date(1_900_000_001_000).toISOString(),
            updated_at: expect.any(String),
          },
          {
            id: made[1],
            object: "webhook_endpoint",
            url: "https://example.com/hooks/0",
            description: null,
            enabled: true,
            enabled_events: ["*"],
            previous_secret_expires_at: null,
            created_at: new Date(1_900_000_000_000).toISOString(),
            updated_at: expect.any(String),
          },
        ],
        has_more: false,
      });
      expect(idsOf((await other.client.GET("/v1/webhook_endpoints")).data!)).toEqual([]);
      const cursor = await other.client.GET("/v1/webhook_endpoints", {
        params: { query: { starting_after: made[0] } },
      });
      expect([cursor.response.status, cursor.error?.error.param]).toEqual([400, "starting_after"]);
    });

    it("lists payees on the same convention", async () => {
      const made: string[] = [];
      for (const name of ["a", "b", "c"]) {
        const payee = await tenant.client.POST("/v1/payees", {
          body: { name, methods: [{ type: "account", account: tenant.payee }] },
        });
        expect(payee.response.status).toBe(201);
        made.unshift(payee.data!.id);
      }
      const back = await tenant.client.GET("/v1/payees", {
        params: { query: { ending_before: made[2], limit: 1 } },
      });
      expect([...page(back.data!), back.data!.url]).toEqual([[made[1]], true, "/v1/payees"]);
      const cursor = await other.client.GET("/v1/payees", { params: { query: { starting_after: made[0] } } });
      expect([cursor.response.status, cursor.error?.error.param]).toEqual([400, "starting_after"]);
      for (const path of [
        "/v1/invoices",
        "/v1/quotes",
        "/v1/webhook_endpoints",
        "/v1/payees",
        "/v1/accounts",
      ])
        for (const query of ["limit=0", "limit=101"]) {
          const response = await list(`${path}?${query}`);
          expect([path, query, response.status, response.body.error.param]).toEqual([
            path,
            query,
            400,
            "limit",
          ]);
        }
    });

    it("reads a page of payees in one statement, methods and all, however many it holds", async () => {
      const own = await fundedTenant("Payee page");
      const made: string[] = [];
      for (let index = 0; index < 12; index += 1) {
        const methods = [
          { type: "account" as const, account: own.payee },
          ...(index % 3 === 0 ? [{ type: "evm_address" as const, address: gw.app.demo!.payee! }] : []),
        ];
        const payee = await own.client.POST("/v1/payees", {
          body: { name: `payee ${index}`, methods, metadata: { index: String(index) } },
        });
        expect(payee.response.status).toBe(201);
        made.unshift(payee.data!.id);
      }
      // Creation times set by hand, a second apart, for an order the clock does not decide.
      for (const [index, id] of made.entries())
        await gw.app.db.query("UPDATE payees SET created_at = to_timestamp($2) WHERE id = $1", [
          id,
          1_950_000_000 - index,
        ]);
      const { server, read } = await countingServer(/payees/);
      try {
        const first = await read("/v1/payees?limit=10", own.key);
        expect([idsOf(first.body), first.body.has_more]).toEqual([made.slice(0, 10), true]);
        // The page's own: its rows whole. Before, each payee of the page was read again by its id: 11 here.
        expect(first.statements).toBe(1);
        // A cursor is checked by a statement of its own.
        const next = await read(`/v1/payees?limit=10&starting_after=${made[9]}`, own.key);
        expect([idsOf(next.body), next.statements]).toEqual([made.slice(10), 2]);
        const all = await read("/v1/payees?limit=100", own.key);
        expect([idsOf(all.body), all.statements]).toEqual([made, 1]);
        // Each item as GET /v1/payees/:id answers it.
        for (const item of [...first.body.data, ...next.body.data]) {
          const one = await own.client.GET("/v1/payees/{id}", { params: { path: { id: item.id } } });
          expect(item).toEqual(one.data);
        }
      } finally {
        await server.close();
      }
    });
  });
});
