// Idempotency made consistent (issue #22, item 8), on PGlite and on PostgreSQL, and across two processes:
// - a POST that moves money (payments, refunds) without an Idempotency-Key is refused 400 idempotency_key_missing,
//   nothing written, nothing moved: a retry without a key would pay twice;
// - one rule for what is kept under a key: a final answer of a request that ran (402, 422, …) is kept and replayed;
//   a 400 is never kept, whether the schema or the service found the request invalid (corrected, it runs under
//   the same key); transient answers are never kept;
// - records expire after 24 h: an older key is a new key, and the prune deletes expired records;
// - a process remembers a bounded number of payments' answers: a key whose answer it forgot is answered from its
//   record, replayed for the same request and refused 409 for another;
// - the probe's money invariants: one key and 50 concurrent requests make one payment; concurrent payments above
//   the balance through two gateway processes on one PostgreSQL never overdraw.
import { randomUUID } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, inject, it, vi } from "vitest";
import { assets } from "../../core/index.ts";
import {
  accountCacheDefaults,
  balanceOf,
  createAccount,
  createAccountCache,
  getClearingAccount,
  getTenantAccount,
} from "../../gateway/accounts/index.ts";
import { type App, createApp } from "../../gateway/app.ts";
import type { Db } from "../../gateway/db/index.ts";
import { idempotencyRecordTtlMs, pruneIdempotencyRecords } from "../../gateway/http/idempotency.ts";
import { buildServer } from "../../gateway/http/index.ts";
import { derivedLedgerId } from "../../gateway/ids/index.ts";
import { credit, transferCodes } from "../../gateway/ledger/index.ts";
import {
  type CreatePaymentResult,
  type CreateRefundResult,
  createPayment,
  createRefund,
} from "../../gateway/payments/index.ts";
import { apiKeyCacheDefaults } from "../../gateway/tenants/index.ts";
import { fanOutEvents, webhookLimitsDefault } from "../../gateway/webhooks/index.ts";
import { testConfig } from "../support/config.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { noteStatements } from "../support/recording-db.ts";
import { startTestGateway, type TestGateway } from "./support.ts";

const internal = (amount: string, source = "acct_demo_customer", destination = "acct_demo_merchant") => ({
  amount,
  asset: "USDC",
  source: { account: source },
  destination: { type: "account" as const, account: destination },
});

/**
 * A payment no rail may make: its only rail denied, refused 422 no_route before anything is written. A refusal of the
 * service, kept under its key (an account that does not exist is a 400, which is not).
 */
const unroutable = (amount: string) => ({
  ...internal(amount),
  constraints: { rails: { deny: ["internal-usdc"] } },
});

/**
 * The digest of the payment request in the "same as ever" test, as computed since payments keep it (migration 0030): for
 * good, so a retry after an upgrade must still match it.
 */
const frozenPaymentDigest = "861ee2c06765278f8d8c769ea3aadb1be332091d8914e1b37298df693a1fbacf";

/**
 * A database wrapper (for paymentsServer's `wrap`) that, once `run` is set, runs it just before (or just after) the
 * next statement whose text contains `text` (with that statement's parameters), then clears it: what another process
 * does meanwhile.
 */
function once(text: string, when: "before" | "after" = "before") {
  const hook: {
    run: ((params: readonly unknown[] | undefined) => Promise<void>) | null;
    wrap: (db: Db) => Db;
  } = {
    run: null,
    wrap: (db) => ({
      ...db,
      query: (async (statement: string, params?: readonly unknown[]) => {
        const run = statement.includes(text) ? hook.run : null;
        if (run !== null) hook.run = null;
        if (run !== null && when === "before") await run(params);
        const rows = await db.query(statement, params);
        if (run !== null && when === "after") await run(params);
        return rows;
      }) as Db["query"],
    }),
  };
  return hook;
}

/** A POST straight to the server: headers exactly as given (no key unless one is given). */
async function post(app: App, url: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await app.server.inject({
    method: "POST",
    url,
    headers: { authorization: `Bearer ${app.demo!.apiKey}`, "content-type": "application/json", ...headers },
    payload: JSON.stringify(body),
  });
  return { status: response.statusCode, body: response.json(), headers: response.headers };
}

/** A new customer account of the demo tenant, funded with `amount` µUSDC from the EVM rail's clearing account. */
async function fundedAccount(app: App, amount: bigint): Promise<string> {
  const tenantId = app.demo!.tenantId;
  const account = await createAccount(
    { sql: app.db, ledger: app.ledger },
    { tenantId, kind: "customer", asset: assets.USDC, name: "idempotency" },
  );
  const clearing = await getClearingAccount(app.db, { rail: "evm", asset: assets.USDC });
  const outcome = await credit(
    app.ledger,
    {
      debitAccountId: clearing!.ledgerAccountId,
      creditAccountId: account.ledgerAccountId,
      amount,
      ledger: assets.USDC.ledger,
      code: transferCodes.payments.funding,
    },
    { id: derivedLedgerId(account.id, "idempotency-test-funding"), label: "test funding" },
  );
  expect(outcome).toBe("credited");
  return account.id;
}

async function postedOf(app: App, accountId: string): Promise<bigint> {
  const account = await getTenantAccount(app.db, { tenantId: app.demo!.tenantId, id: accountId });
  const [ledgerAccount] = await app.ledger.lookupAccounts([account!.ledgerAccountId]);
  return balanceOf("customer", ledgerAccount!).posted;
}

async function paymentsWithKey(app: App, key: string): Promise<bigint> {
  const [row] = await app.db.query<{ count: bigint }>(
    "SELECT count(*) AS count FROM payments WHERE idempotency_key = $1",
    [key],
  );
  return row!.count;
}

/**
 * Returns once the webhook fan-out's cursor (outbox_fan_out) is past every event in the outbox. The background
 * delivery pass (every second) moves that cursor over the events earlier tests' payments wrote: a digest of every
 * table taken before it catches up sees the cursor move, though the request under test wrote nothing. Fanned out
 * here rather than waited for, so the test does not wait on the pass's timer; no endpoint is registered in this
 * file, so no delivery is made.
 */
async function fanOutCaughtUp(app: App): Promise<void> {
  await vi.waitFor(
    async () => {
      await fanOutEvents({ db: app.db, limits: webhookLimitsDefault, nowMs: Date.now });
      // An event of a transaction still open is not fanned out yet: asked again until it is.
      const [behind] = await app.db.query<{ count: number }>(
        `SELECT count(*)::int AS count FROM outbox o, outbox_fan_out c WHERE (o.xact, o.id) > (c.xact, c.id)`,
      );
      expect(behind!.count).toBe(0);
    },
    { timeout: 10_000, interval: 50 },
  );
}

/**
 * The gateway's HTTP server (buildServer, as the app builds it) over the gateway's services, its Idempotency-Key
 * plugin remembering at most `rememberedAnswersMax` answers (100 unless given), and the text of each statement of
 * the server's plugins and routes recorded in `statements` when given (the payment service's own are not). A valid
 * key is trusted for a minute, so that auth asks nothing once the first request found the key.
 */
async function paymentsServer(
  app: App,
  params: {
    rememberedAnswersMax?: number;
    statements?: string[];
    wrap?: (db: Db) => Db;
    rememberedAnswerTtlMs?: number;
  } = {},
): Promise<FastifyInstance> {
  const recorded = noteStatements(app.db, (texts) => params.statements?.push(...texts));
  const db = params.wrap === undefined ? recorded : params.wrap(recorded);
  const server = await buildServer({
    db,
    ledger: app.ledger,
    accounts: createAccountCache({ sql: app.db, changes: app.changes }, accountCacheDefaults),
    rails: app.rails,
    payments: app.payments,
    settlement: app.settlement,
    paywalls: app.paywalls,
    changes: app.changes,
    mode: "development",
    // Statements are counted below: no key lookup, nor a background renewal, among them.
    apiKeyCache: { ...apiKeyCacheDefaults, ttlMs: 60_000, renewUsedWithinMs: 0 },
    requestTimeoutMs: 10_000,
    bodyLimitBytes: 64 * 1024,
    idempotencyInProgressTimeoutMs: 60_000,
    idempotencyRememberedAnswersMax: params.rememberedAnswersMax ?? 100,
    ...(params.rememberedAnswerTtlMs === undefined
      ? {}
      : { idempotencyRememberedAnswerTtlMs: params.rememberedAnswerTtlMs }),
    logLevel: "silent",
  });
  await server.ready();
  return server;
}

describe.each(["pglite", "postgres"] as const)("on %s", (database) => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ database });
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  it("refuses a payment and a refund without an Idempotency-Key: 400 idempotency_key_missing, nothing written", async () => {
    // The fan-out settled first, so that the digests below can change only by what these requests write.
    await fanOutCaughtUp(gw.app);
    const digests = await gw.tableDigests();
    const transfers = await gw.ledgerTransferCount();
    const paid = await post(gw.app, "/v1/payments", internal("1"));
    expect(paid.status).toBe(400);
    expect(paid.body.error.code).toBe("idempotency_key_missing");
    expect(paid.body.error.message).toContain("Idempotency-Key");
    const refunded = await post(gw.app, "/v1/refunds", { payment: "pay_00000000000000000000000000" });
    expect(refunded.status).toBe(400);
    expect(refunded.body.error.code).toBe("idempotency_key_missing");
    expect(await gw.tableDigests()).toEqual(digests);
    expect(await gw.ledgerTransferCount()).toBe(transfers);
    // A POST that moves no money keeps the key optional.
    const quoted = await post(gw.app, "/v1/quotes", {
      amount: "1",
      asset: "USDC",
      destination: internal("1").destination,
    });
    expect(quoted.status).toBe(201);
  });

  it("keeps no 400 under its key, from the schema or from the service: the corrected request runs", async () => {
    const key = `corrected-${randomUUID()}`;
    const schema = await post(
      gw.app,
      "/v1/payments",
      { ...internal("1"), asset: 7 },
      { "idempotency-key": key },
    );
    expect(schema.status).toBe(400);
    const service = await post(
      gw.app,
      "/v1/payments",
      internal("1", "acct_demo_customer", "acct_demo_customer"),
      {
        "idempotency-key": key,
      },
    );
    expect(service.status).toBe(400);
    expect(service.body.error.code).toBe("same_account");
    const corrected = await post(gw.app, "/v1/payments", internal("0.000001"), { "idempotency-key": key });
    expect(corrected.status).toBe(201);
    expect(corrected.body.status).toBe("succeeded");
    expect(await paymentsWithKey(gw.app, key)).toBe(1n);
  });

  it("keeps nothing for a request no route takes (a path mistyped, a method the path does not take): the corrected request runs under the key, and the body, never validated, is never hashed", async () => {
    const key = `no-route-${randomUUID()}`;
    const records = async () =>
      (
        await gw.app.db.query<{ n: string }>(
          "SELECT count(*)::text AS n FROM idempotency_keys WHERE key = $1",
          [key],
        )
      )[0]!.n;
    const mistyped = await post(gw.app, "/v1/payment", internal("0.000001"), { "idempotency-key": key });
    expect(mistyped.status).toBe(404);
    expect(mistyped.body.error.code).toBe("route_not_found");
    const wrongMethod = await post(
      gw.app,
      "/v1/payments/pay_00000000000000000000000000",
      internal("0.000001"),
      {
        "idempotency-key": key,
      },
    );
    expect(wrongMethod.status).toBe(405);
    await expect(records()).resolves.toBe("0");
    // A body no schema looked at, nested deeper than JSON.stringify recurses: not a 500.
    const deep = await gw.app.server.inject({
      method: "POST",
      url: "/v1/nothing",
      headers: {
        authorization: `Bearer ${gw.app.demo!.apiKey}`,
        "content-type": "application/json",
        "idempotency-key": key,
      },
      payload: `${"[".repeat(8_000)}${"]".repeat(8_000)}`,
    });
    expect(deep.statusCode).toBe(404);
    expect(deep.json().error.code).toBe("route_not_found");
    await expect(records()).resolves.toBe("0");
    const corrected = await post(gw.app, "/v1/payments", internal("0.000001"), { "idempotency-key": key });
    expect(corrected.status).toBe(201);
    expect(corrected.body.status).toBe("succeeded");
  });

  it("keeps no refusal of an account the body names that is not there (400, not 404): the request corrected runs under the key", async () => {
    const key = `missing-${randomUUID()}`;
    const missing = await post(gw.app, "/v1/payments", internal("0.000001", "acct_none"), {
      "idempotency-key": key,
    });
    expect([missing.status, missing.body.error?.code, missing.body.error?.param]).toEqual([
      400,
      "account_not_found",
      "source.account",
    ]);
    const unknownDestination = await post(
      gw.app,
      "/v1/payments",
      internal("0.000001", "acct_demo_customer", "acct_none"),
      { "idempotency-key": key },
    );
    expect([unknownDestination.status, unknownDestination.body.error?.code]).toEqual([
      400,
      "destination_not_found",
    ]);
    const corrected = await post(gw.app, "/v1/payments", internal("0.000001"), { "idempotency-key": key });
    expect([corrected.status, corrected.body.status]).toEqual([201, "succeeded"]);
    expect(await paymentsWithKey(gw.app, key)).toBe(1n);
  });

  it("keeps a final refusal of the service (402) and answers it again", async () => {
    const empty = await fundedAccount(gw.app, 1n);
    const key = `short-${randomUUID()}`;
    const first = await post(gw.app, "/v1/payments", internal("1", empty), { "idempotency-key": key });
    expect(first.status).toBe(402);
    expect(first.body.error.code).toBe("insufficient_funds");
    const again = await post(gw.app, "/v1/payments", internal("1", empty), { "idempotency-key": key });
    expect(again.status).toBe(402);
    expect(again.headers["idempotent-replayed"]).toBe("true");
    expect(again.body).toEqual(first.body);
  });

  it("a refusal that wrote nothing never takes the record another request wrote meanwhile under its key (a repeat, in another process, that made the payment)", async () => {
    // Just before the refusal's answer is kept, the other request's record arrives: written with its payment,
    // unanswered until its answer is sent.
    const meanwhile = once("INSERT INTO idempotency_keys");
    const server = await paymentsServer(gw.app, { wrap: meanwhile.wrap });
    const via = { ...gw.app, server };
    try {
      const key = `meanwhile-${randomUUID()}`;
      const body = unroutable("1");
      const tenantId = gw.app.demo!.tenantId;
      meanwhile.run = async (params) => {
        await gw.app.db.query(
          "INSERT INTO idempotency_keys (tenant_id, key, request_sha256) VALUES ($1, $2, $3)",
          [tenantId, key, params?.[2]],
        );
      };
      const first = await post(via, "/v1/payments", body, { "idempotency-key": key });
      expect([first.status, first.body.error?.code]).toEqual([422, "no_route"]);
      expect(meanwhile.run).toBeNull();
      // The record stays the other request's, for its own answer; the refusal is neither kept nor remembered.
      const [record] = await gw.app.db.query<{ response_status: number | null }>(
        "SELECT response_status FROM idempotency_keys WHERE tenant_id = $1 AND key = $2",
        [tenantId, key],
      );
      expect(record).toEqual({ response_status: null });
      const repeat = await post(via, "/v1/payments", body, { "idempotency-key": key });
      expect(repeat.headers["idempotent-replayed"]).toBeUndefined();
    } finally {
      await server.close();
    }
  });

  it("a claimed-first route's answer goes only into its own claim: a repeat that took the key over (the first taken for dead) keeps it for its own answer", async () => {
    // Just before the first request's answer is kept, a repeat (in another process) has taken the key over: its
    // claim, unanswered while it runs.
    const meanwhile = once("UPDATE idempotency_keys SET response_status");
    const server = await paymentsServer(gw.app, { wrap: meanwhile.wrap });
    const via = { ...gw.app, server };
    try {
      const tenantId = gw.app.demo!.tenantId;
      const key = `taken-over-${randomUUID()}`;
      meanwhile.run = async () => {
        await gw.app.db.query(
          `UPDATE idempotency_keys SET created_at = created_at + interval '1 minute'
           WHERE tenant_id = $1 AND key = $2`,
          [tenantId, key],
        );
      };
      const body = { asset: "USDC", kind: "customer", name: "taken over" };
      const first = await post(via, "/v1/accounts", body, { "idempotency-key": key });
      expect(first.status).toBe(201);
      expect(meanwhile.run).toBeNull();
      // The repeat's claim, still unanswered: its own answer goes there.
      const [record] = await gw.app.db.query<{ response_status: number | null }>(
        "SELECT response_status FROM idempotency_keys WHERE tenant_id = $1 AND key = $2",
        [tenantId, key],
      );
      expect(record).toEqual({ response_status: null });
    } finally {
      await server.close();
    }
  });

  it("a payment made without its key's record (the record unusable) shares a batch with a repeat whose key holds a payment: each is answered, neither fails", async () => {
    const tenantId = gw.app.demo!.tenantId;
    const source = await fundedAccount(gw.app, 10_000_000n);
    const params = (key: string) => ({
      tenantId,
      asset: "USDC",
      amount: "1",
      sourceAccountId: source,
      destination: { kind: "account" as const, accountId: "acct_demo_merchant" },
      policy: {},
      metadata: {},
      idempotencyKey: key,
      quoteId: null,
    });
    // Y: its key holds a payment already. X: its key holds only a record, unanswered past its timeout.
    const keyY = `held-${randomUUID()}`;
    const earlier = await createPayment(gw.app.payments, params(keyY));
    expect(earlier.ok).toBe(true);
    const keyX = `stale-${randomUUID()}`;
    const digest = Buffer.alloc(32, 9);
    await gw.app.db.query(
      `INSERT INTO idempotency_keys (tenant_id, key, request_sha256, created_at)
       VALUES ($1, $2, $3, now() - interval '1 hour')`,
      [tenantId, keyX, digest],
    );
    // Together, as the route asks once the record is found unusable: Y's key fails the batch's statement, and X is
    // written again with the rest — not taken for a key held because of its record.
    const [x, y] = await Promise.all([
      createPayment(gw.app.payments, { ...params(keyX), requestSha256: digest }),
      createPayment(gw.app.payments, params(keyY)),
    ]);
    expect(x.ok && x.replayed).toBe(undefined);
    expect(x.ok && x.payment.status).toBe("succeeded");
    expect(y.ok && [y.payment.id, y.replayed]).toEqual([earlier.ok && earlier.payment.id, true]);
    expect(await paymentsWithKey(gw.app, keyX)).toBe(1n);
    expect(await postedOf(gw.app, source)).toBe(8_000_000n);
  });

  it("a refusal kept by one process answers in another: the same request replayed, another body under the key refused 409", async () => {
    const a = await paymentsServer(gw.app);
    const b = await paymentsServer(gw.app);
    try {
      const key = `kept-refusal-${randomUUID()}`;
      const body = unroutable("1");
      const first = await post({ ...gw.app, server: a }, "/v1/payments", body, { "idempotency-key": key });
      expect([first.status, first.body.error?.code]).toEqual([422, "no_route"]);
      const again = await post({ ...gw.app, server: b }, "/v1/payments", body, { "idempotency-key": key });
      expect([again.status, again.headers["idempotent-replayed"]]).toEqual([422, "true"]);
      expect(again.body).toEqual(first.body);
      // Another body, refused too were it new (another amount no rail may take; the same account twice, a 400): the
      // key's.
      for (const other of [unroutable("2"), internal("1", "acct_demo_merchant")]) {
        const refused = await post({ ...gw.app, server: b }, "/v1/payments", other, {
          "idempotency-key": key,
        });
        expect([refused.status, refused.body.error?.code]).toEqual([409, "idempotency_key_reused"]);
      }
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it("a process forgets an answer before its record expires: once the key is new again (the prune), another process's use of it is answered, not a memory", async () => {
    const a = await paymentsServer(gw.app, { rememberedAnswerTtlMs: 200 });
    const b = await paymentsServer(gw.app);
    try {
      const source = await fundedAccount(gw.app, 10_000_000n);
      const key = `forgotten-${randomUUID()}`;
      const refused = await post({ ...gw.app, server: a }, "/v1/payments", unroutable("1"), {
        "idempotency-key": key,
      });
      expect(refused.status).toBe(422);
      // Its record expires (the prune deletes it), and the key, new again, pays through the other process.
      await gw.app.db.query("DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2", [
        gw.app.demo!.tenantId,
        key,
      ]);
      const paid = await post({ ...gw.app, server: b }, "/v1/payments", internal("1", source), {
        "idempotency-key": key,
      });
      expect(paid.status).toBe(201);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const again = await post({ ...gw.app, server: a }, "/v1/payments", internal("1", source), {
        "idempotency-key": key,
      });
      expect([again.status, again.body.id, again.headers["idempotent-replayed"]]).toEqual([
        201,
        paid.body.id,
        "true",
      ]);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it("a refund's retry that took over its key (the first request taken for dead) and finds less left because that request's refund was written meanwhile is answered that refund, not refused", async () => {
    const source = await fundedAccount(gw.app, 10_000_000n);
    const paid = await post(gw.app, "/v1/payments", internal("2", source), {
      "idempotency-key": `refunded-${randomUUID()}`,
    });
    expect(paid.status).toBe(201);
    const params = {
      tenantId: gw.app.demo!.tenantId,
      target: { kind: "payment" as const, paymentId: paid.body.id as string },
      amount: null,
      reason: null,
      metadata: {},
      destination: null,
      idempotencyKey: `refund-${randomUUID()}`,
      requestSha256: Buffer.alloc(32, 5),
    };
    // The retry looks the key up and finds no refund; just then the first request's refund (of all) is written.
    const db = gw.app.payments.db;
    let first: CreateRefundResult | null = null;
    const retry = await createRefund(
      {
        ...gw.app.payments,
        db: {
          ...db,
          query: (async (text: string, values?: readonly unknown[]) => {
            const rows = await db.query(text, values);
            if (first === null && text.includes("FROM refunds WHERE tenant_id = $1 AND idempotency_key = $2"))
              first = await createRefund(gw.app.payments, params);
            return rows;
          }) as Db["query"],
        },
      },
      params,
    );
    const made = first as CreateRefundResult | null;
    expect(made?.ok && made.refund.amount).toBe(2_000_000n);
    expect(retry.ok && retry.refund.id).toBe(made?.ok && made.refund.id);
    const [refunds] = await gw.app.db.query<{ count: bigint }>(
      "SELECT count(*) AS count FROM refunds WHERE payment_id = $1",
      [paid.body.id],
    );
    expect(refunds!.count).toBe(1n);
  });

  it("an answer replayed from a record is not remembered past that record: once the prune took it, the key's new use is answered", async () => {
    const [a, b, c] = await Promise.all([0, 1, 2].map(() => paymentsServer(gw.app)));
    try {
      const tenantId = gw.app.demo!.tenantId;
      const source = await fundedAccount(gw.app, 10_000_000n);
      const key = `old-replay-${randomUUID()}`;
      const refusal = unroutable("1");
      expect(
        (await post({ ...gw.app, server: a! }, "/v1/payments", refusal, { "idempotency-key": key })).status,
      ).toBe(422);
      // A minute before its 24 hours end, another process replays the record.
      await gw.app.db.query(
        `UPDATE idempotency_keys SET created_at = now() - make_interval(secs => $3::double precision / 1000) + interval '1 minute'
         WHERE tenant_id = $1 AND key = $2`,
        [tenantId, key, idempotencyRecordTtlMs],
      );
      const replayed = await post({ ...gw.app, server: b! }, "/v1/payments", refusal, {
        "idempotency-key": key,
      });
      expect([replayed.status, replayed.headers["idempotent-replayed"]]).toEqual([422, "true"]);
      // The prune takes it; the key, new again, pays through a third process; the retry of that payment through the
      // second is answered it.
      await gw.app.db.query("DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2", [
        tenantId,
        key,
      ]);
      const paid = await post({ ...gw.app, server: c! }, "/v1/payments", internal("1", source), {
        "idempotency-key": key,
      });
      expect(paid.status).toBe(201);
      const retry = await post({ ...gw.app, server: b! }, "/v1/payments", internal("1", source), {
        "idempotency-key": key,
      });
      expect([retry.status, retry.body.id]).toEqual([201, paid.body.id]);
    } finally {
      await Promise.all([a!.close(), b!.close(), c!.close()]);
    }
  });

  it("a record past its 24 hours, not pruned yet, is a new key's on a refusal too: another body gets its own answer, not 409, and keeps it", async () => {
    const server = await paymentsServer(gw.app);
    const other = await paymentsServer(gw.app);
    try {
      const tenantId = gw.app.demo!.tenantId;
      const key = `expired-refusal-${randomUUID()}`;
      const first = await post({ ...gw.app, server }, "/v1/payments", unroutable("1"), {
        "idempotency-key": key,
      });
      expect(first.status).toBe(422);
      await gw.app.db.query(
        "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE tenant_id = $1 AND key = $2",
        [tenantId, key],
      );
      const refused = await post({ ...gw.app, server: other }, "/v1/payments", unroutable("2"), {
        "idempotency-key": key,
      });
      expect([refused.status, refused.body.error?.code]).toEqual([422, "no_route"]);
      // Its answer is kept, taking the expired record over: a retry of it is replayed, the first body refused 409.
      const [record] = await gw.app.db.query<{ response_status: number; fresh: boolean }>(
        `SELECT response_status, created_at > now() - interval '1 minute' AS fresh FROM idempotency_keys
         WHERE tenant_id = $1 AND key = $2`,
        [tenantId, key],
      );
      expect(record).toEqual({ response_status: 422, fresh: true });
      const firstAgain = await post({ ...gw.app, server: other }, "/v1/payments", unroutable("1"), {
        "idempotency-key": key,
      });
      expect([firstAgain.status, firstAgain.body.error?.code]).toEqual([409, "idempotency_key_reused"]);
    } finally {
      // The expired record goes, as the prune would take it (the prune's own test counts what it deletes).
      await gw.app.db.query("DELETE FROM idempotency_keys WHERE created_at < now() - interval '24 hours'");
      await Promise.all([server.close(), other.close()]);
    }
  });

  it("a key whose record is unusable, paid meanwhile by another body in another process: this request is refused 409, not answered that payment", async () => {
    // Just after this request's route finds the key's record unusable, and before it asks for the payment, another
    // process pays another body under the key.
    const meanwhile = once("FROM idempotency_keys WHERE tenant_id = $1 AND key = $2", "after");
    const server = await paymentsServer(gw.app, { wrap: meanwhile.wrap });
    try {
      const tenantId = gw.app.demo!.tenantId;
      const source = await fundedAccount(gw.app, 10_000_000n);
      const key = `paid-meanwhile-${randomUUID()}`;
      // The request's digest, as a payment made under another key keeps it.
      const earlier = await post({ ...gw.app, server }, "/v1/payments", internal("1", source), {
        "idempotency-key": `paid-earlier-${randomUUID()}`,
      });
      expect(earlier.status).toBe(201);
      const [made] = await gw.app.db.query<{ request_sha256: Uint8Array }>(
        "SELECT request_sha256 FROM payments WHERE id = $1",
        [earlier.body.id],
      );
      // The key's record: of this request, unanswered past the in-progress timeout (its request died), and no
      // payment under the key. It holds the key against the payment's write, and its route finds it unusable. (One
      // past its 24 hours holds nothing: the payment is written with the key at once, expired-key-records.test.ts.)
      await gw.app.db.query(
        `INSERT INTO idempotency_keys (tenant_id, key, request_sha256, created_at)
         VALUES ($1, $2, $3, now() - interval '1 hour')`,
        [tenantId, key, made!.request_sha256],
      );
      let other: CreatePaymentResult | null = null;
      meanwhile.run = async () => {
        other = await createPayment(gw.app.payments, {
          tenantId,
          asset: "USDC",
          amount: "2",
          sourceAccountId: source,
          destination: { kind: "account", accountId: "acct_demo_merchant" },
          policy: {},
          metadata: {},
          idempotencyKey: key,
          quoteId: null,
          requestSha256: Buffer.alloc(32, 1),
        });
      };
      const refused = await post({ ...gw.app, server }, "/v1/payments", internal("1", source), {
        "idempotency-key": key,
      });
      expect((other as CreatePaymentResult | null)?.ok).toBe(true);
      expect([refused.status, refused.body.error?.code]).toEqual([409, "idempotency_key_reused"]);
      expect(await paymentsWithKey(gw.app, key)).toBe(1n);
      // The earlier payment's 1 and the other body's 2.
      expect(await postedOf(gw.app, source)).toBe(7_000_000n);
    } finally {
      await server.close();
    }
  });

  it("a request's digest, kept on its payment for good (migration 0030), is the same as ever: a change to its recipe, or to what the schema makes of a body, needs a recipe version", async () => {
    const key = `frozen-${randomUUID()}`;
    const body = {
      amount: "0.000001",
      asset: "USDC",
      source: { account: "acct_demo_customer" },
      destination: { type: "account", account: "acct_demo_merchant" },
      metadata: { order: "42" },
    };
    const paid = await post(gw.app, "/v1/payments", body, { "idempotency-key": key });
    expect(paid.status).toBe(201);
    const [made] = await gw.app.db.query<{ request_sha256: Uint8Array }>(
      "SELECT request_sha256 FROM payments WHERE id = $1",
      [paid.body.id],
    );
    expect(Buffer.from(made!.request_sha256).toString("hex")).toBe(frozenPaymentDigest);
  });

  it("treats a key older than 24 hours as new, and the prune deletes records past their 24 hours", async () => {
    const key = `old-${randomUUID()}`;
    const body = { name: "Old key", methods: [{ type: "account", account: "acct_demo_merchant" }] };
    const first = await post(gw.app, "/v1/payees", body, { "idempotency-key": key });
    expect(first.status).toBe(201);
    const replay = await post(gw.app, "/v1/payees", body, { "idempotency-key": key });
    expect(replay.body.id).toBe(first.body.id);
    const ageBack = `UPDATE idempotency_keys SET created_at = now() - make_interval(secs => $2::double precision / 1000)
       WHERE key = $1`;
    await gw.app.db.query(ageBack, [key, idempotencyRecordTtlMs + 60_000]);
    // Another request under the old key: a new key's, so it runs (not 409 idempotency_key_reused).
    const other = await post(
      gw.app,
      "/v1/payees",
      { ...body, name: "New under the old key" },
      { "idempotency-key": key },
    );
    expect(other.status).toBe(201);
    expect(other.headers["idempotent-replayed"]).toBeUndefined();
    expect(other.body.id).not.toBe(first.body.id);
    // The prune: only records past their 24 hours go.
    const fresh = `fresh-${randomUUID()}`;
    expect((await post(gw.app, "/v1/payees", body, { "idempotency-key": fresh })).status).toBe(201);
    await gw.app.db.query(ageBack, [key, idempotencyRecordTtlMs + 60_000]);
    expect(await pruneIdempotencyRecords(gw.app.db, { ttlMs: idempotencyRecordTtlMs, batchMax: 1 })).toBe(1);
    const left = await gw.app.db.query<{ key: string }>(
      "SELECT key FROM idempotency_keys WHERE key = ANY($1::text[])",
      [`{${key},${fresh}}`],
    );
    expect(left.map((row) => row.key)).toEqual([fresh]);
  });

  it("prunes for at most one pass's time: a pass cut short keeps what it deleted, the next deletes the rest", async () => {
    const keys = [1, 2, 3].map((n) => `bounded-${n}-${randomUUID()}`);
    const body = { name: "Pruned key", methods: [{ type: "account", account: "acct_demo_merchant" }] };
    for (const key of keys)
      expect((await post(gw.app, "/v1/payees", body, { "idempotency-key": key })).status).toBe(201);
    await gw.app.db.query(
      `UPDATE idempotency_keys SET created_at = now() - make_interval(secs => $2::double precision / 1000)
        WHERE key = ANY($1::text[])`,
      [`{${keys.join(",")}}`, idempotencyRecordTtlMs + 60_000],
    );
    // A clock an hour later at each reading: the pass is over after its first statement.
    let atMs = 0;
    const nowMs = () => (atMs += 3_600_000);
    // Before: nowMs was not read and the loop ran until a statement deleted fewer than batchMax (3 here).
    expect(
      await pruneIdempotencyRecords(gw.app.db, { ttlMs: idempotencyRecordTtlMs, batchMax: 1, nowMs }),
    ).toBe(1);
    expect(
      await pruneIdempotencyRecords(gw.app.db, { ttlMs: idempotencyRecordTtlMs, batchMax: 1 }),
    ).toBeGreaterThanOrEqual(2);
    const left = await gw.app.db.query("SELECT 1 FROM idempotency_keys WHERE key = ANY($1::text[])", [
      `{${keys.join(",")}}`,
    ]);
    expect(left).toHaveLength(0);
  });

  it("an internal payment keeps its key's answer itself, no record beside it: another process replays it and refuses another body 409, and the key is held against other routes for 24 hours, both ways", async () => {
    const source = await fundedAccount(gw.app, 10_000_000n);
    const key = `kept-${randomUUID()}`;
    const body = internal("1", source);
    const first = await post(gw.app, "/v1/payments", body, { "idempotency-key": key });
    expect(first.status).toBe(201);
    const [row] = await gw.app.db.query<{ records: bigint }>(
      "SELECT count(*) AS records FROM idempotency_keys WHERE key = $1",
      [key],
    );
    expect(row!.records).toBe(0n);
    const server = await paymentsServer(gw.app); // another process: nothing of this key remembered
    const other = { ...gw.app, server };
    const payee = {
      name: "Under a payment's key",
      methods: [{ type: "account", account: "acct_demo_merchant" }],
    };
    try {
      const replay = await post(other, "/v1/payments", body, { "idempotency-key": key });
      expect([replay.status, replay.headers["idempotent-replayed"], replay.body.id]).toEqual([
        201,
        "true",
        first.body.id,
      ]);
      const another = await post(other, "/v1/payments", internal("2", source), { "idempotency-key": key });
      expect([another.status, another.body.error?.code]).toEqual([409, "idempotency_key_reused"]);
      // A claimed-first route under the payment's key is refused as under a record's.
      const refused = await post(other, "/v1/payees", payee, { "idempotency-key": key });
      expect([refused.status, refused.body.error?.code]).toEqual([409, "idempotency_key_reused"]);
      // And a payment under a key another route's record holds.
      const payeeKey = `kept-payee-${randomUUID()}`;
      expect((await post(other, "/v1/payees", payee, { "idempotency-key": payeeKey })).status).toBe(201);
      const underPayee = await post(gw.app, "/v1/payments", body, { "idempotency-key": payeeKey });
      expect([underPayee.status, underPayee.body.error?.code]).toEqual([409, "idempotency_key_reused"]);
      expect(await paymentsWithKey(gw.app, payeeKey)).toBe(0n);
      // 24 hours on, the key is a new key's for another route, as a record's would be.
      await gw.app.db.query(
        "UPDATE payments SET created_at = created_at - interval '25 hours' WHERE idempotency_key = $1",
        [key],
      );
      const taken = await post(other, "/v1/payees", payee, { "idempotency-key": key });
      expect([taken.status, taken.headers["idempotent-replayed"]]).toEqual([201, undefined]);
    } finally {
      await server.close();
    }
    expect(await paymentsWithKey(gw.app, key)).toBe(1n);
    expect(await postedOf(gw.app, source)).toBe(9_000_000n);
  });

  it("an internal payment and another body's refusal kept under its key at the same moment (two processes, neither seeing the other's row): each request is answered its own first answer again", async () => {
    const source = await fundedAccount(gw.app, 10_000_000n);
    const tenantId = gw.app.demo!.tenantId;
    const key = `raced-${randomUUID()}`;
    const body = internal("1", source);
    const refusedBody = unroutable("1");
    const paid = await post(gw.app, "/v1/payments", body, { "idempotency-key": key });
    expect(paid.status).toBe(201);
    // The refusal as the other process kept it: made here under a key of its own, its record then moved to this key.
    const elsewhere = `raced-elsewhere-${randomUUID()}`;
    const refused = await post(gw.app, "/v1/payments", refusedBody, { "idempotency-key": elsewhere });
    expect([refused.status, refused.body.error?.code]).toEqual([422, "no_route"]);
    const moved = await gw.app.db.query(
      "UPDATE idempotency_keys SET key = $3 WHERE tenant_id = $1 AND key = $2 RETURNING 1",
      [tenantId, elsewhere, key],
    );
    expect(moved).toHaveLength(1);
    const server = await paymentsServer(gw.app); // another process: nothing of this key remembered
    const other = { ...gw.app, server };
    try {
      const payment = await post(other, "/v1/payments", body, { "idempotency-key": key });
      expect([payment.status, payment.headers["idempotent-replayed"], payment.body.id]).toEqual([
        201,
        "true",
        paid.body.id,
      ]);
      const again = await post(other, "/v1/payments", refusedBody, { "idempotency-key": key });
      expect([again.status, again.headers["idempotent-replayed"], again.body.error?.code]).toEqual([
        422,
        "true",
        "no_route",
      ]);
    } finally {
      await server.close();
    }
    expect(await paymentsWithKey(gw.app, key)).toBe(1n);
    expect(await postedOf(gw.app, source)).toBe(9_000_000n);
  });

  it("one key, 50 concurrent requests: one payment, the money moved once", async () => {
    const source = await fundedAccount(gw.app, 10_000_000n);
    const key = `fifty-${randomUUID()}`;
    const answers = await Promise.all(
      Array.from({ length: 50 }, () =>
        post(gw.app, "/v1/payments", internal("1", source), { "idempotency-key": key }),
      ),
    );
    const statuses = new Set(answers.map((answer) => answer.status));
    expect([...statuses].every((status) => status === 201 || status === 409)).toBe(true);
    const paid = answers.filter((answer) => answer.status === 201);
    expect(paid.length).toBeGreaterThanOrEqual(1);
    expect(new Set(paid.map((answer) => answer.body.id)).size).toBe(1);
    for (const refused of answers.filter((answer) => answer.status === 409))
      expect(refused.body.error.code).toBe("idempotency_key_in_use");
    expect(await paymentsWithKey(gw.app, key)).toBe(1n);
    expect(await postedOf(gw.app, source)).toBe(9_000_000n);
  });

  it("answers a key whose remembered answer was forgotten (rememberedAnswersMax) from its record: replayed, or refused 409", async () => {
    const statements: string[] = [];
    const server = await paymentsServer(gw.app, { rememberedAnswersMax: 2, statements });
    const via = { ...gw.app, server };
    try {
      const source = await fundedAccount(gw.app, 10_000_000n);
      const empty = await fundedAccount(gw.app, 1n);
      const keys = Array.from({ length: 4 }, (_, i) => `forgotten-${i}-${randomUUID()}`);
      const bodies = [
        internal("1", source),
        internal("1", empty),
        internal("2", source),
        internal("3", source),
      ];
      const firsts = [];
      for (const [i, key] of keys.entries())
        firsts.push(await post(via, "/v1/payments", bodies[i], { "idempotency-key": key }));
      expect(firsts.map((answer) => answer.status)).toEqual([201, 402, 201, 201]);
      /**
       * The answer to `body` under the i-th key, and whether it asked for the key's record (not a remembered answer,
       * which is the payment's id: its payment read back, and nothing else).
       */
      const again = async (i: number, body: unknown) => {
        statements.length = 0;
        const answer = await post(via, "/v1/payments", body, { "idempotency-key": keys[i]! });
        // A read of the payment: its row (its shared decision read with it), its attempts.
        const readsPayment = (text: string) =>
          /^\s*SELECT\b/.test(text) &&
          [...text.matchAll(/\bFROM\s+(\w+)/g)].every((from) =>
            ["payments", "attempts", "route_decisions"].includes(from[1]!),
          );
        const asked = statements.filter((text) => !readsPayment(text));
        return { ...answer, asked: asked.length > 0 };
      };
      // The last two answers are remembered: replayed from their payments, without asking for the key's record.
      for (const i of [3, 2]) {
        const replay = await again(i, bodies[i]);
        expect([replay.status, replay.body, replay.headers["idempotent-replayed"], replay.asked]).toEqual([
          firsts[i]!.status,
          firsts[i]!.body,
          "true",
          false,
        ]);
      }
      // The first two were forgotten: another body is refused from the record, the same body replayed from it.
      for (const i of [0, 1]) {
        const reused = await again(i, internal("5", source));
        expect([reused.status, reused.body.error.code, reused.asked]).toEqual([
          409,
          "idempotency_key_reused",
          true,
        ]);
        const replay = await again(i, bodies[i]);
        expect([replay.status, replay.body, replay.headers["idempotent-replayed"], replay.asked]).toEqual([
          firsts[i]!.status,
          firsts[i]!.body,
          "true",
          true,
        ]);
      }
      // Each payment made once, the money moved once: 1 + 2 + 3 USDC.
      for (const i of [0, 2, 3]) expect(await paymentsWithKey(gw.app, keys[i]!)).toBe(1n);
      expect(await postedOf(gw.app, source)).toBe(4_000_000n);
    } finally {
      await server.close();
    }
  });

  it("a payment's key whose record is gone (the prune, or a server error's answer): its request answers the payment, another is refused 409", async () => {
    const server = await paymentsServer(gw.app, { rememberedAnswersMax: 1 });
    const via = { ...gw.app, server };
    try {
      const source = await fundedAccount(gw.app, 10_000_000n);
      const key = `gone-${randomUUID()}`;
      const body = internal("1", source);
      const first = await post(via, "/v1/payments", body, { "idempotency-key": key });
      expect(first.status).toBe(201);
      // Another payment's answer is the one remembered now (rememberedAnswersMax 1); the record goes.
      const other = await post(via, "/v1/payments", internal("1", source), {
        "idempotency-key": `o-${randomUUID()}`,
      });
      expect(other.status).toBe(201);
      await gw.app.db.query("DELETE FROM idempotency_keys WHERE key = $1", [key]);
      const reused = await post(via, "/v1/payments", internal("5", source), { "idempotency-key": key });
      expect([reused.status, reused.body.error?.code]).toEqual([409, "idempotency_key_reused"]);
      const again = await post(via, "/v1/payments", body, { "idempotency-key": key });
      expect([again.status, again.body.id, again.body.status]).toEqual([201, first.body.id, "succeeded"]);
      expect(again.headers["idempotent-replayed"]).toBe("true");
      expect(await paymentsWithKey(gw.app, key)).toBe(1n);
      expect(await postedOf(gw.app, source)).toBe(8_000_000n);
    } finally {
      await server.close();
    }
  });
  it("a key whose record died unanswered before any payment was made: the payment made now keeps its request's digest, so another body under the key is refused 409 once the record is gone", async () => {
    const server = await paymentsServer(gw.app);
    const via = { ...gw.app, server };
    try {
      const tenantId = gw.app.demo!.tenantId;
      const source = await fundedAccount(gw.app, 10_000_000n);
      const body = internal("1", source);
      // The request's digest, as a payment made under another key keeps it.
      const earlier = await post(via, "/v1/payments", body, { "idempotency-key": `d-${randomUUID()}` });
      expect(earlier.status).toBe(201);
      const [made] = await gw.app.db.query<{ request_sha256: Uint8Array }>(
        "SELECT request_sha256 FROM payments WHERE id = $1",
        [earlier.body.id],
      );
      // Under the key: a record of the same request, unanswered past the in-progress timeout, and no payment.
      const key = `died-${randomUUID()}`;
      await gw.app.db.query(
        `INSERT INTO idempotency_keys (tenant_id, key, request_sha256, created_at)
         VALUES ($1, $2, $3, now() - interval '1 hour')`,
        [tenantId, key, made!.request_sha256],
      );
      const paid = await post(via, "/v1/payments", body, { "idempotency-key": key });
      expect(paid.status).toBe(201);
      expect(paid.body.id).not.toBe(earlier.body.id);
      expect(paid.headers["idempotent-replayed"]).toBeUndefined();
      // The record goes (the prune); asked through another process, which remembers nothing of the key.
      await gw.app.db.query("DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2", [
        tenantId,
        key,
      ]);
      const fresh = await paymentsServer(gw.app);
      const other = await post({ ...gw.app, server: fresh }, "/v1/payments", internal("2", source), {
        "idempotency-key": key,
      }).finally(() => fresh.close());
      expect([other.status, other.body.error?.code]).toEqual([409, "idempotency_key_reused"]);
      const again = await post(via, "/v1/payments", body, { "idempotency-key": key });
      expect([again.status, again.body.id]).toEqual([201, paid.body.id]);
      expect(await paymentsWithKey(gw.app, key)).toBe(1n);
      expect(await postedOf(gw.app, source)).toBe(8_000_000n);
    } finally {
      await server.close();
    }
  });
});

describe("two processes on one PostgreSQL database", () => {
  let a: App;
  let b: App;
  beforeAll(async () => {
    const url = await createTestDatabase(inject("postgresUrl"), "http_idem");
    const env = { LOG_LEVEL: "silent", PORT: "0", DATABASE_URL: url };
    a = await createApp(testConfig(env));
    b = await createApp(testConfig(env));
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  it("one key, 50 concurrent requests split between the processes: one payment", async () => {
    const source = await fundedAccount(a, 10_000_000n);
    const key = `fifty-across-${randomUUID()}`;
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        post(i % 2 === 0 ? a : b, "/v1/payments", internal("1", source), { "idempotency-key": key }),
      ),
    );
    const paid = answers.filter((answer) => answer.status === 201);
    expect(paid.length).toBeGreaterThanOrEqual(1);
    expect(new Set(paid.map((answer) => answer.body.id)).size).toBe(1);
    expect(answers.every((answer) => answer.status === 201 || answer.status === 409)).toBe(true);
    expect(await paymentsWithKey(a, key)).toBe(1n);
    expect(await postedOf(a, source)).toBe(9_000_000n);
  });

  it("concurrent payments above the balance through both processes never overdraw", async () => {
    const funds = 10_000_000n; // 10 USDC
    const source = await fundedAccount(a, funds);
    const attempts = 60; // 60 × 0.7 USDC = 42 USDC asked of 10
    const answers = await Promise.all(
      Array.from({ length: attempts }, (_, i) =>
        post(i % 2 === 0 ? a : b, "/v1/payments", internal("0.7", source), {
          "idempotency-key": `over-${randomUUID()}`,
        }),
      ),
    );
    for (const answer of answers) expect([201, 402]).toContain(answer.status);
    const succeeded = answers.filter((answer) => answer.status === 201);
    const spent = BigInt(succeeded.length) * 700_000n;
    expect(spent).toBeLessThanOrEqual(funds);
    expect(succeeded.length).toBe(14); // floor(10 / 0.7): every payment that fits is made
    const balance = await postedOf(a, source);
    expect(balance).toBeGreaterThanOrEqual(0n);
    expect(balance).toBe(funds - spent);
    for (const refused of answers.filter((answer) => answer.status === 402))
      expect(refused.body.error.code).toBe("insufficient_funds");
  });
});
