// What a rail or a store needs of the database: one small SQL interface, the same over PostgreSQL and
// PGlite (gateway/db implements it). int8 comes back as bigint and numeric as a decimal string.

export type Row = Record<string, unknown>;

export interface Sql {
  /** Runs one parameterized statement and returns its rows. */
  query<R extends Row = Row>(text: string, params?: readonly unknown[]): Promise<R[]>;
}

/** A parameterized statement, to run later or with others. */
export type Statement = { text: string; params: readonly unknown[] };

export interface Db extends Sql {
  readonly kind: "postgres" | "pglite";
  /** The most statements that can run at once (PostgreSQL: the pool's size; PGlite: 1). */
  readonly connectionsMax: number;
  /**
   * Runs `fn` in one transaction; commits when it resolves, rolls back when it throws. On PostgreSQL each statement
   * is sent when asked for, without waiting for the answers of those before it (they run in order): `fn` may send
   * several and then await them, or return before their answers. COMMIT goes behind every statement sent; the
   * transaction resolves once all of them and the COMMIT succeeded, else rejects with the first failure in the order
   * sent (a failed statement aborts the transaction, whatever `fn` did with its error).
   */
  transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T>;
  /**
   * Runs statements in order in one transaction, all or none, and returns each one's rows. PGlite takes them in
   * one exchange, which costs about what one statement does.
   */
  queryAll(statements: readonly Statement[]): Promise<Row[][]>;
  /** Runs a script of several statements without parameters (migrations). */
  exec(script: string): Promise<void>;
  /**
   * Runs `fn` on one connection held for it alone, without a statement timeout, each statement committed on its own
   * unless `fn` sends BEGIN itself: for what PostgreSQL refuses inside a transaction and may take long (CREATE INDEX
   * CONCURRENTLY in a migration), under a session's advisory lock (gateway/db migrate). The connection goes back with
   * its settings reset. PGlite: its one connection, as it is.
   */
  session<T>(fn: (conn: Sql) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/**
 * A folder of numbered `.sql` files applied once each, in order, under a namespace. `tables` names the tables they
 * create: on a database whose default collation is not C, their text columns are made COLLATE "C" after the
 * migrations (gateway/db/bytewise.ts), and no other table is touched.
 */
export type MigrationSource = { namespace: string; directory: string; tables?: (name: string) => boolean };
