// USDC's blacklist on a test chain's TestUSD, for tests of a payee the token refuses. TestUSD has none (its gas is
// what the x402 tests book and split), so contracts/test/BlacklistingTestUSD.sol — TestUSD with the blacklist, its
// storage TestUSD's and one mapping after it — is deployed once with TestUSD's own constructor arguments, and its
// code (immutables filled) is put at the TestUSD address with Hardhat's setCode: every balance, allowance and
// authorization stays, and the EIP-712 domain is rebuilt for that address as before.
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { Abi, Address, Hex } from "viem";
import { testUsdDefaults } from "../../adapters/evm/deploy.ts";
import type { EmbeddedChain } from "../../adapters/evm/dev-chain.ts";

const artifactPath = path.join(
  import.meta.dirname,
  "..",
  "..",
  "artifacts",
  "contracts",
  "test",
  "BlacklistingTestUSD.sol",
  "BlacklistingTestUSD.json",
);

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
  const artifact = JSON.parse(await readFile(artifactPath, "utf8")) as { abi: Abi; bytecode: Hex };
  const account = chain.accounts[0]!;
  const hash = await chain.walletClient.deployContract({
    abi: artifact.abi,
    bytecode: artifact.bytecode,
    args: [testUsdDefaults.name, testUsdDefaults.symbol, testUsdDefaults.version],
    account,
    chain: chain.chain,
  });
  const deployed = await chain.publicClient.waitForTransactionReceipt({ hash });
  if (deployed.contractAddress == null) throw new Error("BlacklistingTestUSD was not deployed");
  const code = await chain.publicClient.getCode({ address: deployed.contractAddress });
  if (code === undefined) throw new Error("BlacklistingTestUSD has no code");
  await chain.networkHelpers.setCode(chain.contracts.testUsd, code);
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
