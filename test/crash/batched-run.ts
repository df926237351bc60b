// The batched crash tests' side of the worker (batched-worker.ts): a database with the tenant and its accounts funded,
// and a worker run, killed as asked, with every line it reported.
import { fork } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";
import { expect } from "vitest";
import { assets } from "../../core/index.ts";
import { createAccount } from "../../gateway/accounts/index.ts";
import { gatewayMigrations } from "../../gateway/app.ts";
import { type Db, migrate, openPostgres } from "../../gateway/db/index.ts";
import { createLedger, type Ledger, ledgerMigrations, transferCodes } from "../../gateway/ledger/index.ts";
import { gatewayLedgerParams } from "../../gateway/ledger-params.ts";
import { createTenant } from "../../gateway/tenants/index.ts";
import { createTestDatabase } from "../support/postgres.ts";
import {
  batchedTenantId,
  merchantAccountId,
  richAccountId,
  richFundingMinor,
  shortAccountId,
  shortFundingMinor,
  type WorkerKill,
  type WorkerLine,
} from "./batched-plan.ts";

export type Kill =
  | { by: "worker"; kill: WorkerKill }
  /** This process kills the worker as soon as it reports the nth batch handed to the ledger. */
  | { by: "parent"; afterHanded: number }
  /** This process kills the worker this long after it started paying. */
  | { by: "parent"; afterMs: number };

export type Run = { outcome: "killed" | "done"; lines: WorkerLine[]; ms: number };

export type BatchedDatabase = {
  url: string;
  db: Db;
  ledger: Ledger;
  /** Ledger account ids by account id. */
  ledgerIds: ReadonlyMap<string, bigint>;
  close(): Promise<void>;
};

/** A fresh database on the server at `postgresUrl`, migrated, with the tenant, its three accounts, the two funded. */
export async function openBatchedDatabase(postgresUrl: string): Promise<BatchedDatabase> {
  const url = await createTestDatabase(postgresUrl, "crash_batched");
  const db = openPostgres({ url, poolSizeMax: 2, statementTimeoutMs: 10_000 });
  await migrate(db, [ledgerMigrations, gatewayMigrations]);
  const ledger = createLedger({ ...gatewayLedgerParams, db });
  const ledgerIds = new Map<string, bigint>();
  await createTenant(db, { id: batchedTenantId, name: "batched" });
  const open = async (id: string, kind: "customer" | "merchant" | "clearing") => {
    const account = await createAccount(
      { sql: db, ledger },
      kind === "clearing"
        ? { tenantId: null, kind, asset: assets.USDC, name: id, rail: "funding", id }
        : { tenantId: batchedTenantId, kind, asset: assets.USDC, name: id, id },
    );
    ledgerIds.set(id, account.ledgerAccountId);
    return account.ledgerAccountId;
  };
  const funding = await open("acct_clearing_funding", "clearing");
  const funded = [
    { account: await open(richAccountId, "customer"), amount: richFundingMinor },
    { account: await open(shortAccountId, "customer"), amount: shortFundingMinor },
  ];
  await open(merchantAccountId, "merchant");
  const results = await ledger.createTransfers(
    funded.map(({ account, amount }, i) => ({
      id: 700n + BigInt(i),
      debitAccountId: funding,
      creditAccountId: account,
      amount,
      ledger: assets.USDC.ledger,
      code: transferCodes.payments.funding,
    })),
  );
  expect(results.map((r) => r.status)).toEqual(["created", "created"]);
  return {
    url,
    db,
    ledger,
    ledgerIds,
    async close() {
      await ledger.close();
      await db.close();
    },
  };
}

/**
 * Runs the worker over `keys` (then new keys from `overflowFrom` until killed, when given), killed as `kill` says
 * or left to finish, and collects what it reported.
 */
export function runWorker(
  url: string,
  keys: readonly number[],
  kill: Kill | null,
  overflowFrom: number | null,
): Promise<Run> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const workerKill = kill?.by === "worker" ? kill.kill : null;
    const child = fork(
      path.join(import.meta.dirname, "batched-worker.ts"),
      [
        url,
        JSON.stringify(workerKill),
        keys.join(","),
        overflowFrom === null ? "none" : String(overflowFrom),
      ],
      { stdio: ["ignore", "pipe", "inherit", "ipc"] },
    );
    const lines: WorkerLine[] = [];
    let killedHere = false;
    const killNow = () => {
      if (killedHere || child.exitCode !== null) return;
      killedHere = true;
      child.kill("SIGKILL");
    };
    let handed = 0;
    createInterface({ input: child.stdout! }).on("line", (text) => {
      // The worker's lines are JSON objects; anything else on its stdout (a console.log in the code it runs) passes.
      if (!text.startsWith('{"event":')) {
        process.stderr.write(`batched worker: ${text}\n`);
        return;
      }
      const line = JSON.parse(text) as WorkerLine;
      lines.push(line);
      if (line.event === "started" && kill !== null && "afterMs" in kill) setTimeout(killNow, kill.afterMs);
      if (line.event === "handed") {
        handed += 1;
        if (kill !== null && "afterHanded" in kill && handed === kill.afterHanded) killNow();
      }
    });
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const ms = Date.now() - started;
      if (signal === "SIGKILL") resolve({ outcome: "killed", lines, ms });
      else if (code === 0 && !killedHere) resolve({ outcome: "done", lines, ms });
      else reject(new Error(`batched worker exited with ${code ?? signal}`));
    });
  });
}
