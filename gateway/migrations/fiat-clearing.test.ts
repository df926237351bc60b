// Migration 0038 on a database whose fiat clearing account was opened refusing a balance below zero (ledger flag 4,
// credits_must_not_exceed_debits): the flag goes, the account's other flags stay, and no other rail's clearing account
// changes. The ids are above 2^127, so every 32-bit word of the number-to-uuid conversion counts.
import { cp, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { gatewayMigrations } from "../app.ts";
import { type Db, migrate, openPglite } from "../db/index.ts";
import { ledgerMigrations } from "../ledger/index.ts";

let db: Db;
let before0038: string;

const fiatClearing = 0xf0e1d2c3b4a5968778695a4b3c2d1e0fn;
const lightningClearing = 0xf0e1d2c3b4a5968778695a4b3c2d1e10n;
const uuidOf = (id: bigint) =>
  id
    .toString(16)
    .padStart(32, "0")
    .replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, "$1-$2-$3-$4-$5");
/** credits_must_not_exceed_debits (4) and history (8). */
const openedFlags = 4 | 8;

beforeAll(async () => {
  db = await openPglite(undefined);
  before0038 = await mkdtemp(path.join(tmpdir(), "switchyard-migrations-0037-"));
  for (const file of await readdir(gatewayMigrations.directory))
    if (/^\d{4}_.*\.sql$/.test(file) && file < "0038")
      await cp(path.join(gatewayMigrations.directory, file), path.join(before0038, file));
  await migrate(db, [ledgerMigrations, { namespace: gatewayMigrations.namespace, directory: before0038 }]);
  for (const [id, rail] of [
    [fiatClearing, "fiat"],
    [lightningClearing, "lightning"],
  ] as const) {
    await db.query(
      "INSERT INTO ledger_accounts (id, ledger, code, flags, timestamp) VALUES ($1::uuid, 840, 1, $2, 1)",
      [uuidOf(id), openedFlags],
    );
    await db.query(
      `INSERT INTO accounts (id, tenant_id, kind, asset, ledger_account_id, name, rail)
       VALUES ($1, NULL, 'clearing', 'USD', $2, $1, $3)`,
      [`acct_clearing_${rail}_usd`, id.toString(), rail],
    );
  }
  await migrate(db, [ledgerMigrations, gatewayMigrations]);
});

afterAll(async () => {
  await db?.close();
  if (before0038 !== undefined) await rm(before0038, { recursive: true, force: true });
});

it("0038: the fiat rail's clearing account refuses nothing; other rails' are as they were", async () => {
  const flagsOf = async (id: bigint) => {
    const [row] = await db.query<{ flags: number }>("SELECT flags FROM ledger_accounts WHERE id = $1::uuid", [
      uuidOf(id),
    ]);
    return row?.flags;
  };
  expect(await flagsOf(fiatClearing)).toBe(8);
  expect(await flagsOf(lightningClearing)).toBe(openedFlags);
});
