import { migrate, openPostgres } from "../../gateway/db/index.ts";
import { createLedger, ledgerId, ledgerMigrations } from "../../gateway/ledger/index.ts";
import { balanceRows, insertTransfers, transferRows, updateBalances } from "../../gateway/ledger/store.ts";
import { createTestDatabase, startPostgres } from "../support/postgres.ts";

const pg = await startPostgres();
try {
  const url = await createTestDatabase(pg.url);
  const db = openPostgres({ url, poolSizeMax: 4, statementTimeoutMs: 60000 });
  await migrate(db, [ledgerMigrations]);
  const ledger = createLedger({ db, limits: { expiryIntervalMs: 0 } });
  const ids = Array.from({ length: 10000 }, () => ledgerId());
  await ledger.createAccounts(ids.slice(0, 5000).map((id) => ({ id, ledger: 1, code: 1 })));
  await ledger.createAccounts(ids.slice(5000).map((id) => ({ id, ledger: 1, code: 1 })));
  await ledger.close();
  let ts = 1n;
  for (let round = 0; round < 16; round++) {
    if (round === 4) {
      await db.exec("DROP INDEX ledger_transfers_debit; DROP INDEX ledger_transfers_credit");
      console.log("-- no account indexes");
    }
    if (round === 8) {
      await db.exec("ALTER TABLE ledger_transfers DROP CONSTRAINT ledger_transfers_pkey");
      console.log("-- no pk either");
    }
    if (round === 12) {
      await db.exec(
        "CREATE INDEX ON ledger_transfers (debit_account_id); CREATE INDEX ON ledger_transfers (credit_account_id); ALTER TABLE ledger_transfers ADD PRIMARY KEY (id)",
      );
      console.log("-- all back, account indexes without timestamp");
    }
    const transfers = Array.from({ length: 6400 }, () => ({
      id: ledgerId(),
      debitAccountId: ids[Math.floor(Math.random() * 10000)]!,
      creditAccountId: ids[Math.floor(Math.random() * 10000)]!,
      amount: 5n,
      ledger: 1,
      code: 1,
      flags: 0,
      pendingId: 0n,
      timeout: 0,
      userData128: 0n,
      userData64: 0n,
      userData32: 0,
      timestamp: ts++,
      evidence: null,
    }));
    const tr = transferRows(transfers);
    const br = balanceRows(
      [...new Set(transfers.flatMap((t) => [t.debitAccountId, t.creditAccountId]))].map((id) => ({
        id,
        debitsPending: 0n,
        debitsPosted: 1n,
        creditsPending: 0n,
        creditsPosted: 1n,
        flags: 0,
      })),
    );
    const t0 = performance.now();
    let t1 = 0,
      t2 = 0;
    await db.transaction(async (tx) => {
      await insertTransfers(tx, tr);
      t1 = performance.now();
      await updateBalances(tx, br);
      t2 = performance.now();
    });
    const t3 = performance.now();
    console.log(
      `insert ${(t1 - t0).toFixed(1)} update ${(t2 - t1).toFixed(1)} (${br.count}) commit ${(t3 - t2).toFixed(1)}`,
    );
  }
  const r = await db.query(
    "SELECT pg_size_pretty(pg_total_relation_size('ledger_transfers')) s, pg_size_pretty(pg_relation_size('ledger_transfers')) h",
  );
  console.log(r);
  await db.close();
} finally {
  await pg.stop();
}
