// Development chains reached over JSON-RPC (a developer's `hardhat node` or anvil): what the configuration leaves
// to the gateway there. Without EVM_HOT_WALLET_KEY the gateway takes one of Hardhat's development accounts as its
// hot wallet — one no other gateway has used, claimed on chain by sending its first transaction, and kept in this
// database (evm_dev_chains) with that transaction — so two gateways on one node with their own databases never sign
// with one nonce, also after the node was started afresh (the claim is not on it: claimed again, or refused).
// Without addresses it deploys the Ignition module (ignition/modules/Switchyard.ts) once and keeps the addresses;
// with EVM_IGNITION_DEPLOYMENT it reads them from that folder. A restart on the same database repeats none of it.
import {
  type Account,
  type Address,
  BaseError,
  type Chain,
  ContractFunctionRevertedError,
  createWalletClient,
  custom,
  getAddress,
  type Hex,
  type PublicClient,
  TransactionNotFoundError,
  type Transport,
  toHex,
  type WalletClient,
} from "viem";
import { mnemonicToAccount, privateKeyToAccount } from "viem/accounts";
import {
  type DeployedContracts,
  deployForwarderFactory,
  deployWithIgnition,
  type EmbeddedChain,
  forwarderFactoryAbi,
  hardhatMnemonic,
  readIgnitionDeployment,
  serveChainRpc,
  testUsdAbi,
} from "../../adapters/evm/index.ts";
import { type Db, type Logger, SwitchyardError } from "../../core/index.ts";

export { developmentAccountKey } from "../../adapters/evm/index.ts";

/** A development chain cannot be used as configured (no account to take, its contracts gone, another wallet). */
export class DevChainSetupError extends SwitchyardError {
  override name = "DevChainSetupError";
}

/**
 * The development accounts a gateway may take: Hardhat's 10 to 19 (a `hardhat node` funds 0 to 19), leaving 0 to 9
 * — the ones `npx hardhat ignition deploy` and a dapp's scripts use — to the developer.
 */
export const gatewayAccountIndexFirst = 10;
export const gatewayAccountIndexLast = 19;
/** What an account anvil did not fund (it funds 0 to 9) is given through hardhat_setBalance: 10,000 ETH. */
const devAccountBalanceWei = 10_000n * 10n ** 18n;

export type DevChainRecord = {
  chainId: number;
  wallet: Address;
  accountIndex: number | null;
  deployed: { testUsd: Address; splitter: Address; startBlock: bigint } | null;
  forwarderFactory: Address | null;
  demoMintTx: Hex | null;
  /** The demo mint signed before it was sent (demoMintTx its hash): sent again when the node does not have it. */
  demoMintRaw: Hex | null;
  /** The transaction that took the development account (nonce 0): on the node it says the account is ours. */
  claimTx: Hex | null;
};

type RecordRow = {
  chain_id: number;
  wallet: string;
  account_index: number | null;
  test_usd: string | null;
  splitter: string | null;
  forwarder_factory: string | null;
  start_block: string | number | bigint | null;
  demo_mint_tx: string | null;
  demo_mint_raw: string | null;
  claim_tx: string | null;
};

export async function readDevChainRecord(db: Db, chainId: number): Promise<DevChainRecord | null> {
  const [row] = await db.query<RecordRow>("SELECT * FROM evm_dev_chains WHERE chain_id = $1", [chainId]);
  if (row === undefined) return null;
  return {
    chainId,
    wallet: getAddress(row.wallet),
    accountIndex: row.account_index,
    deployed:
      row.test_usd === null || row.splitter === null
        ? null
        : {
            testUsd: getAddress(row.test_usd),
            splitter: getAddress(row.splitter),
            startBlock: BigInt(row.start_block ?? 0),
          },
    forwarderFactory: row.forwarder_factory === null ? null : getAddress(row.forwarder_factory),
    demoMintTx: row.demo_mint_tx as Hex | null,
    demoMintRaw: row.demo_mint_raw as Hex | null,
    claimTx: row.claim_tx as Hex | null,
  };
}

async function saveDevChainRecord(db: Db, record: DevChainRecord): Promise<void> {
  await db.query(
    `INSERT INTO evm_dev_chains (chain_id, wallet, account_index, test_usd, splitter, forwarder_factory, start_block, demo_mint_tx, demo_mint_raw, claim_tx)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
     ON CONFLICT (chain_id) DO UPDATE SET wallet = $2, account_index = $3, test_usd = $4, splitter = $5,
       forwarder_factory = $6, start_block = $7, demo_mint_tx = $8, demo_mint_raw = $9, claim_tx = $10`,
    [
      record.chainId,
      record.wallet.toLowerCase(),
      record.accountIndex,
      record.deployed?.testUsd.toLowerCase() ?? null,
      record.deployed?.splitter.toLowerCase() ?? null,
      record.forwarderFactory?.toLowerCase() ?? null,
      record.deployed?.startBlock.toString() ?? null,
      record.demoMintTx,
      record.demoMintRaw,
      record.claimTx,
    ],
  );
}

/**
 * The demo's mint on this chain, kept — signed, before it is sent — so that a restart does not mint again
 * (gateway/app/demo.ts).
 */
export async function recordDemoMint(
  db: Db,
  params: { chainId: number; wallet: Address; txHash: Hex; raw: Hex },
): Promise<void> {
  const record = (await readDevChainRecord(db, params.chainId)) ?? {
    chainId: params.chainId,
    wallet: params.wallet,
    accountIndex: null,
    deployed: null,
    forwarderFactory: null,
    demoMintTx: null,
    demoMintRaw: null,
    claimTx: null,
  };
  await saveDevChainRecord(db, { ...record, demoMintTx: params.txHash, demoMintRaw: params.raw });
}

export type DevChainParams = {
  railId: string;
  url: string;
  chain: Chain;
  transport: Transport;
  publicClient: PublicClient<Transport, Chain>;
  hotWalletKey: Hex | null;
  /** The Ignition deployment folder to read; null: deploy the module (once per database). */
  ignitionDeployment: string | null;
};

export type DevChain = {
  walletClient: WalletClient<Transport, Chain, Account>;
  /** The Hardhat development account taken; null: EVM_HOT_WALLET_KEY's wallet. */
  accountIndex: number | null;
  token: Address;
  splitter: { address: Address; startBlock: bigint };
  forwarderFactory: Address;
  /** How the contracts came: deployed by this start, by an earlier one, or read from an Ignition folder. */
  contracts: "deployed" | "deployed before" | "ignition";
};

/** The hot wallet and the contracts of a development chain, as this database had them or as taken now. */
export async function openDevChain(
  deps: { db: Db; logger: Logger },
  params: DevChainParams,
): Promise<DevChain> {
  const { publicClient, chain } = params;
  const record = await readDevChainRecord(deps.db, chain.id);
  const wallet = await hotWalletOf(deps, params, record);
  const walletClient = createWalletClient({ chain, transport: params.transport, account: wallet.account });
  const base: DevChainRecord =
    record === null
      ? {
          chainId: chain.id,
          wallet: wallet.account.address,
          accountIndex: wallet.accountIndex,
          deployed: null,
          forwarderFactory: null,
          demoMintTx: null,
          demoMintRaw: null,
          claimTx: wallet.claimTx,
        }
      : { ...record, claimTx: wallet.claimTx ?? record.claimTx };
  await saveDevChainRecord(deps.db, base);
  const where = `rail ${params.railId} (${params.url}, chain ${chain.id})`;
  const hasCode = async (address: Address) => ((await publicClient.getCode({ address })) ?? "0x") !== "0x";
  if (params.ignitionDeployment !== null) {
    const folder = await readIgnitionDeployment(params.ignitionDeployment);
    if (folder.chainId !== chain.id)
      throw new DevChainSetupError(
        `${where}: the Ignition deployment ${params.ignitionDeployment} is of chain ${folder.chainId}`,
      );
    if (!(await hasCode(folder.testUsd)))
      throw new DevChainSetupError(
        `${where}: no contract at TestUSD's ${folder.testUsd} from ${params.ignitionDeployment}: the node was restarted since; deploy again (npx hardhat ignition deploy ignition/modules/Switchyard.ts --network localhost)`,
      );
    const forwarderFactory = await ownForwarderFactory(deps, { ...params, walletClient }, base, {
      configured: folder.forwarderFactory,
      hasCode,
    });
    return {
      walletClient,
      accountIndex: wallet.accountIndex,
      token: folder.testUsd,
      splitter: { address: folder.splitter, startBlock: 0n },
      forwarderFactory,
      contracts: "ignition",
    };
  }
  if (base.deployed !== null && base.forwarderFactory !== null) {
    if (!(await hasCode(base.deployed.testUsd)))
      throw new DevChainSetupError(
        `${where}: this database's contracts (TestUSD at ${base.deployed.testUsd}) are not on the chain: the node was restarted since; use a new database with it (another PGLITE_DIR or DATABASE_URL)`,
      );
    return {
      walletClient,
      accountIndex: wallet.accountIndex,
      token: base.deployed.testUsd,
      splitter: { address: base.deployed.splitter, startBlock: base.deployed.startBlock },
      forwarderFactory: base.forwarderFactory,
      contracts: "deployed before",
    };
  }
  const startBlock = await publicClient.getBlockNumber();
  const deployed = await deployWithIgnition({ walletClient, publicClient });
  await saveDevChainRecord(deps.db, {
    ...base,
    deployed: { testUsd: deployed.testUsd, splitter: deployed.splitter, startBlock },
    forwarderFactory: deployed.forwarderFactory,
  });
  deps.logger.info({ ...deployed }, "deployed the Ignition module SwitchyardModule");
  return {
    walletClient,
    accountIndex: wallet.accountIndex,
    token: deployed.testUsd,
    splitter: { address: deployed.splitter, startBlock },
    forwarderFactory: deployed.forwarderFactory,
    contracts: "deployed",
  };
}

/**
 * The folder's ForwarderFactory when its owner (who takes its sweeps) is this gateway's wallet; otherwise one of
 * the wallet's own, deployed once and kept.
 */
async function ownForwarderFactory(
  deps: { db: Db },
  params: DevChainParams & { walletClient: WalletClient<Transport, Chain, Account> },
  record: DevChainRecord,
  folder: { configured: Address; hasCode: (address: Address) => Promise<boolean> },
): Promise<Address> {
  const wallet = params.walletClient.account.address;
  const owner = await params.publicClient.readContract({
    address: folder.configured,
    abi: forwarderFactoryAbi,
    functionName: "owner",
  });
  if (getAddress(owner) === wallet) return folder.configured;
  if (record.forwarderFactory !== null && (await folder.hasCode(record.forwarderFactory)))
    return record.forwarderFactory;
  const forwarderFactory = await deployForwarderFactory({
    walletClient: params.walletClient,
    publicClient: params.publicClient,
  });
  await saveDevChainRecord(deps.db, { ...record, forwarderFactory });
  return forwarderFactory;
}

/** The wallet, its development account's index (null: the key's), and the claim this start sent (null: none). */
type HotWallet = { account: Account; accountIndex: number | null; claimTx: Hex | null };

async function hotWalletOf(
  deps: { logger: Logger },
  params: DevChainParams,
  record: DevChainRecord | null,
): Promise<HotWallet> {
  const where = `rail ${params.railId} (${params.url}, chain ${params.chain.id})`;
  if (params.hotWalletKey !== null) {
    const account = privateKeyToAccount(params.hotWalletKey);
    if (record !== null && record.wallet !== account.address)
      throw new DevChainSetupError(
        `${where}: this database used the hot wallet ${record.wallet} there, not ${account.address}; use a new database for another wallet`,
      );
    return { account, accountIndex: null, claimTx: null };
  }
  if (record === null) return takeDevAccount(deps, params);
  // The database's wallet was EVM_HOT_WALLET_KEY's: taking a development account now would leave its contracts,
  // its ForwarderFactory and the ledger's view of its balance with a wallet this start cannot sign for.
  if (record.accountIndex === null)
    throw new DevChainSetupError(
      `${where}: this database used the hot wallet ${record.wallet} there, from EVM_HOT_WALLET_KEY: set that key again (or use a new database)`,
    );
  const account = mnemonicToAccount(hardhatMnemonic, { addressIndex: record.accountIndex });
  if (record.wallet !== account.address)
    throw new DevChainSetupError(
      `${where}: this database's hot wallet ${record.wallet} is not development account ${record.accountIndex}; use a new database`,
    );
  return { account, accountIndex: record.accountIndex, claimTx: await heldClaim(params, account, record) };
}

/**
 * The claim of this database's development account, checked on the node: its claim transaction there (the same
 * node: the claim recorded, null for nothing new), or, on a node started afresh, the account claimed again while
 * it is unused. Taken by another gateway meanwhile (it sent transactions, and not our claim), it is refused.
 */
async function heldClaim(
  params: DevChainParams,
  account: Account,
  record: DevChainRecord,
): Promise<Hex | null> {
  const where = `rail ${params.railId} (${params.url}, chain ${params.chain.id})`;
  if (record.claimTx !== null && (await claimOnNode(params.publicClient, record.claimTx, account)))
    return null;
  const sent = await params.publicClient.getTransactionCount({
    address: account.address,
    blockTag: "pending",
  });
  if (sent === 0) {
    const claimTx = await claimDevAccount(params, account);
    if (claimTx !== null) return claimTx;
  } else if (record.claimTx === null) return null; // recorded before claims were kept: nothing to compare
  throw new DevChainSetupError(
    `${where}: this database's development account ${record.accountIndex} (${account.address}) was taken on this node by another (the node was started afresh since); use a new database`,
  );
}

async function claimOnNode(
  publicClient: PublicClient<Transport, Chain>,
  hash: Hex,
  account: Account,
): Promise<boolean> {
  try {
    const tx = await publicClient.getTransaction({ hash });
    return getAddress(tx.from) === account.address && tx.nonce === 0;
  } catch (error) {
    if (error instanceof TransactionNotFoundError) return false;
    throw error;
  }
}

/** The bytes a claim carries, so that no claim on another node (a fresh one, the same fees) has its hash. */
const claimPayloadBytes = 32;

/**
 * Sends the account's first transaction (nonce 0, to itself, a random payload): its hash once mined, or null
 * when the node took another first transaction of it (another gateway's, a moment before).
 */
async function claimDevAccount(params: DevChainParams, account: Account): Promise<Hex | null> {
  const { publicClient } = params;
  if ((await publicClient.getBalance({ address: account.address })) === 0n)
    await publicClient.request({
      method: "hardhat_setBalance",
      params: [account.address, `0x${devAccountBalanceWei.toString(16)}`],
    } as never);
  const walletClient = createWalletClient({ chain: params.chain, transport: params.transport, account });
  const data = toHex(globalThis.crypto.getRandomValues(new Uint8Array(claimPayloadBytes)));
  let hash: Hex;
  try {
    hash = await walletClient.sendTransaction({ to: account.address, value: 0n, nonce: 0, data });
  } catch (error) {
    // The nonce is taken: the node refuses the transaction (its message differs between Hardhat and anvil).
    if (!(error instanceof BaseError)) throw error;
    return null;
  }
  // viem answers with a replacement's receipt when another transaction of nonce 0 (another gateway's claim, at a
  // higher fee on a node without automine) took its place: then the account is not ours.
  const receipt = await publicClient.waitForTransactionReceipt({ hash });
  return receipt.status === "success" && receipt.transactionHash === hash ? hash : null;
}

/**
 * The first of Hardhat's development accounts 10 to 19 that has never sent a transaction, taken by sending its
 * first one (nonce 0, to itself): of two gateways racing for it, the node accepts one such transaction only.
 */
async function takeDevAccount(deps: { logger: Logger }, params: DevChainParams): Promise<HotWallet> {
  const { publicClient } = params;
  const where = `rail ${params.railId} (${params.url}, chain ${params.chain.id})`;
  const nodeAccounts = (
    (await publicClient.request({ method: "eth_accounts" } as never)) as readonly string[]
  ).map((address) => getAddress(address));
  const first = mnemonicToAccount(hardhatMnemonic, { addressIndex: 0 }).address;
  if (!nodeAccounts.includes(first))
    throw new DevChainSetupError(
      `${where} set no EVM_HOT_WALLET_KEY, and the node does not hold Hardhat's development accounts: set the key`,
    );
  for (let index = gatewayAccountIndexFirst; index <= gatewayAccountIndexLast; index++) {
    const account = mnemonicToAccount(hardhatMnemonic, { addressIndex: index });
    const sent = await publicClient.getTransactionCount({ address: account.address, blockTag: "pending" });
    if (sent !== 0) continue;
    const claimTx = await claimDevAccount(params, account);
    if (claimTx !== null) return { account, accountIndex: index, claimTx };
    // Another gateway sent this account's first transaction a moment before: the next one.
    deps.logger.info({ index }, "development account taken meanwhile");
  }
  throw new DevChainSetupError(
    `${where}: Hardhat's development accounts ${gatewayAccountIndexFirst} to ${gatewayAccountIndexLast} have all sent transactions (other gateways, or scripts): set EVM_HOT_WALLET_KEY`,
  );
}

/** Whether TestUSD-style `mint(to, amount)` is open to the wallet on this token (simulated; nothing is sent). */
export async function canMint(
  publicClient: PublicClient<Transport, Chain>,
  params: { token: Address; wallet: Address; amount: bigint },
): Promise<boolean> {
  try {
    await publicClient.simulateContract({
      address: params.token,
      abi: testUsdAbi,
      functionName: "mint",
      args: [params.wallet, params.amount],
      account: params.wallet,
    });
    return true;
  } catch (error) {
    // A revert (no mint, or not for this wallet) says no; anything else (the node out of reach) is thrown.
    if (error instanceof BaseError && error.walk((cause) => cause instanceof ContractFunctionRevertedError))
      return false;
    throw error;
  }
}

/**
 * The development account that deploys and owns the price feeds of `npm start`'s embedded chain: not the hot wallet
 * (account 0), so that `npm run price-feed` never spends a nonce the gateway's own sends count on.
 */
export const priceFeedOwnerAccountIndex = 9;

/** The price feeds' owner on an embedded chain (development account priceFeedOwnerAccountIndex), and its reader. */
export function priceFeedOwner(chain: EmbeddedChain): {
  walletClient: WalletClient<Transport, Chain, Account>;
  publicClient: EmbeddedChain["publicClient"];
} {
  // The chain's accounts are development accounts 1 to 9, derived when it started.
  const account = chain.accounts[priceFeedOwnerAccountIndex - 1]!;
  return {
    walletClient: createWalletClient({ chain: chain.chain, transport: custom(chain.provider), account }),
    publicClient: chain.publicClient,
  };
}

export type ServedEmbeddedChain = {
  rail: string;
  chainId: number;
  url: string;
  contracts: DeployedContracts;
};

/**
 * `npm start`: each embedded chain served over JSON-RPC for wallets, the first at `port`, the next ones at the
 * ports after it, in the rails' order. A port that cannot be taken is reported (the chain is not served), not fatal.
 */
export async function serveEmbeddedChains(
  chains: ReadonlyMap<string, EmbeddedChain>,
  params: { host: string; port: number },
): Promise<{
  served: ServedEmbeddedChain[];
  refused: Array<{ rail: string; port: number; reason: string }>;
  close(): Promise<void>;
}> {
  const served: Array<ServedEmbeddedChain & { close(): Promise<void> }> = [];
  const refused: Array<{ rail: string; port: number; reason: string }> = [];
  let port = params.port;
  for (const [rail, chain] of chains) {
    try {
      const server = await serveChainRpc(chain.provider, { host: params.host, port });
      served.push({
        rail,
        chainId: chain.chain.id,
        url: server.url,
        contracts: chain.contracts,
        close: server.close,
      });
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (typeof code !== "string") throw error;
      refused.push({ rail, port, reason: code });
    }
    port++;
  }
  return {
    served: served.map(({ close: _close, ...chain }) => chain),
    refused,
    close: async () => {
      for (const server of served) await server.close();
    },
  };
}
