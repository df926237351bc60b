// The hot path of issue #19: internal payments that arrive together share one database transaction (group commit
// on the whole payment: idempotency record, payment, attempt, ledger transfer, event), each answered with its own
// result; one short payer fails alone; the Idempotency-Key holds across processes.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { assets } from "../../core/index.ts";
import { createAccount } from "../../gateway/accounts/index.ts";
import { loadConfig } from "../../gateway/app/config.ts";
import { type App, createApp } from "../../gateway/app.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { startTestGateway, type TestGateway } from "./support.ts";

const internal = (amount: string, source = "acct_demo_customer", destination = "acct_demo_merchant") => ({
  amount,
  asset: "USDC",
  source: { account: source },
  destination: { type: "account", account: destination },
});

describe.each(["pglite", "postgres"] as const)("on %s", (database) => {
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startTestGateway({ database });
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  it("writes internal payments that arrive together in one transaction, each answered with its own", async () => {
    const count = 40;
    const responses = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        gw.call("POST", "/v1/payments", {
          body: { ...internal("0.000001"), metadata: { n: String(i) } },
          headers: { "idempotency-key": `together-${database}-${i}` },
        }),
      ),
    );
    for (const [i, response] of responses.entries()) {
      expect(response.status).toBe(201);
      expect(response.body).toMatchObject({
        status: "succeeded",
        rail: "internal-usdc",
        metadata: { n: String(i) },
      });
    }
    const ids = responses.map((response) => response.body.id as string);
    expect(new Set(ids).size).toBe(count);
    // Rows written by one transaction share its id (xmin): far fewer transactions than payments.
    const [row] = await gw.app.db.query<{ transactions: bigint; events: bigint; records: bigint }>(
      `SELECT (SELECT count(DISTINCT xmin::text) FROM payments WHERE id = ANY($1::text[])) AS transactions,
              (SELECT count(*) FROM outbox WHERE type = 'payment.succeeded' AND payload->>'payment_id' = ANY($1::text[])) AS events,
              (SELECT count(*) FROM idempotency_keys WHERE key LIKE $2 AND response_status = 201) AS records`,
      [ids, `together-${database}-%`],
    );
    expect(row!.transactions).toBeLessThanOrEqual(BigInt(count / 4));
    expect(row!.events).toBe(BigInt(count));
    expect(row!.records).toBe(BigInt(count));
    // What each was answered is what GET reads back.
    const fetched = await gw.call("GET", `/v1/payments/${ids[7]}`);
    expect(fetched.body).toEqual(responses[7]!.body);
  });

  it("fails a short payer alone: its neighbours in the batch succeed and its refusal is kept for its key", async () => {
    const app = gw.app;
    const tenantId = app.demo!.tenantId;
    const empty = await createAccount(
      { sql: app.db, ledger: app.ledger },
      { tenantId, kind: "customer", asset: assets.USDC, name: "empty" },
    );
    const transfersBefore = await gw.ledgerTransferCount();
    const calls = [
      gw.call("POST", "/v1/payments", { body: internal("0.000002") }),
      gw.call("POST", "/v1/payments", {
        body: internal("1", empty.id),
        headers: { "idempotency-key": `short-${database}` },
      }),
      gw.call("POST", "/v1/payments", { body: internal("0.000003") }),
    ];
    const [left, short, right] = await Promise.all(calls);
    expect(left!.status).toBe(201);
    expect(right!.status).toBe(201);
    expect(short!.status).toBe(402);
    expect(short!.body.error.code).toBe("insufficient_funds");
    expect(short!.body.error.payment).toMatchObject({ status: "failed", attempts: [{ status: "failed" }] });
    expect(await gw.ledgerTransferCount()).toBe(transfersBefore + 2n);
    const again = await gw.call("POST", "/v1/payments", {
      body: internal("1", empty.id),
      headers: { "idempotency-key": `short-${database}` },
    });
    expect(again.status).toBe(402);
    expect(again.headers["idempotent-replayed"]).toBe("true");
    expect(again.body).toEqual(short!.body);
  });

  it("refuses a key in flight in this process, and replays it once answered", async () => {
    const headers = { "idempotency-key": `flight-${database}` };
    const [first, second] = await Promise.all([
      gw.call("POST", "/v1/payments", { body: internal("0.000001"), headers }),
      gw.call("POST", "/v1/payments", { body: internal("0.000001"), headers }),
    ]);
    const statuses = [first!.status, second!.status].sort();
    expect(statuses).toEqual([201, 409]);
    const refused = first!.status === 409 ? first! : second!;
    expect(refused.body.error.code).toBe("idempotency_key_in_use");
    const answered = first!.status === 201 ? first! : second!;
    const replay = await gw.call("POST", "/v1/payments", { body: internal("0.000001"), headers });
    expect(replay.status).toBe(201);
    expect(replay.body).toEqual(answered.body);
  });
});

describe("two processes on one PostgreSQL database", () => {
  let a: App;
  let b: App;
  beforeAll(async () => {
    const url = await createTestDatabase(inject("postgresUrl"), "http_two");
    const env = { LOG_LEVEL: "silent", PORT: "0", DATABASE_URL: url };
    a = await createApp(loadConfig(env));
    b = await createApp(loadConfig(env));
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  const pay = (app: App, body: unknown, key: string) =>
    app.server.inject({
      method: "POST",
      url: "/v1/payments",
      headers: {
        authorization: `Bearer ${app.demo!.apiKey}`,
        "content-type": "application/json",
        "idempotency-key": key,
      },
      payload: JSON.stringify(body),
    });

  it("replays a key answered by the other process, refuses it with another body, and pays once", async () => {
    const first = await pay(a, internal("0.000005"), "across-1");
    expect(first.statusCode).toBe(201);
    // b has never seen the key: its write finds it taken and answers from the stored record.
    const replay = await pay(b, internal("0.000005"), "across-1");
    expect(replay.statusCode).toBe(201);
    expect(replay.headers["idempotent-replayed"]).toBe("true");
    expect(replay.json()).toEqual(first.json());
    const other = await pay(b, internal("0.000006"), "across-1");
    expect(other.statusCode).toBe(409);
    expect(other.json().error.code).toBe("idempotency_key_reused");
    const [row] = await a.db.query<{ payments: bigint }>(
      "SELECT count(*) AS payments FROM payments WHERE idempotency_key = 'across-1'",
    );
    expect(row!.payments).toBe(1n);
  });

  it("pays once when both processes take the same key at the same time, and keeps neighbours in the batch", async () => {
    const keys = Array.from({ length: 10 }, (_, i) => `race-${i}`);
    const responses = await Promise.all(
      keys.flatMap((key) => [pay(a, internal("0.000001"), key), pay(b, internal("0.000001"), key)]),
    );
    for (const response of responses) expect([201, 409]).toContain(response.statusCode);
    for (let i = 0; i < keys.length; i += 1) {
      const pair = [responses[2 * i]!, responses[2 * i + 1]!];
      expect(pair.some((response) => response.statusCode === 201)).toBe(true);
      const ids = new Set(pair.filter((r) => r.statusCode === 201).map((r) => r.json().id));
      expect(ids.size).toBe(1);
    }
    const [row] = await a.db.query<{ payments: bigint }>(
      "SELECT count(*) AS payments FROM payments WHERE idempotency_key LIKE 'race-%'",
    );
    expect(row!.payments).toBe(BigInt(keys.length));
  });
});
