// `npm start`: reads the configuration from the environment, builds the app, listens, and says how to use it.

// First: the process's V8 settings, before anything below allocates.
import "./v8-flags.ts";
import { assets, formatAmount } from "../core/index.ts";
import { commandFailure, type EvmChainConfig, loadConfig, withStartDefaults } from "./app/config.ts";
import type { DemoPaywall } from "./app/demo-paywall.ts";
import {
  developmentAccountKey,
  priceFeedOwnerAccountIndex,
  type ServedEmbeddedChain,
  serveEmbeddedChains,
} from "./app/dev-chain.ts";
import { configScrubber } from "./app/secrets.ts";
import { type App, createApp, type DemoTenant, demoFundingUsdc } from "./app.ts";
import { listenApi } from "./http/listen.ts";

/** What a failure to start is printed through, once the configuration (and so its secrets) is known. */
let scrub = (text: string) => text;

/**
 * How long a stop may take before the process exits anyway (non-zero): a pass stuck on a peer that never answers does
 * not keep it up. Under a supervisor's usual 30 s before it kills, so that the reason is printed first.
 */
const stopDeadlineMs = 25_000;

/**
 * SIGINT and SIGTERM, taken from the first line: one that comes while the app is still starting stops it once it has
 * started (its database and chains closed in order, not cut mid-write); a second one, at any time, exits at once.
 */
const signals = (() => {
  let received: string | null = null;
  let onSignal: ((signal: string) => void) | null = null;
  const take = (signal: string) => {
    if (received !== null) {
      console.log(`switchyard: ${signal} again, exiting now`);
      process.exit(1);
    }
    received = signal;
    // Counted from the first signal, the start included (a database that never answers holds a start for good).
    setTimeout(() => {
      console.log(`switchyard: not stopped ${stopDeadlineMs / 1000} s after ${signal}, exiting`);
      process.exit(1);
    }, stopDeadlineMs).unref();
    if (onSignal === null)
      console.log(`switchyard: ${signal} while starting: stopping once started (again: exit now)`);
    else onSignal(signal);
  };
  process.on("SIGINT", () => take("SIGINT"));
  process.on("SIGTERM", () => take("SIGTERM"));
  return {
    /** Calls `stop` on the first signal, now if it has already come. */
    whenSignalled(stop: (signal: string) => void): void {
      onSignal = stop;
      if (received !== null) stop(received);
    },
  };
})();

async function main(): Promise<void> {
  const config = loadConfig(withStartDefaults(process.env));
  scrub = configScrubber(config);
  const started = performance.now();
  console.log(
    `switchyard: starting (database: ${config.database.kind}, EVM chains: ${config.evm.chains.map(chainText).join(", ")})`,
  );
  const app = await createApp(config);
  // The backlog: connections the kernel completes and holds until the process takes them. Node's default, 511, is less
  // than a burst of new connections the API admits (the HTTP bench's overload case opens 896 at once): past it the
  // kernel drops the handshakes, and each of those clients waits for its retransmission, a second or more, before its
  // first request is read. As many as the API admits in flight, for each of the port's sockets (listen.ts: several, so
  // that a burst is taken in a few turns of the loop); the kernel caps it at net.core.somaxconn.
  // Not listening (the port taken), the app built is closed before the process ends: its passes stopped, the
  // ledger's last batch and the database closed.
  const listening = await listenApi(app.server, {
    port: config.port,
    host: config.host,
    backlog: config.requestsInFlightMax,
  }).catch(async (error: unknown) => {
    await app.close().catch(() => undefined);
    throw error;
  });
  const url = listening.address.replace("[::1]", "localhost");
  console.log(`switchyard: listening on ${url} (ready in ${Math.round(performance.now() - started)} ms)`);
  console.log(
    `switchyard: rails: ${[...app.rails.values()].map((rail) => `${rail.id} (${rail.asset.code})`).join(", ")}`,
  );
  if (config.fiat.kind === "off") console.log(`switchyard: ${config.fiat.reason}`);
  if (!app.rails.has("lightning"))
    console.log("switchyard: no LND configured (LND_SOCKET): the Lightning rail is off");
  const rpc =
    config.embeddedRpc === null || app.chains.size === 0
      ? null
      : await serveEmbeddedChains(app.chains, config.embeddedRpc).catch(async (error: unknown) => {
          await listening.close().catch(() => undefined);
          await app.close().catch(() => undefined);
          throw error;
        });
  for (const refused of rpc?.refused ?? [])
    console.log(
      `switchyard: the embedded chain of rail ${refused.rail} is not served to wallets: port ${refused.port} ${refused.reason} (set EVM_EMBEDDED_RPC_PORT, or off)`,
    );
  console.log(operatorText(app.operator));
  if (rpc !== null && rpc.served.length > 0) console.log(walletsText(rpc.served, app.demo));
  const feedChain = rpc?.served.find((chain) => chain.rail === "evm");
  if (config.rates.priceFeeds === null && app.priceFeeds !== null && feedChain !== undefined)
    console.log(priceFeedsText(app.priceFeeds, feedChain));
  if (app.demo !== null)
    console.log(
      demoText(app.demo, url, {
        lightning: app.rails.has("lightning"),
        fiat: config.fiat.kind === "on",
        netting: config.evm.chains[0]?.source.kind === "embedded" && app.chains.size > 1,
      }),
    );
  if (app.demoPaywall !== null) console.log(demoPaywallText(app.demoPaywall, url, rpc?.served ?? []));
  const stop = async (signal: string) => {
    console.log(`switchyard: ${signal}, stopping`);
    // Every part is closed whatever another did (app.close logs each failure); a failure exits non-zero.
    const outcomes = await Promise.allSettled([listening.close(), rpc?.close()]);
    outcomes.push(...(await Promise.allSettled([app.close()])));
    process.exit(outcomes.some((outcome) => outcome.status === "rejected") ? 1 : 0);
  };
  signals.whenSignalled((signal) => void stop(signal));
}

main().catch((error: unknown) => process.exit(commandFailure("switchyard", "failed to start", error, scrub)));

function operatorText(operator: App["operator"]): string {
  switch (operator.kind) {
    case "created":
      return `switchyard: operator credential (manages tenants and rails at /v1/tenants, /v1/rails; shown this once, only its SHA-256 is kept):\n  ${operator.secret}`;
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

/** The embedded chains as wallets reach them: URL, chain id, contracts, and the payer holding TestUSD. */
function walletsText(served: readonly ServedEmbeddedChain[], demo: DemoTenant | null): string {
  const lines = served.map(
    (chain) => `  ${chain.rail}: ${chain.url} (chain id ${chain.chainId})
    TestUSD ${chain.contracts.testUsd}, RevenueSplitter ${chain.contracts.splitter}, ForwarderFactory ${chain.contracts.forwarderFactory}`,
  );
  const payer = demo?.chains.find((chain) => chain.payer !== null)?.payer ?? null;
  const payerText =
    payer === null
      ? ""
      : `
  payer: ${payer.address} (Hardhat development account ${payer.accountIndex}; key ${payer.privateKey}),
    holding ${formatAmount(payer.balance, assets.USDC)} TestUSD on each chain above, minted at this start`;
  return `
Wallets (MetaMask, viem, ethers, x402 clients) reach the embedded chains over JSON-RPC (EVM_EMBEDDED_RPC_PORT):
${lines.join("\n")}${payerText}`;
}

/**
 * The price feeds deployed on the embedded chain at this start (PRICE_FEEDS unset), and how to move one: signed by
 * their owner, development account priceFeedOwnerAccountIndex (Hardhat's key, public; not the hot wallet).
 */
function priceFeedsText(feeds: Readonly<Record<string, string>>, chain: ServedEmbeddedChain): string {
  const listed = Object.entries(feeds)
    .map(([code, address]) => `${code} ${address}`)
    .join(", ");
  const move =
    feeds.ETH === undefined
      ? ""
      : `
A new ETH price (USD), read within RATES_REFRESH_MS (a move past 2x is not taken at once):
  EVM_RPC_URL=${chain.url} EVM_HOT_WALLET_KEY=${developmentAccountKey(priceFeedOwnerAccountIndex)} npm run price-feed -- ETH 3100 --feed ${feeds.ETH}`;
  return `
The router's USD rates come from price feeds deployed at this start on rail ${chain.rail}: ${listed}.${move}`;
}

/** How to use the demo tenant: a curl for every rail that is configured, each of which works as printed. */
function demoText(
  demo: DemoTenant,
  url: string,
  rails: { lightning: boolean; fiat: boolean; netting: boolean },
): string {
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
  const fundedChains = demo.chains.filter((chain) => chain.funding !== "not mintable");
  const unfunded = demo.chains.filter((chain) => chain.funding === "not mintable");
  const first = fundedChains[0];
  const onChain = fundedChains.map(
    (chain) => `
Pay 25 USDC on rail ${chain.rail} only (the address names chain ${chain.chainId}):
${post("/v1/payments", payment({ type: "evm_address", address: chain.payee, chain_id: chain.chainId }, "25.00"))}
`,
  );
  const internal = `
An internal transfer (the ledger only, no chain): 1.50 USDC to the merchant's account:
${post("/v1/payments", payment({ type: "account", account: demo.merchant.id }))}
`;
  const netting = rails.netting
    ? `
A payout whose gas would cost more than half of it (1.50 USDC on the 25 gwei L1) is not paid at a loss: it is
answered 202 processing and leaves in the next netted batch (NETTING_MAX_FEE_SHARE_BPS).
`
    : "";
  const funding = unfunded.map(
    (chain) => `
TestUSD's mint is not open on rail ${chain.rail} (chain ${chain.chainId}, token ${chain.contracts.token}): nothing was
minted there. Fund the customer by a USDC invoice: its instructions name a deposit address${chain.contracts.forwarderFactory === null ? " (none: this rail has no ForwarderFactory)" : ""} to send the token
to, and an EIP-3009 authorization to sign instead; once paid, the customer holds it:
${post("/v1/invoices", { account: demo.customer.id, amount: "10.00", asset: "USDC", description: "demo top-up" })}
`,
  );
  const usdc =
    first === undefined
      ? `${internal}${funding.join("")}`
      : `
An on-chain payout of 1.50 USDC to ${first.payee} (a Hardhat development account), on whichever chain the router
finds cheapest; the answer's evidence is the transaction:
${post("/v1/payments", payment({ type: "evm_address", address: first.payee }))}
${onChain.join("")}${netting}${internal}${funding.join("")}`;
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
  customer:  ${demo.customer.id} (${customerFunding(demo)})${devChainLines(demo)}
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

/** The demo paywall: a curl that is answered 402, and a command that pays it with the payer above (x402). */
function demoPaywallText(demo: DemoPaywall, url: string, served: readonly ServedEmbeddedChain[]): string {
  const { paywall } = demo;
  const resource = `${url}${demo.path}`;
  const offers = paywall.offers
    .map(
      (offer) =>
        `${offer.scheme} on ${offer.rail} credited to ${paywall.accounts[offer.scheme === "l402" ? "BTC" : "USDC"]}`,
    )
    .join(", ");
  const chain = served.find((candidate) => candidate.rail === "evm");
  const pays =
    chain !== undefined && paywall.offers.some((offer) => offer.scheme === "x402")
      ? `Pay it with switchyard/pay as the payer above (PAYER_KEY to pay as another), and see the content and the receipt:
  RPC_URL=${chain.url} TOKEN=${chain.contracts.testUsd} npx node examples/pay.ts ${resource}
`
      : "";
  return `
A paywalled resource (development only; paywall ${paywall.id}, ${formatAmount(paywall.price.amount, paywall.price.asset)} ${paywall.price.asset.code} a request: ${offers}).
Unpaid, it is answered 402 Payment Required, the offers in PAYMENT-REQUIRED:
  curl -si ${resource}
${pays}`;
}

/** What the customer was funded with, as this start found it. */
function customerFunding(demo: DemoTenant): string {
  const amount = `${formatAmount(demoFundingUsdc, demo.customer.asset)} USDC of TestUSD`;
  const said = (funding: DemoTenant["chains"][number]["funding"]) =>
    demo.chains.filter((chain) => chain.funding === funding).map((chain) => chain.rail);
  const parts = [
    said("minted").length > 0 ? `funded now with ${amount} minted on ${said("minted").join(", ")}` : null,
    said("minted before").length > 0
      ? `funded at an earlier start with ${amount} minted on ${said("minted before").join(", ")}`
      : null,
    said("not mintable").length > 0 ? `not funded on ${said("not mintable").join(", ")}: see below` : null,
  ].filter((part) => part !== null);
  return parts.length === 0 ? "not funded: no EVM chain" : parts.join("; ");
}

/** On a development chain reached over JSON-RPC: the wallet and contracts the gateway uses there, and why. */
function devChainLines(demo: DemoTenant): string {
  return demo.chains
    .filter((chain) => chain.dev !== null)
    .map((chain) => {
      const dev = chain.dev as NonNullable<typeof chain.dev>;
      const wallet =
        dev.accountIndex === null
          ? "EVM_HOT_WALLET_KEY's"
          : `Hardhat development account ${dev.accountIndex}, taken by this database`;
      const how = {
        deployed: "deployed now through ignition/modules/Switchyard.ts",
        "deployed before": "deployed through ignition/modules/Switchyard.ts at an earlier start",
        ignition: "from EVM_IGNITION_DEPLOYMENT",
      }[dev.contracts];
      return `
  rail ${chain.rail} (chain ${chain.chainId}): hot wallet ${chain.hotWallet} (${wallet})
    contracts ${how}: TestUSD ${chain.contracts.token}, RevenueSplitter ${chain.contracts.splitter}, ForwarderFactory ${chain.contracts.forwarderFactory}`;
    })
    .join("");
}
