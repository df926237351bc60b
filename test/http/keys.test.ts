// /v1/api_keys end to end, on PGlite and on PostgreSQL: a tenant makes keys (scopes at most its own, the deployment's
// mode, the secret once), lists and retrieves them (the hint, never the secret), rolls them (the old key works for the
// overlap, then not; 0: at once) and revokes them (at once; twice: 409); every /v1 route asks its scope (403
// scope_missing naming it); a live key on this development deployment is 401 api_key_mode_mismatch; another tenant's
// key is not found; the operator's credential is refused here. And the development demo key is the same after a
// restart on the same database (PGLITE_DIR, or PostgreSQL), and no other is made.
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createApp } from "../../gateway/app.ts";
import { apiKeysActiveMax, ensureOperatorKey, scopes } from "../../gateway/tenants/index.ts";
import { testConfig } from "../support/config.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { startTestGateway, type TestGateway } from "./support.ts";

const operatorKey = `op_${randomBytes(32).toString("base64url")}`;
const unknownKeyId = "key_01m7zfckv29pdrb3m0gz9e4j5g";

describe.each(["pglite", "postgres"] as const)("API keys on %s", (database) => {
  let gw: TestGateway;
  /** A tenant of its own (made by the operator), and its first key (every scope). */
  let tenant: { id: string; key: string; keyId: string };
  /** Another tenant, for the keys it must not see. */
  let other: { id: string; key: string; keyId: string };

  async function newTenant(name: string) {
    const made = await gw.call("POST", "/v1/tenants", { key: operatorKey, body: { name } });
    expect(made.status).toBe(201);
    return {
      id: made.body.id as string,
      key: made.body.api_key.secret as string,
      keyId: made.body.api_key.id as string,
    };
  }

  beforeAll(async () => {
    gw = await startTestGateway({ database });
    await ensureOperatorKey(gw.app.db, { configured: operatorKey });
    tenant = await newTenant("Keys");
    other = await newTenant("Other");
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  /** The gateway's call, with this file's tenant's key unless another is given. */
  const call: TestGateway["call"] = (method, url, options = {}) =>
    gw.call(method, url, { key: tenant.key, ...options });
  const create = (body: unknown, key = tenant.key, headers: Record<string, string> = {}) =>
    call("POST", "/v1/api_keys", { key, body, headers });
  const keyCount = async () =>
    Number(
      (
        await gw.app.db.query<{ n: number }>("SELECT count(*)::int AS n FROM api_keys WHERE tenant_id = $1", [
          tenant.id,
        ])
      )[0]!.n,
    );

  it("makes a key with every scope by default, shows its secret once, and the key works", async () => {
    const made = await create({ name: "Server" });
    expect(made.status).toBe(201);
    expect(made.body).toMatchObject({
      object: "api_key",
      name: "Server",
      mode: "test",
      scopes: [...scopes],
      status: "active",
      expires_at: null,
      revoked_at: null,
      rolled_to: null,
    });
    expect(made.body.id).toMatch(/^key_[0-9a-z]{26}$/);
    expect(made.body.secret).toMatch(/^sk_test_[A-Za-z0-9_-]{43}$/);
    expect(made.body.hint).toBe(`${made.body.secret.slice(0, 8)}…${made.body.secret.slice(-4)}`);
    expect(made.body.api_version).toBe(made.headers["switchyard-version"]);
    const listed = await call("GET", "/v1/api_keys", { key: made.body.secret });
    expect(listed.status).toBe(200);
    const retrieved = await call("GET", `/v1/api_keys/${made.body.id}`);
    expect(retrieved.status).toBe(200);
    expect(retrieved.body.secret).toBeUndefined();
    expect(retrieved.body.hint).toBe(made.body.hint);
    // The secret is nowhere in the database: only its digest.
    const [stored] = await gw.app.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM api_keys WHERE demo_secret = $1",
      [made.body.secret],
    );
    expect(stored!.n).toBe(0);
    // A POST without a body is one with every default, as the document says (its body is not required).
    const bare = await call("POST", "/v1/api_keys");
    expect([bare.status, bare.body.name, bare.body.scopes]).toEqual([201, null, [...scopes]]);
  });

  it("lists the tenant's keys newest first, hints only, with Stripe's list shape", async () => {
    const a = await create({ name: "list a" });
    const b = await create({ name: "list b" });
    const page = await call("GET", "/v1/api_keys?limit=2");
    expect(page.status).toBe(200);
    expect(page.body).toMatchObject({ object: "list", url: "/v1/api_keys", has_more: true });
    expect(page.body.data.map((key: { id: string }) => key.id)).toEqual([b.body.id, a.body.id]);
    for (const key of page.body.data) expect(key.secret).toBeUndefined();
    const next = await call("GET", `/v1/api_keys?limit=100&starting_after=${a.body.id}`);
    expect(next.body.data.map((key: { id: string }) => key.id)).not.toContain(a.body.id);
    expect(next.body.data.map((key: { id: string }) => key.id)).toContain(tenant.keyId);
    expect(next.body.has_more).toBe(false);
    const theirs = await call("GET", "/v1/api_keys?limit=100", { key: other.key });
    expect(theirs.body.data.map((key: { id: string }) => key.id)).toEqual([other.keyId]);
    const foreignCursor = await call("GET", `/v1/api_keys?starting_after=${other.keyId}`);
    expect([foreignCursor.status, foreignCursor.body.error.code]).toEqual([400, "parameter_invalid"]);
    const tooMany = await call("GET", "/v1/api_keys?limit=101");
    expect([tooMany.status, tooMany.body.error.code]).toEqual([400, "parameter_invalid"]);
  });

  it("refuses bad input with a stable code and makes nothing", async () => {
    const before = await keyCount();
    const cases: Array<[unknown, number, string]> = [
      [{ scopes: ["payments", "admin"] }, 400, "parameter_invalid"],
      [{ scopes: [] }, 400, "parameter_invalid"],
      [{ scopes: ["read", "read"] }, 400, "parameter_invalid"],
      [{ mode: "live" }, 400, "parameter_invalid"],
      [{ api_version: "1999-01-01" }, 400, "api_version_invalid"],
      [{ name: "" }, 400, "parameter_invalid"],
      [{ name: "a\u0000b" }, 400, "parameter_invalid"],
      [{ name: "a\u001fb" }, 400, "parameter_invalid"],
      [{ name: "a\u007fb" }, 400, "parameter_invalid"],
      [{ name: "a\u0085b" }, 400, "parameter_invalid"], // C1 controls are control characters too
      [{ name: "a\u009fb" }, 400, "parameter_invalid"],
      [{ name: "\ud800" }, 400, "parameter_invalid"],
      [{ secret: "sk_test_mine" }, 400, "parameter_unknown"],
    ];
    for (const [body, status, code] of cases) {
      const answer = await create(body);
      expect([answer.status, answer.body.error.code], JSON.stringify(body)).toEqual([status, code]);
    }
    expect(await keyCount()).toBe(before);
    // Next to the control characters, and beyond the BMP, text is a name.
    const name = "Caf\u00e9\u00a0\u00a1 \u{1f680}";
    const made = await create({ name });
    expect([made.status, made.body.name]).toEqual([201, name]);
  });

  it("a key cannot make a key with more scopes than its own; by default it gives its own", async () => {
    const limited = await create({ name: "keys and read", scopes: ["read", "keys"] });
    expect(limited.body.scopes).toEqual(["read", "keys"]);
    const before = await keyCount();
    const over = await create({ scopes: ["keys", "payments"] }, limited.body.secret);
    expect([over.status, over.body.error.code, over.body.error.scope]).toEqual([
      403,
      "scope_missing",
      "payments",
    ]);
    expect(await keyCount()).toBe(before);
    const same = await create({}, limited.body.secret);
    expect([same.status, same.body.scopes]).toEqual([201, ["read", "keys"]]);
    // Nor roll a key with a scope it lacks (the new key would have it).
    const rolled = await call("POST", `/v1/api_keys/${tenant.keyId}/roll`, {
      key: limited.body.secret,
      body: {},
    });
    expect([rolled.status, rolled.body.error.code]).toEqual([403, "scope_missing"]);
    // Nor revoke one (before: 200, and the tenant's every-scope key was gone), by either route; its own kind it may.
    const viaPost = await call("POST", `/v1/api_keys/${tenant.keyId}/revoke`, {
      key: limited.body.secret,
      body: {},
    });
    expect([viaPost.status, viaPost.body.error.code]).toEqual([403, "scope_missing"]);
    const viaDelete = await gw.app.server.inject({
      method: "DELETE",
      url: `/v1/api_keys/${tenant.keyId}`,
      headers: { authorization: `Bearer ${limited.body.secret}` },
    });
    expect([viaDelete.statusCode, viaDelete.json().error.code]).toEqual([403, "scope_missing"]);
    expect((await call("GET", "/v1/api_keys")).status).toBe(200);
    const narrower = await create({ name: "read only", scopes: ["read"] });
    const revokedNarrower = await call("POST", `/v1/api_keys/${narrower.body.id}/revoke`, {
      key: limited.body.secret,
      body: {},
    });
    expect(revokedNarrower.status).toBe(200);
  });

  it("every /v1 route asks its scope: read reads everything, a write scope its own resources", async () => {
    const key = async (keyScopes: string[]) => (await create({ scopes: keyScopes })).body.secret as string;
    const read = await key(["read"]);
    const payments = await key(["payments"]);
    const accounts = await key(["accounts"]);
    const expectScope = async (
      secret: string,
      method: "GET" | "POST",
      url: string,
      scope: string | null,
      body: unknown = {},
    ) => {
      const answer = await call(method, url, { key: secret, ...(method === "POST" ? { body } : {}) });
      if (scope === null) expect(answer.status, `${method} ${url}`).not.toBe(403);
      else
        expect(
          [answer.status, answer.body.error?.code, answer.body.error?.scope],
          `${method} ${url}`,
        ).toEqual([403, "scope_missing", scope]);
    };
    await expectScope(read, "GET", "/v1/payments/pay_01m7zfckv29pdrb3m0gz9e4j5g", null);
    await expectScope(read, "GET", "/v1/api_keys", null);
    await expectScope(read, "POST", "/v1/payments", "payments");
    await expectScope(read, "POST", "/v1/api_keys", "keys");
    await expectScope(read, "POST", `/v1/api_keys/${tenant.keyId}/revoke`, "keys");
    await expectScope(payments, "POST", "/v1/quotes", null);
    await expectScope(payments, "GET", "/v1/payments/pay_01m7zfckv29pdrb3m0gz9e4j5g", null);
    await expectScope(payments, "POST", "/v1/webhook_endpoints", "webhooks");
    await expectScope(payments, "POST", "/v1/invoices", "invoices");
    await expectScope(payments, "GET", "/v1/payees", "accounts");
    await expectScope(accounts, "GET", "/v1/payees", null);
    await expectScope(accounts, "POST", "/v1/payments", "payments");
    await expectScope(accounts, "GET", "/v1/api_keys", "keys");
  });

  it("a live key on this development deployment is refused, saying what to do", async () => {
    const live = `sk_live_${randomBytes(32).toString("base64url")}`;
    const answer = await call("GET", "/v1/api_keys", { key: live });
    expect([answer.status, answer.body.error.code]).toEqual([401, "api_key_mode_mismatch"]);
    expect(answer.body.error.message).toContain("development deployment");
    expect(answer.body.error.message).toContain("sk_test_");
  });

  it("the operator's credential is refused on a tenant's routes", async () => {
    const answer = await call("GET", "/v1/api_keys", { key: operatorKey });
    expect([answer.status, answer.body.error.code]).toEqual([403, "tenant_key_required"]);
    const payments = await call("POST", "/v1/payments", { key: operatorKey, body: {} });
    expect([payments.status, payments.body.error.code]).toEqual([403, "tenant_key_required"]);
  });

  /**
   * Fails unless the OpenAPI document lists the refusal `answer` (a code) under its status on the operation: the
   * key routes' own refusals were missing from it (no config.errorCodes), DELETE's 409 with them.
   */
  async function expectDocumented(
    method: string,
    pathTemplate: string,
    answer: { status: number; body: { error: { code: string } } },
  ) {
    const document = (await gw.app.server.inject({ method: "GET", url: "/openapi.json" })).json();
    const codes =
      document.paths[pathTemplate]?.[method.toLowerCase()]?.responses?.[String(answer.status)]?.[
        "x-error-codes"
      ];
    expect([method, pathTemplate, answer.status, codes]).toEqual([
      method,
      pathTemplate,
      answer.status,
      expect.arrayContaining([answer.body.error.code]),
    ]);
  }

  it("revokes a key at once (POST …/revoke or DELETE); twice is 409, nothing changed", async () => {
    const made = await create({ name: "to revoke" });
    expect((await call("GET", "/v1/api_keys", { key: made.body.secret })).status).toBe(200);
    const revoked = await call("POST", `/v1/api_keys/${made.body.id}/revoke`);
    expect(revoked.status).toBe(200);
    expect(revoked.body).toMatchObject({ id: made.body.id, status: "revoked" });
    expect(revoked.body.revoked_at).not.toBeNull();
    const refused = await call("GET", "/v1/api_keys", { key: made.body.secret });
    expect([refused.status, refused.body.error.code]).toEqual([401, "api_key_invalid"]);
    const again = await call("POST", `/v1/api_keys/${made.body.id}/revoke`);
    expect([again.status, again.body.error.code]).toEqual([409, "api_key_revoked"]);
    expect((await call("GET", `/v1/api_keys/${made.body.id}`)).body.revoked_at).toBe(revoked.body.revoked_at);
    const deleted = await create({ name: "to delete" });
    const answer = await gw.app.server.inject({
      method: "DELETE",
      url: `/v1/api_keys/${deleted.body.id}`,
      headers: { authorization: `Bearer ${tenant.key}` },
    });
    expect([answer.statusCode, answer.json().status]).toEqual([200, "revoked"]);
    expect((await call("GET", "/v1/api_keys", { key: deleted.body.secret })).status).toBe(401);
    await expectDocumented("POST", "/v1/api_keys/{id}/revoke", again);
    const deletedAgain = await gw.app.server.inject({
      method: "DELETE",
      url: `/v1/api_keys/${deleted.body.id}`,
      headers: { authorization: `Bearer ${tenant.key}` },
    });
    expect([deletedAgain.statusCode, deletedAgain.json().error.code]).toEqual([409, "api_key_revoked"]);
    await expectDocumented("DELETE", "/v1/api_keys/{id}", {
      status: deletedAgain.statusCode,
      body: deletedAgain.json(),
    });
  });

  it(`a tenant with ${apiKeysActiveMax} working keys makes no more, by making or rolling one: 409 api_keys_too_many`, async () => {
    const full = await newTenant("Full of keys");
    // Its first key is one of them.
    for (let made = 1; made < apiKeysActiveMax; made++)
      expect((await create({ name: `key ${made}` }, full.key)).status).toBe(201);
    const more = await create({ name: "one more" }, full.key);
    expect([more.status, more.body.error.code]).toEqual([409, "api_keys_too_many"]);
    await expectDocumented("POST", "/v1/api_keys", more);
    // A roll keeps the old key working for its overlap: one more working key.
    const rolled = await call("POST", `/v1/api_keys/${full.keyId}/roll`, { key: full.key, body: {} });
    expect([rolled.status, rolled.body.error.code]).toEqual([409, "api_keys_too_many"]);
    await expectDocumented("POST", "/v1/api_keys/{id}/roll", rolled);
  });

  it("another tenant's key id is not found on every route, and stays as it was", async () => {
    for (const [method, url] of [
      ["GET", `/v1/api_keys/${other.keyId}`],
      ["POST", `/v1/api_keys/${other.keyId}/revoke`],
      ["POST", `/v1/api_keys/${other.keyId}/roll`],
      ["GET", `/v1/api_keys/${unknownKeyId}`],
    ] as const) {
      const answer = await call(method, url, method === "POST" ? { body: {} } : {});
      expect([answer.status, answer.body.error.code], url).toEqual([404, "api_key_not_found"]);
    }
    expect((await call("GET", "/v1/api_keys", { key: other.key })).status).toBe(200);
    const malformed = await call("GET", "/v1/api_keys/not_a_key");
    expect([malformed.status, malformed.body.error.code]).toEqual([400, "parameter_invalid"]);
  });

  it("rolls a key: the new one has its scopes and version, the old works for the overlap, then not", async () => {
    const old = await create({ name: "rolled", scopes: ["read", "payments"] });
    const rolled = await call("POST", `/v1/api_keys/${old.body.id}/roll`, { body: {} });
    expect(rolled.status).toBe(200);
    expect(rolled.body).toMatchObject({ name: "rolled", scopes: ["read", "payments"], status: "active" });
    expect(rolled.body.secret).toMatch(/^sk_test_/);
    expect(rolled.body.rolled).toMatchObject({
      id: old.body.id,
      status: "expiring",
      rolled_to: rolled.body.id,
    });
    const overlapMs = Date.parse(rolled.body.rolled.expires_at) - Date.now();
    expect(overlapMs).toBeGreaterThan(23 * 3600_000);
    expect(overlapMs).toBeLessThanOrEqual(24 * 3600_000 + 60_000);
    expect((await call("GET", "/v1/payees", { key: old.body.secret })).status).toBe(200);
    expect((await call("GET", "/v1/payees", { key: rolled.body.secret })).status).toBe(200);
    const twice = await call("POST", `/v1/api_keys/${old.body.id}/roll`, { body: {} });
    expect([twice.status, twice.body.error.code]).toEqual([409, "api_key_rolled"]);
    await expectDocumented("POST", "/v1/api_keys/{id}/roll", twice);

    // A roll without a body takes every default (and is refused here: already rolled).
    const bare = await call("POST", `/v1/api_keys/${old.body.id}/roll`);
    expect([bare.status, bare.body.error.code]).toEqual([409, "api_key_rolled"]);

    // 0: the old key stops now.
    const now = await call("POST", `/v1/api_keys/${rolled.body.id}/roll`, {
      body: { expires_in_seconds: 0 },
    });
    expect(now.status).toBe(200);
    expect(now.body.rolled.status).toBe("revoked");
    expect((await call("GET", "/v1/payees", { key: rolled.body.secret })).status).toBe(401);
    expect((await call("GET", "/v1/payees", { key: now.body.secret })).status).toBe(200);

    // 1 s: it works, then — with no announcement — it does not (no process trusts it past its expiry).
    const short = await call("POST", `/v1/api_keys/${now.body.id}/roll`, { body: { expires_in_seconds: 1 } });
    expect((await call("GET", "/v1/payees", { key: now.body.secret })).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const expired = await call("GET", "/v1/payees", { key: now.body.secret });
    expect([expired.status, expired.body.error.code]).toEqual([401, "api_key_invalid"]);
    expect((await call("GET", `/v1/api_keys/${now.body.id}`)).body.status).toBe("expired");
    const revokeExpired = await call("POST", `/v1/api_keys/${now.body.id}/revoke`);
    expect([revokeExpired.status, revokeExpired.body.error.code]).toEqual([409, "api_key_revoked"]);
    const rollExpired = await call("POST", `/v1/api_keys/${now.body.id}/roll`, { body: {} });
    expect([rollExpired.status, rollExpired.body.error.code]).toEqual([409, "api_key_revoked"]);
    await expectDocumented("POST", "/v1/api_keys/{id}/roll", rollExpired);
    expect((await call("GET", "/v1/payees", { key: short.body.secret })).status).toBe(200);

    for (const body of [
      { expires_in_seconds: -1 },
      { expires_in_seconds: 8 * 24 * 3600 },
      { expires_in_seconds: "1" },
    ]) {
      const bad = await call("POST", `/v1/api_keys/${short.body.id}/roll`, { body });
      expect([bad.status, bad.body.error.code], JSON.stringify(body)).toEqual([400, "parameter_invalid"]);
    }
  });

  it("an Idempotency-Key is not applied where the answer holds a secret (never stored)", async () => {
    const headers = { "idempotency-key": `keys-${Date.now()}` };
    const first = await create({ name: "idem" }, tenant.key, headers);
    const second = await create({ name: "idem" }, tenant.key, headers);
    expect([first.status, second.status]).toEqual([201, 201]);
    expect(second.body.id).not.toBe(first.body.id);
    const [stored] = await gw.app.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM idempotency_keys WHERE key = $1",
      [headers["idempotency-key"]],
    );
    expect(stored!.n).toBe(0);
  });
});

describe.each(["pglite", "postgres"] as const)("the demo key on %s", (database) => {
  it("survives a restart with its database, and a restart makes no other key", async () => {
    const dir = database === "pglite" ? await mkdtemp(path.join(tmpdir(), "switchyard-demo-key-")) : null;
    const env: Record<string, string> = { LOG_LEVEL: "silent", PORT: "0" };
    if (dir !== null) env.PGLITE_DIR = dir;
    else env.DATABASE_URL = await createTestDatabase(inject("postgresUrl"), "http");
    try {
      const first = await createApp(testConfig(env));
      const key = first.demo!.apiKey;
      await first.close();
      const second = await createApp(testConfig(env));
      try {
        expect(second.demo!.apiKey).toBe(key);
        const answer = await second.server.inject({
          method: "GET",
          url: "/v1/api_keys",
          headers: { authorization: `Bearer ${key}` },
        });
        expect(answer.statusCode).toBe(200);
        expect(
          answer.json().data.filter((listed: { status: string }) => listed.status === "active"),
        ).toHaveLength(1);
      } finally {
        await second.close();
      }
    } finally {
      if (dir !== null) await rm(dir, { recursive: true, force: true });
    }
  });
});
