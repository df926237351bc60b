// What a database records of a developer's `hardhat node` (evm_dev_chains), against a real node: a database that
// used EVM_HOT_WALLET_KEY does not take a development account when started without it; a node started afresh
// (a new `hardhat node` on the same port) does not give this database's account to another gateway, nor
// lets this database use it after another took it; and the demo mint, kept before it is sent, is not minted twice
// when the gateway dies (SIGKILL) just after the node received it, nor lost when it dies just before, nor in the way
// of a restart when another transaction of the wallet took the nonce it was signed with.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer as createHttpServer, type Server } from "node:http";
import os from "node:os";
import path from "node:path";
import {
  AbiFunctionSignatureNotFoundError,
  type Chain,
  createPublicClient,
  createWalletClient,
  decodeFunctionData,
  type Hex,
  http,
  parseTransaction,
  recoverTransactionAddress,
  type TransactionSerialized,
} from "viem";
import { mnemonicToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  deployWithIgnition,
  evmMigrations,
  hardhatMnemonic,
  ignitionModuleId,
  testUsdAbi,
} from "../../adapters/evm/index.ts";
import { silentLogger } from "../../core/index.ts";
import { DevChainSetupError, openDevChain } from "../../gateway/app/dev-chain.ts";
import { migrate, openPglite } from "../../gateway/db/index.ts";
import { freePort } from "../../scripts/lib/free-port.ts";

const root = path.join(import.meta.dirname, "..", "..");
const hardhatBin = path.join(root, "node_modules", ".bin", "hardhat");
const missing = [existsSync(hardhatBin) ? null : `hardhat (${hardhatBin}): npm ci`].filter(
  (part) => part !== null,
);
if (process.env.CI === "true" && missing.length > 0)
  throw new Error(`test/devchain under CI=true is missing ${missing.join(", ")}`);

type Started = { child: ChildProcess; output: () => string; exited: Promise<number | null> };

function spawnProcess(command: string, args: string[], env: Record<string, string>): Started {
  const child = spawn(command, args, { cwd: root, env: { ...process.env, ...env } });
  let output = "";
  const collect = (chunk: Buffer) => {
    output += chunk.toString("utf8");
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, output: () => output, exited };
}

async function ready(started: Started, pattern: RegExp): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (!pattern.test(started.output())) {
    if (started.child.exitCode !== null || started.child.signalCode !== null)
      throw new Error(`exited ${started.child.exitCode ?? started.child.signalCode}:\n${started.output()}`);
    if (Date.now() > deadline) throw new Error(`not ready:\n${started.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function stop(started: Started | null): Promise<void> {
  if (started === null || started.child.exitCode !== null || started.child.signalCode !== null) return;
  started.child.kill("SIGTERM");
  await started.exited;
}

const devAccount = (index: number) => mnemonicToAccount(hardhatMnemonic, { addressIndex: index });

describe.skipIf(missing.length > 0)("a development chain's record", () => {
  let node: Started | null = null;
  let nodeUrl = "";
  let dir = "";
  let chain: Chain;
  const transport = () => http(nodeUrl);
  const publicClient = () => createPublicClient({ chain, transport: transport() });

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "switchyard-devchain-records-"));
    const port = await freePort();
    nodeUrl = `http://127.0.0.1:${port}`;
    chain = { ...hardhat, rpcUrls: { default: { http: [nodeUrl] } } };
    await startNode();
  });
  /** A fresh `hardhat node` on the same port (the one before stopped): nothing of the old chain on it. */
  async function startNode() {
    await stop(node);
    node = spawnProcess(hardhatBin, ["node", "--hostname", "127.0.0.1", "--port", new URL(nodeUrl).port], {});
    await ready(node, /Started HTTP and WebSocket JSON-RPC server/);
  }
  afterAll(async () => {
    await stop(node);
    if (dir !== "") await rm(dir, { recursive: true, force: true });
  });

  async function database() {
    const db = await openPglite(undefined);
    await migrate(db, [evmMigrations]);
    return db;
  }

  /** The module deployed by development account 0 and written as an Ignition deployment folder. */
  async function ignitionFolder(name: string): Promise<string> {
    const deployed = await deployWithIgnition({
      walletClient: createWalletClient({ chain, transport: transport(), account: devAccount(0) }),
      publicClient: publicClient(),
    });
    const folder = path.join(dir, name);
    await mkdir(folder, { recursive: true });
    await writeFile(
      path.join(folder, "deployed_addresses.json"),
      JSON.stringify({
        [`${ignitionModuleId}#TestUSD`]: deployed.testUsd,
        [`${ignitionModuleId}#RevenueSplitter`]: deployed.splitter,
        [`${ignitionModuleId}#ForwarderFactory`]: deployed.forwarderFactory,
      }),
    );
    await writeFile(path.join(folder, "journal.jsonl"), `\n${JSON.stringify({ chainId: chain.id })}\n`);
    return folder;
  }

  const open = (
    db: Awaited<ReturnType<typeof database>>,
    params: { hotWalletKey?: Hex | null; ignitionDeployment: string },
  ) =>
    openDevChain(
      { db, logger: silentLogger },
      {
        railId: "evm",
        url: nodeUrl,
        chain,
        transport: transport(),
        publicClient: publicClient(),
        hotWalletKey: params.hotWalletKey ?? null,
        ignitionDeployment: params.ignitionDeployment,
      },
    );

  it("started without EVM_HOT_WALLET_KEY after a start with it, refuses rather than take a development account", async () => {
    const folder = await ignitionFolder("keyed");
    const db = await database();
    const key = devAccount(7).getHdKey().privateKey;
    const keyHex = `0x${Buffer.from(key!).toString("hex")}` as Hex;
    const first = await open(db, { hotWalletKey: keyHex, ignitionDeployment: folder });
    expect(first.walletClient.account.address).toBe(devAccount(7).address);
    const sentBefore = await publicClient().getTransactionCount({ address: devAccount(10).address });
    await expect(open(db, { ignitionDeployment: folder })).rejects.toThrow(DevChainSetupError);
    await expect(open(db, { ignitionDeployment: folder })).rejects.toThrow(/set that key again/);
    // No development account was taken on the way.
    expect(await publicClient().getTransactionCount({ address: devAccount(10).address })).toBe(sentBefore);
    expect((await open(db, { hotWalletKey: keyHex, ignitionDeployment: folder })).accountIndex).toBeNull();
    await db.close();
  });

  it("on a node started afresh, claims its account again, or refuses it when another gateway took it first", async () => {
    await startNode();
    const a = await database();
    const b = await database();
    const c = await database();
    const before = await ignitionFolder("before-reset");
    expect((await open(a, { ignitionDeployment: before })).accountIndex).toBe(10);
    expect((await open(c, { ignitionDeployment: before })).accountIndex).toBe(11);

    // A fresh node: another gateway (database b) comes first and takes account 10, which database a recorded.
    await startNode();
    const after = await ignitionFolder("after-reset");
    expect((await open(b, { ignitionDeployment: after })).accountIndex).toBe(10);
    await expect(open(a, { ignitionDeployment: after })).rejects.toThrow(/was taken on this node by another/);
    // Database c comes back before anyone took its account 11: claimed again, so the next newcomer gets 12.
    expect((await open(c, { ignitionDeployment: after })).accountIndex).toBe(11);
    expect(await publicClient().getTransactionCount({ address: devAccount(11).address })).toBeGreaterThan(0);
    const d = await database();
    expect((await open(d, { ignitionDeployment: after })).accountIndex).toBe(12);
    // And a restart on an unchanged node claims nothing again.
    const sent = await publicClient().getTransactionCount({ address: devAccount(11).address });
    expect((await open(c, { ignitionDeployment: after })).accountIndex).toBe(11);
    expect(await publicClient().getTransactionCount({ address: devAccount(11).address })).toBe(sent);
    for (const db of [a, b, c, d]) await db.close();
  });

  describe("the demo mint and a gateway that dies while sending it", () => {
    let proxy: Server | null = null;
    let proxyUrl = "";
    /** What the proxy does with the next demo mint it sees: crash the gateway before or after forwarding it. */
    let onMint: "crash before" | "crash after" | "forward" = "forward";
    let gateway: Started | null = null;
    const mints: Hex[] = [];
    /** The mints the gateway died sending (the proxy never forwarded them). */
    const unsent: Hex[] = [];

    beforeAll(async () => {
      await startNode();
      proxy = createHttpServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on("data", (chunk: Buffer) => chunks.push(chunk));
        req.on("end", async () => {
          const body = Buffer.concat(chunks).toString("utf8");
          const calls = [JSON.parse(body)].flat() as Array<{ method: string; params?: unknown[] }>;
          const mint = calls.find(
            (call) => call.method === "eth_sendRawTransaction" && isMint(call.params?.[0]),
          );
          if (mint !== undefined && onMint === "crash before") {
            unsent.push(mint.params![0] as Hex);
            onMint = "forward";
            gateway?.child.kill("SIGKILL");
            res.destroy();
            return;
          }
          const answer = await fetch(nodeUrl, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body,
          });
          const text = await answer.text();
          if (mint !== undefined) mints.push(mint.params![0] as Hex);
          if (mint !== undefined && onMint === "crash after") {
            onMint = "forward";
            gateway?.child.kill("SIGKILL");
            res.destroy();
            return;
          }
          res.writeHead(answer.status, { "content-type": "application/json" }).end(text);
        });
      });
      await new Promise<void>((resolve) => proxy!.listen(0, "127.0.0.1", resolve));
      proxyUrl = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;
    });
    afterAll(async () => {
      await stop(gateway);
      proxy?.closeAllConnections();
      await new Promise((resolve) => (proxy === null ? resolve(null) : proxy.close(resolve)));
    });

    function isMint(raw: unknown): boolean {
      if (typeof raw !== "string") return false;
      const tx = parseTransaction(raw as Hex);
      if (tx.data === undefined) return false;
      try {
        return decodeFunctionData({ abi: testUsdAbi, data: tx.data }).functionName === "mint";
      } catch (error) {
        if (error instanceof AbiFunctionSignatureNotFoundError) return false;
        throw error;
      }
    }

    async function startGateway(database: string): Promise<Started> {
      gateway = spawnProcess(process.execPath, ["gateway/main.ts"], {
        EVM_RPC_URL: proxyUrl,
        PGLITE_DIR: path.join(dir, database),
        PORT: String(await freePort()),
        LOG_LEVEL: "warn",
      });
      return gateway;
    }

    const balanceOf = async (token: Hex, address: Hex) =>
      publicClient().readContract({
        address: token,
        abi: testUsdAbi,
        functionName: "balanceOf",
        args: [address],
      });

    for (const when of ["crash after", "crash before"] as const) {
      it(`mints once when the gateway dies just ${when.slice(6)} the node receives the mint`, async () => {
        const database = `mint-${when.replace(" ", "-")}`;
        const seen = mints.length;
        onMint = when;
        const crashed = await startGateway(database);
        await crashed.exited;
        expect(crashed.child.signalCode, crashed.output()).toBe("SIGKILL");
        const restarted = await startGateway(database);
        await ready(restarted, /Then look at a payment/);
        const text = restarted.output();
        const token = /TestUSD (0x[0-9a-fA-F]{40})/.exec(text)?.[1] as Hex;
        const hotWallet = /hot wallet (0x[0-9a-fA-F]{40})/.exec(text)?.[1] as Hex;
        expect(token).toBeDefined();
        await stop(restarted);
        // One mint of 1,000 TestUSD on the node, sent once (the crash before it: sent by the restart).
        expect(mints.length - seen).toBe(1);
        expect(await balanceOf(token, hotWallet)).toBe(1_000_000_000n);
        expect(text).toMatch(/funded at an earlier start with 1000\.000000 USDC/);
      });
    }

    it("a kept mint whose nonce another transaction took meanwhile does not stop the restart: minted afresh, once", async () => {
      const database = "mint-stale-nonce";
      onMint = "crash before";
      const crashed = await startGateway(database);
      await crashed.exited;
      expect(crashed.child.signalCode, crashed.output()).toBe("SIGKILL");
      // The hot wallet sends another transaction with the nonce the kept mint was signed with: it can never be mined.
      const kept = unsent.at(-1)!;
      const hotWallet = await recoverTransactionAddress({
        serializedTransaction: kept as TransactionSerialized,
      });
      const index = Array.from({ length: 10 }, (_, i) => 10 + i).find(
        (i) => devAccount(i).address === hotWallet,
      );
      expect(index, hotWallet).toBeDefined();
      const { nonce } = parseTransaction(kept);
      const walletClient = createWalletClient({ chain, transport: transport(), account: devAccount(index!) });
      const taker = await walletClient.sendTransaction({ to: hotWallet, value: 0n, nonce });
      await publicClient().waitForTransactionReceipt({ hash: taker });
      expect(await publicClient().getTransactionCount({ address: hotWallet })).toBeGreaterThan(nonce!);

      const seen = mints.length;
      const restarted = await startGateway(database);
      await ready(restarted, /Then look at a payment/);
      const text = restarted.output();
      await stop(restarted);
      const token = /TestUSD (0x[0-9a-fA-F]{40})/.exec(text)?.[1] as Hex;
      expect(text).toMatch(/funded now with 1000\.000000 USDC/);
      expect(mints.length - seen).toBe(1);
      expect(mints.at(-1)).not.toBe(kept);
      expect(await balanceOf(token, hotWallet)).toBe(1_000_000_000n);
      // The mint that replaced it is the one kept now: the next start mints nothing.
      const again = await startGateway(database);
      await ready(again, /Then look at a payment/);
      await stop(again);
      expect(again.output()).toMatch(/funded at an earlier start with 1000\.000000 USDC/);
      expect(mints.length - seen).toBe(1);
      expect(await balanceOf(token, hotWallet)).toBe(1_000_000_000n);
    });
  });
});
