// What the splitter watcher follows: RevenueSplitter's events (SplitCreated, Paid, Distributed, Withdrawn,
// BatchSettled), decoded, with the split registry kept beside them, and each stored row turned into core's
// WatchedEvent for the ledger mirror.
import type { Address, Chain, Hex, Log, PublicClient, Transport } from "viem";
import { parseEventLogs } from "viem";
import {
  type Db,
  readInHalves,
  type SplitterEvent,
  type SplitterEventName,
  splitterEventNames,
  type WatchedEvent,
} from "../../core/index.ts";
import { revenueSplitterAbi } from "./abi.generated.ts";
import { EvmWatcherError, type LogSource } from "./watcher-state.ts";
import { type CreatedSplit, type EventRow, rememberSplit } from "./watcher-store.ts";

/** The ABI of SplitCreated, to find one split's creation by its indexed id. */
const splitCreatedEvent = revenueSplitterAbi.find(
  (item): item is Extract<(typeof revenueSplitterAbi)[number], { type: "event"; name: "SplitCreated" }> =>
    item.type === "event" && item.name === "SplitCreated",
)!;

type SourceDeps = { db: Db; publicClient: PublicClient<Transport, Chain>; splitter: Address };

export function splitterSource(deps: SourceDeps): LogSource<WatchedEvent> {
  const key = { chainId: deps.publicClient.chain.id, contract: deps.splitter.toLowerCase() };
  return {
    name: "the splitter",
    contract: deps.splitter,
    async read(from, to) {
      // Split in halves while the node refuses the range (a provider's cap on the blocks one call spans, or on the logs
      // it returns), as the deposits' reads are: before, such a refusal failed every poll at the same range for good.
      const logs = await readInHalves(from, to, (fromBlock, toBlock) =>
        deps.publicClient.getLogs({ address: deps.splitter, fromBlock, toBlock }),
      );
      const events = parseEventLogs({ abi: revenueSplitterAbi, logs: logs as Log[], strict: true }).filter(
        (log) => (splitterEventNames as readonly string[]).includes(log.eventName),
      );
      const earlier = await splitsCreatedEarlier(deps, key, events, from);
      return {
        logs: events.map((log) => {
          if (log.blockHash === null || log.transactionHash === null || log.logIndex === null)
            throw new EvmWatcherError("a pending log came back", { details: `blocks ${from}..${to}` });
          return {
            transactionHash: log.transactionHash,
            logIndex: log.logIndex,
            blockNumber: log.blockNumber,
            blockHash: log.blockHash,
            eventName: log.eventName,
            args: log.args,
          };
        }),
        async store(tx) {
          for (const split of earlier) await rememberSplit(key, tx, split);
          for (const log of events)
            if (log.eventName === "SplitCreated") await rememberSplit(key, tx, log.args as CreatedSplit);
        },
      };
    },
    toEvent: (row) => toWatched(key.chainId, deps.splitter, row),
  };
}

/**
 * The definitions of the splits these events distribute that the registry lacks: created before the watcher's
 * first block (EVM_SPLITTER_START_BLOCK past the splitter's deployment). Read from their SplitCreated log, which
 * the split id (an indexed topic) finds whatever its block.
 */
async function splitsCreatedEarlier(
  deps: SourceDeps,
  key: { chainId: number; contract: string },
  events: readonly { eventName: string; args: unknown }[],
  before: bigint,
): Promise<CreatedSplit[]> {
  const created = new Set<string>();
  const wanted = new Set<string>();
  for (const { eventName, args } of events) {
    const splitId = (args as { splitId?: Hex }).splitId?.toLowerCase();
    if (splitId === undefined) continue;
    if (eventName === "SplitCreated") created.add(splitId);
    else if (eventName === "Distributed" && !created.has(splitId)) wanted.add(splitId);
  }
  if (wanted.size === 0) return [];
  const known = await deps.db.query<{ split_id: string }>(
    "SELECT split_id FROM evm_splits WHERE chain_id = $1 AND contract = $2 AND split_id = ANY($3::text[])",
    [key.chainId, key.contract, [...wanted]],
  );
  for (const row of known) wanted.delete(row.split_id);
  const found: CreatedSplit[] = [];
  for (const splitId of wanted) {
    const log = await splitCreatedBefore(deps, splitId as Hex, before);
    if (log !== undefined) found.push(log);
  }
  return found;
}

/** The first window searched back from the watcher's start for a split's creation; each next one is twice as long. */
const createdSearchBlocksFirst = 10_000n;
const createdSearchBlocksMax = 1_000_000n;

/**
 * The SplitCreated of `splitId` in a block before `before` (the range being read: a split created before the
 * watcher's first block, EVM_SPLITTER_START_BLOCK past it): searched back from there in windows (10,000 blocks, then
 * twice as many each time, up to a million), each read in halves while the node refuses its span (many providers cap
 * one call's blocks), until found or block 0. Before, one call from block 0 to the latest: refused so, it failed every
 * poll for good; and read whole, it cost a capped provider thousands of calls though the split was just before.
 */
async function splitCreatedBefore(
  deps: SourceDeps,
  splitId: Hex,
  before: bigint,
): Promise<CreatedSplit | undefined> {
  let span = createdSearchBlocksFirst;
  for (let to = before - 1n; to >= 0n; ) {
    const from = to - span + 1n > 0n ? to - span + 1n : 0n;
    const logs = await readInHalves(from, to, (fromBlock, toBlock) =>
      deps.publicClient.getLogs({
        address: deps.splitter,
        event: splitCreatedEvent,
        args: { splitId },
        fromBlock,
        toBlock,
        strict: true,
      }),
    );
    const log = logs.at(-1);
    if (log !== undefined) return log.args as CreatedSplit;
    to = from - 1n;
    if (span < createdSearchBlocksMax) span *= 2n;
  }
  return undefined;
}

function toWatched(chainId: number, splitter: Address, row: EventRow): WatchedEvent {
  return {
    chainId,
    contract: splitter,
    txHash: row.tx_hash,
    logIndex: row.log_index,
    blockNumber: row.block_number,
    blockHash: row.block_hash,
    generation: row.generation,
    event: eventFromArgs(row.event_name as SplitterEventName, row.args),
    split:
      row.recipients === null || row.basis_points === null
        ? null
        : { recipients: row.recipients, basisPoints: row.basis_points },
  };
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
