// Issue #19, the batched path: internal payments that arrive together are written in one statement in the ledger's
// group-commit transaction. A worker (batched-worker.ts) makes them 200 at a time, some from a short account (they
// fail, 402, beside their neighbours), each with its own Idempotency-Key, which the payment keeps with its answer.
// It is SIGKILLed in every round — by itself inside a payments transaction (before COMMIT, while COMMIT is on its
// way, right after it) or by this process when a batch is handed to the ledger or at a random time — and started
// again with the same keys for everything not yet answered and some already answered. At the end every key holds one
// payment, written whole, answered the same way every time it was asked.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { Db } from "../../gateway/db/index.ts";
import { ownLedgerId } from "../../gateway/ids/index.ts";
import {
  defaultLedgerLimits,
  type Ledger,
  type Transfer,
  transferCodes,
} from "../../gateway/ledger/index.ts";
import {
  batchedTenantId,
  merchantAccountId,
  plannedPayment,
  richAccountId,
  shortAccountId,
  shortFundingMinor,
  type WorkerLine,
} from "./batched-plan.ts";
import { type BatchedDatabase, type Kill, openBatchedDatabase, type Run, runWorker } from "./batched-run.ts";

/** Already answered keys asked again at the head of each killed round, and of the final one. */
const repeatsPerRound = 10;
const repeatsFinal = 20;
/** Keys no worker has seen, at the head of the final round with its repeats. */
const freshKeysFinal = 100;
/** Keys a worker starts at once (its in-flight maximum): the repeats go among them. */
const firstWaveKeys = 200;

const between = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1));
const rounds: Kill[] = [
  { by: "worker", kill: { at: "committing", tx: between(2, 12) } },
  { by: "worker", kill: { at: "in_tx", tx: between(2, 12) } },
  { by: "worker", kill: { at: "committed", tx: between(2, 12) } },
  { by: "parent", afterHanded: between(2, 30) },
  { by: "parent", afterMs: between(300, 1_000) },
  { by: "worker", kill: { at: "committing", tx: between(2, 12) } },
  { by: "worker", kill: { at: "in_tx", tx: between(2, 12) } },
  { by: "worker", kill: { at: "committed", tx: between(2, 12) } },
  { by: "parent", afterHanded: between(2, 30) },
  { by: "worker", kill: { at: "committing", tx: between(1, 3) } },
];

type Answer = Extract<WorkerLine, { event: "answered" }>;
type Refused = Extract<WorkerLine, { event: "refused" }>;
type PaymentRow = {
  id: string;
  key: string;
  status: string;
  amount: bigint;
  source: string;
  failure_code: string | null;
};

let batched: BatchedDatabase;
let db: Db;
let ledger: Ledger;

beforeAll(async () => {
  batched = await openBatchedDatabase(inject("postgresUrl"));
  ({ db, ledger } = batched);
});
afterAll(async () => {
  await batched?.close();
});

/** `picked` items of `from`, chosen at random. */
function sample<T>(from: Iterable<T>, picked: number): T[] {
  const copy = [...from];
  for (let i = copy.length - 1; i > 0; i -= 1) {
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy.slice(0, picked);
}

/**
 * `base` with `extra` spread evenly through its first wave, so that the repeated keys are asked before any kill and
 * land in the same batches as the others.
 */
function interleave(base: readonly number[], extra: readonly number[]): number[] {
  const out: number[] = [];
  const every = Math.max(1, Math.floor(Math.min(base.length, firstWaveKeys) / Math.max(1, extra.length)));
  let e = 0;
  base.forEach((n, i) => {
    if (i % every === 0 && e < extra.length) out.push(extra[e++]!);
    out.push(n);
  });
  return out.concat(extra.slice(e));
}

/**
 * What the workers told: each key's first answer, every key given to one (and the first never given), and how many
 * repeated keys were answered.
 */
type Heard = { first: Map<number, Answer>; asked: Set<number>; nextNew: number; repeatsAnswered: number };

/**
 * Takes in a run's lines: a key answered again — after a restart, or asked again on purpose — got the first
 * payment's answer again (a replay), never a second payment.
 */
function hear(heard: Heard, keys: readonly number[], run: Run, repeats: ReadonlySet<number>): void {
  const ask = (n: number) => {
    heard.asked.add(n);
    heard.nextNew = Math.max(heard.nextNew, n + 1);
  };
  for (const n of keys) ask(n);
  for (const line of run.lines) {
    expect(line.event === "unanswered" || line.event === "refusal" ? line : null).toBeNull();
    if (line.event === "asked") ask(line.n);
    if (line.event !== "answered") continue;
    const earlier = heard.first.get(line.n);
    if (earlier === undefined) {
      heard.first.set(line.n, line);
      continue;
    }
    expect({ n: line.n, replayed: line.replayed }).toEqual({ n: line.n, replayed: true });
    expect({ n: line.n, status: line.status, body: JSON.parse(line.body) }).toEqual({
      n: line.n,
      status: earlier.status,
      body: JSON.parse(earlier.body),
    });
    if (repeats.has(line.n)) heard.repeatsAnswered += 1;
  }
}

const unansweredOf = (heard: Heard) =>
  [...heard.asked].filter((n) => !heard.first.has(n)).sort((a, b) => a - b);

/** Every key one payment, and no attempt row; each answer was its key's payment. */
async function expectOnePaymentPerKey(heard: Heard): Promise<PaymentRow[]> {
  const payments = await db.query<PaymentRow>(
    `SELECT id, idempotency_key AS key, status, amount, source_account_id AS source, failure_code
     FROM payments WHERE tenant_id = $1`,
    [batchedTenantId],
  );
  expect(payments.length).toBe(heard.asked.size);
  const byKey = new Map(payments.map((payment) => [payment.key, payment]));
  expect(byKey.size).toBe(payments.length); // no key paid twice
  // Each names its routing decision, kept once in route_decisions (migration 0041) and there, whatever was killed
  // between that decision's write and the payment's.
  const undecided = await db.query<{ id: string }>(
    `SELECT p.id FROM payments p LEFT JOIN route_decisions d ON d.digest = p.decision_digest
     WHERE p.tenant_id = $1 AND d.digest IS NULL`,
    [batchedTenantId],
  );
  expect(undecided).toEqual([]);
  for (const [n, answer] of heard.first) {
    const payment = byKey.get(plannedPayment(n).key);
    expect({ n, paymentId: payment?.id, status: payment?.status === "succeeded" ? 201 : 402 }).toEqual({
      n,
      paymentId: answer.paymentId,
      status: answer.status,
    });
  }
  // One bad item fails alone: every payment of the rich account succeeded; the short one's failed for its funds.
  const failed = payments.filter((payment) => payment.status !== "succeeded");
  expect(failed.length).toBeGreaterThan(0);
  for (const payment of failed)
    expect(payment).toMatchObject({
      status: "failed",
      source: shortAccountId,
      failure_code: "insufficient_funds",
    });

  // An internal payment's one attempt has no row (payments/internal.ts): it is made from the payment when read.
  const [attempts] = await db.query<{ attempts: bigint }>(
    "SELECT count(*) AS attempts FROM attempts a JOIN payments p ON p.id = a.payment_id WHERE p.tenant_id = $1",
    [batchedTenantId],
  );
  expect(attempts!.attempts).toBe(0n);
  return payments;
}

/**
 * The ledger: one posted transfer per succeeded payment (its id and its user data the payment id's own bits), none
 * for a failed one, no other payment transfer at all; each source paid exactly its succeeded payments, nothing pending.
 */
async function expectLedgerMatches(payments: readonly PaymentRow[]): Promise<void> {
  const links = await db.query<{ id: string; ledger_link: string | null }>(
    "SELECT id, ledger_link FROM payments WHERE tenant_id = $1",
    [batchedTenantId],
  );
  // Linked by the payment id's own bits, so the row keeps no ledger link (migration 0040).
  for (const row of links) expect(row).toEqual({ id: row.id, ledger_link: null });
  const transferIdOf = new Map(payments.map((payment) => [payment.id, ownLedgerId(payment.id)]));
  // A run makes more payments than one lookup answers (lookupLimitMax) when the machine is quick: asked in parts.
  const ids = payments.map((payment) => transferIdOf.get(payment.id)!);
  const transfers: Transfer[] = [];
  for (let at = 0; at < ids.length; at += defaultLedgerLimits.lookupLimitMax)
    transfers.push(...(await ledger.lookupTransfers(ids.slice(at, at + defaultLedgerLimits.lookupLimitMax))));
  const transferOf = new Map(transfers.map((transfer) => [transfer.id, transfer]));
  for (const payment of payments) {
    const transfer = transferOf.get(transferIdOf.get(payment.id)!);
    expect({
      id: payment.id,
      transfer:
        transfer === undefined ? null : { amount: transfer.amount, userData128: transfer.userData128 },
    }).toEqual({
      id: payment.id,
      transfer:
        payment.status === "succeeded"
          ? { amount: payment.amount, userData128: ownLedgerId(payment.id) }
          : null,
    });
  }
  const succeeded = payments.filter((payment) => payment.status === "succeeded");
  const [count] = await db.query<{ transfers: bigint }>(
    "SELECT count(*) AS transfers FROM ledger_transfers WHERE code = $1",
    [transferCodes.payments.payment],
  );
  expect(count!.transfers).toBe(BigInt(succeeded.length));

  const paidBy = (source: string) =>
    succeeded.filter((p) => p.source === source).reduce((sum, p) => sum + p.amount, 0n);
  const [rich, short, merchant] = await ledger.lookupAccounts(
    [richAccountId, shortAccountId, merchantAccountId].map((id) => batched.ledgerIds.get(id)!),
  );
  expect(rich!.debitsPosted).toBe(paidBy(richAccountId));
  expect(short!.debitsPosted).toBe(paidBy(shortAccountId));
  expect(short!.debitsPosted).toBeLessThanOrEqual(shortFundingMinor);
  expect(merchant!.creditsPosted).toBe(paidBy(richAccountId) + paidBy(shortAccountId));
  for (const account of [rich!, short!, merchant!])
    expect({ debits: account.debitsPending, credits: account.creditsPending }).toEqual({
      debits: 0n,
      credits: 0n,
    });
}

/**
 * Each payment's outbox event, of its outcome, once; each key's answer kept by its payment (its key and its request's
 * digest on its row, its status the answer's) and no idempotency record beside it: nothing of the key is written
 * anywhere but with the payment, in its one transaction.
 */
async function expectEventsAndKeptAnswers(payments: readonly PaymentRow[]): Promise<void> {
  const events = await db.query<{ payment_id: string; type: string; events: bigint }>(
    `SELECT payload->>'payment_id' AS payment_id, min(type) AS type, count(*) AS events
     FROM outbox WHERE tenant_id = $1 GROUP BY 1`,
    [batchedTenantId],
  );
  expect(events.length).toBe(payments.length);
  const eventOf = new Map(events.map((event) => [event.payment_id, event]));
  for (const payment of payments)
    expect({ id: payment.id, event: eventOf.get(payment.id) }).toEqual({
      id: payment.id,
      event: { payment_id: payment.id, type: `payment.${payment.status}`, events: 1n },
    });

  const [records] = await db.query<{ n: bigint }>(
    "SELECT count(*) AS n FROM idempotency_keys WHERE tenant_id = $1",
    [batchedTenantId],
  );
  expect(records!.n).toBe(0n);
  const kept = await db.query<{ id: string; key: string | null; digest_bytes: number | null }>(
    "SELECT id, idempotency_key AS key, octet_length(request_sha256) AS digest_bytes FROM payments WHERE tenant_id = $1",
    [batchedTenantId],
  );
  const keptOf = new Map(kept.map((row) => [row.id, row]));
  for (const payment of payments)
    expect(keptOf.get(payment.id)).toEqual({ id: payment.id, key: payment.key, digest_bytes: 32 });
}

/**
 * Where a worker's own kill fell, checked against what was written: inside the transaction, nothing of its payments;
 * once COMMIT was answered, all of them; while COMMIT was on its way, all or none (the server decides), never part.
 * Returns the round's line for the summary.
 */
function killPoint(kill: Kill, run: Run, written: ReadonlySet<string>): string {
  if (kill.by === "parent")
    return "afterHanded" in kill
      ? `by the test on batch ${kill.afterHanded} handed`
      : `by the test ${kill.afterMs} ms in`;
  const line = run.lines.find((l): l is Extract<WorkerLine, { event: "kill" }> => l.event === "kill");
  expect(line?.at).toBe(kill.kill.at);
  // `committed`: the chosen transaction, or the first after it that committed (batched-worker.ts).
  if (kill.kill.at === "committed") expect(line!.tx).toBeGreaterThanOrEqual(kill.kill.tx);
  else expect(line?.tx).toBe(kill.kill.tx);
  const payments = line?.payments ?? [];
  expect(payments.length).toBeGreaterThan(0);
  const kept = payments.filter((id) => written.has(id)).length;
  const allowed = { in_tx: [0], committed: [payments.length], committing: [0, payments.length] }[
    kill.kill.at
  ];
  expect(allowed).toContain(kept);
  return `${kill.kill.at} of payments transaction ${kill.kill.tx} (${payments.length} payments, ${kept} written)`;
}

describe("internal payments written in batches, the worker killed at any point", () => {
  it("repeat nothing: every key one payment, written whole, answered the same every time", async () => {
    const heard: Heard = { first: new Map(), asked: new Set(), nextNew: 0, repeatsAnswered: 0 };
    const killed: { kill: Kill; run: Run; answered: number }[] = [];
    for (const kill of rounds) {
      const repeats = sample(heard.first.keys(), repeatsPerRound);
      const keys = interleave(unansweredOf(heard), repeats);
      const answeredBefore = heard.first.size;
      const run = await runWorker(batched.url, keys, kill, heard.nextNew);
      expect(run.outcome, JSON.stringify({ kill, lines: run.lines.length, ms: run.ms })).toBe("killed");
      hear(heard, keys, run, new Set(repeats));
      killed.push({ kill, run, answered: heard.first.size - answeredBefore });
    }

    // The final round, undisturbed: keys no worker has seen with answered keys among them, then what is left.
    const fresh = Array.from({ length: freshKeysFinal }, (_, i) => heard.nextNew + i);
    const repeats = sample(heard.first.keys(), repeatsFinal);
    const keys = interleave([...fresh, ...unansweredOf(heard)], repeats);
    const final = await runWorker(batched.url, keys, null, null);
    expect(final.outcome).toBe("done");
    hear(heard, keys, final, new Set(repeats));
    expect(unansweredOf(heard)).toEqual([]);

    // The fresh keys were paid now, never taken for another's, also in a batch that a repeated key made fail: the
    // members of such a batch written after all (each on its own) are the repeated key's neighbours.
    const answers = final.lines.filter((line): line is Answer => line.event === "answered");
    expect(answers.filter((line) => fresh.includes(line.n) && !line.replayed).length).toBe(freshKeysFinal);
    expect(answers.filter((line) => repeats.includes(line.n) && line.replayed).length).toBe(repeatsFinal);
    const writtenNow = new Set(
      answers.filter((line) => !line.replayed).map((line) => String(ownLedgerId(line.paymentId))),
    );
    const refused = final.lines.filter((line): line is Refused => line.event === "refused");
    expect(refused.every((batch) => batch.keyTaken)).toBe(true);
    const shared = refused.filter((batch) => batch.payments.length > 1);
    const neighbours = shared.map((batch) => batch.payments.filter((id) => writtenNow.has(id)).length);
    expect(neighbours.some((written) => written > 0)).toBe(true);

    const payments = await expectOnePaymentPerKey(heard);
    await expectLedgerMatches(payments);
    await expectEventsAndKeptAnswers(payments);
    const written = new Set(payments.map((payment) => payment.id));
    const summary = killed.map(({ kill, run, answered }, i) => {
      const handed = run.lines.filter((line) => line.event === "handed").length;
      return `round ${i}: killed ${killPoint(kill, run, written)}; ${handed} batches handed, ${answered} keys answered first; ${run.ms} ms`;
    });
    const succeeded = payments.filter((payment) => payment.status === "succeeded").length;
    const replayedFirst = [...heard.first.values()].filter((line) => line.replayed).length;
    summary.push(
      `final: ${answers.length} answers in ${final.ms} ms; ${shared.length} shared batches refused on a taken key, neighbours written after: ${neighbours.join(",")}`,
      `${heard.asked.size} keys: ${succeeded} succeeded, ${payments.length - succeeded} failed; ${heard.repeatsAnswered} repeats answered; ${replayedFirst} keys first heard of as a replay (written before a kill, never answered)`,
    );
    console.log(summary.join("\n"));
  });
});
