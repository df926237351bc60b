// Two accounts on ledger 1 and a transfer of 1 between them: the fixture of the suites that care how a batch is
// written (alongside statements, a silent connection), not what it moves.
import type { AccountInput, TransferInput } from "../../gateway/ledger/index.ts";

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
