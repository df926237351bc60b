// `npm start`: reads the configuration from the environment, builds the app, listens, and says how to use it.

import { formatAmount } from "../core/index.ts";
import { ConfigError, type EvmChainConfig, loadConfig, withStartDefaults } from "./app/config.ts";
import { type App, createApp, type DemoTenant, demoFundingUsdc } from "./app.ts";

async function main(): Promise<void> {
  const config = loadConfig(withStartDefaults(process.env));
  const started = performance.now();
  console.log(
    `switchyard: starting (database: ${config.database.kind}, EVM chains: ${config.evm.chains.map(chainText).join(", ")})`,
  );
  const app = await createApp(config);
  const address = await app.server.listen({ port: config.port, host: config.host });
  const url = address.replace("[::1]", "localhost");
  console.log(`switchyard: listening on ${url} (ready in ${Math.round(performance.now() - started)} ms)`);
  console.log(
    `switchyard: rails: ${[...app.rails.values()].map((rail) => `${rail.id} (${rail.asset.code})`).join(", ")}`,
  );
  if (config.fiat.kind === "off") console.log(`switchyard: ${config.fiat.reason}`);
  if (!app.rails.has("lightning"))
    console.log("switchyard: no LND configured (LND_SOCKET): the Lightning rail is off");
  console.log(operatorText(app.operator));
  if (app.demo !== null)
    console.log(
      demoText(app.demo, url, { lightning: app.rails.has("lightning"), fiat: config.fiat.kind === "on" }),
    );
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`switchyard: ${signal}, stopping`);
    await app.close();
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
}

main().catch((error: unknown) => {
  if (error instanceof ConfigError) {
    console.error(`switchyard: ${error.message}`);
    process.exit(2);
  }
  console.error("switchyard: failed to start", error);
  process.exit(1);
});

function operatorText(operator: App["operator"]): string {
  switch (operator.kind) {
    case "created":
      return `switchyard: operator credential (manages tenants at /v1/tenants; shown this once, only its SHA-256 is kept):\n  ${operator.secret}`;
    case "configured":
      return `switchyard: operator credential from OPERATOR_KEY (${operator.hint})`;
    case "existing":
      return `switchyard: operator credential made at an earlier start (${operator.hint}); set OPERATOR_KEY to replace it`;
  }
}

function chainText(chain: EvmChainConfig): string {
  const where =
    chain.source.kind === "embedded"
      ? `Hardhat in-process, chain ${chain.source.chainId}`
      : new URL(chain.source.url).host;
  return `${chain.id} (${where})`;
}

/** How to use the demo tenant: a curl for every rail that is configured, each of which works as printed. */
function demoText(demo: DemoTenant, url: string, rails: { lightning: boolean; fiat: boolean }): string {
  const auth = `-H 'Authorization: Bearer ${demo.apiKey}'`;
  const post = (path: string, body: unknown) =>
    `  curl -s ${url}${path} ${auth} -H 'Content-Type: application/json' -H "Idempotency-Key: $(date +%s%N)" -d '${JSON.stringify(body)}'`;
  // -g: the brackets of expand[] and created[…] are the API's, not curl's globs.
  const get = (path: string) => `  curl -sg '${url}${path}' ${auth}`;
  const payment = (destination: Record<string, string | number>, amount = "1.50") => ({
    amount,
    asset: "USDC",
    source: { account: demo.customer.id },
    destination,
  });
  const first = demo.chains[0];
  const onChain = demo.chains.map(
    (chain) => `
Pay 25 USDC on rail ${chain.rail} only (the address names chain ${chain.chainId}):
${post("/v1/payments", payment({ type: "evm_address", address: chain.payee, chain_id: chain.chainId }, "25.00"))}
`,
  );
  const usdc =
    first === undefined
      ? `
Pay 1.50 USDC to the merchant's account:
${post("/v1/payments", payment({ type: "account", account: demo.merchant.id }))}
`
      : `
Pay 1.50 USDC to ${first.payee}, on whichever chain the router finds cheapest:
${post("/v1/payments", payment({ type: "evm_address", address: first.payee }))}
${onChain.join("")}
A payout whose gas would cost more than half of it (1.50 USDC on the 25 gwei L1) is not paid at a loss: it is
answered 202 processing and leaves in the next netted batch (NETTING_MAX_FEE_SHARE_BPS).
`;
  const lightning = rails.lightning
    ? `
Lightning, with the BTC account ${demo.btc.id}. Receive 0.0001 BTC (10,000 sats): the answer's
instructions.bolt11 is an invoice of the gateway's node that any node pays (npm run regtest prints how: its payer
node's lncli payinvoice --force <bolt11>); once paid, the invoice says "paid" and the account holds it:
${post("/v1/invoices", { account: demo.btc.id, amount: "0.0001", asset: "BTC", description: "demo top-up" })}
${get("/v1/invoices/<id>")}
${get(`/v1/accounts/${demo.btc.id}`)}
Then pay a BOLT11 invoice of 1,000 sats from it (npm run regtest's payee node: lncli addinvoice --amt 1000):
${post("/v1/payments", { amount: "0.00001", asset: "BTC", source: { account: demo.btc.id }, destination: { type: "bolt11", invoice: "<bolt11>" } })}
`
    : "";
  const fiat = rails.fiat
    ? `
Fiat, with the USD account ${demo.usd.id}: an invoice of 10.00 USD is a Stripe PaymentIntent (its client_secret
in instructions, for Stripe.js); once Stripe says it succeeded (its webhook), the account holds it:
${post("/v1/invoices", { account: demo.usd.id, amount: "10.00", asset: "USD", description: "demo" })}
${get("/v1/invoices/<id>")}
`
    : "";
  return `
Demo tenant (development mode; its key is the same at every start on the same database, shown only here):
  API key:   ${demo.apiKey}
  customer:  ${demo.customer.id} (funded with ${formatAmount(demoFundingUsdc, demo.customer.asset)} USDC of TestUSD on each embedded chain: ${demo.chains.map((chain) => chain.rail).join(", ") || "none"})
  merchant:  ${demo.merchant.id}
  BTC:       ${demo.btc.id} (empty: ${rails.lightning ? "fill it by a Lightning invoice, below" : "Lightning is off"})
  USD:       ${demo.usd.id} (empty: ${rails.fiat ? "fill it by a Stripe invoice, below" : "fiat is off"})
${usdc}${lightning}${fiat}
Then look at a payment, the customer's account (with its balance) and its ledger transactions (each with its
evidence), and the lists (newest first; limit, starting_after, ending_before, created[gte], expand[]):
${get("/v1/payments/<id>")}
${get(`/v1/accounts/${demo.customer.id}`)}
${get(`/v1/accounts/${demo.customer.id}/transactions?limit=5`)}
${get("/v1/payments?limit=3&expand[]=data.attempts")}
${get("/v1/accounts")}
`;
}
