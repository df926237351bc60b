// The gateway's migrations that rewrite stored rows, run on a database written as the code before them wrote it:
// 0008 relabels netting's accruals from transfer code 5 (shared with invoices' reinstatements) to 7, and 0009
// turns attempts left 'executing' into 'reserving' before the status is refused.
import { cp, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assets } from "../../core/index.ts";
import { createAccount } from "../accounts/index.ts";
import { gatewayMigrations } from "../app.ts";
import { type Db, migrate, openPglite } from "../db/index.ts";
import { derivedLedgerId } from "../ids/index.ts";
import { createLedger, idToUuid, ledgerMigrations, type Transfer, transferCodes } from "../ledger/index.ts";
import { listOpenAttempts, paymentLedgerLink } from "../payments/store.ts";
import { createTenant } from "../tenants/index.ts";

/** The codes as the code before migration 0008 wrote them. */
const oldCodes = { funding: 2, received: 3, reinstated: 5, accrue: 5, nettingSettle: 6 } as const;

let db: Db;
let before: Transfer[];
let beforeAccounts: Awaited<ReturnType<ReturnType<typeof createLedger>["lookupAccounts"]>>;
let applied: string[];
let oldMigrations: string;
const ids = {
  funding: derivedLedgerId("test", "funding"),
  received: derivedLedgerId("inv_1", "received"),
  reversed: derivedLedgerId("inv_1:dp_1", "reversed"),
  reinstated: derivedLedgerId("inv_1:dp_1", "reinstated"),
  accrue: derivedLedgerId("pay_netted", "accrue"),
  accrueOrphan: derivedLedgerId("pay_orphan", "accrue"),
  nettingSettle: derivedLedgerId("nb_1", "settle"),
};
const transferIds = Object.values(ids);

beforeAll(async () => {
  // The gateway's migrations up to 0007: the schema the old codes were written under.
  oldMigrations = await mkdtemp(path.join(tmpdir(), "switchyard-migrations-"));
  for (const file of await readdir(gatewayMigrations.directory))
    if (/^000[1-7]_.*\.sql$/.test(file))
      await cp(path.join(gatewayMigrations.directory, file), path.join(oldMigrations, file));
  db = await openPglite(undefined);
  await migrate(db, [ledgerMigrations, { namespace: gatewayMigrations.namespace, directory: oldMigrations }]);

  const ledger = createLedger({ db });
  const tenant = await createTenant(db, { id: "ten_m", name: "M" });
  const account = (kind: "customer" | "clearing" | "payable", id: string) =>
    createAccount(
      { sql: db, ledger },
      {
        tenantId: kind === "customer" ? tenant.id : null,
        kind,
        asset: assets.USDC,
        name: id,
        rail: "evm",
        id,
      },
    );
  const customer = await account("customer", "acct_m_customer");
  const clearing = await account("clearing", "acct_m_clearing");
  const payable = await account("payable", "acct_m_payable");
  const transfer = (id: bigint, debit: bigint, credit: bigint, amount: bigint, code: number, flags = 0) => ({
    id,
    debitAccountId: debit,
    creditAccountId: credit,
    amount,
    ledger: assets.USDC.ledger,
    code,
    flags,
  });
  const c = customer.ledgerAccountId;
  const k = clearing.ledgerAccountId;
  const p = payable.ledgerAccountId;
  const results = await ledger.createTransfers([
    transfer(ids.funding, k, c, 1_000n, oldCodes.funding),
    transfer(ids.received, k, c, 300n, oldCodes.received),
    transfer(ids.reversed, c, k, 100n, 4, 16), // a balancing debit, as applyReversed writes it
    transfer(ids.reinstated, k, c, 100n, oldCodes.reinstated),
    transfer(ids.accrue, c, p, 40n, oldCodes.accrue),
    transfer(ids.accrueOrphan, c, p, 10n, oldCodes.accrue), // its netted_payouts row never written (a crash)
    transfer(ids.nettingSettle, p, k, 40n, oldCodes.nettingSettle),
  ]);
  expect(results.map((r) => r.status)).toEqual(Array(7).fill("created"));
  before = await ledger.lookupTransfers(transferIds);
  beforeAccounts = await ledger.lookupAccounts([c, k, p]);
  await ledger.close();

  // Events as the first delivery loop left them: one delivered, one not yet.
  await db.query(
    `INSERT INTO outbox (tenant_id, type, payload, delivered_at) VALUES
       ('ten_m', 'payment.succeeded', '{"n": "delivered"}', now()),
       ('ten_m', 'payment.succeeded', '{"n": "waiting"}', NULL)`,
  );

  // Attempts as an earlier version left them: one 'executing', beside the statuses that stay.
  await db.query(
    `INSERT INTO payments (id, tenant_id, status, asset, amount, source_account_id, destination, policy)
     VALUES ('pay_m', 'ten_m', 'processing', 'USDC', 5, 'acct_m_customer', '{}', '{}')`,
  );
  for (const [seq, status] of ["failed", "executing"].entries())
    await db.query(
      `INSERT INTO attempts (id, payment_id, seq, rail, status, amount, fee_max, reserve_transfer_id)
       VALUES ($1, 'pay_m', $2, 'evm', $3, 5, 0, $4)`,
      [`att_m_${status}`, seq, status, 1_000 + seq],
    );

  // Payments made under a key, as before 0030: one whose record is still the one written with it, one whose key a
  // later request claimed again (its record written two days after the payment).
  for (const [id, key, sha, later] of [
    ["pay_d_own", "key-own", "aa", "0"],
    ["pay_d_later", "key-later", "bb", "2 days"],
  ] as const) {
    await db.query(
      `INSERT INTO payments (id, tenant_id, status, asset, amount, source_account_id, destination, policy, idempotency_key)
       VALUES ($1, 'ten_m', 'succeeded', 'USDC', 5, 'acct_m_customer', '{}', '{}', $2)`,
      [id, key],
    );
    await db.query(
      `INSERT INTO idempotency_keys (tenant_id, key, request_sha256, created_at)
       VALUES ('ten_m', $1, decode($2, 'hex'), (SELECT created_at FROM payments WHERE id = $3) + $4::interval)`,
      [key, sha.repeat(32), id, later],
    );
  }

  applied = await migrate(db, [ledgerMigrations, gatewayMigrations]);
}, 120_000);

afterAll(async () => {
  await db?.close();
  if (oldMigrations !== undefined) await rm(oldMigrations, { recursive: true, force: true });
});

describe("0008: netting's accrual gets a code of its own", () => {
  it("runs on the old database (with 0009), and only the new migrations run", () => {
    expect(applied).toEqual([
      "gateway/0008_netting_accrue_code.sql",
      "gateway/0009_attempt_status_executing.sql",
      "gateway/0010_json_columns.sql",
      "gateway/0011_idempotency_payment.sql",
      "gateway/0012_payees.sql",
      "gateway/0013_rail_fee_accounts.sql",
      "gateway/0014_quote_used_once.sql",
      "gateway/0015_tenants_keys.sql",
      "gateway/0016_invoice_receipts.sql",
      "gateway/0017_refunds.sql",
      "gateway/0018_list_indexes.sql",
      "gateway/0019_events.sql",
      "gateway/0020_webhook_deliveries.sql",
      "gateway/0021_x402_authorizations.sql",
      "gateway/0022_l402_tokens.sql",
      "gateway/0023_paywalls.sql",
      "gateway/0024_idempotency_created_at.sql",
      "gateway/0025_invoice_split.sql",
      "gateway/0026_x402_reconcile_indexes.sql",
      "gateway/0027_x402_valid_before.sql",
      "gateway/0028_outbox_dead_indexes.sql",
      "gateway/0029_outbox_fan_out_cursor.sql",
      "gateway/0030_payment_request_digest.sql",
      "gateway/0031_refund_request_digest.sql",
      "gateway/0032_webhook_delivery_claims.sql",
      "gateway/0033_reversal_withdrawn.sql",
      "gateway/0034_netting_batch_lease.sql",
      "gateway/0035_x402_payer_holds.sql",
      "gateway/0036_reversal_shortfalls.sql",
      "gateway/0037_netting_refused_payees.sql",
      "gateway/0038_hot_path_foreign_keys.sql",
      "gateway/0039_hot_path_indexes.sql",
      "gateway/0040_own_ledger_ids.sql",
      "gateway/0041_shared_route_decisions.sql",
      "gateway/0042_payment_attempts_view.sql",
      "gateway/0043_events_list_by_type.sql",
      "gateway/0044_paywall_rate_locks_version.sql",
      "gateway/0045_refund_recovery_tried.sql",
      "gateway/0046_x402_owed_service.sql",
      "gateway/0047_events_in_order.sql",
      "gateway/0048_attempt_network_fee.sql",
      "gateway/0049_attempt_recovery_tried.sql",
      "gateway/0050_refund_network_fee.sql",
      "gateway/0051_webhook_claim_indexes.sql",
      "gateway/0052_payment_recovery_tried.sql",
      "gateway/0053_x402_spent_tx_hash.sql",
      "gateway/0054_netted_payouts_tenant.sql",
      "gateway/0055_netted_payouts_by_tenant.sql",
      "gateway/0056_payment_event_facts.sql",
      "gateway/0057_quotes_expires.sql",
      "gateway/0058_payout_reversals.sql",
      "gateway/0059_l402_tokens_invoice.sql",
      "gateway/0060_x402_batch_key.sql",
      "gateway/0061_rail_invoices_known.sql",
      "gateway/0062_rail_capital_parked.sql",
      "gateway/0063_l402_tokens_expired_order.sql",
      "gateway/0064_rail_invoices_set_aside.sql",
      "gateway/0065_invoice_reversals_receipt.sql",
      "gateway/0066_receipt_unrecorded.sql",
      "gateway/0067_invoice_moved.sql",
      "gateway/0068_x402_unused_block.sql",
      "gateway/0069_refund_discounted.sql",
      "gateway/0070_x402_unsent_owed.sql",
      "gateway/0071_x402_unsent_owed_unmarked.sql",
      "gateway/0072_x402_unsent_owed_verified_block.sql",
    ]);
  });

  it("0029: fan-out's cursor takes the events not fanned out yet, and only those", async () => {
    const ahead = await db.query<{ n: string }>(
      `SELECT o.payload->>'n' AS n FROM outbox o, outbox_fan_out c WHERE (o.xact, o.id) > (c.xact, c.id)`,
    );
    expect(ahead.map((row) => row.n)).toEqual(["waiting"]);
  });

  it("0039: payments written before it get the ledger link the gateway computes, indexed as a column", async () => {
    const rows = await db.query<{ id: string; ledger_link: string }>(
      "SELECT id, replace(ledger_link::text, '-', '') AS ledger_link FROM payments ORDER BY id",
    );
    expect(rows.map((row) => row.id)).toEqual(["pay_d_later", "pay_d_own", "pay_m"]);
    for (const row of rows) expect(row.ledger_link).toBe(idToUuid(paymentLedgerLink(row.id)));
    const indexes = await db.query<{ indexname: string; indexdef: string }>(
      `SELECT indexname, indexdef FROM pg_indexes
        WHERE indexname IN ('payments_ledger_link', 'outbox_created', 'idempotency_keys_created_at') ORDER BY indexname`,
    );
    expect(
      indexes.map((row) => [row.indexname, /USING (\w+) \((\w+)\)/.exec(row.indexdef)?.slice(1)]),
    ).toEqual([
      ["idempotency_keys_created_at", ["brin", "created_at"]],
      ["outbox_created", ["brin", "created_at"]],
      ["payments_ledger_link", ["btree", "ledger_link"]],
    ]);
  });

  it("0040: rows from before keep their derived links and reservations, indexed; a row with its own is not", async () => {
    const kept = await db.query<{ n: bigint }>(
      "SELECT count(*) AS n FROM payments WHERE ledger_link IS NULL OR ledger_link <> switchyard_derived_ledger_id('payment', id)",
    );
    expect(kept[0]!.n).toBe(0n);
    const owned = await db.query<{ id: string; own_transfer_id: boolean }>(
      "SELECT id, own_transfer_id FROM attempts ORDER BY id",
    );
    expect(owned).toEqual([
      { id: "att_m_executing", own_transfer_id: false },
      { id: "att_m_failed", own_transfer_id: false },
    ]);
    const indexes = await db.query<{ indexname: string; indexdef: string }>(
      `SELECT indexname, indexdef FROM pg_indexes
        WHERE indexname IN ('payments_ledger_link', 'attempts_reserve_transfer_id') ORDER BY indexname`,
    );
    expect(
      indexes.map((row) => [row.indexname, /(UNIQUE )?INDEX.*WHERE (.*)$/.exec(row.indexdef)?.slice(1)]),
    ).toEqual([
      ["attempts_reserve_transfer_id", ["UNIQUE ", "(NOT own_transfer_id)"]],
      ["payments_ledger_link", [undefined, "(ledger_link IS NOT NULL)"]],
    ]);
    // Reservations stay unique where the attempt id does not make them so.
    await expect(
      db.query(
        `INSERT INTO attempts (id, payment_id, seq, rail, status, amount, fee_max, reserve_transfer_id)
         VALUES ('att_m_again', 'pay_m', 7, 'evm', 'failed', 5, 0, 1000)`,
      ),
    ).rejects.toThrow(/attempts_reserve_transfer_id/);
  });

  it("0028: the outbox keeps no index of the old delivery loop", async () => {
    const rows = await db.query<{ indexname: string }>(
      "SELECT indexname FROM pg_indexes WHERE tablename = 'outbox' ORDER BY indexname",
    );
    const names = rows.map((row) => row.indexname);
    expect(names).not.toContain("outbox_undelivered");
    expect(names).not.toContain("outbox_due");
    expect(names).toContain("outbox_fan_out_order");
  });

  it("reads accruals back with the new code and everything else as it was", async () => {
    const ledger = createLedger({ db });
    const after = await ledger.lookupTransfers(transferIds);
    await ledger.close();
    const codeOf = (id: bigint) => after.find((t) => t.id === id)?.code;
    expect(codeOf(ids.accrue)).toBe(transferCodes.netting.accrue);
    expect(codeOf(ids.accrueOrphan)).toBe(transferCodes.netting.accrue);
    expect(codeOf(ids.reinstated)).toBe(transferCodes.invoices.reinstated);
    expect(codeOf(ids.received)).toBe(transferCodes.invoices.received);
    expect(codeOf(ids.reversed)).toBe(transferCodes.invoices.reversed);
    expect(codeOf(ids.funding)).toBe(transferCodes.payments.funding);
    expect(codeOf(ids.nettingSettle)).toBe(transferCodes.netting.batchPaid);
    // A relabelling: every other field of every transfer, and every balance, is as it was.
    const withoutCode = (transfers: Transfer[]) => transfers.map(({ code: _code, ...rest }) => rest);
    expect(withoutCode(after)).toEqual(withoutCode(before));
    expect(after.filter((t) => t.code !== before.find((b) => b.id === t.id)?.code).map((t) => t.id)).toEqual([
      ids.accrue,
      ids.accrueOrphan,
    ]);
  });

  it("leaves balances untouched, and an accrual retried under the new code finds its transfer", async () => {
    const ledger = createLedger({ db });
    expect(await ledger.lookupAccounts(beforeAccounts.map((a) => a.id))).toEqual(beforeAccounts);
    const [accrue] = before.filter((t) => t.id === ids.accrue);
    const [retried] = await ledger.createTransfers([
      {
        id: ids.accrue,
        debitAccountId: accrue!.debitAccountId,
        creditAccountId: accrue!.creditAccountId,
        amount: accrue!.amount,
        ledger: accrue!.ledger,
        code: transferCodes.netting.accrue,
      },
    ]);
    await ledger.close();
    expect(retried?.status).toBe("exists");
  });
});

describe("0009: the attempt status 'executing' is gone", () => {
  it("turns an attempt left 'executing' into 'reserving', which recovery resumes", async () => {
    const rows = await db.query<{ id: string; status: string }>(
      "SELECT id, status FROM attempts WHERE payment_id = 'pay_m' ORDER BY seq",
    );
    expect(rows).toEqual([
      { id: "att_m_failed", status: "failed" },
      { id: "att_m_executing", status: "reserving" },
    ]);
    const open = await listOpenAttempts(db, { quietMs: 0, limit: 10 });
    expect(open.map((a) => a.id)).toContain("att_m_executing");
  });

  it("refuses 'executing' from now on", async () => {
    await expect(
      db.query(
        `INSERT INTO attempts (id, payment_id, seq, rail, status, amount, fee_max, reserve_transfer_id)
         VALUES ('att_m_late', 'pay_m', 2, 'evm', 'executing', 5, 0, 2000)`,
      ),
    ).rejects.toThrow(/attempts_status_check/);
  });
});

describe("0030: a payment keeps its request's digest", () => {
  it("takes it from the record written with the payment, not from a later request's claim of the key", async () => {
    const rows = await db.query<{ id: string; digest: string | null }>(
      `SELECT id, encode(request_sha256, 'hex') AS digest FROM payments WHERE id IN ('pay_d_own', 'pay_d_later')
       ORDER BY id`,
    );
    expect(rows).toEqual([
      { id: "pay_d_later", digest: null },
      { id: "pay_d_own", digest: "aa".repeat(32) },
    ]);
  });
});

describe("0010: a payment's documents and an idempotency answer are kept as json", () => {
  it("turns the columns into json and keeps what the rows held", async () => {
    const types = await db.query<{ table_name: string; column_name: string; data_type: string }>(
      `SELECT table_name, column_name, data_type FROM information_schema.columns
       WHERE (table_name = 'payments' AND column_name IN ('destination', 'policy', 'decision'))
          OR (table_name = 'idempotency_keys' AND column_name = 'response_body')
       ORDER BY table_name, column_name`,
    );
    expect(types.map((t) => `${t.table_name}.${t.column_name}: ${t.data_type}`)).toEqual([
      "idempotency_keys.response_body: json",
      "payments.decision: json",
      "payments.destination: json",
      "payments.policy: json",
    ]);
    const [row] = await db.query<{ destination: unknown; policy: unknown }>(
      "SELECT destination, policy FROM payments WHERE id = 'pay_m'",
    );
    expect(row).toEqual({ destination: {}, policy: {} });
  });
});
