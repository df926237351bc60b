// A stand-in for the gateway's settlement, used to show what the fiat events do to a customer's balance:
// idempotent by the same keys the real settlement uses (PSP ids, reversal keys).
import type { FiatEvent } from "../../adapters/fiat/index.ts";

export type ToyLedger = {
  applyEvent(event: FiatEvent): Promise<void>;
  balance(reference: string): bigint;
  readonly calls: FiatEvent[];
  /** Keys of the movements posted, in order. */
  readonly posted: string[];
  failNext(times: number): void;
};

export function createToyLedger(): ToyLedger {
  const balances = new Map<string, bigint>();
  const postedKeys = new Set<string>();
  const calls: FiatEvent[] = [];
  const posted: string[] = [];
  let failures = 0;
  const taken = new Map<string, bigint>();
  const post = (key: string, reference: string, delta: bigint) => {
    if (postedKeys.has(key)) return;
    postedKeys.add(key);
    posted.push(key);
    balances.set(reference, (balances.get(reference) ?? 0n) + delta);
  };
  return {
    calls,
    posted,
    failNext(times) {
      failures = times;
    },
    async applyEvent(event) {
      calls.push(event);
      if (failures > 0) {
        failures -= 1;
        throw new Error("toy ledger: database unavailable");
      }
      if (event.kind === "received")
        post(
          `received:${event.evidence.rail === "fiat" ? event.evidence.pspId : ""}`,
          event.reference,
          event.amount,
        );
      if (event.kind === "reversed") {
        if (!postedKeys.has(event.key)) taken.set(event.key, event.amount);
        post(event.key, event.reference, -event.amount);
      }
      // gives back what the reversal took, if it was posted
      const given = event.kind === "reinstated" ? taken.get(event.key) : undefined;
      if (event.kind === "reinstated" && given !== undefined)
        post(`reinstated:${event.key}`, event.reference, given);
    },
    balance: (reference) => balances.get(reference) ?? 0n,
  };
}
