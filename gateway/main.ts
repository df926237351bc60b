// `npm start`: reads the configuration from the environment, builds the app, listens, and says how to use it.

import { formatAmount } from "../core/index.ts";
import { ConfigError, type EvmChainConfig, loadConfig, withStartDefaults } from "./app/config.ts";
import { createApp, demoFundingUsdc } from "./app.ts";

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
  if (app.demo !== null) {
    const demo = app.demo;
    const curl = (body: unknown) =>
      `  curl -s ${url}/v1/payments -H 'Authorization: Bearer ${demo.apiKey}' -H 'Content-Type: application/json' -H "Idempotency-Key: $(date +%s%N)" -d '${JSON.stringify(body)}'`;
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
${curl(payment({ type: "evm_address", address: chain.payee, chain_id: chain.chainId }, "25.00"))}
`,
    );
    console.log(`
Demo tenant (development mode; the key is new at every start and shown only here):
  API key:   ${demo.apiKey}
  customer:  ${demo.customer.id} (funded with ${formatAmount(demoFundingUsdc, demo.customer.asset)} USDC of TestUSD on each embedded chain: ${demo.chains.map((chain) => chain.rail).join(", ") || "none"})
  merchant:  ${demo.merchant.id}
${
  first === undefined
    ? `
Pay 1.50 USDC to the merchant's account:
${curl(payment({ type: "account", account: demo.merchant.id }))}
`
    : `
Pay 1.50 USDC to ${first.payee}, on whichever chain the router finds cheapest:
${curl(payment({ type: "evm_address", address: first.payee }))}
${onChain.join("")}`
}
A payout whose gas would cost more than half of it (1.50 USDC on the 25 gwei L1) is not paid at a loss: it is
answered 202 processing and leaves in the next netted batch (NETTING_MAX_FEE_SHARE_BPS).

Then look at it, and at the customer's balance:
  curl -s ${url}/v1/payments/<id> -H 'Authorization: Bearer ${demo.apiKey}'
  curl -s ${url}/v1/accounts/${demo.customer.id}/balance -H 'Authorization: Bearer ${demo.apiKey}'
`);
  }
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

function chainText(chain: EvmChainConfig): string {
  const where =
    chain.source.kind === "embedded"
      ? `Hardhat in-process, chain ${chain.source.chainId}`
      : new URL(chain.source.url).host;
  return `${chain.id} (${where})`;
}
