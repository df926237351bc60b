// Lists, as Stripe's: every collection answers `{ object: "list", url, data, has_more }`, newest first.
//
// Query parameters (Fastify's parser hands the bracketed keys over literally, and a repeated key as an array):
// - `limit`: 1..100, default 10; 0 or 101 is 400 parameter_invalid.
// - `starting_after` / `ending_before`: an id of an object of the same collection and tenant; the page is the
//   objects older than it (`starting_after`) or newer than it (`ending_before`, still newest first). At most one
//   of the two. An id that is not one of the tenant's objects of that collection — unknown, deleted, or another
//   tenant's — is 400 parameter_invalid naming the parameter (as Stripe's 400 resource_missing), the same answer
//   for all three so that it tells nothing about other tenants.
// - `created`, `created[gte]`, `created[gt]`, `created[lte]`, `created[lt]`: unix seconds. A creation time
//   counts by its whole second, as Stripe's integer `created` does: `created[lte]=T` takes everything created
//   during second T, `created[gt]=T` nothing of it; `created=T` is that second alone.
// - `has_more`: whether objects remain beyond this page in the direction it was read (older ones after
//   `starting_after` or with no cursor, newer ones with `ending_before`). Exact: one row more than `limit` is
//   read.
// - `status` and `expand[]` where a collection has them (statusParam, expandParam), passed as `extra`.
//
// Order is by (created_at, id), both descending, a keyset: a page costs the same wherever it starts, and
// objects created while a client pages never shift what it reads next.
//
// Use: `listQuery({ idPrefix: "pay", extra: { status: statusParam([...]) } })` as the route's querystring schema,
// `listView(itemView)` as its 200, and in the handler `listPage(db, { table, tenantColumn, ... }, { tenantId, url,
// params: listParams(request.query), gone: clientGone(request) })`.
import { z } from "zod";
import { type Row, type Sql, SwitchyardError, wholeNumber } from "../../core/index.ts";
import { ApiError } from "./errors.ts";

export const listLimitDefault = 10;
export const listLimitMax = 100;
/** The last second of the year 9999: no creation time is later, and to_timestamp takes it. */
export const listCreatedSecondsMax = 253_402_300_799;
/** The most values `expand[]` may repeat. */
export const listExpandValuesMax = 8;

const createdSeconds = wholeNumber(0, listCreatedSecondsMax).optional();

/** The parameters every list takes, for the collection whose ids start with `idPrefix`. */
function baseShape(idPrefix: string, cursorShape?: { pattern: RegExp; message: string }) {
  const cursor = z
    .string()
    .regex(
      cursorShape?.pattern ?? new RegExp(`^${idPrefix}_[0-9a-z_]{1,64}$`),
      cursorShape?.message ?? `an id of this list (${idPrefix}_…)`,
    )
    .optional();
  return {
    limit: wholeNumber(1, listLimitMax).optional(),
    /** An id: the page holds the objects created before it. */
    starting_after: cursor,
    /** An id: the page holds the objects created after it. */
    ending_before: cursor,
    /** Unix seconds: created during that second. */
    created: createdSeconds,
    "created[gte]": createdSeconds,
    "created[gt]": createdSeconds,
    "created[lte]": createdSeconds,
    "created[lt]": createdSeconds,
  };
}

/**
 * The querystring schema of a list: the common parameters and the collection's own (`extra`: statusParam,
 * expandParam, or filters of its own). Strict: an unknown parameter is 400 parameter_unknown.
 */
export function listQuery<Extra extends z.ZodRawShape = Record<never, never>>(params: {
  idPrefix: string;
  /** The cursors' own shape, when the list's ids have a narrower one than `<idPrefix>_…` (the document says it). */
  cursor?: { pattern: RegExp; message: string };
  extra?: Extra;
}) {
  const shape = { ...baseShape(params.idPrefix, params.cursor), ...(params.extra ?? ({} as Extra)) };
  return z.strictObject(shape).superRefine((query, context) => {
    const values = query as Record<string, unknown>;
    if (values.starting_after !== undefined && values.ending_before !== undefined)
      context.addIssue({
        code: "custom",
        path: ["ending_before"],
        message: "give starting_after or ending_before, not both",
      });
  });
}

/** `status`: one of the collection's statuses. */
export function statusParam<const Status extends string>(statuses: readonly Status[]) {
  return z.enum(statuses as readonly Status[] as [Status, ...Status[]]).optional();
}

/** `expand[]`: one of `values`, or several (the key repeated). */
export function expandParam<const Value extends readonly [string, ...string[]]>(values: Value) {
  const one = z.enum(values);
  return z.union([one, z.array(one).max(listExpandValuesMax)]).optional();
}

/** The page's response schema around the collection's item schema. */
export function listView<Item extends z.ZodType>(item: Item) {
  return z.object({
    object: z.literal("list"),
    /** The list's path, e.g. /v1/payments. */
    url: z.string(),
    data: z.array(item),
    has_more: z.boolean(),
  });
}

export type ListPage<Item> = { object: "list"; url: string; data: Item[]; has_more: boolean };

/** What the common parameters ask, in a form SQL takes. */
export type ListParams = {
  limit: number;
  /** `after`: older than the object (starting_after); `before`: newer than it (ending_before). */
  cursor: { direction: "after" | "before"; id: string; param: "starting_after" | "ending_before" } | null;
  /** Created at or after this unix second (inclusive), or no lower bound. */
  createdFromSeconds: number | null;
  /** Created before this unix second (exclusive), or no upper bound. */
  createdUntilSeconds: number | null;
  /** The `expand[]` values given. */
  expand: ReadonlySet<string>;
};

type CommonQuery = {
  limit?: number | undefined;
  starting_after?: string | undefined;
  ending_before?: string | undefined;
  created?: number | undefined;
  "created[gte]"?: number | undefined;
  "created[gt]"?: number | undefined;
  "created[lte]"?: number | undefined;
  "created[lt]"?: number | undefined;
  "expand[]"?: string | readonly string[] | undefined;
};

const maxOf = (values: readonly (number | undefined)[]): number | null => {
  const given = values.filter((value): value is number => value !== undefined);
  return given.length === 0 ? null : Math.max(...given);
};
const minOf = (values: readonly (number | undefined)[]): number | null => {
  const given = values.filter((value): value is number => value !== undefined);
  return given.length === 0 ? null : Math.min(...given);
};
const plusOne = (value: number | undefined) => (value === undefined ? undefined : value + 1);

/** The parsed querystring of a list (listQuery's output) as ListParams. */
export function listParams(query: CommonQuery): ListParams {
  const expand = query["expand[]"];
  return {
    limit: query.limit ?? listLimitDefault,
    cursor:
      query.starting_after !== undefined
        ? { direction: "after", id: query.starting_after, param: "starting_after" }
        : query.ending_before !== undefined
          ? { direction: "before", id: query.ending_before, param: "ending_before" }
          : null,
    // Whole seconds: `gt T` is `gte T+1`, `lte T` is `lt T+1`, `created T` is both `gte T` and `lt T+1`.
    createdFromSeconds: maxOf([query["created[gte]"], plusOne(query["created[gt]"]), query.created]),
    createdUntilSeconds: minOf([
      query["created[lt]"],
      plusOne(query["created[lte]"]),
      plusOne(query.created),
    ]),
    expand: new Set(expand === undefined ? [] : typeof expand === "string" ? [expand] : expand),
  };
}

/** Where a list's rows come from. Table and column names are the code's own, never the client's. */
export type ListSource<R extends Row, Item> = {
  table: string;
  /** The column holding the tenant's id; every query is scoped by it. */
  tenantColumn: string;
  /** The select list; default `*`. */
  columns?: string;
  /** What the collection's objects are called, for the answer to an unknown cursor ("payment"). */
  noun: string;
  /** Column = value conditions; a value undefined or null is no condition. */
  equals?: Readonly<Record<string, string | number | undefined | null>>;
  /**
   * The columns of `equals` that make the collection (a parent's id: the endpoint of its deliveries), not filter it:
   * a cursor must be an object of the collection, so of the same parent. A filter (a status) needs no such cursor.
   */
  scopedBy?: readonly string[];
  /**
   * A column the list's index has between the tenant's and (created_at, id), with no index of (tenant, created_at,
   * id) beside it (the events': (tenant_id, type, created_at, id)). Without an `equals` on it the page is merged
   * from each of its values' own newest-first pages, the values found by skipping through that index: a page
   * reads at most (limit + 1) rows a value, and a write updates one index less. For a NOT NULL column of few values.
   */
  mergedOver?: string;
  /**
   * Rows are written with created_at the writing transaction's start (now()), and one that commits late would land
   * behind rows a client already read past: polling newest first with `ending_before` (the last id seen) would never
   * see it. With this, the first page and a page toward newer rows hold only rows older than committedHorizon, read
   * just before the page: every row before it is committed, and none can come there later. For PostgreSQL; on PGlite (one session, one transaction
   * at a time) every row written is committed, and its coarse clock would hide the newest: there rows of one
   * millisecond are told apart by `sequence`, in the order they were written, later ones after.
   */
  committedOnly?: boolean;
  /**
   * The column that orders rows of one created_at, shown nowhere (default: `id`, the shown one): a serial, so that
   * rows one transaction wrote (one created_at) are listed in the order they were written, not by their random ids.
   */
  sequence?: string;
} & (
  | {
      /** One row as the API shows it. */
      map: (row: R) => Item;
      mapPage?: never;
    }
  | {
      /** The whole page at once (to load what the rows nest, say, in one query). */
      mapPage: (rows: R[]) => Promise<Item[]>;
      map?: never;
    }
);

const identifier = /^[a-z_][a-z0-9_]*$/;

function checkedIdentifier(name: string): string {
  if (!identifier.test(name))
    throw new SwitchyardError("a list names a table or column that is not a plain identifier", {
      details: name,
    });
  return name;
}

/**
 * The earlier of now and the start of the oldest transaction open on this database now, other than the asking one,
 * as text (microseconds kept). Read in a statement of its own before the page's: a row whose created_at is its
 * transaction's now() and is earlier than this was committed (or rolled back) before the page's statement began, and
 * no transaction still to commit writes one earlier — one open now started at or after the horizon, one that begins
 * later starts after now. (Read inside the page's statement, the horizon came after its snapshot: a transaction that
 * committed in between no longer held it back, and its row, not in the snapshot, was passed over.) Another role's
 * sessions show no start without pg_read_all_stats: the gateway's own role writes every row this guards.
 */
export const committedHorizonQuery = `SELECT LEAST(clock_timestamp(), (SELECT min(xact_start) FROM pg_stat_activity
  WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()))::text
  AS horizon`;

/** What listPage is asked: whose objects, the list's path, its parameters, and whether its client hung up. */
export type ListRequest = {
  tenantId: string;
  url: string;
  params: ListParams;
  /** True once the request's client has hung up (clientGone): a read still waiting for its turn then gives it up. */
  gone?: () => boolean;
};

/** `gone` for listPage: whether the request's connection has closed (its client hung up). */
export const clientGone =
  (request: { socket: { destroyed: boolean } }): (() => boolean) =>
  () =>
    request.socket.destroyed;

/**
 * One page of the tenant's objects of `source`, newest first by (created_at, id), as ListParams asks. A cursor
 * that is not one of the tenant's objects of the table is 400 parameter_invalid naming its parameter. A read whose
 * client hung up while it waited for its turn is 503 overloaded, never read (and never sent).
 */
export async function listPage<R extends Row, Item>(
  sql: Sql,
  source: ListSource<R, Item>,
  request: ListRequest,
): Promise<ListPage<Item>> {
  const release = await listTurn(request.tenantId, request.gone);
  if (release === null)
    throw new ApiError("overloaded", "the client hung up while its list waited for the tenant's turn");
  try {
    return await readPage(sql, source, request);
  } finally {
    release();
  }
}

/**
 * The most of one tenant's list reads that run at once in this process; the others wait their turn, in order. A
 * read whose client hung up while it waited is passed over when its turn comes. A list filtered by status scans the
 * tenant's rows until it fills its page, and a tenant with millions of rows could hold every connection of the pool
 * with a few such reads at once (up to the statement timeout each): every other tenant's reads, and the ledger's
 * writes, queued behind them.
 */
export const listReadsPerTenantMax = 2;

/** A read waiting for its turn: `resume(true)` hands it a running turn, `resume(false)` tells it its client left. */
type ListWaiter = { resume: (turn: boolean) => void; gone: (() => boolean) | undefined };

/** Each tenant's list reads running, and those waiting (in order), for tenants with any. */
const listTurns = new Map<string, { running: number; waiting: ListWaiter[] }>();

/**
 * Waits for one of the tenant's turns; returns what gives it up (to the next waiting read whose client is still
 * there, else back), or null when its client hung up while it waited.
 */
async function listTurn(tenantId: string, gone: (() => boolean) | undefined): Promise<(() => void) | null> {
  let turns = listTurns.get(tenantId);
  if (turns === undefined) {
    turns = { running: 0, waiting: [] };
    listTurns.set(tenantId, turns);
  }
  const own = turns;
  if (own.running < listReadsPerTenantMax) own.running += 1;
  else if (!(await new Promise<boolean>((resume) => own.waiting.push({ resume, gone })))) return null;
  let given = false;
  return () => {
    if (given) return;
    given = true;
    for (let next = own.waiting.shift(); next !== undefined; next = own.waiting.shift()) {
      if (next.gone?.() === true) next.resume(false);
      else return next.resume(true); // the running turn, handed on
    }
    own.running -= 1;
    if (own.running === 0) listTurns.delete(tenantId);
  };
}

/** One page, read (listPage, once its turn came). */
async function readPage<R extends Row, Item>(
  sql: Sql,
  source: ListSource<R, Item>,
  request: ListRequest,
): Promise<ListPage<Item>> {
  const table = checkedIdentifier(source.table);
  const tenant = checkedIdentifier(source.tenantColumn);
  const { params } = request;
  if (!Number.isInteger(params.limit) || params.limit < 1 || params.limit > listLimitMax)
    throw new SwitchyardError("a list was asked a limit out of range", { details: String(params.limit) });
  const values: unknown[] = [request.tenantId];
  const where = [`${tenant} = $1`];
  for (const [column, value] of Object.entries(source.equals ?? {})) {
    if (value === undefined || value === null) continue;
    values.push(value);
    where.push(`${checkedIdentifier(column)} = $${values.length}`);
  }
  if (params.createdFromSeconds !== null) {
    values.push(params.createdFromSeconds);
    where.push(`created_at >= to_timestamp($${values.length})`);
  }
  if (params.createdUntilSeconds !== null) {
    values.push(params.createdUntilSeconds);
    where.push(`created_at < to_timestamp($${values.length})`);
  }
  const newer = params.cursor?.direction === "before";
  // Only at the newest edge (the first page, and pages toward newer rows): a page toward older rows is bounded by its
  // cursor. Before, a `starting_after` cursor newer than the horizon (an event id from a webhook) left out committed
  // rows between the horizon and it, and a walk on from that page never came back to them.
  if (source.committedOnly === true && (params.cursor === null || newer)) {
    const [read] = await sql.query<{ horizon: string }>(committedHorizonQuery);
    values.push(read!.horizon);
    where.push(`created_at < $${values.length}::timestamptz`);
  }
  const sequence = checkedIdentifier(source.sequence ?? "id");
  if (params.cursor !== null) {
    const scope = (source.scopedBy ?? []).map((column, i) => `${checkedIdentifier(column)} = $${i + 3}`);
    const found = await sql.query(
      `SELECT 1 FROM ${table} WHERE ${[`${tenant} = $1`, "id = $2", ...scope].join(" AND ")}`,
      [
        request.tenantId,
        params.cursor.id,
        ...(source.scopedBy ?? []).map((column) => source.equals?.[column] ?? null),
      ],
    );
    if (found.length === 0)
      throw new ApiError("parameter_invalid", `no ${source.noun} "${params.cursor.id}"`, {
        param: params.cursor.param,
      });
    values.push(params.cursor.id);
    // Compared in SQL, so the cursor's created_at keeps its microseconds.
    where.push(
      `(created_at, ${sequence}) ${newer ? ">" : "<"} (SELECT created_at, ${sequence} FROM ${table} WHERE ${tenant} = $1 AND id = $${values.length})`,
    );
  }
  values.push(params.limit + 1);
  const order = newer ? "ASC" : "DESC";
  const merged = source.mergedOver === undefined ? undefined : checkedIdentifier(source.mergedOver);
  const rows = await sql.query<R>(
    merged === undefined || source.equals?.[merged] != null
      ? `SELECT ${source.columns ?? "*"} FROM ${table} WHERE ${where.join(" AND ")}
         ORDER BY created_at ${order}, ${sequence} ${order} LIMIT $${values.length}`
      : // The values, one index descent each (a loose index scan); then each value's page, then theirs merged.
        `WITH RECURSIVE list_parts (list_part) AS (
           (SELECT ${merged} FROM ${table} WHERE ${tenant} = $1 ORDER BY ${merged} LIMIT 1)
           UNION ALL
           SELECT (SELECT ${merged} FROM ${table} WHERE ${tenant} = $1 AND ${merged} > list_part
                   ORDER BY ${merged} LIMIT 1)
           FROM list_parts WHERE list_part IS NOT NULL)
         SELECT ${source.columns ?? "list_page.*"} FROM list_parts CROSS JOIN LATERAL (
           SELECT * FROM ${table} WHERE ${where.join(" AND ")} AND ${merged} = list_part
           ORDER BY created_at ${order}, ${sequence} ${order} LIMIT $${values.length}) AS list_page
         ORDER BY created_at ${order}, ${sequence} ${order} LIMIT $${values.length}`,
    values,
  );
  const page = rows.slice(0, params.limit);
  if (newer) page.reverse();
  const data = source.map === undefined ? await source.mapPage(page) : page.map(source.map);
  return { object: "list", url: request.url, data, has_more: rows.length > params.limit };
}
