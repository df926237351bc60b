// An endpoint's delivery log and redelivery on demand:
// - GET /v1/webhook_endpoints/:id/deliveries: the endpoint's deliveries (one per event sent to it), newest first,
//   as a list (lists.ts: limit, starting_after/ending_before whd_ ids, created, and `status`: pending, succeeded,
//   failed), each with its latest attempts (time, HTTP status or null, latency in ms, error text up to 500
//   characters), newest first, at most webhookDeliveryAttemptsShownMax. `attempt_count` counts the attempts whose
//   outcome the delivery took; one that outlived its claim (another pass had taken the delivery) is in the log only.
// - POST /v1/webhook_endpoints/:id/deliveries/:delivery_id/retry: sends the delivery again as soon as a pass
//   takes it (pending, due now), whatever its status, and again after an attempt in flight when asked; its attempt
//   count goes on. 200 with the delivery.
// Another tenant's endpoint or delivery is 404, as an unknown one.
import fp from "fastify-plugin";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import type { Db, Sql } from "../../db/index.ts";
import { textArrayLiteral } from "../../db/index.ts";
import { tenantOf } from "../auth.ts";
import { ApiError, type ApiErrorCode } from "../errors.ts";
import { clientGone, listPage, listParams, listQuery, listView, statusParam } from "../lists.ts";
import { errorView } from "../schemas.ts";

/** The most attempts shown with a delivery (the newest). */
export const webhookDeliveryAttemptsShownMax = 20;

export type WebhookDeliveryRoutesOptions = { db: Db };

const refusals = (...codes: ApiErrorCode[]): Record<never, never> => ({ "x-error-codes": codes });

const endpointId = z.string().regex(/^we_[0-9a-z_]{1,64}$/);
const deliveryId = z.string().regex(/^whd_[0-9a-z_]{1,64}$/);
const deliveryStatuses = ["pending", "succeeded", "failed"] as const;

const attemptView = z.object({
  /** Unix milliseconds when the request went out. */
  attempted_ms: z.number().int(),
  /** The receiver's HTTP status, or null when none came (timeout, connection refused). */
  status_code: z.number().int().nullable(),
  latency_ms: z.number().int(),
  error: z.string().nullable(),
});

export const webhookDeliveryView = z.object({
  id: z.string(),
  object: z.literal("webhook_delivery"),
  endpoint: z.string(),
  event: z.string(),
  event_type: z.string(),
  status: z.enum(deliveryStatuses),
  attempt_count: z.number().int(),
  /** Unix seconds of the next attempt while pending, else null. */
  next_attempt: z.number().int().nullable(),
  created: z.number().int(),
  attempts: z.array(attemptView),
});
type WebhookDeliveryView = z.infer<typeof webhookDeliveryView>;

type DeliveryRow = {
  id: string;
  tenant_id: string;
  event_id: bigint;
  endpoint_id: string;
  status: (typeof deliveryStatuses)[number];
  attempts: number;
  next_attempt_at: Date;
  created_at: Date;
};
type AttemptRow = {
  delivery_id: string;
  attempted_at: Date;
  status_code: number | null;
  latency_ms: number;
  error: string | null;
};

const seconds = (at: Date) => Math.floor(at.getTime() / 1000);

/** The rows as the API shows them, with their events and newest attempts, in three queries. */
async function present(sql: Sql, tenantId: string, rows: DeliveryRow[]): Promise<WebhookDeliveryView[]> {
  if (rows.length === 0) return [];
  const events = await sql.query<{ id: bigint; public_id: string; type: string }>(
    "SELECT id, public_id, type FROM outbox WHERE tenant_id = $1 AND id = ANY($2::bigint[])",
    [tenantId, textArrayLiteral(rows.map((row) => String(row.event_id)))],
  );
  const attempts = await sql.query<AttemptRow>(
    `SELECT delivery_id, attempted_at, status_code, latency_ms, error FROM (
       SELECT a.*, row_number() OVER (PARTITION BY delivery_id ORDER BY id DESC) AS newest
       FROM webhook_delivery_attempts a WHERE tenant_id = $1 AND delivery_id = ANY($2::text[])) shown
     WHERE newest <= $3 ORDER BY delivery_id, newest`,
    [tenantId, textArrayLiteral(rows.map((row) => row.id)), webhookDeliveryAttemptsShownMax],
  );
  const eventOf = new Map(events.map((event) => [String(event.id), event]));
  return rows.map((row) => {
    const event = eventOf.get(String(row.event_id));
    return {
      id: row.id,
      object: "webhook_delivery" as const,
      endpoint: row.endpoint_id,
      event: event?.public_id ?? `evt_${row.event_id}`,
      event_type: event?.type ?? "",
      status: row.status,
      attempt_count: row.attempts,
      next_attempt: row.status === "pending" ? seconds(row.next_attempt_at) : null,
      created: seconds(row.created_at),
      attempts: attempts
        .filter((attempt) => attempt.delivery_id === row.id)
        .map((attempt) => ({
          attempted_ms: attempt.attempted_at.getTime(),
          status_code: attempt.status_code,
          latency_ms: attempt.latency_ms,
          error: attempt.error,
        })),
    };
  });
}

async function requireEndpoint(sql: Sql, tenantId: string, id: string): Promise<void> {
  const found = await sql.query("SELECT 1 FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2", [
    tenantId,
    id,
  ]);
  if (found.length === 0) throw new ApiError("webhook_endpoint_not_found", `no webhook endpoint "${id}"`);
}

const plugin: FastifyPluginAsyncZod<WebhookDeliveryRoutesOptions> = async (app, options) => {
  const { db } = options;

  app.get(
    "/webhook_endpoints/:id/deliveries",
    {
      schema: {
        params: z.strictObject({ id: endpointId }),
        querystring: listQuery({ idPrefix: "whd", extra: { status: statusParam(deliveryStatuses) } }),
        response: { 200: listView(webhookDeliveryView), "4xx": errorView },
        ...refusals("webhook_endpoint_not_found"),
      },
    },
    async (request) => {
      const tenantId = tenantOf(request).id;
      const { id } = request.params;
      await requireEndpoint(db, tenantId, id);
      return listPage(
        db,
        {
          table: "webhook_deliveries",
          tenantColumn: "tenant_id",
          noun: "webhook delivery",
          equals: { endpoint_id: id, status: request.query.status },
          scopedBy: ["endpoint_id"],
          mapPage: (rows: DeliveryRow[]) => present(db, tenantId, rows),
        },
        {
          tenantId,
          url: `/v1/webhook_endpoints/${id}/deliveries`,
          params: listParams(request.query),
          gone: clientGone(request),
        },
      );
    },
  );

  app.post(
    "/webhook_endpoints/:id/deliveries/:delivery_id/retry",
    {
      schema: {
        params: z.strictObject({ id: endpointId, delivery_id: deliveryId }),
        response: { 200: webhookDeliveryView, "4xx": errorView },
        ...refusals("webhook_endpoint_not_found", "webhook_delivery_not_found"),
      },
    },
    async (request) => {
      const tenantId = tenantOf(request).id;
      const { id, delivery_id: deliveryIdGiven } = request.params;
      await requireEndpoint(db, tenantId, id);
      const rows = await db.query<DeliveryRow>(
        // redeliver: an attempt in flight now leaves it pending and due (webhooks/delivery.ts attemptDelivery).
        `UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(), completed_at = NULL,
           redeliver = true
         WHERE tenant_id = $1 AND endpoint_id = $2 AND id = $3 RETURNING *`,
        [tenantId, id, deliveryIdGiven],
      );
      if (rows.length === 0)
        throw new ApiError("webhook_delivery_not_found", `no delivery "${deliveryIdGiven}" of this endpoint`);
      const [view] = await present(db, tenantId, rows);
      return view!;
    },
  );
};

export const webhookDeliveryRoutes = fp(plugin, {
  name: "switchyard-webhook-deliveries",
  encapsulate: true,
  dependencies: ["switchyard-auth"],
  decorators: { request: ["tenant"] },
});
