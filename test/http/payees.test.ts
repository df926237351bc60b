// /v1/payees end to end, on PGlite and on PostgreSQL: create, retrieve, list, update; one tenant's payees hidden
// from another's key; every refusal with its stable code and nothing written; an Idempotency-Key replayed; the
// routes in the OpenAPI document; and payeeMethods, what payments will read.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RequestBody } from "../../client/index.ts";
import { getTenantAccount } from "../../gateway/accounts/index.ts";
import { ownedByGateway } from "../../gateway/http/resources/payees.ts";
import { createPayee, payeeMethods } from "../../gateway/payees/index.ts";
import { createApiKey, createTenant } from "../../gateway/tenants/index.ts";
import { errorOf, startTestGateway, type TestGateway } from "./support.ts";

const checksummed = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
/** The same address with one letter's case flipped: its checksum is wrong. */
const badChecksum = "0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
const pubkey = `02${"ab".repeat(32)}`;
const unknownPayee = "pye_01m7zfckv29pdrb3m0gz9e4j5g";

const validMethods = (): RequestBody<"/v1/payees", "post">["methods"] => [
  { type: "evm_address", address: checksummed.toLowerCase() },
  { type: "evm_address", address: checksummed, chain_id: 31337 },
  { type: "lightning_node", pubkey },
  { type: "lightning_address", address: "Alice@Pay.Example.com" },
  { type: "stripe_account", account: "acct_1Nv0FGQ9RKHgCVdK" },
  { type: "account", account: "acct_demo_merchant" },
];
const validBody = () => ({ name: "Alice", methods: validMethods(), metadata: { ref: "42" } });

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

  async function payeeCount(): Promise<bigint> {
    const [row] = await gw.app.db.query<{ count: bigint }>("SELECT count(*) AS count FROM payees");
    return row!.count;
  }

  /** A well-formed payee through the typed client, with the demo key or another. */
  function add(body: RequestBody<"/v1/payees", "post"> = validBody(), key: string = gw.key) {
    return gw.clientFor(key).POST("/v1/payees", { body });
  }

  /** Raw: for bodies the typed client would not send, and the Idempotency-Key cases. */
  async function create(
    body: unknown = validBody(),
    options: { key?: string; headers?: Record<string, string> } = {},
  ) {
    return gw.call("POST", "/v1/payees", { body, ...options });
  }

  describe("create, retrieve, update", () => {
    it("creates a payee with every kind of method, stored normalized, and retrieves it", async () => {
      const created = await add();
      expect(created.response.status).toBe(201);
      expect(created.data!).toEqual({
        id: expect.stringMatching(/^pye_[0-9a-z]{26}$/),
        object: "payee",
        name: "Alice",
        methods: [
          { type: "evm_address", address: checksummed, chain_id: null },
          { type: "evm_address", address: checksummed, chain_id: 31337 },
          { type: "lightning_node", pubkey },
          { type: "lightning_address", address: "alice@pay.example.com" },
          { type: "stripe_account", account: "acct_1Nv0FGQ9RKHgCVdK" },
          { type: "account", account: "acct_demo_merchant" },
        ],
        metadata: { ref: "42" },
        created_at: expect.any(String),
        updated_at: created.data!.created_at,
      });
      expect(Math.abs(Date.parse(created.data!.created_at) - Date.now())).toBeLessThan(60_000);
      const retrieved = await gw.client.GET("/v1/payees/{id}", {
        params: { path: { id: created.data!.id } },
      });
      expect(retrieved.response.status).toBe(200);
      expect(retrieved.data!).toEqual(created.data!);
    });

    it("takes metadata as optional, and a method as the API presents it (chain_id null)", async () => {
      const created = await add({
        name: "Bob",
        methods: [{ type: "evm_address", address: checksummed, chain_id: null }],
      });
      expect(created.response.status).toBe(201);
      expect(created.data!.metadata).toEqual({});
      expect(created.data!.methods).toEqual([{ type: "evm_address", address: checksummed, chain_id: null }]);
    });

    it("updates what is given, each field replaced whole, and keeps the rest", async () => {
      const created = (await add()).data!;
      const renamed = await gw.client.PATCH("/v1/payees/{id}", {
        params: { path: { id: created.id } },
        body: { name: "Alice B." },
      });
      expect(renamed.response.status).toBe(200);
      expect(renamed.data!).toMatchObject({ id: created.id, name: "Alice B.", methods: created.methods });
      expect(renamed.data!.metadata).toEqual({ ref: "42" });
      expect(Date.parse(renamed.data!.updated_at)).toBeGreaterThanOrEqual(Date.parse(created.updated_at));
      expect(renamed.data!.created_at).toBe(created.created_at);

      const replaced = await gw.client.PATCH("/v1/payees/{id}", {
        params: { path: { id: created.id } },
        body: { methods: [{ type: "lightning_node", pubkey }], metadata: { other: "x" } },
      });
      expect(replaced.response.status).toBe(200);
      expect(replaced.data!.methods).toEqual([{ type: "lightning_node", pubkey }]);
      expect(replaced.data!.metadata).toEqual({ other: "x" });
      expect(replaced.data!.name).toBe("Alice B.");
      expect(
        (await gw.client.GET("/v1/payees/{id}", { params: { path: { id: created.id } } })).data!,
      ).toEqual(replaced.data!);

      const unchanged = await gw.client.PATCH("/v1/payees/{id}", {
        params: { path: { id: created.id } },
        body: {},
      });
      expect(unchanged.response.status).toBe(200);
      expect({ ...unchanged.data!, updated_at: null }).toEqual({ ...replaced.data!, updated_at: null });
    });

    it("answers 404 for a payee that is not there, whatever methods the update names", async () => {
      const missing = await gw.client.PATCH("/v1/payees/{id}", {
        params: { path: { id: "pye_01m7zfckv29pdrb3m0gz9e4j5g" } },
        body: { methods: [{ type: "account", account: "acct_01m7zfckv29pdrb3m0gz9e4j5g" }] },
      });
      // Before: 400 account_not_found on methods.0.account, for a payee that does not exist.
      expect(missing.response.status).toBe(404);
      expect(missing.error).toMatchObject({ error: { code: "payee_not_found" } });
    });

    it("accepts the methods a retrieved payee presents as an update", async () => {
      const created = (await add()).data!;
      const again = await gw.client.PATCH("/v1/payees/{id}", {
        params: { path: { id: created.id } },
        body: { methods: created.methods },
      });
      expect(again.response.status).toBe(200);
      expect(again.data!.methods).toEqual(created.methods);
    });
  });

  describe("list", () => {
    it("lists a tenant's payees newest first, a page at a time", async () => {
      const tenant = await createTenant(gw.app.db, { name: "Lister" });
      const { secret } = await createApiKey(gw.app.db, { tenantId: tenant.id, mode: "test" });
      const deps = {
        sql: gw.app.db,
        accounts: {
          tenantAccount: (params: { tenantId: string; id: string }) => getTenantAccount(gw.app.db, params),
        },
        ownsDestination: ownedByGateway(gw.app.rails),
      };
      // Written a second apart, oldest first.
      const ids: string[] = [];
      for (const [index, name] of ["first", "second", "third"].entries()) {
        const result = await createPayee(
          { ...deps, nowMs: () => 1_800_000_000_000 + index * 1_000 },
          {
            tenantId: tenant.id,
            name,
            metadata: {},
            methods: [{ kind: "lightning_address", address: `${name}@example.com` }],
          },
        );
        if (!result.ok) throw new Error(result.message);
        ids.push(result.payee.id);
      }
      const all = await gw.clientFor(secret).GET("/v1/payees");
      expect(all.response.status).toBe(200);
      expect(all.data!.object).toBe("list");
      expect(all.data!.has_more).toBe(false);
      expect(all.data!.data.map((payee: { name: string }) => payee.name)).toEqual([
        "third",
        "second",
        "first",
      ]);
      expect(all.data!.data[0]!.created_at).toBe(new Date(1_800_000_002_000).toISOString());

      const first = await gw.clientFor(secret).GET("/v1/payees", { params: { query: { limit: 2 } } });
      expect(first.data!.data.map((payee: { id: string }) => payee.id)).toEqual([ids[2], ids[1]]);
      expect(first.data!.has_more).toBe(true);
      const second = await gw
        .clientFor(secret)
        .GET("/v1/payees", { params: { query: { limit: 2, starting_after: ids[1]! } } });
      expect(second.data!.data.map((payee: { id: string }) => payee.id)).toEqual([ids[0]]);
      expect(second.data!.has_more).toBe(false);
      const past = await gw
        .clientFor(secret)
        .GET("/v1/payees", { params: { query: { starting_after: ids[0]! } } });
      expect(past.data!).toEqual({ object: "list", url: "/v1/payees", data: [], has_more: false });
    });

    it("returns 10 when the request does not say, and 100 at most", async () => {
      const tenant = await createTenant(gw.app.db, { name: "Many" });
      const { secret } = await createApiKey(gw.app.db, { tenantId: tenant.id, mode: "test" });
      for (let index = 0; index < 12; index += 1) {
        const response = await add(
          { name: `p${index}`, methods: [{ type: "lightning_node", pubkey }] },
          secret,
        );
        expect(response.response.status).toBe(201);
      }
      const page = await gw.clientFor(secret).GET("/v1/payees");
      expect([page.data!.data.length, page.data!.has_more]).toEqual([10, true]);
      const full = await gw.clientFor(secret).GET("/v1/payees", { params: { query: { limit: 100 } } });
      expect([full.data!.data.length, full.data!.has_more]).toEqual([12, false]);
      const ids = full.data!.data.map((payee: { id: string }) => payee.id);
      expect(ids).toEqual([...ids].sort().reverse());
    });
  });

  describe("tenant scoping", () => {
    it("hides one tenant's payees from another tenant's key: not found, never forbidden", async () => {
      const mine = (await add()).data!;
      const read = await gw
        .clientFor(other.key)
        .GET("/v1/payees/{id}", { params: { path: { id: mine.id } } });
      expect([read.response.status, errorOf(read).code]).toEqual([404, "payee_not_found"]);
      const unknown = await gw
        .clientFor(other.key)
        .GET("/v1/payees/{id}", { params: { path: { id: unknownPayee } } });
      expect(unknown.error).toEqual({ error: { ...errorOf(read), message: `no payee "${unknownPayee}"` } });
      const write = await gw.clientFor(other.key).PATCH("/v1/payees/{id}", {
        params: { path: { id: mine.id } },
        body: { name: "Mallory" },
      });
      expect([write.response.status, errorOf(write).code]).toEqual([404, "payee_not_found"]);
      expect((await gw.client.GET("/v1/payees/{id}", { params: { path: { id: mine.id } } })).data!.name).toBe(
        "Alice",
      );
      const list = await gw.clientFor(other.key).GET("/v1/payees", { params: { query: { limit: 100 } } });
      expect(list.data!.data.map((payee: { id: string }) => payee.id)).not.toContain(mine.id);
      expect(await payeeMethods(gw.app.db, { tenantId: other.tenantId, id: mine.id })).toBeNull();
    });

    it("refuses an account method naming another tenant's account, as an account not found", async () => {
      const before = await payeeCount();
      const response = await create(
        { name: "Thief", methods: [{ type: "account", account: "acct_demo_customer" }] },
        { key: other.key },
      );
      expect(response.status).toBe(400);
      expect(response.body.error).toMatchObject({ code: "account_not_found", param: "methods.0.account" });
      expect(await payeeCount()).toBe(before);
    });
  });

  describe("refusals", () => {
    type Case = { name: string; body: unknown; status: number; code: string; param?: string };
    const method = (extra: object) => ({ name: "X", methods: [extra] });
    const createCases: Case[] = [
      {
        name: "a missing name",
        body: { methods: validMethods() },
        status: 400,
        code: "parameter_missing",
        param: "name",
      },
      {
        name: "an empty name",
        body: { ...validBody(), name: "" },
        status: 400,
        code: "parameter_invalid",
        param: "name",
      },
      {
        name: "a name too long",
        body: { ...validBody(), name: "n".repeat(257) },
        status: 400,
        code: "parameter_invalid",
        param: "name",
      },
      {
        name: "a name with a NUL",
        body: { ...validBody(), name: "A\u0000" },
        status: 400,
        code: "parameter_invalid",
        param: "name",
      },
      {
        name: "missing methods",
        body: { name: "X" },
        status: 400,
        code: "parameter_missing",
        param: "methods",
      },
      {
        name: "no methods",
        body: { name: "X", methods: [] },
        status: 400,
        code: "parameter_invalid",
        param: "methods",
      },
      {
        name: "17 methods",
        body: {
          name: "X",
          methods: Array.from({ length: 17 }, (_, i) => ({ type: "account", account: `acct_${i}` })),
        },
        status: 400,
        code: "parameter_invalid",
        param: "methods",
      },
      {
        name: "methods not a list",
        body: { name: "X", methods: {} },
        status: 400,
        code: "parameter_invalid",
        param: "methods",
      },
      {
        name: "an unknown method type",
        body: method({ type: "paypal", email: "a@b.c" }),
        status: 400,
        code: "parameter_invalid",
        param: "methods.0.type",
      },
      {
        name: "an unknown field in a method",
        body: method({ type: "lightning_node", pubkey, memo: "hi" }),
        status: 400,
        code: "parameter_unknown",
        param: "methods.0.memo",
      },
      {
        name: "an unknown field",
        body: { ...validBody(), email: "a@b.c" },
        status: 400,
        code: "parameter_unknown",
        param: "email",
      },
      {
        name: "an EVM address with a wrong checksum",
        body: method({ type: "evm_address", address: badChecksum }),
        status: 400,
        code: "parameter_invalid",
        param: "methods.0.address",
      },
      {
        name: "an EVM address too short",
        body: method({ type: "evm_address", address: checksummed.slice(0, 40) }),
        status: 400,
        code: "parameter_invalid",
        param: "methods.0.address",
      },
      {
        name: "a chain id of 0",
        body: method({ type: "evm_address", address: checksummed, chain_id: 0 }),
        status: 400,
        code: "parameter_invalid",
        param: "methods.0.chain_id",
      },
      {
        name: "a chain id as text",
        body: method({ type: "evm_address", address: checksummed, chain_id: "1" }),
        status: 400,
        code: "parameter_invalid",
        param: "methods.0.chain_id",
      },
      {
        name: "a chain id not whole",
        body: method({ type: "evm_address", address: checksummed, chain_id: 1.5 }),
        status: 400,
        code: "parameter_invalid",
        param: "methods.0.chain_id",
      },
      {
        name: "an uncompressed node key",
        body: method({ type: "lightning_node", pubkey: `04${"ab".repeat(32)}` }),
        status: 400,
        code: "parameter_invalid",
        param: "methods.0.pubkey",
      },
      {
        name: "a node key too short",
        body: method({ type: "lightning_node", pubkey: pubkey.slice(0, 64) }),
        status: 400,
        code: "parameter_invalid",
        param: "methods.0.pubkey",
      },
      {
        name: "a Lightning Address without a domain",
        body: method({ type: "lightning_address", address: "alice" }),
        status: 400,
        code: "parameter_invalid",
        param: "methods.0.address",
      },
      {
        name: "a Lightning Address with a bad domain",
        body: method({ type: "lightning_address", address: "alice@-bad-.com" }),
        status: 400,
        code: "parameter_invalid",
        param: "methods.0.address",
      },
      {
        name: "a Stripe account id not of its form",
        body: method({ type: "stripe_account", account: "ba_123" }),
        status: 400,
        code: "parameter_invalid",
        param: "methods.0.account",
      },
      {
        name: "an account id not of its form",
        body: method({ type: "account", account: "ACCT-1" }),
        status: 400,
        code: "parameter_invalid",
        param: "methods.0.account",
      },
      {
        name: "an account that does not exist",
        body: method({ type: "account", account: "acct_nobody" }),
        status: 400,
        code: "account_not_found",
        param: "methods.0.account",
      },
      {
        name: "the same address twice (lower case and checksummed)",
        body: {
          name: "X",
          methods: [
            { type: "evm_address", address: checksummed },
            { type: "lightning_node", pubkey },
            { type: "evm_address", address: checksummed.toLowerCase() },
          ],
        },
        status: 400,
        code: "payee_method_duplicate",
        param: "methods.2",
      },
      {
        name: "the same Lightning Address in another case",
        body: {
          name: "X",
          methods: [
            { type: "lightning_address", address: "bob@example.com" },
            { type: "lightning_address", address: "BOB@example.com" },
          ],
        },
        status: 400,
        code: "payee_method_duplicate",
        param: "methods.1",
      },
      {
        name: "too many metadata keys",
        body: {
          ...validBody(),
          metadata: Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`k${i}`, "v"])),
        },
        status: 400,
        code: "parameter_invalid",
        param: "metadata",
      },
      {
        name: "a metadata value with a NUL",
        body: { ...validBody(), metadata: { k: "v\u0000" } },
        status: 400,
        code: "parameter_invalid",
        param: "metadata.k",
      },
      {
        name: "a metadata value not text",
        body: { ...validBody(), metadata: { k: 1 } },
        status: 400,
        code: "parameter_invalid",
        param: "metadata.k",
      },
    ];

    it.each(createCases)("POST $name → $status $code", async (c) => {
      const before = await payeeCount();
      const response = await create(c.body);
      expect([response.status, response.body.error.code]).toEqual([c.status, c.code]);
      if (c.param !== undefined) expect(response.body.error.param).toBe(c.param);
      expect(typeof response.body.error.message).toBe("string");
      expect(await payeeCount()).toBe(before);
    });

    it("PATCH refuses the same way, and changes nothing", async () => {
      const payee = (await create()).body;
      const cases: Array<[body: unknown, status: number, code: string, param: string | undefined]> = [
        [{ methods: [] }, 400, "parameter_invalid", "methods"],
        [{ name: "" }, 400, "parameter_invalid", "name"],
        [{ name: null }, 400, "parameter_invalid", "name"],
        [{ nickname: "A" }, 400, "parameter_unknown", "nickname"],
        [
          { methods: [{ type: "evm_address", address: badChecksum }] },
          400,
          "parameter_invalid",
          "methods.0.address",
        ],
        [
          {
            methods: [
              { type: "lightning_node", pubkey },
              { type: "lightning_node", pubkey },
            ],
          },
          400,
          "payee_method_duplicate",
          "methods.1",
        ],
        [
          { methods: [{ type: "account", account: "acct_nobody" }] },
          400,
          "account_not_found",
          "methods.0.account",
        ],
      ];
      for (const [body, status, code, param] of cases) {
        const response = await gw.call("PATCH", `/v1/payees/${payee.id}`, { body });
        expect([body, response.status, response.body.error.code, response.body.error.param]).toEqual([
          body,
          status,
          code,
          param,
        ]);
      }
      expect((await gw.call("GET", `/v1/payees/${payee.id}`)).body).toEqual(payee);
    });

    it("GET and PATCH of an unknown or malformed id: 404 payee_not_found, 400 parameter_invalid", async () => {
      for (const method of ["GET", "PATCH"] as const) {
        const body = method === "PATCH" ? { name: "Y" } : undefined;
        const unknown = await gw.call(method, `/v1/payees/${unknownPayee}`, { body });
        expect([method, unknown.status, unknown.body.error.code]).toEqual([method, 404, "payee_not_found"]);
        const malformed = await gw.call(method, "/v1/payees/pay_01m7zfckv29pdrb3m0gz9e4j5g", { body });
        expect([method, malformed.status, malformed.body.error.code]).toEqual([
          method,
          400,
          "parameter_invalid",
        ]);
      }
    });

    it("a list's bad parameters: 400 with the parameter named", async () => {
      for (const [query, code, param] of [
        ["limit=0", "parameter_invalid", "limit"],
        ["limit=101", "parameter_invalid", "limit"],
        ["limit=ten", "parameter_invalid", "limit"],
        ["limit=2.5", "parameter_invalid", "limit"],
        ["starting_after=pay_01m7zfckv29pdrb3m0gz9e4j5g", "parameter_invalid", "starting_after"],
        ["order=asc", "parameter_unknown", "order"],
      ] as const) {
        const response = await gw.call("GET", `/v1/payees?${query}`);
        expect([query, response.status, response.body.error.code, response.body.error.param]).toEqual([
          query,
          400,
          code,
          param,
        ]);
      }
    });
  });

  describe("Idempotency-Key", () => {
    it("answers a repeated create with the first answer and writes one payee; another body with the key is refused", async () => {
      const before = await payeeCount();
      const headers = { "idempotency-key": `payee-${database}-1` };
      const first = await create(validBody(), { headers });
      expect(first.status).toBe(201);
      const again = await create(validBody(), { headers });
      expect(again.status).toBe(201);
      expect(again.headers["idempotent-replayed"]).toBe("true");
      expect(again.body).toEqual(first.body);
      expect(await payeeCount()).toBe(before + 1n);
      const reused = await create({ ...validBody(), name: "Someone else" }, { headers });
      expect([reused.status, reused.body.error.code]).toEqual([409, "idempotency_key_reused"]);
      // The key is the tenant's: another tenant's same key is a request of its own.
      const theirs = await create(
        { name: "Theirs", methods: [{ type: "lightning_node", pubkey }] },
        { headers, key: other.key },
      );
      expect(theirs.status).toBe(201);
      expect(theirs.body.id).not.toBe(first.body.id);
      expect(await payeeCount()).toBe(before + 2n);
    });

    it("does not keep a missing account's refusal (a 400) as the answer to its key: corrected, the request is made under it", async () => {
      const headers = { "idempotency-key": `payee-${database}-2` };
      const body = { name: "X", methods: [{ type: "account", account: "acct_nobody" }] };
      const first = await create(body, { headers });
      expect([first.status, first.body.error?.code]).toEqual([400, "account_not_found"]);
      const again = await create(body, { headers });
      expect([again.status, again.headers["idempotent-replayed"]]).toEqual([400, undefined]);
      const corrected = await create(
        { name: "X", methods: [{ type: "lightning_node", pubkey }] },
        { headers },
      );
      expect([corrected.status, corrected.headers["idempotent-replayed"]]).toEqual([201, undefined]);
    });
  });

  describe("payeeMethods", () => {
    it("returns the methods as core destinations, and the Lightning Addresses apart, in order", async () => {
      const payee = (await create()).body;
      const demoTenant = "ten_demo";
      expect(await payeeMethods(gw.app.db, { tenantId: demoTenant, id: payee.id })).toEqual({
        destinations: [
          { kind: "evm_address", address: checksummed },
          { kind: "evm_address", address: checksummed, chainId: 31337 },
          { kind: "lightning_node", pubkey },
          { kind: "lightning_address", address: "alice@pay.example.com" },
          { kind: "stripe_account", accountId: "acct_1Nv0FGQ9RKHgCVdK" },
          { kind: "account", accountId: "acct_demo_merchant" },
        ],
        lightningAddresses: ["alice@pay.example.com"],
      });
      expect(await payeeMethods(gw.app.db, { tenantId: demoTenant, id: unknownPayee })).toBeNull();
    });
  });

  describe("the OpenAPI document", () => {
    it("lists the payee routes with their request and response schemas", async () => {
      const document = await gw.call("GET", "/openapi.json", { key: null });
      expect(document.status).toBe(200);
      const paths = document.body.paths;
      expect(Object.keys(paths["/v1/payees"]).sort()).toEqual(["get", "post"]);
      expect(Object.keys(paths["/v1/payees/{id}"]).sort()).toEqual(["get", "patch"]);
      const createOp = paths["/v1/payees"].post;
      expect(createOp.security).toEqual([{ apiKey: ["accounts"] }]); // the scope it needs (auth.ts)
      expect(createOp.requestBody.content["application/json"].schema.required).toEqual(
        expect.arrayContaining(["name", "methods"]),
      );
      expect(Object.keys(createOp.responses)).toEqual(expect.arrayContaining(["201", "4XX"]));
      const listParams = paths["/v1/payees"].get.parameters.map(
        (p: { in: string; name: string }) => `${p.in} ${p.name}`,
      );
      expect(listParams.sort()).toEqual([
        "query created",
        "query created[gt]",
        "query created[gte]",
        "query created[lt]",
        "query created[lte]",
        "query ending_before",
        "query limit",
        "query starting_after",
      ]);
      expect(Object.keys(paths["/v1/payees/{id}"].patch.responses)).toEqual(
        expect.arrayContaining(["200", "4XX"]),
      );
    });
  });
});
