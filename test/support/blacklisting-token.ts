// USDC's blacklist on a test chain's TestUSD, for tests of a payee the token refuses. TestUSD has none (its gas is
// what the x402 tests book and split), so contracts/test/BlacklistingTestUSD.sol — TestUSD with the blacklist, its
// storage TestUSD's and one mapping after it — is put at the TestUSD address (token-code.ts).
import type { Address, Hex } from "viem";
import type { EmbeddedChain } from "../../adapters/evm/dev-chain.ts";
import { replaceTestUsdCode } from "./token-code.ts";

/** A tip far above the gateway's: a transaction sent with it is mined first in a block the gateway's is in too. */
export type AheadFees = { maxPriorityFeePerGas: bigint; maxFeePerGas: bigint };

/**
 * Gives the chain's TestUSD the blacklist; returns how to blacklist an address on it (sent by development account 1):
 * mined and checked, or only sent (`sendBlacklist`, with `fees`: for a block mined by hand, where it must come before
 * a transaction the gateway sent — which then reverts on chain though its gas estimate passed).
 */
export async function installBlacklist(chain: EmbeddedChain): Promise<{
  blacklist(address: Address): Promise<void>;
  unBlacklist(address: Address): Promise<void>;
  sendBlacklist(address: Address, fees: AheadFees): Promise<Hex>;
}> {
  const artifact = await replaceTestUsdCode(chain, "BlacklistingTestUSD");
  const account = chain.accounts[0]!;
  const send = (functionName: "blacklist" | "unBlacklist", address: Address, fees?: AheadFees) =>
    chain.walletClient.writeContract({
      address: chain.contracts.testUsd,
      abi: artifact.abi,
      functionName,
      args: [address],
      account,
      chain: chain.chain,
      // With fees given, the block may not be mined yet: a gas limit of its own, not an estimate against it.
      ...(fees === undefined ? {} : { ...fees, gas: 100_000n }),
    });
  const call = async (functionName: "blacklist" | "unBlacklist", address: Address) => {
    const sent = await send(functionName, address);
    const receipt = await chain.publicClient.waitForTransactionReceipt({ hash: sent });
    if (receipt.status !== "success") throw new Error(`${functionName}(${address}) reverted`);
  };
  return {
    blacklist: (address) => call("blacklist", address),
    unBlacklist: (address) => call("unBlacklist", address),
    sendBlacklist: (address, fees) => send("blacklist", address, fees),
  };
}
