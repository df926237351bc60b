// What a Lightning rail's journal (a JSON-lines file) says of one attempt, for tests that read it from the outside.
import { readFile, writeFile } from "node:fs/promises";
import { vi } from "vitest";
import { journalLeaseMs } from "../../adapters/lightning/store.ts";

/** The kinds of the journal's lines about one attempt, in order. */
export async function journalAttemptLines(file: string, attemptId: string): Promise<string[]> {
  const lines = (await readFile(file, "utf8")).split("\n").filter((line) => line !== "");
  return lines
    .map((line) => JSON.parse(line) as { t: string; attemptId?: string })
    .filter((record) => record.attemptId === attemptId)
    .map((record) => record.t);
}

/** An execute of attempt `id`, found never taken after a restart, paying `amount` to a Lightning Address. */
export const resumedToAddress = (id: string, amount: bigint, address: string) =>
  ({
    id,
    paymentId: `payment-${id}`,
    tenantId: "ten_test",
    amount,
    destination: { kind: "lightning_address", address },
    feeMax: 10_000n,
    resumed: true,
  }) as const;

/**
 * Runs `look` as this process would after another host's process took the journal at `file` over: the other wrote
 * its lock while this one's event loop was blocked past its lease (the clock is moved one lease on while `look` runs).
 */
export async function afterTakenOverByAnotherHost<T>(file: string, look: () => T | Promise<T>): Promise<T> {
  await writeFile(`${file}.lock`, JSON.stringify({ pid: 1, host: "another-host", renewedAtMs: Date.now() }));
  vi.useFakeTimers({ toFake: ["Date"] });
  try {
    vi.setSystemTime(Date.now() + journalLeaseMs);
    return await look();
  } finally {
    vi.useRealTimers();
  }
}
