// One poll of a chain watcher: check the stored blocks for a reorg (and undo what it took away), read the
// next range of its source's logs into the database, hand stored events to the sink as seen, then as final once
// confirmed.
import type { Hex } from "viem";
import {
  EvmWatcherError,
  heldRetryMsDefault,
  type PollResult,
  reorgDepthBlocksDefault,
  sinkAttemptsMaxDefault,
  type WatcherState,
} from "./watcher-state.ts";
import {
  type EventRow,
  heldAgainIfGone,
  heldRemovals,
  holdLease,
  holdRemoval,
  loadEvents,
  move,
  nextBlock,
  rememberBlock,
  setNextBlock,
  wasFinal,
} from "./watcher-store.ts";

export async function poll(w: WatcherState): Promise<PollResult> {
  const { params, sink } = w;
  if (!(await holdLease(w))) {
    const next = await nextBlock(w);
    return { head: next - 1n, read: 0, seen: 0, finalized: 0, removed: 0, nextBlock: next, standby: true };
  }
  await releaseHeld(w);
  const latest = await w.publicClient.getBlock({ blockTag: "latest" });
  const head = latest.number;
  // The head's hash commits to every block below it: the same hash means the same chain, so a poll that left
  // nothing to do there has nothing to do now (and reads no database, which on PGlite shares this thread).
  if (w.settledAt !== null && w.settledAt.hash === latest.hash)
    return { ...w.settledAt.result, read: 0, seen: 0, finalized: 0, removed: 0 };
  w.settledAt = null;
  // The newest block whose events are final: at least `confirmations` blocks from its own up to the head.
  const finalBlockMax = head - w.confirmations + 1n;
  const removed = await checkReorg(w, head, finalBlockMax);
  const readCount = await read(w, head);
  const seen = await loadEvents(w, "e.status = 'seen' ORDER BY e.block_number, e.log_index LIMIT $3", [
    params.eventsPerPollMax,
  ]);
  for (const row of seen) await handled(w, row, "seen", () => sink.seen(w.source.toEvent(row)));
  // Final: at least `confirmations` blocks from its own up to the head, and every earlier event already seen — and
  // no removal of the same log held (checkReorg: its transaction and arguments, wherever it now sits): mined again
  // after a reorg took it away, it waits for that removal to be applied first (a deposit's credit reversed, then
  // given back; the splitter's mirror voided, then posted again), never counted twice.
  const final = await loadEvents(
    w,
    `e.status = 'pending' AND e.block_number <= $3
     AND NOT EXISTS (SELECT 1 FROM evm_watch_events o WHERE o.chain_id = e.chain_id AND o.contract = e.contract
                     AND o.status = 'seen')
     AND NOT EXISTS (SELECT 1 FROM evm_watch_removals_held h WHERE h.chain_id = e.chain_id
                     AND h.contract = e.contract AND h.tx_hash = e.tx_hash AND h.args = e.args)
     ORDER BY e.block_number, e.log_index LIMIT $4`,
    [finalBlockMax, params.eventsPerPollMax],
  );
  // Marked before the calls, so that a call that applies its effect and then fails (or a crash before the row moves)
  // leaves the event possibly final: a reorg that removes it then has its `final` undone (wasFinal). Before, only a
  // posted row counted, and a deposit credited while its row was still pending stayed credited after the reorg.
  if (final.length > 0)
    await w.db.query(
      `UPDATE evm_watch_events SET final_called = true
       WHERE chain_id = $1 AND contract = $2 AND status = 'pending' AND NOT final_called
         AND (tx_hash, log_index, generation) IN (SELECT * FROM unnest($3::text[], $4::int[], $5::int[]))`,
      [
        w.chainId,
        w.contract,
        final.map((row) => row.tx_hash),
        final.map((row) => row.log_index),
        final.map((row) => row.generation),
      ],
    );
  for (const row of final) await handled(w, row, "pending", () => sink.final(w.source.toEvent(row)));
  // Blocks read are kept until they are reorgDepthBlocks below the final ones, and one below those as the anchor: a
  // reorg deeper than the confirmations (final events credited) is found at the block where it forked, as long as it
  // is within them. Before, only the newest final block was kept: a reorg below it left its final events standing.
  const keptFrom = finalBlockMax - (params.reorgDepthBlocks ?? reorgDepthBlocksDefault);
  await w.db.query(
    `DELETE FROM evm_watch_blocks WHERE chain_id = $1 AND contract = $2 AND number < $3
       AND number < (SELECT max(number) FROM evm_watch_blocks WHERE chain_id = $1 AND contract = $2 AND number < $3)`,
    [w.chainId, w.contract, keptFrom],
  );
  const result: PollResult = {
    head,
    read: readCount,
    seen: seen.length,
    finalized: final.length,
    removed,
    nextBlock: await nextBlock(w),
    standby: false,
  };
  if (
    result.nextBlock > head &&
    removed === 0 &&
    seen.length < params.eventsPerPollMax &&
    final.length < params.eventsPerPollMax
  )
    w.settledAt = { hash: latest.hash, result };
  return result;
}

/**
 * Runs an event's sink call and moves the event on once it succeeded (seen → pending, pending → posted). A failure is
 * thrown (the poll fails, the next one tries again), until the event has failed sinkAttemptsMax times in a row: then it
 * is held (held_seen, held_pending), so that the events behind it go on — before, one event that could not be applied
 * held every later event of the contract, every tenant's deposits with them, for good. releaseHeld puts it back later.
 * (A reorg's removal is held before it is applied: checkReorg.) An event removed meanwhile by the watcher that took the
 * lease during the call has its removal held again, to be applied after the call (removedDuringCall).
 */
async function handled(
  w: WatcherState,
  row: EventRow,
  step: "seen" | "pending",
  call: () => Promise<void>,
): Promise<void> {
  const key = `${row.tx_hash}:${row.log_index}:${step}`;
  await stillHolding(w);
  try {
    await call();
  } catch (error) {
    // It may have written its effect before it failed (an answer lost).
    if (await removedDuringCall(w, row, step)) return;
    const failures = (w.failures.get(key) ?? 0) + 1;
    w.failures.set(key, failures);
    if (failures < (w.params.sinkAttemptsMax ?? sinkAttemptsMaxDefault)) throw error;
    await move(w, row, step, step === "seen" ? "held_seen" : "held_pending");
    w.logger.error(
      {
        error: error instanceof Error ? error.message : String(error),
        txHash: row.tx_hash,
        logIndex: row.log_index,
        event: row.event_name,
        failures,
      },
      "an event keeps failing; held so that the events behind it go on, and tried again later",
    );
    return;
  }
  w.failures.delete(key);
  if (!(await move(w, row, step, step === "seen" ? "pending" : "posted")))
    await removedDuringCall(w, row, step);
}

/**
 * After an event's sink call: whether the event was removed (or mined again as a later generation) while the call ran,
 * by the watcher that took the lease meanwhile; if so, its removal is held again (heldAgainIfGone), to be applied after
 * the call by the watcher holding the lease (releaseHeld). The lease alone did not keep them apart: a call made just
 * before it ran out (a deposit's credit waiting on a slow node or database) wrote its effect after the other watcher's
 * removal had found none to undo, and the deposit stayed credited with nothing on chain. A process that dies after the
 * call's effect and before this read leaves that gap open for an effect that does not check the event's row in its own
 * transaction (the splitter's mirror); a deposit's receipt, and a reversal given back, do (deposit-source.ts, migration
 * 0021): refused once the row is removed, and a removal marked after the check waits for their commit. A call so
 * refused is held again all the same: what it wrote before (a deposit's mark of the reversal it was to give back) is
 * undone by its removal applied after it.
 */
async function removedDuringCall(w: WatcherState, row: EventRow, step: "seen" | "pending"): Promise<boolean> {
  // A `final` call: its `final_called` was set before it (poll), after this row was read.
  if (!(await heldAgainIfGone(w, row, step === "pending" || wasFinal(row)))) return false;
  w.logger.warn(
    { txHash: row.tx_hash, logIndex: row.log_index, event: row.event_name, watcher: w.source.name },
    "an event was removed by another watcher while its sink call ran; its removal is held again, to follow the call",
  );
  return true;
}

/**
 * Before each sink call: the lease is still ours (renewed once past its half-life, as at the start of a poll), or the
 * poll stops here. A poll can outlast the lease (a slow node under a deposit's block read, a slow database), and another
 * watcher then takes it and follows the contract; before, this one went on applying events beside it, the two racing
 * on the same events and removals (a removal found to take nothing dropping its record while the other's `final`
 * credits it).
 */
async function stillHolding(w: WatcherState): Promise<void> {
  if (await holdLease(w)) return;
  throw new EvmWatcherError(
    `another watcher took the lease on ${w.source.name} during this poll; it stops here`,
  );
}

/**
 * Every heldRetryMs: puts held events back (held_seen → seen, held_pending → pending), each to be held again at its
 * next failure, and tries each held removal once more (its row gone once it succeeds; a failure is logged and it
 * stays); the head's settled shortcut is dropped so that the poll takes what they let through. A removal held again
 * (removedDuringCall) is applied at every poll in between: it follows a sink call that may have written its effect
 * after the removal was applied (a deposit's credit, the invoice paid and invoice.paid sent, with nothing on chain),
 * which stands until it is. Before, it waited for the next of these rounds, a minute by default.
 */
async function releaseHeld(w: WatcherState): Promise<void> {
  const now = Date.now();
  if (now - w.heldRetriedAtMs < (w.params.heldRetryMs ?? heldRetryMsDefault)) {
    const again = await heldRemovals(w, { heldAgainOnly: true });
    for (const row of again) await appliedRemoval(w, row, row.held_again);
    if (again.length > 0) w.settledAt = null;
    return;
  }
  w.heldRetriedAtMs = now;
  const released = await w.db.query<{ tx_hash: string; log_index: number; status: string }>(
    `UPDATE evm_watch_events SET status = CASE status WHEN 'held_seen' THEN 'seen' ELSE 'pending' END,
            updated_at = now()
     WHERE chain_id = $1 AND contract = $2 AND status IN ('held_seen', 'held_pending')
     RETURNING tx_hash, log_index, status`,
    [w.chainId, w.contract],
  );
  const attemptsMax = w.params.sinkAttemptsMax ?? sinkAttemptsMaxDefault;
  for (const row of released)
    w.failures.set(`${row.tx_hash}:${row.log_index}:${row.status}`, attemptsMax - 1);
  const removals = await heldRemovals(w);
  for (const row of removals) await appliedRemoval(w, row, row.held_again);
  if (released.length > 0 || removals.length > 0) w.settledAt = null;
}

/**
 * Applies a held removal through the sink and forgets it (its row in evm_watch_removals_held deleted) unless it was held
 * again since it was read (`heldAgain`: how often it had been then; heldAgainIfGone); a failure is logged and it stays
 * held.
 */
async function appliedRemoval(w: WatcherState, row: EventRow, heldAgain = 0): Promise<void> {
  await stillHolding(w);
  try {
    await w.sink.removed(w.source.toEvent(row), wasFinal(row));
  } catch (error) {
    w.logger.error(
      {
        error: error instanceof Error ? error.message : String(error),
        txHash: row.tx_hash,
        logIndex: row.log_index,
        event: row.event_name,
      },
      "a reorg's removal of an event failed; it stays held, and is tried again later",
    );
    return;
  }
  await w.db.query(
    `DELETE FROM evm_watch_removals_held
     WHERE chain_id = $1 AND contract = $2 AND tx_hash = $3 AND log_index = $4 AND generation = $5
       AND held_again = $6`,
    [w.chainId, w.contract, row.tx_hash, row.log_index, row.generation, heldAgain],
  );
}

/**
 * Returns how many events a reorg removed (0 when every block compared still matches the chain). The blocks not
 * final yet are compared, from the newest final one (the anchor) up; the lowest that no longer matches is where the
 * chain forked. When the anchor itself no longer matches (a reorg deeper than the confirmations), the older blocks
 * kept (reorgDepthBlocks) are compared from the newest down until one matches: a block whose hash matches commits to
 * every block below it.
 */
async function checkReorg(w: WatcherState, head: bigint, finalBlockMax: bigint): Promise<number> {
  const { params } = w;
  const blocks = await w.db.query<{ number: bigint; hash: Hex }>(
    "SELECT number, hash FROM evm_watch_blocks WHERE chain_id = $1 AND contract = $2 ORDER BY number",
    [w.chainId, w.contract],
  );
  let anchor = 0;
  while (anchor + 1 < blocks.length && blocks[anchor + 1]!.number < finalBlockMax) anchor += 1;
  let matching: bigint | null = null;
  let forked: bigint | null = null;
  for (const block of blocks.slice(anchor)) {
    // A block read before and above the head now: the node answering lags behind the one that answered then (an
    // endpoint behind a load balancer, a node catching up), or the chain went back to a shorter branch. Not known to
    // be gone until the chain is past it again: then its hash says. Before, it counted as forked, and a lag of
    // `confirmations` blocks reversed the deposits credited there (invoice.reversed), given back on the next poll.
    if (block.number > head) {
      w.logger.warn(
        { head: head.toString(), block: block.number.toString(), watcher: w.source.name },
        "the node's head is below a block already read (a lagging node); nothing is undone until it is past it",
      );
      break;
    }
    const current = await w.publicClient.getBlock({ blockNumber: block.number });
    if (current.hash !== block.hash) {
      forked = block.number;
      break;
    }
    matching = block.number;
  }
  if (forked === null) return 0;
  // Deeper than the anchor: down through the older blocks kept, to the newest that still matches.
  for (let i = anchor - 1; matching === null && i >= 0; i--) {
    const block = blocks[i]!;
    const current = await w.publicClient.getBlock({ blockNumber: block.number });
    if (current.hash === block.hash) matching = block.number;
    else forked = block.number;
  }
  if (matching === null)
    w.logger.error(
      { forked: forked.toString(), watcher: w.source.name },
      "a reorg deeper than every block the watcher kept: events below the oldest of them may stand though gone",
    );
  // The fork lies above the highest block that still matches; without one, within the finality window.
  const floor = forked - w.confirmations;
  let rescanFrom = matching !== null ? matching + 1n : params.startBlock;
  if (matching === null && floor > params.startBlock) rescanFrom = floor; // bigints: Math.max takes numbers only
  const gone = await loadEvents(
    w,
    "e.block_number >= $3 AND e.status <> 'removed' ORDER BY e.block_number DESC, e.log_index DESC",
    [forked],
  );
  // Every removal is held first (evm_watch_removals_held), in the transaction that marks the events removed and moves
  // the cursor back; then each is applied through the sink, and forgotten once it is (appliedRemoval). One that fails
  // stays held, and releaseHeld tries it again every heldRetryMs. Before, the sink was called first and a failure
  // failed the poll — every poll, if it kept failing, and no deposit of any tenant was credited after the reorg — while
  // the removals before it had been applied with their rows still posted: a chain that flipped back meanwhile left
  // those deposits reversed with their logs on chain. Now a removal is on record before it is applied, and the same
  // log mined again waits for it (the final step above).
  await w.db.transaction(async (tx) => {
    for (const row of gone) {
      await tx.query(
        `UPDATE evm_watch_events SET status = 'removed', updated_at = now()
         WHERE chain_id = $1 AND contract = $2 AND tx_hash = $3 AND log_index = $4`,
        [w.chainId, w.contract, row.tx_hash, row.log_index],
      );
      await holdRemoval(w, tx, row);
    }
    await tx.query("DELETE FROM evm_watch_blocks WHERE chain_id = $1 AND contract = $2 AND number >= $3", [
      w.chainId,
      w.contract,
      rescanFrom,
    ]);
    await setNextBlock(w, tx, rescanFrom);
  });
  // Each as it was before it was marked removed above: its status says whether it was posted.
  for (const row of gone) await appliedRemoval(w, row);
  return gone.length;
}

/** Reads the next range of logs (up to the head) and stores its events, blocks and the advanced cursor at once. */
async function read(w: WatcherState, head: bigint): Promise<number> {
  const { params } = w;
  const from = await nextBlock(w);
  if (from > head) return 0;
  const to = from + params.blockRangeMax - 1n < head ? from + params.blockRangeMax - 1n : head;
  // Block `to` before and after the range's logs: another hash after means the chain reorganised while they were
  // read, and the logs may be of the branch it left (a log there stored, a log of the new branch missed for good: the
  // cursor moves past `to`, remembered by its new hash, and checkReorg compares only remembered blocks).
  const first = await w.publicClient.getBlock({ blockNumber: to });
  const batch = await w.source.read(from, to);
  const last = await w.publicClient.getBlock({ blockNumber: to });
  // So too a log of block `to` of another hash, or logs of one height from two branches: the range is read again next
  // poll.
  const hashes = new Map<bigint, string>([[to, last.hash]]);
  const reorganised =
    first.hash !== last.hash ||
    batch.logs.some((log) => {
      const seen = hashes.get(log.blockNumber);
      hashes.set(log.blockNumber, log.blockHash);
      return seen !== undefined && seen !== log.blockHash;
    });
  if (reorganised) {
    w.logger.warn(
      { from: from.toString(), to: to.toString() },
      "the chain reorganised while a range was read; it is read again",
    );
    return 0;
  }
  await w.db.transaction(async (tx) => {
    await batch.store?.(tx);
    for (const log of batch.logs) {
      await tx.query(
        `INSERT INTO evm_watch_events
           (chain_id, contract, tx_hash, log_index, block_number, block_hash, event_name, args, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'seen')
         ON CONFLICT (chain_id, contract, tx_hash, log_index) DO UPDATE
           SET status = 'seen', generation = evm_watch_events.generation + 1, final_called = false,
               block_number = EXCLUDED.block_number, block_hash = EXCLUDED.block_hash,
               event_name = EXCLUDED.event_name, args = EXCLUDED.args, updated_at = now()
           WHERE evm_watch_events.status = 'removed'`,
        [
          w.chainId,
          w.contract,
          log.transactionHash,
          log.logIndex,
          log.blockNumber,
          log.blockHash,
          log.eventName,
          JSON.stringify(log.args, (_key, value) => (typeof value === "bigint" ? value.toString() : value)),
        ],
      );
      await rememberBlock(w, tx, log.blockNumber, log.blockHash);
    }
    await rememberBlock(w, tx, to, last.hash);
    await setNextBlock(w, tx, to + 1n);
  });
  return batch.logs.length;
}
