// `npm run bench -- ledger`: transfers/s and per-call commit latency of the ledger's group-commit writer on
// PostgreSQL (a private server started here, durable commits) and on PGlite (in memory), for uniform traffic over
// 10,000 accounts, 90% into one hot account, and two-phase (pending then post); next to the naive way measured in
// the same run (one database transaction per transfer, accounts locked in id order).
import { type Db, migrate, openPglite, openPostgres, type Sql } from "../gateway/db/index.ts";
import { idToUuid } from "../gateway/ledger/id.ts";
import {
  createLedger,
  type Ledger,
  ledgerId,
  ledgerMigrations,
  selectLedgerTotals,
  TransferFlags,
  type TransferInput,
} from "../gateway/ledger/index.ts";
import { createTestDatabase, startPostgres } from "../test/support/postgres.ts";
import { type BenchResult, type BenchRow, percentile } from "./report.ts";

const accountCount = 10_000;
const ledgerNumber = 1;
/** Callers submitting at once, each with requests of this many transfers (the payments service's shape). */
const callers = Number(process.env.BENCH_LEDGER_CALLERS ?? 128);
const transfersPerRequest = 100;
const transfersPostgres = Number(process.env.BENCH_LEDGER_TRANSFERS ?? 400_000);
const transfersPglite = Number(process.env.BENCH_LEDGER_TRANSFERS_PGLITE ?? 150_000);
const naiveDurationMs = 8_000;
const naiveConnections = 16;
const hotShare = 0.9;
/**
 * BENCH_LEDGER_ONLY=uniform-postgres,hot-pglite runs only those cases (for development); BENCH_LEDGER_CALLERS,
 * BENCH_LEDGER_TRANSFERS(_PGLITE), BENCH_LEDGER_PIPELINE (pipelineDepthMax) and BENCH_LEDGER_BATCH
 * (batchTransfersMax) change the load and the writer's limits.
 */
const only = process.env.BENCH_LEDGER_ONLY?.split(",");
const wanted = (name: string) => only === undefined || only.includes(name);

type Traffic = "uniform" | "hot" | "two_phase";

export async function run(): Promise<BenchResult> {
  const postgres = await startPostgres();
  const rows: BenchRow[] = [];
  try {
    for (const traffic of ["uniform", "hot", "two_phase"] as const) {
      if (!wanted(`${traffic}-postgres`)) continue;
      const url = await createTestDatabase(postgres.url, "bench");
      const db = openPostgres({ url, poolSizeMax: 8, statementTimeoutMs: 120_000 });
      rows.push(await measureLedger(`${traffic}-postgres`, db, traffic, transfersPostgres));
      await db.close();
    }
    for (const traffic of ["uniform", "hot", "two_phase"] as const) {
      if (!wanted(`${traffic}-pglite`)) continue;
      const db = await openPglite(undefined);
      rows.push(await measureLedger(`${traffic}-pglite`, db, traffic, transfersPglite));
      await db.close();
    }
    if (wanted("uniform-naive_postgres")) {
      const url = await createTestDatabase(postgres.url, "bench");
      const db = openPostgres({ url, poolSizeMax: naiveConnections, statementTimeoutMs: 120_000 });
      rows.push(await measureNaive("uniform-naive_postgres", db));
      await db.close();
    }
  } finally {
    await postgres.stop();
  }
  const naive = rows.find((row) => row.case === "uniform-naive_postgres");
  for (const row of rows) {
    if (naive !== undefined && row.case !== naive.case)
      row.vs_naive_x = round((row.transfers_per_s as number) / (naive.transfers_per_s as number), 1);
  }
  return { benchmark: "ledger", rows };
}

const round = (value: number, digits: number) => Math.round(value * 10 ** digits) / 10 ** digits;

function randomIndex(count: number): number {
  return Math.floor(Math.random() * count);
}

async function setupAccounts(ledger: Ledger): Promise<bigint[]> {
  const ids = Array.from({ length: accountCount }, () => ledgerId());
  for (let i = 0; i < ids.length; i += 5000) {
    const results = await ledger.createAccounts(
      ids.slice(i, i + 5000).map((id) => ({ id, ledger: ledgerNumber, code: 1 })),
    );
    if (results.some((r) => r.status !== "created")) throw new Error("bench: account setup failed");
  }
  return ids;
}

function pickPair(accounts: readonly bigint[], traffic: Traffic): [bigint, bigint] {
  const hot = accounts[0]!;
  if (traffic === "hot" && Math.random() < hotShare) {
    const debit = accounts[1 + randomIndex(accounts.length - 1)]!;
    return [debit, hot];
  }
  for (;;) {
    const debit = accounts[randomIndex(accounts.length)]!;
    const credit = accounts[randomIndex(accounts.length)]!;
    if (debit !== credit) return [debit, credit];
  }
}

/** Requests built ahead, so that generating them is not measured. Two-phase: a request of pendings, then one of posts. */
function buildRequests(accounts: readonly bigint[], traffic: Traffic, total: number): TransferInput[][][] {
  const perCaller: TransferInput[][][] = Array.from({ length: callers }, () => []);
  const requestCount = Math.ceil(total / transfersPerRequest);
  for (let r = 0; r < requestCount; r++) {
    const request: TransferInput[] = [];
    if (traffic === "two_phase") {
      const half = transfersPerRequest / 2;
      const pendings: TransferInput[] = [];
      const posts: TransferInput[] = [];
      for (let i = 0; i < half; i++) {
        const [debit, credit] = pickPair(accounts, "uniform");
        const pending: TransferInput = {
          id: ledgerId(),
          debitAccountId: debit,
          creditAccountId: credit,
          amount: 100n,
          ledger: ledgerNumber,
          code: 1,
          flags: TransferFlags.pending,
          timeout: 3600,
        };
        pendings.push(pending);
        posts.push({
          id: ledgerId(),
          debitAccountId: 0n,
          creditAccountId: 0n,
          amount: 60n,
          ledger: 0,
          code: 0,
          pendingId: pending.id,
          flags: TransferFlags.postPendingTransfer,
        });
      }
      perCaller[r % callers]!.push(pendings, posts);
      continue;
    }
    for (let i = 0; i < transfersPerRequest; i++) {
      const [debit, credit] = pickPair(accounts, traffic);
      request.push({
        id: ledgerId(),
        debitAccountId: debit,
        creditAccountId: credit,
        amount: BigInt(1 + randomIndex(1000)),
        ledger: ledgerNumber,
        code: 1,
        userData64: BigInt(r),
      });
    }
    perCaller[r % callers]!.push(request);
  }
  return perCaller;
}

async function measureLedger(name: string, db: Db, traffic: Traffic, total: number): Promise<BenchRow> {
  await migrate(db, [ledgerMigrations]);
  const ledger = createLedger({
    db,
    limits: {
      expiryIntervalMs: 0,
      ...(process.env.BENCH_LEDGER_PIPELINE
        ? { pipelineDepthMax: Number(process.env.BENCH_LEDGER_PIPELINE) }
        : {}),
      ...(process.env.BENCH_LEDGER_BATCH
        ? { batchTransfersMax: Number(process.env.BENCH_LEDGER_BATCH) }
        : {}),
    },
  });
  const accounts = await setupAccounts(ledger);
  const perCaller = buildRequests(accounts, traffic, total);
  // Warm up with the same traffic (a tenth of it, unmeasured): the first batches load the accounts into the
  // writer's cache, and the database's caches and files reach the state they keep for the rest of the run.
  await Promise.all(
    buildRequests(accounts, traffic, Math.ceil(total / 10)).map(async (requests) => {
      for (const request of requests) await ledger.createTransfers(request);
    }),
  );
  const latencies: number[] = [];
  let created = 0;
  let failed = 0;
  const started = performance.now();
  await Promise.all(
    perCaller.map(async (requests) => {
      for (const request of requests) {
        const t0 = performance.now();
        const results = await ledger.createTransfers(request);
        latencies.push(performance.now() - t0);
        for (const result of results) {
          if (result.status === "created") created++;
          else failed++;
        }
      }
    }),
  );
  const elapsedS = (performance.now() - started) / 1000;
  await ledger.close();
  if (failed > 0) throw new Error(`bench ${name}: ${failed} transfers failed`);
  for (const totals of await selectLedgerTotals(db)) {
    if (totals.debitsPosted !== totals.creditsPosted || totals.debitsPending !== totals.creditsPending)
      throw new Error(`bench ${name}: ledger ${totals.ledger} does not balance`);
  }
  const row = {
    case: name,
    transfers_per_s: Math.round(created / elapsedS),
    p50_ms: round(percentile(latencies, 50), 2),
    p99_ms: round(percentile(latencies, 99), 2),
    transfers: created,
  };
  console.error(`bench ledger: ${JSON.stringify(row)}`);
  return row;
}

/** One transaction per transfer: lock both accounts in id order, check, insert, update both, commit. */
async function measureNaive(name: string, db: Db): Promise<BenchRow> {
  await migrate(db, [ledgerMigrations]);
  const setup = createLedger({ db, limits: { expiryIntervalMs: 0 } });
  const accounts = await setupAccounts(setup);
  await setup.close();
  const latencies: number[] = [];
  let created = 0;
  const deadline = performance.now() + naiveDurationMs;
  const started = performance.now();
  let timestamp = BigInt(Date.now()) * 1_000_000n;
  const one = async (tx: Sql, debit: bigint, credit: bigint, amount: bigint) => {
    const [low, high] = debit < credit ? [debit, credit] : [credit, debit];
    const locked = await tx.query(
      "SELECT id, ledger FROM ledger_accounts WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE",
      [`{${idToUuid(low)},${idToUuid(high)}}`],
    );
    if (locked.length !== 2) throw new Error("naive: account missing");
    timestamp += 1n;
    await tx.query(
      `INSERT INTO ledger_transfers (id, debit_account_id, credit_account_id, amount, timestamp, ledger, code, flags)
       VALUES ($1, $2, $3, $4, $5, $6, 1, 0)`,
      [idToUuid(ledgerId()), idToUuid(debit), idToUuid(credit), amount, timestamp, ledgerNumber],
    );
    await tx.query("UPDATE ledger_accounts SET debits_posted = debits_posted + $2 WHERE id = $1", [
      idToUuid(debit),
      amount,
    ]);
    await tx.query("UPDATE ledger_accounts SET credits_posted = credits_posted + $2 WHERE id = $1", [
      idToUuid(credit),
      amount,
    ]);
  };
  await Promise.all(
    Array.from({ length: naiveConnections }, async () => {
      while (performance.now() < deadline) {
        const [debit, credit] = pickPair(accounts, "uniform");
        const t0 = performance.now();
        await db.transaction((tx) => one(tx, debit, credit, 1n + BigInt(randomIndex(1000))));
        latencies.push(performance.now() - t0);
        created++;
      }
    }),
  );
  const elapsedS = (performance.now() - started) / 1000;
  const row = {
    case: name,
    transfers_per_s: Math.round(created / elapsedS),
    p50_ms: round(percentile(latencies, 50), 2),
    p99_ms: round(percentile(latencies, 99), 2),
    transfers: created,
  };
  console.error(`bench ledger: ${JSON.stringify(row)}`);
  return row;
}
