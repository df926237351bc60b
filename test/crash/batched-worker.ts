// A payments process for the batched crash test (batched.test.ts): the real payments service, ledger and internal
// settler on PostgreSQL, making internal payments with `inFlightMax` in flight, so they share batches (payments,
// attempts, events and idempotency records in one statement, in the ledger's group-commit transaction). It is
// handed key numbers (batched-plan.ts says what each stands for), and new ones after them until it is killed when
// asked to (so a kill point is always reached, however fast the batches go); it pays each as the HTTP route does
// (createPayment with the request's idempotency record; on a taken key, the answer the stored record gives) and reports
// each answer on stdout. Watching its ledger's database, it can SIGKILL itself at a chosen point of a batch's
// transaction (`kill`, see WorkerKill), and it reports each batch handed to the ledger, so the parent can kill it
// right then.
//   node test/crash/batched-worker.ts <database url> <kill: a WorkerKill as JSON, or null> <key numbers, comma-separated>
//     <overflow: once the list is done, go on with new key numbers from this one until killed; or none>
import { createHash } from "node:crypto";
import { writeSync } from "node:fs";
import { createInternalRail } from "../../adapters/internal/index.ts";
import { assets, type Rail } from "../../core/index.ts";
import { type Db, openPostgres, type Row, type Sql } from "../../gateway/db/index.ts";
import { storedRecord } from "../../gateway/http/idempotency.ts";
import { answerOf, keptStatusOf } from "../../gateway/http/resources/payments.ts";
import { createLedger, type Ledger } from "../../gateway/ledger/index.ts";
import { gatewayLedgerParams } from "../../gateway/ledger-params.ts";
import { createPayment, getPayment, type PaymentsDeps } from "../../gateway/payments/index.ts";
import { isPaymentKeyTaken } from "../../gateway/payments/store.ts";
import {
  batchedTenantId,
  merchantAccountId,
  paymentIdOfAnswer,
  plannedPayment,
  usdcText,
  type WorkerKill,
  type WorkerLine,
} from "./batched-plan.ts";
import { workerPaymentsDeps } from "./worker-deps.ts";

/** Payments in flight at once, as many concurrent HTTP requests would be. */
const inFlightMax = 200;
const poolSizeMax = 6;
const inProgressTimeoutMs = 60_000;
/**
 * New keys a worker asks past its list at most: a kill comes long before (the rounds kill by the 30th batch, or 1 s
 * in). 10,000 no longer was: with a transaction's statements pipelined, a worker paid them all within the second.
 */
const overflowKeysMax = 100_000;

const [url, killText, keysText, overflowText] = process.argv.slice(2);
if (url === undefined || killText === undefined || keysText === undefined || overflowText === undefined)
  throw new Error("usage: batched-worker.ts <url> <kill> <keys> <overflow>");
const kill = JSON.parse(killText) as WorkerKill | null;
const keys = keysText === "" ? [] : keysText.split(",").map(Number);
const overflowFrom = overflowText === "none" ? null : Number(overflowText);

// Synchronous: a line written before a kill reaches the parent.
const report = (line: WorkerLine) => writeSync(1, `${JSON.stringify(line)}\n`);

function die(at: WorkerKill["at"], tx: number, payments: string[]): void {
  report({ event: "kill", at, tx, payments });
  process.kill(process.pid, "SIGKILL");
}

/** The payment ids a statement writes: every `pay_…` id in its parameters (array literals on the batched path). */
const paymentIdsOf = (params: readonly unknown[] | undefined): Set<string> =>
  new Set((params ?? []).flatMap((param) => String(param).match(/pay_[0-9a-z]{26}/g) ?? []));

/**
 * The ledger's database, watched: each transaction that writes payments (a statement of its inserts into payments)
 * is counted, and the chosen one is killed at the chosen point.
 */
function watched(db: Db): Db {
  let paymentTxs = 0;
  return {
    ...db,
    transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T> {
      const payments: string[] = [];
      let tx = 0;
      const written = db.transaction(async (sql) => {
        const result = await fn({
          query<R extends Row>(text: string, params?: readonly unknown[]) {
            if (/INSERT INTO payments\b/.test(text)) payments.push(...paymentIdsOf(params));
            return sql.query<R>(text, params);
          },
        });
        if (payments.length > 0) {
          paymentTxs += 1;
          tx = paymentTxs;
          if (kill?.tx === tx && kill.at === "in_tx") die("in_tx", tx, payments);
          // Resolving hands the connection to COMMIT (sent in this turn); the kill comes on the next.
          if (kill?.tx === tx && kill.at === "committing")
            setImmediate(() => die("committing", tx, payments));
        }
        return result;
      });
      return written.then((result) => {
        if (tx > 0) report({ event: "committed", tx, payments: payments.length });
        // At the chosen transaction or, if that one failed, the first after it that commits: a transaction's body
        // returns before its statements are answered (pipeline mode), so a failed one is counted too.
        if (kill?.at === "committed" && tx >= kill.tx) die("committed", tx, payments);
        return result;
      });
    },
  };
}

const db = openPostgres({ url, poolSizeMax, statementTimeoutMs: 10_000 });
const ledger = createLedger({ ...gatewayLedgerParams, db: watched(db) });
let handed = 0;
/** The ledger as the settler sees it: each batch reported when handed, and when refused. */
const reportingLedger: Ledger = {
  ...ledger,
  async createTransfersWith(transfers, alongside) {
    handed += 1;
    const batch = handed;
    report({ event: "handed", batch, size: transfers.length });
    try {
      return await ledger.createTransfersWith(transfers, alongside);
    } catch (error) {
      report({
        event: "refused",
        batch,
        keyTaken: isPaymentKeyTaken(error),
        payments: transfers.map((transfer) => String(transfer.userData128)),
      });
      throw error;
    }
  },
};

const internalRail = createInternalRail({ asset: assets.USDC });
const rails = new Map<string, Rail>([[internalRail.id, internalRail]]);
const deps: PaymentsDeps = workerPaymentsDeps({ db, ledger: reportingLedger, rails });

/** Pays key number `n` as POST /v1/payments does with an Idempotency-Key, and reports its answer. */
async function pay(n: number): Promise<void> {
  const planned = plannedPayment(n);
  const params = {
    tenantId: batchedTenantId,
    asset: "USDC",
    amount: usdcText(planned.amountMinor),
    sourceAccountId: planned.sourceAccountId,
    destination: { kind: "account" as const, accountId: merchantAccountId },
    policy: {},
    metadata: { n: String(n) },
    idempotencyKey: planned.key,
    quoteId: null,
  };
  const digest = createHash("sha256")
    .update(`POST /v1/payments\n${JSON.stringify(params)}`)
    .digest();
  const result = await createPayment(deps, {
    ...params,
    idempotencyRecord: {
      key: planned.key,
      requestSha256: digest,
      answer: answerOf,
      keptStatus: keptStatusOf,
    },
  });
  if (result.ok) {
    if (result.answer === null) throw new Error(`key ${n}: an internal payment without its stored answer`);
    report({ event: "answered", n, replayed: false, paymentId: result.payment.id, ...result.answer });
    return;
  }
  if ("keyTaken" in result) {
    const record = await storedRecord(db, {
      tenantId: batchedTenantId,
      key: planned.key,
      digest,
      inProgressTimeoutMs,
    });
    // As the route answers a taken key: the stored answer, or the payment written with the record, answered again.
    if (record.kind === "answered") {
      report({
        event: "answered",
        n,
        replayed: true,
        paymentId: paymentIdOfAnswer(record.answer),
        ...record.answer,
      });
    } else if (record.kind === "payment") {
      const payment = await getPayment(db, { tenantId: batchedTenantId, id: record.paymentId });
      if (payment === null) report({ event: "unanswered", n, record: `payment ${record.paymentId} is gone` });
      else report({ event: "answered", n, replayed: true, paymentId: payment.id, ...answerOf(payment) });
    } else report({ event: "unanswered", n, record: record.kind });
    return;
  }
  report({ event: "refusal", n, refusal: result.refusal });
}

report({ event: "started", keys: keys.length });
let next = 0;
let overflowNext = overflowFrom;
/** The next key: from the list, then (when killed rounds ask for it) new ones until the kill. */
const nextKey = (): number | null => {
  if (next < keys.length) {
    next += 1;
    return keys[next - 1]!;
  }
  if (overflowFrom === null || overflowNext === null || overflowNext - overflowFrom >= overflowKeysMax)
    return null;
  overflowNext += 1;
  report({ event: "asked", n: overflowNext - 1 });
  return overflowNext - 1;
};
const lane = async () => {
  for (let n = nextKey(); n !== null; n = nextKey()) await pay(n);
};
await Promise.all(Array.from({ length: inFlightMax }, lane));
await ledger.close();
await db.close();
report({ event: "done" });
