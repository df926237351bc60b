// Quotes are kept quoteRetentionDays past their expiry, then pruned (a periodic pass beside the events' prune),
// unless a payment was made on one (the payment names it: kept with it). Each row holds a whole routing decision —
// every candidate with its cost, every exclusion — and quotes cost a client nothing to ask for: kept for good, the
// table and its list index grew without bound. A pruned quote is 404 as one never made.
import type { Logger } from "../../core/index.ts";
import type { Sql } from "../db/index.ts";
import { deleteInBatches, type Periodic, startPeriodic } from "../periodic/index.ts";

/** How long past its expiry an unused quote is kept (as long as events are: a client reconciling finds it). */
export const quoteRetentionDays = 30;
/** The most quotes one statement deletes. */
export const quotePruneBatchMax = 10_000;
/** How often the prune runs. */
export const quotePruneIntervalMs = 10 * 60 * 1000;
/** The most time one pass spends deleting: what is left waits for the next pass. */
const quotePrunePassMsMax = 30_000;

/** Deletes unused quotes expired longer ago than the retention (deleteInBatches); returns how many. */
export function pruneQuotes(
  sql: Sql,
  params: { retentionDays?: number; batchMax?: number; nowMs?: () => number } = {},
): Promise<{ deleted: number }> {
  // payments_quote_once (migration 0014) answers the NOT EXISTS; quotes_expires (0057) finds the old ones. A quote
  // expired that long is never paid now (a payment on it is refused quote_expired before anything is written).
  return deleteInBatches(
    sql,
    {
      text: `DELETE FROM quotes WHERE id IN (
               SELECT q.id FROM quotes q
               WHERE q.expires_at < now() - make_interval(days => $1::int)
                 AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.quote_id = q.id)
               LIMIT $2)
             RETURNING id`,
      param: params.retentionDays ?? quoteRetentionDays,
    },
    {
      batchMax: params.batchMax ?? quotePruneBatchMax,
      passMsMax: quotePrunePassMsMax,
      ...(params.nowMs === undefined ? {} : { nowMs: params.nowMs }),
    },
  );
}

/** The prune pass, every quotePruneIntervalMs, until stopped. */
export function startQuotePrune(deps: { sql: Sql; logger: Logger }): Periodic {
  return startPeriodic({
    name: "quote prune pass",
    intervalMs: quotePruneIntervalMs,
    pass: () => pruneQuotes(deps.sql),
    logger: deps.logger,
  });
}
