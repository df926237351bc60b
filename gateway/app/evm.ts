// The composition root's EVM part: the chain's clients (the embedded Hardhat chain, or a JSON-RPC endpoint
// with the hot wallet's key) and the RevenueSplitter's events followed into the ledger: the chain watcher
// (adapters/evm) wired to the ledger mirror (gateway/settlement) as its sink.
import {
  type Account,
  type Address,
  type Chain,
  createPublicClient,
  createWalletClient,
  http,
  type PublicClient,
  type Transport,
  type WalletClient,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  createSplitterWatcher,
  type EmbeddedChain,
  type SplitterWatcher,
  startEmbeddedChain,
} from "../../adapters/evm/index.ts";
import type { Asset, Logger } from "../../core/index.ts";
import type { Db } from "../db/index.ts";
import type { Ledger } from "../ledger/index.ts";
import { openSplitterMirror } from "../settlement/evm.ts";
import type { Config } from "./config.ts";

export type EvmClients = {
  readonly publicClient: PublicClient<Transport, Chain>;
  readonly walletClient: WalletClient<Transport, Chain, Account>;
  readonly token: Address;
  readonly splitter: { readonly address: Address; readonly startBlock: bigint } | null;
  /** The embedded chain when the gateway runs its own; null on an external chain. */
  readonly embedded: EmbeddedChain | null;
};

const rpcTimeoutMs = 30_000;
const rpcRetryCountMax = 2;

/** Starts the embedded chain (contracts deployed) or connects to the configured one. */
export async function openEvmClients(evm: Config["evm"]): Promise<EvmClients> {
  if (evm.kind === "embedded") {
    const chain = await startEmbeddedChain({ blockIntervalMs: evm.blockIntervalMs });
    return {
      publicClient: chain.publicClient,
      walletClient: chain.walletClient,
      token: chain.contracts.testUsd,
      splitter: { address: chain.contracts.splitter, startBlock: 0n },
      embedded: chain,
    };
  }
  const transport: Transport = http(evm.url, { timeout: rpcTimeoutMs, retryCount: rpcRetryCountMax });
  const chainId = await createPublicClient({ transport }).getChainId();
  const chain: Chain = {
    id: chainId,
    name: `chain ${chainId}`,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [evm.url] } },
  };
  return {
    publicClient: createPublicClient({ chain, transport }),
    walletClient: createWalletClient({ chain, transport, account: privateKeyToAccount(evm.hotWalletKey) }),
    token: evm.tokenAddress,
    splitter: evm.splitter,
    embedded: null,
  };
}

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
  /** The watcher's and the mirror's logger (children of it); silent by default. */
  logger?: Logger;
};

/** Builds the watcher with the ledger mirror as its sink (not started: call start(), or poll() yourself). */
export async function createSplitterMirror(params: SplitterMirrorParams): Promise<SplitterWatcher> {
  const sink = await openSplitterMirror({
    ledger: params.ledger,
    chainId: params.publicClient.chain.id,
    splitter: params.splitter,
    token: params.token,
    hotWallet: params.hotWallet,
    ...(params.logger === undefined ? {} : { logger: params.logger.child({ part: "mirror" }) }),
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
    ...(params.logger === undefined ? {} : { logger: params.logger.child({ part: "watcher" }) }),
  });
}
