-- TigerBeetle's `history` flag: an account with it keeps its balances as they were right after each of its
-- transfers (getAccountBalances). Written with the transfer, in the same statement; the key is the account and the
-- transfer's timestamp. Accounts without the flag (the gateway's) write nothing here.
CREATE TABLE ledger_account_balances (
  account_id uuid NOT NULL,
  timestamp bigint NOT NULL,
  debits_pending bigint NOT NULL,
  debits_posted bigint NOT NULL,
  credits_pending bigint NOT NULL,
  credits_posted bigint NOT NULL,
  PRIMARY KEY (account_id, timestamp)
);
