// Builds (or finds in the cache) btcd, btcctl, lnd and lncli with scripts/lightning/build.sh. The
// cache lives outside the repo, keyed by lnd version and build tags; the script prints progress to
// stderr and `BIN_DIR=<dir>` as its last line of stdout.
import { spawn } from "node:child_process";
import path from "node:path";

export type LightningBinaries = {
  readonly directory: string;
  readonly btcd: string;
  readonly btcctl: string;
  readonly lnd: string;
  readonly lncli: string;
  /** True when the binaries were found in the cache and nothing was compiled. */
  readonly cached: boolean;
  readonly durationMs: number;
};

export class LightningBuildError extends Error {
  override readonly name = "LightningBuildError";
  readonly details: string;
  constructor(details: string, options?: { cause?: unknown }) {
    super("building btcd/lnd failed", options);
    this.details = details;
  }
}

export type EnsureBinariesParams = {
  /** Where progress lines go; the default writes them to stderr. */
  readonly onProgress?: (line: string) => void;
  /** Hard limit for a cold build. */
  readonly buildTimeoutMs?: number;
};

/** A cold build took 93 min on 2 busy cores (load 15); on an idle machine, minutes. */
const buildTimeoutMsDefault = 3 * 60 * 60 * 1000;
const buildScript = path.join(import.meta.dirname, "build.sh");

/** Builds the four binaries unless the cache already holds them. */
export async function ensureLightningBinaries(params: EnsureBinariesParams = {}): Promise<LightningBinaries> {
  const onProgress = params.onProgress ?? ((line: string) => process.stderr.write(`${line}\n`));
  const startedAt = performance.now();
  const child = spawn("bash", [buildScript], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderrTail = "";
  let cached = false;
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
  });
  let pending = "";
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    pending += chunk;
    const lines = pending.split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) {
      if (line.includes("cache hit")) cached = true;
      stderrTail = `${stderrTail}\n${line}`.slice(-4000);
      onProgress(line);
    }
  });
  const timeoutMs = params.buildTimeoutMs ?? buildTimeoutMsDefault;
  const code = await new Promise<number | null>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGTERM");
      reject(new LightningBuildError(`timed out after ${timeoutMs} ms\n${stderrTail}`));
    }, timeoutMs);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(new LightningBuildError(String(error), { cause: error }));
    });
    child.on("exit", (exitCode) => {
      clearTimeout(timer);
      resolve(exitCode);
    });
  });
  const match = /^BIN_DIR=(.+)$/m.exec(stdout);
  if (code !== 0 || match?.[1] === undefined) {
    throw new LightningBuildError(`build.sh exited with ${code}\n${stderrTail}`);
  }
  const directory = match[1].trim();
  return {
    directory,
    btcd: path.join(directory, "btcd"),
    btcctl: path.join(directory, "btcctl"),
    lnd: path.join(directory, "lnd"),
    lncli: path.join(directory, "lncli"),
    cached,
    durationMs: Math.round(performance.now() - startedAt),
  };
}
