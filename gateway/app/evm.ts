// The composition root's EVM part: each configured chain's clients (an embedded Hardhat chain, or a JSON-RPC
// endpoint with the hot wallet's key) — one rail each — and each chain's RevenueSplitter events followed into
// the ledger: the chain watcher (adapters/evm) wired to the ledger mirror (gateway/settlement) as its sink.
import {
  type Account,
  type Address,
  type Chain,
  createPublicClient,
  createWalletClient,
  erc20Abi,
  http,
  type PublicClient,
  type Transport,
  type WalletClient,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  createSplitterWatcher,
  type DepositParams,
  type EmbeddedChain,
  type SplitterWatcher,
  startEmbeddedChain,
  translatingViemErrors,
} from "../../adapters/evm/index.ts";
import type { Rail } from "../../core/index.ts";
import { type Asset, assets, type Logger, SwitchyardError, silentLogger } from "../../core/index.ts";
import type { AccountCache } from "../accounts/index.ts";
import type { Db } from "../db/index.ts";
import type { Ledger } from "../ledger/index.ts";
import { startPeriodic } from "../periodic/index.ts";
import { openSplitterMirror } from "../settlement/evm.ts";
import {
  type DepositSweeper,
  type SendGasFollower,
  sendGasPassOnce,
  sweepDepositsOnce,
} from "../settlement/index.ts";
import type { Config, EvmChainConfig } from "./config.ts";
import { type DevChain, openDevChain } from "./dev-chain.ts";

/** One EVM chain the gateway pays on (one rail): its clients, contracts and policy. */
export type EvmClients = {
  /** The rail's id: "evm" for the first chain, "evm-…" for the others. */
  readonly id: string;
  readonly chainId: number;
  readonly publicClient: PublicClient<Transport, Chain>;
  readonly walletClient: WalletClient<Transport, Chain, Account>;
  readonly token: Address;
  readonly splitter: { readonly address: Address; readonly startBlock: bigint } | null;
  /** The ForwarderFactory of deposit addresses (owned by the hot wallet); null: invoices are paid by authorization only. */
  readonly forwarderFactory: Address | null;
  readonly confirmations: number;
  readonly gas: EvmChainConfig["gas"];
  readonly replaceAfterMs: number;
  /** The embedded chain when the gateway runs it; null on an external chain. */
  readonly embedded: EmbeddedChain | null;
  /** On a development chain whose wallet or contracts the gateway chose (gateway/app/dev-chain.ts): what it chose. */
  readonly dev?: DevChain;
};

const rpcTimeoutMs = 30_000;
const rpcRetryCountMax = 2;

/**
 * Starts the embedded chains (side by side, contracts deployed) and connects to the configured ones, in the
 * configuration's order. Every chain id must be another: the router tells the chains apart by it.
 */
export async function openEvmClients(
  evm: Config["evm"],
  logger: Logger = silentLogger,
  db: Db | null = null,
): Promise<readonly EvmClients[]> {
  const settled = await Promise.allSettled(evm.chains.map((chain) => openChain(chain, logger, db)));
  const opened = settled.flatMap((result) => (result.status === "fulfilled" ? [result.value] : []));
  const failed = settled.find((result) => result.status === "rejected");
  try {
    if (failed !== undefined) throw failed.reason;
    const seen = new Map<number, string>();
    for (const clients of opened) {
      const other = seen.get(clients.chainId);
      if (other !== undefined)
        throw new EvmSetupError(
          `EVM rails ${other} and ${clients.id} are on the same chain ${clients.chainId}`,
        );
      seen.set(clients.chainId, clients.id);
    }
    return opened;
  } catch (error) {
    await closeEvmClients(opened);
    throw error;
  }
}

/** Stops the embedded chains (the RPC clients hold nothing open). */
export async function closeEvmClients(chains: readonly EvmClients[]): Promise<void> {
  for (const clients of chains) await clients.embedded?.close();
}

export class EvmSetupError extends SwitchyardError {
  override name = "EvmSetupError";
}

/**
 * Well-known chains whose gas is not ETH, by chain id: their gas would be booked, and charged to payers, as so much ETH
 * at ETH's price (the rail's gas clearing and fee accounts are ETH's). Refused at start rather than booked wrong.
 * Ether's own L2s (Base, OP, Arbitrum, …) and an embedded chain under any id pay in ETH.
 */
const nonEtherGasCoins: ReadonlyMap<number, string> = new Map([
  [56, "BNB"],
  [97, "BNB"],
  [100, "xDAI"],
  [137, "POL"],
  [80002, "POL"],
  [43114, "AVAX"],
  [43113, "AVAX"],
  [42220, "CELO"],
  [44787, "CELO"],
  [1329, "SEI"],
  [1328, "SEI"],
  [14, "FLR"],
  [114, "FLR"],
  [250, "FTM"],
  [25, "CRO"],
  [5000, "MNT"],
  [4689, "IOTX"],
  [3338, "PEAQ"],
  [1514, "IP"],
  [41923, "EDU"],
  [143, "MON"],
  [1284, "GLMR"],
  [146, "S"],
  [999, "HYPE"],
  [50, "XDC"],
  [2020, "RON"],
  [8217, "KAIA"],
  [1088, "METIS"],
  [204, "BNB"],
  [80094, "BERA"],
  [30, "RBTC"],
]);

async function openChain(config: EvmChainConfig, logger: Logger, db: Db | null): Promise<EvmClients> {
  const { source } = config;
  const common = {
    id: config.id,
    confirmations: config.confirmations,
    gas: config.gas,
    replaceAfterMs: config.replaceAfterMs,
  };
  if (source.kind === "embedded") {
    const chain = await startEmbeddedChain({
      chainId: source.chainId,
      baseFeePerGas: source.baseFeeWei,
      blockIntervalMs: source.blockIntervalMs,
      logger: logger.child({ module: "embedded-chain", rail: config.id }),
    });
    return {
      ...common,
      chainId: chain.chain.id,
      publicClient: chain.publicClient,
      walletClient: chain.walletClient,
      token: chain.contracts.testUsd,
      splitter: { address: chain.contracts.splitter, startBlock: 0n },
      forwarderFactory: chain.contracts.forwarderFactory,
      embedded: chain,
    };
  }
  const transport: Transport = http(source.url, { timeout: rpcTimeoutMs, retryCount: rpcRetryCountMax });
  const chainId = await translatingViemErrors(
    `reading the chain id of rail ${config.id}`,
    () => createPublicClient({ transport }).getChainId(),
    (shortMessage, options) => new EvmSetupError(shortMessage, options),
  );
  const coin = nonEtherGasCoins.get(chainId);
  if (coin !== undefined)
    throw new EvmSetupError(
      `rail ${config.id}: chain ${chainId} pays its gas in ${coin}, and Switchyard books gas (and charges it to payers) in ETH only; use a chain whose gas is ETH`,
    );
  if (source.chainId !== null && source.chainId !== chainId)
    throw new EvmSetupError(
      `rail ${config.id} is configured for chain ${source.chainId}, but ${new URL(source.url).host} is chain ${chainId}`,
    );
  const chain: Chain = {
    id: chainId,
    name: `chain ${chainId}`,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [source.url] } },
  };
  const publicClient = createPublicClient({ chain, transport });
  if (source.hotWalletKey !== null && source.tokenAddress !== null) {
    await checkTokenDecimals(config.id, publicClient, source.tokenAddress);
    return {
      ...common,
      chainId,
      publicClient,
      walletClient: createWalletClient({
        chain,
        transport,
        account: privateKeyToAccount(source.hotWalletKey),
      }),
      token: source.tokenAddress,
      splitter: source.splitter,
      forwarderFactory: source.forwarderFactory,
      embedded: null,
    };
  }
  // A development chain: the wallet, the contracts or both are the gateway's to choose, kept in the database.
  if (db === null)
    throw new EvmSetupError(`rail ${config.id} needs the database to choose its wallet or contracts`);
  const dev = await openDevChain(
    { db, logger: logger.child({ module: "dev-chain", rail: config.id }) },
    {
      railId: config.id,
      url: source.url,
      chain,
      transport,
      publicClient,
      hotWalletKey: source.hotWalletKey,
      ignitionDeployment: source.ignitionDeployment ?? null,
    },
  );
  await checkTokenDecimals(config.id, publicClient, dev.token);
  return {
    ...common,
    chainId,
    publicClient,
    walletClient: dev.walletClient,
    token: dev.token,
    splitter: dev.splitter,
    forwarderFactory: dev.forwarderFactory,
    embedded: null,
    dev,
  };
}

/**
 * The token's decimals must be USDC's: every amount of the rail is in USDC's minor units (6 decimals), so a token of
 * 18 (DAI) would be asked, credited and paid 10^12 times too little. Refused at start.
 */
async function checkTokenDecimals(rail: string, publicClient: PublicClient, token: Address): Promise<void> {
  const decimals = await translatingViemErrors(
    `reading the decimals of rail ${rail}'s token ${token}`,
    () => publicClient.readContract({ address: token, abi: erc20Abi, functionName: "decimals" }),
    (shortMessage, options) => new EvmSetupError(shortMessage, options),
  );
  if (decimals !== assets.USDC.scale)
    throw new EvmSetupError(
      `rail ${rail}: token ${token} has ${decimals} decimals; its amounts are kept as USDC's, with ${assets.USDC.scale}`,
    );
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

// ---- money in: each EVM rail's deposits, and the periodic sweep of its forwarders

/** How long past an invoice's expiry its deposit address is still watched (a late payment there is credited). */
const depositLateWatchMs = 30 * 24 * 3_600_000;
/** The most forwarders one sweep transaction empties (the factory allows 200). */
const sweepSaltsMax = 100;

/**
 * What a chain's rail needs to take money in: the factory (when there is one), the watcher's pace, the late
 * window and the sweep's batch. The embedded chain is watched from its first block; another from the head at the
 * rail's first start.
 */
export function depositParamsOf(chain: EvmClients): DepositParams {
  return {
    ...(chain.forwarderFactory === null ? {} : { factory: chain.forwarderFactory }),
    ...(chain.embedded === null ? {} : { startBlock: 0n }),
    pollIntervalMs: chain.embedded === null ? 2_000 : 250,
    lateWatchMs: depositLateWatchMs,
    sweepSaltsMax,
  };
}

/** How often each EVM rail sweeps its forwarders with confirmed deposits (a batch a pass). */
const sweepIntervalMs = 60_000;

/** The rail's sweeps, when it is an EVM rail that takes deposits (its `sweepDeposits`, beyond the Rail contract). */
function depositSweeperOf(rail: Rail): DepositSweeper | null {
  const sweep = (rail as Partial<DepositSweeper>).sweepDeposits;
  return rail.kind === "evm" && typeof sweep === "function"
    ? { id: rail.id, sweepDeposits: sweep.bind(rail) }
    : null;
}

/** What the periodic EVM passes need: the database, ledger and accounts, and each EVM rail with its chain. */
type EvmPassDeps = {
  db: Db;
  ledger: Ledger;
  accounts: AccountCache;
  logger: Logger;
  rails: ReadonlyMap<string, Rail>;
  evm: readonly EvmClients[];
};

/**
 * A pass run every `intervalMs` for each EVM rail `pick` finds what it needs on (null: none for that rail); returns
 * the closers.
 */
function startPerEvmRail<T>(
  deps: EvmPassDeps,
  params: {
    name: string;
    intervalMs: number;
    pick: (rail: Rail, chain: EvmClients) => T | null;
    pass: (picked: T, chain: EvmClients) => Promise<void>;
  },
): Array<() => Promise<void>> {
  const closers: Array<() => Promise<void>> = [];
  for (const rail of deps.rails.values()) {
    const chain = deps.evm.find((clients) => clients.id === rail.id);
    const picked = chain === undefined ? null : params.pick(rail, chain);
    if (chain === undefined || picked === null) continue;
    const periodic = startPeriodic({
      name: `${params.name} ${rail.id}`,
      intervalMs: params.intervalMs,
      pass: () => params.pass(picked, chain),
      logger: deps.logger,
    });
    closers.push(() => periodic.stop());
  }
  return closers;
}

/**
 * Every EVM rail's forwarders swept periodically, each sweep's gas booked as the rail's fee; returns the closers.
 */
export function startDepositSweeps(deps: EvmPassDeps): Array<() => Promise<void>> {
  return startPerEvmRail(deps, {
    name: "deposit sweep",
    intervalMs: sweepIntervalMs,
    pick: (rail, chain) => (chain.forwarderFactory === null ? null : depositSweeperOf(rail)),
    pass: async (sweeper, chain) => {
      await sweepDepositsOnce(deps, sweeper, chain.chainId);
    },
  });
}

// ---- the gas of every transaction the hot wallet sent

/** How often each EVM rail books the gas of its mined sends that no payment books (a batch of sends a pass). */
const sendGasIntervalMs = 60_000;

/** The rail's send-gas pass, when it is an EVM rail (its `sendGasPass`, beyond the Rail contract). */
function sendGasFollowerOf(rail: Rail): SendGasFollower | null {
  const pass = (rail as Partial<SendGasFollower>).sendGasPass;
  return rail.kind === "evm" && typeof pass === "function"
    ? { id: rail.id, sendGasPass: pass.bind(rail) }
    : null;
}

/**
 * Every EVM rail's mined sends followed periodically, the gas of those no payment books (the splitter's approve, a
 * payout or batch that reverted) booked as the rail's fee, so that its ETH clearing account matches the hot wallet;
 * returns the closers.
 */
export function startSendGasBooking(deps: EvmPassDeps): Array<() => Promise<void>> {
  return startPerEvmRail(deps, {
    name: "send gas",
    intervalMs: sendGasIntervalMs,
    pick: (rail) => sendGasFollowerOf(rail),
    pass: async (follower, chain) => {
      await sendGasPassOnce(deps, follower, chain.chainId);
    },
  });
}
