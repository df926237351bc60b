-- What a payer's x402 payments hold of its balance, kept in the database so that every gateway process weighs the
-- same holds (gateway/x402/claims-batch.ts). Before, each process kept its own: a payer holding one price could send
-- one authorization to each of two processes, both served, one refused at settlement, a resource given for nothing.
--
-- A payment holds its amount while its authorization may still be spent and the payer's balance may not show it:
-- - pending: claimed or submitted, not lapsed. x402_payer_holds.held is the sum of these per payer, kept by the
--   trigger below on every change of a row (claim, give-back, submission, outcome, lapse), whoever writes it. Its
--   row is also the payer's lock: a claim locks it before weighing, so two processes weigh one payer in turn.
-- - spent at or after the block a balance was read at: spent_block is the block by which the authorization's value
--   had left the payer's balance (its transaction's block, or for a nonce someone else used, the latest block when
--   that was seen: never earlier than the spend). A balance read at an earlier block does not show it.
-- A pending row lapses (hold_lapsed) once its validBefore has passed by a margin, when a claim of its payer needs the
-- room: by then the chain can no longer spend it, and a balance read since shows it if it was spent.
ALTER TABLE x402_authorizations ADD COLUMN spent_block bigint;
ALTER TABLE x402_authorizations ADD COLUMN hold_lapsed boolean NOT NULL DEFAULT false;
-- Rows claimed before validBefore was kept (0027) cannot lapse by it: they hold nothing.
UPDATE x402_authorizations SET hold_lapsed = true WHERE valid_before IS NULL;

CREATE TABLE x402_payer_holds (
  chain_id bigint NOT NULL,
  token text NOT NULL,
  payer text NOT NULL,
  held numeric(78, 0) NOT NULL DEFAULT 0 CHECK (held >= 0),
  PRIMARY KEY (chain_id, token, payer)
);

INSERT INTO x402_payer_holds (chain_id, token, payer, held)
SELECT chain_id, token, payer, sum(amount) FROM x402_authorizations
WHERE status IN ('claimed', 'submitted') AND NOT hold_lapsed
GROUP BY chain_id, token, payer;

CREATE FUNCTION x402_payer_holds_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND OLD.amount = NEW.amount
     AND (OLD.status IN ('claimed', 'submitted') AND NOT OLD.hold_lapsed)
       = (NEW.status IN ('claimed', 'submitted') AND NOT NEW.hold_lapsed) THEN
    RETURN NULL;
  END IF;
  IF TG_OP <> 'INSERT' AND OLD.status IN ('claimed', 'submitted') AND NOT OLD.hold_lapsed THEN
    UPDATE x402_payer_holds SET held = held - OLD.amount
    WHERE chain_id = OLD.chain_id AND token = OLD.token AND payer = OLD.payer;
  END IF;
  IF TG_OP <> 'DELETE' AND NEW.status IN ('claimed', 'submitted') AND NOT NEW.hold_lapsed THEN
    INSERT INTO x402_payer_holds AS h (chain_id, token, payer, held)
    VALUES (NEW.chain_id, NEW.token, NEW.payer, NEW.amount)
    ON CONFLICT (chain_id, token, payer) DO UPDATE SET held = h.held + excluded.held;
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER x402_payer_holds_follow AFTER INSERT OR UPDATE OR DELETE ON x402_authorizations
  FOR EACH ROW EXECUTE FUNCTION x402_payer_holds_follow();

-- A payer's pending rows by validBefore (to lapse them) and its spent rows by block (to weigh a balance's reading).
CREATE INDEX x402_authorizations_pending ON x402_authorizations (chain_id, token, payer, valid_before)
  WHERE status IN ('claimed', 'submitted') AND NOT hold_lapsed;
CREATE INDEX x402_authorizations_spent ON x402_authorizations (chain_id, token, payer, spent_block)
  WHERE spent_block IS NOT NULL;
