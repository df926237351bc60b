// The RevenueSplitter's events as the chain watcher (adapters/evm) hands them to their sink (the ledger mirror in
// gateway/settlement): the vocabulary both sides speak, so neither imports the other. Addresses and hashes are
// viem's `0x…` strings.

type Address = `0x${string}`;
type Hex = `0x${string}`;

/** A split as the contract wants it: recipients strictly ascending, shares aligned with them (basis points). */
export type SplitDefinition = { recipients: readonly Address[]; basisPoints: readonly number[] };

export type SplitterEvent =
  | { name: "SplitCreated"; splitId: Hex; recipients: Address[]; basisPoints: number[] }
  | { name: "Paid"; splitId: Hex; token: Address; payer: Address; amount: bigint; ref: Hex }
  | { name: "Distributed"; splitId: Hex; token: Address; distributor: Address; amount: bigint; ref: Hex }
  | { name: "Withdrawn"; splitId: Hex; token: Address; recipient: Address; index: bigint; amount: bigint }
  | {
      name: "BatchSettled";
      token: Address;
      payer: Address;
      ref: Hex;
      payeeCount: bigint;
      total: bigint;
      batchHash: Hex;
    };

export type SplitterEventName = SplitterEvent["name"];

export const splitterEventNames: readonly SplitterEventName[] = [
  "SplitCreated",
  "Paid",
  "Distributed",
  "Withdrawn",
  "BatchSettled",
];

/** One log of the splitter as the watcher stored it. */
export type WatchedEvent = {
  chainId: number;
  contract: Address;
  txHash: Hex;
  logIndex: number;
  blockNumber: bigint;
  blockHash: Hex;
  /** How many times the event came back after a reorg removed it (0 the first time). */
  generation: number;
  event: SplitterEvent;
  /** The split's definition from the registry, for events that name a split (null if its creation was never seen). */
  split: SplitDefinition | null;
};

/** Where the watcher hands each event, in three steps. Every method must be idempotent. */
export type SplitterEventSink = {
  /** First seen (or seen again after a crash): mirror as pending. Must be idempotent. */
  seen(event: WatchedEvent): Promise<void>;
  /** Has the configured confirmations: make it final. Must be idempotent. */
  final(event: WatchedEvent): Promise<void>;
  /**
   * A reorg took it away. `wasFinal`: `final` may have been applied (it was called: it may have failed, before or after
   * applying its effect), so the sink checks what `final` wrote before undoing it; false: it never was. Must be
   * idempotent.
   */
  removed(event: WatchedEvent, wasFinal: boolean): Promise<void>;
};
