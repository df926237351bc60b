// What must hold of the ledger after anything at all was sent to the gateway, read from its tables alone:
// - every ledger (asset) balances: the accounts' posted debits equal their posted credits, and so do the pending;
// - every account's pending balances are exactly the pending transfers still open on it;
// - every account's posted balances are exactly its single-phase and posting transfers;
// - no account with a balance limit is past it, and every open pending transfer is a pending transfer.
// Each problem is a line naming what is off; none is an empty list.
import type { Sql } from "../../core/index.ts";
import { AccountFlags, TransferFlags } from "../../gateway/ledger/types.ts";

export async function ledgerInvariantProblems(sql: Sql): Promise<string[]> {
  const problems: string[] = [];
  const unbalanced = await sql.query<{ ledger: string; dp: string; cp: string; dn: string; cn: string }>(
    `SELECT ledger::text, sum(debits_posted)::text AS dp, sum(credits_posted)::text AS cp,
            sum(debits_pending)::text AS dn, sum(credits_pending)::text AS cn
     FROM ledger_accounts GROUP BY ledger
     HAVING sum(debits_posted) <> sum(credits_posted) OR sum(debits_pending) <> sum(credits_pending)`,
  );
  for (const row of unbalanced)
    problems.push(
      `ledger ${row.ledger} does not balance: posted ${row.dp} debits / ${row.cp} credits, pending ${row.dn} / ${row.cn}`,
    );
  const drifted = await sql.query<{ id: string; field: string; stored: string; summed: string }>(
    `WITH open_pending AS (
       SELECT t.debit_account_id, t.credit_account_id, t.amount FROM ledger_transfers t
       JOIN ledger_pending_open o ON o.id = t.id
     ), posted AS (
       SELECT debit_account_id, credit_account_id, amount FROM ledger_transfers WHERE flags & $1 = 0
     ), sums AS (
       SELECT a.id, a.debits_pending, a.credits_pending, a.debits_posted, a.credits_posted,
         (SELECT coalesce(sum(amount), 0) FROM open_pending p WHERE p.debit_account_id = a.id) AS dn,
         (SELECT coalesce(sum(amount), 0) FROM open_pending p WHERE p.credit_account_id = a.id) AS cn,
         (SELECT coalesce(sum(amount), 0) FROM posted p WHERE p.debit_account_id = a.id) AS dp,
         (SELECT coalesce(sum(amount), 0) FROM posted p WHERE p.credit_account_id = a.id) AS cp
       FROM ledger_accounts a
     )
     SELECT id::text, field, stored::text, summed::text FROM (
       SELECT id, 'debits_pending' AS field, debits_pending AS stored, dn AS summed FROM sums
       UNION ALL SELECT id, 'credits_pending', credits_pending, cn FROM sums
       UNION ALL SELECT id, 'debits_posted', debits_posted, dp FROM sums
       UNION ALL SELECT id, 'credits_posted', credits_posted, cp FROM sums
     ) checked WHERE stored <> summed`,
    [TransferFlags.pending | TransferFlags.voidPendingTransfer],
  );
  for (const row of drifted)
    problems.push(`account ${row.id}: ${row.field} is ${row.stored}, its transfers sum to ${row.summed}`);
  const overLimit = await sql.query<{ id: string }>(
    `SELECT id::text FROM ledger_accounts
     WHERE (flags & $1 <> 0 AND debits_pending + debits_posted > credits_posted)
        OR (flags & $2 <> 0 AND credits_pending + credits_posted > debits_posted)`,
    [AccountFlags.debitsMustNotExceedCredits, AccountFlags.creditsMustNotExceedDebits],
  );
  for (const row of overLimit) problems.push(`account ${row.id} is past its balance limit`);
  const strayOpen = await sql.query<{ id: string }>(
    `SELECT o.id::text FROM ledger_pending_open o LEFT JOIN ledger_transfers t ON t.id = o.id
     WHERE t.id IS NULL OR t.flags & $1 = 0`,
    [TransferFlags.pending],
  );
  for (const row of strayOpen) problems.push(`open pending ${row.id} is not a pending transfer`);
  return problems;
}
