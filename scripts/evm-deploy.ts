// `node scripts/evm-deploy.ts [--with-test-usd] [--deployment-id <id>]`: deploys our contracts from EVM_RPC_URL
// with the key in EVM_HOT_WALLET_KEY — the gateway's own settings — and prints the chain id and the addresses as
// JSON. With --with-test-usd (a development chain: TestUSD, RevenueSplitter and the ForwarderFactory of deposit
// addresses owned by the hot wallet) it deploys the Ignition module ignition/modules/Switchyard.ts into
// ignition/deployments/<id> (default chain-<chain id>, as `npx hardhat ignition deploy` names it), so a second
// run sends nothing and the gateway can read the folder (EVM_IGNITION_DEPLOYMENT). Without it (a chain with its
// own USDC) only RevenueSplitter and the ForwarderFactory. `npm run compile` must have run.
import path from "node:path";
import { createPublicClient, createWalletClient, defineChain, http } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { deployForwarderFactory, deployRevenueSplitter, deployWithIgnition } from "../adapters/evm/index.ts";
import { rpcCommandFailure } from "../gateway/app/secrets.ts";

const rpcTimeoutMs = 30_000;
const usage =
  "usage: EVM_RPC_URL=… EVM_HOT_WALLET_KEY=0x… node scripts/evm-deploy.ts [--with-test-usd] [--deployment-id <id>]";

function parseArgs(argv: readonly string[]): { withTestUsd: boolean; deploymentId: string | null } | null {
  let withTestUsd = false;
  let deploymentId: string | null = null;
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === "--with-test-usd") withTestUsd = true;
    else if (flag === "--deployment-id" && /^[A-Za-z0-9_-]{1,100}$/.test(argv[i + 1] ?? "")) {
      deploymentId = argv[i + 1] ?? null;
      i++;
    } else return null;
  }
  return deploymentId !== null && !withTestUsd ? null : { withTestUsd, deploymentId };
}

async function main(argv: readonly string[]): Promise<void> {
  const url = process.env.EVM_RPC_URL;
  const key = process.env.EVM_HOT_WALLET_KEY;
  const args = parseArgs(argv);
  if (args === null || !url || !key || !/^0x[0-9a-fA-F]{64}$/.test(key)) {
    console.error(usage);
    process.exitCode = 2;
    return;
  }
  const transport = http(url, { timeout: rpcTimeoutMs });
  const chainId = await createPublicClient({ transport }).getChainId();
  const chain = defineChain({
    id: chainId,
    name: `chain ${chainId}`,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [url] } },
  });
  const publicClient = createPublicClient({ chain, transport });
  const walletClient = createWalletClient({
    chain,
    transport,
    account: privateKeyToAccount(key as `0x${string}`),
  });
  if (args.withTestUsd) {
    const deploymentDir = path.join(
      import.meta.dirname,
      "..",
      "ignition",
      "deployments",
      args.deploymentId ?? `chain-${chainId}`,
    );
    const deployed = await deployWithIgnition({ walletClient, publicClient, deploymentDir });
    console.log(JSON.stringify({ chainId, ...deployed, ignitionDeployment: deploymentDir }, null, 2));
    return;
  }
  const deployed = {
    splitter: await deployRevenueSplitter({ walletClient, publicClient }),
    forwarderFactory: await deployForwarderFactory({ walletClient, publicClient }),
  };
  console.log(JSON.stringify({ chainId, ...deployed }, null, 2));
}

// A failure is printed without the endpoint's path or the wallet's key, as npm start prints its own.
await main(process.argv.slice(2)).catch((error: unknown) =>
  process.exit(rpcCommandFailure("evm-deploy", error, process.env)),
);
