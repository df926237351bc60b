// An Idempotency-Key whose record is past its 24 hours and not pruned yet is a new key's (http/idempotency.ts), on
// PostgreSQL with the real ledger: a payment made under it in a batch — an internal one in the settler's shared
// statement, a rail's first write (payment, attempt, record and reservation) in the ledger's batch — is written with
// the key at once, taking the record over, and fails nothing beside it. Before, the batch's check (internal.ts) and the
// record's insert (store.ts insertPaymentStatement) took any record for a live one: payment_key_taken() rolled back
// the shared transaction (every payment in it written again), and the payment was made only by the route's second
// try, without its record. A payment that holds the key stays its own for good, its record expired or not.
import { createHash } from "node:crypto";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createInternalRail } from "../../adapters/internal/index.ts";
import { type AttemptOutcome, assets, type OutgoingAttempt, type Rail } from "../../core/index.ts";
import type { Db } from "../../gateway/db/index.ts";
import { storedRecord } from "../../gateway/http/idempotency.ts";
import { answerOf, keptStatusOf } from "../../gateway/http/resources/payments.ts";
import type { Ledger } from "../../gateway/ledger/index.ts";
import type { CreatePaymentResult, PaymentsDeps } from "../../gateway/payments/deps.ts";
import { createPayment } from "../../gateway/payments/service.ts";
import type { PaymentDestination } from "../../gateway/payments/types.ts";
import { workerPaymentsDeps } from "../crash/worker-deps.ts";
import { type KeyedPayers, keyedPayers } from "../support/keyed-payers.ts";
import { toyRailSnapshot } from "../support/toy-rail.ts";

let db: Db;
let ledger: Ledger;
let deps: PaymentsDeps;
const tenants = ["ten_old_keys", "ten_beside"] as const;

/** A rail outside the gateway, paying at once: it says paid for every attempt. */
const outside: Rail = {
  id: "outside",
  kind: "evm",
  asset: assets.USDC,
  async start() {},
  async stop() {},
  snapshot: () => toyRailSnapshot("outside", 1n),
  async execute(attempt: OutgoingAttempt): Promise<AttemptOutcome> {
    return { status: "succeeded", evidence: { rail: "fiat", pspId: `outside-${attempt.id}` }, fee: 0n };
  },
  onEvent() {},
  async balance() {
    return 0n;
  },
};

let payers: KeyedPayers;

beforeAll(async () => {
  // The payers are funded from the outside rail's clearing account: what they hold there, it can pay out.
  payers = await keyedPayers({
    database: "expired_key_records",
    tenants,
    fundingRail: "outside",
    funded: 1_000_000_000n,
  });
  ({ db, ledger } = payers);
  const internal = createInternalRail({ asset: assets.USDC });
  const rails = new Map<string, Rail>([
    [internal.id, internal],
    [outside.id, outside],
  ]);
  deps = workerPaymentsDeps({ db, ledger, rails });
}, 120_000);

afterAll(async () => {
  await payers?.close();
});

const toAccount = (tenantId: string): PaymentDestination => ({
  kind: "account",
  accountId: `acct_${tenantId}_payee`,
});
const toAddress: PaymentDestination = {
  kind: "evm_address",
  address: "0x00000000000000000000000000000000000000aa",
};

/** The digest of the request `body` under `key`, as the route hands it to the service (any 32 bytes do here). */
const digestOf = (key: string, body: string) => createHash("sha256").update(`${key}\n${body}`).digest();

/** A payment of 1 minor unit under `key`, made as the HTTP route makes it: the key's record written with it. */
function pay(tenantId: string, key: string, destination: PaymentDestination, body = "first") {
  return createPayment(deps, {
    tenantId,
    asset: "USDC",
    amount: "0.000001",
    sourceAccountId: `acct_${tenantId}_payer`,
    destination,
    policy: {},
    metadata: {},
    idempotencyKey: key,
    idempotencyRecord: {
      key,
      requestSha256: digestOf(key, body),
      answer: answerOf,
      keptStatus: keptStatusOf,
    },
    quoteId: null,
  });
}

const outcomeOf = (result: CreatePaymentResult) =>
  result.ok ? result.payment.status : "keyTaken" in result ? "key_taken" : result.refusal;

/** A record under the key written 25 hours ago: an answer (its status), or its request died unanswered (null). */
async function expiredRecord(tenantId: string, key: string, status: number | null) {
  await db.query(
    `INSERT INTO idempotency_keys (tenant_id, key, request_sha256, response_status, response_body, created_at)
     VALUES ($1, $2, $3, $4, $5, now() - interval '25 hours')`,
    [tenantId, key, digestOf(key, "long ago"), status, status === null ? null : "{}"],
  );
}

/** What a repeat of the key finds (http/idempotency.ts storedRecord), for the request `body`. */
const recordFor = (key: string, body: string) =>
  storedRecord(db, {
    tenantId: "ten_old_keys",
    key,
    digest: digestOf(key, body),
    inProgressTimeoutMs: 60_000,
  });

/** 20 internal payments of the other tenant, in the same turn as `these`: gathered into their batch. */
async function besides<T>(these: Promise<T>[], round: string) {
  const beside = Array.from({ length: 20 }, (_, i) =>
    pay("ten_beside", `${round}-${i}`, toAccount("ten_beside")),
  );
  const [made, others] = await Promise.all([Promise.all(these), Promise.all(beside)]);
  return { these: made, beside: others.map(outcomeOf) };
}

it("an internal payment under a key whose record is past its 24 hours takes the key in its batch, which is written once", async () => {
  // A refusal kept (a 422), another route's answer, a request that died unanswered: each 25 hours ago, not pruned.
  await expiredRecord("ten_old_keys", "refused", 422);
  await expiredRecord("ten_old_keys", "other-route", 201);
  await expiredRecord("ten_old_keys", "died", null);
  const keys = ["refused", "other-route", "died"];
  const { these, beside } = await besides(
    keys.map((key) => pay("ten_old_keys", key, toAccount("ten_old_keys"))),
    "internal",
  );
  // Before: each was answered key_taken (the route then made it again, without its record), and the batch with the
  // other tenant's 20 payments was rolled back and written again.
  expect(these.map(outcomeOf)).toEqual(["succeeded", "succeeded", "succeeded"]);
  expect(beside).toEqual(Array(20).fill("succeeded"));
  expect(payers.refusedOnKey()).toBe(0);
  // The key is the new payment's: a repeat is answered it, another body refused.
  for (const [i, key] of keys.entries()) {
    const made = these[i]!;
    expect(await recordFor(key, "first")).toEqual({
      kind: "payment",
      paymentId: made.ok ? made.payment.id : null,
    });
    expect(await recordFor(key, "long ago")).toEqual({ kind: "reused" });
  }
});

it("a rail's payment under a key whose record is past its 24 hours takes the record over in its first write, which fails no request beside it", async () => {
  await expiredRecord("ten_old_keys", "refused-then-paid-out", 422);
  const { these, beside } = await besides(
    [
      pay("ten_old_keys", "refused-then-paid-out", toAddress),
      ...Array.from({ length: 5 }, (_, i) => pay("ten_beside", `out-${i}`, toAddress)),
    ],
    "external",
  );
  // Before: the record's insert found the key's row and raised payment_key_taken(), rolling back the ledger's batch.
  expect(these.map(outcomeOf)).toEqual(Array(6).fill("succeeded"));
  expect(beside).toEqual(Array(20).fill("succeeded"));
  expect(payers.refusedOnKey()).toBe(0);
  const made = these[0]!;
  if (!made.ok) throw new Error("not made");
  // The record is this request's now, answered with its payment when it ended (a new 24 hours from its write).
  const [record] = await db.query<{ fresh: boolean; response_status: number; payment_id: string }>(
    `SELECT created_at > now() - interval '1 minute' AS fresh, response_status, payment_id FROM idempotency_keys
     WHERE tenant_id = 'ten_old_keys' AND key = 'refused-then-paid-out'`,
  );
  expect(record).toEqual({ fresh: true, response_status: 201, payment_id: made.payment.id });
  expect(await recordFor("refused-then-paid-out", "first")).toEqual({
    kind: "payment",
    paymentId: made.payment.id,
  });
  expect(await recordFor("refused-then-paid-out", "long ago")).toEqual({ kind: "reused" });
});

it("a key whose record is past its 24 hours but whose payment exists stays that payment's: nothing is taken over", async () => {
  const first = await pay("ten_old_keys", "paid-long-ago", toAddress);
  if (!first.ok) throw new Error("not made");
  await db.query(
    "UPDATE idempotency_keys SET created_at = created_at - interval '25 hours' WHERE key = 'paid-long-ago'",
  );
  await db.query("UPDATE payments SET created_at = created_at - interval '25 hours' WHERE id = $1", [
    first.payment.id,
  ]);
  const before = payers.refusedOnKey();
  // The same request and another body: the payment holds the key (its write refused, nothing written); the route
  // then answers the payment under the key as it stands, or 409 for another body (payments.ts).
  for (const body of ["first", "another"])
    expect(outcomeOf(await pay("ten_old_keys", "paid-long-ago", toAddress, body))).toBe("key_taken");
  expect(outcomeOf(await pay("ten_old_keys", "paid-long-ago", toAccount("ten_old_keys"), "another"))).toBe(
    "key_taken",
  );
  expect(payers.refusedOnKey()).toBeGreaterThan(before);
  const [record] = await db.query<{ expired: boolean; payment_id: string }>(
    `SELECT created_at < now() - interval '24 hours' AS expired, payment_id FROM idempotency_keys
     WHERE tenant_id = 'ten_old_keys' AND key = 'paid-long-ago'`,
  );
  expect(record).toEqual({ expired: true, payment_id: first.payment.id });
  const [held] = await db.query<{ count: number }>(
    "SELECT count(*)::int AS count FROM payments WHERE idempotency_key = 'paid-long-ago'",
  );
  expect(held!.count).toBe(1);
});
