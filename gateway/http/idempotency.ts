// Idempotency-Key on POST requests, as Stripe does it: the first request with a key runs and its answer
// is kept; a repeat with the same body gets that answer again (Idempotent-Replayed: true); a repeat with
// another body is refused; a repeat while the first is still running is refused.
//
// Which answers are kept (one rule for every route): the final answer of a request that began executing — a
// success, and a refusal of the service (402, 404 for the path's object, 409, 422: asking again would be refused
// again). Never kept: a 400 (the request is not valid — by its schema, its text or the service's own checks alike,
// an object it names that is not there among them: corrected, it may be sent again with the same key), and
// transient answers (408, 429, 5xx: a retry runs again). Answers given before the key is looked at (401, 403, a
// schema 400, 429 from the rate limit) never touch it.
//
// Required where a route's config says `idempotencyRequired`, on the routes that move money (POST /v1/payments, POST
// /v1/refunds: without a key a retried request would move it twice): without one, 400 idempotency_key_missing.
//
// Records are kept for 24 hours (idempotencyRecordTtlMs, as Stripe): a key whose record is older is treated as new
// (taken over, on every route), and a periodic prune (startIdempotencyPrune) deletes expired records. A payment
// keeps its key for good (payments_idempotency), and its request's digest (migration 0030): after 24 h the key still
// answers the payment it made to that request, and refuses another 409 idempotency_key_reused. A refund likewise
// (migration 0031).
//
// Two ways to keep the record:
// - claimed first (most routes): the key is claimed with a row before the handler runs, and the answer written
//   into it once sent.
// - inline (a route whose config says `idempotency: "inline"`, POST /v1/payments): nothing is written before the
//   handler. The route hands the service the request's digest and how to answer, and the service writes the record
//   in the same transaction as the payment, still unanswered until the answer is sent — or none, when the payment is
//   final in that transaction (an internal payment: one write for everything): the payment keeps the key's answer
//   itself, as its key, its request's digest and its status (keptByPayment). When the service
//   finds the key taken, the route answers from the stored record (storedRecord, answerFromRecord). This process's
//   own keys in flight and its recent answers are remembered, so a repeat to the same process does not look for the
//   key's record: an answer about a payment as the payment's id (read back and answered again), any other as its text.
import { hash } from "node:crypto";
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { type Logger, setBounded } from "../../core/index.ts";
import type { Sql } from "../db/index.ts";
import { idempotencyRecordTtlMs, type StoredAnswer } from "../payments/index.ts";
import { deleteInBatches, type Periodic, startPeriodic } from "../periodic/index.ts";
import { tenantOf } from "./auth.ts";
import { ApiError } from "./errors.ts";

declare module "fastify" {
  interface FastifyRequest {
    idempotencyKey: string | null;
    /** The SHA-256 of the request (method, URL, body) the key was sent with. */
    idempotencyDigest: Buffer | null;
    /**
     * A claimed-first route's claim: its record's created_at, in microseconds since the epoch (claimOf). The answer
     * goes only into that claim: a record claimed anew since (this request taken for dead past the in-progress
     * timeout) is another's.
     */
    idempotencyClaim: string | null;
    /**
     * Set by an inline route: `stored` when its answer is already kept (written with the payment), `replayed` when it
     * is a record's answer again (sendReplay: not remembered, the record may be near the end of its 24 hours),
     * `refused` when the key itself was refused (another request's): in all three, nothing more is written.
     * `unanswered` when the answer is about what the key holds (a payment, its record written unanswered with it):
     * the answer fills that record (or writes it, when it has gone). Left null, an inline route's kept answer (a
     * refusal) is written only where the key has no live record (none, or one past its 24 hours, taken over): it
     * never takes the record another request wrote meanwhile. (An answer never kept — a 400, a transient one —
     * deletes the request's unanswered record either way.)
     */
    idempotencyOutcome: "stored" | "replayed" | "refused" | "unanswered" | null;
    /**
     * Set by an inline route with `stored` when its answer is about a payment, final in the write that kept it: the
     * payment's id, which is what this process remembers (not the answer's text: see rememberedAnswersMax).
     */
    idempotencyAnsweredWith: string | null;
    /**
     * Set before the handler of an inline route when a repeat's answer is remembered as a payment's
     * (idempotencyAnsweredWith): the route answers that payment again, as a replay.
     */
    idempotencyRemembered: string | null;
  }
  interface FastifyContextConfig {
    /**
     * `inline`: the route keeps its answer itself (with what it writes). `none`: the route takes no Idempotency-Key
     * (it answers a secret, which is never stored, or its request is idempotent by itself, as x402's payments are by
     * their nonce): the header is not read, and the document does not offer it.
     */
    idempotency?: "inline" | "none";
    /** The route moves money: a request without an Idempotency-Key is refused (idempotency_key_missing). */
    idempotencyRequired?: boolean;
    /**
     * Top-level fields of the answer never kept (a secret shown once): the record keeps their SHA-256 instead, and a
     * replay answers without them, unless `idempotencyRestore` gives them back.
     */
    idempotencyOmit?: readonly string[];
    /**
     * For a replay of an answer with omitted fields: the fields to give back, read from where they live (a webhook
     * endpoint's secret), each only while its value still hashes to what the record kept (a secret rotated since is
     * not shown: the replay answers without it).
     */
    idempotencyRestore?: (
      request: FastifyRequest,
      answer: Readonly<Record<string, unknown>>,
      digests: Readonly<Record<string, string>>,
    ) => Promise<Record<string, unknown>>;
  }
}

export const idempotencyKeyLengthMax = 255;

/** What a key is made of: visible ASCII, as the OpenAPI document says (its `pattern`). */
export const idempotencyKeyPattern = "^[\\x21-\\x7e]+$";
const idempotencyKeyRegex = new RegExp(idempotencyKeyPattern);

/**
 * How long an idempotency record is kept: a key older than this is treated as new. 24 h, as Stripe. The payments'
 * own writes under a key (a payment's record, an internal batch's check) hold to it too: defined there.
 */
export { idempotencyRecordTtlMs };

/** How often expired records are pruned, and how many one statement deletes. */
export const idempotencyPruneEveryMs = 10 * 60 * 1000;
export const idempotencyPruneBatchMax = 5_000;
/** The most time one prune pass spends deleting: what is left waits for the next pass. */
const idempotencyPrunePassMsMax = 30_000;

/**
 * Whether an answer with this status is kept under its key (see the header): not a 400, not a transient answer.
 * 409 is kept too: the key refusals (reused, in use) are answered before anything is claimed, or give their claim
 * back (a refund's key held by another request's refund: onSend).
 */
export function isKeptAnswer(status: number): boolean {
  return status < 500 && status !== 400 && status !== 408 && status !== 429;
}

/**
 * Deletes records older than `ttlMs`, by idempotency_keys_created_at (migration 0024), `batchMax` a statement
 * (deleteInBatches: until one deletes fewer or the pass has run idempotencyPrunePassMsMax); returns how many.
 */
export async function pruneIdempotencyRecords(
  sql: Sql,
  params: { ttlMs: number; batchMax: number; nowMs?: () => number },
): Promise<number> {
  const { deleted } = await deleteInBatches(
    sql,
    {
      text: `DELETE FROM idempotency_keys WHERE (tenant_id, key) IN (
               SELECT tenant_id, key FROM idempotency_keys
               WHERE created_at < now() - make_interval(secs => $1::double precision / 1000) LIMIT $2)
             RETURNING key`,
      param: params.ttlMs,
    },
    {
      batchMax: params.batchMax,
      passMsMax: idempotencyPrunePassMsMax,
      ...(params.nowMs === undefined ? {} : { nowMs: params.nowMs }),
    },
  );
  return deleted;
}

/** The periodic prune of expired idempotency records, for the composition root. */
export function startIdempotencyPrune(deps: { sql: Sql; logger: Logger }): Periodic {
  return startPeriodic({
    name: "idempotency prune",
    intervalMs: idempotencyPruneEveryMs,
    pass: () =>
      pruneIdempotencyRecords(deps.sql, {
        ttlMs: idempotencyRecordTtlMs,
        batchMax: idempotencyPruneBatchMax,
      }),
    logger: deps.logger,
  });
}

/**
 * How many answers of inline routes each process remembers (the least recently set forgotten first). An answer kept
 * in memory outlives the young generation and is copied into the old one, where it is garbage a while later: under
 * load that costs every payment, whatever the memory answers (issue #19, the HTTP bench's internal payments at a fixed
 * 6,000/s: the gateway's main thread busy 57–58 % remembering 10,000, 54–55 % remembering 1,000, 51–52 % remembering
 * 100). So an answer about a payment (every payment's that is final in its request) is remembered as the payment's id,
 * and a repeat reads the payment back, as a repeat in another process does (its record says the same); the text of
 * a payment's answer was 1.65 of the 5.6 KB a payment left to the old generation (sampling heap profile, internal
 * payments at 5,000/s). 1,000 covers a retry's usual second or more up to a thousand payments a second; past that, or
 * in another process, a repeat is answered from its record (one query more).
 */
export const rememberedAnswersMax = 1_000;

/**
 * How long a process remembers an answer: never past its record, which the prune deletes once older than
 * idempotencyRecordTtlMs, after which the key is a new key's and another process may have used it so. The record was
 * written before the answer was remembered; ten minutes short of its lifetime covers the request's own run and the
 * clocks of the process and the database disagreeing.
 */
export const rememberedAnswerTtlMs = idempotencyRecordTtlMs - 10 * 60 * 1000;

export type IdempotencyOptions = {
  sql: Sql;
  /** A key whose first request has run this long without an answer is taken to have died with its process. */
  inProgressTimeoutMs: number;
  /** How many answers of inline routes are remembered (default rememberedAnswersMax). */
  rememberedAnswersMax?: number;
  /** How long an answer is remembered (default rememberedAnswerTtlMs). */
  rememberedAnswerTtlMs?: number;
};

/**
 * The request's digest: its method, URL and body as the schema made it. Frozen: payments and refunds keep it for
 * good (migrations 0030, 0031), so a change here — or to what a route's schema makes of a body (a new default, a
 * transform) — makes a retry after the upgrade look like another request, unless old digests are told apart (a
 * recipe version). test/http/idempotency.test.ts pins a payment request's digest.
 */
function requestDigest(method: string, url: string, body: unknown): Buffer {
  return hash("sha256", `${method} ${url}\n${JSON.stringify(body ?? null)}`, "buffer");
}

/**
 * A claim's mark: its record's created_at in microseconds since the epoch, as an int8 (its text read back: no
 * DateStyle or time zone abbreviation in between). A key claimed anew gets a later one.
 */
const claimOf = "(extract(epoch FROM idempotency_keys.created_at) * 1000000)::int8";

/** What the stored record says about a repeated key. */
export type StoredRecord =
  | { kind: "answered"; answer: StoredAnswer }
  /** Answered with this payment in its final status, written with it: answer it again. */
  | { kind: "payment"; paymentId: string }
  | { kind: "reused" }
  | { kind: "in_use" }
  /** No record, or one whose request died unanswered: the caller answers from the state of things. */
  | { kind: "none" };

/**
 * A payment final in the one write that made it (an internal payment: payments/internal.ts) keeps its key's answer
 * itself — the key, its request's digest, and its status — rather than in a record of its own: the SQL condition on
 * `payments` for such a payment holding the key `$1`/`$2` (tenant, key), within the 24 hours a record would live.
 */
const keptByPayment = `payments.tenant_id = $1 AND payments.idempotency_key = $2 AND payments.ledger_link IS NULL
  AND payments.request_sha256 IS NOT NULL AND payments.status <> 'processing'
  AND payments.created_at >= now() - make_interval(secs => ${idempotencyRecordTtlMs / 1000})`;

/**
 * Looks up the record of a key that is taken. A record past its 24 hours is a new key's: none. A payment that keeps
 * its key's answer itself (keptByPayment) answers a request with its digest again, whatever record is under the key
 * too (a refusal another process wrote for another body at the same moment: it keeps answering that body), and
 * refuses another body as a record would.
 */
export async function storedRecord(
  sql: Sql,
  params: { tenantId: string; key: string; digest: Buffer; inProgressTimeoutMs: number },
): Promise<StoredRecord> {
  const rows = await sql.query<{
    request_sha256: Buffer;
    response_status: number | null;
    response_body: unknown;
    payment_id: string | null;
    stale: boolean;
    kept_by_payment: boolean;
  }>(
    `SELECT request_sha256, response_status, response_body::text AS response_body, payment_id,
       created_at < now() - make_interval(secs => $3::double precision / 1000) AS stale, false AS kept_by_payment
     FROM idempotency_keys WHERE tenant_id = $1 AND key = $2
       AND created_at >= now() - make_interval(secs => $4::double precision / 1000)
     UNION ALL
     SELECT request_sha256, NULL, NULL, id, false, true FROM payments WHERE ${keptByPayment}`,
    [params.tenantId, params.key, params.inProgressTimeoutMs, idempotencyRecordTtlMs],
  );
  const payment = rows.find((row) => row.kept_by_payment);
  if (payment !== undefined && Buffer.from(payment.request_sha256).equals(params.digest))
    return { kind: "payment", paymentId: payment.payment_id! };
  const stored = rows.find((row) => !row.kept_by_payment) ?? payment;
  if (stored === undefined) return { kind: "none" };
  if (!Buffer.from(stored.request_sha256).equals(params.digest)) return { kind: "reused" };
  if (stored.response_status === null) return stored.stale ? { kind: "none" } : { kind: "in_use" };
  if (stored.response_body === null && stored.payment_id !== null)
    return { kind: "payment", paymentId: stored.payment_id };
  return { kind: "answered", answer: { status: stored.response_status, body: String(stored.response_body) } };
}

const keyReused = () =>
  new ApiError(
    "idempotency_key_reused",
    "this Idempotency-Key was used with another request; use a new key for a new request",
  );
const keyInUse = () =>
  new ApiError("idempotency_key_in_use", "a request with this Idempotency-Key is being run; retry shortly");

/** Sends a stored answer again, marked as a replay. */
export function sendReplay(request: FastifyRequest, reply: FastifyReply, answer: StoredAnswer): FastifyReply {
  request.idempotencyOutcome = "replayed";
  return reply
    .code(answer.status)
    .header("idempotent-replayed", "true")
    .type("application/json; charset=utf-8")
    .send(answer.body);
}

/** Throws the refusal a stored record means, or sends its answer; `none` and `payment` are the caller's to answer. */
export function answerFromRecord(
  request: FastifyRequest,
  reply: FastifyReply,
  record: StoredRecord,
): FastifyReply | null {
  switch (record.kind) {
    case "reused":
      request.idempotencyOutcome = "refused";
      throw keyReused();
    case "in_use":
      request.idempotencyOutcome = "refused";
      throw keyInUse();
    case "answered":
      return sendReplay(request, reply, record.answer);
    case "none":
    case "payment":
      return null;
  }
}

/** Where a kept answer holds the SHA-256 of each field it omits (withoutFields). */
const omittedDigestsField = "__omitted_sha256";

/** The hex SHA-256 of an omitted field's value, as withoutFields keeps it. */
export function omittedDigest(value: string): string {
  return hash("sha256", value, "hex");
}

/**
 * A JSON object answer without the `omit` fields, their SHA-256 kept in their stead (omittedDigestsField) for a
 * replay to check what it gives back against (an error answer has none of them: unchanged).
 */
function withoutFields(body: string, omit: readonly string[] | undefined): string {
  if (omit === undefined || omit.length === 0) return body;
  const parsed = JSON.parse(body) as Record<string, unknown>;
  const digests: Record<string, string> = {};
  for (const field of omit) {
    const value = parsed[field];
    if (typeof value === "string") digests[field] = omittedDigest(value);
    delete parsed[field];
  }
  if (Object.keys(digests).length > 0) parsed[omittedDigestsField] = digests;
  return JSON.stringify(parsed);
}

/** A kept answer as a replay sends it: without the omitted fields' digests, with what the route gives back of them. */
async function replayedAnswer(request: FastifyRequest, answer: StoredAnswer): Promise<StoredAnswer> {
  const { idempotencyOmit: omit, idempotencyRestore: restore } = request.routeOptions.config;
  if (omit === undefined || !answer.body.includes(omittedDigestsField)) return answer;
  const parsed = JSON.parse(answer.body) as Record<string, unknown>;
  const digests = parsed[omittedDigestsField];
  delete parsed[omittedDigestsField];
  const given =
    restore === undefined || typeof digests !== "object" || digests === null
      ? {}
      : await restore(request, parsed, digests as Record<string, string>);
  return { status: answer.status, body: JSON.stringify({ ...parsed, ...given }) };
}

const plugin: FastifyPluginAsync<IdempotencyOptions> = async (app, options) => {
  app.decorateRequest("idempotencyKey", null);
  app.decorateRequest("idempotencyDigest", null);
  app.decorateRequest("idempotencyClaim", null);
  app.decorateRequest("idempotencyOutcome", null);
  app.decorateRequest("idempotencyAnsweredWith", null);
  app.decorateRequest("idempotencyRemembered", null);
  // Inline routes' keys in flight in this process, and their recent answers (tenant id and key, joined by a newline).
  const inFlight = new Set<string>();
  /** An answer, or the payment it is about (answered again, read back). */
  type Remembered = { digest: Buffer; answer: StoredAnswer | string; forgetAtMs: number };
  const answered = new Map<string, Remembered>();
  const answeredMax = options.rememberedAnswersMax ?? rememberedAnswersMax;
  const answerTtlMs = options.rememberedAnswerTtlMs ?? rememberedAnswerTtlMs;
  const remember = (memo: string, digest: Buffer, status: number, answer: StoredAnswer | string) => {
    answered.delete(memo);
    // A 202 tells how a payment stood then: its repeats answer how it stands now (the route reads it).
    if (status === 202) return;
    setBounded(answered, memo, { digest, answer, forgetAtMs: Date.now() + answerTtlMs }, answeredMax);
  };

  app.addHook("preHandler", async (request, reply) => {
    if (request.method !== "POST" || request.tenant === null) return;
    // No route took the request (404, 405): nothing ran, so nothing is kept under its key (the corrected request
    // runs under it), and its body, which no schema bounded, is never hashed.
    if (request.is404) return;
    if (request.routeOptions.config.idempotency === "none") return;
    const header = request.headers["idempotency-key"];
    if (header === undefined) {
      if (request.routeOptions.config.idempotencyRequired !== true) return;
      throw new ApiError(
        "idempotency_key_missing",
        "this request moves money: send an Idempotency-Key header (a new unique value, such as a UUID, per operation, the same on every retry of it) so that a retry cannot make it twice",
      );
    }
    const key = Array.isArray(header) ? header[0] : header;
    if (
      key === undefined ||
      key.length === 0 ||
      key.length > idempotencyKeyLengthMax ||
      !idempotencyKeyRegex.test(key)
    ) {
      throw new ApiError(
        "idempotency_key_invalid",
        `Idempotency-Key must be 1 to ${idempotencyKeyLengthMax} visible ASCII characters`,
      );
    }
    const tenant = tenantOf(request);
    const digest = requestDigest(request.method, request.url, request.body);
    if (request.routeOptions.config.idempotency === "inline") {
      const memo = `${tenant.id}\n${key}`;
      if (inFlight.has(memo)) throw keyInUse();
      let remembered = answered.get(memo);
      if (remembered !== undefined && remembered.forgetAtMs <= Date.now()) {
        answered.delete(memo);
        remembered = undefined;
      }
      if (remembered !== undefined) {
        if (!remembered.digest.equals(digest)) throw keyReused();
        if (typeof remembered.answer !== "string") return sendReplay(request, reply, remembered.answer);
        request.idempotencyRemembered = remembered.answer;
        return;
      }
      inFlight.add(memo);
      request.idempotencyKey = key;
      request.idempotencyDigest = digest;
      return;
    }
    // Claimed anew: a record whose request died unanswered (same request, in progress past its timeout), and
    // any record past its 24 h, which is a new key's.
    // A payment keeping its key's answer itself (keptByPayment) holds the key as a live record would.
    const claimed = await options.sql.query<{ claim: string }>(
      `INSERT INTO idempotency_keys (tenant_id, key, request_sha256)
       SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM payments WHERE ${keptByPayment})
       ON CONFLICT (tenant_id, key) DO UPDATE SET created_at = now(),
         request_sha256 = EXCLUDED.request_sha256, response_status = NULL, response_body = NULL, payment_id = NULL
         WHERE (idempotency_keys.response_status IS NULL
             AND idempotency_keys.request_sha256 = EXCLUDED.request_sha256
             AND idempotency_keys.created_at < now() - make_interval(secs => $4::double precision / 1000))
           OR idempotency_keys.created_at < now() - make_interval(secs => $5::double precision / 1000)
       RETURNING ${claimOf}::text AS claim`,
      [tenant.id, key, digest, options.inProgressTimeoutMs, idempotencyRecordTtlMs],
    );
    if (claimed.length === 1) {
      request.idempotencyKey = key;
      request.idempotencyDigest = digest;
      request.idempotencyClaim = claimed[0]!.claim;
      return;
    }
    const record = await storedRecord(options.sql, {
      tenantId: tenant.id,
      key,
      digest,
      inProgressTimeoutMs: options.inProgressTimeoutMs,
    });
    // The claim failed, so a record exists; gone since (a server error deleted it), or turned 24 hours old since:
    // being run, retry (a retry takes it over).
    if (record.kind === "answered")
      return sendReplay(request, reply, await replayedAnswer(request, record.answer));
    return answerFromRecord(request, reply, record.kind === "none" ? { kind: "in_use" } : record);
  });

  // Callback style: a request without a key (most of them) passes straight through, without a promise.
  app.addHook("onSend", (request, reply, payload, done) => {
    const key = request.idempotencyKey;
    const tenant = request.tenant;
    if (key === null || tenant === null) return done(null, payload);
    const inline = request.routeOptions.config.idempotency === "inline";
    const memo = `${tenant.id}\n${key}`;
    const body = typeof payload === "string" ? payload : JSON.stringify(payload);
    if (inline) {
      inFlight.delete(memo);
      if (request.idempotencyOutcome === "refused" || request.idempotencyOutcome === "replayed")
        return done(null, payload);
      if (request.idempotencyOutcome === "stored") {
        const about = request.idempotencyAnsweredWith;
        remember(
          memo,
          request.idempotencyDigest!,
          reply.statusCode,
          about ?? { status: reply.statusCode, body },
        );
        return done(null, payload);
      }
    }
    let stored: Promise<unknown>;
    if (!isKeptAnswer(reply.statusCode) || request.idempotencyOutcome === "refused") {
      // A 400 or a transient answer: the claim goes (a payment's record written unanswered with it too), so that
      // the corrected request, or the retry, runs. A claimed-first route that found its key held by another request's
      // object (a refund's key, past its record's 24 hours: refused idempotency_key_reused) gives its claim back too:
      // the key stays that request's. Only this request's record goes: a claimed-first route's own claim; an inline
      // route's record of this request's body (its digest) — an identical request's unanswered record cannot be told
      // from it and goes too: a repeat then answers the payment under the key as it stands, as it would once that
      // record's timeout passed.
      stored =
        request.idempotencyClaim === null
          ? options.sql.query(
              `DELETE FROM idempotency_keys
               WHERE tenant_id = $1 AND key = $2 AND request_sha256 = $3 AND response_status IS NULL`,
              [tenant.id, key, request.idempotencyDigest],
            )
          : options.sql.query(
              `DELETE FROM idempotency_keys
               WHERE tenant_id = $1 AND key = $2 AND ${claimOf} = $3::int8 AND response_status IS NULL`,
              [tenant.id, key, request.idempotencyClaim],
            );
    } else if (inline) {
      // A payment's answer (`unanswered`) fills the record the service wrote unanswered with it (a payment not final
      // yet), or the key's record when the payment was another request's (written again if it has gone) — unless
      // another request's answer is there (a repeat, in another process, that found the payment final). A refusal
      // (nothing written under the key) is kept only where the key has no record: a live one there now is another
      // request's, written since this one looked (a repeat that made the payment), and stays that request's. Either
      // takes over a record past its 24 hours (a new key's, not pruned yet), as a claimed-first claim does.
      // Remembered only when kept.
      stored = options.sql
        .query<{ key: string }>(
          `INSERT INTO idempotency_keys (tenant_id, key, request_sha256, response_status, response_body)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (tenant_id, key) DO UPDATE SET response_status = EXCLUDED.response_status,
             response_body = EXCLUDED.response_body, request_sha256 = EXCLUDED.request_sha256,
             created_at = CASE WHEN idempotency_keys.created_at < now() - make_interval(secs => $6::double precision / 1000)
               THEN now() ELSE idempotency_keys.created_at END, payment_id = NULL
             WHERE ($7::boolean AND idempotency_keys.response_status IS NULL
                 AND idempotency_keys.request_sha256 = EXCLUDED.request_sha256)
               OR idempotency_keys.created_at < now() - make_interval(secs => $6::double precision / 1000)
           RETURNING key`,
          [
            tenant.id,
            key,
            request.idempotencyDigest,
            reply.statusCode,
            body,
            idempotencyRecordTtlMs,
            request.idempotencyOutcome === "unanswered",
          ],
        )
        .then((kept) => {
          if (kept.length === 1)
            remember(memo, request.idempotencyDigest!, reply.statusCode, { status: reply.statusCode, body });
        });
    } else {
      // Into this request's claim only: claimed anew since (this request ran past the in-progress timeout, and a
      // repeat took the key), the record is the repeat's, for its own answer.
      stored = options.sql.query(
        `UPDATE idempotency_keys SET response_status = $3, response_body = $4
         WHERE tenant_id = $1 AND key = $2 AND ${claimOf} = $5::int8 AND response_status IS NULL`,
        [
          tenant.id,
          key,
          reply.statusCode,
          withoutFields(body, request.routeOptions.config.idempotencyOmit),
          request.idempotencyClaim,
        ],
      );
    }
    // The answer goes out whatever became of keeping it: it says what was done, and an error here would make
    // Fastify answer a second time, outside the API's error shape. A record left unanswered reads as in use,
    // then as dead once the in-progress timeout has passed: the key is never answered with another request's.
    stored.then(
      () => done(null, payload),
      (error: unknown) => {
        request.log.error(
          { err: error, status: reply.statusCode },
          "the Idempotency-Key's answer was not kept",
        );
        done(null, payload);
      },
    );
  });
};

export const idempotencyPlugin = fp(plugin, {
  name: "switchyard-idempotency",
  dependencies: ["switchyard-auth"],
});
