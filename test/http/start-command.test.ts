// `npm start` (gateway/main.ts), a process of its own, with a configuration it refuses: says what is wrong in one
// line on stderr and exits 2, as `npm run migrate` does (migrate-command.test.ts), before it starts anything.
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const root = path.resolve(import.meta.dirname, "../..");
const execFileAsync = promisify(execFile);

describe("npm start", () => {
  it("with a configuration it refuses, says so in one line and exits 2", async () => {
    const started = await execFileAsync(process.execPath, [path.join(root, "gateway/main.ts")], {
      cwd: root,
      env: { ...process.env, PORT: "not-a-port", DATABASE_URL: undefined, PGLITE_DIR: undefined },
      timeout: 60_000,
    }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (error: { code?: number; stdout?: string; stderr?: string }) => ({
        code: error.code ?? -1,
        stdout: error.stdout ?? "",
        stderr: error.stderr ?? "",
      }),
    );
    expect(started.code).toBe(2);
    expect(started.stderr).toMatch(/^switchyard: invalid configuration: PORT: [^\n]+\n$/);
    expect(started.stdout).toBe("");
  });
});
