// x402's `batch-settlement` contracts on a Hardhat chain, where the official @x402/evm client and facilitator expect
// them: our X402ChannelEscrow and X402Erc3009DepositCollector are deployed once (the collector with the escrow's
// canonical address, its one immutable) and their runtime code is put at the canonical addresses with Hardhat's
// setCode, as test/support/blacklisting-token.ts does for TestUSD. The facilitator reads channel state through
// Multicall3's tryAggregate, which Hardhat's chain lacks: contracts/test/Multicall3TryAggregate.sol goes at
// Multicall3's address the same way. The escrow has no immutables and builds its EIP-712 domain from the address it
// runs at, so the code works unchanged there.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { BATCH_SETTLEMENT_ADDRESS, ERC3009_DEPOSIT_COLLECTOR_ADDRESS } from "@x402/evm";
import {
  type Abi,
  type Account,
  type Address,
  type Chain,
  getAddress,
  type Hex,
  type PublicClient,
} from "viem";

export const batchSettlementAddress: Address = getAddress(BATCH_SETTLEMENT_ADDRESS);
export const erc3009DepositCollectorAddress: Address = getAddress(ERC3009_DEPOSIT_COLLECTOR_ADDRESS);
export const multicall3Address: Address = getAddress("0xcA11bde05977b3631167028862bE2a173976CA11");

type Artifact = { abi: Abi; bytecode: Hex };

const artifactsDir = path.join(import.meta.dirname, "..", "..", "artifacts", "contracts");

async function artifact(file: string, name: string): Promise<Artifact> {
  return JSON.parse(await readFile(path.join(artifactsDir, file, `${name}.json`), "utf8")) as Artifact;
}

/** The escrow's ABI as compiled (the official package's batchSettlementABI plus our events and errors). */
export async function x402ChannelEscrowAbi(): Promise<Abi> {
  return (await artifact("X402ChannelEscrow.sol", "X402ChannelEscrow")).abi;
}

/** What deploying needs: a wallet with an account, a public client, and Hardhat's setCode. */
export type ChannelChain = {
  publicClient: PublicClient;
  walletClient: {
    account: Account;
    chain: Chain | undefined;
    deployContract(args: {
      abi: Abi;
      bytecode: Hex;
      args?: readonly unknown[];
      account: Account;
      chain: Chain | undefined;
    }): Promise<Hex>;
  };
  setCode(address: Address, code: Hex): Promise<void>;
};

async function runtimeCodeOf(chain: ChannelChain, built: Artifact, args: readonly unknown[]): Promise<Hex> {
  const hash = await chain.walletClient.deployContract({
    abi: built.abi,
    bytecode: built.bytecode,
    args,
    account: chain.walletClient.account,
    chain: chain.walletClient.chain,
  });
  const receipt = await chain.publicClient.waitForTransactionReceipt({ hash });
  if (receipt.status !== "success" || receipt.contractAddress == null) throw new Error("deployment failed");
  const code = await chain.publicClient.getCode({ address: receipt.contractAddress });
  if (code === undefined || code === "0x") throw new Error("deployed contract has no code");
  return code;
}

/** Puts the escrow, the ERC-3009 deposit collector and Multicall3's tryAggregate at their canonical addresses. */
export async function installX402Channels(chain: ChannelChain): Promise<void> {
  const escrow = await artifact("X402ChannelEscrow.sol", "X402ChannelEscrow");
  const collector = await artifact("X402Erc3009DepositCollector.sol", "X402Erc3009DepositCollector");
  const multicall = await artifact(path.join("test", "Multicall3TryAggregate.sol"), "Multicall3TryAggregate");
  await chain.setCode(batchSettlementAddress, await runtimeCodeOf(chain, escrow, []));
  await chain.setCode(
    erc3009DepositCollectorAddress,
    await runtimeCodeOf(chain, collector, [batchSettlementAddress]),
  );
  await chain.setCode(multicall3Address, await runtimeCodeOf(chain, multicall, []));
}
