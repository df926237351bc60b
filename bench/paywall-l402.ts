// The l402-reuse case of `npm run bench -- paywall`: a paid L402 token presented again and again, so each request
// costs verification only (the credential's reading remembered, the token's row remembered, caveats, the count taken
// from a lease or one counting UPDATE for many). Self-contained: the Lightning regtest cluster (cached btcd/lnd binaries), a Switchyard app on
// PGlite wired to the cluster's gateway node (L402 is in its default schemes; the embedded EVM chain off), a BTC
// account of the demo tenant, a paywall on /report offering L402 on Lightning whose token opens exactly as many
// requests as the case sends (warm-up included), a tenant's Fastify shop with the paywall plugin. The 402's invoice
// is paid by the payer node for real; then every request carries the same `Authorization: L402 <macaroon>:<preimage>`.
// The same route without the plugin is measured the same way with the cluster running (baseline-l402), so that the
// ratio compares like with like: both warmed up, then `rounds` pairs of runs, baseline then l402, each row the median
// run's figures with the spread; the lead may report either baseline. Everything started here stops in `finally`.
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import autocannon from "autocannon";
import Fastify, { type FastifyInstance } from "fastify";
import { pay } from "lightning";
import { Lsat } from "lsat-js";
import { assets } from "../core/index.ts";
import { createAccount } from "../gateway/accounts/index.ts";
import { loadConfig, rateLimitsOffEnv } from "../gateway/app/config.ts";
import { createApp } from "../gateway/app.ts";
import { type PaywallCheck, switchyardPaywall } from "../gateway/paywall/index.ts";
import { ensureLightningBinaries, startRegtestCluster, waitFor } from "../scripts/lightning/index.ts";
import type { BenchRow } from "./report.ts";

/** What a load run gives back (bench/paywall.ts's `load` has this shape). */
export type PaywallLoadResult = { requests_per_s: number; p99_ms: number; non_2xx: number; ok: number };
/** Drives GET `${url}/report` with `requests` requests, `clients` at a time, each with the same `headers`. */
export type PaywallLoad = (
  url: string,
  headers: Readonly<Record<string, string>> | null,
  counts: { requests: number; clients: number },
) => Promise<PaywallLoadResult>;

export type L402ReuseOptions = {
  /** Measured requests per case (as BENCH_PAYWALL_REQUESTS). */
  requests: number;
  /** Connections at a time (as BENCH_PAYWALL_CLIENTS). */
  clients: number;
  /**
   * Unmeasured requests before each measured run (default: as many as `requests`; with 200 the baseline read 3,600/s,
   * then 6,700-8,900/s in the runs after it: the JIT was not done).
   */
  warmupRequests?: number;
  /** Measured runs of each, alternating baseline and l402 (default 1); the rows give the median run's figures. */
  rounds?: number;
  /** The load generator; default `autocannonLoad` (completed requests / elapsed seconds, p99 of autocannon). */
  load?: PaywallLoad;
  log?: (line: string) => void;
};

const railReadyTimeoutMs = 60_000;
const tokenPaidTimeoutMs = 30_000;
/** The price of one request: 1 sat, so a token of tens of thousands of requests stays far below a channel's 10M sat. */
const pricePerRequestBtc = "0.00000001";
const btcAccountId = "acct_bench_l402";

/**
 * Completed 2xx requests / the seconds from the start to the last response, and autocannon's p99. Not autocannon's
 * own figures: a run with `amount` ends at its next one-second tick, so its duration (and a wall clock around it)
 * is a whole number of seconds, and requests.average is over per-second samples, the last one partial: 2,000
 * requests done in 1.2 s read as 1,000/s.
 */
export const autocannonLoad: PaywallLoad = (url, headers, { requests, clients }) =>
  new Promise((resolve, reject) => {
    const started = performance.now();
    let lastResponse = started;
    const instance = autocannon(
      {
        url: `${url}/report`,
        connections: clients,
        amount: requests,
        ...(headers === null ? {} : { headers: { ...headers } }),
      },
      (error, result) => {
        if (error !== null && error !== undefined) {
          reject(error);
          return;
        }
        const elapsedS = (lastResponse - started) / 1000;
        resolve({
          requests_per_s: Math.round(result["2xx"] / elapsedS),
          p99_ms: result.latency.p99,
          non_2xx: result.non2xx,
          ok: result["2xx"],
        });
      },
    );
    instance.on("response", () => {
      lastResponse = performance.now();
    });
  });

/** The run with the median rate (the lower middle one of an even count). */
function median(runs: readonly PaywallLoadResult[]): PaywallLoadResult {
  const sorted = [...runs].sort((a, b) => a.requests_per_s - b.requests_per_s);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

/** A tenant's Fastify app with GET /report, behind `paywall` (none: the baseline), on 127.0.0.1. */
export async function shop(paywall: PaywallCheck | null): Promise<{ app: FastifyInstance; url: string }> {
  const app = Fastify({ requestTimeout: 30_000 });
  if (paywall !== null) await app.register(switchyardPaywall, { paywall });
  app.get("/report", async () => ({ report: "the goods" }));
  const url = await app.listen({ port: 0, host: "127.0.0.1" });
  return { app, url };
}

/**
 * The l402-reuse row and a baseline measured the same way in the same conditions (the cluster running), in the
 * order baseline-l402, l402-reuse; the l402 row's ratio_to_baseline is against that baseline.
 */
export async function l402ReuseCase(options: L402ReuseOptions): Promise<BenchRow[]> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const load = options.load ?? autocannonLoad;
  const warmup = options.warmupRequests ?? options.requests;
  const counts = { requests: options.requests, clients: options.clients };
  const stops: Array<() => Promise<unknown>> = [];
  try {
    const started = performance.now();
    const binaries = await ensureLightningBinaries({ onProgress: log });
    const cluster = await startRegtestCluster({ binaries, log });
    stops.push(() => cluster.stop());
    log(`bench l402: cluster started in ${((performance.now() - started) / 1000).toFixed(1)} s`);

    const directory = await mkdtemp(path.join(os.tmpdir(), "switchyard-l402-bench-"));
    stops.push(() => rm(directory, { recursive: true, force: true }));
    const credentials = cluster.nodes.gateway.credentials();
    const switchyard = await createApp(
      loadConfig({
        LOG_LEVEL: "silent",
        PORT: "0",
        ...rateLimitsOffEnv,
        EVM_EMBEDDED_RPC_PORT: "off",
        LND_SOCKET: credentials.socket,
        LND_CERT_BASE64: credentials.cert,
        LND_MACAROON_BASE64: credentials.macaroon,
        LIGHTNING_JOURNAL_PATH: path.join(directory, "journal.jsonl"),
      }),
    );
    stops.push(() => switchyard.close());
    if (!switchyard.paywalls.schemes.some((scheme) => scheme.id === "l402"))
      throw new Error("bench l402: the app has no L402 scheme");
    await waitFor(
      "lightning rail available",
      async () => (switchyard.rails.get("lightning")?.snapshot().available ? true : undefined),
      { timeoutMs: railReadyTimeoutMs },
    );
    const demo = switchyard.demo!;
    await createAccount(
      { sql: switchyard.db, ledger: switchyard.ledger },
      { tenantId: demo.tenantId, kind: "customer", asset: assets.BTC, name: "l402 bench", id: btcAccountId },
    );
    // The token's count: every request this case sends with it (the first check, the warm-up, the measured runs) and one.
    const rounds = options.rounds ?? 1;
    const tokenRequests = warmup + rounds * options.requests + 1;
    const created = await switchyard.server.inject({
      method: "POST",
      url: "/v1/paywalls",
      headers: { authorization: `Bearer ${demo.apiKey}`, "content-type": "application/json" },
      payload: JSON.stringify({
        resource: "/report",
        price: { amount: pricePerRequestBtc, asset: "BTC" },
        offers: [{ scheme: "l402", rail: "lightning" }],
        accounts: [btcAccountId],
        l402: { token_lifetime_seconds: 3600, token_requests_max: tokenRequests },
      }),
    });
    if (created.statusCode !== 201) throw new Error(`bench l402: paywall not created: ${created.body}`);

    const baselineShop = await shop(null);
    stops.push(() => baselineShop.app.close());
    await load(baselineShop.url, null, { ...counts, requests: warmup });

    const l402Shop = await shop(switchyard.paywalls.forTenant(demo.tenantId));
    stops.push(() => l402Shop.app.close());
    const challenge = await fetch(`${l402Shop.url}/report`);
    const line = challenge.headers.get("www-authenticate");
    if (challenge.status !== 402 || line === null)
      throw new Error(`bench l402: expected a 402 with WWW-Authenticate, got ${challenge.status}`);
    // Node joins the LSAT and L402 lines with ", "; lsat-js reads the first (LSAT macaroon=…, invoice=…).
    const lsat = Lsat.fromHeader(line.split(/, (?=L402 )/)[0]!);
    const paid = await pay({ lnd: cluster.nodes.payer.lnd(), request: lsat.invoice });
    const authorization = { authorization: `L402 ${lsat.baseMacaroon}:${paid.secret}` };
    log(`bench l402: token for ${tokenRequests} requests paid (${paid.tokens} sat)`);
    // The gateway books the invoice a moment after LND settles it: the first request waits for that.
    await waitFor(
      "the paid token serves",
      async () => ((await fetch(`${l402Shop.url}/report`, { headers: authorization })).ok ? true : undefined),
      { timeoutMs: tokenPaidTimeoutMs },
    );
    await load(l402Shop.url, authorization, { ...counts, requests: warmup - 1 });
    // Rounds of the baseline then l402, both warm, so drift between them shows in every pair.
    const baselines: PaywallLoadResult[] = [];
    const paidRuns: PaywallLoadResult[] = [];
    for (let round = 0; round < rounds; round += 1) {
      baselines.push(await load(baselineShop.url, null, counts));
      paidRuns.push(await load(l402Shop.url, authorization, counts));
    }
    const baseline = median(baselines);
    const l402 = median(paidRuns);
    log(`bench l402: baseline ${baselines.map((b) => b.requests_per_s).join(" ")}`);
    log(`bench l402: l402-reuse ${paidRuns.map((b) => b.requests_per_s).join(" ")}`);
    const [used] = await switchyard.db.query<{ requests_used: number }>(
      "SELECT requests_used FROM l402_tokens WHERE tenant_id = $1",
      [demo.tenantId],
    );
    log(`bench l402: the token counted ${used?.requests_used} of ${tokenRequests} requests`);
    const spread = (runs: readonly PaywallLoadResult[]) => ({
      min_requests_per_s: Math.min(...runs.map((r) => r.requests_per_s)),
      max_requests_per_s: Math.max(...runs.map((r) => r.requests_per_s)),
      ok: runs.reduce((sum, r) => sum + r.ok, 0),
      non_2xx: runs.reduce((sum, r) => sum + r.non_2xx, 0),
      rounds: runs.map((r) => r.requests_per_s).join(" "),
    });
    return [
      { case: "baseline-l402", ...baseline, ...spread(baselines), ratio_to_baseline: 1 },
      {
        case: "l402-reuse",
        ...l402,
        ...spread(paidRuns),
        ratio_to_baseline: Number((l402.requests_per_s / baseline.requests_per_s).toFixed(3)),
      },
    ];
  } finally {
    for (const stop of stops.reverse()) {
      try {
        await stop();
      } catch (error) {
        log(`bench l402: stopping: ${String(error)}`);
      }
    }
  }
}

// `node bench/paywall-l402.ts`: this case alone (BENCH_PAYWALL_REQUESTS, BENCH_PAYWALL_CLIENTS as the bench's).
if (import.meta.main) {
  const rows = await l402ReuseCase({
    requests: Number(process.env.BENCH_PAYWALL_REQUESTS ?? 2_000),
    clients: Number(process.env.BENCH_PAYWALL_CLIENTS ?? 16),
  });
  process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
}
