// The RevenueSplitter watcher: follows the contract's events (SplitCreated, Paid, Distributed, Withdrawn,
// BatchSettled) from a cursor kept in SQL and hands them to a sink (the ledger mirror) in three steps:
// `seen` when an event is first read, `final` once it has the configured number of confirmations, and
// `removed` when a reorg takes it away (before finality: the sink voids it; after: it reverses it).
//
// Durability: one DB transaction stores a read range's events, the hashes of the blocks they sit in (and of the
// range's last block) and the advanced cursor; the sink is called afterwards, from the stored rows, and each row's
// status moves only once the sink has returned. A crash between the two repeats a sink call, which the sink
// makes harmless (its ledger ids are derived from chainId:txHash:logIndex and the event's generation).
//
// Reorgs: every poll compares the stored hashes of not-yet-final blocks with the chain. The lowest block whose
// hash changed (or that no longer exists) and everything above it is rolled back: its events are removed and the
// cursor goes back to just after the highest block that still matches. An event that comes back (the same
// transaction mined again) gets a new generation, so its new ledger transfers never reuse a voided id.
// One watcher per (chain, contract) at a time, by a lease in the database: in other processes a watcher stands by
// (its polls read nothing) until the holder stops or its lease runs out. Two at once would only repeat each
// other's sink calls, which are idempotent: the lease saves the work, it does not guard the money.

import { randomUUID } from "node:crypto";
import {
  type Address,
  type Chain,
  type Hex,
  type Log,
  type PublicClient,
  parseEventLogs,
  type Transport,
} from "viem";
import {
  type Db,
  type SplitterEvent,
  type SplitterEventName,
  type SplitterEventSink,
  type Sql,
  SwitchyardError,
  splitterEventNames,
  type WatchedEvent,
} from "../../core/index.ts";
import { revenueSplitterAbi } from "./abi.generated.ts";
import { translatingViemErrors } from "./errors.ts";

/** The ABI of SplitCreated, to find one split's creation by its indexed id. */
const splitCreatedEvent = revenueSplitterAbi.find(
  (item): item is Extract<(typeof revenueSplitterAbi)[number], { type: "event"; name: "SplitCreated" }> =>
    item.type === "event" && item.name === "SplitCreated",
)!;

export type SplitterWatcherParams = {
  db: Db;
  publicClient: PublicClient<Transport, Chain>;
  splitter: Address;
  /** First block to read when there is no cursor yet (the splitter's deployment block). */
  startBlock: bigint;
  /** An event is final when its block has this many confirmations (1 = the block itself). */
  confirmations: number;
  sink: SplitterEventSink;
  pollIntervalMs: number;
  /** The most blocks one getLogs call covers. */
  blockRangeMax: bigint;
  /** The most events handed to the sink per step of one poll. */
  eventsPerPollMax: number;
  /** How long the lease on following this contract lasts; the holder renews it at half its life. */
  leaseMs: number;
};

export type PollResult = {
  head: bigint;
  /** Events read from the chain in this poll. */
  read: number;
  seen: number;
  finalized: number;
  removed: number;
  /** The next block the watcher will read. */
  nextBlock: bigint;
  /** Another watcher holds the lease: this poll did nothing. */
  standby: boolean;
};

export type SplitterWatcher = {
  /** One round: check for a reorg, read new logs, mirror seen events, finalize confirmed ones. */
  poll(): Promise<PollResult>;
  /** Polls until caught up to the head (bounded by `roundsMax`). */
  catchUp(roundsMax: number): Promise<PollResult>;
  start(): void;
  stop(): Promise<void>;
  nextBlock(): Promise<bigint>;
};

/** The watcher's: the node out of reach or answering what cannot be (viem's error as the cause). */
export class EvmWatcherError extends SwitchyardError {
  override name = "EvmWatcherError";
}

type EventRow = {
  tx_hash: Hex;
  log_index: number;
  block_number: bigint;
  block_hash: Hex;
  event_name: SplitterEventName;
  args: Record<string, unknown>;
  status: "seen" | "pending" | "posted" | "removed";
  generation: number;
  recipients: Address[] | null;
  basis_points: number[] | null;
};

export function createSplitterWatcher(params: SplitterWatcherParams): SplitterWatcher {
  const { db, publicClient, sink } = params;
  const chainId = publicClient.chain.id;
  const contract = params.splitter.toLowerCase();
  const confirmations = BigInt(params.confirmations);
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> = Promise.resolve();
  let stopped = true;
  /** The head of the last poll that left nothing to do at that head (every block read, every event handled). */
  let settledAt: { hash: Hex; result: PollResult } | null = null;
  const holder = randomUUID();
  /** While Date.now() is below this, the lease is ours without asking (renewed at half its life). */
  let leaseRenewAtMs = 0;

  /** Takes or renews the lease; false while another watcher holds an unexpired one. */
  async function holdLease(): Promise<boolean> {
    if (Date.now() < leaseRenewAtMs) return true;
    const rows = await db.query(
      `INSERT INTO evm_watch_leases (chain_id, contract, holder, expires_at)
       VALUES ($1, $2, $3, now() + make_interval(secs => $4::double precision / 1000))
       ON CONFLICT (chain_id, contract) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
         WHERE evm_watch_leases.holder = EXCLUDED.holder OR evm_watch_leases.expires_at < now()
       RETURNING holder`,
      [chainId, contract, holder, params.leaseMs],
    );
    if (rows.length === 0) {
      leaseRenewAtMs = 0;
      settledAt = null; // the holder moves on meanwhile: start from the database when the lease is ours
      return false;
    }
    leaseRenewAtMs = Date.now() + params.leaseMs / 2;
    return true;
  }

  async function nextBlock(sql: Sql = db): Promise<bigint> {
    const [row] = await sql.query<{ next_block: bigint }>(
      "SELECT next_block FROM evm_watch_cursors WHERE chain_id = $1 AND contract = $2",
      [chainId, contract],
    );
    return row?.next_block ?? params.startBlock;
  }

  async function setNextBlock(sql: Sql, next: bigint): Promise<void> {
    await sql.query(
      `INSERT INTO evm_watch_cursors (chain_id, contract, next_block) VALUES ($1, $2, $3)
       ON CONFLICT (chain_id, contract) DO UPDATE SET next_block = EXCLUDED.next_block, updated_at = now()`,
      [chainId, contract, next],
    );
  }

  /** Returns how many events a reorg removed (0 when every stored block still matches the chain). */
  async function checkReorg(head: bigint): Promise<number> {
    const blocks = await db.query<{ number: bigint; hash: Hex }>(
      "SELECT number, hash FROM evm_watch_blocks WHERE chain_id = $1 AND contract = $2 ORDER BY number",
      [chainId, contract],
    );
    let matching: bigint | null = null;
    let forked: bigint | null = null;
    for (const block of blocks) {
      const current = block.number > head ? null : await publicClient.getBlock({ blockNumber: block.number });
      if (current === null || current.hash !== block.hash) {
        forked = block.number;
        break;
      }
      matching = block.number;
    }
    if (forked === null) return 0;
    // The fork lies above the highest block that still matches; without one, within the finality window.
    const floor = forked - confirmations;
    const rescanFrom =
      matching !== null ? matching + 1n : floor > params.startBlock ? floor : params.startBlock;
    const gone = await loadEvents(
      "e.block_number >= $3 AND e.status <> 'removed' ORDER BY e.block_number DESC, e.log_index DESC",
      [forked],
    );
    for (const row of gone) await sink.removed(toWatched(row), row.status === "posted");
    await db.transaction(async (tx) => {
      for (const row of gone) {
        await tx.query(
          `UPDATE evm_watch_events SET status = 'removed', updated_at = now()
           WHERE chain_id = $1 AND contract = $2 AND tx_hash = $3 AND log_index = $4`,
          [chainId, contract, row.tx_hash, row.log_index],
        );
      }
      await tx.query("DELETE FROM evm_watch_blocks WHERE chain_id = $1 AND contract = $2 AND number >= $3", [
        chainId,
        contract,
        rescanFrom,
      ]);
      await setNextBlock(tx, rescanFrom);
    });
    return gone.length;
  }

  async function read(head: bigint): Promise<number> {
    const from = await nextBlock();
    if (from > head) return 0;
    const to = from + params.blockRangeMax - 1n < head ? from + params.blockRangeMax - 1n : head;
    const logs = await publicClient.getLogs({ address: params.splitter, fromBlock: from, toBlock: to });
    const events = parseEventLogs({ abi: revenueSplitterAbi, logs: logs as Log[], strict: true }).filter(
      (log) => (splitterEventNames as readonly string[]).includes(log.eventName),
    );
    const last = await publicClient.getBlock({ blockNumber: to });
    const earlier = await splitsCreatedEarlier(events);
    await db.transaction(async (tx) => {
      for (const split of earlier) await rememberSplit(tx, split);
      for (const log of events) {
        if (log.blockHash === null || log.transactionHash === null || log.logIndex === null)
          throw new EvmWatcherError("a pending log came back", { details: `blocks ${from}..${to}` });
        await tx.query(
          `INSERT INTO evm_watch_events
             (chain_id, contract, tx_hash, log_index, block_number, block_hash, event_name, args, status)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'seen')
           ON CONFLICT (chain_id, contract, tx_hash, log_index) DO UPDATE
             SET status = 'seen', generation = evm_watch_events.generation + 1,
                 block_number = EXCLUDED.block_number, block_hash = EXCLUDED.block_hash,
                 event_name = EXCLUDED.event_name, args = EXCLUDED.args, updated_at = now()
             WHERE evm_watch_events.status = 'removed'`,
          [
            chainId,
            contract,
            log.transactionHash,
            log.logIndex,
            log.blockNumber,
            log.blockHash,
            log.eventName,
            JSON.stringify(log.args, (_key, value) => (typeof value === "bigint" ? value.toString() : value)),
          ],
        );
        await rememberBlock(tx, log.blockNumber, log.blockHash);
        if (log.eventName === "SplitCreated") await rememberSplit(tx, log.args);
      }
      await rememberBlock(tx, to, last.hash);
      await setNextBlock(tx, to + 1n);
    });
    return events.length;
  }

  type CreatedSplit = { splitId: Hex; recipients: readonly Address[]; basisPoints: readonly number[] };

  async function rememberSplit(tx: Sql, split: CreatedSplit): Promise<void> {
    await tx.query(
      `INSERT INTO evm_splits (chain_id, contract, split_id, recipients, basis_points)
       VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
      [
        chainId,
        contract,
        split.splitId.toLowerCase(),
        JSON.stringify(split.recipients),
        JSON.stringify(split.basisPoints),
      ],
    );
  }

  /**
   * The definitions of the splits these events distribute that the registry lacks: created before the watcher's
   * first block (EVM_SPLITTER_START_BLOCK past the splitter's deployment). Read from their SplitCreated log, which
   * the split id (an indexed topic) finds whatever its block.
   */
  async function splitsCreatedEarlier(events: readonly { eventName: string; args: unknown }[]) {
    const created = new Set<string>();
    const wanted = new Set<string>();
    for (const { eventName, args } of events) {
      const splitId = (args as { splitId?: Hex }).splitId?.toLowerCase();
      if (splitId === undefined) continue;
      if (eventName === "SplitCreated") created.add(splitId);
      else if (eventName === "Distributed" && !created.has(splitId)) wanted.add(splitId);
    }
    if (wanted.size === 0) return [];
    const known = await db.query<{ split_id: string }>(
      "SELECT split_id FROM evm_splits WHERE chain_id = $1 AND contract = $2 AND split_id = ANY($3::text[])",
      [chainId, contract, [...wanted]],
    );
    for (const row of known) wanted.delete(row.split_id);
    const found: CreatedSplit[] = [];
    for (const splitId of wanted) {
      const logs = await publicClient.getLogs({
        address: params.splitter,
        event: splitCreatedEvent,
        args: { splitId: splitId as Hex },
        fromBlock: 0n,
        toBlock: "latest",
        strict: true,
      });
      const log = logs[0];
      if (log !== undefined) found.push(log.args as CreatedSplit);
    }
    return found;
  }

  async function rememberBlock(tx: Sql, number: bigint, hash: Hex): Promise<void> {
    await tx.query(
      `INSERT INTO evm_watch_blocks (chain_id, contract, number, hash) VALUES ($1, $2, $3, $4)
       ON CONFLICT (chain_id, contract, number) DO UPDATE SET hash = EXCLUDED.hash`,
      [chainId, contract, number, hash],
    );
  }

  async function loadEvents(where: string, extra: readonly unknown[]): Promise<EventRow[]> {
    return db.query<EventRow>(
      `SELECT e.tx_hash, e.log_index, e.block_number, e.block_hash, e.event_name, e.args, e.status, e.generation,
              s.recipients, s.basis_points
       FROM evm_watch_events e
       LEFT JOIN evm_splits s
         ON s.chain_id = e.chain_id AND s.contract = e.contract AND s.split_id = lower(e.args->>'splitId')
       WHERE e.chain_id = $1 AND e.contract = $2 AND ${where}`,
      [chainId, contract, ...extra],
    );
  }

  function toWatched(row: EventRow): WatchedEvent {
    return {
      chainId,
      contract: params.splitter,
      txHash: row.tx_hash,
      logIndex: row.log_index,
      blockNumber: row.block_number,
      blockHash: row.block_hash,
      generation: row.generation,
      event: eventFromArgs(row.event_name, row.args),
      split:
        row.recipients === null || row.basis_points === null
          ? null
          : { recipients: row.recipients, basisPoints: row.basis_points },
    };
  }

  async function move(row: EventRow, from: EventRow["status"], to: EventRow["status"]): Promise<void> {
    await db.query(
      `UPDATE evm_watch_events SET status = $6, updated_at = now()
       WHERE chain_id = $1 AND contract = $2 AND tx_hash = $3 AND log_index = $4 AND status = $5`,
      [chainId, contract, row.tx_hash, row.log_index, from, to],
    );
  }

  async function poll(): Promise<PollResult> {
    if (!(await holdLease())) {
      const next = await nextBlock();
      return { head: next - 1n, read: 0, seen: 0, finalized: 0, removed: 0, nextBlock: next, standby: true };
    }
    const latest = await publicClient.getBlock({ blockTag: "latest" });
    const head = latest.number;
    // The head's hash commits to every block below it: the same hash means the same chain, so a poll that left
    // nothing to do there has nothing to do now (and reads no database, which on PGlite shares this thread).
    if (settledAt !== null && settledAt.hash === latest.hash)
      return { ...settledAt.result, read: 0, seen: 0, finalized: 0, removed: 0 };
    settledAt = null;
    const removed = await checkReorg(head);
    const readCount = await read(head);
    const seen = await loadEvents("e.status = 'seen' ORDER BY e.block_number, e.log_index LIMIT $3", [
      params.eventsPerPollMax,
    ]);
    for (const row of seen) {
      await sink.seen(toWatched(row));
      await move(row, "seen", "pending");
    }
    // Final: at least `confirmations` blocks from its own up to the head, and every earlier event already seen.
    const finalBlockMax = head - confirmations + 1n;
    const final = await loadEvents(
      `e.status = 'pending' AND e.block_number <= $3
       AND NOT EXISTS (SELECT 1 FROM evm_watch_events o WHERE o.chain_id = e.chain_id AND o.contract = e.contract
                       AND o.status = 'seen')
       ORDER BY e.block_number, e.log_index LIMIT $4`,
      [finalBlockMax, params.eventsPerPollMax],
    );
    for (const row of final) {
      await sink.final(toWatched(row));
      await move(row, "pending", "posted");
    }
    // Final blocks can no longer fork (by the confirmations rule): keep one as the anchor, forget the rest.
    await db.query(
      `DELETE FROM evm_watch_blocks WHERE chain_id = $1 AND contract = $2 AND number < $3
         AND number < (SELECT max(number) FROM evm_watch_blocks WHERE chain_id = $1 AND contract = $2 AND number < $3)`,
      [chainId, contract, finalBlockMax],
    );
    const result: PollResult = {
      head,
      read: readCount,
      seen: seen.length,
      finalized: final.length,
      removed,
      nextBlock: await nextBlock(),
      standby: false,
    };
    if (
      result.nextBlock > head &&
      removed === 0 &&
      seen.length < params.eventsPerPollMax &&
      final.length < params.eventsPerPollMax
    )
      settledAt = { hash: latest.hash, result };
    return result;
  }

  /** Polls never overlap: each waits for the one before it. */
  function exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = running.then(fn, fn);
    running = run.catch(() => undefined);
    return run;
  }

  const watcher: SplitterWatcher = {
    poll: () =>
      exclusive(() =>
        translatingViemErrors("polling the splitter", poll, (shortMessage, options) => {
          return new EvmWatcherError(shortMessage, options);
        }),
      ),
    async catchUp(roundsMax) {
      let result = await watcher.poll();
      for (let round = 1; round < roundsMax && (result.nextBlock <= result.head || result.seen > 0); round++)
        result = await watcher.poll();
      return result;
    },
    start() {
      if (!stopped) return;
      stopped = false;
      const tick = () => {
        watcher
          .poll()
          .catch((error: unknown) =>
            console.error(
              `evm watcher: poll failed: ${error instanceof Error ? error.message : String(error)}`,
            ),
          )
          .finally(() => {
            if (!stopped) {
              timer = setTimeout(tick, params.pollIntervalMs);
              timer.unref();
            }
          });
      };
      tick();
    },
    async stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      await running;
      // Another process's watcher may take over at once.
      leaseRenewAtMs = 0;
      await db.query("DELETE FROM evm_watch_leases WHERE chain_id = $1 AND contract = $2 AND holder = $3", [
        chainId,
        contract,
        holder,
      ]);
    },
    nextBlock: () => nextBlock(),
  };
  return watcher;
}

function eventFromArgs(name: SplitterEventName, args: Record<string, unknown>): SplitterEvent {
  const hex = (key: string) => String(args[key]) as Hex;
  const big = (key: string) => BigInt(String(args[key]));
  switch (name) {
    case "SplitCreated":
      return {
        name,
        splitId: hex("splitId"),
        recipients: args.recipients as Address[],
        basisPoints: (args.basisPoints as number[]).map(Number),
      };
    case "Paid":
      return {
        name,
        splitId: hex("splitId"),
        token: hex("token"),
        payer: hex("payer"),
        amount: big("amount"),
        ref: hex("ref"),
      };
    case "Distributed":
      return {
        name,
        splitId: hex("splitId"),
        token: hex("token"),
        distributor: hex("distributor"),
        amount: big("amount"),
        ref: hex("ref"),
      };
    case "Withdrawn":
      return {
        name,
        splitId: hex("splitId"),
        token: hex("token"),
        recipient: hex("recipient"),
        index: big("index"),
        amount: big("amount"),
      };
    case "BatchSettled":
      return {
        name,
        token: hex("token"),
        payer: hex("payer"),
        ref: hex("ref"),
        payeeCount: big("payeeCount"),
        total: big("total"),
        batchHash: hex("batchHash"),
      };
  }
}
