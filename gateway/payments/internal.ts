// The hot path: a payment between two accounts of one tenant, on the internal rail, settles in the ledger alone.
// Its whole life is one write — the ledger transfer (posted at once: nothing waits on a rail, so nothing needs
// holding), the payment in its final status and the event that announces it — and payments that arrive together
// share that write: handed to the ledger as one request of one transfer each (one short payer refuses only its own),
// their rows as one statement that the ledger's group commit writes in its batch transaction. So concurrent payments
// share one database transaction and one fsync, and each is answered from what was written for it, with nothing read
// back. A lone payment goes at once; while a batch is being written, the next gathers for a turn of the event loop
// (createInternalSettler).
//
// Failure: the statement fails whole when an Idempotency-Key of the batch is already taken (a repeat of an earlier
// request, or another process's at the same moment; a record past its 24 hours holds no key): the keys taken are
// looked up, their payments answered `key_taken` (the caller reads the record), and the others written again
// together. Nothing is half-written — the transfers and the rows commit together or not at all — and a crash before
// the commit leaves nothing. That tenant's keyed payments then have their keys looked up before they join a batch,
// for a while (keysCheckedForMs): its retries fail no other tenant's batch.
//
// Decisions: payments routed alike share one routing decision (routing.ts's memo), kept once in route_decisions
// (migration 0041) and named by the SHA-256 of its JSON. A decision this settler has not seen written is written
// first, on its own (committed before any payment names it); the batch's statement only names it. Written inside
// the batch instead, two batches in flight at once with the same new decision could each wait for the other: the one
// sent first, in PostgreSQL, on the row the other happened to write first; the other, in this process, for the first
// to take the ledger's clock (ledger/store-batch.ts) — a wait no deadlock detector sees.
//
// Ids: the transfer's id and its link are the payment id's own 128 bits (ownLedgerId, migration 0040): time-ordered
// like the ids, and the rows need no index to be found from the ledger. The payment's event (its only one written
// here) is named by the payment id's characters too, "evt_" before them: time-ordered, where the outbox's default (a
// random UUID) lands anywhere in its unique index; the default's 32 hex digits never spell one.
//
// The attempt: an internal payment has one, and it says nothing the final payment and its decision's first candidate
// do not (its id is the payment id's characters, "att_" before them; its transfer the payment's). So it has no row:
// the batch answers with it and a read makes it again (store.ts internalAttemptOf). Its row (a heap tuple, two index
// entries, eleven arrays to send and parse) cost PostgreSQL about 7 of the 58 µs it spent a payment under the HTTP
// bench (issue #19). Payments written before keep theirs.
import { hash } from "node:crypto";
import { setBounded } from "../../core/index.ts";
import { type Db, type Sql, type Statement, textArrayLiteral, textOfShape } from "../db/index.ts";
import {
  type CreateTransferStatus,
  type Ledger,
  type MoveOutcome,
  moveEach,
  type Posting,
} from "../ledger/index.ts";
import {
  decisionJson,
  idempotencyRecordExpired,
  internalAttemptOf,
  isPaymentKeyTaken,
  paymentEventColumns,
  paymentEventSql,
  toJson,
} from "./store.ts";
import { insufficientFundsMessage, type Payment, type PaymentFailureCode } from "./types.ts";

/** The answer an HTTP request with an Idempotency-Key gets, kept with the payment: its status and JSON body. */
export type StoredAnswer = { status: number; body: string };

/**
 * With an Idempotency-Key: the request's digest, and the answer a payment in its final status gets (a repeat reads the
 * payment back and answers it again: an internal payment keeps its key and digest itself, a payment on a rail in its
 * record, as its status and the payment's id).
 */
export type IdempotencyRecord = {
  key: string;
  requestSha256: Buffer;
  answer(payment: Payment): StoredAnswer;
  /**
   * The status of the answer a payment ending so gets, or null when such an answer is not kept (a transient one:
   * a retry runs again). A payment on a rail, final while its request waits, keeps it in the write that ends it.
   */
  keptStatus(payment: Pick<Payment, "status" | "failureCode">): number | null;
};

/** A payment ready to settle: everything but its status, which the ledger's answer decides. */
export type InternalPayment = {
  payment: Omit<
    Payment,
    "status" | "rail" | "failureCode" | "failureMessage" | "attempts" | "createdAt" | "updatedAt"
  >;
  /** The decision's first candidate: the attempt's rail, what it moves and the most it may spend. */
  attempt: { rail: string; amount: bigint; feeMax: bigint };
  /**
   * The payment id's own bits (ownLedgerId): the id of the transfer that moves the amount, and of the payment's one
   * attempt, and what the transfer carries in user_data_128 (the row keeps no ledger link).
   */
  ledgerLink: bigint;
  posting: Posting;
  idempotencyKey: string | null;
  /** Without the record: the digest of the request the key came with, kept on the payment (or null). */
  requestSha256: Buffer | null;
  quoteId: string | null;
  record: IdempotencyRecord | null;
};

export type InternalSettled =
  | { kind: "settled"; payment: Payment; answer: StoredAnswer | null }
  | { kind: "key_taken" };

export type InternalSettler = {
  settle(payment: InternalPayment): Promise<InternalSettled>;
};

/** The most payments written in one statement; more wait for the next turn. */
export const internalBatchPaymentsMax = 1024;

type Waiting = {
  item: InternalPayment;
  resolve: (settled: InternalSettled) => void;
  reject: (error: unknown) => void;
};

type SettlerDeps = { ledger: Ledger; sql: Db; nowMs: () => number };

/**
 * What a batch is written with: the settler's deps, how the decisions its payments name are made sure of, and whom to
 * tell of a tenant whose key the batch found taken.
 */
type Writer = SettlerDeps & {
  keepDecisions: (decisions: BatchDecisions) => Promise<void> | null;
  keyFoundTaken: (tenantId: string) => void;
};

/**
 * How long a tenant one of whose keys a batch found taken has its keyed payments looked up before they join a batch.
 * A key taken that the HTTP layer does not remember (another process answered it, or this one before a restart, or
 * long ago) fails the statement of the batch it is in, every tenant's payments with it: the batch runs again, and the
 * ledger's pipeline is drained and its batches in flight run again, locked, one at a time. A client retrying lost
 * answers, or sending old keys on purpose, would do that to every batch; looked up first (one query for all of its
 * payments gathered in a turn), its taken keys are answered `key_taken` without touching a batch.
 */
export const keysCheckedForMs = 10_000;
/** The most tenants whose keys are looked up at once; past it the one suspected longest ago is forgotten. */
const keysCheckedTenantsMax = 10_000;

export function createInternalSettler(settlerDeps: SettlerDeps): InternalSettler {
  /** Tenants whose keyed payments are looked up before they join a batch, until when (ms). */
  const checked = new Map<string, number>();
  const deps: Writer = {
    ...settlerDeps,
    keepDecisions: decisionKeeper(settlerDeps.sql),
    keyFoundTaken: (tenantId) =>
      setBounded(checked, tenantId, settlerDeps.nowMs() + keysCheckedForMs, keysCheckedTenantsMax),
  };
  const gathering: Waiting[] = [];
  let scheduled = false;
  /** Batches handed to the ledger (or having their keys looked up) and not answered yet. */
  let writing = 0;
  /** Whether a waiting payment's key is to be looked up before it joins a batch (its tenant's untilMs not past). */
  const toCheck = (waiting: Waiting, nowMs: number): boolean => {
    if (waiting.item.idempotencyKey === null) return false;
    const untilMs = checked.get(waiting.item.payment.tenantId);
    return untilMs !== undefined && untilMs > nowMs;
  };
  /** Forgets the tenants whose while has passed: the first in the Map's order, set (or set again) longest ago. */
  const forgetPast = (nowMs: number) => {
    for (const [tenantId, untilMs] of checked) {
      if (untilMs > nowMs) return;
      checked.delete(tenantId);
    }
  };
  const start = (written: Promise<void>) => {
    writing += 1;
    void written.finally(() => {
      writing -= 1;
    });
  };
  const flush = () => {
    scheduled = false;
    while (gathering.length > 0) {
      const batch = gathering.splice(0, internalBatchPaymentsMax);
      const nowMs = checked.size === 0 ? 0 : deps.nowMs();
      if (checked.size > 0) forgetPast(nowMs);
      if (checked.size === 0) {
        start(write(deps, batch, keyRoundsMax));
        continue;
      }
      const joining: Waiting[] = [];
      const looked: Waiting[] = [];
      for (const waiting of batch) (toCheck(waiting, nowMs) ? looked : joining).push(waiting);
      if (joining.length > 0) start(write(deps, joining, keyRoundsMax));
      if (looked.length > 0) start(writeChecked(deps, looked));
    }
  };
  return {
    settle(item) {
      return new Promise((resolve, reject) => {
        gathering.push({ item, resolve, reject });
        if (scheduled) return;
        scheduled = true;
        // Nothing being written: this one goes at once (after the code that is running), alone or with what that
        // code adds. While a batch is being written, the requests parsed in this turn of the event loop join and go
        // in the next turn: batches grow with the load, and a lone payment waits for no one. On PGlite (the database
        // on this thread, a batch possibly answered before another request is read) every batch gathers for a turn.
        if (writing === 0 && deps.sql.kind === "postgres") queueMicrotask(flush);
        else setImmediate(flush);
      });
    },
  };
}

/**
 * Looks the batch's keys up first (keysCheckedForMs): those taken are answered `key_taken` and their tenants looked up
 * again for another while; the others are written together.
 */
async function writeChecked(deps: Writer, batch: Waiting[]): Promise<void> {
  let taken: Set<string>;
  try {
    taken = await takenKeys(deps.sql, batch);
  } catch (error) {
    for (const waiting of batch) waiting.reject(error);
    return;
  }
  const rest = answerTaken(deps, batch, taken);
  if (rest.length > 0) await write(deps, rest, keyRoundsMax);
}

/** Answers `key_taken` to the payments whose key is in `taken` (and notes their tenants); returns the others. */
function answerTaken(deps: Writer, batch: readonly Waiting[], taken: ReadonlySet<string>): Waiting[] {
  const rest: Waiting[] = [];
  for (const waiting of batch) {
    const { tenantId } = waiting.item.payment;
    const key = waiting.item.idempotencyKey;
    if (key !== null && taken.has(`${tenantId}\n${key}`)) {
      deps.keyFoundTaken(tenantId);
      waiting.resolve({ kind: "key_taken" });
    } else rest.push(waiting);
  }
  return rest;
}

/** How many times a batch is written again without the keys found taken, before its payments go one by one. */
const keyRoundsMax = 2;

/**
 * Writes a batch. When a key of it is taken, the taken keys are looked up (one query) and answered `key_taken`, and
 * the others are written again together; a key taken again in between (another process, at that moment) is rare,
 * and after `keyRounds` such rounds each payment goes alone, so that only the taken one hears of it.
 */
async function write(deps: Writer, batch: Waiting[], keyRounds: number): Promise<void> {
  const at = new Date(deps.nowMs());
  let settled: Array<{ payment: Payment; answer: StoredAnswer | null }> = [];
  const decisions = decisionsOf(batch);
  try {
    const keeping = deps.keepDecisions(decisions);
    if (keeping !== null) await keeping;
    await moveEach(
      deps.ledger,
      batch.map(({ item }) => ({
        posting: item.posting,
        transfer: {
          id: item.ledgerLink,
          userData128: item.ledgerLink,
          evidence: internalEvidence,
          label: `internal payment ${item.payment.id}`,
        },
      })),
      (outcomes, statuses) => {
        settled = batch.map(({ item }, i) => finalOf(item, outcomes[i]!, statuses[i]!, at));
        return batchStatement(batch, settled, decisions, at);
      },
    );
  } catch (error) {
    if (!isPaymentKeyTaken(error)) {
      for (const waiting of batch) waiting.reject(error);
      return;
    }
    if (batch.length === 1) {
      deps.keyFoundTaken(batch[0]!.item.payment.tenantId);
      batch[0]!.resolve({ kind: "key_taken" });
      return;
    }
    if (keyRounds === 0) {
      await Promise.all(batch.map((waiting) => write(deps, [waiting], 0)));
      return;
    }
    let taken: Set<string>;
    try {
      taken = await takenKeys(deps.sql, batch);
    } catch (lookupError) {
      for (const waiting of batch) waiting.reject(lookupError);
      return;
    }
    const rest = answerTaken(deps, batch, taken);
    if (rest.length > 0) await write(deps, rest, keyRounds - 1);
    return;
  }
  for (let i = 0; i < batch.length; i++) {
    const { payment, answer } = settled[i]!;
    batch[i]!.resolve({ kind: "settled", payment, answer });
  }
}

/** What every internal transfer carries as its evidence: one object, written as one text for a whole batch. */
const internalEvidence = Object.freeze({ rail: "internal", reference: "ledger" });

/** A batch's routing decisions: each distinct one once, its JSON and the SHA-256 naming it, and each payment's place. */
type BatchDecisions = {
  jsons: string[];
  /** Hex; null for a payment made without a decision (its JSON `null`), which names none. */
  digests: (string | null)[];
  /** Each payment's decision, as its place (from 1) among `jsons`. */
  placeOf: number[];
};

function decisionsOf(batch: readonly Waiting[]): BatchDecisions {
  const places = new Map<string, number>();
  const jsons: string[] = [];
  const digests: (string | null)[] = [];
  const placeOf = batch.map(({ item }) => {
    const json = decisionJson(item.payment.decision, item.payment.destination);
    let place = places.get(json);
    if (place === undefined) {
      jsons.push(json);
      digests.push(json === "null" ? null : decisionDigestOf(json));
      place = jsons.length;
      places.set(json, place);
    }
    return place;
  });
  return { jsons, digests, placeOf };
}

/** The SHA-256 naming a decision's JSON: made once for each (the same text object: decisionJson's memo). */
function decisionDigestOf(json: string): string {
  let digest = decisionDigests.get(json);
  if (digest === undefined) {
    digest = hash("sha256", json, "hex");
    setBounded(decisionDigests, json, digest, keptDecisionsMax);
  }
  return digest;
}

const decisionDigests = new Map<string, string>();

/**
 * How many decisions a settler remembers as written. A snapshot lives a second or so (routing.ts), so a few a second
 * are new; one forgotten and seen again is written again, which changes nothing (ON CONFLICT DO NOTHING).
 */
const keptDecisionsMax = 1_000;

/**
 * Makes sure the decisions a batch names are in route_decisions: null when they are known written (no wait), else
 * the write of those that are not, on its own statement (shared with the batches that meet them while it runs), in
 * the digests' order: another process writing some of the same at once waits for it, or it for them, not both.
 */
function decisionKeeper(sql: Sql): (decisions: BatchDecisions) => Promise<void> | null {
  /** Digests written (`true`), or being written. */
  const kept = new Map<string, true | Promise<void>>();
  return ({ jsons, digests }) => {
    const waits: Promise<void>[] = [];
    const fresh: number[] = [];
    for (let i = 0; i < digests.length; i++) {
      const digest = digests[i] ?? null;
      if (digest === null) continue;
      const known = kept.get(digest);
      if (known === undefined) fresh.push(i);
      else if (known !== true) waits.push(known);
    }
    if (fresh.length > 0) {
      const names = fresh.map((i) => digests[i]!);
      const written = sql
        .query(
          `INSERT INTO route_decisions (digest, decision)
           SELECT decode(digest, 'hex'), decision FROM ROWS FROM (unnest($1::text[]), json_array_elements($2::json))
             AS e (digest, decision)
           ORDER BY digest ON CONFLICT (digest) DO NOTHING`,
          [textArrayLiteral(names), `[${fresh.map((i) => jsons[i]!).join(",")}]`],
        )
        .then(
          () => {
            for (const name of names)
              if (kept.get(name) === written) setBounded(kept, name, true, keptDecisionsMax);
          },
          (error: unknown) => {
            for (const name of names) if (kept.get(name) === written) kept.delete(name);
            throw error;
          },
        );
      for (const name of names) setBounded(kept, name, written, keptDecisionsMax);
      waits.push(written);
    }
    return waits.length === 0 ? null : Promise.all(waits).then(() => undefined);
  };
}

/**
 * The batch's Idempotency-Keys already held, as tenant id and key joined by a newline: by a payment, or — for an item
 * with a record — by another request's record not past its 24 hours, as the batch's statement checks (its `k`). An
 * item without one (its caller found the key's record unusable: unanswered past its timeout, or gone) is kept from
 * nothing by that record: the statement does not check its key against the records either.
 */
async function takenKeys(sql: Sql, batch: readonly Waiting[]): Promise<Set<string>> {
  const keyed = batch.filter(({ item }) => item.idempotencyKey !== null);
  const tenants = keyed.map(({ item }) => item.payment.tenantId);
  const keys = keyed.map(({ item }) => item.idempotencyKey!);
  const recorded = keyed.map(({ item }) => (item.record === null ? "f" : "t"));
  const rows = await sql.query<{ tenant_id: string; key: string }>(
    `WITH wanted AS (SELECT * FROM unnest($1::text[], $2::text[], $3::boolean[]) AS w (tenant_id, key, recorded))
     SELECT tenant_id, key FROM idempotency_keys JOIN wanted w USING (tenant_id, key)
       WHERE w.recorded AND NOT ${idempotencyRecordExpired}
     UNION SELECT p.tenant_id, p.idempotency_key FROM payments p
       JOIN wanted w ON p.tenant_id = w.tenant_id AND p.idempotency_key = w.key`,
    [textArrayLiteral(tenants), textArrayLiteral(keys), `{${recorded.join(",")}}`],
  );
  return new Set(rows.map((row) => `${row.tenant_id}\n${row.key}`));
}

/**
 * The ledger checks that a balance would not overflow before it checks that the payer holds the amount
 * (TigerBeetle's order), so a payer short of a huge amount may hear of an overflow first. The payer's debits passing
 * the most the ledger holds is a shortfall all the same: a tenant's debits never exceed its credits, which are no
 * more than that most. The payee's credits passing it stays `rejected`, said as such: whether the payer holds the
 * amount is not told, and amount_too_large is a 400, an answer no Idempotency-Key keeps for a payment written.
 */
function failureOf(
  outcome: Exclude<MoveOutcome, "moved">,
  status: CreateTransferStatus,
): { code: PaymentFailureCode; message: string } {
  switch (outcome) {
    case "insufficient_funds":
      return { code: outcome, message: insufficientFundsMessage };
    case "insufficient_liquidity":
    case "rejected":
      if (status === "overflows_debits" || status === "overflows_debits_posted")
        return { code: "insufficient_funds", message: insufficientFundsMessage };
      if (status === "overflows_credits" || status === "overflows_credits_posted")
        return {
          code: "rejected",
          message: "the destination account's balance would pass the most the ledger holds with this amount",
        };
      return { code: "rejected", message: "the ledger refused to move the amount between the two accounts" };
  }
}

/** The payment as the ledger's outcome leaves it, and its answer. */
function finalOf(
  item: InternalPayment,
  outcome: MoveOutcome,
  status: CreateTransferStatus,
  at: Date,
): { payment: Payment; answer: StoredAnswer | null } {
  const failure = outcome === "moved" ? null : failureOf(outcome, status);
  const ended = {
    id: item.payment.id,
    status: failure === null ? ("succeeded" as const) : ("failed" as const),
    failureCode: failure?.code ?? null,
    failureMessage: failure?.message ?? null,
  };
  const payment: Payment = {
    ...item.payment,
    ...ended,
    rail: failure === null ? item.attempt.rail : null,
    createdAt: at,
    updatedAt: at,
    attempts: [internalAttemptOf(ended, item.attempt, item.ledgerLink)],
  };
  return { payment, answer: item.record?.answer(payment) ?? null };
}

/**
 * One statement for the whole batch: the payments and their events, each table one INSERT over arrays. A key already
 * taken fails it, which rolls the transaction back, transfers and all: by a payment, as a unique violation of
 * payments_idempotency; by another request's record, through payment_key_taken(). isPaymentKeyTaken knows both.
 *
 * The payments' INSERT takes no ON CONFLICT: a taken key fails the whole batch either way, and the conflict clause made
 * each row a speculative insertion — the unique index searched once before the row was written and again while its
 * entry went in, and the row confirmed after, a WAL record more. Without it, PostgreSQL spent about 4 µs less a
 * payment under the HTTP bench's many-tenant case (issue #19: 64 against 68 µs, ten rows each).
 *
 * An Idempotency-Key's answer is kept by the payment itself: its key and its request's digest are columns of its row,
 * and its answer follows from its final status (http/idempotency.ts keptByPayment). A row of idempotency_keys beside
 * it (as written here before) said nothing more, and cost PostgreSQL about a sixth of what it spent a payment under the
 * HTTP bench (issue #19: 10 of 62 µs, and 350 of 2,350 WAL bytes).
 */
function batchStatement(
  batch: readonly Waiting[],
  settled: readonly { payment: Payment; answer: StoredAnswer | null }[],
  decisions: BatchDecisions,
  at: Date,
): Statement {
  const params: unknown[] = [];
  /** Adds a parameter; its placeholder. */
  const param = (value: unknown) => `$${params.push(value)}`;
  const texts = (values: readonly (string | null)[]) => `unnest(${param(textArrayLiteral(values))}::text[])`;
  // JSON documents travel as one JSON array each, their text as it is: nothing to escape.
  const documents = (values: readonly string[]) =>
    `json_array_elements(${param(`[${values.join(",")}]`)}::json)`;
  const rows = batch.map(({ item }, i) => ({ item, ...settled[i]! }));
  const payments = rows.map((row) => row.payment);
  const keyed = rows.filter((row) => row.item.record !== null && row.item.idempotencyKey !== null);
  const paymentRows = `ROWS FROM (${[
    texts(payments.map((payment) => payment.id)),
    texts(payments.map((payment) => payment.tenantId)),
    texts(payments.map((payment) => payment.status)),
    texts(payments.map((payment) => payment.assetCode)),
    texts(payments.map((payment) => payment.amount.toString())),
    texts(payments.map((payment) => payment.sourceAccountId)),
    documents(payments.map((payment) => toJson(payment.destination))),
    documents(payments.map((payment) => toJson(payment.policy))),
    `unnest(${param(`{${decisions.placeOf.join(",")}}`)}::int[])`,
    texts(payments.map((payment) => payment.rail)),
    texts(payments.map((payment) => payment.failureCode)),
    texts(payments.map((payment) => payment.failureMessage)),
    documents(payments.map((payment) => JSON.stringify(payment.metadata))),
    texts(rows.map((row) => row.item.idempotencyKey)),
    texts(rows.map((row) => row.item.quoteId)),
    // The request's digest, kept on the payment too (migration 0030): its record does not live as long.
    texts(
      rows.map((row) =>
        row.item.idempotencyKey === null
          ? null
          : ((row.item.record?.requestSha256 ?? row.item.requestSha256)?.toString("hex") ?? null),
      ),
    ),
  ].join(", ")})`;
  // The keys a record is asked for are checked against the records of other requests (a claimed-first route's, a
  // refusal's): one there refuses the batch, as its insert's conflict did when the record was written here. Not one
  // past its 24 hours, not pruned yet: that key is a new key's (http/idempotency.ts), and refused it would roll back
  // the whole batch, written again without it, and the payment be made by the route's second try, without its
  // record. Only a row the key finds is read for it: a fresh key (most) costs nothing more.
  const keyRows = `ROWS FROM (${[
    texts(keyed.map((row) => row.payment.tenantId)),
    texts(keyed.map((row) => row.item.idempotencyKey)),
  ].join(", ")})`;
  const now = param(at);
  // The event's time is its transaction's start (now()), as every other event's (the outbox's default), not the
  // batch's clock, which is earlier: the events' list counts on it to hold back what an open transaction may still
  // commit (lists.ts committedHorizonQuery).
  const text = `WITH
     d AS (SELECT place::int, decode(digest, 'hex') AS digest FROM ${texts(decisions.digests)} WITH ORDINALITY
             AS e (digest, place)),
     p AS (INSERT INTO payments (id, tenant_id, status, asset, amount, source_account_id, destination, policy,
             decision_digest, rail, failure_code, failure_message, metadata, idempotency_key, quote_id, request_sha256,
             created_at, updated_at)
       SELECT id, tenant_id, status, asset, amount::bigint, source_account_id, destination, policy, d.digest, rail,
              failure_code, failure_message, metadata::jsonb, idempotency_key, quote_id, decode(sha, 'hex'), ${now},
              ${now}
       FROM ${paymentRows}
         AS t (id, tenant_id, status, asset, amount, source_account_id, destination, policy, decision_place, rail,
               failure_code, failure_message, metadata, idempotency_key, quote_id, sha)
         JOIN d ON d.place = t.decision_place
       RETURNING ${paymentEventColumns}),
     o AS (INSERT INTO outbox (public_id, tenant_id, type, payload, created_at)
       SELECT 'evt_' || substr(id, 5), ${paymentEventSql}, now() FROM p),
     k AS (SELECT 1 FROM ${keyRows} AS t (tenant_id, key) JOIN idempotency_keys USING (tenant_id, key)
             WHERE NOT ${idempotencyRecordExpired})
     SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM k) THEN true ELSE payment_key_taken() END AS written`;
  // One shape: every array is one parameter, whatever the batch's size.
  return { text: textOfShape(batchTexts, "", text), params };
}

const batchTexts = new Map<string, string>();
