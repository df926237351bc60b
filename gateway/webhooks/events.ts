// Events as the API shows them (GET /v1/events) and as deliveries carry them: a change writes its event into the
// outbox in the change's own transaction (insertOutboxEvent, payments' paymentEventSql, or SQL of its own); the
// database gives each a random public id (migration 0019). `data.object` is the object's id and the facts of that
// change (e.g. a payment's end: `{ payment_id, status, asset, amount, source_account, rail | failure_code }`,
// whose facts the `events` view joins from the payment, migration 0056; `{ invoice_id, amount, received_amount }`),
// not a copy of the whole object.
// Events are kept eventRetentionDays, then pruned (pruneEvents, a periodic pass).
import type { Logger } from "../../core/index.ts";
import type { Sql } from "../db/index.ts";
import { deleteInBatches, type Periodic, startPeriodic } from "../periodic/index.ts";

/** How long an event is kept, from its creation. */
export const eventRetentionDays = 30;
/** How many events one statement of the prune pass deletes at most (the pass runs them until one is short). */
export const pruneBatchEventsMax = 10_000;
/** The longest one prune pass deletes for: the rest waits for the next (a stop waits for the pass running). */
export const prunePassMsMax = 30_000;
/**
 * How often the prune pass runs: as often as the Idempotency-Key records' prune. Every payment writes an event; a pass
 * of one batch an hour kept up with 2.8 events a second, and never ran in a process restarted within the hour.
 */
export const eventPruneIntervalMs = 10 * 60 * 1000;

export type EventView = {
  id: string;
  object: "event";
  type: string;
  /** Unix seconds. */
  created: number;
  data: { object: Record<string, unknown> };
  livemode: boolean;
};

export type EventRow = { id: string; type: string; payload: unknown; created_at: Date };

/** Columns of the `events` view that presentEvent reads. */
export const eventColumns = "id, type, payload, created_at";

/** A payload's bigints (toJson's `{ $bigint }`) as decimal strings, as the API carries amounts. */
function plain(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.length === 1 && entries[0]![0] === "$bigint" && typeof entries[0]![1] === "string")
      return entries[0]![1];
    return Object.fromEntries(entries.map(([key, inner]) => [key, plain(inner)]));
  }
  return value;
}

export function presentEvent(row: EventRow, livemode: boolean): EventView {
  const payload = plain(typeof row.payload === "string" ? JSON.parse(row.payload) : row.payload);
  return {
    id: row.id,
    object: "event",
    type: row.type,
    created: Math.floor(row.created_at.getTime() / 1000),
    data: {
      object:
        payload !== null && typeof payload === "object" && !Array.isArray(payload)
          ? (payload as Record<string, unknown>)
          : { value: payload },
    },
    livemode,
  };
}

/** The tenant's event, or null (unknown, pruned, or another tenant's). */
export async function getEvent(sql: Sql, params: { tenantId: string; id: string }): Promise<EventRow | null> {
  const [row] = await sql.query<EventRow>(
    `SELECT ${eventColumns} FROM events WHERE tenant_id = $1 AND id = $2`,
    [params.tenantId, params.id],
  );
  return row ?? null;
}

/** The public id of the outbox row `seq` (its serial id), for a delivery of it. */
export async function eventBySeq(
  sql: Sql,
  seq: bigint | string,
): Promise<(EventRow & { tenant_id: string }) | null> {
  const [row] = await sql.query<EventRow & { tenant_id: string }>(
    `SELECT ${eventColumns}, tenant_id FROM events WHERE seq = $1`,
    [String(seq)],
  );
  return row ?? null;
}

/**
 * Deletes every event older than the retention, `batchMax` (default pruneBatchEventsMax) a statement until one
 * deletes fewer or prunePassMsMax has passed, each in no order (outbox_created is a BRIN index, migration 0039: the
 * pages of old ranges are read until enough rows are found, with nothing to sort); returns how many. Each statement
 * commits on its own: a pass cut short keeps what it deleted.
 */
export function pruneEvents(
  sql: Sql,
  params: { retentionDays?: number; batchMax?: number; nowMs?: () => number } = {},
): Promise<{ deleted: number }> {
  return deleteInBatches(
    sql,
    {
      text: `DELETE FROM outbox WHERE id IN (
               SELECT id FROM outbox WHERE created_at < now() - make_interval(days => $1::int) LIMIT $2)
             RETURNING id`,
      param: params.retentionDays ?? eventRetentionDays,
    },
    {
      batchMax: params.batchMax ?? pruneBatchEventsMax,
      passMsMax: prunePassMsMax,
      ...(params.nowMs === undefined ? {} : { nowMs: params.nowMs }),
    },
  );
}

/** The prune pass, every eventPruneIntervalMs, until stopped. */
export function startEventPrune(deps: { sql: Sql; logger: Logger }): Periodic {
  return startPeriodic({
    name: "event prune pass",
    intervalMs: eventPruneIntervalMs,
    pass: () => pruneEvents(deps.sql),
    logger: deps.logger,
  });
}
