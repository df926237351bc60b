-- The send-gas pass (send-gas.ts) follows the sends still open: `gas_done` is false until the pass is done with a send
-- (its gas booked, left to the caller that books it, or the send known never mined), and a partial index holds only
-- those, so a pass reads the few open sends of its wallet, not the whole journal. `wallet` is the signer (written by
-- the journal from now on; a row before this migration gets it from its raw transaction when the pass first meets
-- it): the pass follows its own wallet's sends only, so another wallet's on the same chain and database — the one a
-- key rotation retired, whose sends keep the lowest nonces — never stands in front of them. `gas_tried_at` is when
-- a pass last looked at a send it could not finish (not final yet, or it threw): the least recently tried come
-- first, so no number of sends failing every minute starves the others.
ALTER TABLE evm_sends ADD COLUMN wallet text;
ALTER TABLE evm_sends ADD COLUMN gas_done boolean NOT NULL DEFAULT false;
ALTER TABLE evm_sends ADD COLUMN gas_tried_at timestamptz;
CREATE INDEX evm_sends_gas_open ON evm_sends (chain_id, wallet, nonce) WHERE NOT gas_done;

-- A row of evm_send_gas is now also a claim on who books a send's gas, taken before the booking (the pass's, or
-- the x402 batch settler's when the rail hands it a batch's outcome: x402-batch.ts), so that only one of them
-- ever books it; the send is done only once `gas_done` says so. A send never mined has no transaction, reverted
-- flag or gas; a send before this migration was never looked at.
ALTER TABLE evm_send_gas ALTER COLUMN tx_hash DROP NOT NULL;
ALTER TABLE evm_send_gas ALTER COLUMN reverted DROP NOT NULL;
ALTER TABLE evm_send_gas ALTER COLUMN gas_wei DROP NOT NULL;

-- The sends made before the pass existed (before 0010 was applied) are done, not followed: their gas is the
-- history ops reconciled by hand, or left as it was; a pass booking every old approve and revert "today" would
-- book some of them twice. Marked `before_0010`. The sends since (when 0010 ran before this one) are followed.
INSERT INTO evm_send_gas (attempt_id, chain_id, booked_by)
SELECT s.attempt_id, s.chain_id, 'before_0010' FROM evm_sends s
WHERE NOT EXISTS (SELECT 1 FROM evm_send_gas g WHERE g.attempt_id = s.attempt_id)
  AND s.created_at < coalesce(
    (SELECT applied_at FROM schema_migrations WHERE name = 'evm/0010_evm_send_gas.sql'),
    now()
  );
UPDATE evm_sends s SET gas_done = true
WHERE EXISTS (SELECT 1 FROM evm_send_gas g WHERE g.attempt_id = s.attempt_id);
