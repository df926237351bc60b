// btcd on regtest: one process, its JSON-RPC over HTTPS (btcd's own self-signed cert as the CA).
import { existsSync, readFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import https from "node:https";
import path from "node:path";
import { type Daemon, startDaemon, waitFor } from "./process.ts";

export type BtcdParams = {
  readonly binary: string;
  readonly directory: string;
  readonly rpcPort: number;
  readonly p2pPort: number;
  readonly miningAddresses?: readonly string[];
};

export type Btcd = {
  readonly rpcHost: string;
  readonly rpcUser: string;
  readonly rpcPass: string;
  readonly certPath: string;
  call<T>(method: string, params?: readonly unknown[]): Promise<T>;
  generate(blocks: number): Promise<string[]>;
  blockCount(): Promise<number>;
  mempool(): Promise<string[]>;
  /** Stops and starts the same chain again, with new mining addresses. */
  restart(params: { miningAddresses: readonly string[] }): Promise<void>;
  stop(): Promise<void>;
};

export class BtcdRpcError extends Error {
  override readonly name = "BtcdRpcError";
  readonly method: string;
  constructor(method: string, message: string) {
    super(`btcd ${method}: ${message}`);
    this.method = method;
  }
}

const rpcUser = "switchyard";
const rpcPass = "switchyard";
const rpcTimeoutMs = 60_000;
const startTimeoutMs = 60_000;
/** btcd's `generate` is synchronous; keep each call short enough to stay under the RPC timeout. */
const generateBatchMax = 100;

/**
 * One piece on purpose: certificate, daemon, readiness and the RPC client it hands back share the daemon's
 * lifetime, and one failure path stops the daemon whatever step failed.
 */
export async function startBtcd(params: BtcdParams): Promise<Btcd> {
  await mkdir(params.directory, { recursive: true });
  const certPath = path.join(params.directory, "rpc.cert");
  const keyPath = path.join(params.directory, "rpc.key");
  const rpcHost = `127.0.0.1:${params.rpcPort}`;
  let daemon: Daemon | null = null;
  let ca: Buffer | null = null;

  const launch = async (miningAddresses: readonly string[]) => {
    const args = [
      "--regtest",
      `--datadir=${path.join(params.directory, "data")}`,
      `--logdir=${path.join(params.directory, "logs")}`,
      `--rpcuser=${rpcUser}`,
      `--rpcpass=${rpcPass}`,
      `--rpclisten=${rpcHost}`,
      `--listen=127.0.0.1:${params.p2pPort}`,
      `--rpccert=${certPath}`,
      `--rpckey=${keyPath}`,
      "--txindex",
      "--nobanning",
      "--nostalldetect",
      "--rpcmaxwebsockets=200",
      "--rpcmaxclients=100",
      "--trickleinterval=100ms",
      "--debuglevel=info",
      ...miningAddresses.map((address) => `--miningaddr=${address}`),
    ];
    daemon = startDaemon({
      name: "btcd",
      command: params.binary,
      args,
      logFile: path.join(params.directory, "btcd.out.log"),
      // btcd always creates ~/.btcd; give it a home of its own.
      env: { ...process.env, HOME: params.directory },
    });
    const started = daemon;
    await waitFor(
      "btcd rpc.cert",
      async () => {
        if (started.child.exitCode !== null) throw new Error(`btcd exited, see ${started.logFile}`);
        return existsSync(certPath) && existsSync(keyPath) ? true : undefined;
      },
      { timeoutMs: startTimeoutMs },
    );
    ca = readFileSync(certPath);
    await waitFor(
      "btcd RPC",
      async () => {
        if (started.child.exitCode !== null) throw new Error(`btcd exited, see ${started.logFile}`);
        return await call<number>("getblockcount");
      },
      { timeoutMs: startTimeoutMs, intervalMs: 100 },
    );
  };

  let requestId = 0;
  const call = <T>(method: string, rpcParams: readonly unknown[] = []): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      if (ca === null) return reject(new BtcdRpcError(method, "not started"));
      requestId += 1;
      const body = JSON.stringify({ jsonrpc: "1.0", id: requestId, method, params: rpcParams });
      const request = https.request(
        {
          host: "127.0.0.1",
          port: params.rpcPort,
          method: "POST",
          path: "/",
          ca,
          auth: `${rpcUser}:${rpcPass}`,
          headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
          timeout: rpcTimeoutMs,
        },
        (response) => {
          let text = "";
          response.setEncoding("utf8");
          response.on("data", (chunk: string) => {
            text += chunk;
          });
          response.on("end", () => {
            try {
              const parsed = JSON.parse(text) as { result: T; error: { message: string } | null };
              if (parsed.error) reject(new BtcdRpcError(method, parsed.error.message));
              else resolve(parsed.result);
            } catch (error) {
              reject(
                new BtcdRpcError(
                  method,
                  `HTTP ${response.statusCode}: ${text.slice(0, 200)} (${String(error)})`,
                ),
              );
            }
          });
        },
      );
      request.on("timeout", () => request.destroy(new BtcdRpcError(method, "timeout")));
      request.on("error", reject);
      request.end(body);
    });

  // Whatever step failed, the daemon launched is stopped (the one failure path this function's header promises).
  await launch(params.miningAddresses ?? []).catch(async (error: unknown) => {
    await (daemon as Daemon | null)?.stop({ killAfterMs: 5_000 });
    throw error;
  });

  return {
    rpcHost,
    rpcUser,
    rpcPass,
    certPath,
    call,
    async generate(blocks) {
      const hashes: string[] = [];
      for (let left = blocks; left > 0; left -= generateBatchMax) {
        hashes.push(...(await call<string[]>("generate", [Math.min(left, generateBatchMax)])));
      }
      return hashes;
    },
    blockCount: () => call<number>("getblockcount"),
    mempool: () => call<string[]>("getrawmempool"),
    async restart(restartParams) {
      await (daemon as Daemon | null)?.stop();
      await launch(restartParams.miningAddresses);
    },
    async stop() {
      await (daemon as Daemon | null)?.stop();
    },
  };
}
