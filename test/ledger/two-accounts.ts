// Two accounts on ledger 1 and a transfer of 1 between them, and a database with the ledger's tables and a table of
// the callers' own: the fixture of the suites that care how a batch is written (alongside statements, a silent
// connection, a lock wait), not what it moves.
import { type Db, migrate, openPostgres } from "../../gateway/db/index.ts";
import { type AccountInput, ledgerMigrations, type TransferInput } from "../../gateway/ledger/index.ts";
import { createTestDatabase } from "../support/postgres.ts";

const debit = 1n;
const credit = 2n;

/** The two accounts, for createAccounts. */
export const twoAccounts: readonly AccountInput[] = [
  { id: debit, ledger: 1, code: 1, flags: 0 },
  { id: credit, ledger: 1, code: 1, flags: 0 },
];

/** A transfer of 1 from `debit` to `credit`. */
export const transfer = (id: bigint): TransferInput => ({
  id,
  debitAccountId: debit,
  creditAccountId: credit,
  amount: 1n,
  ledger: 1,
  code: 1,
});

/**
 * A new database on the test server `serverUrl`, named after `name`, with the ledger's tables and `caller_keys` (a
 * table callers' statements written alongside insert into), and a pool of two connections straight to it.
 */
export async function ledgerDatabase(serverUrl: string, name: string): Promise<{ url: string; direct: Db }> {
  const url = await createTestDatabase(serverUrl, name);
  const direct = openPostgres({ url, poolSizeMax: 2, statementTimeoutMs: 10_000 });
  await migrate(direct, [ledgerMigrations]);
  await direct.exec("CREATE TABLE caller_keys (key text PRIMARY KEY)");
  return { url, direct };
}
