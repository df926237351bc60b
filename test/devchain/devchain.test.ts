// The README's "Against your own Hardhat node", run as written: a `hardhat node` process, the Ignition module
// deployed by the Hardhat CLI, two gateways (`node gateway/main.ts`) each with its own database, the demo funding,
// an on-chain payout, and a restart that repeats nothing. Under CI=true a missing part fails instead of skipping.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { ethers } from "ethers";
import {
  createPublicClient,
  createWalletClient,
  erc20Abi,
  getAddress,
  type Hex,
  http,
  maxUint256,
  parseEventLogs,
} from "viem";
import { mnemonicToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { canonicalSplit, hardhatMnemonic, revenueSplitterAbi, testUsdAbi } from "../../adapters/evm/index.ts";
import { assets } from "../../core/index.ts";
import { openDb } from "../../gateway/db/index.ts";
import { createLedger } from "../../gateway/ledger/index.ts";
import { gatewayLedgerParams } from "../../gateway/ledger-params.ts";
import {
  evmMirrorAccounts,
  evmMirrorTransferCodes,
  evmMirrorTransferId,
} from "../../gateway/settlement/evm.ts";
import { freePort } from "../../scripts/lib/free-port.ts";

const root = path.join(import.meta.dirname, "..", "..");
const hardhatBin = path.join(root, "node_modules", ".bin", "hardhat");
const artifact = (name: string) => path.join(root, "artifacts", "contracts", `${name}.sol`, `${name}.json`);
// What this file needs: each missing part skips it on a developer's machine, and fails it under CI=true.
const missing = [
  existsSync(hardhatBin) ? null : `hardhat (${hardhatBin}): npm ci`,
  ...["TestUSD", "RevenueSplitter", "ForwarderFactory"].map((name) =>
    existsSync(artifact(name)) ? null : `the ${name} artifact: npx hardhat build`,
  ),
].filter((part) => part !== null);
const ci = process.env.CI === "true";
if (ci && missing.length > 0) throw new Error(`test/devchain under CI=true is missing ${missing.join(", ")}`);
const run = promisify(execFile);

/** A free port on 127.0.0.1; no port to take is an error (so a failure under CI, never a skip). */

type Started = { child: ChildProcess; output: () => string };

/** How long a started process is given to print its ready line before it is killed and the start fails. */
const startDeadlineMs = 120_000;

function startProcess(
  command: string,
  args: string[],
  env: Record<string, string>,
  ready: RegExp,
  deadlineMs = startDeadlineMs,
): Promise<Started> {
  const child = spawn(command, args, { cwd: root, env: { ...process.env, ...env } });
  let output = "";
  const collect = (chunk: Buffer) => {
    output += chunk.toString("utf8");
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  return new Promise((resolve, reject) => {
    const startedAt = Date.now();
    // A process that never prints its ready line is killed here: the caller holds no handle to it until it resolves,
    // so nothing else would stop it, and it would outlive the run holding its port.
    const timer = setInterval(() => {
      if (ready.test(output)) {
        clearInterval(timer);
        resolve({ child, output: () => output });
      } else if (Date.now() - startedAt > deadlineMs) {
        clearInterval(timer);
        child.removeAllListeners("exit");
        child.kill("SIGKILL");
        reject(new Error(`${args.join(" ")} not ready within ${deadlineMs} ms:\n${output}`));
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

describe.skipIf(missing.length > 0)("against your own Hardhat node", () => {
  let node: Started | null = null;
  let nodeUrl = "";
  let dir = "";
  const deploymentId = `devchain-test-${process.pid}`;
  const closedDeploymentId = `devchain-test-closed-${process.pid}`;
  const gateways: Started[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "switchyard-devchain-"));
    const port = await freePort();
    nodeUrl = `http://127.0.0.1:${port}`;
    node = await startProcess(
      hardhatBin,
      ["node", "--hostname", "127.0.0.1", "--port", String(port)],
      {},
      /Started HTTP and WebSocket JSON-RPC server/,
    );
    await deploy(deploymentId);
  });

  /** `npx hardhat ignition deploy ignition/modules/Switchyard.ts` to the node, as the deployment `id`. */
  async function deploy(id: string): Promise<void> {
    await run(
      hardhatBin,
      [
        "ignition",
        "deploy",
        "ignition/modules/Switchyard.ts",
        "--network",
        "localhost",
        "--deployment-id",
        id,
      ],
      { cwd: root, env: { ...process.env, HARDHAT_NODE_URL: nodeUrl } },
    );
  }

  afterAll(async () => {
    for (const gateway of gateways) await stop(gateway);
    await stop(node);
    for (const id of [deploymentId, closedDeploymentId])
      await rm(path.join(root, "ignition", "deployments", id), { recursive: true, force: true });
    if (dir !== "") await rm(dir, { recursive: true, force: true });
  });

  async function startGateway(
    database: string,
    deployment = deploymentId,
  ): Promise<{ url: string; apiKey: string; started: Started }> {
    const port = await freePort();
    const started = await startProcess(
      process.execPath,
      ["gateway/main.ts"],
      {
        EVM_RPC_URL: nodeUrl,
        EVM_IGNITION_DEPLOYMENT: deployment,
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
    // The test's node listens on loopback only (Hardhat's own default is every interface inside a container).
    const nodeListening = await run("ss", ["-ltnH", `sport = :${new URL(nodeUrl).port}`]);
    expect(
      nodeListening.stdout
        .trim()
        .split("\n")
        .map((line) => line.trim().split(/\s+/)[3]),
    ).toEqual([`127.0.0.1:${new URL(nodeUrl).port}`]);
    const first = await startGateway("a");
    // It listens with a backlog of REQUESTS_IN_FLIGHT_MAX (4,096 by default), not Node's 511: a burst of new
    // connections is held by the kernel, not dropped (a listening socket's Send-Q, as `ss` shows it, is its backlog).
    const somaxconn = Number((await readFile("/proc/sys/net/core/somaxconn", "utf8")).trim());
    const listening = await run("ss", ["-ltnH", `sport = :${new URL(first.url).port}`]);
    expect(listening.stdout.trim().split(/\s+/).slice(0, 3)).toEqual([
      "LISTEN",
      "0",
      String(Math.min(4_096, somaxconn)),
    ]);
    const text = first.started.output();
    expect(text).toMatch(/funded now with 1000\.000000 USDC of TestUSD minted on evm/);
    // The first of accounts 10 to 19 no database has taken: 10 when this test runs first on the node; another test of
    // the file run before it (a shuffled order) took one already.
    const taken = /Hardhat development account (\d+), taken by this database/.exec(text);
    const firstAccount = Number(taken?.[1]);
    expect(firstAccount).toBeGreaterThanOrEqual(10);
    expect(firstAccount).toBeLessThanOrEqual(19);
    expect(text).toMatch(/contracts from EVM_IGNITION_DEPLOYMENT/);
    const token = getAddress(/TestUSD (0x[0-9a-fA-F]{40})/.exec(text)?.[1] ?? "");
    const hotWallet = getAddress(/hot wallet (0x[0-9a-fA-F]{40})/.exec(text)?.[1] ?? "");
    const balanceOf = (address: `0x${string}`) =>
      client.readContract({ address: token, abi: erc20Abi, functionName: "balanceOf", args: [address] });
    expect(await balanceOf(hotWallet)).toBe(1_000_000_000n);
    const auth = { Authorization: `Bearer ${first.apiKey}`, "Content-Type": "application/json" };
    const account = (await (
      await fetch(`${first.url}/v1/accounts/acct_demo_customer`, { headers: auth })
    ).json()) as { balance: unknown };
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

    // The payment as the API shows it: its attempt's evidence is a transaction whose receipt, on the node, is a
    // success with one Transfer of exactly 25 TestUSD from the hot wallet the start printed to the payee.
    const { id: paymentId } = (await paid.json()) as { id: string };
    const payment = (await (
      await fetch(`${first.url}/v1/payments/${paymentId}`, { headers: auth })
    ).json()) as {
      status: string;
      attempts: { status: string; evidence: { tx_hash?: Hex } | null }[];
    };
    expect(payment.status).toBe("succeeded");
    const txHash = payment.attempts.find((attempt) => attempt.evidence?.tx_hash !== undefined)?.evidence
      ?.tx_hash;
    expect(txHash).toMatch(/^0x[0-9a-f]{64}$/);
    const receipt = await client.getTransactionReceipt({ hash: txHash as Hex });
    expect(receipt.status).toBe("success");
    expect(getAddress(receipt.from)).toBe(hotWallet);
    const transfers = parseEventLogs({ abi: erc20Abi, eventName: "Transfer", logs: receipt.logs });
    expect(transfers).toHaveLength(1);
    expect(getAddress(transfers[0]!.address)).toBe(token);
    expect(transfers[0]!.args).toEqual({ from: hotWallet, to: payee, value: 25_000_000n });

    // ethers v6 reads the same chain.
    const provider = new ethers.JsonRpcProvider(nodeUrl);
    const erc20 = new ethers.Contract(
      token,
      ["function balanceOf(address) view returns (uint256)"],
      provider,
    );
    expect(await erc20.getFunction("balanceOf")(payee)).toBe(25_000_000n);

    // A restart on the same database: the same wallet, nothing minted or deployed again.
    await stop(first.started);
    const again = await startGateway("a");
    expect(again.started.output()).toMatch(/funded at an earlier start/);
    expect(again.started.output()).toContain(hotWallet);
    expect(await balanceOf(hotWallet)).toBeLessThanOrEqual(1_000_000_000n - 25_000_000n);

    // A second gateway with its own database: another development account.
    const second = await startGateway("b");
    const secondAccount = Number(
      /Hardhat development account (\d+), taken by this database/.exec(second.started.output())?.[1],
    );
    expect(secondAccount).toBeGreaterThan(firstAccount);
    expect(secondAccount).toBeLessThanOrEqual(19);
  });

  it("where TestUSD's mint is closed, prints so and the USDC invoice that funds the customer, which works as printed", async () => {
    // A second deployment of the module whose TestUSD supply is minted up to uint256's maximum by account 0: every
    // further mint reverts (an overflow), so the gateway's simulated mint says no, as on a token whose mint is not
    // open to it. TestUSD itself is unchanged; its transfers work.
    await deploy(closedDeploymentId);
    const addresses = JSON.parse(
      await readFile(
        path.join(root, "ignition", "deployments", closedDeploymentId, "deployed_addresses.json"),
        "utf8",
      ),
    ) as Record<string, `0x${string}`>;
    const token = getAddress(addresses["SwitchyardModule#TestUSD"] ?? "");
    const client = createPublicClient({ chain: hardhat, transport: http(nodeUrl) });
    const owner = createWalletClient({
      chain: hardhat,
      transport: http(nodeUrl),
      account: mnemonicToAccount(hardhatMnemonic, { addressIndex: 0 }),
    });
    const send = async (functionName: "mint" | "transfer", args: readonly [`0x${string}`, bigint]) => {
      const hash = await owner.writeContract({ address: token, abi: testUsdAbi, functionName, args });
      expect((await client.waitForTransactionReceipt({ hash })).status).toBe("success");
    };
    await send("mint", [owner.account.address, maxUint256 - 1_000n]);

    const gateway = await startGateway("closed", path.join("ignition", "deployments", closedDeploymentId));
    const text = gateway.started.output();
    expect(text).toMatch(/not funded on evm: see below/);
    expect(text).toContain(`TestUSD's mint is not open on rail evm (chain 31337, token ${token})`);
    const curl = /TestUSD's mint is not open[\s\S]*?\n( {2}curl -s \S+\/v1\/invoices .*)\n/.exec(text)?.[1];
    expect(curl).toBeDefined();
    const auth = { Authorization: `Bearer ${gateway.apiKey}` };
    const customer = async () =>
      (
        (await (await fetch(`${gateway.url}/v1/accounts/acct_demo_customer`, { headers: auth })).json()) as {
          balance: { available: string };
        }
      ).balance.available;
    expect(await customer()).toBe("0.000000");

    // The printed curl, run by a shell as a user would: an invoice of 10 USDC naming a deposit address.
    const { stdout } = await run("sh", ["-c", curl as string], { cwd: root });
    const invoice = JSON.parse(stdout) as {
      id: string;
      status: string;
      instructions: Record<string, string>;
    };
    expect(invoice).toMatchObject({ status: "open", instructions: { deposit_address: expect.any(String) } });
    await send("transfer", [getAddress(invoice.instructions.deposit_address as string), 10_000_000n]);
    await expect
      .poll(
        async () =>
          (
            (await (await fetch(`${gateway.url}/v1/invoices/${invoice.id}`, { headers: auth })).json()) as {
              status: string;
            }
          ).status,
        { timeout: 60_000, interval: 500 },
      )
      .toBe("paid");
    expect(await customer()).toBe("10.000000");
  });

  it("pays into a split through the API, and the ledger mirrors the splitter's Paid from the node", async () => {
    const addresses = JSON.parse(
      await readFile(
        path.join(root, "ignition", "deployments", deploymentId, "deployed_addresses.json"),
        "utf8",
      ),
    ) as Record<string, `0x${string}`>;
    const splitter = getAddress(addresses["SwitchyardModule#RevenueSplitter"] ?? "");
    const client = createPublicClient({ chain: hardhat, transport: http(nodeUrl) });
    const owner = createWalletClient({
      chain: hardhat,
      transport: http(nodeUrl),
      account: mnemonicToAccount(hardhatMnemonic, { addressIndex: 0 }),
    });
    // A split of development accounts 2 and 3, created on the node by account 0 (as test/evm does).
    const recipients = [2, 3].map(
      (index) => mnemonicToAccount(hardhatMnemonic, { addressIndex: index }).address,
    );
    const split = canonicalSplit({ recipients, basisPoints: [6000, 4000] });
    const created = await client.waitForTransactionReceipt({
      hash: await owner.writeContract({
        address: splitter,
        abi: revenueSplitterAbi,
        functionName: "createSplit",
        args: [[...split.recipients], [...split.basisPoints]],
      }),
    });
    const [splitCreated] = parseEventLogs({
      abi: revenueSplitterAbi,
      eventName: "SplitCreated",
      logs: created.logs,
    });
    const splitId = splitCreated?.args.splitId as Hex;
    expect(splitId).toMatch(/^0x[0-9a-f]{64}$/);

    const gateway = await startGateway("split");
    const paid = await fetch(`${gateway.url}/v1/payments`, {
      method: "POST",
      headers: {
        Authorization: `Bearer ${gateway.apiKey}`,
        "Content-Type": "application/json",
        "Idempotency-Key": `devchain-split-${Date.now()}`,
      },
      body: JSON.stringify({
        amount: "2.000001",
        asset: "USDC",
        source: { account: "acct_demo_customer" },
        destination: { type: "evm_split", split_id: splitId },
      }),
    });
    const payment = (await paid.json()) as {
      status: string;
      attempts: { evidence: { tx_hash: Hex; log_index: number } }[];
    };
    expect(paid.status).toBe(201);
    expect(payment.status).toBe("succeeded");
    const evidence = payment.attempts[0]!.evidence;
    const receipt = await client.getTransactionReceipt({ hash: evidence.tx_hash });
    const paidLog = receipt.logs.find((log) => log.logIndex === evidence.log_index);
    expect(getAddress(paidLog?.address ?? "")).toBe(splitter);
    expect(
      await client.readContract({
        address: splitter,
        abi: revenueSplitterAbi,
        functionName: "undistributedOf",
        args: [splitId, getAddress(addresses["SwitchyardModule#TestUSD"] ?? "")],
      }),
    ).toBe(2_000_001n);

    // The gateway's watcher reads the node every 2 s (EVM_CONFIRMATIONS=1); after seven reads it is stopped and its
    // database opened here: the Paid event is mirrored, posted, from the splitter's custody to the split's account.
    await new Promise((resolve) => setTimeout(resolve, 15_000));
    await stop(gateway.started);
    const db = await openDb({ kind: "pglite", dataDir: path.join(dir, "split") });
    const ledger = createLedger({ ...gatewayLedgerParams, db });
    try {
      const id = (purpose: "pending" | "post" | "void") =>
        evmMirrorTransferId(
          { chainId: 31_337, generation: 0, txHash: evidence.tx_hash, logIndex: evidence.log_index },
          purpose,
          0,
        );
      const [pending, post, voided] = await Promise.all(
        (["pending", "post", "void"] as const).map(
          async (purpose) => (await ledger.lookupTransfers([id(purpose)]))[0],
        ),
      );
      const ids = evmMirrorAccounts({ chainId: 31_337, splitter });
      expect(pending).toMatchObject({
        amount: 2_000_001n,
        code: evmMirrorTransferCodes.paid,
        debitAccountId: ids.custody(assets.USDC),
        creditAccountId: ids.split(splitId, assets.USDC),
      });
      expect(pending?.evidence).toMatchObject({
        rail: "evm",
        reference: `${evidence.tx_hash}:${evidence.log_index}`,
        detail: { event: "Paid" },
      });
      expect(post?.amount).toBe(2_000_001n);
      expect(voided).toBeUndefined();
      const [splitAccount] = await ledger.lookupAccounts([ids.split(splitId, assets.USDC)]);
      expect((splitAccount?.creditsPosted ?? 0n) - (splitAccount?.debitsPosted ?? 0n)).toBe(2_000_001n);
    } finally {
      await ledger.close();
      await db.close();
    }
  });
});
