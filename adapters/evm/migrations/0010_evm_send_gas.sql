-- The sends whose gas the rail's send-gas pass (send-gas.ts) is done with: mined (the transaction named is the one
-- of the send that was: its first, or a fee bump), with the confirmations, and its gas either booked by the pass or
-- left to the caller that books it (a payment's native fee, netting's batch, a sweep, an x402 settlement).
-- `booked_by` says which. A send without a row here is still followed: not mined yet, or mined since the last pass.
CREATE TABLE evm_send_gas (
  attempt_id text PRIMARY KEY REFERENCES evm_sends (attempt_id),
  chain_id integer NOT NULL,
  tx_hash text NOT NULL,
  reverted boolean NOT NULL,
  gas_wei numeric(78, 0) NOT NULL,
  booked_by text NOT NULL,
  done_at timestamptz NOT NULL DEFAULT now()
);
