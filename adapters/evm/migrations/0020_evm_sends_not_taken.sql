-- When a send's broadcast was first not taken (the node refused it and showed neither its nonce used nor its
-- transaction), cleared when one is taken: a refusal that never clears (geth's rpc.txfeecap, a gas limit above the
-- block's) held the wallet's every later nonce, each later send signed and answered in flight, with only a warning
-- each minute. Past replaceAfterMs it is said once at error level (not_taken_said), and while the wallet's lowest open
-- nonce is so, a new key is refused rail_unavailable before signing. Rows written before read as taken.
ALTER TABLE evm_sends ADD COLUMN not_taken_since timestamptz;
ALTER TABLE evm_sends ADD COLUMN not_taken_said boolean NOT NULL DEFAULT false;
