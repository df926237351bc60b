// The EVM side of settlement: RevenueSplitter events, followed by the watcher (adapters/evm/watcher.ts) and
// mirrored into the ledger (evm-mirror.ts). createSplitterMirror wires the two for the composition root.
import type { Address, Chain, PublicClient, Transport } from "viem";
import { createSplitterWatcher, type SplitterWatcher } from "../../adapters/evm/index.ts";
import type { Asset } from "../../core/index.ts";
import type { Db } from "../db/index.ts";
import { type Ledger, ledgerHolds } from "../ledger/index.ts";
import { createEvmMirror, EvmMirrorError, evmMirrorAccountCodes, evmMirrorAccounts } from "./evm-mirror.ts";

export {
  createEvmMirror,
  EvmMirrorError,
  type EvmMirrorParams,
  evmMirrorAccountCodes,
  evmMirrorAccounts,
  evmMirrorTransferCodes,
  evmMirrorTransferId,
} from "./evm-mirror.ts";

export type SplitterMirrorParams = {
  db: Db;
  ledger: Ledger;
  publicClient: PublicClient<Transport, Chain>;
  splitter: Address;
  token: { address: Address; asset: Asset };
  hotWallet: Address;
  confirmations: number;
  startBlock: bigint;
  pollIntervalMs: number;
  /** Defaults: 1,000 blocks per getLogs, 1,000 events per step. */
  blockRangeMax?: bigint;
  eventsPerPollMax?: number;
  /** How long the lease on following the splitter lasts (default 10 s, renewed at half its life): after a crash, how
   * long another process (or the restarted one) waits before it follows the splitter. */
  leaseMs?: number;
};

/** Builds the watcher with the ledger mirror as its sink (not started: call start(), or poll() yourself). */
export async function createSplitterMirror(params: SplitterMirrorParams): Promise<SplitterWatcher> {
  // The contract-wide accounts exist from the start (a split's accounts appear with its first event).
  const ids = evmMirrorAccounts({ chainId: params.publicClient.chain.id, splitter: params.splitter });
  const asset = params.token.asset;
  const created = await params.ledger.createAccounts([
    { id: ids.custody(asset), ledger: asset.ledger, code: evmMirrorAccountCodes.splitterCustody },
    { id: ids.batchPayouts(asset), ledger: asset.ledger, code: evmMirrorAccountCodes.batchPayouts },
    { id: ids.batchOutflow(asset), ledger: asset.ledger, code: evmMirrorAccountCodes.batchOutflow },
  ]);
  for (const result of created)
    if (!ledgerHolds(result.status))
      throw new EvmMirrorError(`ledger refused a splitter mirror account: ${result.status}`);
  const sink = createEvmMirror({
    ledger: params.ledger,
    chainId: params.publicClient.chain.id,
    splitter: params.splitter,
    tokens: new Map([[params.token.address.toLowerCase(), params.token.asset]]),
    hotWallet: { address: params.hotWallet },
  });
  return createSplitterWatcher({
    db: params.db,
    publicClient: params.publicClient,
    splitter: params.splitter,
    startBlock: params.startBlock,
    confirmations: params.confirmations,
    sink,
    pollIntervalMs: params.pollIntervalMs,
    blockRangeMax: params.blockRangeMax ?? 1_000n,
    eventsPerPollMax: params.eventsPerPollMax ?? 1_000,
    leaseMs: params.leaseMs ?? 10_000,
  });
}
