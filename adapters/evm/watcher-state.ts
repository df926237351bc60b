// The chain watcher's public types and its one explicit state, shared by its SQL bookkeeping
// (watcher-store.ts), its poll (watcher-poll.ts) and its lifecycle (watcher.ts). What it follows is a log source
// (the RevenueSplitter's events: splitter-source.ts; token transfers to deposit addresses: deposit-source.ts);
// the confirmations, reorgs, lease and cursor are the same for every source.
import { randomUUID } from "node:crypto";
import type { Address, Chain, Hex, PublicClient, Transport } from "viem";
import {
  type Db,
  type Logger,
  type SplitterEventSink,
  type Sql,
  SwitchyardError,
  silentLogger,
} from "../../core/index.ts";
import type { EventRow } from "./watcher-store.ts";

/** What every watcher needs, whatever it follows. */
export type ChainWatcherLimits = {
  db: Db;
  publicClient: PublicClient<Transport, Chain>;
  /** First block to read when there is no cursor yet (the contract's deployment block). */
  startBlock: bigint;
  /** An event is final when its block has this many confirmations (1 = the block itself). */
  confirmations: number;
  pollIntervalMs: number;
  /** The most blocks one getLogs call covers. */
  blockRangeMax: bigint;
  /** The most events handed to the sink per step of one poll. */
  eventsPerPollMax: number;
  /** How long the lease on following this contract lasts; the holder renews it at half its life. */
  leaseMs: number;
  /**
   * Failures of one event's sink call, in a row, after which it is held so that the events behind it go on (default
   * sinkAttemptsMaxDefault); held events are tried again every heldRetryMs (default heldRetryMsDefault).
   */
  sinkAttemptsMax?: number;
  heldRetryMs?: number;
  /**
   * How many blocks below the final ones the watcher keeps the hashes it read (default reorgDepthBlocksDefault): a
   * reorg deeper than the confirmations but within these is undone exactly, its final events reversed.
   */
  reorgDepthBlocks?: bigint;
  /** Where a failed poll is logged (a child of the app's logger, from the composition root); silent by default. */
  logger?: Logger;
};

export type SplitterWatcherParams = ChainWatcherLimits & {
  splitter: Address;
  sink: SplitterEventSink;
};

/** One log as a source decoded it, to be stored. */
export type DecodedLog = {
  transactionHash: Hex;
  logIndex: number;
  blockNumber: bigint;
  blockHash: Hex;
  eventName: string;
  args: unknown;
};

/** The logs of one block range a source read, and what it stores beside them (in the same transaction). */
export type SourceRead = { logs: readonly DecodedLog[]; store?: (tx: Sql) => Promise<void> };

/**
 * What a watcher follows: the contract that keys its rows (lease, cursor, blocks, events), how to read a range's
 * logs, and how a stored row becomes the event its sink takes.
 */
export type LogSource<E> = {
  /** What it follows, in the watcher's error messages: "the splitter", "deposits". */
  readonly name: string;
  readonly contract: Address;
  read(from: bigint, to: bigint): Promise<SourceRead>;
  toEvent(row: EventRow): E;
};

/** Where a watcher hands each event, in three steps. Every method must be idempotent. */
export type WatchSink<E> = {
  seen(event: E): Promise<void>;
  final(event: E): Promise<void>;
  /** `wasFinal`: `final` may have been applied (SplitterEventSink.removed), so check what it wrote before undoing it. */
  removed(event: E, wasFinal: boolean): Promise<void>;
};

export type ChainWatcherParams<E> = ChainWatcherLimits & { source: LogSource<E>; sink: WatchSink<E> };

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

export type ChainWatcher = {
  /** One round: check for a reorg, read new logs, hand seen events to the sink, finalize confirmed ones. */
  poll(): Promise<PollResult>;
  /** Polls until caught up to the head (bounded by `roundsMax`). */
  catchUp(roundsMax: number): Promise<PollResult>;
  start(): void;
  stop(): Promise<void>;
  nextBlock(): Promise<bigint>;
  /** Keeps the start block as the cursor unless one is kept already (keepStartBlock); answers the cursor. */
  keepStartBlock(): Promise<bigint>;
};

export type SplitterWatcher = ChainWatcher;

/** The watcher's: the node out of reach or answering what cannot be (viem's error as the cause). */
export class EvmWatcherError extends SwitchyardError {
  override name = "EvmWatcherError";
}

export type WatcherState = {
  readonly params: ChainWatcherLimits;
  readonly db: Db;
  readonly publicClient: PublicClient<Transport, Chain>;
  readonly source: LogSource<unknown>;
  readonly sink: WatchSink<unknown>;
  readonly logger: Logger;
  readonly chainId: number;
  /** The source's contract, lower case: the key of every row the watcher keeps. */
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
  /** Failures in a row of an event's sink call, by event and step (`<tx>:<log index>:<step>`). */
  readonly failures: Map<string, number>;
  /** When held events were last put back and held removals tried again (0: never, so at the first poll). */
  heldRetriedAtMs: number;
  stopped: boolean;
  timer: NodeJS.Timeout | undefined;
};

/** Failures in a row of one event's sink call after which it is held (ChainWatcherLimits.sinkAttemptsMax). */
export const sinkAttemptsMaxDefault = 10;
/** How often held events are tried again (ChainWatcherLimits.heldRetryMs). */
export const heldRetryMsDefault = 60_000;
/**
 * Blocks kept below the final ones (ChainWatcherLimits.reorgDepthBlocks): Ethereum finalises in two epochs (64
 * blocks), and a reorg past the confirmations but before finality is within them; four times that for margin.
 */
export const reorgDepthBlocksDefault = 256n;

export function createWatcherState<E>(params: ChainWatcherParams<E>): WatcherState {
  return {
    params,
    db: params.db,
    publicClient: params.publicClient,
    source: params.source as LogSource<unknown>,
    sink: params.sink as WatchSink<unknown>,
    logger: params.logger ?? silentLogger,
    chainId: params.publicClient.chain.id,
    contract: params.source.contract.toLowerCase(),
    confirmations: BigInt(params.confirmations),
    holder: randomUUID(),
    leaseRenewAtMs: 0,
    settledAt: null,
    running: Promise.resolve(),
    failures: new Map(),
    heldRetriedAtMs: 0,
    stopped: true,
    timer: undefined,
  };
}
