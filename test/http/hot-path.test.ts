// The hot path of issue #19: internal payments that arrive together share one database transaction (group commit
// on the whole payment: idempotency record, payment, ledger transfer, event; its one attempt is made from the payment
// when read), each answered with its own result; one short payer fails alone; the Idempotency-Key holds across
// processes.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { assets } from "../../core/index.ts";
import { createAccount } from "../../gateway/accounts/index.ts";
import { type App, createApp } from "../../gateway/app.ts";
import { presentPayment } from "../../gateway/http/present.ts";
import { answerOf } from "../../gateway/http/resources/payments.ts";
import { newId } from "../../gateway/ids/index.ts";
import { type AttemptRow, attemptColumns, attemptFromRow, getPayment } from "../../gateway/payments/store.ts";
import { typedClient } from "../support/api.ts";
import { testConfig } from "../support/config.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { errorOf, startTestGateway, type TestGateway } from "./support.ts";

const internal = (amount: string, source = "acct_demo_customer", destination = "acct_demo_merchant") => ({
  amount,
  asset: "USDC" as const,
  source: { account: source },
  destination: { type: "account" as const, account: destination },
});

// PGlite as configured by default (on a worker thread of its own: each exchange with the database crosses threads), and
// on the HTTP thread itself (PGLITE_THREAD=off).
describe.each<{ on: string; database: "pglite" | "postgres"; env: Record<string, string> }>([
  { on: "pglite", database: "pglite", env: {} },
  { on: "pglite on the HTTP thread", database: "pglite", env: { PGLITE_THREAD: "off" } },
  { on: "postgres", database: "postgres", env: {} },
])("on $on", ({ database, env }) => {
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startTestGateway({ database, env });
  });
  afterAll(async () => {
    await gw?.app.close();
  });
  /** A USDC account of the demo tenant with nothing in it: its payments fail for their funds. */
  const emptyAccount = (name: string) =>
    createAccount(
      { sql: gw.app.db, ledger: gw.app.ledger },
      { tenantId: gw.app.demo!.tenantId, kind: "customer", asset: assets.USDC, name },
    );

  it("writes internal payments that arrive together in one transaction, each answered with its own", async () => {
    const count = 40;
    const responses = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        gw.client.POST("/v1/payments", {
          // Three amounts: three routing decisions in one batch, each payment keeping its own.
          body: { ...internal(`0.00000${1 + (i % 3)}`), metadata: { n: String(i) } },
          params: { header: { "Idempotency-Key": `together-${database}-${i}` } },
        }),
      ),
    );
    for (const [i, response] of responses.entries()) {
      expect(response.response.status).toBe(201);
      expect(response.data!).toMatchObject({
        status: "succeeded",
        rail: "internal-usdc",
        metadata: { n: String(i) },
      });
    }
    const ids = responses.map((response) => response.data!.id);
    expect(new Set(ids).size).toBe(count);
    // Rows written by one transaction share its id (xmin): far fewer transactions than payments.
    const [row] = await gw.app.db.query<{
      transactions: bigint;
      events: bigint;
      records: bigint;
      kept: bigint;
    }>(
      `SELECT (SELECT count(DISTINCT xmin::text) FROM payments WHERE id = ANY($1::text[])) AS transactions,
              (SELECT count(*) FROM outbox WHERE type = 'payment.succeeded' AND payload->>'payment_id' = ANY($1::text[])) AS events,
              (SELECT count(*) FROM idempotency_keys WHERE key LIKE $2) AS records,
              (SELECT count(*) FROM payments WHERE id = ANY($1::text[]) AND idempotency_key LIKE $2
                 AND request_sha256 IS NOT NULL) AS kept`,
      [ids, `together-${database}-%`],
    );
    expect(row!.transactions).toBeLessThanOrEqual(BigInt(count / 4));
    // Each payment's event is named by the payment id's characters, and found by that name.
    const event = await gw.client.GET("/v1/events/{id}", {
      params: { path: { id: `evt_${ids[3]!.slice("pay_".length)}` } },
    });
    expect([event.response.status, event.data?.type, event.data?.data.object]).toMatchObject([
      200,
      "payment.succeeded",
      { payment_id: ids[3], status: "succeeded", asset: "USDC" },
    ]);
    expect(row!.events).toBe(BigInt(count));
    // Each keeps its key's answer itself (its key, its request's digest, its status): no record beside it.
    expect([row!.kept, row!.records]).toEqual([BigInt(count), 0n]);
    // Payments routed alike keep their decision once (route_decisions, migration 0041): three amounts, three decisions,
    // none kept on a payment's own row.
    const [kept] = await gw.app.db.query<{ digests: bigint; shared: bigint; inline: bigint }>(
      `SELECT count(DISTINCT p.decision_digest) AS digests, count(DISTINCT d.digest) AS shared, count(p.decision) AS inline
       FROM payments p LEFT JOIN route_decisions d ON d.digest = p.decision_digest WHERE p.id = ANY($1::text[])`,
      [ids],
    );
    expect(kept).toEqual({ digests: 3n, shared: 3n, inline: 0n });
    // What each was answered is what GET reads back, its route (the decision it was written with) and its attempt
    // (which has no row: made again from the payment) included.
    for (const i of [7, 8, 9]) {
      const fetched = await gw.client.GET("/v1/payments/{id}", { params: { path: { id: ids[i]! } } });
      expect(fetched.data!).toEqual(responses[i]!.data!);
      expect(fetched.data!.route?.candidates[0]?.amount).toBe(`0.00000${1 + (i % 3)}`);
      expect(fetched.data!.attempts).toMatchObject([
        {
          id: `att_${ids[i]!.slice("pay_".length)}`,
          status: "succeeded",
          rail: "internal-usdc",
          fee: "0.000000",
        },
      ]);
    }
    const [attemptRows] = await gw.app.db.query<{ attempts: bigint }>(
      "SELECT count(*) AS attempts FROM attempts WHERE payment_id = ANY($1::text[])",
      [ids],
    );
    expect(attemptRows!.attempts).toBe(0n);
  });

  it("reads an internal payment's attempt from its row when it has one (written before attempts were left out)", async () => {
    const made = await gw.client.POST("/v1/payments", {
      body: internal("0.000001"),
      params: { header: { "Idempotency-Key": `with-row-${database}` } },
    });
    const payment = made.data!;
    const made0 = payment.attempts[0]!;
    // The row such a payment was written with: its attempt's own id, whose bits named the transfer.
    const rowId = "att_01hzzzzzzzzzzzzzzzzzzzzzzz";
    await gw.app.db.query(
      `INSERT INTO attempts (id, payment_id, seq, rail, status, amount, fee_max, fee, reserve_transfer_id,
         own_transfer_id, evidence)
       VALUES ($1, $2, 0, $3, 'succeeded', 1, 0, 0, 12345, true, '{"rail":"internal"}')`,
      [rowId, payment.id, made0.rail],
    );
    const fetched = await gw.client.GET("/v1/payments/{id}", { params: { path: { id: payment.id } } });
    expect(fetched.data!.attempts.map((attempt) => [attempt.id, attempt.status])).toEqual([
      [rowId, "succeeded"],
    ]);
    const { attempts: _fetched, ...rest } = fetched.data!;
    const { attempts: _made, ...made1 } = payment;
    expect(rest).toEqual(made1);
  });

  it("lists every attempt in SQL (payment_attempts): the table's rows, and those internal payments have none for", async () => {
    const empty = await emptyAccount("empty for the view");
    const [paid, short, withRow] = await Promise.all([
      gw.client.POST("/v1/payments", { body: internal("0.000005") }),
      gw.client.POST("/v1/payments", { body: internal("3", empty.id) }),
      gw.client.POST("/v1/payments", { body: internal("0.000006") }),
    ]);
    const ids = [paid.data!.id, (errorOf(short).payment as { id: string }).id, withRow.data!.id];
    // An internal payment with a row of its own (written before attempts were left out): the row, not a made one.
    const rowId = "att_01hyyyyyyyyyyyyyyyyyyyyyyy";
    await gw.app.db.query(
      `INSERT INTO attempts (id, payment_id, seq, rail, status, amount, fee_max, fee, reserve_transfer_id,
         own_transfer_id, evidence)
       VALUES ($1, $2, 0, $3, 'succeeded', 6, 0, 0, 54321, true, '{"rail":"internal"}')`,
      [rowId, ids[2], withRow.data!.attempts[0]!.rail],
    );
    const tenantId = gw.app.demo!.tenantId;
    const listed = [];
    for (const id of ids) {
      const payment = (await getPayment(gw.app.db, { tenantId, id }))!;
      const rows = await gw.app.db.query<AttemptRow>(
        `SELECT ${attemptColumns} FROM payment_attempts WHERE payment_id = $1 ORDER BY seq`,
        [id],
      );
      // What the API reads, field for field: ids, amounts, the reservation's 128 bits, evidence, the failure.
      expect(rows.map(attemptFromRow)).toEqual(payment.attempts);
      listed.push(...rows.map((row) => [row.id, row.status, row.failure_code]));
    }
    expect(listed).toEqual([
      [`att_${ids[0]!.slice("pay_".length)}`, "succeeded", null],
      [`att_${ids[1]!.slice("pay_".length)}`, "failed", "insufficient_funds"],
      [rowId, "succeeded", null],
    ]);
  });

  it("fails a short payer alone: its neighbours in the batch succeed and its refusal is kept for its key", async () => {
    const empty = await emptyAccount("empty");
    const transfersBefore = await gw.ledgerTransferCount();
    const calls = [
      gw.client.POST("/v1/payments", { body: internal("0.000002") }),
      gw.client.POST("/v1/payments", {
        body: internal("1", empty.id),
        params: { header: { "Idempotency-Key": `short-${database}` } },
      }),
      gw.client.POST("/v1/payments", { body: internal("0.000003") }),
    ];
    const [left, short, right] = await Promise.all(calls);
    expect(left!.response.status).toBe(201);
    expect(right!.response.status).toBe(201);
    expect(short!.response.status).toBe(402);
    expect(errorOf(short!).code).toBe("insufficient_funds");
    expect(errorOf(short!).payment).toMatchObject({ status: "failed", attempts: [{ status: "failed" }] });
    // Its attempt, made again from the failed payment when read, is the one it was answered with.
    const failedId = (errorOf(short!).payment as { id: string }).id;
    const fetched = await gw.client.GET("/v1/payments/{id}", { params: { path: { id: failedId } } });
    expect(fetched.data!).toEqual(errorOf(short!).payment);
    expect(await gw.ledgerTransferCount()).toBe(transfersBefore + 2n);
    const again = await gw.client.POST("/v1/payments", {
      body: internal("1", empty.id),
      params: { header: { "Idempotency-Key": `short-${database}` } },
    });
    expect(again.response.status).toBe(402);
    expect(again.response.headers.get("idempotent-replayed")).toBe("true");
    expect(again.error).toEqual(short!.error);
  });

  it("a key another process's payment holds, met by the batch's insert: answered as that payment's repeat, its neighbours paid", async () => {
    // The batch's insert meets the key in payments_idempotency (a unique violation, not a conflict clause): its batch is
    // rolled back, the key looked up and answered, and the others of it written again.
    const body = internal("0.000003");
    const key = (n: number) => ({ header: { "Idempotency-Key": `held-${database}-${n}` } });
    const original = await gw.client.POST("/v1/payments", { body, params: key(0) });
    expect(original.response.status).toBe(201);
    // Another process's payment under key 1, which this one has never seen: the same row, another id and key.
    const heldId = newId("pay");
    await gw.app.db.query(
      `INSERT INTO payments
       SELECT (jsonb_populate_record(p, jsonb_build_object('id', $2::text, 'idempotency_key', $3::text))).*
       FROM payments p WHERE id = $1`,
      [original.data!.id, heldId, `held-${database}-1`],
    );
    const transfersBefore = await gw.ledgerTransferCount();
    const responses = await Promise.all(
      [2, 3, 1, 4, 5].map((n) =>
        gw.client.POST("/v1/payments", { body: n === 1 ? body : internal(`0.00000${n}`), params: key(n) }),
      ),
    );
    const held = responses[2]!;
    expect([held.response.status, held.response.headers.get("idempotent-replayed"), held.data?.id]).toEqual([
      201,
      "true",
      heldId,
    ]);
    const neighbours = responses.filter((response) => response !== held);
    expect(
      neighbours.map((response) => [
        response.response.status,
        response.response.headers.get("idempotent-replayed"),
      ]),
    ).toEqual(Array(4).fill([201, null]));
    expect(await gw.ledgerTransferCount()).toBe(transfersBefore + 4n);
    const [row] = await gw.app.db.query<{ payments: bigint; transactions: bigint }>(
      `SELECT (SELECT count(*) FROM payments WHERE idempotency_key = $1) AS payments,
              (SELECT count(DISTINCT xmin::text) FROM payments WHERE id = ANY($2::text[])) AS transactions`,
      [`held-${database}-1`, neighbours.map((response) => response.data!.id)],
    );
    // One row under the key; the neighbours still went together (fewer transactions than payments).
    expect(row!.payments).toBe(1n);
    expect(row!.transactions).toBeLessThan(4n);
  });

  it("answers a payment with the bytes JSON.stringify makes of it, its route's text made once", async () => {
    const app = gw.app;
    const tenantId = app.demo!.tenantId;
    const empty = await emptyAccount("empty for answers");
    // A caller's text that spells the route's key and braces: still found only where the route is.
    const metadata = { note: '"route":{"\\u0000":"switchyard route"}', route: "x" };
    const [paid, refused] = await Promise.all([
      gw.client.POST("/v1/payments", { body: { ...internal("0.000004"), metadata } }),
      gw.client.POST("/v1/payments", { body: { ...internal("2", empty.id), metadata } }),
    ]);
    const paidId = paid.data!.id;
    const refusedId = (errorOf(refused).payment as { id: string }).id;
    for (const [id, sent] of [
      [paidId, paid],
      [refusedId, refused],
    ] as const) {
      const payment = (await getPayment(app.db, { tenantId, id }))!;
      const answer = answerOf(payment);
      // Made twice: the second takes the route's text kept from the first.
      expect(answerOf(payment)).toEqual(answer);
      expect(JSON.parse(answer.body)).toEqual(sent.data ?? sent.error);
      expect(answer.body).toBe(JSON.stringify(JSON.parse(answer.body)));
      const view = presentPayment(payment);
      expect(answer.body).toBe(
        payment.status === "failed"
          ? JSON.stringify({ error: { ...JSON.parse(answer.body).error, payment: view } })
          : JSON.stringify(view),
      );
    }
  });

  it("refuses a key in flight in this process, and replays it once answered", async () => {
    const params = { header: { "Idempotency-Key": `flight-${database}` } };
    const [first, second] = await Promise.all([
      gw.client.POST("/v1/payments", { body: internal("0.000001"), params }),
      gw.client.POST("/v1/payments", { body: internal("0.000001"), params }),
    ]);
    const statuses = [first!.response.status, second!.response.status].sort();
    expect(statuses).toEqual([201, 409]);
    const refused = first!.response.status === 409 ? first! : second!;
    expect(errorOf(refused).code).toBe("idempotency_key_in_use");
    const answered = first!.response.status === 201 ? first! : second!;
    const replay = await gw.client.POST("/v1/payments", { body: internal("0.000001"), params });
    expect(replay.response.status).toBe(201);
    expect(replay.data!).toEqual(answered.data!);
  });

  it("a routing decision that could not be written fails its batch whole, and is written by the next", async () => {
    const params = { header: { "Idempotency-Key": `decision-${database}` } };
    // An amount no payment of this gateway had: a decision the settler has not written yet.
    const body = internal("0.000009");
    await gw.app.db.query("ALTER TABLE route_decisions RENAME TO route_decisions_away");
    const failed = await gw.client
      .POST("/v1/payments", { body, params })
      .finally(() => gw.app.db.query("ALTER TABLE route_decisions_away RENAME TO route_decisions"));
    expect(failed.response.status).toBe(500);
    const written = await gw.app.db.query("SELECT 1 FROM payments WHERE idempotency_key = $1", [
      `decision-${database}`,
    ]);
    expect(written).toEqual([]);
    // The failed write is not taken for one under way: the retry writes the decision, then the payment.
    const retried = await gw.client.POST("/v1/payments", { body, params });
    expect(retried.response.status).toBe(201);
    const fetched = await gw.client.GET("/v1/payments/{id}", { params: { path: { id: retried.data!.id } } });
    expect(fetched.data!.route?.candidates[0]?.amount).toBe("0.000009");
  });

  it("remembers an answer about a payment as the payment: a repeat to this process reads it back", async () => {
    const params = { header: { "Idempotency-Key": `remembered-${database}` } };
    const first = await gw.client.POST("/v1/payments", { body: internal("0.000001"), params });
    expect(first.response.status).toBe(201);
    // Changed behind the process's back: a repeat shows it only if the payment is read back, not an answer kept in
    // memory (nothing in the gateway changes a final payment, so a repeat answers the same either way).
    await gw.app.db.query(`UPDATE payments SET metadata = '{"read":"back"}' WHERE id = $1`, [first.data!.id]);
    const repeat = await gw.client.POST("/v1/payments", { body: internal("0.000001"), params });
    expect(repeat.response.status).toBe(201);
    expect(repeat.response.headers.get("idempotent-replayed")).toBe("true");
    expect(repeat.data!).toEqual({ ...first.data!, metadata: { read: "back" } });
    // Another body under the key is still refused without a query's help.
    const other = await gw.client.POST("/v1/payments", { body: internal("0.000002"), params });
    expect(errorOf(other).code).toBe("idempotency_key_reused");
  });
});

describe("two processes on one PostgreSQL database", () => {
  let a: App;
  let b: App;
  beforeAll(async () => {
    const url = await createTestDatabase(inject("postgresUrl"), "http_two");
    const env = { LOG_LEVEL: "silent", PORT: "0", DATABASE_URL: url };
    a = await createApp(testConfig(env));
    b = await createApp(testConfig(env));
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  const pay = (app: App, body: ReturnType<typeof internal>, key: string) =>
    typedClient(app).POST("/v1/payments", { body, params: { header: { "Idempotency-Key": key } } });

  it("replays a key answered by the other process, refuses it with another body, and pays once", async () => {
    const first = await pay(a, internal("0.000005"), "across-1");
    expect(first.response.status).toBe(201);
    // b has never seen the key: its write finds it taken and answers from the stored record.
    const replay = await pay(b, internal("0.000005"), "across-1");
    expect(replay.response.status).toBe(201);
    expect(replay.response.headers.get("idempotent-replayed")).toBe("true");
    expect(replay.data!).toEqual(first.data!);
    const other = await pay(b, internal("0.000006"), "across-1");
    expect(other.response.status).toBe(409);
    expect(errorOf(other).code).toBe("idempotency_key_reused");
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
    for (const response of responses) expect([201, 409]).toContain(response.response.status);
    for (let i = 0; i < keys.length; i += 1) {
      const pair = [responses[2 * i]!, responses[2 * i + 1]!];
      expect(pair.some((response) => response.response.status === 201)).toBe(true);
      const ids = new Set(pair.filter((r) => r.response.status === 201).map((r) => r.data!.id));
      expect(ids.size).toBe(1);
    }
    const [row] = await a.db.query<{ payments: bigint }>(
      "SELECT count(*) AS payments FROM payments WHERE idempotency_key LIKE 'race-%'",
    );
    expect(row!.payments).toBe(BigInt(keys.length));
  });
});
