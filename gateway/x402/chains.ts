// The chains x402 is paid on: one per configured EVM rail that receives (its token, its hot wallet, its public
// client), named as x402 names networks — CAIP-2 `eip155:<id>` in v2, and in v1 the legacy names, which exist only
// for public chains (the Hardhat chain, 31337, has none: v1 clients cannot pay it unless it runs under a public
// chain id, e.g. an EVM_CHAINS entry without rpc_url and with chain_id 84532 is "base-sepolia" to `x402-fetch`:
// test/evm/paywall-x402-v1.test.ts). The token's EIP-712 domain (what `extra.name` / `extra.version` must be) is read from the token, once.
import {
  type Address,
  type Chain,
  getAddress,
  type Hex,
  type PublicClient,
  parseAbi,
  type Transport,
} from "viem";
import type { Asset } from "../../core/index.ts";

/** One chain x402 payments settle on. */
export type X402Chain = {
  /** The EVM rail's id ("evm", "evm-…"): the invoice of each payment is on it, its wallet submits. */
  readonly rail: string;
  readonly chainId: number;
  readonly publicClient: PublicClient<Transport, Chain>;
  /** The EIP-3009 token (USDC, TestUSD) and its asset. */
  readonly token: Address;
  readonly asset: Asset;
  /** The rail's hot wallet: every x402 payment here is paid to it (payTo), and it submits the transfer. */
  readonly hotWallet: Address;
  /** How long settlement waits for the transaction to be mined. */
  readonly receiptTimeoutMs: number;
  /**
   * The blocks a transaction needs to be final on the rail (absent: 1). Past one, a single settlement's gas is booked
   * by the rail's send-gas pass once final, not by the settler from its first receipt (settle.ts bookGas).
   */
  readonly confirmations?: number;
  /**
   * The chain mines a block only when a transaction comes, stamped with the wall clock (the embedded Hardhat chain
   * without interval mining): its latest block's time may trail the clock by any length, and the next block's does
   * not (scheme.ts shutNotLapsed) — unless its clock was set behind the wall clock (evm_setNextBlockTimestamp to an
   * earlier time), which this does not allow for. A resend past validBefore is refused as expired at once only on a
   * chain of one confirmation: an embedded chain of block_interval_ms 0 and more confirmations, like an external node
   * that mines on demand (rpc_url: absent here), waits for a confirmed block's time, and answers pending while idle.
   * Absent: blocks come on the chain's own schedule.
   */
  readonly minesOnDemand?: boolean;
};

/** The token's EIP-712 domain as x402 puts it in `extra`. */
export type TokenDomainExtra = { name: string; version: string };

/** What x402 needs of an EIP-3009 token. */
export const eip3009Abi = parseAbi([
  "function name() view returns (string)",
  "function version() view returns (string)",
  "function balanceOf(address) view returns (uint256)",
  "function authorizationState(address authorizer, bytes32 nonce) view returns (bool)",
  "function transferWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, uint8 v, bytes32 r, bytes32 s)",
]);

/**
 * Whether the token has used `authorizer`'s `nonce` (EIP-3009 authorizationState: spent, or cancelled), at
 * `blockNumber` or the latest block. Throws what the node throws.
 */
export const nonceUsed = (
  chain: Pick<X402Chain, "publicClient" | "token">,
  authorizer: Address,
  nonce: Hex,
  blockNumber?: bigint,
): Promise<boolean> =>
  chain.publicClient.readContract({
    address: chain.token,
    abi: eip3009Abi,
    functionName: "authorizationState",
    args: [authorizer, nonce],
    ...(blockNumber === undefined ? {} : { blockNumber }),
  });

/** x402 v1's names of public EVM chains (@x402/evm's EVM_NETWORK_CHAIN_ID_MAP), by chain id. */
const v1NetworkNames: ReadonlyMap<number, string> = new Map([
  [1, "ethereum"],
  [11155111, "sepolia"],
  [2741, "abstract"],
  [11124, "abstract-testnet"],
  [84532, "base-sepolia"],
  [8453, "base"],
  [43113, "avalanche-fuji"],
  [43114, "avalanche"],
  [4689, "iotex"],
  [1329, "sei"],
  [1328, "sei-testnet"],
  [137, "polygon"],
  [80002, "polygon-amoy"],
  [3338, "peaq"],
  [1514, "story"],
  [41923, "educhain"],
  [324705682, "skale-base-sepolia"],
  [4326, "megaeth"],
  [143, "monad"],
  [988, "stable"],
  [2201, "stable-testnet"],
  [42220, "celo"],
  [14, "flare"],
]);

export const caip2Of = (chainId: number) => `eip155:${chainId}`;

/** The chain's x402 v1 name; null for a chain v1 has no name for (a local chain such as Hardhat's 31337). */
export const v1NetworkOf = (chainId: number): string | null => v1NetworkNames.get(chainId) ?? null;

/** The configured chains, looked up by rail or by network name, and their tokens' domains (read once each). */
export type ChainRegistry = {
  readonly chains: readonly X402Chain[];
  byRail(rail: string): X402Chain | null;
  /** By a v2 CAIP-2 id or a v1 name. */
  byNetwork(network: string): X402Chain | null;
  domainOf(chain: X402Chain): Promise<TokenDomainExtra>;
};

export function createChainRegistry(chains: readonly X402Chain[]): ChainRegistry {
  const domains = new Map<number, Promise<TokenDomainExtra>>();
  return {
    chains,
    byRail: (rail) => chains.find((chain) => chain.rail === rail) ?? null,
    byNetwork: (network) =>
      chains.find((chain) => network === caip2Of(chain.chainId) || network === v1NetworkOf(chain.chainId)) ??
      null,
    domainOf(chain) {
      let domain = domains.get(chain.chainId);
      if (domain === undefined) {
        domain = readDomain(chain);
        domains.set(chain.chainId, domain);
        // A failed read is not kept: the next asks the chain again.
        domain.catch(() => domains.delete(chain.chainId));
      }
      return domain;
    },
  };
}

async function readDomain(chain: X402Chain): Promise<TokenDomainExtra> {
  const [name, version] = await Promise.all([
    chain.publicClient.readContract({ address: chain.token, abi: eip3009Abi, functionName: "name" }),
    chain.publicClient.readContract({ address: chain.token, abi: eip3009Abi, functionName: "version" }),
  ]);
  return { name, version };
}

export const checksummed = (address: Address) => getAddress(address);
