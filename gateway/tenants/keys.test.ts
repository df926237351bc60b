// Keys, tenants and the operator's credential on PGlite: the default key (every scope, the current version); the
// authenticator's bound — a key trusted at most apiKeyTrustMsMax and never past its expiry, a suspended tenant's key
// refused (announced, and within the bound without the announcement); rolls (scopes kept, once, the caller's scopes
// bounding it); issuing under the limit; the operator's credential configured, made once, or replaced; the demo key
// kept across "restarts" and never a live one.

import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { gatewayMigrations } from "../app.ts";
import { type ChangeBus, createLocalChangeBus, type Db, migrate, openPglite } from "../db/index.ts";
import { ledgerMigrations } from "../ledger/index.ts";
import {
  apiKeyCacheDefaults,
  apiKeyChecksumLength,
  apiKeyChecksumOf,
  apiKeySecretOf,
  apiKeysActiveMax,
  apiKeyTrustMsMax,
  authenticate,
  createApiKey,
  createAuthenticator,
  createTenant,
  currentApiVersion,
  ensureDemoApiKey,
  ensureOperatorKey,
  getApiKey,
  hasValidChecksum,
  isOperatorKey,
  issueApiKey,
  revokeTenantApiKey,
  rollApiKey,
  scopes,
  setTenantStatus,
} from "./index.ts";

let db: Db;
let changes: ChangeBus;
const tenantId = "ten_keys";

beforeAll(async () => {
  db = await openPglite(undefined);
  changes = createLocalChangeBus();
  await migrate(db, [ledgerMigrations, gatewayMigrations]);
  await createTenant(db, { id: tenantId, name: "Keys" });
}, 120_000);

afterAll(async () => {
  await changes?.close();
  await db?.close();
});

function clock() {
  const now = { ms: Date.now() };
  return { nowMs: () => now.ms, advance: (ms: number) => (now.ms += ms) };
}

describe("keys", () => {
  it("a key has every scope and the current version unless told, and is trusted at most 1 s by default", async () => {
    const { key } = await createApiKey(db, { tenantId, mode: "test" });
    expect(key).toMatchObject({
      scopes: [...scopes],
      apiVersion: currentApiVersion,
      mode: "test",
      expiresAt: null,
    });
    expect(apiKeyTrustMsMax).toBe(1_000);
    expect(apiKeyCacheDefaults.ttlMs).toBeLessThanOrEqual(apiKeyTrustMsMax);
  });

  it("a remembered key is not trusted past its expiry, even with a long ttl and no announcement", async () => {
    const old = await createApiKey(db, { tenantId, mode: "test", scopes: ["read"] });
    const time = clock();
    const deaf = createLocalChangeBus(); // hears nothing of what is announced on `changes`
    const auth = createAuthenticator(
      { sql: db, nowMs: time.nowMs, changes: deaf },
      { entriesMax: 10, ttlMs: 3_600_000 },
    );
    expect(await auth.authenticate(old.secret)).not.toBeNull();
    const rolled = await rollApiKey(
      { db, changes },
      { tenantId, id: old.id, overlapSeconds: 60, grantedScopes: scopes },
    );
    expect(rolled.ok).toBe(true);
    if (!rolled.ok) return;
    expect(rolled.key.scopes).toEqual(["read"]);
    expect(rolled.rolled.rolledTo).toBe(rolled.key.id);
    const expiresAt = rolled.rolled.expiresAt!.getTime();
    // Remembered again now, with its expiry: trusted until then and not a millisecond longer.
    const fresh = createAuthenticator(
      { sql: db, nowMs: time.nowMs, changes: deaf },
      { entriesMax: 10, ttlMs: 3_600_000 },
    );
    expect(await fresh.authenticate(old.secret)).not.toBeNull();
    time.advance(expiresAt - time.nowMs() - 1);
    await db.query("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1", [old.id]);
    expect(await fresh.authenticate(old.secret)).not.toBeNull(); // from memory
    time.advance(1);
    expect(await fresh.authenticate(old.secret)).toBeNull();
    auth.close();
    fresh.close();
  });

  it("rolls a key once, and only with the caller's scopes covering the key's", async () => {
    const full = await createApiKey(db, { tenantId, mode: "test" });
    const narrow = await rollApiKey(
      { db, changes },
      { tenantId, id: full.id, overlapSeconds: 0, grantedScopes: ["read", "keys"] },
    );
    expect(narrow).toMatchObject({ ok: false, refusal: "scope_missing" });
    const first = await rollApiKey(
      { db, changes },
      { tenantId, id: full.id, overlapSeconds: 10, grantedScopes: scopes },
    );
    expect(first.ok).toBe(true);
    const second = await rollApiKey(
      { db, changes },
      { tenantId, id: full.id, overlapSeconds: 10, grantedScopes: scopes },
    );
    expect(second).toEqual({ ok: false, refusal: "api_key_rolled" });
    const elsewhere = await rollApiKey(
      { db, changes },
      { tenantId: "ten_nobody", id: full.id, overlapSeconds: 10, grantedScopes: scopes },
    );
    expect(elsewhere).toEqual({ ok: false, refusal: "api_key_not_found" });
  });

  it("revokes once: then api_key_revoked; another tenant's key is not found", async () => {
    const key = await createApiKey(db, { tenantId, mode: "test" });
    expect((await revokeTenantApiKey({ db, changes }, { tenantId, id: key.id })).ok).toBe(true);
    expect(await revokeTenantApiKey({ db, changes }, { tenantId, id: key.id })).toEqual({
      ok: false,
      refusal: "api_key_revoked",
    });
    expect(await revokeTenantApiKey({ db, changes }, { tenantId: "ten_nobody", id: key.id })).toEqual({
      ok: false,
      refusal: "api_key_not_found",
    });
    // Asked by a narrower key, the dead key is revoked already all the same (before: scope_missing).
    expect(
      await revokeTenantApiKey({ db, changes }, { tenantId, id: key.id, grantedScopes: ["read", "keys"] }),
    ).toEqual({ ok: false, refusal: "api_key_revoked" });
  });

  it("issues keys up to apiKeysActiveMax working ones per tenant, and none to a suspended tenant", async () => {
    const { id } = await createTenant(db, { name: "Many keys" });
    for (let n = 0; n < apiKeysActiveMax; n += 1) await createApiKey(db, { tenantId: id, mode: "test" });
    expect(await issueApiKey({ db }, { tenantId: id, mode: "test" })).toEqual({
      ok: false,
      refusal: "api_keys_too_many",
    });
    const [one] = await db.query<{ id: string }>("SELECT id FROM api_keys WHERE tenant_id = $1 LIMIT 1", [
      id,
    ]);
    // Nor by rolling: the old key works through its overlap, one more (before: rolled on and on, any number).
    expect(
      await rollApiKey(
        { db, changes },
        { tenantId: id, id: one!.id, overlapSeconds: 60, grantedScopes: scopes },
      ),
    ).toEqual({ ok: false, refusal: "api_keys_too_many" });
    const rolledAtOnce = await rollApiKey(
      { db, changes },
      { tenantId: id, id: one!.id, overlapSeconds: 0, grantedScopes: scopes },
    );
    expect(rolledAtOnce.ok).toBe(true);
    const [another] = await db.query<{ id: string }>(
      "SELECT id FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL LIMIT 1",
      [id],
    );
    await revokeTenantApiKey({ db, changes }, { tenantId: id, id: another!.id });
    expect((await issueApiKey({ db }, { tenantId: id, mode: "test" })).ok).toBe(true);
    await setTenantStatus({ db, changes }, { id, status: "suspended" });
    expect(await issueApiKey({ db }, { tenantId: id, mode: "test" })).toEqual({
      ok: false,
      refusal: "tenant_suspended",
    });
    expect(await issueApiKey({ db }, { tenantId: "ten_nobody", mode: "test" })).toEqual({
      ok: false,
      refusal: "tenant_not_found",
    });
  });
});

describe("suspension", () => {
  it("announces each working key of the tenant, and refuses them within the bound without the announcement", async () => {
    const { id } = await createTenant(db, { name: "To suspend" });
    const key = await createApiKey(db, { tenantId: id, mode: "test" });
    const time = clock();
    const hearing = createAuthenticator({ sql: db, nowMs: time.nowMs, changes }, apiKeyCacheDefaults);
    const deaf = createAuthenticator(
      { sql: db, nowMs: time.nowMs, changes: createLocalChangeBus() },
      apiKeyCacheDefaults,
    );
    expect((await hearing.check(key.secret)).ok).toBe(true);
    expect((await deaf.check(key.secret)).ok).toBe(true);
    await setTenantStatus({ db, changes }, { id, status: "suspended" });
    expect(await hearing.check(key.secret)).toEqual({ ok: false, refusal: "tenant_suspended" });
    expect((await deaf.check(key.secret)).ok).toBe(true); // remembered, for at most the bound
    time.advance(apiKeyTrustMsMax);
    expect(await deaf.check(key.secret)).toEqual({ ok: false, refusal: "tenant_suspended" });
    expect(await authenticate(db, key.secret)).toBeNull();
    await setTenantStatus({ db, changes }, { id, status: "active" });
    expect((await hearing.check(key.secret)).ok).toBe(true);
    hearing.close();
    deaf.close();
  });
});

describe("the operator's credential", () => {
  it("is made once and shown once; a configured one replaces it; only the stored one is the operator's", async () => {
    const first = await ensureOperatorKey(db, { configured: null });
    expect(first.kind).toBe("created");
    if (first.kind !== "created") return;
    expect(first.secret).toMatch(/^op_[A-Za-z0-9_-]{43}$/);
    expect(await isOperatorKey(db, first.secret)).toBe(true);
    expect(await ensureOperatorKey(db, { configured: null })).toEqual({ kind: "existing", hint: first.hint });
    const [stored] = await db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM operator_credentials WHERE hint = $1 AND secret_sha256 IS NOT NULL",
      [first.hint],
    );
    expect(stored!.n).toBe(1);
    const configured = `op_${"c".repeat(40)}`;
    expect(await ensureOperatorKey(db, { configured })).toMatchObject({ kind: "configured" });
    expect(await isOperatorKey(db, configured)).toBe(true);
    expect(await isOperatorKey(db, first.secret)).toBe(false);
    expect(await ensureOperatorKey(db, { configured: null })).toMatchObject({ kind: "existing" });
    expect(await isOperatorKey(db, configured)).toBe(true);
    expect(await isOperatorKey(db, "op_short")).toBe(false);
    await expect(ensureOperatorKey(db, { configured: "hunter2" })).rejects.toThrow("op_");
  });

  it("is never made where it would be printed into the logs (production): OPERATOR_KEY or a stored one", async () => {
    await db.query("DELETE FROM operator_credentials");
    await expect(ensureOperatorKey(db, { configured: null, generate: false })).rejects.toThrow(
      /set OPERATOR_KEY/,
    );
    const [none] = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM operator_credentials");
    expect(none!.n).toBe(0);
    const configured = `op_${"p".repeat(40)}`;
    expect(await ensureOperatorKey(db, { configured, generate: false })).toMatchObject({
      kind: "configured",
    });
    expect(await ensureOperatorKey(db, { configured: null, generate: false })).toEqual({
      kind: "existing",
      hint: expect.stringMatching(/^op_ppp…pppp$/),
    });
    expect(await isOperatorKey(db, configured)).toBe(true);
  });
});

describe("the key format's checksum", () => {
  it("ends every new key: sk_<mode>_, 36 random characters, 7 of SHA-256 over what precedes them", async () => {
    const { id } = await createTenant(db, { name: "Checksums" });
    const made = [
      await createApiKey(db, { tenantId: id, mode: "test" }),
      await createApiKey(db, { tenantId: id, mode: "live" }),
      (await issueApiKey({ db }, { tenantId: id, mode: "test" })) as { secret: string },
      await ensureDemoApiKey({ db }, { tenantId: id }),
    ];
    for (const { secret } of made) {
      expect(secret).toMatch(/^sk_(test|live)_[A-Za-z0-9_-]{43}$/);
      expect(hasValidChecksum(secret)).toBe(true);
      const body = secret.slice(0, -apiKeyChecksumLength);
      expect(secret.slice(-apiKeyChecksumLength)).toBe(apiKeyChecksumOf(body));
    }
    expect(new Set(made.map(({ secret }) => secret)).size).toBe(made.length);
  });

  it("refuses a wrong checksum, a changed character, another mode's prefix, and other shapes", () => {
    const secret = apiKeySecretOf("test", randomBytes(27).toString("base64url"));
    expect(hasValidChecksum(secret)).toBe(true);
    for (let at = "sk_test_".length; at < secret.length; at += 1) {
      const changed = `${secret.slice(0, at)}${secret[at] === "A" ? "B" : "A"}${secret.slice(at + 1)}`;
      expect(hasValidChecksum(changed)).toBe(false);
    }
    expect(hasValidChecksum(secret.replace("sk_test_", "sk_live_"))).toBe(false);
    expect(hasValidChecksum(`sk_test_${"A".repeat(43)}`)).toBe(false);
    expect(hasValidChecksum(`sk_test_${randomBytes(32).toString("base64url")}`)).toBe(false); // the old format
    expect(hasValidChecksum(`${secret} `)).toBe(false);
    expect(hasValidChecksum(secret.slice(0, -1))).toBe(false);
    expect(hasValidChecksum("")).toBe(false);
    expect(apiKeySecretOf("live", "x".repeat(36))).toMatch(/^sk_live_x{36}[A-Za-z0-9_-]{7}$/);
  });
});

describe("the demo key", () => {
  it("kept from before keys had a checksum is revoked and made again, once", async () => {
    const { id } = await createTenant(db, { name: "Old demo" });
    const old = `sk_test_${randomBytes(32).toString("base64url")}`;
    const oldId = "key_olddemo";
    await db.query(
      `INSERT INTO api_keys (id, tenant_id, secret_sha256, hint, mode, scopes, api_version, demo_secret)
       VALUES ($1, $2, $3, 'sk_test_…', 'test', '{read}', $4, $5)`,
      [oldId, id, Buffer.alloc(32, 7), currentApiVersion, old],
    );
    const made = await ensureDemoApiKey({ db }, { tenantId: id });
    expect(made.created).toBe(true);
    expect(made.id).not.toBe(oldId);
    expect(hasValidChecksum(made.secret)).toBe(true);
    expect(await authenticate(db, made.secret)).toMatchObject({ id });
    const oldKey = await getApiKey(db, { tenantId: id, id: oldId });
    expect(oldKey?.revokedAt).not.toBeNull();
    const [kept] = await db.query<{ demo_secret: string | null }>(
      "SELECT demo_secret FROM api_keys WHERE id = $1",
      [oldId],
    );
    expect(kept!.demo_secret).toBeNull();
    expect(await ensureDemoApiKey({ db }, { tenantId: id })).toEqual({
      id: made.id,
      secret: made.secret,
      created: false,
    });
  });

  it("is the same at every start on the same database, a test key, and made again only once revoked", async () => {
    const { id } = await createTenant(db, { name: "Demo" });
    const first = await ensureDemoApiKey({ db }, { tenantId: id });
    expect(first.created).toBe(true);
    expect(first.secret).toMatch(/^sk_test_/);
    const again = await ensureDemoApiKey({ db }, { tenantId: id });
    expect(again).toEqual({ id: first.id, secret: first.secret, created: false });
    expect(await authenticate(db, again.secret)).toMatchObject({ id });
    const [count] = await db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM api_keys WHERE tenant_id = $1",
      [id],
    );
    expect(count!.n).toBe(1);
    await revokeTenantApiKey({ db, changes }, { tenantId: id, id: first.id });
    expect((await getApiKey(db, { tenantId: id, id: first.id }))?.revokedAt).not.toBeNull();
    const [kept] = await db.query<{ demo_secret: string | null }>(
      "SELECT demo_secret FROM api_keys WHERE id = $1",
      [first.id],
    );
    expect(kept!.demo_secret).toBeNull(); // a revoked key's secret is not kept
    const replaced = await ensureDemoApiKey({ db }, { tenantId: id });
    expect(replaced.created).toBe(true);
    expect(replaced.secret).not.toBe(first.secret);
    // The table keeps no live key's secret.
    await expect(
      db.query(
        `INSERT INTO api_keys (id, tenant_id, secret_sha256, hint, mode, scopes, api_version, demo_secret)
         VALUES ('key_live', $1, '\\x00', 'sk_live_…', 'live', '{read}', $2, 'sk_live_x')`,
        [id, currentApiVersion],
      ),
    ).rejects.toThrow(/api_keys_demo_test_only/);
  });
});
