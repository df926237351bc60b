// The composition root's EVM part: the chain's clients (the embedded Hardhat chain, or a JSON-RPC endpoint
// with the hot wallet's key) and the RevenueSplitter's events followed into the ledger.
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
import { type EmbeddedChain, startEmbeddedChain } from "../../adapters/evm/index.ts";
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
