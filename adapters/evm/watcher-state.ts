// The splitter watcher's public types and its one explicit state, shared by its SQL bookkeeping
// (watcher-store.ts), its poll (watcher-poll.ts) and its lifecycle (watcher.ts).
import { randomUUID } from "node:crypto";
import type { Address, Chain, Hex, PublicClient, Transport } from "viem";
import {
  type Db,
  type Logger,
  type SplitterEventSink,
  SwitchyardError,
  silentLogger,
} from "../../core/index.ts";

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
  /** Where a failed poll is logged (a child of the app's logger, from the composition root); silent by default. */
  logger?: Logger;
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

export type WatcherState = {
  readonly params: SplitterWatcherParams;
  readonly db: Db;
  readonly publicClient: PublicClient<Transport, Chain>;
  readonly sink: SplitterEventSink;
  readonly logger: Logger;
  readonly chainId: number;
  /** The splitter's address, lower case: the key of every row the watcher keeps. */
  readonly contract: string;
  readonly confirmations: bigint;
  /** This watcher's name in the lease table. */
  readonly holder: string;
  /** While Date.now() is below this, the lease is ours without asking (renewed at half its life). */
  leaseRenewAtMs: number;
  /** The head of the last poll that left nothing to do at that head (every block read, every event handled). */
  settledAt: { hash: Hex; result: PollResult } | null;
  /** The last poll queued: polls never overlap. */
  running: Promise<unknown>;
  stopped: boolean;
  timer: NodeJS.Timeout | undefined;
};

export function createWatcherState(params: SplitterWatcherParams): WatcherState {
  return {
    params,
    db: params.db,
    publicClient: params.publicClient,
    sink: params.sink,
    logger: params.logger ?? silentLogger,
    chainId: params.publicClient.chain.id,
    contract: params.splitter.toLowerCase(),
    confirmations: BigInt(params.confirmations),
    holder: randomUUID(),
    leaseRenewAtMs: 0,
    settledAt: null,
    running: Promise.resolve(),
    stopped: true,
    timer: undefined,
  };
}
