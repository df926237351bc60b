// stripe-mock, Stripe's own API mock: built once from the Go module proxy into a cache outside the repo,
// reused when present, and started on 127.0.0.1 on ports the kernel picks. Used by test/fiat's global
// setup; `node scripts/stripe-mock.ts build` builds it ahead, `node scripts/stripe-mock.ts start` runs one.
import { type ChildProcess, spawn } from "node:child_process";
import { access, constants, mkdir, mkdtemp, rename, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { switchyardCacheDir } from "./lib/cache-dir.ts";
import { exitsWithThisProcess } from "./lightning/process.ts";

/** The stripe-mock release the tests run against. Bump it here only. */
export const stripeMockVersion = "v0.203.0";
export const stripeMockModule = "github.com/stripe/stripe-mock";

/** A cold build (module download + compile) took 23 s on a 2-core machine; this leaves room for a busy one. */
export const stripeMockBuildTimeoutMs = 15 * 60_000;
export const stripeMockStartTimeoutMs = 30_000;
export const stripeMockStopTimeoutMs = 5_000;
const progressIntervalMs = 10_000;
const outputTailCharsMax = 4_000;

export class StripeMockError extends Error {
  override name = "StripeMockError";
}

export type Log = (line: string) => void;

/** Where the binary of one version lives: $SWITCHYARD_CACHE_DIR or ~/.cache/switchyard, then bin/stripe-mock-<version>/. */
export function stripeMockBinaryPath(params: { cacheDir?: string; version?: string } = {}): string {
  const cacheDir = params.cacheDir ?? switchyardCacheDir();
  const version = params.version ?? stripeMockVersion;
  return path.join(cacheDir, "bin", `stripe-mock-${version}`, "stripe-mock");
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    await access(file, constants.X_OK);
    return (await stat(file)).isFile();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
}

export type EnsureResult = { binary: string; built: boolean; buildMs: number };

/**
 * Returns the cached binary, or builds it with `go install <module>@<version>` into a temporary GOBIN
 * beside the cache and renames it into place (atomic: a concurrent run never sees half a binary).
 * Prints progress: go's package list as it compiles, and a line every 10 s.
 */
export async function ensureStripeMock(
  params: { cacheDir?: string; version?: string; log?: Log; buildTimeoutMs?: number } = {},
): Promise<EnsureResult> {
  const log = params.log ?? ((line: string) => console.log(line));
  const version = params.version ?? stripeMockVersion;
  const binary = stripeMockBinaryPath({ ...params, version });
  if (await isExecutable(binary)) return { binary, built: false, buildMs: 0 };

  const binDir = path.dirname(binary);
  await mkdir(path.dirname(binDir), { recursive: true });
  const gobin = await mkdtemp(path.join(path.dirname(binDir), `.build-stripe-mock-${version}-`));
  const started = Date.now();
  log(`stripe-mock: building ${stripeMockModule}@${version} with go install (cache: ${binDir})`);
  try {
    await runGo({
      args: ["install", "-v", `${stripeMockModule}@${version}`],
      env: { ...process.env, GOBIN: gobin, GOFLAGS: "-modcacherw", CGO_ENABLED: "0" },
      timeoutMs: params.buildTimeoutMs ?? stripeMockBuildTimeoutMs,
      log,
    });
    await mkdir(binDir, { recursive: true });
    await rename(path.join(gobin, "stripe-mock"), binary);
  } finally {
    await rm(gobin, { recursive: true, force: true });
  }
  const buildMs = Date.now() - started;
  log(`stripe-mock: built in ${(buildMs / 1000).toFixed(1)} s → ${binary}`);
  return { binary, built: true, buildMs };
}

/** Go's usual install places, tried after PATH: a shell that did not source the profile may lack them. */
const goFallbacks = [
  "/usr/local/go/bin/go",
  path.join(os.homedir(), "go", "bin", "go"),
  "/usr/lib/go/bin/go",
];

async function findGo(env: NodeJS.ProcessEnv): Promise<string> {
  for (const dir of (env.PATH ?? "").split(path.delimiter)) {
    if (dir !== "" && (await isExecutable(path.join(dir, "go")))) return path.join(dir, "go");
  }
  for (const candidate of goFallbacks) if (await isExecutable(candidate)) return candidate;
  return "go"; // spawn reports ENOENT, turned into a clear error below
}

async function runGo(params: {
  args: string[];
  env: NodeJS.ProcessEnv;
  timeoutMs: number;
  log: Log;
}): Promise<void> {
  const started = Date.now();
  const child = spawn(await findGo(params.env), params.args, {
    env: params.env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let tail = "";
  const onOutput = (chunk: Buffer) => {
    const text = chunk.toString("utf8");
    tail = (tail + text).slice(-outputTailCharsMax);
    for (const line of text.split("\n"))
      if (line.trim() !== "") params.log(`stripe-mock: go: ${line.trim()}`);
  };
  child.stdout.on("data", onOutput);
  child.stderr.on("data", onOutput);
  const progress = setInterval(() => {
    params.log(`stripe-mock: still building (${Math.round((Date.now() - started) / 1000)} s)`);
  }, progressIntervalMs);
  const timeout = setTimeout(() => child.kill("SIGKILL"), params.timeoutMs);
  try {
    const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(
      (resolve, reject) => {
        child.on("error", (error) =>
          reject(
            new StripeMockError(
              (error as NodeJS.ErrnoException).code === "ENOENT"
                ? "stripe-mock: `go` is not on PATH; install Go (1.22 or later) to build stripe-mock"
                : `stripe-mock: could not run go: ${error.message}`,
              { cause: error },
            ),
          ),
        );
        child.on("exit", (code, signal) => resolve({ code, signal }));
      },
    );
    if (exit.code !== 0) {
      throw new StripeMockError(
        `stripe-mock: go ${params.args.join(" ")} failed (${exit.signal === "SIGKILL" ? `timed out after ${params.timeoutMs} ms` : `exit ${exit.code ?? exit.signal}`}):\n${tail}`,
      );
    }
  } finally {
    clearInterval(progress);
    clearTimeout(timeout);
  }
}

export type StripeMockServer = {
  readonly host: "127.0.0.1";
  readonly port: number; // HTTP
  readonly httpsPort: number;
  readonly pid: number;
  stop(): Promise<void>;
};

const httpLinePattern = /Listening for HTTP at address: 127\.0\.0\.1:(\d+)/;
const httpsLinePattern = /Listening for HTTPS at address: 127\.0\.0\.1:(\d+)/;

/**
 * Starts stripe-mock bound to 127.0.0.1 only, HTTP and HTTPS each on a port the kernel picks (no race with
 * other runs), and resolves once it says where it listens.
 */
export async function startStripeMock(params: {
  binary: string;
  startTimeoutMs?: number;
  log?: Log;
}): Promise<StripeMockServer> {
  const log = params.log ?? ((line: string) => console.log(line));
  const child = spawn(params.binary, ["-http-addr", "127.0.0.1:", "-https-addr", "127.0.0.1:"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const ports = await new Promise<{ port: number; httpsPort: number }>((resolve, reject) => {
    const timeout = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new StripeMockError(
          `stripe-mock: did not start within ${params.startTimeoutMs ?? stripeMockStartTimeoutMs} ms:\n${output}`,
        ),
      );
    }, params.startTimeoutMs ?? stripeMockStartTimeoutMs);
    const onOutput = (chunk: Buffer) => {
      output = (output + chunk.toString("utf8")).slice(-outputTailCharsMax);
      const http = httpLinePattern.exec(output);
      const https = httpsLinePattern.exec(output);
      if (http?.[1] !== undefined && https?.[1] !== undefined) {
        clearTimeout(timeout);
        resolve({ port: Number(http[1]), httpsPort: Number(https[1]) });
      }
    };
    child.stdout?.on("data", onOutput);
    child.stderr?.on("data", onOutput);
    child.on("error", (error) => {
      clearTimeout(timeout);
      reject(
        new StripeMockError(`stripe-mock: could not start ${params.binary}: ${error.message}`, {
          cause: error,
        }),
      );
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timeout);
      reject(new StripeMockError(`stripe-mock: exited before listening (${code ?? signal}):\n${output}`));
    });
  });
  // Keep draining its output (request logs) so a full pipe never blocks it.
  child.stdout?.removeAllListeners("data");
  child.stderr?.removeAllListeners("data");
  child.stdout?.resume();
  child.stderr?.resume();
  child.removeAllListeners("exit");
  exitsWithThisProcess(child);
  log(`stripe-mock: listening on http://127.0.0.1:${ports.port} (pid ${child.pid})`);
  return {
    host: "127.0.0.1",
    port: ports.port,
    httpsPort: ports.httpsPort,
    pid: child.pid ?? -1,
    stop: () => stopChild(child),
  };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), stripeMockStopTimeoutMs);
  await exited;
  clearTimeout(timer);
}

async function main(argv: readonly string[]): Promise<void> {
  const command = argv[0] ?? "build";
  const ensured = await ensureStripeMock();
  if (!ensured.built) console.log(`stripe-mock: ${stripeMockVersion} already built at ${ensured.binary}`);
  if (command === "build") return;
  if (command !== "start") throw new StripeMockError(`usage: node scripts/stripe-mock.ts [build|start]`);
  const server = await startStripeMock({ binary: ensured.binary });
  const stop = () => {
    server.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(error);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

if (import.meta.main) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  });
}
