// A daemon child process with its output in a log file, and a stop that waits for the exit.
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream } from "node:fs";

export type Daemon = {
  readonly name: string;
  readonly child: ChildProcess;
  readonly logFile: string;
  /** Resolves with the exit code (or signal) once the process has exited. */
  readonly exited: Promise<number | string | null>;
  /** SIGTERM, then SIGKILL after `killAfterMs`; resolves once the process has exited. */
  stop(params?: { killAfterMs?: number }): Promise<void>;
};

const killAfterMsDefault = 15_000;

/** Children still running, each with how to stop it should this process exit without having stopped it. */
const children = new Map<ChildProcess, () => void>();

/**
 * Ties `child` to this process: should this process exit while the child runs (process.exit, an uncaught error,
 * the end of a script that forgot to stop it), `stop` is called (by default, SIGTERM to the child) instead of
 * leaving it running, orphaned, holding its ports and a share of the CPU. Only a SIGKILL of this process gets past
 * it. `stop` runs inside the 'exit' event: it must be synchronous.
 */
export function exitsWithThisProcess(
  child: ChildProcess,
  stop: () => void = () => child.kill("SIGTERM"),
): void {
  if (children.size === 0) process.on("exit", stopChildren);
  children.set(child, stop);
  const forget = () => {
    children.delete(child);
    if (children.size === 0) process.off("exit", stopChildren);
  };
  child.once("exit", forget);
  child.once("error", forget);
}

function stopChildren() {
  for (const stop of children.values()) {
    try {
      stop();
    } catch {
      // already gone: nothing left to stop
    }
  }
}

export function startDaemon(params: {
  name: string;
  command: string;
  args: readonly string[];
  logFile: string;
  env?: NodeJS.ProcessEnv;
}): Daemon {
  const log = createWriteStream(params.logFile, { flags: "a" });
  const child = spawn(params.command, params.args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: params.env ?? process.env,
  });
  exitsWithThisProcess(child);
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  let running = true;
  const exited = new Promise<number | string | null>((resolve) => {
    child.on("exit", (code, signal) => {
      running = false;
      resolve(code ?? signal);
    });
    child.on("error", (error) => {
      running = false;
      log.write(`spawn error: ${String(error)}\n`);
      resolve(null);
    });
  });
  void exited.then(() => log.end());
  return {
    name: params.name,
    child,
    logFile: params.logFile,
    exited,
    async stop(stopParams = {}) {
      if (!running) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => {
        if (running) child.kill("SIGKILL");
      }, stopParams.killAfterMs ?? killAfterMsDefault);
      await exited;
      clearTimeout(timer);
    },
  };
}

export class WaitTimeoutError extends Error {
  override readonly name = "WaitTimeoutError";
  readonly lastError: unknown;
  constructor(what: string, timeoutMs: number, lastError: unknown) {
    super(`timed out after ${timeoutMs} ms waiting for ${what}`, { cause: lastError });
    this.lastError = lastError;
  }
}

/** Polls `check` every `intervalMs` until it returns a value other than undefined, or throws on timeout. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined>,
  params: { timeoutMs: number; intervalMs?: number },
): Promise<T> {
  const deadline = Date.now() + params.timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) throw new WaitTimeoutError(what, params.timeoutMs, lastError);
    await new Promise((resolve) => setTimeout(resolve, params.intervalMs ?? 100));
  }
}
