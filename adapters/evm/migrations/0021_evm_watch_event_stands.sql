-- The check a deposit's credit makes in its own transaction (the gateway's record of the receipt, on this same database:
-- the gateway migrates the rail's tables into its own and gives the rail its Db), handed to it with the `received` event,
-- and with the `reinstated` one for a give-back's ledger statement and mark (deposit-source.ts, core/rail.ts `stands`): the event's row is still the generation the credit was made for and not
-- removed, or this raises and nothing of the credit is written. The row is locked FOR SHARE, which a reorg's removal
-- (watcher-poll.ts checkReorg, marking it removed) waits for: the removal then comes after the credit's commit and finds
-- it, or the credit after the removal and finds the row removed. Before, a credit that committed after the removal
-- found nothing to take back stood with nothing on chain unless its watcher lived to read the event again once its
-- call returned (heldAgainIfGone, 0019).
CREATE FUNCTION evm_watch_event_stands(chain integer, watched text, tx text, log integer, gen integer)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM evm_watch_events
  WHERE chain_id = chain AND contract = watched AND tx_hash = tx AND log_index = log AND generation = gen
    AND status <> 'removed'
  FOR SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'evm: the event credited is no longer on chain as read (removed by a reorg)' USING ERRCODE = 'SYE01';
  END IF;
  RETURN true;
END
$$;
