// `npm run bench -- paywall`: paid requests per second through the paywall against the same route unpaid, in the
// same run. Switchyard runs in this process (development mode: PGlite, the embedded Hardhat chain, x402 wired),
// a tenant's Fastify app with GET /report listens on 127.0.0.1, and autocannon (as bench/http.ts) drives it.
//
// Cases: baseline (the same route, no paywall plugin), x402-verify (every request carries its own EIP-3009
// authorization signed beforehand by the official @x402/fetch client with the demo payer's key: decoded, matched,
// signature verified and the authorization claimed before the handler; settlement is queued — held back until
// the run has ended and then given back, as a batch settler would take it later — so the row measures the
// verification path, not the chain), and from bench/paywall-l402.ts baseline-l402 and l402-reuse (one L402 token
// paid on the Lightning regtest network, which the case starts, presented on every request; its baseline is the
// same route measured the same way while the cluster runs).
// Measured as requests completed / seconds elapsed (autocannon's per-second average caps a run shorter than a second
// at its request count). Each case is warmed up first; then `BENCH_PAYWALL_ROUNDS` rounds of baseline then x402, and
// baseline once more at the end, so drift between the first and last baseline shows. A round lasts about
// `BENCH_PAYWALL_SECONDS`: baseline by duration, x402 by the number of authorizations signed before it (the rate
// the warm-up reached × the seconds; signing is setup, not measured).
// Metrics: requests_per_s (median of the rounds), min/max over the rounds, p99_ms (the median round's),
// ratio_to_baseline (median over median). Knobs: BENCH_PAYWALL_SECONDS (default 4), BENCH_PAYWALL_ROUNDS
// (default 3), BENCH_PAYWALL_CLIENTS (default 16), BENCH_PAYWALL_L402_REQUESTS (default 30,000, a run of 1-2 s;
// `0` leaves the l402 case out, e.g. to profile the x402 one alone).
import { registerExactEvmScheme } from "@x402/evm/exact/client";
import { x402Client, x402HTTPClient } from "@x402/fetch";
import autocannon from "autocannon";
import { privateKeyToAccount } from "viem/accounts";
import { loadConfig, rateLimitsOffEnv } from "../gateway/app/config.ts";
import { createApp } from "../gateway/app.ts";
import type { PaywallCheck, PaywallCompletion } from "../gateway/paywall/index.ts";
import { l402ReuseCase, shop } from "./paywall-l402.ts";
import type { BenchResult, BenchRow } from "./report.ts";

const roundSeconds = Number(process.env.BENCH_PAYWALL_SECONDS ?? 4);
const rounds = Number(process.env.BENCH_PAYWALL_ROUNDS ?? 3);
const clients = Number(process.env.BENCH_PAYWALL_CLIENTS ?? 16);
/** Authorizations signed for the x402 warm-up, and the most signed for one round. */
const warmupAuthorizations = 400;
const maxAuthorizationsPerRound = 40_000;
/** Requests of the l402-reuse run (and as many to warm up): the token is bought for them all. */
const l402Requests = Number(process.env.BENCH_PAYWALL_L402_REQUESTS ?? 30_000);

type Measured = { requests_per_s: number; p99_ms: number; non_2xx: number; ok: number };

/**
 * GETs of /report, `clients` at a time: with `headers`, one per header (each request its own), else for `seconds`.
 * The rate is requests completed over the seconds elapsed.
 */
async function load(
  url: string,
  work: { headers: readonly Record<string, string>[] } | { seconds: number },
): Promise<Measured> {
  let next = 0;
  const headers = "headers" in work ? work.headers : null;
  const started = performance.now();
  let lastResponse = started;
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: `${url}/report`,
        connections: clients,
        ...(headers === null
          ? { duration: (work as { seconds: number }).seconds }
          : { amount: headers.length }),
        requests: [
          {
            method: "GET",
            setupRequest: (request) => {
              const extra = headers === null ? {} : headers[next++ % headers.length]!;
              return { ...request, headers: { ...request.headers, ...extra } };
            },
          },
        ],
      },
      (error, done) => (error === null || error === undefined ? resolve(done) : reject(error)),
    );
    instance.on("response", () => {
      lastResponse = performance.now();
    });
  });
  // To the last response, not to autocannon's end: a run of `amount` requests ends at its next one-second tick, so
  // a wall clock around it read 1,584 requests done in 1.2 s as 792/s (every x402 round measured 790/s).
  const elapsedS = (lastResponse - started) / 1000;
  const completed = result["2xx"] + result.non2xx;
  return {
    requests_per_s: Math.round(completed / elapsedS),
    p99_ms: result.latency.p99,
    non_2xx: result.non2xx,
    ok: result["2xx"],
  };
}

/** The row of a case's rounds: the median round's figures, the spread of the rates, and every round's rate. */
function summary(name: string, measured: readonly Measured[]): BenchRow & { requests_per_s: number } {
  const sorted = [...measured].sort((x, y) => x.requests_per_s - y.requests_per_s);
  const median = sorted[Math.floor((sorted.length - 1) / 2)]!;
  return {
    case: name,
    requests_per_s: median.requests_per_s,
    min_requests_per_s: sorted[0]!.requests_per_s,
    max_requests_per_s: sorted.at(-1)!.requests_per_s,
    p99_ms: median.p99_ms,
    non_2xx: measured.reduce((sum, m) => sum + m.non_2xx, 0),
    ok: measured.reduce((sum, m) => sum + m.ok, 0),
    rounds: measured.map((m) => m.requests_per_s).join(" "),
  };
}

export async function run(): Promise<BenchResult> {
  const switchyard = await createApp(
    loadConfig({
      LOG_LEVEL: "silent",
      PORT: "0",
      ...rateLimitsOffEnv,
    }),
  );
  const rows: BenchRow[] = [];
  try {
    const demo = switchyard.demo!;
    const chain = switchyard.chain!;
    const tenantPaywall = switchyard.paywalls.forTenant(demo.tenantId);
    const created = await switchyard.server.inject({
      method: "POST",
      url: "/v1/paywalls",
      headers: { authorization: `Bearer ${demo.apiKey}`, "content-type": "application/json" },
      payload: JSON.stringify({
        resource: "/report",
        price: { amount: "0.001", asset: "USDC" },
        offers: [{ scheme: "x402", rail: "evm" }],
        accounts: [demo.merchant.id],
      }),
    });
    if (created.statusCode !== 201) throw new Error(`paywall not created: ${created.body}`);

    const baselineShop = await shop(null);
    await load(baselineShop.url, { seconds: 1 });

    // Settlement queued: a paid request's completion is held and given back (unserved) after the run.
    const queued: Array<(outcome: { served: boolean }) => Promise<PaywallCompletion>> = [];
    const deferred: PaywallCheck = async (request) => {
      const verdict = await tenantPaywall(request);
      if (verdict.kind !== "paid") return verdict;
      return {
        ...verdict,
        complete: async (outcome) => {
          if (!outcome.served) return verdict.complete(outcome);
          queued.push((later) => verdict.complete(later));
          return { kind: "settled", headers: [] };
        },
      };
    };
    const x402Shop = await shop(deferred);
    const payer = privateKeyToAccount(demo.chains[0]!.payer!.privateKey);
    const client = new x402HTTPClient(
      registerExactEvmScheme(
        x402Client.fromConfig({
          schemes: [],
          spendControls: {
            allowedAssets: [{ network: `eip155:${chain.chain.id}`, asset: chain.contracts.testUsd }],
          },
        }),
        { signer: payer },
      ),
    );
    const challenge = await fetch(`${x402Shop.url}/report`);
    const required = client.getPaymentRequiredResponse(
      (name) => challenge.headers.get(name),
      await challenge.json(),
    );
    const sign = async (count: number) => {
      const signed: Record<string, string>[] = [];
      for (let i = 0; i < count; i += 1)
        signed.push(client.encodePaymentSignatureHeader(await client.createPaymentPayload(required)));
      return signed;
    };
    const warm = await load(x402Shop.url, { headers: await sign(warmupAuthorizations) });
    const perRound = Math.min(
      maxAuthorizationsPerRound,
      Math.max(warmupAuthorizations, Math.round(warm.requests_per_s * roundSeconds)),
    );

    const baselines: Measured[] = [];
    const paid: Measured[] = [];
    for (let round = 0; round < rounds; round += 1) {
      baselines.push(await load(baselineShop.url, { seconds: roundSeconds }));
      paid.push(await load(x402Shop.url, { headers: await sign(perRound) }));
      // Given back between rounds, so the queue does not grow across them (not measured).
      for (const complete of queued.splice(0)) await complete({ served: false });
    }
    baselines.push(await load(baselineShop.url, { seconds: roundSeconds }));
    await baselineShop.app.close();
    await x402Shop.app.close();

    const baselineRow = summary("baseline", baselines);
    rows.push({
      ...baselineRow,
      first_last: `${baselines[0]!.requests_per_s} → ${baselines.at(-1)!.requests_per_s}`,
      ratio_to_baseline: 1,
    });
    const x402Row = summary("x402-verify", paid);
    rows.push({
      ...x402Row,
      ratio_to_baseline: Number((x402Row.requests_per_s / baselineRow.requests_per_s).toFixed(3)),
    });
  } finally {
    await switchyard.close();
  }
  // l402-reuse beside its own baseline, both measured while the regtest cluster runs (bench/paywall-l402.ts).
  if (l402Requests > 0) rows.push(...(await l402ReuseCase({ requests: l402Requests, clients, rounds })));
  return { benchmark: "paywall", rows };
}
