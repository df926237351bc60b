// One lnd node on regtest against btcd: start, credentials, an authenticated `lightning` client,
// restart (same data, same ports) and stop.
import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
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
};

export type LndNodeParams = {
  readonly binary: string;
  readonly alias: string;
  readonly directory: string;
  readonly rpcPort: number;
  readonly p2pPort: number;
  readonly btcd: Pick<Btcd, "rpcHost" | "rpcUser" | "rpcPass" | "certPath">;
  readonly extraArgs?: readonly string[];
};

const startTimeoutMs = 120_000;

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

  await start();

  const stop = async () => {
    await (daemon as Daemon | null)?.stop({ killAfterMs: 30_000 });
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
    stop,
    start,
    async restart() {
      await stop();
      await start();
    },
  };
}
