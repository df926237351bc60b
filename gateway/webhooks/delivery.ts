// Delivery of the outbox's events, per (event, endpoint). A state change and its event commit in one
// transaction (the outbox); delivery then:
// 1. fans each new event out, once, to the tenant's endpoints that want it at that moment: one
//    webhook_deliveries row per (event, endpoint), unique, so two processes fanning out at once make one;
// 2. claims due deliveries for claimMs (locked_until: a process never sends one a second process holds), at most
//    tenantInFlightMax of a tenant's at once (counted over every process's unexpired claims) and at most
//    globalInFlightMax per process, the tenants' turns interleaved; each claim is numbered, and an attempt records
//    its outcome only while the delivery is still under its claim (one that outlived it changes nothing);
// 3. POSTs each one signed, concurrently, each attempt bounded by deliveryTimeoutMs, and records the attempt in
//    the endpoint's log (time, status code, latency, error). A 2xx ends that delivery alone: one endpoint's
//    failure never makes another receive the event again. A failure is retried with exponential backoff and
//    jitter (backoffBaseMs doubling, capped at backoffMaxMs) until giveUpAfterMs after the event's fan-out, then
//    the delivery is `failed`. An endpoint whose attempts have all failed for disableAfterMs is disabled, and the
//    tenant gets a `webhook_endpoint.disabled` event.
// Receivers dedupe on the event id: a delivery may repeat (a redelivery, a claim expired mid-attempt), never
// vanish before giving up.
import type { Db, Logger, Sql } from "../../core/index.ts";
import { textArrayLiteral } from "../db/index.ts";
import { newId } from "../ids/index.ts";
import { presentEvent } from "./events.ts";
import { signedHeaders } from "./signing.ts";

/** How long a delivery is retried after its event was fanned out, before it is `failed`: 3 days. */
export const webhookDeliveryGiveUpAfterMs = 3 * 24 * 3_600_000;
/** How long an endpoint's attempts may all fail before it is disabled: 5 days (Standard Webhooks' advice). */
export const webhookEndpointDisableAfterMs = 5 * 24 * 3_600_000;

export type WebhookLimits = {
  /** The most events fanned out per batch (a pass drains up to fanOutBatchesPerPassMax batches). */
  batchEventsMax: number;
  /** One attempt's bound: connection, answer and all. */
  deliveryTimeoutMs: number;
  /** How long a claim holds a delivery; longer than deliveryTimeoutMs, so a live attempt keeps its claim. */
  claimMs: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** The most deliveries of one tenant in flight at once, over all processes. */
  tenantInFlightMax: number;
  /** The most deliveries in flight at once in one process. */
  globalInFlightMax: number;
  giveUpAfterMs: number;
  disableAfterMs: number;
  /** The most characters of an attempt's error text kept. */
  errorCharsMax: number;
};

export const webhookLimitsDefault: WebhookLimits = {
  batchEventsMax: 500,
  deliveryTimeoutMs: 10_000,
  claimMs: 60_000,
  backoffBaseMs: 1_000,
  backoffMaxMs: 3_600_000,
  tenantInFlightMax: 4,
  globalInFlightMax: 64,
  giveUpAfterMs: webhookDeliveryGiveUpAfterMs,
  disableAfterMs: webhookEndpointDisableAfterMs,
  errorCharsMax: 500,
};

export const signatureHeader = "switchyard-signature";

// ---- sending: the seam the egress guard plugs into

export type DeliveryRequest = {
  url: string;
  headers: Readonly<Record<string, string>>;
  body: string;
  signal: AbortSignal;
};
/** What came back: the receiver's status, or why none came. */
export type DeliveryResponse = { statusCode: number } | { error: string };
export type Send = (request: DeliveryRequest) => Promise<DeliveryResponse>;

/** A plain POST, redirects not followed, the answer's body left unread. */
export const fetchSend: Send = async (request) => {
  try {
    const response = await fetch(request.url, {
      method: "POST",
      headers: { "content-type": "application/json", ...request.headers },
      body: request.body,
      signal: request.signal,
      redirect: "manual",
    });
    await response.body?.cancel();
    return { statusCode: response.status };
  } catch (error) {
    return { error: error instanceof Error ? error.message : String(error) };
  }
};

export type DeliveryDeps = {
  db: Db;
  limits: WebhookLimits;
  nowMs: () => number;
  /** How a request goes out; fetchSend unless given. */
  send?: Send;
  /** In [0, 1): the backoff's jitter; Math.random unless given. */
  random?: () => number;
  /** What the events' `livemode` says: true in production; false unless given. */
  livemode?: boolean;
};

// ---- fan-out

/** The most batches of batchEventsMax events one fan-out drains before it lets the pass claim deliveries. */
export const fanOutBatchesPerPassMax = 20;

/**
 * Fans out the new events, batchEventsMax at a time, until none is left or fanOutBatchesPerPassMax batches are done
 * (a backlog drains over the next passes). Events are read past the outbox_fan_out cursor in the order of the
 * transactions that wrote them (xact, then id), and only from transactions older than every one still running
 * (pg_snapshot_xmin): an event of a transaction still open cannot appear later behind the cursor, so none is
 * skipped; a long-open transaction delays fan-out until it ends. Each batch costs two statements however many events
 * it holds: one reads the events with the endpoints that want each, the other writes their deliveries and moves the
 * cursor — all of the batch or none of it. No event row is written to (migration 0029). Returns how many deliveries
 * it made.
 */
export async function fanOutEvents(deps: DeliveryDeps): Promise<number> {
  await rebaseIfRestored(deps.db);
  let made = 0;
  for (let batch = 0; batch < fanOutBatchesPerPassMax; batch++) {
    const fanned = await fanOutBatch(deps);
    made += fanned.made;
    if (fanned.events < deps.limits.batchEventsMax) break;
  }
  return made;
}

/**
 * Transaction ids are a cluster's own: a database restored into another cluster (a dump, a move from PGlite) keeps
 * the events' xact and the cursor, while the new cluster counts from where it is — maybe below the cursor, and then
 * its events would sort behind it and never be fanned out. A cursor ahead of every transaction this cluster has
 * begun (pg_snapshot_xmax) can only come from such a move: the events fanned out before it lose their place (xact
 * null), those the old cluster had not fanned out take this transaction's, and the cursor starts over. Events the
 * new cluster wrote are below its counter and keep theirs.
 */
async function rebaseIfRestored(db: Db): Promise<void> {
  const ahead = "xact >= pg_snapshot_xmax(pg_current_snapshot())";
  const [cursor] = await db.query<{ ahead: boolean }>(`SELECT ${ahead} AS ahead FROM outbox_fan_out`);
  if (cursor?.ahead !== true) return;
  await db.transaction(async (tx) => {
    const [held] = await tx.query<{ xact: string; id: bigint; ahead: boolean }>(
      `SELECT xact::text AS xact, id, ${ahead} AS ahead FROM outbox_fan_out FOR UPDATE`,
    );
    if (held?.ahead !== true) return; // another process rebased it meanwhile
    await tx.query(`UPDATE outbox SET xact = NULL WHERE ${ahead} AND (xact, id) <= ($1::xid8, $2::bigint)`, [
      held.xact,
      held.id,
    ]);
    await tx.query(`UPDATE outbox SET xact = pg_current_xact_id() WHERE ${ahead}`);
    await tx.query("UPDATE outbox_fan_out SET xact = '0', id = 0");
  });
}

/** One batch: its events and the deliveries made. */
async function fanOutBatch(deps: DeliveryDeps): Promise<{ events: number; made: number }> {
  // The batch's events (events marked by the fan-out before the cursor, fanned_out_at, have no xact and stay out of
  // the range), read once: a row for each endpoint that wants one, in order, then the batch's last event and its
  // count — an event no endpoint wants is not sent back (most of them, most of the time), only counted. The cursor
  // is read as a value (a subquery), so that both ends of the range bound the index scan: joined as a table, its
  // comparison was a filter over every retained event.
  const rows = await deps.db.query<{
    id: bigint;
    xact: string;
    tenant_id: string | null;
    endpoint_id: string | null;
    events: number | null;
  }>(
    `WITH event AS (
       SELECT o.id, o.xact, o.tenant_id, o.type FROM outbox o
       WHERE (o.xact, o.id) > (SELECT xact, id FROM outbox_fan_out)
         AND o.xact < pg_snapshot_xmin(pg_current_snapshot())
       ORDER BY o.xact, o.id LIMIT $1),
     last AS (SELECT id, xact FROM event ORDER BY xact DESC, id DESC LIMIT 1)
     SELECT id, xact::text AS xact, tenant_id, endpoint_id, events FROM (
       SELECT 0 AS part, event.xact AS x, event.id, event.xact, event.tenant_id, endpoint.created_at AS since,
              endpoint.id AS endpoint_id, NULL::int AS events
       FROM event JOIN webhook_endpoints endpoint
         ON endpoint.tenant_id = event.tenant_id AND endpoint.enabled
        AND (endpoint.enabled_events ? '*' OR endpoint.enabled_events ? event.type)
       UNION ALL
       SELECT 1, last.xact, last.id, last.xact, NULL, NULL, NULL, (SELECT count(*)::int FROM event) FROM last
     ) AS batch
     ORDER BY part, x, id, since, endpoint_id`,
    [deps.limits.batchEventsMax],
  );
  const last = rows.at(-1);
  if (last === undefined || last.events === null) return { events: 0, made: 0 };
  const { events } = last;
  const wanted = rows.slice(0, -1) as Array<{ id: bigint; tenant_id: string; endpoint_id: string }>;
  // Two processes fanning out one batch make one delivery per endpoint (the unique pair); the cursor only moves on.
  // An endpoint deleted since the read gets none: the endpoints are locked against deletion first (a delete that
  // committed meanwhile leaves its row out), so no delivery names one that is gone.
  const [written] = await deps.db.query<{ made: number }>(
    `WITH live AS (
       SELECT id FROM webhook_endpoints WHERE id = ANY($4::text[]) FOR KEY SHARE
     ), made AS (
       INSERT INTO webhook_deliveries (id, tenant_id, event_id, endpoint_id)
       SELECT d.id, d.tenant_id, d.event_id, d.endpoint_id
       FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) AS d (id, tenant_id, event_id, endpoint_id)
       WHERE d.endpoint_id IN (SELECT id FROM live)
       ON CONFLICT (event_id, endpoint_id) DO NOTHING RETURNING 1
     ), moved AS (
       UPDATE outbox_fan_out SET xact = $5::xid8, id = $6::bigint WHERE (xact, id) < ($5::xid8, $6::bigint)
     )
     SELECT count(*)::int AS made FROM made`,
    [
      textArrayLiteral(wanted.map(() => newId("whd", deps.nowMs()))),
      textArrayLiteral(wanted.map((row) => row.tenant_id)),
      `{${wanted.map((row) => row.id).join(",")}}`,
      textArrayLiteral(wanted.map((row) => row.endpoint_id)),
      last.xact,
      last.id,
    ],
  );
  return { events, made: written?.made ?? 0 };
}

// ---- claims

export type ClaimedDelivery = {
  id: string;
  tenant_id: string;
  endpoint_id: string;
  attempts: number;
  event_seq: bigint;
  event_id: string;
  type: string;
  payload: unknown;
  event_created_at: Date;
  url: string;
  secret: string;
  /** The secret before a rotation, while it still signs; else null. */
  previous_secret: string | null;
  /** This claim's number: the attempt records its outcome only while the delivery is still under it. */
  claims: number;
};

/**
 * Claims up to `countMax` due deliveries of enabled endpoints, no tenant past tenantInFlightMax in flight (its
 * unexpired claims), the tenants' turns interleaved (each one's first due, then each one's second…). A delivery
 * another pass is claiming at that moment is skipped, not waited for: passes locking their choices in different
 * orders would otherwise deadlock (they did, on PostgreSQL, once the table held a few thousand deliveries). A pass
 * reads what it may claim and little more: one index descent per endpoint with pending deliveries (none when nothing
 * is due), at most tenantInFlightMax due rows of each enabled one, and the claimed rows (migration 0051) — never a
 * backlog. Each comes with its event as the `events` view shows it (a payment's with the payment's facts, 0056).
 */
export async function claimDeliveries(deps: DeliveryDeps, countMax: number): Promise<ClaimedDelivery[]> {
  if (countMax <= 0) return [];
  return deps.db.query<ClaimedDelivery>(
    // busy: each tenant's unexpired claims. pending_endpoints: each endpoint with a pending delivery, one index
    // descent apiece (a loose scan of webhook_deliveries_endpoint_due), and none when no delivery at all is due and
    // unclaimed (webhook_deliveries_due walked in its order to the first such row: a scalar subquery, so that its
    // ORDER BY and LIMIT stay and no bitmap of every due row is built). due: each enabled one's first $1 due and
    // unclaimed, numbered per tenant: a tenant's first $1 overall are among them.
    `WITH RECURSIVE busy AS (
       SELECT tenant_id, count(*)::int AS n FROM webhook_deliveries
       WHERE status = 'pending' AND locked_until IS NOT NULL AND locked_until > now() GROUP BY tenant_id
     ), pending_endpoints (endpoint_id) AS (
       (SELECT endpoint_id FROM webhook_deliveries
        WHERE status = 'pending'
          AND (SELECT 1 FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= now()
                 AND (locked_until IS NULL OR locked_until <= now()) ORDER BY next_attempt_at, id LIMIT 1) = 1
        ORDER BY endpoint_id LIMIT 1)
       UNION ALL
       SELECT (SELECT d.endpoint_id FROM webhook_deliveries d
               WHERE d.status = 'pending' AND d.endpoint_id > p.endpoint_id ORDER BY d.endpoint_id LIMIT 1)
       FROM pending_endpoints p WHERE p.endpoint_id IS NOT NULL
     ), due AS (
       SELECT first.id, first.tenant_id,
              row_number() OVER (PARTITION BY first.tenant_id ORDER BY first.next_attempt_at, first.id) AS turn
       FROM pending_endpoints p
       JOIN webhook_endpoints e ON e.id = p.endpoint_id AND e.enabled
       CROSS JOIN LATERAL (
         SELECT d.id, d.tenant_id, d.next_attempt_at FROM webhook_deliveries d
         WHERE d.endpoint_id = p.endpoint_id AND d.status = 'pending' AND d.next_attempt_at <= now()
           AND (d.locked_until IS NULL OR d.locked_until <= now())
         ORDER BY d.next_attempt_at, d.id LIMIT $1) AS first
     ), chosen AS (
       SELECT due.id FROM due LEFT JOIN busy ON busy.tenant_id = due.tenant_id
       WHERE due.turn <= $1 - coalesce(busy.n, 0)
       ORDER BY due.turn, due.id LIMIT $2
     ), locked AS (
       SELECT d.id FROM webhook_deliveries d WHERE d.id IN (SELECT id FROM chosen) FOR UPDATE SKIP LOCKED
     )
     UPDATE webhook_deliveries d
     SET locked_until = now() + make_interval(secs => $3::double precision / 1000), claims = d.claims + 1,
       redeliver = false
     FROM events o, webhook_endpoints e
     WHERE d.id IN (SELECT id FROM locked) AND (d.locked_until IS NULL OR d.locked_until <= now())
       AND d.status = 'pending' AND o.seq = d.event_id AND e.id = d.endpoint_id
     RETURNING d.id, d.tenant_id, d.endpoint_id, d.attempts, o.seq AS event_seq, o.id AS event_id,
       o.type, o.payload, o.created_at AS event_created_at, e.url, e.secret,
       CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret END AS previous_secret, d.claims`,
    [deps.limits.tenantInFlightMax, countMax, deps.limits.claimMs],
  );
}

// ---- one attempt

/**
 * What became of an attempt: its outcome recorded, or `superseded` — the delivery was taken by another claim, or its
 * endpoint deleted, while it was in flight, so it changed nothing (kept in the log while the delivery is there).
 */
export type AttemptOutcome = "succeeded" | "retrying" | "failed" | "superseded";

/** The body a delivery carries: the event, as GET /v1/events/:id shows it. */
export function eventBody(delivery: ClaimedDelivery, livemode: boolean): string {
  return JSON.stringify(
    presentEvent(
      {
        id: delivery.event_id,
        type: delivery.type,
        payload: delivery.payload,
        created_at: delivery.event_created_at,
      },
      livemode,
    ),
  );
}

/** The wait before attempt `attempts + 1`: base·2^(attempts−1), capped, the upper half of it random. */
export function backoffMs(limits: WebhookLimits, attempts: number, random: () => number): number {
  const ceiling = Math.min(limits.backoffMaxMs, limits.backoffBaseMs * 2 ** Math.min(attempts - 1, 40));
  return Math.floor(ceiling / 2 + (ceiling / 2) * random());
}

/**
 * Sends one claimed delivery and records the attempt. `stopping` aborts the request; an attempt cut short by
 * it records nothing, and its claim runs out for another pass.
 */
export async function attemptDelivery(
  deps: DeliveryDeps,
  delivery: ClaimedDelivery,
  stopping?: AbortSignal,
): Promise<AttemptOutcome | "stopped"> {
  const body = eventBody(delivery, deps.livemode ?? false);
  const startedMs = deps.nowMs();
  const timeout = AbortSignal.timeout(deps.limits.deliveryTimeoutMs);
  const answer = await (deps.send ?? fetchSend)({
    url: delivery.url,
    headers: signedHeaders(
      delivery.previous_secret === null ? [delivery.secret] : [delivery.secret, delivery.previous_secret],
      delivery.event_id,
      Math.floor(startedMs / 1000),
      body,
    ),
    body,
    signal: stopping === undefined ? timeout : AbortSignal.any([timeout, stopping]),
  });
  if (stopping?.aborted) return "stopped";
  const latencyMs = Math.max(0, deps.nowMs() - startedMs);
  const statusCode = "statusCode" in answer ? answer.statusCode : null;
  const ok = statusCode !== null && statusCode >= 200 && statusCode < 300;
  const error = ok
    ? null
    : ("error" in answer ? answer.error : `HTTP ${statusCode}`).slice(0, deps.limits.errorCharsMax);
  const waitMs = backoffMs(deps.limits, delivery.attempts + 1, deps.random ?? Math.random);
  return deps.db.transaction(async (tx) => {
    // The endpoint's row first, then the delivery's, both locked, in the order a delete of the endpoint takes them
    // (the endpoint, then by its cascade the deliveries): a delete that came first took both along (nothing to
    // record), and one that comes later waits for this record. The other order deadlocked with a delete.
    const [held] = await tx.query<{ current: boolean }>(
      `WITH endpoint AS (SELECT id FROM webhook_endpoints WHERE id = $3 FOR NO KEY UPDATE)
       SELECT d.claims = $2 AS current FROM webhook_deliveries d, endpoint
       WHERE d.id = $1 AND d.endpoint_id = endpoint.id FOR UPDATE OF d`,
      [delivery.id, delivery.claims, delivery.endpoint_id],
    );
    if (held === undefined) return "superseded";
    await tx.query(
      `INSERT INTO webhook_delivery_attempts (delivery_id, tenant_id, attempted_at, status_code, latency_ms, error)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [delivery.id, delivery.tenant_id, new Date(startedMs), statusCode, latencyMs, error],
    );
    // Its claim ran out and another pass took the delivery (and may have recorded since): that one's outcome
    // stands, and this late attempt says nothing of the endpoint's health now.
    if (!held.current) return "superseded";
    // A redelivery asked while this attempt was in flight leaves the delivery pending and due: it is sent again.
    const [row] = await tx.query<{ status: "pending" | "succeeded" | "failed" }>(
      `UPDATE webhook_deliveries SET attempts = attempts + 1, locked_until = NULL, last_attempt_at = $2,
         last_status_code = $3, last_latency_ms = $4, last_error = $5,
         status = CASE WHEN redeliver THEN 'pending'
                       WHEN $6::boolean THEN 'succeeded'
                       WHEN created_at <= now() - make_interval(secs => $7::double precision / 1000) THEN 'failed'
                       ELSE 'pending' END,
         next_attempt_at = CASE WHEN redeliver THEN now()
                                WHEN $6::boolean THEN next_attempt_at
                                ELSE now() + make_interval(secs => $8::double precision / 1000) END,
         redeliver = false
       WHERE id = $1 RETURNING status`,
      [delivery.id, new Date(startedMs), statusCode, latencyMs, error, ok, deps.limits.giveUpAfterMs, waitMs],
    );
    await tx.query(
      "UPDATE webhook_deliveries SET completed_at = now() WHERE id = $1 AND status <> 'pending' AND completed_at IS NULL",
      [delivery.id],
    );
    if (ok) {
      await tx.query("UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1", [
        delivery.endpoint_id,
      ]);
    } else {
      await recordEndpointFailure(tx, deps.limits, delivery.endpoint_id);
    }
    return row?.status === "pending" ? "retrying" : (row?.status ?? "failed");
  });
}

/** An endpoint's attempt failed: it is failing since now if it was not; past disableAfterMs it is disabled. */
async function recordEndpointFailure(tx: Sql, limits: WebhookLimits, endpointId: string): Promise<void> {
  await tx.query(
    "UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, now()) WHERE id = $1",
    [endpointId],
  );
  const disabled = await tx.query<{ tenant_id: string; id: string; url: string; failing_since: Date }>(
    // failing_since starts again: re-enabled, the endpoint gets a whole period before it is disabled again.
    `UPDATE webhook_endpoints e SET enabled = false, disabled_at = now(), failing_since = NULL
     FROM (SELECT failing_since FROM webhook_endpoints WHERE id = $1) before
     WHERE e.id = $1 AND e.enabled
       AND before.failing_since <= now() - make_interval(secs => $2::double precision / 1000)
     RETURNING e.tenant_id, e.id, e.url, before.failing_since`,
    [endpointId, limits.disableAfterMs],
  );
  for (const endpoint of disabled)
    await tx.query(
      "INSERT INTO outbox (tenant_id, type, payload) VALUES ($1, 'webhook_endpoint.disabled', $2)",
      [
        endpoint.tenant_id,
        JSON.stringify({
          webhook_endpoint_id: endpoint.id,
          url: endpoint.url,
          enabled: false,
          disabled_reason: "failing",
          failing_since: Math.floor(endpoint.failing_since.getTime() / 1000),
        }),
      ],
    );
}

// ---- passes

export type DeliveryPass = { claimed: number; delivered: number; retried: number; gaveUp: number };

/** One pass run to its end: fans out, claims up to globalInFlightMax, sends them all at once, waits for each. */
export async function deliverOutbox(deps: DeliveryDeps): Promise<DeliveryPass> {
  await fanOutEvents(deps);
  const claimed = await claimDeliveries(deps, deps.limits.globalInFlightMax);
  const outcomes = await Promise.all(claimed.map((delivery) => attemptDelivery(deps, delivery)));
  return {
    claimed: claimed.length,
    delivered: outcomes.filter((outcome) => outcome === "succeeded").length,
    retried: outcomes.filter((outcome) => outcome === "retrying").length,
    gaveUp: outcomes.filter((outcome) => outcome === "failed").length,
  };
}

export type WebhookDelivery = { stop(): Promise<void> };

/**
 * Delivery in the background: every intervalMs a pass fans out and claims as many deliveries as this process
 * has free slots (globalInFlightMax less those in flight), and starts them without waiting for them, so that a
 * hanging endpoint holds its own slot and no pass. `stop` aborts what is in flight.
 */
export function startWebhookDelivery(
  deps: DeliveryDeps & { intervalMs: number; logger: Logger },
): WebhookDelivery {
  const logger = deps.logger.child({ module: "webhooks" });
  const inFlight = new Set<Promise<void>>();
  const stopping = new AbortController();
  let passing: Promise<void> | null = null;
  const pass = async (): Promise<void> => {
    await fanOutEvents(deps);
    const claimed = await claimDeliveries(deps, deps.limits.globalInFlightMax - inFlight.size);
    for (const delivery of claimed) {
      const running: Promise<void> = attemptDelivery(deps, delivery, stopping.signal)
        .then(
          () => undefined,
          (error: unknown) => logger.error({ err: error, delivery: delivery.id }, "webhook delivery failed"),
        )
        .finally(() => inFlight.delete(running));
      inFlight.add(running);
    }
  };
  const timer = setInterval(() => {
    if (passing !== null || stopping.signal.aborted) return;
    passing = pass()
      .catch((error: unknown) => logger.error({ err: error }, "webhook delivery pass failed"))
      .finally(() => {
        passing = null;
      });
  }, deps.intervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      stopping.abort();
      await passing;
      await Promise.all([...inFlight]);
    },
  };
}
