// /v1/webhook_endpoints end to end, on PGlite and on PostgreSQL: create (the secret in that answer, and in the
// Idempotency-Key's replay while it is still the endpoint's, never in the key's record), retrieve, list, update, delete, the cap per tenant, secret rotation
// with both secrets signing during the overlap (checked with the official standardwebhooks package), and one
// tenant's endpoints not found by another's key.
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApiKey, createTenant } from "../../gateway/tenants/index.ts";
import {
  deliveryTarget,
  deliveryTargets,
  webhookEndpointsPerTenantMax,
} from "../../gateway/webhooks/endpoints.ts";
import { signedHeaders, verifyLegacySignature } from "../../gateway/webhooks/signing.ts";
import { errorOf, startTestGateway, type TestGateway } from "./support.ts";

const secretPattern = /^whsec_[A-Za-z0-9+/]{43}=$/;
const unknownEndpoint = "we_01m7zfckv29pdrb3m0gz9e4j5g";

/** Verifies a delivery's headers as a receiver holding `secret` would; throws when it does not verify. */
function verify(secret: string, body: string, headers: Record<string, string>): unknown {
  return new Webhook(secret).verify(body, headers);
}

describe.each(["pglite", "postgres"] as const)("on %s", (database) => {
  let gw: TestGateway;
  let otherKey: string;

  beforeAll(async () => {
    gw = await startTestGateway({ database, env: { WEBHOOK_DELIVERY_INTERVAL_MS: "3600000" } });
    const tenant = await createTenant(gw.app.db, { name: "Other" });
    otherKey = (await createApiKey(gw.app.db, { tenantId: tenant.id, mode: "test" })).secret;
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  const tenantId = () => gw.app.demo!.tenantId;

  it("creates an endpoint and shows its secret: a replay with the same key shows it again (the first answer lost, the retry gets it), the key's record only its hash", async () => {
    const headers = { "idempotency-key": `we-create-${database}` };
    const body = {
      url: "https://example.com/hooks",
      description: "orders",
      enabled_events: ["payment.succeeded"],
    };
    const first = await gw.call("POST", "/v1/webhook_endpoints", { body, headers });
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({
      object: "webhook_endpoint",
      url: "https://example.com/hooks",
      description: "orders",
      enabled: true,
      enabled_events: ["payment.succeeded"],
      previous_secret_expires_at: null,
    });
    expect(first.body.secret).toMatch(secretPattern);

    const replay = await gw.call("POST", "/v1/webhook_endpoints", { body, headers });
    expect(replay.status).toBe(201);
    expect(replay.headers["idempotent-replayed"]).toBe("true");
    expect(replay.body).toEqual(first.body);
    const stored = await gw.app.db.query<{ body: string }>(
      "SELECT response_body::text AS body FROM idempotency_keys WHERE key = $1",
      [headers["idempotency-key"]],
    );
    expect(stored).toHaveLength(1);
    expect(stored[0]!.body).not.toContain("whsec_");

    const got = await gw.client.GET("/v1/webhook_endpoints/{id}", {
      params: { path: { id: first.body.id } },
    });
    expect(got.data).toMatchObject({ id: first.body.id, enabled_events: ["payment.succeeded"] });
    expect(got.data).not.toHaveProperty("secret");
    const list = await gw.client.GET("/v1/webhook_endpoints", { params: { query: { limit: 100 } } });
    expect(list.data!.data.map((endpoint) => endpoint.id)).toContain(first.body.id);
    expect(JSON.stringify(list.data)).not.toContain("whsec_");
  });

  it("defaults to every event type, and takes '*' among others as all", async () => {
    const plain = await gw.client.POST("/v1/webhook_endpoints", { body: { url: "https://example.com/all" } });
    expect(plain.data).toMatchObject({ enabled_events: ["*"], description: null, enabled: true });
    const starred = await gw.client.POST("/v1/webhook_endpoints", {
      body: { url: "https://example.com/star", enabled_events: ["payment.failed", "*"] },
    });
    expect(starred.data!.enabled_events).toEqual(["*"]);
    for (const id of [plain.data!.id, starred.data!.id])
      await gw.client.DELETE("/v1/webhook_endpoints/{id}", { params: { path: { id } } });
  });

  it("updates url, description, enabled and event types; delivery targets follow", async () => {
    const created = await gw.client.POST("/v1/webhook_endpoints", {
      body: { url: "https://example.com/one", description: "first" },
    });
    const id = created.data!.id;
    const updated = await gw.client.POST("/v1/webhook_endpoints/{id}", {
      params: { path: { id } },
      body: {
        url: "https://example.com/two",
        enabled_events: ["invoice.paid", "invoice.paid", "refund.succeeded"],
      },
    });
    expect(updated.response.status).toBe(200);
    expect(updated.data).toMatchObject({
      url: "https://example.com/two",
      description: "first",
      enabled_events: ["invoice.paid", "refund.succeeded"],
      enabled: true,
    });
    const targetsOf = async (type: string) =>
      (await deliveryTargets(gw.app.db, { tenantId: tenantId(), type })).map((target) => target.endpointId);
    expect(await targetsOf("invoice.paid")).toContain(id);
    expect(await targetsOf("payment.succeeded")).not.toContain(id);

    const disabled = await gw.client.POST("/v1/webhook_endpoints/{id}", {
      params: { path: { id } },
      body: { enabled: false, description: null },
    });
    expect(disabled.data).toMatchObject({
      enabled: false,
      description: null,
      url: "https://example.com/two",
    });
    expect(await targetsOf("invoice.paid")).not.toContain(id);
    const enabled = await gw.client.POST("/v1/webhook_endpoints/{id}", {
      params: { path: { id } },
      body: { enabled: true },
    });
    expect(enabled.data!.enabled).toBe(true);
    expect(await targetsOf("invoice.paid")).toContain(id);

    for (const body of [
      { enabled_events: ["Payment.Succeeded"] },
      // A type the gateway never sends (misspelled): before, taken, and nothing was ever delivered for it.
      { enabled_events: ["payment.succeded"] },
      { enabled_events: ["invoice.paid", "payment.*"] },
      { enabled_events: [] },
      { url: "ftp://example.com" },
      { enabled: "no" },
      { secret: "whsec_mine" },
    ]) {
      const refused = await gw.call("POST", `/v1/webhook_endpoints/${id}`, { body });
      expect(refused.status, JSON.stringify(body)).toBe(400);
      expect(["parameter_invalid", "parameter_unknown"]).toContain(refused.body.error.code);
    }
    const unchanged = await gw.client.GET("/v1/webhook_endpoints/{id}", { params: { path: { id } } });
    expect(unchanged.data).toMatchObject({ url: "https://example.com/two", enabled: true });
  });

  it("deletes an endpoint: not found afterwards, and no delivery goes to it", async () => {
    const created = await gw.client.POST("/v1/webhook_endpoints", {
      body: { url: "https://example.com/gone" },
    });
    const id = created.data!.id;
    const deleted = await gw.client.DELETE("/v1/webhook_endpoints/{id}", { params: { path: { id } } });
    expect(deleted.response.status).toBe(200);
    expect(deleted.data).toEqual({ id, object: "webhook_endpoint", deleted: true });
    const got = await gw.client.GET("/v1/webhook_endpoints/{id}", { params: { path: { id } } });
    expect(got.response.status).toBe(404);
    expect(errorOf(got).code).toBe("webhook_endpoint_not_found");
    const again = await gw.client.DELETE("/v1/webhook_endpoints/{id}", { params: { path: { id } } });
    expect(errorOf(again).code).toBe("webhook_endpoint_not_found");
    expect(await deliveryTarget(gw.app.db, { tenantId: tenantId(), endpointId: id })).toBeNull();
  });

  it("another tenant's endpoint is not found, in every route, and not in its list", async () => {
    const created = await gw.client.POST("/v1/webhook_endpoints", {
      body: { url: "https://example.com/mine" },
    });
    const id = created.data!.id;
    const other = gw.clientFor(otherKey);
    const path = { params: { path: { id } } };
    for (const answer of [
      await other.GET("/v1/webhook_endpoints/{id}", path),
      await other.POST("/v1/webhook_endpoints/{id}", { ...path, body: { enabled: false } }),
      await other.POST("/v1/webhook_endpoints/{id}/rotate_secret", { ...path, body: {} }),
      await other.DELETE("/v1/webhook_endpoints/{id}", path),
      await gw.client.GET("/v1/webhook_endpoints/{id}", { params: { path: { id: unknownEndpoint } } }),
    ]) {
      expect(answer.response.status).toBe(404);
      expect(errorOf(answer).code).toBe("webhook_endpoint_not_found");
    }
    const list = await other.GET("/v1/webhook_endpoints", {});
    expect(list.data!.data).toEqual([]);
    const mine = await gw.client.GET("/v1/webhook_endpoints/{id}", path);
    expect(mine.data).toMatchObject({ enabled: true });
  });

  it(`refuses the ${webhookEndpointsPerTenantMax + 1}th endpoint of a tenant with 409 webhook_endpoint_limit_reached`, async () => {
    const tenant = await createTenant(gw.app.db, { name: "Capped" });
    const capped = gw.clientFor(
      (await createApiKey(gw.app.db, { tenantId: tenant.id, mode: "test" })).secret,
    );
    const ids: string[] = [];
    for (let index = 0; index < webhookEndpointsPerTenantMax; index += 1) {
      const created = await capped.POST("/v1/webhook_endpoints", {
        body: { url: `https://example.com/${index}` },
      });
      expect(created.response.status).toBe(201);
      ids.push(created.data!.id);
    }
    const refused = await capped.POST("/v1/webhook_endpoints", { body: { url: "https://example.com/more" } });
    expect(refused.response.status).toBe(409);
    expect(errorOf(refused).code).toBe("webhook_endpoint_limit_reached");
    const [count] = await gw.app.db.query<{ count: number }>(
      "SELECT count(*)::int AS count FROM webhook_endpoints WHERE tenant_id = $1",
      [tenant.id],
    );
    expect(count!.count).toBe(webhookEndpointsPerTenantMax);
    await capped.DELETE("/v1/webhook_endpoints/{id}", { params: { path: { id: ids[0]! } } });
    const after = await capped.POST("/v1/webhook_endpoints", { body: { url: "https://example.com/more" } });
    expect(after.response.status).toBe(201);
  });

  it("rotates the secret: both sign during the overlap, verified with standardwebhooks; then only the new one", async () => {
    const created = await gw.client.POST("/v1/webhook_endpoints", {
      body: { url: "https://example.com/rot" },
    });
    const id = created.data!.id;
    const oldSecret = created.data!.secret!;
    const headers = { "idempotency-key": `we-rotate-${database}` };
    const rotated = await gw.call("POST", `/v1/webhook_endpoints/${id}/rotate_secret`, { body: {}, headers });
    expect(rotated.status).toBe(200);
    const newSecret: string = rotated.body.secret;
    expect(newSecret).toMatch(secretPattern);
    expect(newSecret).not.toBe(oldSecret);
    const overlapEnds = Date.parse(rotated.body.previous_secret_expires_at);
    expect(overlapEnds - Date.now()).toBeGreaterThan(86_400_000 - 60_000);
    expect(overlapEnds - Date.now()).toBeLessThanOrEqual(86_400_000 + 60_000);
    // The rotation's answer lost, its retry under the key: the same answer, the new secret in it (before, without it:
    // the new secret could never be read, and the next rotation dropped the one the receiver held).
    const replay = await gw.call("POST", `/v1/webhook_endpoints/${id}/rotate_secret`, { body: {}, headers });
    expect(replay.headers["idempotent-replayed"]).toBe("true");
    expect(replay.body).toEqual(rotated.body);

    const target = await deliveryTarget(gw.app.db, { tenantId: tenantId(), endpointId: id });
    expect(target!.secrets).toEqual([newSecret, oldSecret]);
    const body = JSON.stringify({ id: "evt_test", object: "event", type: "payment.succeeded" });
    const now = Math.floor(Date.now() / 1000);
    const signed = signedHeaders(target!.secrets, "evt_test", now, body);
    expect(signed["webhook-id"]).toBe("evt_test");
    expect(signed["webhook-timestamp"]).toBe(String(now));
    expect(signed["webhook-signature"]).toMatch(/^v1,[A-Za-z0-9+/]+=* v1,[A-Za-z0-9+/]+=*$/);
    expect(verify(newSecret, body, signed)).toEqual(JSON.parse(body));
    expect(verify(oldSecret, body, signed)).toEqual(JSON.parse(body));
    for (const secret of [newSecret, oldSecret])
      expect(
        verifyLegacySignature({
          secret,
          body,
          header: signed["switchyard-signature"],
          nowSeconds: now,
          toleranceSeconds: 300,
        }),
      ).toBe(true);
    expect(() => verify(`whsec_${Buffer.alloc(32, 7).toString("base64")}`, body, signed)).toThrow();
    expect(() => verify(newSecret, `${body} `, signed)).toThrow();
    expect(() => verify(newSecret, body, { ...signed, "webhook-id": "evt_other" })).toThrow();

    // Rotated again without overlap: only the newest secret signs.
    const rotatedAgain = await gw.client.POST("/v1/webhook_endpoints/{id}/rotate_secret", {
      params: { path: { id } },
      body: { expires_in_seconds: 0 },
    });
    const newest = rotatedAgain.data!.secret!;
    expect(rotatedAgain.data!.previous_secret_expires_at).toBeNull();
    const only = await deliveryTarget(gw.app.db, { tenantId: tenantId(), endpointId: id });
    expect(only!.secrets).toEqual([newest]);
    const signedOnce = signedHeaders(only!.secrets, "evt_test", now, body);
    expect(verify(newest, body, signedOnce)).toEqual(JSON.parse(body));
    expect(() => verify(newSecret, body, signedOnce)).toThrow();
    // Rotated since, the first rotation's replay no longer shows a secret: not the one it made, which no longer signs.
    const stale = await gw.call("POST", `/v1/webhook_endpoints/${id}/rotate_secret`, { body: {}, headers });
    expect(stale.headers["idempotent-replayed"]).toBe("true");
    expect(stale.body).not.toHaveProperty("secret");
    expect(stale.body).not.toHaveProperty("__omitted_sha256");

    const tooLong = await gw.call("POST", `/v1/webhook_endpoints/${id}/rotate_secret`, {
      body: { expires_in_seconds: 8 * 86_400 },
    });
    expect(tooLong.status).toBe(400);
    expect(tooLong.body.error.code).toBe("parameter_invalid");
  });

  it("rotates the secret on a POST without a body, with the default overlap (as rolling an API key does)", async () => {
    const created = await gw.client.POST("/v1/webhook_endpoints", {
      body: { url: "https://example.com/rot-bare" },
    });
    const id = created.data!.id;
    // It was 400 parameter_invalid "expected object, received null", the documented default not applied.
    const bare = await gw.call("POST", `/v1/webhook_endpoints/${id}/rotate_secret`);
    expect(bare.status).toBe(200);
    expect(bare.body.secret).toMatch(secretPattern);
    expect(bare.body.secret).not.toBe(created.data!.secret);
    const overlapEnds = Date.parse(bare.body.previous_secret_expires_at);
    expect(overlapEnds - Date.now()).toBeGreaterThan(86_400_000 - 60_000);
    expect(overlapEnds - Date.now()).toBeLessThanOrEqual(86_400_000 + 60_000);
  });

  it("an overlap that has expired no longer signs", async () => {
    const created = await gw.client.POST("/v1/webhook_endpoints", {
      body: { url: "https://example.com/exp" },
    });
    const id = created.data!.id;
    await gw.client.POST("/v1/webhook_endpoints/{id}/rotate_secret", {
      params: { path: { id } },
      body: { expires_in_seconds: 3600 },
    });
    await gw.app.db.query(
      "UPDATE webhook_endpoints SET previous_secret_expires_at = now() - interval '1 second' WHERE id = $1",
      [id],
    );
    const target = await deliveryTarget(gw.app.db, { tenantId: tenantId(), endpointId: id });
    expect(target!.secrets).toHaveLength(1);
    const got = await gw.client.GET("/v1/webhook_endpoints/{id}", { params: { path: { id } } });
    expect(got.data!.previous_secret_expires_at).toBeNull();
  });
});
