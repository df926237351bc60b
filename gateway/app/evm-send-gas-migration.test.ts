// EVM migration 0011 on a journal written before it: the sends made before the send-gas pass existed (before 0010
// was applied) are done, marked `before_0010`, so that a first pass does not book every old approve and revert
// today; the sends since 0010, not followed yet, stay open; those a pass finished stay as it left them.
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
  // A pass ran after 0010 and finished one of them.
  await db.query(
    `INSERT INTO evm_send_gas (attempt_id, chain_id, tx_hash, reverted, gas_wei, booked_by)
     VALUES ('settle:since', 31337, '0xab', false, 21000, 'netting')`,
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
    ["settle:since", true, "netting"],
  ]);
  // The pass's query reads the open sends through the partial index.
  const [index] = await db.query<{ indexdef: string }>(
    "SELECT indexdef FROM pg_indexes WHERE indexname = 'evm_sends_gas_open'",
  );
  expect(index?.indexdef).toContain("WHERE (NOT gas_done)");
});
