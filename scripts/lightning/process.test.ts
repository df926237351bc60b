import { execFile } from "node:child_process";
import { readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { waitFor } from "./process.ts";

const run = promisify(execFile);
const processModule = path.join(import.meta.dirname, "process.ts");

/** Whether `pid` still runs: an exited child nobody has reaped yet (a zombie) does not. */
async function running(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** Runs `body` in a separate Node process that prints one child's pid and exits without stopping it. */
async function orphanPid(body: string): Promise<number> {
  const { stdout } = await run(process.execPath, ["--input-type=module", "-e", body]);
  return Number(stdout.trim());
}

describe("daemons started by a process", () => {
  it("are stopped when that process exits without stopping them", async () => {
    const logFile = path.join(os.tmpdir(), `switchyard-process-test-${process.pid}.log`);
    const pid = await orphanPid(`
      import { startDaemon } from ${JSON.stringify(processModule)};
      const daemon = startDaemon({ name: "sleeper", command: "sleep", args: ["60"], logFile: ${JSON.stringify(logFile)} });
      console.log(daemon.child.pid);
      process.exit(0);`);
    expect(pid).toBeGreaterThan(0);
    await waitFor("the orphaned daemon to stop", async () => ((await running(pid)) ? undefined : true), {
      timeoutMs: 5_000,
    });
    await rm(logFile, { force: true });
  });

  it("(a plain child, for contrast, outlives its parent)", async () => {
    const pid = await orphanPid(`
      import { spawn } from "node:child_process";
      const child = spawn("sleep", ["60"], { stdio: "ignore" });
      console.log(child.pid);
      process.exit(0);`);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await running(pid)).toBe(true);
    process.kill(pid, "SIGKILL");
  });
});
