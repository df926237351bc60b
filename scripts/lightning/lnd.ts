// One lnd node on regtest against btcd: start, credentials, an authenticated `lightning` client,
// restart (same data, same ports) and stop; optionally from a saved wallet template (see saveTemplate).
import { existsSync } from "node:fs";
import { cp, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { type AuthenticatedLnd, authenticatedLndGrpc, getWalletInfo } from "lightning";
import type { Btcd } from "./btcd.ts";
import { type Daemon, startDaemon, waitFor } from "./process.ts";

export type LndCredentials = {
  /** host:port of the gRPC listener */
  readonly socket: string;
  readonly certPath: string;
  readonly macaroonPath: string;
  /** base64 of tls.cert and admin.macaroon, as `authenticatedLndGrpc` takes them */
  readonly cert: string;
  readonly macaroon: string;
};

export type LndNode = {
  readonly alias: string;
  readonly directory: string;
  readonly p2pSocket: string;
  credentials(): LndCredentials;
  /** A client for the running process; replaced on every (re)start. */
  lnd(): AuthenticatedLnd;
  publicKey(): string;
  /** Stops the process (SIGTERM) and waits for its exit. */
  stop(): Promise<void>;
  /** Starts it again on the same data directory and ports. */
  start(): Promise<void>;
  restart(): Promise<void>;
  readonly logFile: string;
  /** The node's data came from a template (its wallet was not created by this start). */
  readonly fromTemplate: boolean;
  /**
   * Stops the node, copies its data directory (wallet, macaroons, TLS key; not its logs) and `extraFiles` to
   * `directory` (atomically: a copy, then a rename; a template someone else saved meanwhile is kept) and starts it
   * again. Meant right after the first start, before its chain has any block but the genesis block, which every
   * regtest chain shares.
   */
  saveTemplate(directory: string, extraFiles?: Readonly<Record<string, string>>): Promise<void>;
};

export type LndNodeParams = {
  readonly binary: string;
  readonly alias: string;
  readonly directory: string;
  readonly rpcPort: number;
  readonly p2pPort: number;
  readonly btcd: Pick<Btcd, "rpcHost" | "rpcUser" | "rpcPass" | "certPath">;
  readonly extraArgs?: readonly string[];
  /**
   * A data directory saved by saveTemplate: copied in before the first start when it exists, so lnd opens a
   * wallet instead of creating one (the creation's scrypt key derivations are most of an lnd's start time).
   */
  readonly template?: string;
};

const startTimeoutMs = 120_000;
/** What a template leaves out: the node's logs. */
const templateExcluded = new Set(["logs", "lnd.out.log"]);

export async function startLndNode(params: LndNodeParams): Promise<LndNode> {
  await mkdir(params.directory, { recursive: true });
  const certPath = path.join(params.directory, "tls.cert");
  const macaroonPath = path.join(params.directory, "data", "chain", "bitcoin", "regtest", "admin.macaroon");
  const socket = `127.0.0.1:${params.rpcPort}`;
  const p2pSocket = `127.0.0.1:${params.p2pPort}`;
  const logFile = path.join(params.directory, "lnd.out.log");
  let daemon: Daemon | null = null;
  let client: AuthenticatedLnd | null = null;
  let credentials: LndCredentials | null = null;
  let publicKey = "";

  const args = [
    `--lnddir=${params.directory}`,
    "--bitcoin.regtest",
    "--bitcoin.node=btcd",
    `--btcd.rpchost=${params.btcd.rpcHost}`,
    `--btcd.rpcuser=${params.btcd.rpcUser}`,
    `--btcd.rpcpass=${params.btcd.rpcPass}`,
    `--btcd.rpccert=${params.btcd.certPath}`,
    "--noseedbackup",
    "--nobootstrap",
    "--norest",
    `--listen=${p2pSocket}`,
    `--externalip=${p2pSocket}`,
    `--rpclisten=${socket}`,
    `--alias=${params.alias}`,
    "--debuglevel=info",
    "--logging.no-commit-hash",
    "--bitcoin.defaultchanconfs=1",
    "--bitcoin.defaultremotedelay=4",
    "--trickledelay=50",
    "--gossip.sub-batch-delay=5ms",
    "--db.batch-commit-interval=10ms",
    "--caches.rpc-graph-cache-duration=100ms",
    "--accept-keysend",
    "--maxpendingchannels=10",
    ...(params.extraArgs ?? []),
  ];

  const start = async () => {
    const started = startDaemon({ name: `lnd-${params.alias}`, command: params.binary, args, logFile });
    daemon = started;
    await waitFor(
      `lnd ${params.alias} credentials`,
      async () => {
        if (started.child.exitCode !== null) throw new Error(`lnd ${params.alias} exited, see ${logFile}`);
        return existsSync(certPath) && existsSync(macaroonPath) ? true : undefined;
      },
      { timeoutMs: startTimeoutMs },
    );
    const cert = (await readFile(certPath)).toString("base64");
    const macaroon = (await readFile(macaroonPath)).toString("base64");
    credentials = { socket, certPath, macaroonPath, cert, macaroon };
    const { lnd } = authenticatedLndGrpc({ cert, macaroon, socket });
    const info = await waitFor(
      `lnd ${params.alias} RPC`,
      async () => {
        if (started.child.exitCode !== null) throw new Error(`lnd ${params.alias} exited, see ${logFile}`);
        return await getWalletInfo({ lnd });
      },
      { timeoutMs: startTimeoutMs, intervalMs: 200 },
    );
    publicKey = info.public_key;
    client = lnd;
  };

  const fromTemplate = params.template !== undefined && existsSync(path.join(params.template, "tls.cert"));
  if (fromTemplate) await cp(params.template as string, params.directory, { recursive: true });
  // A start that fails (credentials or RPC never came) stops the daemon it launched: left running, it outlived the
  // cluster's own clean-up, which knows only the nodes that started.
  await start().catch(async (error: unknown) => {
    await (daemon as Daemon | null)?.stop({ killAfterMs: 5_000 });
    throw error;
  });

  const stop = async () => {
    await (daemon as Daemon | null)?.stop({ killAfterMs: 30_000 });
  };

  const saveTemplate = async (directory: string, extraFiles: Readonly<Record<string, string>> = {}) => {
    await stop();
    const copy = `${directory}.tmp-${process.pid}-${Date.now()}`;
    await mkdir(path.dirname(directory), { recursive: true });
    await cp(params.directory, copy, {
      recursive: true,
      filter: (source) => !templateExcluded.has(path.relative(params.directory, source)),
    });
    for (const [name, content] of Object.entries(extraFiles)) await writeFile(path.join(copy, name), content);
    try {
      await rename(copy, directory);
    } catch (error) {
      await rm(copy, { recursive: true, force: true });
      if (!existsSync(directory)) throw error;
    }
    await start();
  };

  return {
    alias: params.alias,
    directory: params.directory,
    p2pSocket,
    logFile,
    credentials() {
      if (credentials === null) throw new Error(`lnd ${params.alias} not started`);
      return credentials;
    },
    lnd() {
      if (client === null) throw new Error(`lnd ${params.alias} not started`);
      return client;
    },
    publicKey: () => publicKey,
    fromTemplate,
    saveTemplate,
    stop,
    start,
    async restart() {
      await stop();
      await start();
    },
  };
}
