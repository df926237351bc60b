-- A send refused before anything was signed (gas estimation reverted, the node did not answer, gas above the cap),
-- kept for the keys whose first outcome is their only one: a payout attempt and a netted batch (the Rail contract's
-- "asked again, it reports the first outcome"). Without it, a caller that was told "refused" moved on (a new attempt,
-- the batch's payouts back in the queue) while another process asking under the same key later sent it: paid twice.
-- A refusal and a send of one key are decided under the wallet's nonce row lock, so only one of them is ever written.
CREATE TABLE evm_send_refusals (
  attempt_id text PRIMARY KEY,
  chain_id integer NOT NULL,
  code text NOT NULL,
  revert text,
  message text NOT NULL,
  refused_at timestamptz NOT NULL DEFAULT now()
);
