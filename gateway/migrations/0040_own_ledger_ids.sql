-- Internal payments written in batches (payments/internal.ts) name their ledger objects by their own ids' bits
-- (ids/index.ts ownLedgerId) instead of a SHA-256 of the id (issue #19): the transfer's id is its attempt id's 128
-- bits, and the link its user_data_128 carries is the payment id's. Both are time-ordered, so these transfers land at
-- the right edge of ledger_transfers' primary key where a hash landed anywhere in it, and an account's transactions
-- find such a payment from the link itself (the id it spells), so neither needs an index entry of its own: two
-- B-tree inserts a payment fewer, each into a random place of an index as big as the table.
--
-- payments.ledger_link is null for such a payment (its link is its id's own bits); rows keeping a derived link stay
-- indexed, by a partial index.
ALTER TABLE payments ALTER COLUMN ledger_link DROP NOT NULL;
DROP INDEX payments_ledger_link;
CREATE INDEX payments_ledger_link ON payments (ledger_link) WHERE ledger_link IS NOT NULL;
-- An attempt whose reservation is its own id's bits says so; its transfer id is unique as the attempt id is (the
-- primary key), so only the others need the unique index (which also finds a payout's post by its reservation).
ALTER TABLE attempts ADD COLUMN own_transfer_id boolean NOT NULL DEFAULT false;
ALTER TABLE attempts DROP CONSTRAINT attempts_reserve_transfer_id_key;
CREATE UNIQUE INDEX attempts_reserve_transfer_id ON attempts (reserve_transfer_id) WHERE NOT own_transfer_id;
