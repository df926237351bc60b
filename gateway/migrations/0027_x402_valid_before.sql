-- The authorization's validBefore (unix seconds, as signed), for the x402 reconciler (gateway/x402/reconcile.ts):
-- a row left 'submitted' whose transaction the node does not know (dropped, replaced by a fee bump, never sent) is
-- concluded 'failed' only once the chain's time has passed it with the nonce still unused — before that, the
-- authorization may still be spent. Null for the rows claimed before this column (they are never concluded so).
ALTER TABLE x402_authorizations ADD COLUMN valid_before numeric(78, 0);
