-- A fiat rail's clearing account mirrors the PSP's balance, which goes below zero when the PSP takes a fee from
-- nothing: a dispute's fee once the disputed money is gone (Stripe then debits the platform's bank). Its ledger account
-- was opened with credits_must_not_exceed_debits (flag 4), which refused such a fee (settlement/rail-fees.ts books
-- them); new ones open without it (app.ts ensureClearingAccount). The accounts table keeps the ledger id as a number;
-- the ledger keys accounts by the same 128 bits as a uuid, written here as four 32-bit words.
UPDATE ledger_accounts SET flags = flags & ~4
WHERE id IN (
  SELECT (lpad(to_hex(trunc(ledger_account_id / 79228162514264337593543950336)::bigint), 8, '0')
       || lpad(to_hex(mod(trunc(ledger_account_id / 18446744073709551616), 4294967296)::bigint), 8, '0')
       || lpad(to_hex(mod(trunc(ledger_account_id / 4294967296), 4294967296)::bigint), 8, '0')
       || lpad(to_hex(mod(ledger_account_id, 4294967296)::bigint), 8, '0'))::uuid
  FROM accounts WHERE kind = 'clearing' AND rail = 'fiat'
);
