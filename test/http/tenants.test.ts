// /v1/tenants end to end, on PGlite and on PostgreSQL: only the operator's credential is answered (a tenant's key is
// 403 operator_only, a wrong credential 401); the operator makes a tenant with its first key (the secret once, every
// scope, this deployment's mode), lists them (Stripe's convention, `status`), retrieves one, suspends it (its keys
// 403 tenant_suspended at once, nothing it asks is done) and reactivates it (they work again); bad input is a stable
// 400 and makes nothing.
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureOperatorKey, scopes } from "../../gateway/tenants/index.ts";
import { startTestGateway, type TestGateway } from "./support.ts";

const operatorKey = `op_${randomBytes(32).toString("base64url")}`;

describe.each(["pglite", "postgres"] as const)("tenants on %s", (database) => {
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startTestGateway({ database });
    expect(await ensureOperatorKey(gw.app.db, { configured: operatorKey })).toMatchObject({
      kind: "configured",
    });
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  const operator: TestGateway["call"] = (method, url, options = {}) =>
    gw.call(method, url, { key: operatorKey, ...options });
  const tenantCount = async () =>
    Number((await gw.app.db.query<{ n: number }>("SELECT count(*)::int AS n FROM tenants"))[0]!.n);

  it("makes a tenant with its first key, shown once, which works at once", async () => {
    const made = await operator("POST", "/v1/tenants", { body: { name: "Acme", metadata: { plan: "pro" } } });
    expect(made.status).toBe(201);
    expect(made.body).toMatchObject({
      object: "tenant",
      name: "Acme",
      status: "active",
      metadata: { plan: "pro" },
      suspended_at: null,
    });
    expect(made.body.id).toMatch(/^ten_[0-9a-z]{26}$/);
    expect(made.body.api_key).toMatchObject({
      object: "api_key",
      mode: "test",
      scopes: [...scopes],
      status: "active",
    });
    expect(made.body.api_key.secret).toMatch(/^sk_test_/);
    const keys = await gw.call("GET", "/v1/api_keys", { key: made.body.api_key.secret });
    expect(keys.status).toBe(200);
    expect(keys.body.data.map((key: { id: string }) => key.id)).toEqual([made.body.api_key.id]);
    const retrieved = await operator("GET", `/v1/tenants/${made.body.id}`);
    expect(retrieved.status).toBe(200);
    expect(retrieved.body).toEqual({
      id: made.body.id,
      object: "tenant",
      name: "Acme",
      status: "active",
      metadata: { plan: "pro" },
      created_at: made.body.created_at,
      suspended_at: null,
    });
    expect(retrieved.body.api_key).toBeUndefined();
  });

  it("answers only the operator's credential", async () => {
    const tenantKey = await gw.call("GET", "/v1/tenants");
    expect([tenantKey.status, tenantKey.body.error.code]).toEqual([403, "operator_only"]);
    const create = await gw.call("POST", "/v1/tenants", { body: { name: "Sneaky" } });
    expect([create.status, create.body.error.code]).toEqual([403, "operator_only"]);
    const wrong = await gw.call("GET", "/v1/tenants", { key: `op_${randomBytes(32).toString("base64url")}` });
    expect([wrong.status, wrong.body.error.code]).toEqual([401, "api_key_invalid"]);
    const none = await gw.call("GET", "/v1/tenants", { key: null });
    expect([none.status, none.body.error.code]).toEqual([401, "api_key_missing"]);
    // A key with every scope is still not the operator.
    const suspend = await gw.call("POST", "/v1/tenants/ten_demo/suspend");
    expect([suspend.status, suspend.body.error.code]).toEqual([403, "operator_only"]);
    expect((await operator("GET", "/v1/tenants/ten_demo")).body.status).toBe("active");
  });

  it("lists tenants newest first, with limit, cursors, created and status", async () => {
    const a = await operator("POST", "/v1/tenants", { body: { name: "list a" } });
    const b = await operator("POST", "/v1/tenants", { body: { name: "list b" } });
    const page = await operator("GET", "/v1/tenants?limit=2");
    expect(page.status).toBe(200);
    expect(page.body).toMatchObject({ object: "list", url: "/v1/tenants", has_more: true });
    expect(page.body.data.map((tenant: { id: string }) => tenant.id)).toEqual([b.body.id, a.body.id]);
    const newer = await operator("GET", `/v1/tenants?ending_before=${a.body.id}&limit=1`);
    expect(newer.body.data.map((tenant: { id: string }) => tenant.id)).toEqual([b.body.id]);
    const older = await operator("GET", `/v1/tenants?starting_after=${a.body.id}&limit=100`);
    expect(older.body.data.map((tenant: { id: string }) => tenant.id)).not.toContain(b.body.id);
    expect(older.body.data.map((tenant: { id: string }) => tenant.id)).toContain("ten_demo");
    const createdSecond = Math.floor(Date.parse(b.body.created_at) / 1000);
    const recent = await operator("GET", `/v1/tenants?created[gte]=${createdSecond}&limit=100`);
    expect(recent.body.data.map((tenant: { id: string }) => tenant.id)).toContain(b.body.id);
    const future = await operator("GET", `/v1/tenants?created[gte]=${createdSecond + 3600}`);
    expect(future.body.data).toEqual([]);
    await operator("POST", `/v1/tenants/${a.body.id}/suspend`);
    const suspended = await operator("GET", "/v1/tenants?status=suspended&limit=100");
    expect(suspended.body.data.map((tenant: { id: string }) => tenant.id)).toContain(a.body.id);
    expect(suspended.body.data.every((tenant: { status: string }) => tenant.status === "suspended")).toBe(
      true,
    );
    for (const query of ["limit=0", "limit=101", "status=gone", "starting_after=ten_nobody", "colour=red"]) {
      const bad = await operator("GET", `/v1/tenants?${query}`);
      expect(bad.status, query).toBe(400);
    }
  });

  it("suspends a tenant: its keys are refused at once and nothing is done; reactivated, they work again", async () => {
    const made = await operator("POST", "/v1/tenants", { body: { name: "Suspended" } });
    const key = made.body.api_key.secret as string;
    expect((await gw.call("GET", "/v1/api_keys", { key })).status).toBe(200); // remembered by this process
    const suspended = await operator("POST", `/v1/tenants/${made.body.id}/suspend`);
    expect(suspended.status).toBe(200);
    expect(suspended.body.status).toBe("suspended");
    expect(suspended.body.suspended_at).not.toBeNull();
    const refused = await gw.call("GET", "/v1/api_keys", { key });
    expect([refused.status, refused.body.error.code]).toEqual([403, "tenant_suspended"]);
    const keysBefore = await gw.app.db.query("SELECT id FROM api_keys WHERE tenant_id = $1", [made.body.id]);
    const create = await gw.call("POST", "/v1/api_keys", { key, body: {} });
    expect([create.status, create.body.error.code]).toEqual([403, "tenant_suspended"]);
    expect(await gw.app.db.query("SELECT id FROM api_keys WHERE tenant_id = $1", [made.body.id])).toEqual(
      keysBefore,
    );
    // Again: nothing changes, the same answer.
    const again = await operator("POST", `/v1/tenants/${made.body.id}/suspend`);
    expect([again.status, again.body.suspended_at]).toEqual([200, suspended.body.suspended_at]);
    const reactivated = await operator("POST", `/v1/tenants/${made.body.id}/reactivate`);
    expect([reactivated.status, reactivated.body.status, reactivated.body.suspended_at]).toEqual([
      200,
      "active",
      null,
    ]);
    expect((await gw.call("GET", "/v1/api_keys", { key })).status).toBe(200);
  });

  it("makes a key for a tenant that revoked its last one; none for a suspended or unknown tenant", async () => {
    const made = await operator("POST", "/v1/tenants", { body: { name: "Locked out" } });
    const first = made.body.api_key;
    const revoked = await gw.call("POST", `/v1/api_keys/${first.id}/revoke`, { key: first.secret });
    expect(revoked.status).toBe(200);
    expect((await gw.call("GET", "/v1/api_keys", { key: first.secret })).status).toBe(401);
    const key = await operator("POST", `/v1/tenants/${made.body.id}/api_keys`, {
      body: { name: "Recovery", scopes: ["read", "keys"] },
    });
    expect(key.status).toBe(201);
    expect(key.body).toMatchObject({
      object: "api_key",
      name: "Recovery",
      scopes: ["read", "keys"],
      mode: "test",
    });
    const listed = await gw.call("GET", "/v1/api_keys", { key: key.body.secret });
    expect(listed.body.data.map((listedKey: { id: string }) => listedKey.id)).toEqual([
      key.body.id,
      first.id,
    ]);
    const all = await operator("POST", `/v1/tenants/${made.body.id}/api_keys`);
    expect([all.status, all.body.scopes], JSON.stringify(all.body)).toEqual([201, [...scopes]]);
    const byTenant = await gw.call("POST", `/v1/tenants/${made.body.id}/api_keys`, {
      key: key.body.secret,
      body: {},
    });
    expect([byTenant.status, byTenant.body.error.code]).toEqual([403, "operator_only"]);
    await operator("POST", `/v1/tenants/${made.body.id}/suspend`);
    const suspended = await operator("POST", `/v1/tenants/${made.body.id}/api_keys`, { body: {} });
    expect([suspended.status, suspended.body.error.code]).toEqual([403, "tenant_suspended"]);
    const unknown = await operator("POST", "/v1/tenants/ten_01m7zfckv29pdrb3m0gz9e4j5g/api_keys", {
      body: {},
    });
    expect([unknown.status, unknown.body.error.code]).toEqual([404, "tenant_not_found"]);
    const bad = await operator("POST", `/v1/tenants/${made.body.id}/api_keys`, {
      body: { scopes: ["root"] },
    });
    expect([bad.status, bad.body.error.code]).toEqual([400, "parameter_invalid"]);
  });

  it("an unknown tenant is 404 on every route; a malformed id 400", async () => {
    for (const [method, url] of [
      ["GET", "/v1/tenants/ten_01m7zfckv29pdrb3m0gz9e4j5g"],
      ["POST", "/v1/tenants/ten_01m7zfckv29pdrb3m0gz9e4j5g/suspend"],
      ["POST", "/v1/tenants/ten_01m7zfckv29pdrb3m0gz9e4j5g/reactivate"],
    ] as const) {
      const answer = await operator(method, url);
      expect([answer.status, answer.body.error.code], url).toEqual([404, "tenant_not_found"]);
    }
    const malformed = await operator("GET", "/v1/tenants/acme");
    expect([malformed.status, malformed.body.error.code]).toEqual([400, "parameter_invalid"]);
  });

  it("refuses bad input with a stable code and makes nothing", async () => {
    const before = await tenantCount();
    const cases: Array<[unknown, string]> = [
      [{}, "parameter_missing"],
      [{ name: "" }, "parameter_invalid"],
      [{ name: "x".repeat(201) }, "parameter_invalid"],
      [{ name: "a\u0000b" }, "parameter_invalid"],
      [{ name: "\udc00" }, "parameter_invalid"],
      [{ name: "Acme", metadata: { plan: 3 } }, "parameter_invalid"],
      [{ name: "Acme", metadata: { "a\u0000": "b" } }, "parameter_invalid"],
      [{ name: "Acme", id: "ten_mine" }, "parameter_unknown"],
    ];
    for (const [body, code] of cases) {
      const answer = await operator("POST", "/v1/tenants", { body });
      expect([answer.status, answer.body.error.code], JSON.stringify(body)).toEqual([400, code]);
    }
    const text = await operator("POST", "/v1/tenants", { rawBody: "{" });
    expect([text.status, text.body.error.code]).toEqual([400, "invalid_json"]);
    expect(await tenantCount()).toBe(before);
  });
});
