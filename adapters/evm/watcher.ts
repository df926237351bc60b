// The RevenueSplitter watcher: follows the contract's events (SplitCreated, Paid, Distributed, Withdrawn,
// BatchSettled) from a cursor kept in SQL and hands them to a sink (the ledger mirror) in three steps:
// `seen` when an event is first read, `final` once it has the configured number of confirmations, and
// `removed` when a reorg takes it away (before finality: the sink voids it; after: it reverses it).
//
// Durability: one DB transaction stores a read range's events, the hashes of the blocks they sit in (and of the
// range's last block) and the advanced cursor; the sink is called afterwards, from the stored rows, and each row's
// status moves only once the sink has returned — or once its call has failed sinkAttemptsMax times in a row: then it
// is held (held_seen, held_pending) and tried again every heldRetryMs, so that the events behind it go on. A reorg's
// removal is the other way round: kept (evm_watch_removals_held) with the row marked removed first, then applied,
// and kept until it is. A crash between the two repeats a sink call, which the sink
// makes harmless (its ledger ids are derived from chainId:txHash:logIndex and the event's generation).
//
// Reorgs: every poll compares the stored hashes of not-yet-final blocks with the chain. The lowest block whose
// hash changed (or that no longer exists) and everything above it is rolled back: its events are removed and the
// cursor goes back to just after the highest block that still matches. An event that comes back (the same
// transaction mined again) gets a new generation, so its new ledger transfers never reuse a voided id.
// One watcher per (chain, contract) at a time, by a lease in the database: in other processes a watcher stands by
// (its polls read nothing) until the holder stops or its lease runs out. Two at once would repeat each other's sink
// calls, which are idempotent; but a call made just before the lease ran out can write its effect after the watcher
// that took over removed the event (a reorg) and found nothing to undo — a deposit's credit after its reversal found
// no receipt. So once a call returns, the event is read again: removed meanwhile, its removal is held again and applied
// after the call (watcher-poll.ts handled). The lease saves the work; the event's row guards the money: a deposit's
// receipt, and a reversal a deposit mined again gives back, check it in their own transactions (deposit-source.ts,
// migration 0021), and read after every call it covers the effects that do not — but for a process that dies between
// such an effect and that read (the splitter's mirror: removedDuringCall).

// The same machinery follows other sources: the token's transfers to deposit addresses (deposit-source.ts) is
// one, with its own rows (keyed by the token's address), its own lease and its own sink.

import { translatingViemErrors } from "./errors.ts";
import { splitterSource } from "./splitter-source.ts";
import { poll } from "./watcher-poll.ts";
import {
  type ChainWatcher,
  type ChainWatcherParams,
  createWatcherState,
  EvmWatcherError,
  type SplitterWatcher,
  type SplitterWatcherParams,
  type WatcherState,
} from "./watcher-state.ts";
import { keepStartBlock, nextBlock, releaseLease } from "./watcher-store.ts";

export {
  type ChainWatcher,
  type ChainWatcherLimits,
  type ChainWatcherParams,
  EvmWatcherError,
  type LogSource,
  type PollResult,
  type SplitterWatcher,
  type SplitterWatcherParams,
  type WatchSink,
} from "./watcher-state.ts";

export function createSplitterWatcher(params: SplitterWatcherParams): SplitterWatcher {
  const { splitter, sink, ...limits } = params;
  return createChainWatcher({
    ...limits,
    source: splitterSource({ db: params.db, publicClient: params.publicClient, splitter }),
    sink,
  });
}

/** A watcher of any log source: confirmations, reorgs, the lease and the cursor as described above. */
export function createChainWatcher<E>(params: ChainWatcherParams<E>): ChainWatcher {
  const w = createWatcherState(params);
  const watcher: ChainWatcher = {
    poll: () =>
      exclusive(w, () =>
        translatingViemErrors(
          `polling ${params.source.name}`,
          () => poll(w),
          (shortMessage, options) => new EvmWatcherError(shortMessage, options),
        ),
      ),
    async catchUp(roundsMax) {
      let result = await watcher.poll();
      for (let round = 1; round < roundsMax && (result.nextBlock <= result.head || result.seen > 0); round++)
        result = await watcher.poll();
      return result;
    },
    start() {
      if (!w.stopped) return;
      w.stopped = false;
      const tick = () => {
        watcher
          .poll()
          .catch((error: unknown) =>
            w.logger.error(
              { error: error instanceof Error ? error.message : String(error) },
              "poll failed; the next one tries again",
            ),
          )
          .finally(() => {
            if (!w.stopped) {
              w.timer = setTimeout(tick, params.pollIntervalMs);
              w.timer.unref();
            }
          });
      };
      tick();
    },
    async stop() {
      w.stopped = true;
      if (w.timer !== undefined) clearTimeout(w.timer);
      await w.running;
      await releaseLease(w); // another process's watcher may take over at once
    },
    nextBlock: () => nextBlock(w),
    keepStartBlock: () => keepStartBlock(w),
  };
  return watcher;
}

/** Polls never overlap: each waits for the one before it. */
function exclusive<T>(w: WatcherState, fn: () => Promise<T>): Promise<T> {
  const run = w.running.then(fn, fn);
  w.running = run.catch(() => undefined);
  return run;
}
