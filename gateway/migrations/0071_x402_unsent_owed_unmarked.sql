-- x402_unsent_owed.marked_block (0070) goes: the search for an authorization refused before sending, mined and not
-- credited yet, started from the chain's head read as its row was written (less the chain's confirmations, or the
-- last 1,000 blocks when the node could not say), and missed a transfer mined before it (the mining what made the
-- rail refuse) or earlier than 1,000 blocks on a fast chain. Nothing reads the head for the row now: 0072 adds the
-- block the search runs from, the one the paywall's verify read the nonce unused at (x402/spends.ts paidInWindow).
-- IF EXISTS: a database that applied 0070 as first committed (fe9c38e) has no marked_block.
ALTER TABLE x402_unsent_owed DROP COLUMN IF EXISTS marked_block;
