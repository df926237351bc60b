// `npm start`: reads the configuration from the environment, builds the app, listens, and says how to use it.

import { formatAmount } from "../core/index.ts";
import { ConfigError, loadConfig } from "./app/config.ts";
import { createApp } from "./app.ts";

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const started = performance.now();
  console.log(
    `switchyard: starting (database: ${config.database.kind}, chain: ${config.evm.kind === "embedded" ? "Hardhat in-process" : config.evm.url})`,
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
    const body = JSON.stringify({
      amount: "1.50",
      asset: "USDC",
      source: { account: demo.customer.id },
      destination:
        demo.payee === null
          ? { type: "account", account: demo.merchant.id }
          : { type: "evm_address", address: demo.payee },
    });
    console.log(`
Demo tenant (development mode; the key is new at every start and shown only here):
  API key:   ${demo.apiKey}
  customer:  ${demo.customer.id} (funded with ${formatAmount(1_000_000_000n, demo.customer.asset)} USDC of TestUSD on the embedded chain)
  merchant:  ${demo.merchant.id}

Pay 1.50 USDC on chain to ${demo.payee ?? demo.merchant.id}:
  curl -s ${url}/v1/payments -H 'Authorization: Bearer ${demo.apiKey}' -H 'Content-Type: application/json' -H "Idempotency-Key: $(date +%s%N)" -d '${body}'

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
