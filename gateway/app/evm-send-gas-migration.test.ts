// EVM migration 0011 on a journal written before it: the sends made before the send-gas pass existed (before 0010
// was applied) are done, marked `before_0010`, so that a first pass does not book every old approve and revert
// today; the sends since 0010, not followed yet, stay open; those a pass finished stay as it left them. And 0018:
// the payouts and netting batches a pass left to their payment or netting on trust are open again, claimed by the
// pass (which then asks the ledger: test/evm/gas-reconciliation.test.ts); every other send stays as it was.
import { cp, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { evmMigrations } from "../../adapters/evm/index.ts";
import { type Db, migrate, openPglite } from "../db/index.ts";

let db: Db;
let before0011: string;

beforeAll(async () => {
  db = await openPglite(undefined);
  before0011 = await mkdtemp(path.join(tmpdir(), "switchyard-evm-migrations-0010-"));
  for (const file of await readdir(evmMigrations.directory))
    if (/^\d{4}_.*\.sql$/.test(file) && file < "0011")
      await cp(path.join(evmMigrations.directory, file), path.join(before0011, file));
  await migrate(db, [{ namespace: evmMigrations.namespace, directory: before0011 }]);
  const send = (key: string, nonce: number, createdAt: string) =>
    db.query(
      `INSERT INTO evm_sends (attempt_id, chain_id, tx_hash, raw_tx, nonce, created_at)
       VALUES ($1, 31337, $2, '0x00', $3, ${createdAt})`,
      [key, `0x${nonce.toString(16).padStart(64, "0")}`, nonce],
    );
  await send("approve:old", 1, "now() - interval '30 days'");
  await send("settle:old", 2, "now() - interval '1 day'");
  await send("approve:since", 3, "now() + interval '1 second'"); // after 0010 was applied
  await send("settle:since", 4, "now() + interval '1 second'");
  // A pass ran after 0010 and finished one of them (a batch mined reverted, its gas booked by the pass: one a pass
  // left to netting is open again after 0018, below).
  await db.query(
    `INSERT INTO evm_send_gas (attempt_id, chain_id, tx_hash, reverted, gas_wei, booked_by)
     VALUES ('settle:since', 31337, '0xab', true, 21000, 'send_gas')`,
  );
  await migrate(db, [evmMigrations]);
});

afterAll(async () => {
  await db?.close();
  if (before0011 !== undefined) await rm(before0011, { recursive: true, force: true });
});

it("0011: the sends before 0010 are done as before_0010; those since stay open unless a pass finished them", async () => {
  const rows = await db.query<{ attempt_id: string; gas_done: boolean; booked_by: string | null }>(
    `SELECT s.attempt_id, s.gas_done, g.booked_by FROM evm_sends s
       LEFT JOIN evm_send_gas g USING (attempt_id) ORDER BY s.nonce`,
  );
  expect(rows.map((row) => [row.attempt_id, row.gas_done, row.booked_by])).toEqual([
    ["approve:old", true, "before_0010"],
    ["settle:old", true, "before_0010"],
    ["approve:since", false, null],
    ["settle:since", true, "send_gas"],
  ]);
  // The pass's query reads the open sends through the partial index.
  const [index] = await db.query<{ indexdef: string }>(
    "SELECT indexdef FROM pg_indexes WHERE indexname = 'evm_sends_gas_open'",
  );
  expect(index?.indexdef).toContain("WHERE (NOT gas_done)");
});

it("0018: the payouts and batches a pass left to their owner on trust are open again, the pass's; no other send", async () => {
  const db0018 = await openPglite(undefined);
  const before0018 = await mkdtemp(path.join(tmpdir(), "switchyard-evm-migrations-0017-"));
  try {
    for (const file of await readdir(evmMigrations.directory))
      if (/^\d{4}_.*\.sql$/.test(file) && file < "0018")
        await cp(path.join(evmMigrations.directory, file), path.join(before0018, file));
    await migrate(db0018, [{ namespace: evmMigrations.namespace, directory: before0018 }]);
    // Done sends as the pass before 0018 left them, and one still open.
    const done: [key: string, bookedBy: string][] = [
      ["att_trusted", "payment"], // a payout attempt's (or a refund's) id: left to its payment on trust
      ["settle:trusted", "netting"], // a netting batch, left to netting on trust
      ["att_reverted", "send_gas"], // booked by the pass
      ["ref_asked", "refund"], // the ledger said the refund booked it
      ["settle:reverted", "send_gas"],
      ["approve:1", "send_gas"],
      ["sweep:1:a", "sweep"],
      ["x402-batch:b", "x402"],
      ["transfer-auth:c", "x402_gas"],
      ["att_old", "before_0010"],
    ];
    for (const [i, [key, bookedBy]] of done.entries()) {
      await db0018.query(
        `INSERT INTO evm_sends (attempt_id, chain_id, tx_hash, raw_tx, nonce, wallet, gas_done)
         VALUES ($1, 31337, $2, '0x00', $3, '0xaa', true)`,
        [key, `0x${i.toString(16).padStart(64, "0")}`, i],
      );
      await db0018.query(
        `INSERT INTO evm_send_gas (attempt_id, chain_id, tx_hash, reverted, gas_wei, booked_by)
         VALUES ($1, 31337, $2, false, 21000, $3)`,
        [key, `0x${i.toString(16).padStart(64, "0")}`, bookedBy],
      );
    }
    await db0018.query(
      "INSERT INTO evm_sends (attempt_id, chain_id, tx_hash, raw_tx, nonce, wallet) VALUES ('att_open', 31337, '0xff', '0x00', 99, '0xaa')",
    );
    await migrate(db0018, [evmMigrations]);
    const rows = await db0018.query<{
      attempt_id: string;
      gas_done: boolean;
      tried: boolean;
      booked_by: string | null;
    }>(
      `SELECT s.attempt_id, s.gas_done, s.gas_tried_at IS NOT NULL AS tried, g.booked_by
         FROM evm_sends s LEFT JOIN evm_send_gas g USING (attempt_id) ORDER BY s.nonce`,
    );
    expect(rows.map((row) => [row.attempt_id, row.gas_done, row.tried, row.booked_by])).toEqual([
      ["att_trusted", false, true, "send_gas"],
      ["settle:trusted", false, true, "send_gas"],
      ...done.slice(2).map(([key, bookedBy]) => [key, true, false, bookedBy]),
      ["att_open", false, false, null],
    ]);
  } finally {
    await db0018.close();
    await rm(before0018, { recursive: true, force: true });
  }
});
