// Another token's behaviour at the test chain's TestUSD address: a contract of contracts/test/ that extends TestUSD
// without storage of its own before TestUSD's (USDC's blacklist, USDC's reason strings) is deployed once with TestUSD's
// own constructor arguments, and its code (immutables filled) is put at the TestUSD address with Hardhat's setCode:
// every balance, allowance and authorization stays, and the EIP-712 domain is rebuilt for that address as before.
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { Abi, Hex } from "viem";
import { testUsdDefaults } from "../../adapters/evm/deploy.ts";
import type { EmbeddedChain } from "../../adapters/evm/dev-chain.ts";

/** The code of contracts/test/`name`.sol at TestUSD's address: its ABI, and how to put TestUSD's own code back. */
export async function replaceTestUsdCode(
  chain: EmbeddedChain,
  name: string,
): Promise<{ abi: Abi; restore(): Promise<void> }> {
  const artifactPath = path.join(
    import.meta.dirname,
    "..",
    "..",
    "artifacts",
    "contracts",
    "test",
    `${name}.sol`,
    `${name}.json`,
  );
  const artifact = JSON.parse(await readFile(artifactPath, "utf8")) as { abi: Abi; bytecode: Hex };
  const hash = await chain.walletClient.deployContract({
    abi: artifact.abi,
    bytecode: artifact.bytecode,
    args: [testUsdDefaults.name, testUsdDefaults.symbol, testUsdDefaults.version],
    account: chain.accounts[0]!,
    chain: chain.chain,
  });
  const deployed = await chain.publicClient.waitForTransactionReceipt({ hash });
  if (deployed.contractAddress == null) throw new Error(`${name} was not deployed`);
  const code = await chain.publicClient.getCode({ address: deployed.contractAddress });
  if (code === undefined) throw new Error(`${name} has no code`);
  const own = await chain.publicClient.getCode({ address: chain.contracts.testUsd });
  if (own === undefined) throw new Error("TestUSD has no code");
  await chain.networkHelpers.setCode(chain.contracts.testUsd, code);
  return { abi: artifact.abi, restore: () => chain.networkHelpers.setCode(chain.contracts.testUsd, own) };
}
