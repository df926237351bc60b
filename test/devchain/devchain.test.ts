// The README's "Against your own Hardhat node", run as written: a `hardhat node` process, the Ignition module
// deployed by the Hardhat CLI, two gateways (`node gateway/main.ts`) each with its own database, the demo funding,
// an on-chain payout, and a restart that repeats nothing. Under CI=true a missing part fails instead of skipping.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { ethers } from "ethers";
import { createPublicClient, erc20Abi, getAddress, http } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = path.join(import.meta.dirname, "..", "..");
const hardhatBin = path.join(root, "node_modules", ".bin", "hardhat");
const artifactsBuilt = existsSync(path.join(root, "artifacts", "contracts", "TestUSD.sol", "TestUSD.json"));
if (process.env.CI === "true" && (!existsSync(hardhatBin) || !artifactsBuilt))
  throw new Error("test/devchain needs hardhat and the built artifacts (npm run compile) under CI");
const run = promisify(execFile);

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

type Started = { child: ChildProcess; output: () => string };

function startProcess(
  command: string,
  args: string[],
  env: Record<string, string>,
  ready: RegExp,
): Promise<Started> {
  const child = spawn(command, args, { cwd: root, env: { ...process.env, ...env } });
  let output = "";
  const collect = (chunk: Buffer) => {
    output += chunk.toString("utf8");
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  return new Promise((resolve, reject) => {
    const timer = setInterval(() => {
      if (ready.test(output)) {
        clearInterval(timer);
        resolve({ child, output: () => output });
      }
    }, 100);
    child.once("exit", (code) => {
      clearInterval(timer);
      reject(new Error(`${args.join(" ")} exited ${code}:\n${output}`));
    });
  });
}

async function stop(started: Started | null): Promise<void> {
  if (started === null || started.child.exitCode !== null) return;
  const exited = new Promise((resolve) => started.child.once("exit", resolve));
  started.child.kill("SIGTERM");
  await exited;
}

describe("against your own Hardhat node", () => {
  let node: Started | null = null;
  let nodeUrl = "";
  let dir = "";
  const deploymentId = `devchain-test-${process.pid}`;
  const gateways: Started[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "switchyard-devchain-"));
    const port = await freePort();
    nodeUrl = `http://127.0.0.1:${port}`;
    node = await startProcess(
      hardhatBin,
      ["node", "--port", String(port)],
      {},
      /Started HTTP and WebSocket JSON-RPC server/,
    );
    await run(
      hardhatBin,
      [
        "ignition",
        "deploy",
        "ignition/modules/Switchyard.ts",
        "--network",
        "localhost",
        "--deployment-id",
        deploymentId,
      ],
      { cwd: root, env: { ...process.env, HARDHAT_NODE_URL: nodeUrl } },
    );
  });

  afterAll(async () => {
    for (const gateway of gateways) await stop(gateway);
    await stop(node);
    await rm(path.join(root, "ignition", "deployments", deploymentId), { recursive: true, force: true });
    if (dir !== "") await rm(dir, { recursive: true, force: true });
  });

  async function startGateway(database: string): Promise<{ url: string; apiKey: string; started: Started }> {
    const port = await freePort();
    const started = await startProcess(
      process.execPath,
      ["gateway/main.ts"],
      {
        EVM_RPC_URL: nodeUrl,
        EVM_IGNITION_DEPLOYMENT: deploymentId,
        PGLITE_DIR: path.join(dir, database),
        PORT: String(port),
        LOG_LEVEL: "warn",
      },
      /Then look at a payment/,
    );
    gateways.push(started);
    const apiKey = /API key: +(sk_test_\S+)/.exec(started.output())?.[1];
    expect(apiKey).toBeDefined();
    return { url: `http://127.0.0.1:${port}`, apiKey: apiKey as string, started };
  }

  it("funds the demo once, pays out on chain, and a restart repeats nothing; two gateways take two wallets", async () => {
    const client = createPublicClient({ transport: http(nodeUrl) });
    const first = await startGateway("a");
    const text = first.started.output();
    expect(text).toMatch(/funded now with 1000\.000000 USDC of TestUSD minted on evm/);
    expect(text).toMatch(/Hardhat development account 10, taken by this database/);
    expect(text).toMatch(/contracts from EVM_IGNITION_DEPLOYMENT/);
    const token = getAddress(/TestUSD (0x[0-9a-fA-F]{40})/.exec(text)?.[1] ?? "");
    const hotWallet = getAddress(/hot wallet (0x[0-9a-fA-F]{40})/.exec(text)?.[1] ?? "");
    const balanceOf = (address: `0x${string}`) =>
      client.readContract({ address: token, abi: erc20Abi, functionName: "balanceOf", args: [address] });
    expect(await balanceOf(hotWallet)).toBe(1_000_000_000n);
    const auth = { Authorization: `Bearer ${first.apiKey}`, "Content-Type": "application/json" };
    const account = await (
      await fetch(`${first.url}/v1/accounts/acct_demo_customer`, { headers: auth })
    ).json();
    expect(account.balance).toMatchObject({ available: "1000.000000" });

    // The printed on-chain payout, to Hardhat's development account 1.
    const payee = getAddress("0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
    const paid = await fetch(`${first.url}/v1/payments`, {
      method: "POST",
      headers: { ...auth, "Idempotency-Key": `devchain-${Date.now()}` },
      body: JSON.stringify({
        amount: "25.00",
        asset: "USDC",
        source: { account: "acct_demo_customer" },
        destination: { type: "evm_address", address: payee, chain_id: 31_337 },
      }),
    });
    expect(paid.status).toBeLessThan(300);
    await expect.poll(() => balanceOf(payee), { timeout: 30_000 }).toBe(25_000_000n);

    // ethers v6 reads the same chain.
    const provider = new ethers.JsonRpcProvider(nodeUrl);
    const erc20 = new ethers.Contract(
      token,
      ["function balanceOf(address) view returns (uint256)"],
      provider,
    );
    expect(await erc20.balanceOf(payee)).toBe(25_000_000n);

    // A restart on the same database: the same wallet, nothing minted or deployed again.
    await stop(first.started);
    const again = await startGateway("a");
    expect(again.started.output()).toMatch(/funded at an earlier start/);
    expect(again.started.output()).toContain(hotWallet);
    expect(await balanceOf(hotWallet)).toBeLessThanOrEqual(1_000_000_000n - 25_000_000n);

    // A second gateway with its own database: another development account.
    const second = await startGateway("b");
    expect(second.started.output()).toMatch(/Hardhat development account 11, taken by this database/);
  });
});
