// The two stores every ledger suite runs on: PGlite in memory, and a fresh database on the private PostgreSQL.
import { inject } from "vitest";
import { type Db, migrate, openPglite, openPostgres } from "../../gateway/db/index.ts";
import { ledgerMigrations } from "../../gateway/ledger/index.ts";
import { createTestDatabase } from "../support/postgres.ts";

export type StoreName = "pglite" | "postgres";
export const storeNames: readonly StoreName[] = ["pglite", "postgres"];

export async function openStore(name: StoreName, options: { poolSizeMax?: number } = {}): Promise<Db> {
  const db =
    name === "pglite"
      ? await openPglite(undefined)
      : openPostgres({
          url: await createTestDatabase(inject("postgresUrl"), "ledger"),
          poolSizeMax: options.poolSizeMax ?? 4,
          statementTimeoutMs: 60_000,
        });
  await migrate(db, [ledgerMigrations]);
  return db;
}
