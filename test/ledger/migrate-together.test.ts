// Gateway processes that start together on a new PostgreSQL database migrate it together: each applies what is
// missing under one advisory lock, and none fails. Before, the migrations' own table was made outside that lock,
// and two CREATE TABLE IF NOT EXISTS at once could both create it: the second failed on the catalog's unique index
// (23505) and its process did not start.
import { describe, expect, inject, it } from "vitest";
import { gatewayMigrations } from "../../gateway/app.ts";
import { migrate, openPostgres } from "../../gateway/db/index.ts";
import { ledgerMigrations } from "../../gateway/ledger/index.ts";
import { createTestDatabase } from "../support/postgres.ts";

describe("migrations run by processes starting together", () => {
  it("apply once on a new database, every process starting", async () => {
    for (let round = 0; round < 8; round++) {
      const url = await createTestDatabase(inject("postgresUrl"), `migrate_together_${round}`);
      const processes = Array.from({ length: 4 }, () =>
        openPostgres({ url, poolSizeMax: 1, statementTimeoutMs: 60_000 }),
      );
      try {
        // Each connected first, so that their first statements meet.
        await Promise.all(processes.map((db) => db.query("SELECT 1")));
        const applied = await Promise.all(processes.map((db) => migrate(db, [ledgerMigrations])));
        // Every file applied once, by one process or another.
        const names = applied.flat();
        expect(names.length).toBeGreaterThan(0);
        expect(new Set(names).size).toBe(names.length);
      } finally {
        await Promise.all(processes.map((db) => db.close()));
      }
    }
  });

  it("apply the gateway's too, one of which builds its indexes concurrently, every process starting", async () => {
    // A process waiting for the migrations' lock in a statement holds a snapshot, which CREATE INDEX CONCURRENTLY
    // (0051) waits out while the lock's holder waits for it: before, PostgreSQL found the deadlock and failed one.
    for (let round = 0; round < 2; round++) {
      const url = await createTestDatabase(inject("postgresUrl"), `migrate_together_gateway_${round}`);
      const processes = Array.from({ length: 4 }, () =>
        openPostgres({ url, poolSizeMax: 2, statementTimeoutMs: 60_000 }),
      );
      try {
        await Promise.all(processes.map((db) => db.query("SELECT 1")));
        const applied = await Promise.all(
          processes.map((db) => migrate(db, [ledgerMigrations, gatewayMigrations])),
        );
        const names = applied.flat();
        expect(names).toContain(`${gatewayMigrations.namespace}/0051_webhook_claim_indexes.sql`);
        expect(new Set(names).size).toBe(names.length);
      } finally {
        await Promise.all(processes.map((db) => db.close()));
      }
    }
  });
});
