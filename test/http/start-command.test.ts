// `npm start` (gateway/main.ts), a process of its own, with a configuration it refuses: says what is wrong in one
// line on stderr and exits 2, as `npm run migrate` does (migrate-command.test.ts), before it starts anything. And a
// signal that comes while it starts stops it in order once started, rather than cutting it off mid-start.
import { execFile, spawn } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const root = path.resolve(import.meta.dirname, "../..");
const execFileAsync = promisify(execFile);

/** Runs `npm start`'s script with these variables over the test's own; resolves with its exit code and output. */
const start = (env: Record<string, string | undefined>) =>
  execFileAsync(process.execPath, [path.join(root, "gateway/main.ts")], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: undefined, PGLITE_DIR: undefined, ...env },
    timeout: 60_000,
  }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code?: number; stdout?: string; stderr?: string }) => ({
      code: error.code ?? -1,
      stdout: error.stdout ?? "",
      stderr: error.stderr ?? "",
    }),
  );

describe("npm start", () => {
  it("with a configuration it refuses, says so in one line and exits 2", async () => {
    const started = await start({ PORT: "not-a-port" });
    expect(started.code).toBe(2);
    expect(started.stderr).toMatch(/^switchyard: invalid configuration: PORT: [^\n]+\n$/);
    expect(started.stdout).toBe("");
  });

  it("that cannot reach its RPC endpoint says so without printing the provider's key in the endpoint's path", async () => {
    // Port 9 (discard): refused at once. Hosted endpoints carry their key in the path (…/v2/<key>).
    const key = "k3yOfTheRpcProvider0123456789";
    const started = await start({
      EVM_RPC_URL: `http://127.0.0.1:9/v2/${key}`,
      EVM_EMBEDDED_RPC_PORT: "off",
    });
    expect(started.code).toBe(1);
    expect(started.stderr).toContain("switchyard: failed to start");
    expect(started.stderr).toContain("127.0.0.1:9");
    // Before: viem's error, printed whole, named the URL in its message and in its url field.
    expect(started.stderr).not.toContain(key);
    expect(started.stdout).not.toContain(key);
  });

  it("stopped by SIGTERM while it starts, finishes starting, stops in order and exits 0", async () => {
    const { code, signal, stdout } = await signalledWhileStarting(["SIGTERM"]);
    // Before: Node's default SIGTERM ended the process where it stood (signal SIGTERM, no code).
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(stdout).toContain("switchyard: SIGTERM while starting: stopping once started");
    expect(stdout).toContain("switchyard: listening on");
    expect(stdout.indexOf("switchyard: SIGTERM, stopping")).toBeGreaterThan(
      stdout.indexOf("switchyard: listening on"),
    );
  });

  it("signalled again while it starts, exits at once and non-zero, without waiting for the start", async () => {
    const { code, signal, stdout } = await signalledWhileStarting(["SIGTERM", "SIGINT"]);
    expect({ code, signal }).toEqual({ code: 1, signal: null });
    expect(stdout).toContain("switchyard: SIGTERM while starting: stopping once started");
    expect(stdout).toContain("switchyard: SIGINT again, exiting now");
    expect(stdout).not.toContain("switchyard: listening on");
  });
});

/**
 * Starts `npm start`'s script on the embedded defaults (no port of its own, no chain served to wallets) and sends it
 * `signals`, one after another, the first once its first line says the start is under way (printed once the
 * configuration is read, before the app is built); resolves with how it exited and what it printed.
 */
async function signalledWhileStarting(signals: readonly NodeJS.Signals[]) {
  const child = spawn(process.execPath, [path.join(root, "gateway/main.ts")], {
    cwd: root,
    env: {
      ...process.env,
      DATABASE_URL: undefined,
      PGLITE_DIR: undefined,
      PORT: "0",
      EVM_EMBEDDED_RPC_PORT: "off",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal })),
  );
  const killer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  // Each sent once the one before it is seen taken (its line printed): two pending at once are delivered lowest
  // number first (SIGINT before SIGTERM), whatever order they were sent in.
  let sent = 0;
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
    const next = signals[sent];
    const previous = signals[sent - 1];
    if (
      next !== undefined &&
      stdout.includes("switchyard: starting") &&
      (previous === undefined || stdout.includes(`switchyard: ${previous} while starting`))
    ) {
      sent += 1;
      child.kill(next);
    }
  });
  child.stderr.resume();
  const exited = await ended;
  clearTimeout(killer);
  return { ...exited, stdout };
}

describe("the scripts that read EVM_RPC_URL and EVM_HOT_WALLET_KEY", () => {
  it.each([
    ["evm-deploy", ["scripts/evm-deploy.ts"]],
    ["price-feed", ["scripts/price-feed.ts", "ETH", "3000", "--feed", `0x${"33".repeat(20)}`]],
  ])("%s: a failed RPC call is printed without the provider's key or the wallet's", async (name, args) => {
    const key = "k3yOfTheRpcProvider0123456789";
    const wallet = `0x${"2a".repeat(32)}`;
    const ran = await execFileAsync(process.execPath, args, {
      cwd: root,
      env: { ...process.env, EVM_RPC_URL: `http://127.0.0.1:9/v2/${key}`, EVM_HOT_WALLET_KEY: wallet },
      timeout: 60_000,
    }).then(
      () => ({ code: 0, stdout: "", stderr: "" }),
      (error: { code?: number; stdout?: string; stderr?: string }) => ({
        code: error.code ?? -1,
        stdout: error.stdout ?? "",
        stderr: error.stderr ?? "",
      }),
    );
    expect(ran.code).toBe(1);
    expect(ran.stderr).toContain(`${name}: failed`);
    expect(ran.stderr).toContain("127.0.0.1:9");
    // Before: viem's error, uncaught, printed whole with the URL in its message and its url field.
    for (const secret of [key, wallet.slice(2)]) {
      expect(ran.stderr).not.toContain(secret);
      expect(ran.stdout).not.toContain(secret);
    }
  });
});
