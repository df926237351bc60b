// `npm run bench -- paywall`: paid requests per second through the paywall against the same route unpaid, in the
// same run. Switchyard runs in this process (development mode: PGlite, the embedded Hardhat chain, x402 wired),
// a tenant's Fastify app with GET /report listens on 127.0.0.1, and autocannon (as bench/http.ts) drives it.
//
// Cases: baseline (the same route, no paywall plugin), x402-verify (every request carries its own EIP-3009
// authorization signed beforehand by the official @x402/fetch client with the demo payer's key: decoded, matched,
// signature verified and the authorization claimed before the handler; settlement is queued — held back until
// the run has ended and then given back, as a batch settler would take it later — so the row measures the
// verification path, not the chain), l402-reuse (needs the L402 scheme wired into the app and a paid token from
// the Lightning regtest network: skipped, with the reason in its row, while either is missing).
// Metrics: requests_per_s, p99_ms, ratio_to_baseline. Knobs: BENCH_PAYWALL_REQUESTS (per case, default 2000),
// BENCH_PAYWALL_CLIENTS (default 16).
import { registerExactEvmScheme } from "@x402/evm/exact/client";
import { x402Client, x402HTTPClient } from "@x402/fetch";
import autocannon from "autocannon";
import Fastify, { type FastifyInstance } from "fastify";
import { privateKeyToAccount } from "viem/accounts";
import { loadConfig } from "../gateway/app/config.ts";
import { createApp } from "../gateway/app.ts";
import { type PaywallCheck, type PaywallCompletion, switchyardPaywall } from "../gateway/paywall/index.ts";
import type { BenchResult, BenchRow } from "./report.ts";

const requestsPerCase = Number(process.env.BENCH_PAYWALL_REQUESTS ?? 2_000);
const clients = Number(process.env.BENCH_PAYWALL_CLIENTS ?? 16);

async function shop(paywall: PaywallCheck | null): Promise<{ app: FastifyInstance; url: string }> {
  const app = Fastify({ requestTimeout: 30_000 });
  if (paywall !== null) await app.register(switchyardPaywall, { paywall });
  app.get("/report", async () => ({ report: "the goods" }));
  const url = await app.listen({ port: 0, host: "127.0.0.1" });
  return { app, url };
}

/** `requestsPerCase` GETs of /report, each with the next of `headers` (none: plain), `clients` at a time. */
async function load(url: string, headers: readonly Record<string, string>[] | null) {
  let next = 0;
  const result = await autocannon({
    url: `${url}/report`,
    connections: clients,
    amount: requestsPerCase,
    requests: [
      {
        method: "GET",
        setupRequest: (request) => {
          const extra = headers === null ? {} : headers[next++ % headers.length]!;
          return { ...request, headers: { ...request.headers, ...extra } };
        },
      },
    ],
  });
  const ok = result["2xx"];
  return {
    requests_per_s: Math.round(result.requests.average),
    p99_ms: result.latency.p99,
    non_2xx: result.non2xx,
    ok,
  };
}

export async function run(): Promise<BenchResult> {
  const switchyard = await createApp(
    loadConfig({ LOG_LEVEL: "silent", PORT: "0", RATE_LIMIT_PER_IP: "off", RATE_LIMIT_PER_KEY: "off" }),
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
    const baseline = await load(baselineShop.url, null);
    await baselineShop.app.close();
    rows.push({ case: "baseline", ...baseline, ratio_to_baseline: 1 });

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
    const signed: Record<string, string>[] = [];
    for (let i = 0; i < requestsPerCase; i += 1)
      signed.push(client.encodePaymentSignatureHeader(await client.createPaymentPayload(required)));
    const x402 = await load(x402Shop.url, signed);
    rows.push({
      case: "x402-verify",
      ...x402,
      ratio_to_baseline: Number((x402.requests_per_s / baseline.requests_per_s).toFixed(3)),
    });
    await x402Shop.app.close();
    for (const complete of queued.splice(0)) await complete({ served: false });

    const l402Wired = switchyard.paywalls.schemes.some((scheme) => scheme.id === "l402");
    rows.push({
      case: "l402-reuse",
      skipped: l402Wired
        ? "needs a token paid on the Lightning regtest network (not started by this bench)"
        : "the L402 scheme is not wired into the app yet",
    });
  } finally {
    await switchyard.close();
  }
  return { benchmark: "paywall", rows };
}
