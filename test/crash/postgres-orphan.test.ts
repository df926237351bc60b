// The private PostgreSQL of test/support stops when the process that started it exits without stopping it, as a
// crashed test worker or a benchmark that calls process.exit would: no server left running on its port.
import { execFile } from "node:child_process";
import { rm } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { expect, it } from "vitest";
import { waitFor } from "../../scripts/lightning/process.ts";
import { postmasterPid } from "../support/postgres.ts";

const run = promisify(execFile);
const postgresModule = path.join(import.meta.dirname, "../support/postgres.ts");

async function accepts(port: number): Promise<boolean> {
  const client = new pg.Client({
    connectionString: `postgres://postgres@127.0.0.1:${port}/postgres`,
    connectionTimeoutMillis: 1_000,
  });
  try {
    await client.connect();
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

it("a test PostgreSQL stops when the process that started it exits without stopping it", async () => {
  const { stdout } = await run(process.execPath, [
    "--input-type=module",
    "-e",
    `
      import pg from "pg";
      import { startPostgres } from ${JSON.stringify(postgresModule)};
      const server = await startPostgres();
      const client = new pg.Client({ connectionString: server.url });
      await client.connect();
      const { rows } = await client.query("SHOW data_directory");
      await client.end();
      console.log(JSON.stringify({ port: server.port, dataDir: rows[0].data_directory }));
      process.exit(0);`,
  ]);
  const { port, dataDir } = JSON.parse(stdout.trim()) as { port: number; dataDir: string };
  try {
    await waitFor("the orphaned PostgreSQL to stop", async () => ((await accepts(port)) ? undefined : true), {
      timeoutMs: 15_000,
    });
    expect(await accepts(port)).toBe(false);
  } finally {
    // The hook leaves the temporary directory (it cannot be removed under a server shutting down). Should the
    // test fail, the server it left running is stopped first.
    if (await accepts(port)) {
      const pid = postmasterPid(dataDir);
      if (pid !== null) process.kill(pid, "SIGINT");
      await waitFor("the left PostgreSQL to stop", async () => ((await accepts(port)) ? undefined : true), {
        timeoutMs: 15_000,
      });
    }
    // A server that refuses connections may still be writing its shutdown checkpoint (pg_xact, pg_wal): removed under
    // it, the directory refilled (ENOTEMPTY, seen on a loaded CI host). Its postmaster.pid goes last, as it exits.
    await waitFor(
      "the PostgreSQL to exit",
      async () => (postmasterPid(dataDir) === null ? true : undefined),
      {
        timeoutMs: 15_000,
      },
    ).catch(() => undefined);
    await rm(path.dirname(dataDir), { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  }
});
