-- What a payer's x402 payments hold of its balance, kept in the database so that every gateway process weighs the
-- same holds (gateway/x402/claims-batch.ts). Before, each process kept its own: a payer holding one price could send
-- one authorization to each of two processes, both served, one refused at settlement, a resource given for nothing.
--
-- A payment holds its amount while its authorization may still be spent and the payer's balance may not show it:
-- - pending: claimed or submitted, not lapsed. x402_payer_holds.held is the sum of these per payer, kept by the
--   triggers below on every change of a row (claim, give-back, outcome, lapse), whoever writes it. Its
--   row is also the payer's lock: a claim locks it before weighing, so two processes weigh one payer in turn.
-- - spent at or after the block a balance was read at: spent_block is the block by which the authorization's value
--   had left the payer's balance (its transaction's block, or for a nonce someone else used, the latest block when
--   that was seen: never earlier than the spend). A balance read at an earlier block does not show it.
-- A pending row lapses (hold_lapsed) once its validBefore has passed by a margin, when a claim of its payer needs the
-- room: by then the chain can no longer spend it, and a balance read since shows it if it was spent.
-- Every process on the database must run this version: an older one claims without locking the payer first, and
-- weighs against its own holds only.
ALTER TABLE x402_authorizations ADD COLUMN spent_block bigint;
ALTER TABLE x402_authorizations ADD COLUMN hold_lapsed boolean NOT NULL DEFAULT false;
-- Rows claimed before validBefore was kept (0027) cannot lapse by it: they hold nothing.
UPDATE x402_authorizations SET hold_lapsed = true WHERE valid_before IS NULL;

CREATE TABLE x402_payer_holds (
  chain_id bigint NOT NULL,
  token text NOT NULL,
  payer text NOT NULL,
  held numeric(78, 0) NOT NULL DEFAULT 0,
  PRIMARY KEY (chain_id, token, payer)
);

INSERT INTO x402_payer_holds (chain_id, token, payer, held)
SELECT chain_id, token, payer, sum(amount) FROM x402_authorizations
WHERE status IN ('claimed', 'submitted') AND NOT hold_lapsed
GROUP BY chain_id, token, payer;

-- Claims add to their payers' holds once per statement (a batch of claims is one INSERT: one update per payer, in
-- key order like the claims' own locks); an outcome, a give-back or a lapse changes one row at a time.
CREATE FUNCTION x402_payer_holds_claimed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO x402_payer_holds AS h (chain_id, token, payer, held)
  SELECT chain_id, token, payer, sum(amount) FROM claimed
  WHERE status IN ('claimed', 'submitted') AND NOT hold_lapsed
  GROUP BY chain_id, token, payer
  ORDER BY chain_id, token, payer
  ON CONFLICT (chain_id, token, payer) DO UPDATE SET held = h.held + excluded.held;
  RETURN NULL;
END
$$;

CREATE TRIGGER x402_payer_holds_claimed AFTER INSERT ON x402_authorizations
  REFERENCING NEW TABLE AS claimed FOR EACH STATEMENT EXECUTE FUNCTION x402_payer_holds_claimed();

CREATE FUNCTION x402_payer_holds_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.status IN ('claimed', 'submitted') AND NOT OLD.hold_lapsed THEN
    UPDATE x402_payer_holds SET held = held - OLD.amount
    WHERE chain_id = OLD.chain_id AND token = OLD.token AND payer = OLD.payer;
  END IF;
  IF TG_OP = 'UPDATE' AND NEW.status IN ('claimed', 'submitted') AND NOT NEW.hold_lapsed THEN
    INSERT INTO x402_payer_holds AS h (chain_id, token, payer, held)
    VALUES (NEW.chain_id, NEW.token, NEW.payer, NEW.amount)
    ON CONFLICT (chain_id, token, payer) DO UPDATE SET held = h.held + excluded.held;
  END IF;
  RETURN NULL;
END
$$;

-- Only the changes that move a row into or out of the holds call the function (most updates do not: a submission,
-- a moved transaction, the reconciler's touch).
CREATE TRIGGER x402_payer_holds_follow_update AFTER UPDATE ON x402_authorizations
  FOR EACH ROW
  WHEN (OLD.amount IS DISTINCT FROM NEW.amount
    OR (OLD.chain_id, OLD.token, OLD.payer) IS DISTINCT FROM (NEW.chain_id, NEW.token, NEW.payer)
    OR (OLD.status IN ('claimed', 'submitted') AND NOT OLD.hold_lapsed)
      IS DISTINCT FROM (NEW.status IN ('claimed', 'submitted') AND NOT NEW.hold_lapsed))
  EXECUTE FUNCTION x402_payer_holds_follow();

CREATE TRIGGER x402_payer_holds_follow_delete AFTER DELETE ON x402_authorizations
  FOR EACH ROW WHEN (OLD.status IN ('claimed', 'submitted') AND NOT OLD.hold_lapsed)
  EXECUTE FUNCTION x402_payer_holds_follow();

-- A payer's pending rows by validBefore (to lapse them) and its spent rows by block (to weigh a balance's reading).
CREATE INDEX x402_authorizations_pending ON x402_authorizations (chain_id, token, payer, valid_before)
  WHERE status IN ('claimed', 'submitted') AND NOT hold_lapsed;
CREATE INDEX x402_authorizations_spent ON x402_authorizations (chain_id, token, payer, spent_block)
  WHERE spent_block IS NOT NULL;

-- The paywall's batch of claims (gateway/x402/claims-batch.ts), one statement: each authorization not taken before
-- is claimed when its payer's balance covers it, less what the payer's pending payments hold (the batch's own claimed
-- so far included) and what the payer spent at or after the block the balance was read at (a null balance is not
-- weighed: claimed, and held all the same). In the batch's order; a key asked twice is claimed by its first ask.
-- 1. The payers' rows are locked in key order (made when missing): every writer of a claim locks its payer first, and
--    the triggers lock it for every change of its rows, so nothing a payer's payments hold changes until the commit.
-- 2. Each later statement of a VOLATILE function reads what was committed before it began (READ COMMITTED): what the
--    lock waited for is seen.
-- 3. A payer short of room has its pending payments lapsed (hold_lapsed) once their validBefore is lapse_after past
--    now_s, skipping rows another writer has locked, and is weighed again.
-- Returns one row per ask, in order: 'claimed', 'taken', or 'short' with the balance and what was held against it.
CREATE FUNCTION x402_claim_weighed(
  chain_ids bigint[], tokens text[], payers text[], nonces text[], tenant_ids text[], account_ids text[],
  amounts numeric[], valid_befores numeric[], balances numeric[], at_blocks bigint[],
  lapse_after numeric, now_s numeric
) RETURNS TABLE (answer text, short_balance numeric, short_held numeric) LANGUAGE plpgsql AS $$
DECLARE
  n int := coalesce(array_length(nonces, 1), 0);
  -- The batch's payers, one slot each: key, chain, token, address, what it holds, the earliest block weighed against.
  payer_keys text[] := '{}';
  payer_chains bigint[] := '{}';
  payer_tokens text[] := '{}';
  payer_addresses text[] := '{}';
  payer_helds numeric[] := '{}';
  payer_from_blocks bigint[] := '{}';
  slots int[] := array_fill(0, ARRAY[n]);
  taken_before boolean[] := array_fill(false, ARRAY[n]);
  spent_slots int[] := '{}';
  spent_blocks bigint[] := '{}';
  spent_amounts numeric[] := '{}';
  kinds text[];
  helds_out numeric[];
  helds numeric[];
  claimed_keys text[];
  inserted text[];
  row record;
  any_lapsed boolean;
  payer_key text;
  slot int;
  against numeric;
BEGIN
  -- Every lookup below is by a whole key or a key's prefix with scalar values: an index's, whatever the planner knows
  -- of the table (PGlite keeps no statistics unless asked).
  FOR i IN 1..n LOOP
    payer_key := chain_ids[i] || '|' || tokens[i] || '|' || payers[i];
    slot := array_position(payer_keys, payer_key);
    IF slot IS NULL THEN
      payer_keys := payer_keys || payer_key;
      payer_chains := payer_chains || chain_ids[i];
      payer_tokens := payer_tokens || tokens[i];
      payer_addresses := payer_addresses || payers[i];
      payer_from_blocks := payer_from_blocks || NULL::bigint;
      slot := array_length(payer_keys, 1);
    END IF;
    slots[i] := slot;
    IF balances[i] IS NOT NULL AND (payer_from_blocks[slot] IS NULL OR at_blocks[i] < payer_from_blocks[slot]) THEN
      payer_from_blocks[slot] := at_blocks[i];
    END IF;
  END LOOP;

  -- 1. The payers' rows locked, in key order, each read as it is once locked.
  FOR row IN
    INSERT INTO x402_payer_holds AS h (chain_id, token, payer)
    SELECT c, t, p FROM unnest(payer_chains, payer_tokens, payer_addresses) AS r (c, t, p) ORDER BY 1, 2, 3
    ON CONFLICT (chain_id, token, payer) DO UPDATE SET held = h.held
    RETURNING h.chain_id || '|' || h.token || '|' || h.payer AS locked_key, h.held AS locked_held
  LOOP
    payer_helds[array_position(payer_keys, row.locked_key)] := row.locked_held;
  END LOOP;

  -- 2. Read after the locks: the keys taken before, and what each payer spent at or after its earliest block.
  FOR i IN 1..n LOOP
    taken_before[i] := EXISTS (
      SELECT 1 FROM x402_authorizations a
      WHERE a.chain_id = chain_ids[i] AND a.token = tokens[i] AND a.payer = payers[i] AND a.nonce = nonces[i]);
  END LOOP;
  FOR s IN 1..coalesce(array_length(payer_keys, 1), 0) LOOP
    CONTINUE WHEN payer_from_blocks[s] IS NULL;
    FOR row IN
      SELECT a.spent_block, a.amount FROM x402_authorizations a
      WHERE a.chain_id = payer_chains[s] AND a.token = payer_tokens[s] AND a.payer = payer_addresses[s]
        AND a.spent_block >= payer_from_blocks[s]
    LOOP
      spent_slots := spent_slots || s;
      spent_blocks := spent_blocks || row.spent_block;
      spent_amounts := spent_amounts || row.amount;
    END LOOP;
  END LOOP;

  -- 3. Weighed in the batch's order; again after lapsing the pending payments of payers found short, if any lapsed.
  LOOP
    kinds := array_fill(NULL::text, ARRAY[n]);
    helds_out := array_fill(NULL::numeric, ARRAY[n]);
    helds := payer_helds;
    claimed_keys := '{}';
    FOR i IN 1..n LOOP
      payer_key := payer_keys[slots[i]] || '|' || nonces[i];
      IF taken_before[i] OR payer_key = ANY (claimed_keys) THEN
        kinds[i] := 'taken';
        CONTINUE;
      END IF;
      slot := slots[i];
      IF balances[i] IS NOT NULL THEN
        against := helds[slot];
        FOR j IN 1..coalesce(array_length(spent_slots, 1), 0) LOOP
          IF spent_slots[j] = slot AND spent_blocks[j] >= at_blocks[i] THEN
            against := against + spent_amounts[j];
          END IF;
        END LOOP;
        IF balances[i] - against < amounts[i] THEN
          kinds[i] := 'short';
          helds_out[i] := against;
          CONTINUE;
        END IF;
      END IF;
      helds[slot] := helds[slot] + amounts[i];
      claimed_keys := claimed_keys || payer_key;
      kinds[i] := 'claimed';
    END LOOP;
    EXIT WHEN NOT ('short' = ANY (kinds));
    any_lapsed := false;
    FOR s IN 1..coalesce(array_length(payer_keys, 1), 0) LOOP
      CONTINUE WHEN NOT EXISTS (SELECT 1 FROM unnest(slots, kinds) AS r (sl, k) WHERE sl = s AND k = 'short');
      FOR row IN
        UPDATE x402_authorizations a SET hold_lapsed = true
        WHERE (a.chain_id, a.token, a.payer, a.nonce) IN (
          SELECT l.chain_id, l.token, l.payer, l.nonce FROM x402_authorizations l
          WHERE l.chain_id = payer_chains[s] AND l.token = payer_tokens[s] AND l.payer = payer_addresses[s]
            AND l.status IN ('claimed', 'submitted') AND NOT l.hold_lapsed AND l.valid_before <= now_s - lapse_after
          FOR UPDATE SKIP LOCKED)
        RETURNING a.amount AS lapsed_amount
      LOOP
        payer_helds[s] := payer_helds[s] - row.lapsed_amount;
        any_lapsed := true;
      END LOOP;
    END LOOP;
    EXIT WHEN NOT any_lapsed;
  END LOOP;

  -- 4. The claims weighed in, in key order (the triggers add them to their payers' holds).
  WITH claimed AS (
    INSERT INTO x402_authorizations (chain_id, token, payer, nonce, tenant_id, account_id, amount, valid_before)
    SELECT c, t, p, k, tn, ac, v, vb
    FROM unnest(chain_ids, tokens, payers, nonces, tenant_ids, account_ids, amounts, valid_befores, kinds)
      AS r (c, t, p, k, tn, ac, v, vb, ask_kind)
    WHERE r.ask_kind = 'claimed'
    ORDER BY c, t, p, k
    ON CONFLICT (chain_id, token, payer, nonce) DO NOTHING
    RETURNING chain_id || '|' || token || '|' || payer || '|' || nonce AS claimed_key
  )
  SELECT coalesce(array_agg(claimed.claimed_key), '{}') INTO inserted FROM claimed;

  -- A key inserted meanwhile by a writer that does not lock its payer first (none does) is taken all the same.
  RETURN QUERY
  SELECT CASE
           WHEN kinds[i] = 'claimed' AND NOT (payer_keys[slots[i]] || '|' || nonces[i]) = ANY (inserted) THEN 'taken'
           ELSE kinds[i]
         END,
         CASE WHEN kinds[i] = 'short' THEN balances[i] END,
         helds_out[i]
  FROM generate_series(1, n) AS i
  ORDER BY i;
END
$$;
