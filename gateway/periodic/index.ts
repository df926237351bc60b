// Background passes (recovery, webhook delivery, netting flushes): one pass at a time, on a timer that does
// not keep the process alive. A tick that finds the previous pass still running is skipped, so a slow pass
// never piles up work behind it; a failed pass is logged and the next tick tries again.
import type { Logger } from "../../core/index.ts";

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
