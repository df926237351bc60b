-- x402_unsent_owed.verified_block: the block the paywall's verify read the authorization's nonce unused at (the
-- simulation's state was that block's or a later one's: x402/simulate-batch.ts, its atBlock), so the authorization
-- was mined after it. The search for its transfer, mined and not credited yet, starts there, less the chain's
-- confirmations and 64 blocks (x402/spends.ts paidInWindow, verifiedMarginBlocks), and reads no block for its start;
-- 0070's marked_block, the head read as the row was written, started it past a transfer mined before that read.
-- Null for a row written before, or by a verify whose block could not be read: the search runs from the first block
-- past the authorization's validAfter, or the window the paywall allows before its validBefore when later, found by
-- timestamps.
ALTER TABLE x402_unsent_owed ADD COLUMN verified_block bigint;
