// Background passes (recovery, webhook delivery, netting flushes): one pass at a time, on a timer that does
// not keep the process alive. A tick that finds the previous pass still running is skipped, so a slow pass
// never piles up work behind it; a failed pass is logged and the next tick tries again.
import type { Logger } from "../../core/index.ts";
import type { Sql } from "../db/index.ts";

export type Periodic = { stop(): Promise<void> };

export type PeriodicParams = {
  /** What the pass is, for its log lines: "recovery pass". */
  readonly name: string;
  readonly intervalMs: number;
  readonly pass: () => Promise<unknown>;
  readonly logger: Logger;
};

export function startPeriodic(params: PeriodicParams): Periodic {
  const logger = params.logger.child({ module: "periodic", pass: params.name });
  let running: Promise<void> | null = null;
  const timer = setInterval(() => {
    if (running !== null) return;
    running = params
      .pass()
      .then(() => undefined)
      .catch((error: unknown) => logger.error({ err: error }, `${params.name} failed`))
      .finally(() => {
        running = null;
      });
  }, params.intervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}

/**
 * A prune pass's deletes: `statement` (a DELETE of at most `$2` rows, `RETURNING` one column each, `$1` its own
 * parameter) run again and again until one deletes fewer than `batchMax` or `passMsMax` has passed; returns how many it
 * deleted. Each statement commits on its own: a pass cut short keeps what it deleted.
 */
export async function deleteInBatches(
  sql: Sql,
  statement: { text: string; param: unknown },
  limits: { batchMax: number; passMsMax: number; nowMs?: () => number },
): Promise<{ deleted: number }> {
  const batchMax = Math.max(1, limits.batchMax);
  const nowMs = limits.nowMs ?? Date.now;
  const untilMs = nowMs() + limits.passMsMax;
  let deleted = 0;
  for (;;) {
    const rows = await sql.query(statement.text, [statement.param, batchMax]);
    deleted += rows.length;
    if (rows.length < batchMax || nowMs() >= untilMs) return { deleted };
  }
}
