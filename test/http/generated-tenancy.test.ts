// Cross-tenant isolation, generated from the OpenAPI document the gateway serves: for every operation whose path
// names an object, tenant B's key against tenant A's object answers 404 with the object's not-found code and
// writes nothing (every table's rows are the same after); for every list, B's page holds none of A's ids. A new
// route is covered without a line here — unless its path names an object of a kind no fixture below makes, or
// its body has required fields no sample below gives: then this test fails and says which to add.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SwitchyardClient } from "../../client/index.ts";
import { createApiKey, createTenant } from "../../gateway/tenants/index.ts";
import { fanOutEvents, webhookLimitsDefault } from "../../gateway/webhooks/index.ts";
import { createToyRail } from "../support/toy-rail-module.ts";
import {
  bodySampleFor,
  type DocumentOperation,
  idPrefixOfParameter,
  isOperatorOnly,
  keyedOperationsOf,
  listOperations,
  pathParameters,
  sendOperation,
  servedOpenApi,
} from "./generated-support.ts";
import { startTestGateway, type TestGateway } from "./support.ts";

const document = await servedOpenApi();
const operations = keyedOperationsOf(document);
const objectOperations = operations.filter((op) => pathParameters(op).length > 0 && !isOperatorOnly(op));
const lists = listOperations(operations).filter((op) => !isOperatorOnly(op));

/** A's objects, by the prefix of their ids: each makes one with A's typed client and returns its id. */
type Fixture = (a: SwitchyardClient, gw: TestGateway) => Promise<string>;

function created<T extends { id: string }>(result: {
  data?: T;
  error?: unknown;
  response: Response;
}): string {
  if (result.data === undefined)
    throw new Error(`fixture refused: ${result.response.status} ${JSON.stringify(result.error)}`);
  return result.data.id;
}

const fixtures: Record<string, Fixture> = {
  acct: async (a) =>
    created(await a.POST("/v1/accounts", { body: { asset: "USDC", kind: "customer", name: "A's" } })),
  pay: async (a, gw) =>
    created(
      await a.POST("/v1/payments", {
        body: {
          amount: "0.01",
          asset: "USDC",
          source: { account: gw.app.demo!.customer.id },
          destination: { type: "account", account: gw.app.demo!.merchant.id },
        },
      }),
    ),
  quo: async (a, gw) =>
    created(
      await a.POST("/v1/quotes", {
        body: {
          amount: "0.01",
          asset: "USDC",
          destination: { type: "account", account: gw.app.demo!.merchant.id },
        },
      }),
    ),
  inv: async (a, gw) =>
    created(
      await a.POST("/v1/invoices", {
        body: { account: gw.app.demo!.merchant.id, amount: "1", asset: "USDC", rail: "toy" },
      }),
    ),
  pye: async (a) =>
    created(
      await a.POST("/v1/payees", {
        body: { name: "A's payee", methods: [{ type: "evm_address", address: `0x${"11".repeat(20)}` }] },
      }),
    ),
  we: async (a) => created(await a.POST("/v1/webhook_endpoints", { body: { url: "https://example.com/a" } })),
  rfd: async (a, gw) =>
    created(await a.POST("/v1/refunds", { body: { payment: await fixtures.pay!(a, gw), amount: "0.01" } })),
  key: async (a) => created(await a.POST("/v1/api_keys", { body: { name: "A's other key" } })),
  // A delivery of one of A's events to A's endpoint: the event fanned out (no attempt is made, nothing sent).
  whd: async (a, gw) => {
    const endpoint = await fixtures.we!(a, gw);
    await fixtures.pay!(a, gw);
    await fanOutEvents({ db: gw.app.db, limits: webhookLimitsDefault, nowMs: Date.now });
    const deliveries = await a.GET("/v1/webhook_endpoints/{id}/deliveries", {
      params: { path: { id: endpoint }, query: { limit: 1 } },
    });
    return created({ ...deliveries, data: deliveries.data?.data[0] });
  },
  evt: async (a, gw) => {
    await fixtures.pay!(a, gw);
    const events = await a.GET("/v1/events", { params: { query: { limit: 1 } } });
    return created({ ...events, data: events.data?.data[0] });
  },
};

describe.each(["pglite", "postgres"] as const)("on %s", (database) => {
  let gw: TestGateway;
  let a: SwitchyardClient;
  let b: SwitchyardClient;
  /** A's object of each kind, made once. */
  const made = new Map<string, Promise<string>>();
  const objectOf = (prefix: string): Promise<string> => {
    const fixture = fixtures[prefix];
    if (fixture === undefined)
      throw new Error(`no fixture makes A's object of kind "${prefix}_": add one to this file's fixtures`);
    if (!made.has(prefix)) made.set(prefix, fixture(a, gw));
    return made.get(prefix)!;
  };

  beforeAll(async () => {
    gw = await startTestGateway({
      database,
      extraRailModules: [() => ({ rails: [createToyRail({ id: "toy", feeFixed: 1n })] })],
      // No delivery attempts to A's webhook endpoint while rows are compared: only requests write.
      env: { WEBHOOK_DELIVERY_INTERVAL_MS: "3600000" },
    });
    a = gw.client;
    const tenantB = await createTenant(gw.app.db, { name: "tenant B" });
    b = gw.clientFor((await createApiKey(gw.app.db, { tenantId: tenantB.id, mode: "test" })).secret);
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  it("the document has operations that name objects, and lists", () => {
    expect(objectOperations.length).toBeGreaterThan(5);
    expect(lists.length).toBeGreaterThan(3);
  });

  it.each(objectOperations.map((op) => [`${op.method.toUpperCase()} ${op.path}`, op] as const))(
    "%s: B's key on A's object is 404 and writes nothing",
    async (_name, op: DocumentOperation) => {
      const path: Record<string, string> = {};
      for (const parameter of pathParameters(op)) {
        const prefix = idPrefixOfParameter(parameter);
        if (prefix === null)
          throw new Error(`${op.path}: the parameter "${parameter.name}" has no id pattern`);
        path[parameter.name] = await objectOf(prefix);
      }
      const body = bodySampleFor(op);
      // A sees it (a read of its own object answers 200): the id is A's indeed.
      if (op.method === "get") {
        const own = await sendOperation(a, op, { path });
        expect([op.path, own.response.status]).toEqual([op.path, 200]);
      }
      const before = await gw.tableDigests();
      const answer = await sendOperation(b, op, { path, ...(body === undefined ? {} : { body }) });
      expect([op.path, answer.response.status]).toEqual([op.path, 404]);
      const code = (answer.error as { error: { code: string } }).error.code;
      expect(code).not.toBe("route_not_found");
      expect(op.operation.responses["404"]?.["x-error-codes"]).toContain(code);
      expect(await gw.tableDigests()).toEqual(before);
    },
  );

  it.each(lists.map((op) => [`GET ${op.path}`, op] as const))(
    "%s: B's list holds none of A's ids",
    async (_name, op: DocumentOperation) => {
      // A has an object of every kind it can make, so each list of A's has something to leak.
      for (const prefix of Object.keys(fixtures)) await objectOf(prefix);
      const aIds = new Set(await Promise.all(made.values()));
      const own = await sendOperation(a, op, {});
      expect([op.path, own.response.status]).toEqual([op.path, 200]);
      const answer = await sendOperation(b, op, {});
      expect([op.path, answer.response.status]).toEqual([op.path, 200]);
      const page = answer.data as { data: { id?: string }[] };
      expect(page.data.filter((item) => item.id !== undefined && aIds.has(item.id))).toEqual([]);
    },
  );

  it("every id kind a path names has a fixture (a new kind fails here first)", () => {
    const kinds = new Set(
      objectOperations.flatMap((op) => pathParameters(op).map((parameter) => idPrefixOfParameter(parameter))),
    );
    expect([...kinds].filter((kind) => kind === null || fixtures[kind] === undefined)).toEqual([]);
  });
});
