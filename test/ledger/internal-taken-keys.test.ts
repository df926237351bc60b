// The internal settler's batches and keys already taken, on PostgreSQL with the real ledger and internal rail: a key taken
// that the caller did not know of fails the batch it is in (every tenant's payments in it run again); after one, that
// tenant's keyed payments are looked up before they join a batch, so its further retries fail no batch at all.
import { afterAll, beforeAll, expect, it } from "vitest";
import { createInternalRail } from "../../adapters/internal/index.ts";
import { assets, type Rail } from "../../core/index.ts";
import type { Db } from "../../gateway/db/index.ts";
import type { Ledger } from "../../gateway/ledger/index.ts";
import type { PaymentsDeps } from "../../gateway/payments/deps.ts";
import { keysCheckedForMs } from "../../gateway/payments/internal.ts";
import { createPayment } from "../../gateway/payments/service.ts";
import { workerPaymentsDeps } from "../crash/worker-deps.ts";
import { type KeyedPayers, keyedPayers } from "../support/keyed-payers.ts";

let db: Db;
let ledger: Ledger;
let nowMs = Date.now();
let deps: PaymentsDeps;
const tenants = ["ten_retrying", "ten_beside"] as const;

let payers: KeyedPayers;

beforeAll(async () => {
  payers = await keyedPayers({
    database: "internal_taken_keys",
    tenants,
    fundingRail: "funding",
    funded: 1_000_000n,
  });
  ({ db, ledger } = payers);
  const internal = createInternalRail({ asset: assets.USDC });
  const rails = new Map<string, Rail>([[internal.id, internal]]);
  deps = workerPaymentsDeps({ db, ledger, rails, nowMs: () => nowMs });
}, 120_000);

afterAll(async () => {
  await payers?.close();
});

/**
 * An internal payment of 1 minor unit under `key`: settled, or its key found taken (made without a record, as a
 * request whose record is gone: the payment under the key is answered again, `replayed`).
 */
async function pay(tenantId: string, key: string): Promise<"settled" | "key_taken"> {
  const result = await createPayment(deps, {
    tenantId,
    asset: "USDC",
    amount: "0.000001",
    sourceAccountId: `acct_${tenantId}_payer`,
    destination: { kind: "account", accountId: `acct_${tenantId}_payee` },
    policy: {},
    metadata: {},
    idempotencyKey: key,
    quoteId: null,
  });
  if (result.ok) return result.replayed === true ? "key_taken" : "settled";
  if ("keyTaken" in result) return "key_taken";
  throw new Error(`refused: ${result.refusal}`);
}

/** Payments made in one turn (so they gather into one batch): the retrying tenant's keys, then 20 fresh of the other's. */
async function together(retried: readonly string[], round: string) {
  return Promise.all([
    ...retried.map((key) => pay("ten_retrying", key)),
    ...Array.from({ length: 20 }, (_, i) => pay("ten_beside", `${round}-${i}`)),
  ]);
}

it("a tenant whose key was found taken has its keys looked up first: its retries fail no other tenant's batch", async () => {
  expect(await Promise.all(["a-1", "a-2", "a-3"].map((key) => pay("ten_retrying", key)))).toEqual(
    Array(3).fill("settled"),
  );
  expect(payers.refusedOnKey()).toBe(0);
  // A retry nobody remembered, among another tenant's payments: their batch fails once and is written again.
  expect(await together(["a-1"], "first")).toEqual(["key_taken", ...Array(20).fill("settled")]);
  expect(payers.refusedOnKey()).toBe(1);
  // Two more, and a fresh key of the same tenant: looked up before the batch, none fails it.
  expect(await together(["a-2", "a-3", "a-4"], "second")).toEqual([
    "key_taken",
    "key_taken",
    "settled",
    ...Array(20).fill("settled"),
  ]);
  expect(payers.refusedOnKey()).toBe(1);
  // Past the while (no key of it found taken since), its payments join the batch unlooked again: a retry fails it.
  nowMs += keysCheckedForMs + 1;
  expect(await together(["a-4"], "third")).toEqual(["key_taken", ...Array(20).fill("settled")]);
  expect(payers.refusedOnKey()).toBe(2);
  // Every payment paid once: three of the retrying tenant's (and a-4), 60 of the other's.
  const [counts] = await db.query<{ retrying: number; beside: number }>(
    `SELECT count(*) FILTER (WHERE tenant_id = 'ten_retrying')::int AS retrying,
            count(*) FILTER (WHERE tenant_id = 'ten_beside')::int AS beside
     FROM payments WHERE status = 'succeeded'`,
  );
  expect(counts).toEqual({ retrying: 4, beside: 60 });
});
