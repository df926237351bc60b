// Identifiers compare as bytes. Every key the gateway indexes is text it made or a client sent as an opaque token:
// ids ("pay_" and 26 characters sorted by time), tenant ids, Idempotency-Keys, event types, statuses. Under a
// linguistic collation (en_US.UTF-8, the default of the official PostgreSQL image, or an ICU locale) each comparison
// a B-tree makes goes through the locale's collation (strcoll, or ICU's) instead of memcmp. On a database
// created with en_US.UTF-8, issue #19's HTTP bench spent 69 µs of PostgreSQL a payment against 47 on a C database
// (internal-postgres), and 88 against 63-68 µs with 100 tenants (internal-postgres-many).
//
// So after the migrations, on a database whose default collation is not libc's C (or POSIX), the text columns of
// the tables the sources name (MigrationSource.tables) are made COLLATE "C". On a C database this costs one catalog
// read; on another, a transaction under the migrations' lock reads the columns and, where some are not C yet, drops
// the schema's views on those tables and the triggers that name one of their columns (a WHEN, an UPDATE OF), changes
// the columns (their indexes are rebuilt; the rows are not rewritten) and makes the views and triggers again from
// their definitions. A column a later migration adds is changed the next time the gateway starts; a migration that
// compares a column it adds with an older one should give it COLLATE "C" itself. Tables the sources do not name are
// never touched.
import pg from "pg";
import type { Db, MigrationSource, Sql } from "../../core/index.ts";

/** The advisory lock the migrations take (db/index.ts migrate). */
export const migrationsLock = 7350162;

/**
 * Makes the sources' tables' text columns COLLATE "C" where the database's default is another, in one transaction
 * under the migrations' lock; returns them.
 */
export async function bytewiseText(db: Db, sources: readonly MigrationSource[]): Promise<string[]> {
  if (await isBytewise(db)) return [];
  return await db.transaction(async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock(${migrationsLock})`);
    return bytewiseTextIn(tx, sources);
  });
}

/** Whether the database's default collation compares as bytes already (libc's C or POSIX). */
export async function isBytewise(sql: Sql): Promise<boolean> {
  const [database] = await sql.query<{ bytewise: boolean }>(
    // datlocprovider came with PostgreSQL 15; before it, every database's collation was libc's.
    `SELECT coalesce(to_jsonb(d) ->> 'datlocprovider', 'c') = 'c' AND d.datcollate IN ('C', 'POSIX') AS bytewise
     FROM pg_database d WHERE d.datname = current_database()`,
  );
  return database === undefined || database.bytewise;
}

/**
 * bytewiseText's work in transaction `tx`, whose caller holds the migrations' lock (migrate holds it for its session).
 */
export async function bytewiseTextIn(tx: Sql, sources: readonly MigrationSource[]): Promise<string[]> {
  const owned = (table: string) =>
    table === "schema_migrations" || sources.some((source) => source.tables?.(table) === true);
  const columns = (
    await tx.query<{ table: string; column: string; type: string }>(
      `SELECT c.relname AS table, a.attname AS column, format_type(a.atttypid, a.atttypmod) AS type
       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
       WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p') AND a.attnum > 0
         AND NOT a.attisdropped AND a.attcollation NOT IN (0, 'pg_catalog."C"'::regcollation)
       ORDER BY c.relname, a.attnum`,
    )
  ).filter((column) => owned(column.table));
  if (columns.length === 0) return [];
  const tables = [...new Set(columns.map((column) => column.table))];
  // The views over those tables, and over those views: dropped newest first, made again oldest first.
  const views = await tx.query<{ name: string; definition: string }>(
    `WITH RECURSIVE over (oid) AS (
       SELECT c.oid FROM pg_class c
       WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY($1::text[])
       UNION
       SELECT r.ev_class FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN over ON d.refobjid = over.oid
       WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass AND r.ev_class <> d.refobjid)
     SELECT v.relname AS name, pg_get_viewdef(v.oid) AS definition
     FROM pg_class v JOIN over ON over.oid = v.oid
     WHERE v.relkind = 'v' AND v.relnamespace = current_schema()::regnamespace ORDER BY v.oid`,
    [tables],
  );
  const triggers = await tx.query<{ name: string; table: string; definition: string }>(
    `SELECT t.tgname AS name, c.relname AS table, pg_get_triggerdef(t.oid) AS definition
     FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
     WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace AND c.relname = ANY($1::text[])
       AND EXISTS (SELECT 1 FROM pg_depend d
                   WHERE d.classid = 'pg_trigger'::regclass AND d.objid = t.oid AND d.refobjsubid > 0)
     ORDER BY t.oid`,
    [tables],
  );
  for (const trigger of triggers)
    await tx.query(
      `DROP TRIGGER ${pg.escapeIdentifier(trigger.name)} ON ${pg.escapeIdentifier(trigger.table)}`,
    );
  for (const view of [...views].reverse()) await tx.query(`DROP VIEW ${pg.escapeIdentifier(view.name)}`);
  for (const table of tables) {
    const changes = columns
      .filter((column) => column.table === table)
      .map((column) => `ALTER COLUMN ${pg.escapeIdentifier(column.column)} TYPE ${column.type} COLLATE "C"`);
    await tx.query(`ALTER TABLE ${pg.escapeIdentifier(table)} ${changes.join(", ")}`);
  }
  for (const view of views)
    await tx.query(`CREATE VIEW ${pg.escapeIdentifier(view.name)} AS ${view.definition}`);
  for (const trigger of triggers) await tx.query(trigger.definition);
  return columns.map((column) => `${column.table}.${column.column}`);
}
