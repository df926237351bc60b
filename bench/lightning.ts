// `npm run bench -- lightning`: 1-sat payments on the regtest network, payer → gateway ("-in") and
// gateway → payee ("-out"), sequential and 16 in flight, once with the `lightning` client directly and
// once through the whole gateway (HTTP API in-process via fastify.inject, router, ledger on PGlite, rail),
// with the gateway's overhead on the median.
//   in,  direct:  createInvoice on the gateway's lnd, the payer pays, the gateway's invoice subscription
//                 sees it settle.
//   in,  gateway: POST /v1/invoices, the payer pays, the gateway has credited the account in its ledger.
//   out, direct:  payViaPaymentRequest from the gateway's lnd to a payee invoice made beforehand.
//   out, gateway: POST /v1/payments to such an invoice, answered once it succeeded and the ledger posted it.
// Direct and gateway take turns in rounds, so that the machine's noise hits both alike: rounds of `seqRound`
// counted payments when sequential, each paying an invoice made just before it (untimed), and longer ones (60 by
// default) when 16 are in flight, paying invoices made before the round. A regtest payment's latency spreads over tens of milliseconds
// (LND signs commitments on a 50 ms ticker), so the medians need a few hundred samples to resolve a 5% difference.
// A payment is slowed by the commitment updates LND is still exchanging for the ones before it, so it matters which
// path made those. The first payments of each round, which may follow the other path's round, are made but not
// counted (a washout, as in a crossover trial: one when sequential, 16 when 16 are in flight), and their medians are
// printed. Only the first differs: in sequential rounds of four "-out" payments the p50s by position were direct
// 74.6 then 77.0-77.3 ms, gateway 81.3 then 77.7-78.6 ms. The direct client starts its next payment as soon as LND
// answers, into more of those leftovers; the gateway answers about 3 ms later (the ledger post with the payment's
// status, the response), and the payment after it finds LND further along. Earlier versions of this bench took
// turns payment by payment, so each gateway payment followed a direct one half the time and each direct payment a
// gateway one: the sequential "-out" ratio read 1.04-1.05, against about 1.02 for each path following itself.
// A payment after a pause, LND idle, shows the gateway's whole cost on this machine, the work before the send
// included: about 6 ms. Paced 100 ms apart, the p50s were 100.3 ms direct and 106.0 ms through the gateway.
// Where it goes (issue #19, medians of 80 lone payments timed at each step with marks left out of the code): the
// request to createPayment 1.3 ms (inject, the API key, the Idempotency-Key's digest, the body's schema, the
// invoice read), routing 0.6, the reservation's batch built 0.6, its one exchange with PGlite 1.3-1.7 (the journal's
// fdatasync runs beside it), then LND; from LND's answer to the post's exchange 1.2, that exchange 1.7, the answer
// 0.7: about 8.5 ms, of which the direct path's client spends some too (SendPaymentV2 answered the gateway about
// 4 ms sooner than payViaPaymentRequest answered the direct path). Every step runs on cold caches after the pause:
// the run prints the gateway database's cheapest statement timed back to back and after the pause (PGlite's
// `SELECT 1` through the gateway's prepared statements read 0.033 against 0.43 ms). A PGlite of its own, nothing
// else running, read 0.17 ms back to back, 0.58 after 20 ms idle, and 0.35 after 20 ms of busy spinning instead:
// the CPU's caches, not its idle states. Not taken: LND's HTLC event stream says an outgoing HTLC settled (with its
// preimage) before SendPaymentV2 says SUCCEEDED, by 1.1 ms at the median (0.4-6 ms lone; p90 3.3 ms at 16 in flight),
// its own record written in between. Taking the outcome from the settle bought 0.0-0.3 ms at the gateway's median
// (150 lone payments each way, alternating, in one cluster), for a second source of a payout's outcome and fee.
//   lone-out:     "-out" payments, each after an idle pause of 200 ms (its invoice made before the pause, untimed),
//                 in the sequential cases' rounds. The pause is the washout: nothing of the other path's payments
//                 is left in LND, so every payment counts; the medians of the rounds' first payments are printed
//                 beside the others' to show it. Then 40 more lone payments through the gateway, not counted, are
//                 traced (tracer, below), and where their time goes is printed stage by stage.
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { type AuthenticatedLnd, createInvoice, payViaPaymentRequest, subscribeToInvoices } from "lightning";
import { assets, type Rail } from "../core/index.ts";
import { createAccount } from "../gateway/accounts/index.ts";
import { type App, createApp } from "../gateway/app.ts";
import type { Db, Sql } from "../gateway/db/index.ts";
import { ensureLightningBinaries, startRegtestCluster, waitFor } from "../scripts/lightning/index.ts";
import { testConfig } from "../test/support/config.ts";
import { createTestDatabase, startPostgres } from "../test/support/postgres.ts";
import { type BenchResult, type BenchRow, percentile } from "./report.ts";

/**
 * LIGHTNING_BENCH_PAYMENTS_SEQ / _16 / _LONE: counted payments per side (seq and 16: the washouts come on top), 0 leaves
 * the case out; LIGHTNING_BENCH_TRACED: lone payments traced after lone-out (0: none); LIGHTNING_BENCH_DB=postgres: the
 * gateway on PostgreSQL.
 */
const paymentsSeq = Number(process.env.LIGHTNING_BENCH_PAYMENTS_SEQ ?? 200);
const payments16 = Number(process.env.LIGHTNING_BENCH_PAYMENTS_16 ?? 960);
const paymentsLone = Number(process.env.LIGHTNING_BENCH_PAYMENTS_LONE ?? 200);
const tracedLone = Number(process.env.LIGHTNING_BENCH_TRACED ?? 40);
/** "lone-out": each payment after this long with nothing in flight, LND idle (its commitment ticker is 50 ms). */
const lonePauseMs = 200;
const concurrency = 16;
const rounds16 = 16;
/** Sequential rounds: this many counted payments of one path, after one that is not counted. */
const seqRound = 4;
const amountMsat = 1_000n; // 1 sat
const feeMaxMsat = 10_000n;
const settleTimeoutMs = 60_000;

type Sample = { latencyMs: number };
type Measured = { samples: number[]; wallMs: number };

/** Settlement waiters keyed by payment hash, fed by one subscription or by the rail's events. */
function settlementWaiters() {
  const waiting = new Map<string, () => void>();
  const settled = new Set<string>();
  return {
    wait(hash: string): Promise<void> {
      if (settled.delete(hash)) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no settlement for ${hash}`)), settleTimeoutMs);
        waiting.set(hash, () => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
    settle(hash: string) {
      const resolve = waiting.get(hash);
      if (resolve === undefined) settled.add(hash);
      else {
        waiting.delete(hash);
        resolve();
      }
    },
  };
}

async function runPool(
  count: number,
  parallel: number,
  one: (i: number) => Promise<Sample>,
): Promise<Measured> {
  const samples: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(parallel, count) }, async () => {
      while (next < count) {
        const i = next++;
        samples.push((await one(i)).latencyMs);
      }
    }),
  );
  return { samples, wallMs: performance.now() - started };
}

const timed = async (work: () => Promise<unknown>): Promise<Sample> => {
  const started = performance.now();
  await work();
  return { latencyMs: performance.now() - started };
};

/** A case's two rows, direct and through the gateway, the gateway's with its overhead on the median. */
function pairRows(name: string, direct: Measured, gateway: Measured): [BenchRow, BenchRow] {
  const row = (side: "direct" | "gateway", measured: Measured): BenchRow => ({
    case: `${side}-${name}`,
    payments_per_s: Number(((measured.samples.length * 1000) / measured.wallMs).toFixed(2)),
    p50_ms: Number(percentile(measured.samples, 50).toFixed(2)),
    p99_ms: Number(percentile(measured.samples, 99).toFixed(2)),
  });
  const directRow = row("direct", direct);
  const gatewayRow = row("gateway", gateway);
  gatewayRow.overhead_p50_ratio = Number(
    ((gatewayRow.p50_ms as number) / (directRow.p50_ms as number)).toFixed(3),
  );
  process.stderr.write(`bench: ${JSON.stringify(directRow)} ${JSON.stringify(gatewayRow)}\n`);
  return [directRow, gatewayRow];
}

/**
 * Where a lone payment's time goes in the gateway, without a line in the gateway's code: the bench wraps what the
 * gateway calls out to — its database's `query`, `queryAll` and `transaction` (each exchange, the ledger's batches
 * among them: PGlite's through `queryAll`, PostgreSQL's through `transaction`) and the rail's `execute` (LND, from the
 * send to its answer) — and marks each call's start and end while a traced payment runs. A traced payment's marks, in
 * order, name its stages ("request → database#1", "database#1", "database end → rail#1", …); the stages of the
 * payments whose marks came in the most common order are printed as medians. Traced payments run after the counted
 * ones, so the wrappers' own microseconds never reach a row; the wrappers are taken off again after them.
 */
function tracer(app: Pick<App, "db" | "rails">) {
  const db = app.db as Pick<Db, "query" | "queryAll" | "transaction">;
  const rail = app.rails.get("lightning") as { execute: Rail["execute"] };
  const original = {
    query: db.query,
    queryAll: db.queryAll,
    transaction: db.transaction,
    execute: rail.execute,
  };
  let marks: Array<[string, number]> | null = null;
  const wrap =
    <A extends unknown[], R>(what: string, call: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      marks?.push([`${what} start`, performance.now()]);
      try {
        return await call(...args);
      } finally {
        marks?.push([`${what} end`, performance.now()]);
      }
    };
  const traces: Array<Array<[string, number]>> = [];
  return {
    on() {
      db.query = wrap("database", original.query) as Db["query"];
      db.queryAll = wrap("database", original.queryAll);
      db.transaction = wrap("database", original.transaction) as Db["transaction"];
      rail.execute = wrap("rail", original.execute);
    },
    off() {
      Object.assign(db, {
        query: original.query,
        queryAll: original.queryAll,
        transaction: original.transaction,
      });
      rail.execute = original.execute;
    },
    async traced(pay: () => Promise<unknown>): Promise<void> {
      marks = [["request", performance.now()]];
      await pay();
      marks.push(["answer", performance.now()]);
      traces.push(marks);
      marks = null;
    },
    /** "stage: p50 ms" lines for the traces in the most common order. */
    report(): string[] {
      const named = traces.map((trace) => {
        const seen = new Map<string, number>();
        const stages: Array<[string, number]> = [];
        for (let i = 1; i < trace.length; i += 1) {
          const [mark, at] = trace[i]!;
          const [what, edge] = mark.split(" ") as [string, string | undefined];
          const took = at - trace[i - 1]![1];
          // A call's end closes its own stage (a background job's query may start and end during the rail's call).
          if (edge === "end") {
            stages.push([`${what}#${seen.get(what) ?? 0}`, took]);
            continue;
          }
          let next = "answer";
          if (edge === "start") {
            seen.set(what, (seen.get(what) ?? 0) + 1);
            next = `${what}#${seen.get(what)}`;
          }
          // From the mark before: "request", "database end", "rail start" (a background query during the rail's call)…
          stages.push([`${trace[i - 1]![0]} → ${next}`, took]);
        }
        return stages;
      });
      const order = (stages: Array<[string, number]>) => stages.map(([name]) => name).join(" | ");
      const counts = new Map<string, number>();
      for (const stages of named) counts.set(order(stages), (counts.get(order(stages)) ?? 0) + 1);
      const [modal, count] = [...counts].sort((a, b) => b[1] - a[1])[0] ?? ["", 0];
      const chosen = named.filter((stages) => order(stages) === modal);
      const lines = (chosen[0] ?? []).map(([name], i) => {
        const p50 = percentile(
          chosen.map((stages) => stages[i]![1]),
          50,
        );
        return `${name}: ${p50.toFixed(3)} ms`;
      });
      const others = [...counts].filter(([order]) => order !== modal).map(([order, n]) => `${n}× ${order}`);
      return [
        `${count} of ${named.length} traced payments in this order (p50 of each stage)`,
        ...lines,
        ...(others.length === 0 ? [] : ["the others, in their orders:", ...others]),
      ];
    },
  };
}

/**
 * The database's cheapest statement, timed back to back and after `pauseMs` idle (p50 of 30 each): what cold caches
 * add to each of a lone payment's steps on this machine.
 */
async function coldStatementMs(
  db: Sql,
  pauseMs: number,
): Promise<{ backToBack: number; afterPause: number }> {
  const timedQuery = async () => {
    const started = performance.now();
    await db.query("SELECT 1");
    return performance.now() - started;
  };
  const backToBack: number[] = [];
  const afterPause: number[] = [];
  for (let i = 0; i < 30; i += 1) backToBack.push(await timedQuery());
  for (let i = 0; i < 30; i += 1) {
    await sleep(pauseMs);
    afterPause.push(await timedQuery());
  }
  return { backToBack: percentile(backToBack, 50), afterPause: percentile(afterPause, 50) };
}

/**
 * One piece on purpose: the bench's script, read top to bottom — cluster, gateway, the four cases in rounds with
 * their washouts, then lone-out, each row measured against its direct baseline in the same run — one cleanup.
 */
export async function run(): Promise<BenchResult> {
  const binaries = await ensureLightningBinaries();
  const cluster = await startRegtestCluster({ binaries, log: (line) => process.stderr.write(`${line}\n`) });
  const directory = await mkdtemp(path.join(os.tmpdir(), "switchyard-lightning-bench-"));
  // LIGHTNING_BENCH_DB=postgres: the gateway on a private PostgreSQL (durable commits) instead of PGlite.
  const postgres = process.env.LIGHTNING_BENCH_DB === "postgres" ? await startPostgres() : null;
  const databaseUrl = postgres === null ? null : await createTestDatabase(postgres.url, "lightning_bench");
  const gatewayLnd: AuthenticatedLnd = cluster.nodes.gateway.lnd();
  const payer = cluster.nodes.payer.lnd();
  const payee = cluster.nodes.payee.lnd();
  const credentials = cluster.nodes.gateway.credentials();
  const app = await createApp(
    testConfig({
      LOG_LEVEL: "silent",
      LND_SOCKET: credentials.socket,
      LND_CERT_BASE64: credentials.cert,
      LND_MACAROON_BASE64: credentials.macaroon,
      LIGHTNING_JOURNAL_PATH: path.join(directory, "journal.jsonl"),
      LIGHTNING_EXECUTE_WAIT_MS: String(settleTimeoutMs),
      WEBHOOK_DELIVERY_INTERVAL_MS: "3600000",
      ...(databaseUrl === null ? {} : { DATABASE_URL: databaseUrl }),
    }),
  );
  const accountId = "acct_bench_btc";
  await createAccount(
    { sql: app.db, ledger: app.ledger },
    { tenantId: app.demo!.tenantId, kind: "customer", asset: assets.BTC, name: "bench", id: accountId },
  );
  const api = async (url: string, body: unknown) => {
    const response = await app.server.inject({
      method: "POST",
      url,
      headers: {
        authorization: `Bearer ${app.demo!.apiKey}`,
        "content-type": "application/json",
        // POST /v1/payments requires one: a new key per call (the bench never retries).
        "idempotency-key": `bench-${randomUUID()}`,
      },
      payload: JSON.stringify(body),
    });
    if (response.statusCode >= 300)
      throw new Error(`bench: ${url} answered ${response.statusCode}: ${response.body}`);
    return response.json() as { id: string; status: string; instructions: Record<string, string> };
  };
  const railSettled = settlementWaiters();
  app.events.on("invoice.paid", (invoiceId: string) => railSettled.settle(invoiceId));
  await waitFor(
    "lightning rail available",
    async () => (app.rails.get("lightning")?.snapshot().available ? true : undefined),
    {
      timeoutMs: 60_000,
    },
  );
  const directSettled = settlementWaiters();
  const subscription = subscribeToInvoices({ lnd: gatewayLnd });
  subscription.on("invoice_updated", (invoice: { id: string; is_confirmed: boolean }) => {
    if (invoice.is_confirmed) directSettled.settle(invoice.id);
  });
  subscription.on("error", (error: unknown) =>
    process.stderr.write(`bench: invoice subscription: ${String(error)}\n`),
  );

  const directIn = () =>
    timed(async () => {
      const invoice = await createInvoice({ lnd: gatewayLnd, mtokens: amountMsat.toString() });
      const settled = directSettled.wait(invoice.id);
      await payViaPaymentRequest({ lnd: payer, request: invoice.request });
      await settled;
    });
  const gatewayIn = () =>
    timed(async () => {
      const invoice = await api("/v1/invoices", {
        account: accountId,
        amount: "0.00000001",
        asset: "BTC",
        description: "bench",
      });
      const settled = railSettled.wait(invoice.id);
      await payViaPaymentRequest({ lnd: payer, request: invoice.instructions.bolt11 as string });
      await settled;
    });
  const payeeInvoice = async () =>
    (await createInvoice({ lnd: payee, mtokens: amountMsat.toString() })).request;
  const payDirect = (request: string) =>
    timed(() => payViaPaymentRequest({ lnd: gatewayLnd, request, max_fee_mtokens: feeMaxMsat.toString() }));
  const payGateway = (request: string) =>
    timed(async () => {
      const payment = await api("/v1/payments", {
        amount: "0.00000001",
        asset: "BTC",
        source: { account: accountId },
        destination: { type: "bolt11", invoice: request },
      });
      if (payment.status !== "succeeded") throw new Error(`bench payment ${payment.id}: ${payment.status}`);
    });

  const rows: BenchRow[] = [];
  try {
    // Fund the account the "out" payments spend (0.001 BTC, paid in by the payer), and warm up both paths.
    const funding = await api("/v1/invoices", {
      account: accountId,
      amount: "0.001",
      asset: "BTC",
      description: "bench funding",
    });
    const funded = railSettled.wait(funding.id);
    await payViaPaymentRequest({ lnd: payer, request: funding.instructions.bolt11 as string });
    await funded;
    await runPool(5, 1, directIn);
    await runPool(5, 1, gatewayIn);
    for (const direction of ["in", "out"] as const) {
      for (const [label, total, parallel] of [
        ["seq", paymentsSeq, 1],
        ["16", payments16, concurrency],
      ] as const) {
        if (total === 0) continue;
        const rounds = parallel === 1 ? Math.ceil(total / seqRound) : rounds16;
        const perRound = Math.ceil(total / rounds);
        const direct: Measured = { samples: [], wallMs: 0 };
        const gateway: Measured = { samples: [], wallMs: 0 };
        // The washout: a round's first payment when sequential, its first 16 when 16 are in flight.
        const washout = parallel === 1 ? 1 : concurrency;
        /** The rounds' uncounted first payments, printed to show what the washout leaves out. */
        const firsts = { direct: [] as number[], gateway: [] as number[] };
        for (let round = 0; round < rounds; round += 1) {
          const both = [
            [direct, "direct"],
            [gateway, "gateway"],
          ] as const;
          // Whichever goes first in a round goes second in the next.
          for (const [target, which] of round % 2 === 0 ? both : [...both].reverse()) {
            let one: (i: number) => Promise<Sample>;
            if (direction === "in") one = which === "direct" ? directIn : gatewayIn;
            else {
              const pay = which === "direct" ? payDirect : payGateway;
              if (parallel === 1) {
                // Each pays an invoice made just before it, untimed, as each "-in" payment makes its own.
                one = async () => await pay(await payeeInvoice());
              } else {
                const requests = await Promise.all(Array.from({ length: washout + perRound }, payeeInvoice));
                let next = 0;
                one = () => pay(requests[next++] as string);
              }
            }
            firsts[which].push(...(await runPool(washout, parallel, one)).samples);
            const measured = await runPool(perRound, parallel, one);
            target.samples.push(...measured.samples);
            target.wallMs += measured.wallMs;
          }
        }
        rows.push(...pairRows(`${label}-${direction}`, direct, gateway));
        process.stderr.write(
          `bench: ${label}-${direction} first ${washout} of each round, not counted: p50 direct ${percentile(firsts.direct, 50).toFixed(2)} ms, gateway ${percentile(firsts.gateway, 50).toFixed(2)} ms\n`,
        );
      }
    }
    if (paymentsLone > 0) {
      const direct: Measured = { samples: [], wallMs: 0 };
      const gateway: Measured = { samples: [], wallMs: 0 };
      /** The rounds' first payments (counted), printed beside the rest. */
      const firsts = { direct: [] as number[], gateway: [] as number[] };
      const rest = { direct: [] as number[], gateway: [] as number[] };
      for (let round = 0; round < Math.ceil(paymentsLone / seqRound); round += 1) {
        const both = [
          [direct, "direct"],
          [gateway, "gateway"],
        ] as const;
        for (const [target, which] of round % 2 === 0 ? both : [...both].reverse()) {
          const pay = which === "direct" ? payDirect : payGateway;
          for (let i = 0; i < seqRound; i += 1) {
            const request = await payeeInvoice();
            await sleep(lonePauseMs);
            const { latencyMs } = await pay(request);
            target.samples.push(latencyMs);
            target.wallMs += latencyMs; // payments_per_s: of the payments themselves, the pauses left out
            (i === 0 ? firsts : rest)[which].push(latencyMs);
          }
        }
      }
      rows.push(...pairRows("lone-out", direct, gateway));
      const p50 = (samples: number[]) => percentile(samples, 50).toFixed(2);
      process.stderr.write(
        `bench: lone-out p50 of the rounds' first payments: direct ${p50(firsts.direct)} ms, gateway ${p50(firsts.gateway)} ms; of the others: direct ${p50(rest.direct)} ms, gateway ${p50(rest.gateway)} ms\n`,
      );
      if (tracedLone > 0) {
        const trace = tracer(app);
        trace.on();
        try {
          for (let i = 0; i < tracedLone; i += 1) {
            const request = await payeeInvoice();
            await sleep(lonePauseMs);
            await trace.traced(() => payGateway(request));
          }
        } finally {
          trace.off();
        }
        process.stderr.write(
          `bench: lone-out, where the gateway's time goes: ${trace.report().join("\n  ")}\n`,
        );
      }
      const cold = await coldStatementMs(app.db, lonePauseMs);
      process.stderr.write(
        `bench: lone-out context: the gateway database's SELECT 1, p50 ${cold.backToBack.toFixed(3)} ms back to back, ${cold.afterPause.toFixed(3)} ms after a ${lonePauseMs} ms pause\n`,
      );
    }
  } finally {
    subscription.removeAllListeners();
    await app.close();
    await cluster.stop();
    await postgres?.stop();
    await rm(directory, { recursive: true, force: true });
  }
  const order = ["direct-seq", "gateway-seq", "direct-16", "gateway-16", "direct-lone", "gateway-lone"];
  rows.sort((a, b) => {
    const [caseA, caseB] = [a.case, b.case];
    const direction = (name: string) => (name.endsWith("-in") ? 0 : 1);
    const rank = (name: string) => order.indexOf(name.replace(/-(in|out)$/, ""));
    return direction(caseA) - direction(caseB) || rank(caseA) - rank(caseB);
  });
  return { benchmark: "lightning", rows };
}
