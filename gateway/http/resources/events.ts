// /v1/events: the tenant's events, newest first (the lists' convention, with `type` to filter on), and one by id.
// An event is kept eventRetentionDays (gateway/webhooks/events.ts); another tenant's, or a pruned one, is 404
// event_not_found.
import fp from "fastify-plugin";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import type { Db } from "../../db/index.ts";
import {
  type EventRow,
  type EventView,
  eventColumns,
  getEvent,
  presentEvent,
} from "../../webhooks/events.ts";
import { tenantOf } from "../auth.ts";
import { ApiError } from "../errors.ts";
import { clientGone, type ListSource, listPage, listParams, listQuery, listView } from "../lists.ts";
import { errorView } from "../schemas.ts";

export type EventRoutesOptions = { db: Db; mode: "development" | "production" };

export const eventView = z.object({
  id: z.string(),
  object: z.literal("event"),
  /** What happened, e.g. payment.succeeded. */
  type: z.string(),
  /** Unix seconds. */
  created: z.number().int(),
  /** `object`: the object's id and the facts of the change (a payment's: its facts at its end). */
  data: z.object({ object: z.record(z.string(), z.unknown()) }),
  livemode: z.boolean(),
});

export const listEventsQuery = listQuery({
  idPrefix: "evt",
  extra: {
    /** Only events of this type. */
    type: z
      .string()
      .max(100)
      .regex(/^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$/, "an event type such as payment.succeeded")
      .optional(),
  },
});

/**
 * The events' list, of one type or of all: then merged from each type's page (outbox_tenant_type_list, 0043, in the
 * order written since 0047).
 */
export function eventsList(
  type: string | undefined,
  livemode: boolean,
  database: "postgres" | "pglite",
): ListSource<EventRow, EventView> {
  return {
    table: "events",
    tenantColumn: "tenant_id",
    columns: eventColumns,
    noun: "event",
    equals: { type },
    mergedOver: "type",
    // A poller reading newest first with ending_before must never pass over an event committed late.
    committedOnly: database === "postgres",
    // Events of one created_at (one transaction's; on PGlite, one millisecond's) in the order they were written.
    sequence: "seq",
    map: (row) => presentEvent(row, livemode),
  };
}

export const eventParams = z.strictObject({ id: z.string().regex(/^evt_[0-9a-z_]{1,64}$/) });

const plugin: FastifyPluginAsyncZod<EventRoutesOptions> = async (app, options) => {
  const { db } = options;
  const livemode = options.mode === "production";

  app.get(
    "/events",
    { schema: { querystring: listEventsQuery, response: { 200: listView(eventView), "4xx": errorView } } },
    async (request) =>
      listPage(db, eventsList(request.query.type, livemode, db.kind), {
        tenantId: tenantOf(request).id,
        url: "/v1/events",
        params: listParams(request.query),
        gone: clientGone(request),
      }),
  );

  app.get(
    "/events/:id",
    { schema: { params: eventParams, response: { 200: eventView, "4xx": errorView } } },
    async (request) => {
      const { id } = request.params;
      const row = await getEvent(db, { tenantId: tenantOf(request).id, id });
      if (row === null) throw new ApiError("event_not_found", `no event "${id}"`);
      return presentEvent(row, livemode);
    },
  );
};

export const eventRoutes = fp(plugin, {
  name: "switchyard-events",
  encapsulate: true,
  dependencies: ["switchyard-auth"],
  decorators: { request: ["tenant"] },
});
