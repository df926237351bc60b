-- migrate: outside a transaction
-- The batch an authorization was sent in (x402/batch.ts: the key it hands the rail, which sends it under
-- x402-batch:<key>), written on the batch's rows before the rail sends it. A settler that died between the send and
-- its record left the rows `claimed` with no transaction: reconciliation now finds the send by this key, and the
-- send-gas pass leaves such a batch's gas to x402 (settlement/evm-send-gas.ts). COLLATE "C": compared with the
-- journal's keys (evm_sends.attempt_id). Built concurrently (gateway/db outsideTransaction): every x402 payment
-- writes a row here.
ALTER TABLE x402_authorizations ADD COLUMN IF NOT EXISTS batch_key text COLLATE "C";
DROP INDEX CONCURRENTLY IF EXISTS x402_authorizations_batch;
CREATE INDEX CONCURRENTLY x402_authorizations_batch ON x402_authorizations (chain_id, batch_key)
  WHERE batch_key IS NOT NULL;
