// A payments process for the crash test: the real payments service, ledger and router on PostgreSQL, and two
// toy rails whose "outside world" is a table (toy_payouts) that, like a real PSP or chain, remembers each
// attempt id it has seen and never pays one twice. The cheap rail refuses about half the attempts (retryable),
// so payments fail over to the dear one. It first recovers what a killed predecessor left, then makes
// payments until it is killed or has made `count`.
//   node test/crash/worker.ts <database url> <run id> <count>
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { AttemptOutcome, OutgoingAttempt, Rail } from "../../core/index.ts";
import { assets } from "../../core/index.ts";
import { openPostgres } from "../../gateway/db/index.ts";
import { answerOf, keptStatusOf } from "../../gateway/http/resources/payments.ts";
import { createLedger } from "../../gateway/ledger/index.ts";
import { gatewayLedgerParams } from "../../gateway/ledger-params.ts";
import { createPayment, type PaymentsDeps, recoverOpenAttempts } from "../../gateway/payments/index.ts";
import { toyRailSnapshot } from "../support/toy-rail.ts";
import { workerPaymentsDeps } from "./worker-deps.ts";

const [url, runId, countText] = process.argv.slice(2);
if (url === undefined || runId === undefined || countText === undefined)
  throw new Error("usage: worker.ts <url> <run> <count>");
const db = openPostgres({ url, poolSizeMax: 4, statementTimeoutMs: 10_000 });
const ledger = createLedger({ ...gatewayLedgerParams, db });

function toyRail(id: string, feeFixed: bigint, refuses: (attemptId: string) => boolean): Rail {
  return {
    id,
    kind: "evm",
    asset: assets.USDC,
    async start() {},
    async stop() {},
    snapshot: () => toyRailSnapshot(id, feeFixed),
    async execute(attempt: OutgoingAttempt): Promise<AttemptOutcome> {
      await sleep(Math.random() * 10); // a window for the kill before the effect
      const outcome = refuses(attempt.id) ? "refused" : "paid";
      await db.query(
        "INSERT INTO toy_payouts (attempt_id, payment_id, rail, amount, outcome) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (attempt_id) DO NOTHING",
        [attempt.id, attempt.paymentId, id, attempt.amount, outcome],
      );
      const [row] = await db.query<{ outcome: string }>(
        "SELECT outcome FROM toy_payouts WHERE attempt_id = $1",
        [attempt.id],
      );
      await sleep(Math.random() * 10); // and one after it, before the gateway records the outcome
      return row?.outcome === "paid"
        ? { status: "succeeded", evidence: { rail: "fiat", pspId: `toy-${attempt.id}` }, fee: 0n }
        : { status: "failed", code: "rejected", message: `${id} refused`, retryElsewhere: true };
    },
    onEvent() {},
    async balance() {
      return 0n;
    },
  };
}

const halfRefused = (attemptId: string) => createHash("sha256").update(attemptId).digest()[0]! % 2 === 0;
const rails = new Map<string, Rail>([
  ["cheap", toyRail("cheap", 1n, halfRefused)],
  ["dear", toyRail("dear", 5n, () => false)],
]);
const deps: PaymentsDeps = workerPaymentsDeps({ db, ledger, rails });

await recoverOpenAttempts(deps, { quietMs: 0 });
process.send?.("recovered");
for (let i = 0; i < Number(countText); i += 1) {
  const key = `${runId}-${i}`;
  // As the HTTP route makes it: the key's record written unanswered with the payment, answered with its end.
  const record = {
    key,
    requestSha256: createHash("sha256").update(key).digest(),
    answer: answerOf,
    keptStatus: keptStatusOf,
  };
  await createPayment(deps, {
    tenantId: "ten_crash",
    asset: "USDC",
    amount: "0.000010",
    sourceAccountId: "acct_crash_customer",
    destination: { kind: "evm_address", address: "0x00000000000000000000000000000000000000aa" },
    policy: {},
    metadata: {},
    idempotencyKey: key,
    idempotencyRecord: record,
    quoteId: null,
  });
}
await ledger.close();
await db.close();
process.send?.("done");
