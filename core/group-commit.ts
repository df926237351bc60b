// Group commit for any statement that can answer many callers at once: while one batch is in flight the next
// gathers, and each batch is one call of `run`. Every caller is answered with its own result; a failed call fails
// every caller of its batch (and only those).

/**
 * `run` over the items gathered while the previous run was in flight (at most `maxBatch` at a time): one call per
 * batch, its i-th answer the i-th item's.
 */
export function groupCommit<I, O>(
  run: (items: readonly I[]) => Promise<readonly O[]>,
  maxBatch: number,
): (item: I) => Promise<O> {
  type Waiting = { item: I; resolve: (value: O) => void; reject: (error: unknown) => void };
  const waiting: Waiting[] = [];
  let running = false;
  const drain = async () => {
    running = true;
    while (waiting.length > 0) {
      const batch = waiting.splice(0, maxBatch);
      try {
        const answers = await run(batch.map((w) => w.item));
        batch.forEach((w, i) => {
          w.resolve(answers[i]!);
        });
      } catch (error) {
        for (const w of batch) w.reject(error);
      }
    }
    running = false;
  };
  return (item) =>
    new Promise<O>((resolve, reject) => {
      waiting.push({ item, resolve, reject });
      if (!running) void drain();
    });
}
