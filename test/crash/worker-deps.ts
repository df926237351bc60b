// What a crash-suite worker pays through: the payments service over its database, ledger and rails, with a router on
// a static USDC rate, recovery taking every open attempt at once.
import type { Rail } from "../../core/index.ts";
import { createAccountCache } from "../../gateway/accounts/index.ts";
import type { Db } from "../../gateway/db/index.ts";
import type { Ledger } from "../../gateway/ledger/index.ts";
import { createInternalSettler, type PaymentsDeps } from "../../gateway/payments/index.ts";
import { buildSnapshot, route, staticRateSource } from "../../gateway/router/index.ts";

export function workerPaymentsDeps(params: {
  db: Db;
  ledger: Ledger;
  rails: ReadonlyMap<string, Rail>;
  /** The clock the payments and the internal settler read (default Date.now). */
  nowMs?: () => number;
}): PaymentsDeps {
  const { db, ledger, rails } = params;
  const nowMs = params.nowMs ?? Date.now;
  return {
    db,
    ledger,
    accounts: createAccountCache({ sql: db }, { entriesMax: 100 }),
    rails,
    internal: createInternalSettler({ ledger, sql: db, nowMs }),
    snapshot: () =>
      buildSnapshot({
        rails: [...rails.values()].map((rail) => rail.snapshot()),
        rateSource: staticRateSource({ usdRates: { USDC: { microUsd: 1n, perMinorUnits: 1n } } }),
        assetCodes: ["USDC"],
        takenAtMs: nowMs(),
      }),
    route,
    recoveryBatchMax: 1_000,
    strandedQuietMs: 0,
    nowMs,
  };
}
