// Background passes (recovery, webhook delivery, netting flushes): one pass at a time, on a timer that does
// not keep the process alive. A tick that finds the previous pass still running is skipped, so a slow pass
// never piles up work behind it; a failed pass is logged and the next tick tries again.
export type Periodic = { stop(): Promise<void> };

export function startPeriodic(name: string, intervalMs: number, pass: () => Promise<unknown>): Periodic {
  let running: Promise<void> | null = null;
  const timer = setInterval(() => {
    if (running !== null) return;
    running = pass()
      .then(() => undefined)
      .catch((error: unknown) => console.error(`${name} failed`, error))
      .finally(() => {
        running = null;
      });
  }, intervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
