// Hardhat's in-process chain for `npm start` and the tests: EDR behind an EIP-1193 provider, viem clients
// on it, the contracts deployed through the one deployment path, and the well-known development accounts
// (Hardhat's test mnemonic: never hold real money with them).
import {
  type Account,
  type Chain,
  createPublicClient,
  createWalletClient,
  custom,
  defineChain,
  type EIP1193Provider,
  type PublicClient,
  type Transport,
  type WalletClient,
} from "viem";
import { mnemonicToAccount } from "viem/accounts";
import { type DeployedContracts, deployContracts } from "./deploy.ts";

type NetworkHelpers = Awaited<ReturnType<typeof import("hardhat")["network"]["connect"]>>["networkHelpers"];

export const hardhatMnemonic = "test test test test test test test test test test test junk";

export type EmbeddedChain = {
  chain: Chain;
  provider: EIP1193Provider;
  publicClient: PublicClient<Transport, Chain>;
  /** The gateway's hot wallet: development account 0, which also deployed the contracts. */
  walletClient: WalletClient<Transport, Chain, Account>;
  contracts: DeployedContracts;
  /** Development accounts 1 to 9, for payees and payers in demos and tests. */
  accounts: readonly Account[];
  /** Hardhat's network helpers on this chain (mine, takeSnapshot, …): tests use them for confirmations and reorgs. */
  networkHelpers: NetworkHelpers;
  close(): Promise<void>;
};

/** blockIntervalMs: also mine an empty block this often (0: a block per transaction only, Hardhat's default). */
export async function startEmbeddedChain(options: { blockIntervalMs?: number } = {}): Promise<EmbeddedChain> {
  // Hardhat is a development dependency: loaded only when the embedded chain is asked for.
  const { network } = await import("hardhat");
  const connection = await network.connect();
  const provider = connection.provider as unknown as EIP1193Provider;
  // Transactions are still mined at once (automine stays on); the interval adds the blocks that confirm them.
  if ((options.blockIntervalMs ?? 0) > 0)
    await provider.request({ method: "evm_setIntervalMining", params: [options.blockIntervalMs] } as never);
  const chainId = Number(await provider.request({ method: "eth_chainId" }));
  const chain = defineChain({
    id: chainId,
    name: "Hardhat (in-process)",
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [] } },
  });
  const transport = custom(provider);
  const publicClient = createPublicClient({ chain, transport, pollingInterval: 50 });
  const hotWallet = mnemonicToAccount(hardhatMnemonic, { addressIndex: 0 });
  const walletClient = createWalletClient({ chain, transport, account: hotWallet });
  const contracts = await deployContracts({ walletClient, publicClient });
  const accounts = Array.from({ length: 9 }, (_, i) =>
    mnemonicToAccount(hardhatMnemonic, { addressIndex: i + 1 }),
  );
  return {
    chain,
    provider,
    publicClient,
    walletClient,
    contracts,
    accounts,
    networkHelpers: connection.networkHelpers,
    close: () => connection.close(),
  };
}
