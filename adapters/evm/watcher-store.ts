// A chain watcher's bookkeeping in SQL: its lease, its cursor, the hashes of the blocks it has not yet seen
// final, the split registry (the splitter's), and the events it stored with their status (seen → pending →
// posted, or removed). Every row is keyed by (chain, contract): the splitter, or the token for deposits.
import type { Address, Hex } from "viem";
import type { Sql } from "../../core/index.ts";
import type { WatcherState } from "./watcher-state.ts";

export type EventRow = {
  tx_hash: Hex;
  log_index: number;
  block_number: bigint;
  block_hash: Hex;
  event_name: string;
  args: Record<string, unknown>;
  status: "seen" | "pending" | "posted" | "removed" | "held_seen" | "held_pending";
  generation: number;
  /** The sink's `final` may have been called for it (set before the calls: 0016). */
  final_called: boolean;
  recipients: Address[] | null;
  basis_points: number[] | null;
};

export type CreatedSplit = { splitId: Hex; recipients: readonly Address[]; basisPoints: readonly number[] };

/** Takes or renews the lease; false while another watcher holds an unexpired one. */
export async function holdLease(w: WatcherState): Promise<boolean> {
  if (Date.now() < w.leaseRenewAtMs) return true;
  const rows = await w.db.query(
    `INSERT INTO evm_watch_leases (chain_id, contract, holder, expires_at)
     VALUES ($1, $2, $3, now() + make_interval(secs => $4::double precision / 1000))
     ON CONFLICT (chain_id, contract) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
       WHERE evm_watch_leases.holder = EXCLUDED.holder OR evm_watch_leases.expires_at < now()
     RETURNING holder`,
    [w.chainId, w.contract, w.holder, w.params.leaseMs],
  );
  if (rows.length === 0) {
    w.leaseRenewAtMs = 0;
    w.settledAt = null; // the holder moves on meanwhile: start from the database when the lease is ours
    return false;
  }
  w.leaseRenewAtMs = Date.now() + w.params.leaseMs / 2;
  return true;
}

/** Gives the lease up, so that another process's watcher may take over at once. */
export async function releaseLease(w: WatcherState): Promise<void> {
  w.leaseRenewAtMs = 0;
  await w.db.query("DELETE FROM evm_watch_leases WHERE chain_id = $1 AND contract = $2 AND holder = $3", [
    w.chainId,
    w.contract,
    w.holder,
  ]);
}

export async function nextBlock(w: WatcherState, sql: Sql = w.db): Promise<bigint> {
  const [row] = await sql.query<{ next_block: bigint }>(
    "SELECT next_block FROM evm_watch_cursors WHERE chain_id = $1 AND contract = $2",
    [w.chainId, w.contract],
  );
  return row?.next_block ?? w.params.startBlock;
}

/**
 * Stores the start block as the cursor if the watcher has none yet, and answers the cursor kept. A start block read
 * from the head (the deposit watcher's) is then the first start's, not each start's: until the first poll stored a
 * cursor, a restart read a later head and skipped the blocks in between, with deposits to invoices made meanwhile.
 */
export async function keepStartBlock(w: WatcherState): Promise<bigint> {
  await w.db.query(
    `INSERT INTO evm_watch_cursors (chain_id, contract, next_block) VALUES ($1, $2, $3)
     ON CONFLICT (chain_id, contract) DO NOTHING`,
    [w.chainId, w.contract, w.params.startBlock],
  );
  return nextBlock(w);
}

export async function setNextBlock(w: WatcherState, sql: Sql, next: bigint): Promise<void> {
  await sql.query(
    `INSERT INTO evm_watch_cursors (chain_id, contract, next_block) VALUES ($1, $2, $3)
     ON CONFLICT (chain_id, contract) DO UPDATE SET next_block = EXCLUDED.next_block, updated_at = now()`,
    [w.chainId, w.contract, next],
  );
}

export async function rememberSplit(
  w: Pick<WatcherState, "chainId" | "contract">,
  tx: Sql,
  split: CreatedSplit,
): Promise<void> {
  await tx.query(
    `INSERT INTO evm_splits (chain_id, contract, split_id, recipients, basis_points)
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
    [
      w.chainId,
      w.contract,
      split.splitId.toLowerCase(),
      JSON.stringify(split.recipients),
      JSON.stringify(split.basisPoints),
    ],
  );
}

export async function rememberBlock(w: WatcherState, tx: Sql, number: bigint, hash: Hex): Promise<void> {
  await tx.query(
    `INSERT INTO evm_watch_blocks (chain_id, contract, number, hash) VALUES ($1, $2, $3, $4)
     ON CONFLICT (chain_id, contract, number) DO UPDATE SET hash = EXCLUDED.hash`,
    [w.chainId, w.contract, number, hash],
  );
}

/** The stored events matching `where` ($3… are `extra`), each with its split's definition when known. */
export async function loadEvents(
  w: WatcherState,
  where: string,
  extra: readonly unknown[],
): Promise<EventRow[]> {
  return w.db.query<EventRow>(
    `SELECT e.tx_hash, e.log_index, e.block_number, e.block_hash, e.event_name, e.args, e.status, e.generation,
            e.final_called, s.recipients, s.basis_points
     FROM evm_watch_events e
     LEFT JOIN evm_splits s
       ON s.chain_id = e.chain_id AND s.contract = e.contract AND s.split_id = lower(e.args->>'splitId')
     WHERE e.chain_id = $1 AND e.contract = $2 AND ${where}`,
    [w.chainId, w.contract, ...extra],
  );
}

/**
 * Keeps the removal of `row` (a reorg took it away) until the sink has applied it (watcher-poll.ts checkReorg, then
 * releaseHeld while it fails), as the row was before its removal: its block, its generation, and whether it may have
 * been final (posted, or its `final` called: wasFinal).
 */
export async function holdRemoval(w: WatcherState, tx: Sql, row: EventRow): Promise<void> {
  await tx.query(
    `INSERT INTO evm_watch_removals_held
       (chain_id, contract, tx_hash, log_index, generation, block_number, block_hash, event_name, args, was_final)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING`,
    heldRowParams(w, row, wasFinal(row)),
  );
}

/**
 * Whether the sink's `final` may have taken effect for the event: it is posted, or the call was made (it may have
 * applied its effect and then failed, or the process died before the row moved). A sink handed a removal with this
 * true checks what its `final` wrote before undoing it.
 */
export const wasFinal = (row: EventRow): boolean => row.status === "posted" || row.final_called;

/**
 * Holds the removal of `row` again, once the sink call made for it has returned, if its event no longer stands as it
 * was read (marked removed, or mined again as a later generation: watcher-poll.ts removedDuringCall); true when it did.
 * Applied again later (releaseHeld), it undoes what the call wrote, or finds nothing again. `wasFinal`: the call may
 * have been the event's `final`. Read in this one statement, after the call's effect was written: a removal it does
 * not see was marked after that, and is applied after its mark, so it finds the effect. Held again over one not yet
 * forgotten, it counts one more (held_again, 0019), so that the watcher applying it does not forget it after all.
 */
export async function heldAgainIfGone(w: WatcherState, row: EventRow, wasFinal: boolean): Promise<boolean> {
  const rows = await w.db.query(
    `INSERT INTO evm_watch_removals_held
       (chain_id, contract, tx_hash, log_index, generation, block_number, block_hash, event_name, args, was_final,
        held_again)
     SELECT $1::integer, $2::text, $3::text, $4::integer, $5::integer, $6::bigint, $7::text, $8::text, $9::jsonb,
            $10::boolean, 1
     WHERE NOT EXISTS (SELECT 1 FROM evm_watch_events
                       WHERE chain_id = $1 AND contract = $2 AND tx_hash = $3 AND log_index = $4 AND generation = $5
                         AND status <> 'removed')
     ON CONFLICT (chain_id, contract, tx_hash, log_index, generation) DO UPDATE
       SET held_again = evm_watch_removals_held.held_again + 1,
           was_final = evm_watch_removals_held.was_final OR EXCLUDED.was_final
     RETURNING 1`,
    heldRowParams(w, row, wasFinal),
  );
  return rows.length > 0;
}

/** The parameters $1..$10 of a held removal's row, in the order both statements above name its columns. */
function heldRowParams(w: WatcherState, row: EventRow, wasFinal: boolean): unknown[] {
  return [
    w.chainId,
    w.contract,
    row.tx_hash,
    row.log_index,
    row.generation,
    row.block_number,
    row.block_hash,
    row.event_name,
    JSON.stringify(row.args),
    wasFinal,
  ];
}

/** A removal held, with how often it was held again (heldAgainIfGone) when it was read. */
export type HeldRemoval = EventRow & { held_again: number };

/**
 * The removals held (holdRemoval), latest first as checkReorg undoes them, each with its split's definition, as rows
 * whose wasFinal is what it was when held; `heldAgainOnly`: only those held again (heldAgainIfGone), which the poll
 * applies without waiting for heldRetryMs (watcher-poll.ts releaseHeld). The contract's rows are found by the table's
 * key (chain, contract first), and there are only as many as removals not applied yet: no index of held_again.
 */
export async function heldRemovals(
  w: WatcherState,
  options: { heldAgainOnly?: boolean } = {},
): Promise<HeldRemoval[]> {
  return w.db.query<HeldRemoval>(
    `SELECT h.tx_hash, h.log_index, h.block_number, h.block_hash, h.event_name, h.args, 'removed' AS status,
            h.generation, h.was_final AS final_called, h.held_again, s.recipients, s.basis_points
     FROM evm_watch_removals_held h
     LEFT JOIN evm_splits s
       ON s.chain_id = h.chain_id AND s.contract = h.contract AND s.split_id = lower(h.args->>'splitId')
     WHERE h.chain_id = $1 AND h.contract = $2 AND (NOT $3::boolean OR h.held_again > 0)
     ORDER BY h.block_number DESC, h.log_index DESC`,
    [w.chainId, w.contract, options.heldAgainOnly === true],
  );
}

/**
 * Moves the event of `row` from `from` to `to`, if it is still that generation in `from`; true when it moved. Before,
 * the generation was not asked: an event removed and mined again meanwhile (by another watcher) was moved on for the
 * call made for the generation before.
 */
export async function move(
  w: WatcherState,
  row: EventRow,
  from: EventRow["status"],
  to: EventRow["status"],
): Promise<boolean> {
  const rows = await w.db.query(
    `UPDATE evm_watch_events SET status = $6, updated_at = now()
     WHERE chain_id = $1 AND contract = $2 AND tx_hash = $3 AND log_index = $4 AND status = $5 AND generation = $7
     RETURNING 1`,
    [w.chainId, w.contract, row.tx_hash, row.log_index, from, to, row.generation],
  );
  return rows.length > 0;
}
