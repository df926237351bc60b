-- Netting's accrual moves from transfer code 5 to 7 (gateway/ledger/codes.ts: transferCodes.netting.accrue).
-- It reads and writes the ledger's tables, so the gateway's migrations run after the ledger's (as createApp does).
-- Code 5 was given to two kinds of transfer, netting's accrual (migration 0005) and an invoice's reinstatement
-- (0007), so the audit trail could not say which one a code-5 transfer was. The reinstatements keep 5.
--
-- Which stored code-5 transfers are accruals, without ambiguity: an accrual debits the payer's account and
-- credits the rail's PAYABLE account (gateway/accounts kind 'payable', ledger account code 30); nothing else
-- credits a payable account (a netted batch's payment debits it, under code 6). A reinstatement credits the
-- invoice's TENANT account (customer 1 or merchant 2: the settlement finds it by tenant, and a payable account
-- belongs to no tenant) from the rail's clearing account (10). So a code-5 transfer is an accrual exactly when its
-- credit account has code 30. (netted_payouts.accrue_transfer_id lists accruals too, but not one whose process
-- stopped between the ledger transfer and that row, so the ledger's own accounts are the test used here.)
--
-- Why rewriting stored transfers is legitimate here, though the ledger's transfers are immutable: this is a
-- relabelling of what kind of movement a transfer was, not a change to any movement. No amount, account, flag,
-- id, timestamp or balance changes; balances do not depend on codes. TigerBeetle itself cannot do it, so a
-- TigerBeetle-backed deployment would instead have to read code 5 with the same account test; on our SQL ledger
-- the stored rows are made to say what they are, once. Retrying an accrual after this (same id, code 7) finds the
-- rewritten transfer and answers `exists`, as before. Every process must run the new code before it accrues
-- again: one still writing code 5 would make a new ambiguous row (it would also answer exists_with_different_code
-- on retries of rewritten ones).
UPDATE ledger_transfers t SET code = 7
WHERE t.code = 5
  AND EXISTS (SELECT 1 FROM ledger_accounts a WHERE a.id = t.credit_account_id AND a.code = 30);
