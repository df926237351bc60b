// Migration 0035 on a database that already has x402 authorizations: each payer's holds start as the sum of its
// pending rows (claimed or submitted), settled and failed rows hold nothing, and a row claimed before validBefore was
// kept (0027, null) is lapsed, holding nothing; the triggers then keep the sum as rows change.
import { cp, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { gatewayMigrations } from "../app.ts";
import { type Db, migrate, openPglite } from "../db/index.ts";
import { ledgerMigrations } from "../ledger/index.ts";

let db: Db;
let before0035: string;

beforeAll(async () => {
  db = await openPglite(undefined);
  before0035 = await mkdtemp(path.join(tmpdir(), "switchyard-migrations-0034-"));
  for (const file of await readdir(gatewayMigrations.directory))
    if (/^\d{4}_.*\.sql$/.test(file) && file < "0035")
      await cp(path.join(gatewayMigrations.directory, file), path.join(before0035, file));
  await migrate(db, [ledgerMigrations, { namespace: gatewayMigrations.namespace, directory: before0035 }]);
  await db.query("INSERT INTO tenants (id, name) VALUES ('ten_0035', 'before 0035')");
  await db.query(
    `INSERT INTO x402_authorizations (chain_id, token, payer, nonce, tenant_id, account_id, amount, valid_before, status)
     VALUES (1, 't', 'a', 'n1', 'ten_0035', 'acc', 100, 9999999999, 'claimed'),
            (1, 't', 'a', 'n2', 'ten_0035', 'acc', 200, 9999999999, 'submitted'),
            (1, 't', 'a', 'n3', 'ten_0035', 'acc', 400, 9999999999, 'settled'),
            (1, 't', 'a', 'n4', 'ten_0035', 'acc', 800, 9999999999, 'failed'),
            (1, 't', 'a', 'n5', 'ten_0035', 'acc', 1600, NULL, 'claimed'),
            (1, 't', 'b', 'n1', 'ten_0035', 'acc', 3200, 9999999999, 'claimed'),
            (2, 't', 'a', 'n1', 'ten_0035', 'acc', 6400, 9999999999, 'submitted')`,
  );
  await migrate(db, [ledgerMigrations, gatewayMigrations]);
});

afterAll(async () => {
  await db?.close();
  if (before0035 !== undefined) await rm(before0035, { recursive: true, force: true });
});

const holds = async () =>
  (
    await db.query<{ chain_id: string; payer: string; held: string }>(
      "SELECT chain_id::text AS chain_id, payer, held::text AS held FROM x402_payer_holds ORDER BY chain_id, payer",
    )
  ).map((row) => [row.chain_id, row.payer, row.held]);

it("0035: each payer's holds start from its pending rows, and follow them after", async () => {
  expect(await holds()).toEqual([
    ["1", "a", "300"],
    ["1", "b", "3200"],
    ["2", "a", "6400"],
  ]);
  const [lapsed] = await db.query<{ hold_lapsed: boolean }>(
    "SELECT hold_lapsed FROM x402_authorizations WHERE chain_id = 1 AND payer = 'a' AND nonce = 'n5'",
  );
  expect(lapsed!.hold_lapsed).toBe(true);
  // Rows claimed before the migration leave the holds through the triggers like any other: settled, given back.
  await db.query(
    "UPDATE x402_authorizations SET status = 'settled' WHERE chain_id = 1 AND payer = 'a' AND nonce = 'n2'",
  );
  await db.query("DELETE FROM x402_authorizations WHERE chain_id = 1 AND payer = 'b' AND nonce = 'n1'");
  // The lapsed one, failed now, takes nothing off.
  await db.query(
    "UPDATE x402_authorizations SET status = 'failed' WHERE chain_id = 1 AND payer = 'a' AND nonce = 'n5'",
  );
  expect(await holds()).toEqual([
    ["1", "a", "100"],
    ["1", "b", "0"],
    ["2", "a", "6400"],
  ]);
});
