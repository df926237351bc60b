// A regtest Lightning network for tests and for people: one btcd and four lnd nodes — the gateway's
// node, a payer, a payee and a remote payee — with channels payer → gateway → payee → payer (so that the
// gateway also has a two-hop route that charges LND's default routing fee) and payee → remote, whose
// policy charges a clearly nonzero fee (remoteHopFee): the gateway reaches the remote payee only through
// that hop. Free ports, a temporary directory per run, a clean stop.
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {
  addPeer,
  createChainAddress,
  getChainBalance,
  getChannels,
  getRouteToDestination,
  getWalletInfo,
  openChannel,
} from "lightning";
import { freePort } from "../lib/free-port.ts";
import type { LightningBinaries } from "./binaries.ts";
import { type Btcd, startBtcd } from "./btcd.ts";
import { type LndCredentials, type LndNode, startLndNode } from "./lnd.ts";
import { waitFor } from "./process.ts";

export type NodeName = "gateway" | "payer" | "payee" | "remote";
export const nodeNames: readonly NodeName[] = ["gateway", "payer", "payee", "remote"];

/**
 * The payee's policy on its channel to the remote payee, set when the channel is opened (so the channel's
 * first announcement carries it: no update to wait for): a payment of `a` msat to the remote payee costs
 * baseMsat + a × ppm / 1,000,000 (rounded down, as LND does).
 */
export const remoteHopFee = { baseMsat: 2_000n, ppm: 5_000n } as const;

export type RegtestCluster = {
  readonly directory: string;
  readonly btcd: Btcd;
  readonly nodes: Readonly<Record<NodeName, LndNode>>;
  /** Mines blocks (rewards go to the nodes' wallets). */
  mine(blocks: number): Promise<void>;
  /** What another process needs to reach the cluster. */
  describe(): RegtestClusterDescription;
  stop(): Promise<void>;
  readonly startDurationMs: number;
};

export type RegtestClusterDescription = {
  readonly directory: string;
  readonly btcd: { rpcHost: string; rpcUser: string; rpcPass: string; certPath: string };
  readonly nodes: Readonly<Record<NodeName, LndCredentials & { publicKey: string; p2pSocket: string }>>;
};

export type StartClusterParams = {
  readonly binaries: Pick<LightningBinaries, "btcd" | "lnd">;
  /** Defaults to a fresh directory under the OS temp directory. */
  readonly directory?: string;
  /** Keep the data directory on stop (logs for debugging). */
  readonly keepDirectory?: boolean;
  readonly log?: (line: string) => void;
  readonly channelCapacitySat?: number;
  /**
   * Where each node's wallet is saved (a directory per node name, with the address btcd mines to): the first
   * start on a machine creates the wallets and saves them; later starts copy them in, so btcd is started with
   * the mining addresses and mines while the nodes start, instead of being restarted once they are up (and lnd's
   * btcd client waiting out its 5 s reconnect delay). Defaults to `<cache>/regtest-wallets/<build key>` for binaries in the build cache
   * (`<cache>/bin/<build key>/`), else null: every start creates its wallets.
   */
  readonly walletTemplates?: string | null;
};

/** btcd regtest activates SegWit for block 432 (BIP9, window 144); mine past it and past coinbase maturity. */
const activationBlocks = 450;
/** Blocks on top of the funding transactions: 6 makes the channels announceable (public). */
const channelConfirmationBlocks = 6;
const channelCapacitySatDefault = 10_000_000;
/** How long a node may take to sync after btcd's restart before it is restarted itself, and how often. */
const syncAttemptTimeoutMs = 40_000;
const syncAttemptsMax = 3;
const channelTimeoutMs = 120_000;
const portsPerCluster = 2 + nodeNames.length * 2;

async function distinctFreePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  for (let tries = 0; ports.size < count; tries += 1) {
    if (tries > count * 20) throw new Error("could not find free ports");
    ports.add(await freePort());
  }
  return [...ports];
}

/** Where a saved wallet keeps the address btcd mines to: a wallet that has it is a complete template. */
const miningAddressFile = "mining-address";

/** Every node's saved mining address, or null unless all nodes have a saved wallet. */
async function savedMiningAddresses(
  templateOf: (alias: NodeName) => string | null,
): Promise<Record<NodeName, string> | null> {
  const found: Partial<Record<NodeName, string>> = {};
  for (const alias of nodeNames) {
    const template = templateOf(alias);
    if (template === null) return null;
    const file = path.join(template, miningAddressFile);
    if (!existsSync(file)) return null;
    found[alias] = (await readFile(file, "utf8")).trim();
  }
  return found as Record<NodeName, string>;
}

/**
 * One piece on purpose: the bring-up is a sequence where each step needs the one before (btcd, wallets,
 * blocks, nodes, channels, the graph) and one failure handler stops whatever had started, in reverse.
 */
export async function startRegtestCluster(params: StartClusterParams): Promise<RegtestCluster> {
  const startedAt = performance.now();
  const log = params.log ?? (() => {});
  const directory = params.directory ?? (await mkdtemp(path.join(os.tmpdir(), "switchyard-regtest-")));
  const capacity = params.channelCapacitySat ?? channelCapacitySatDefault;
  const ports = await distinctFreePorts(portsPerCluster);
  const binaryDirectory = path.dirname(params.binaries.lnd);
  const cacheRoot = path.dirname(path.dirname(binaryDirectory)); // <cache>/bin/<build key>/lnd
  const templates =
    params.walletTemplates !== undefined
      ? params.walletTemplates
      : path.basename(path.dirname(binaryDirectory)) === "bin"
        ? path.join(cacheRoot, "regtest-wallets", path.basename(binaryDirectory))
        : null;
  const port = (i: number) => ports[i] as number;

  const templateOf = (alias: NodeName) => (templates === null ? null : path.join(templates, alias));
  const saved = await savedMiningAddresses(templateOf);

  log(`regtest: directory ${directory}`);
  const btcd = await startBtcd({
    binary: params.binaries.btcd,
    directory: path.join(directory, "btcd"),
    rpcPort: port(0),
    p2pPort: port(1),
    ...(saved === null ? {} : { miningAddresses: nodeNames.map((alias) => saved[alias]) }),
  });
  const started: LndNode[] = [];
  /** Each node's start, so that a failure waits for the others to settle before stopping those that started. */
  let starting: Promise<unknown>[] = [];
  const addresses = new Map<NodeName, string>();
  const stopAll = async () => {
    await Promise.allSettled(started.map((node) => node.stop()));
    await btcd.stop();
    if (!params.keepDirectory) await rm(directory, { recursive: true, force: true });
  };

  try {
    // With saved wallets, btcd mines to their addresses while the nodes start (their wallets watch those
    // addresses and find the coins as they sync). Else btcd has no generatetoaddress: it is restarted with the
    // new wallets' addresses once the nodes are up.
    const mined =
      saved === null
        ? null
        : btcd.generate(activationBlocks).then(
            () => null,
            (error: unknown) => error,
          );
    if (saved !== null) log(`regtest: mining ${activationBlocks} blocks (SegWit activates at 432)`);
    log(
      `regtest: btcd up; starting lnd ${nodeNames.join(", ")}${saved === null ? "" : " from saved wallets"}`,
    );
    starting = nodeNames.map(async (alias, i) => {
      const template = templateOf(alias);
      const node = await startLndNode({
        binary: params.binaries.lnd,
        alias,
        directory: path.join(directory, alias),
        rpcPort: port(2 + i * 2),
        p2pPort: port(3 + i * 2),
        btcd,
        ...(saved === null || template === null ? {} : { template }),
      });
      started.push(node);
      if (saved !== null) return node;
      const { address } = await createChainAddress({ lnd: node.lnd(), format: "p2wpkh" });
      addresses.set(alias, address);
      // btcd has only the genesis block so far: the wallet fits any regtest chain.
      if (template !== null) {
        log(`regtest: saving ${alias}'s wallet in ${template}`);
        await node.saveTemplate(template, { [miningAddressFile]: `${address}\n` });
      }
      return node;
    });
    const nodeList = (await Promise.all(starting)) as LndNode[];
    const nodes = Object.fromEntries(nodeNames.map((name, i) => [name, nodeList[i]])) as Record<
      NodeName,
      LndNode
    >;

    if (mined === null) {
      await btcd.restart({ miningAddresses: nodeNames.map((alias) => addresses.get(alias) as string) });
      log(`regtest: mining ${activationBlocks} blocks (SegWit activates at 432)`);
      await btcd.generate(activationBlocks);
    } else {
      const miningError = await mined;
      if (miningError !== null) throw miningError;
    }

    // lnd's wallet reconnects to the restarted btcd and rescans; now and then the rescan's reply is lost on the
    // reconnect ("Received unexpected reply: null") and that wallet never syncs. A restarted lnd rescans afresh.
    await Promise.all(
      nodeList.map(async (node) => {
        for (let attempt = 1; ; attempt += 1) {
          try {
            return await waitFor(
              `${node.alias} synced with spendable coins`,
              async () => {
                const info = await getWalletInfo({ lnd: node.lnd() });
                if (!info.is_synced_to_chain) return undefined;
                const { chain_balance } = await getChainBalance({ lnd: node.lnd() });
                return chain_balance > capacity * 2 ? true : undefined;
              },
              { timeoutMs: syncAttemptTimeoutMs, intervalMs: 250 },
            );
          } catch (error) {
            if (attempt >= syncAttemptsMax) throw error;
            log(
              `regtest: ${node.alias} did not sync, restarting it (attempt ${attempt + 1} of ${syncAttemptsMax})`,
            );
            await node.restart();
          }
        }
      }),
    );

    log("regtest: opening channels payer → gateway → payee → payer, payee → remote");
    const edges: readonly [NodeName, NodeName][] = [
      ["payer", "gateway"],
      ["gateway", "payee"],
      ["payee", "payer"],
      ["payee", "remote"],
    ];
    const fundingTxids = await Promise.all(
      edges.map(async ([from, to]) => {
        const policy =
          to === "remote"
            ? { base_fee_mtokens: remoteHopFee.baseMsat.toString(), fee_rate: Number(remoteHopFee.ppm) }
            : {};
        await waitFor(
          `${from} connected to ${to}`,
          async () => {
            await addPeer({
              lnd: nodes[from].lnd(),
              public_key: nodes[to].publicKey(),
              socket: nodes[to].p2pSocket,
            });
            return true;
          },
          { timeoutMs: channelTimeoutMs, intervalMs: 250 },
        );
        const opened = await waitFor(
          `${from} → ${to} channel open`,
          async () =>
            await openChannel({
              lnd: nodes[from].lnd(),
              local_tokens: capacity,
              partner_public_key: nodes[to].publicKey(),
              chain_fee_tokens_per_vbyte: 2,
              ...policy,
            }),
          { timeoutMs: channelTimeoutMs, intervalMs: 500 },
        );
        return opened.transaction_id;
      }),
    );
    await waitFor(
      "funding transactions in the mempool",
      async () => {
        const mempool = new Set(await btcd.mempool());
        return fundingTxids.every((txid) => mempool.has(txid)) ? true : undefined;
      },
      { timeoutMs: channelTimeoutMs, intervalMs: 100 },
    );
    await btcd.generate(channelConfirmationBlocks);

    await Promise.all(
      nodeNames.map((name) =>
        waitFor(
          `${name} channels active`,
          async () => {
            const { channels } = await getChannels({ lnd: nodes[name].lnd(), is_active: true });
            const expected = edges.filter((edge) => edge.includes(name)).length;
            return channels.length >= expected ? true : undefined;
          },
          { timeoutMs: channelTimeoutMs, intervalMs: 100 },
        ),
      ),
    );
    // Routes that need the gossip: payer → gateway → payee, gateway → payee → payer and gateway → payee →
    // remote (announced with its fee policy, so the route's fee is the policy's from the start).
    const routes: readonly [NodeName, NodeName][] = [
      ["payer", "payee"],
      ["gateway", "payer"],
      ["gateway", "remote"],
    ];
    await Promise.all(
      routes.map(([from, to]) =>
        waitFor(
          `route ${from} → ${to} in the graph`,
          async () => {
            const { route } = await getRouteToDestination({
              lnd: nodes[from].lnd(),
              destination: nodes[to].publicKey(),
              tokens: 1000,
            });
            return route ? true : undefined;
          },
          { timeoutMs: channelTimeoutMs, intervalMs: 200 },
        ),
      ),
    );

    const describe = (): RegtestClusterDescription => ({
      directory,
      btcd: { rpcHost: btcd.rpcHost, rpcUser: btcd.rpcUser, rpcPass: btcd.rpcPass, certPath: btcd.certPath },
      nodes: Object.fromEntries(
        nodeNames.map((name) => [
          name,
          {
            ...nodes[name].credentials(),
            publicKey: nodes[name].publicKey(),
            p2pSocket: nodes[name].p2pSocket,
          },
        ]),
      ) as RegtestClusterDescription["nodes"],
    });
    await writeFile(path.join(directory, "cluster.json"), `${JSON.stringify(describe(), null, 2)}\n`);
    const startDurationMs = Math.round(performance.now() - startedAt);
    log(`regtest: ready in ${(startDurationMs / 1000).toFixed(1)} s`);
    return {
      directory,
      btcd,
      nodes,
      async mine(blocks) {
        await btcd.generate(blocks);
      },
      describe,
      stop: stopAll,
      startDurationMs,
    };
  } catch (error) {
    log(`regtest: start failed (${String(error)}); logs in ${directory}`);
    // The nodes still starting when one failed finish first: before, they started after this clean-up and were left
    // running.
    await Promise.allSettled(starting);
    await Promise.allSettled(started.map((node) => node.stop()));
    await btcd.stop();
    throw error;
  }
}
