-- x402_unsent_owed.verified_block: the block the paywall's verify read the authorization's nonce unused at (the
-- simulation's state was that block's or a later one's: x402/simulate-batch.ts, the payer's balance's atBlock), so the
-- authorization was mined after it. The search for its transfer, mined and not credited yet, starts there, less the
-- chain's confirmations (x402/spends.ts paidInWindow), and reads no block for its start. Before (0071), it ran over the
-- authorization's own window, found by timestamps: some 24 hours of blocks for a client that signs validAfter 0, more
-- reads of logs than the node answers on a fast chain, and a payer whose nonce was cancelled never heard the final
-- refusal. Null for a row written before, or when the verify had no block (its balance not read): the window, as
-- before.
ALTER TABLE x402_unsent_owed ADD COLUMN verified_block bigint;
