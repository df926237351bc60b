-- The send-gas pass marked a mined payout's or netting batch's gas as its owner's on trust once mined (booked_by
-- 'payment', 'netting'): a payment whose attempt ended failed after its transaction was mined, a payout the gateway
-- held no payment of, a batch that ended without booking it, never booked it, and neither did anyone else. The pass now
-- asks the ledger (send-gas.ts, the gateway's settlement/evm-send-gas.ts); the sends it closed so are opened again and
-- claimed by the pass ('send_gas', its claim before it asks its booker: a claim by another would be taken as done), so
-- that its next turn asks: the owner's booking found, marked the owner's again, nothing booked; none and the owner
-- ended, booked once; the owner still open, it waits. Only the kinds whose owner the old pass trusted: a payout (its
-- key an attempt's or a refund's id, no colon) and a netting batch (`settle:`). Tried as of now: behind the sends no
-- pass has tried yet.
WITH reopened AS (
  UPDATE evm_send_gas g SET booked_by = 'send_gas'
    FROM evm_sends s
   WHERE s.attempt_id = g.attempt_id AND s.gas_done
     AND ((g.booked_by = 'payment' AND position(':' IN g.attempt_id) = 0)
       OR (g.booked_by = 'netting' AND g.attempt_id LIKE 'settle:%'))
  RETURNING g.attempt_id
)
UPDATE evm_sends s SET gas_done = false, gas_tried_at = now()
  FROM reopened
 WHERE s.attempt_id = reopened.attempt_id;
