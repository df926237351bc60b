// A private PostgreSQL for tests and benchmarks, from the Debian packages (/usr/lib/postgresql/<version>/bin):
// a fresh data directory in a temp dir, initdb and postgres run as the `postgres` OS user when we are root
// (initdb refuses root), listening on 127.0.0.1 on a free port with trust auth, durable commits (fsync and
// synchronous_commit on) and settings sized for a small machine. stop() shuts it down and deletes the directory.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { chown, mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { freePort } from "../../scripts/lib/free-port.ts";
import { exitsWithThisProcess } from "../../scripts/lightning/process.ts";

const execFileAsync = promisify(execFile);

export const postgresStartTimeoutMs = 60_000;
export const postgresStopTimeoutMs = 30_000;
const postgresOsUser = "postgres";
/** How many free ports a start tries, each found taken when postgres bound it, before it fails. */
const portAttemptsMax = 3;
/** What postgres says when its port is taken (it then exits). */
const portTakenPattern = /Address already in use/;
const postgresRoot = "/usr/lib/postgresql";

export class PostgresNotInstalledError extends Error {
  override readonly name = "PostgresNotInstalledError";
  constructor() {
    super(
      `PostgreSQL is not installed (no ${postgresRoot}/<version>/bin/initdb). Install it with: apt-get install -y postgresql`,
    );
  }
}

export class PostgresStartError extends Error {
  override readonly name = "PostgresStartError";
  constructor(message: string, options?: { cause: unknown }) {
    super(message, options);
  }
}

export type RunningPostgres = {
  /** postgres://postgres@127.0.0.1:<port>/postgres */
  url: string;
  port: number;
  /** The postmaster's pid (its backends are its children), null once it has stopped. */
  pid(): number | null;
  stop(): Promise<void>;
};

/** The newest installed PostgreSQL's bin directory. */
export async function findPostgresBin(): Promise<string> {
  const versions = existsSync(postgresRoot) ? await readdir(postgresRoot) : [];
  const usable = versions
    .filter((version) => existsSync(path.join(postgresRoot, version, "bin", "initdb")))
    .sort((a, b) => Number(b) - Number(a));
  if (usable.length === 0) throw new PostgresNotInstalledError();
  return path.join(postgresRoot, usable[0]!, "bin");
}

/** Settings for tests and benchmarks on a 2-core machine. Durability stays on: fsync, synchronous commit, full pages. */
const serverSettings: Record<string, string> = {
  listen_addresses: "127.0.0.1",
  max_connections: "200",
  shared_buffers: "512MB",
  work_mem: "16MB",
  maintenance_work_mem: "128MB",
  fsync: "on",
  synchronous_commit: "on",
  full_page_writes: "on",
  wal_level: "minimal",
  max_wal_senders: "0",
  wal_buffers: "64MB",
  wal_compression: "off", // CPU is the scarce thing on a 2-core box; full-page images are rare with long checkpoints
  max_wal_size: "8GB",
  min_wal_size: "1GB",
  checkpoint_timeout: "30min",
  checkpoint_completion_target: "0.9",
  huge_pages: "off",
  max_worker_processes: "4",
  max_parallel_workers: "2",
  max_parallel_workers_per_gather: "0",
  deadlock_timeout: "200ms",
  jit: "off",
  log_min_messages: "warning",
  log_min_error_statement: "panic",
  logging_collector: "off",
};

/** `freePort` by default; a test gives the ports a start is to try. */
export async function startPostgres(
  options: { port?: () => Promise<number> } = {},
): Promise<RunningPostgres> {
  const nextPort = options.port ?? freePort;
  const bin = await findPostgresBin();
  const asRoot = process.getuid?.() === 0;
  const dir = await mkdtemp(path.join(os.tmpdir(), "switchyard-pg-"));
  const dataDir = path.join(dir, "data");
  const run = (command: string, args: string[]) =>
    asRoot
      ? (["runuser", ["-u", postgresOsUser, "--", command, ...args]] as const)
      : ([command, args] as const);
  try {
    if (asRoot) {
      const { stdout: uid } = await execFileAsync("id", ["-u", postgresOsUser]);
      const { stdout: gid } = await execFileAsync("id", ["-g", postgresOsUser]);
      await chown(dir, Number(uid.trim()), Number(gid.trim()));
    }
    const [initCommand, initArgs] = run(path.join(bin, "initdb"), [
      "-D",
      dataDir,
      "-U",
      "postgres",
      "-A",
      "trust",
      "-E",
      "UTF8",
      "--locale=C",
      "--no-sync", // a throwaway cluster: initdb's own fsyncs buy nothing; the server below runs with fsync on
    ]);
    await execFileAsync(initCommand, [...initArgs], { timeout: postgresStartTimeoutMs });
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw new PostgresStartError(`initdb failed: ${(error as Error).message}`, { cause: error });
  }

  // The port was free when asked for, and may be taken before postgres binds it (another run asking at that moment):
  // then postgres exits saying so, and it is started again on another.
  let lastLog = "";
  for (let attempt = 1; ; attempt += 1) {
    const started = await launch(await nextPort());
    if (started !== "port_taken") return started;
    if (attempt === portAttemptsMax) {
      await rm(dir, { recursive: true, force: true });
      throw new PostgresStartError(
        `postgres found each of ${portAttemptsMax} free ports taken when it bound them:\n${lastLog}`,
      );
    }
  }

  async function launch(port: number): Promise<RunningPostgres | "port_taken"> {
    const settings = { ...serverSettings, port: String(port), unix_socket_directories: dir };
    const [command, args] = run(path.join(bin, "postgres"), [
      "-D",
      dataDir,
      ...Object.entries(settings).flatMap(([key, value]) => ["-c", `${key}=${value}`]),
    ]);
    const child: ChildProcess = spawn(command, [...args], { stdio: ["ignore", "ignore", "pipe"] });
    // Signal the postmaster itself (runuser may not forward signals): SIGINT is a fast shutdown.
    const shutDown = () => {
      const pid = postmasterPid(dataDir);
      if (pid !== null) process.kill(pid, "SIGINT");
      else child.kill("SIGINT");
    };
    exitsWithThisProcess(child, shutDown);
    let log = "";
    child.stderr?.on("data", (chunk: Buffer) => {
      log = (log + chunk.toString()).slice(-8000);
    });
    // Its last lines may come after its exit: read to the end (a second at most) before the log says why it exited.
    const logRead = new Promise<void>((resolve) => {
      if (child.stderr === null) return resolve();
      child.stderr.once("close", resolve);
      child.stderr.once("end", resolve);
    });
    const wholeLog = async () => {
      await Promise.race([logRead, new Promise((resolve) => setTimeout(resolve, 1_000))]);
      return log;
    };
    let exited = false;
    const exit = new Promise<void>((resolve) =>
      child.on("exit", () => {
        exited = true;
        resolve();
      }),
    );

    const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
    const stop = async () => {
      if (!exited) {
        shutDown();
        const timer = setTimeout(() => child.kill("SIGKILL"), postgresStopTimeoutMs);
        await exit;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    };

    const deadline = Date.now() + postgresStartTimeoutMs;
    for (;;) {
      if (exited) {
        if (portTakenPattern.test(await wholeLog())) {
          lastLog = log;
          return "port_taken";
        }
        await stop();
        throw new PostgresStartError(`postgres exited during start:\n${log}`);
      }
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
      try {
        await client.connect();
        // Whoever answers on the port must be this server: another run's postgres that took the port first answers
        // too (trust auth), and its database is not ours to use.
        const [row] = (await client.query<{ data_directory: string }>("SHOW data_directory")).rows;
        await client.end();
        if (row?.data_directory === dataDir) break;
        throw new PostgresStartError(`another server (${row?.data_directory}) answers on port ${port}`);
      } catch (error) {
        await client.end().catch(() => undefined); // the connection never opened; nothing to close
        if (Date.now() > deadline) {
          await stop();
          throw new PostgresStartError(`postgres did not accept connections in time:\n${log}`, {
            cause: error,
          });
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    return { url, port, pid: () => postmasterPid(dataDir), stop };
  }
}

/** The postmaster's pid from its pid file; read synchronously, since an 'exit' handler needs it too. */
export function postmasterPid(dataDir: string): number | null {
  try {
    const text = readFileSync(path.join(dataDir, "postmaster.pid"), "utf8");
    const pid = Number(text.split("\n")[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
}

/**
 * A fresh, empty database on the server at `url` (e.g. one per test file, so suites never see each other's rows).
 * Returns its URL.
 */
export async function createTestDatabase(
  url: string,
  prefix = "test",
  /** An ICU locale (e.g. "en-US") for the database's default collation, instead of the server's C. */
  options: { icuLocale?: string } = {},
): Promise<string> {
  const name =
    `${prefix}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 10)}`.toLowerCase();
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new RangeError(`bad database name prefix: ${prefix}`);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { icuLocale } = options;
    if (icuLocale !== undefined && !/^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$/.test(icuLocale))
      throw new RangeError(`bad ICU locale: ${icuLocale}`);
    await client.query(
      icuLocale === undefined
        ? `CREATE DATABASE ${name}`
        : `CREATE DATABASE ${name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE '${icuLocale}' LOCALE 'C.UTF-8'`,
    );
  } finally {
    await client.end();
  }
  const next = new URL(url);
  next.pathname = `/${name}`;
  return next.toString();
}
