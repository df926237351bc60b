-- A block at which a `submitted` authorization's nonce was unused, after a transaction of ours left it so (reverted,
-- or refused in its batch, the authorization still open to whoever holds it: x402/spends.ts unspentByOurs): the token
-- read it unused at the latest block, and the one kept is the last with the chain's confirmations (the latest less
-- confirmations - 1), which a reorganisation does not undo, never the latest itself. A copy that spent it since is
-- searched for from the next block on, and none before ours: before, each reading searched from our transaction's
-- block to the latest, a range that grew with every pass until the node could not answer it, and the row stayed
-- `submitted`, its payer unserved, for good. Null: never read open.
ALTER TABLE x402_authorizations ADD COLUMN unused_block bigint;
