// `node scripts/evm-deploy.ts [--with-test-usd]`: deploys RevenueSplitter and the ForwarderFactory of deposit
// addresses (owned by the hot wallet; and, with the flag, TestUSD) to any
// chain through the one deployment path (adapters/evm/deploy.ts), from EVM_RPC_URL with the key in
// EVM_HOT_WALLET_KEY — the gateway's own settings — and prints the chain id and the addresses as JSON.
// `npm run compile` must have run (the bytecode comes from the Hardhat artifacts).
import { createPublicClient, createWalletClient, http } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { deployContracts, deployForwarderFactory, deployRevenueSplitter } from "../adapters/evm/index.ts";

const rpcTimeoutMs = 30_000;
const usage = "usage: EVM_RPC_URL=… EVM_HOT_WALLET_KEY=0x… node scripts/evm-deploy.ts [--with-test-usd]";

async function main(argv: readonly string[]): Promise<void> {
  const url = process.env.EVM_RPC_URL;
  const key = process.env.EVM_HOT_WALLET_KEY;
  if (argv.some((flag) => flag !== "--with-test-usd") || !url || !key || !/^0x[0-9a-fA-F]{64}$/.test(key)) {
    console.error(usage);
    process.exitCode = 2;
    return;
  }
  const transport = http(url, { timeout: rpcTimeoutMs });
  const publicClient = createPublicClient({ transport });
  const walletClient = createWalletClient({ transport, account: privateKeyToAccount(key as `0x${string}`) });
  const chainId = await publicClient.getChainId();
  const deployed = argv.includes("--with-test-usd")
    ? await deployContracts({ walletClient, publicClient })
    : {
        splitter: await deployRevenueSplitter({ walletClient, publicClient }),
        forwarderFactory: await deployForwarderFactory({ walletClient, publicClient }),
      };
  console.log(JSON.stringify({ chainId, ...deployed }, null, 2));
}

await main(process.argv.slice(2));
