// The composition root: configuration → database and ledger → rails → services → HTTP server. Everything is
// built here (and in gateway/app/) and handed its typed dependencies; nothing looks anything up by name
// elsewhere, and nothing else in gateway/ imports adapters/. Every rail is wired alike, through core's Rail
// contract: its clearing account, its events into the one settlement path, its `receive` for invoices, its
// provider routes on the server.
import { EventEmitter } from "node:events";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import type { Address } from "viem";
import { type EmbeddedChain, evmMigrations, type SplitterWatcher } from "../adapters/evm/index.ts";
import { fiatMigrations } from "../adapters/fiat/index.ts";
import { assets, type Logger, type Rail } from "../core/index.ts";
import {
  type AccountCache,
  type AccountRecord,
  accountCacheDefaults,
  createAccount,
  createAccountCache,
  getClearingAccount,
} from "./accounts/index.ts";
import { type Config, ConfigError } from "./app/config.ts";
import { type DemoTenant, demoChainSourcesOf, ensureDemoTenant } from "./app/demo.ts";
import { type DemoPaywall, ensureDemoPaywall, registerDemoPaywallRoutes } from "./app/demo-paywall.ts";
import { priceFeedOwner } from "./app/dev-chain.ts";
import {
  closeEvmClients,
  createSplitterMirror,
  type EvmClients,
  openEvmClients,
  startDepositSweeps,
  startSendGasBooking,
} from "./app/evm.ts";
import { createAppLogger } from "./app/logger.ts";
import { type RailContext, type RailModule, railModules } from "./app/rails.ts";
import { configScrubber } from "./app/secrets.ts";
import { type ChangeBus, type Db, type MigrationSource, migrate, openChangeBus, openDb } from "./db/index.ts";
import { createEgress, type Resolver } from "./egress/index.ts";
import { startIdempotencyPrune } from "./http/idempotency.ts";
import { buildServer } from "./http/index.ts";
import { derivedLedgerId } from "./ids/index.ts";
import { createL402Scheme, startL402TokenPrune } from "./l402/index.ts";
import { createLedger, credit, type Ledger, ledgerMigrations, transferCodes } from "./ledger/index.ts";
import { gatewayLedgerParams } from "./ledger-params.ts";
import {
  type BatchPayer,
  createInternalSettler,
  createMarket,
  flushNetting,
  type Market,
  type PaymentsDeps,
  railAccountOpened,
  recoverOpenAttempts,
  recoverPendingRefunds,
} from "./payments/index.ts";
import { startQuotePrune } from "./payments/quote-prune.ts";
import { createPaywallService, type PaymentScheme, type PaywallService } from "./paywall/index.ts";
import { startPeriodic } from "./periodic/index.ts";
import {
  chainlinkFeedSource,
  createRateFeed,
  deployPriceFeeds,
  httpRateSource,
  type PolledRateSource,
  type RateFeed,
} from "./rates/index.ts";
import { fxPairKey, route } from "./router/index.ts";
import {
  applyParkedRailCapital,
  applyRailEvent,
  createOpenInvoiceMemory,
  invoicePaid,
  openInvoiceMemoryDefaults,
  type SettlementDeps,
} from "./settlement/index.ts";
import { ensureOperatorKey, type OperatorKeyBootstrap, OperatorKeyError } from "./tenants/index.ts";
import { startEventPrune } from "./webhooks/events.ts";
import { startWebhookDelivery as startDeliveries, webhookLimitsDefault } from "./webhooks/index.ts";
import { createX402Deps, createX402Scheme, startX402Reconcile, type X402Chain } from "./x402/index.ts";

export { type DemoTenant, demoFundingUsdc } from "./app/demo.ts";
export type { RailContext, RailModule } from "./app/rails.ts";
export { railModules } from "./app/rails.ts";

/** The gateway's tables. They run after `ledgerMigrations`: 0008 relabels transfers stored in the ledger's. */
export const gatewayMigrations: MigrationSource = {
  namespace: "gateway",
  directory: path.join(import.meta.dirname, "migrations"),
  tables: (name) => gatewayTables.has(name),
};

/** Every source a gateway's database is migrated from, in the order they run (`npm start`, `npm run migrate`). */
export const migrationSources: readonly MigrationSource[] = [
  ledgerMigrations,
  gatewayMigrations,
  evmMigrations,
  fiatMigrations,
];

/** The tables gatewayMigrations create (a migration that adds one adds it here: db/bytewise.ts). */
const gatewayTables = new Set([
  "accounts",
  "api_keys",
  "attempts",
  "idempotency_keys",
  "invoice_receipts",
  "invoice_reversals",
  "invoices",
  "l402_tokens",
  "netted_payouts",
  "netting_batches",
  "operator_credentials",
  "outbox",
  "outbox_fan_out",
  "payees",
  "payments",
  "paywall_rate_locks",
  "paywalls",
  "payout_reversals",
  "quotes",
  "rail_capital_parked",
  "rail_invoices_known",
  "rail_invoices_set_aside",
  "refundable",
  "refunds",
  "reversal_shortfall_collections",
  "reversal_shortfalls",
  "route_decisions",
  "tenants",
  "webhook_deliveries",
  "webhook_delivery_attempts",
  "webhook_endpoints",
  "x402_authorizations",
  "x402_payer_holds",
  "x402_unsent_owed",
]);

/** USD and USDC are fixed in every mode (a definition and a peg) unless a source says otherwise. */
const fixedUsdRates = {
  USD: { microUsd: 10_000n, perMinorUnits: 1n },
  USDC: { microUsd: 1n, perMinorUnits: 1n },
};

/** What the FX desk charges to pay in another asset than the payer's: 0.2 % each way between the payment assets. */
const fxSpreadPpmDefault = 2_000n;
const developmentSpreadsPpm: Record<string, bigint> = Object.fromEntries(
  ["USDC", "USD", "BTC"].flatMap((from) =>
    ["USDC", "USD", "BTC"].filter((to) => to !== from).map((to) => [fxPairKey(from, to), fxSpreadPpmDefault]),
  ),
);

/**
 * Development prices, USD micro-units per minor unit: USDC 1:1, USD cents, BTC at $100,000 (1 msat = 1 µUSD), ETH at
 * $3,000 (3 µUSD a gwei). In development they answer only what no source covers (the deployed feeds cover ETH and BTC).
 */
const developmentUsdRateTable = {
  ...fixedUsdRates,
  BTC: { microUsd: 1n, perMinorUnits: 1n },
  ETH: { microUsd: 3n, perMinorUnits: 1n },
};

export type App = {
  server: FastifyInstance;
  db: Db;
  /** Tells every process's caches what changed (revokeApiKey announces on it). */
  changes: ChangeBus;
  ledger: Ledger;
  rails: ReadonlyMap<string, Rail>;
  payments: PaymentsDeps;
  settlement: SettlementDeps;
  /** In-process notifications after a commit: "invoice.paid" (invoice id). For embedding and benchmarks. */
  events: EventEmitter;
  /** The first EVM rail's ("evm") in-process chain when the gateway runs it (no EVM_RPC_URL); null on an external chain. */
  chain: EmbeddedChain | null;
  /** Every in-process chain the gateway runs, by the id of the rail that pays on it ("evm", "evm-l2", …). */
  chains: ReadonlyMap<string, EmbeddedChain>;
  /** The USD rates the router prices with, refreshed in the background; says which are stale. */
  rates: RateFeed;
  /**
   * The price feeds the rates read on the first chain, asset code → address: PRICE_FEEDS, or in development the
   * feeds deployed on the embedded chain at this start (owned by development account priceFeedOwnerAccountIndex, not
   * the hot wallet; `npm run price-feed` moves one).
   * Null: none.
   */
  priceFeeds: Readonly<Record<string, Address>> | null;
  /** Follows the first EVM rail's RevenueSplitter events into the ledger; null without a splitter. */
  evmWatcher: SplitterWatcher | null;
  /** A watcher per EVM rail with a splitter, by rail id. */
  evmWatchers: ReadonlyMap<string, SplitterWatcher>;
  demo: DemoTenant | null;
  /** Development: the demo tenant's paywall on GET /demo/paid/<name>, served by this gateway. */
  demoPaywall: DemoPaywall | null;
  /** Every tenant's paywalls: `paywalls.forTenant(id)` is the in-process PaywallCheck for a tenant's own server. */
  paywalls: PaywallService;
  /** The operator's credential as this start found it: made now (its secret, shown once), configured, or kept. */
  operator: OperatorKeyBootstrap;
  close(): Promise<void>;
};

export type AppOptions = {
  /** The rails to run (default: railModules — internal, EVM, Lightning, fiat). */
  readonly railModules?: readonly RailModule[];
  /** The ways paywalls can be paid (default: x402 on the EVM rails that take money in, and L402 on Lightning). */
  readonly paymentSchemes?: readonly PaymentScheme[];
  /**
   * What the names of webhook endpoints' URLs resolve to, when registered and when delivered to (default: DNS
   * queries, egress's dnsResolver; an allowed host by the system's resolver). Tests give one that answers what they
   * need.
   */
  readonly webhookResolver?: Resolver;
  /** How long an x402 settlement waits for its transaction to be mined (default: x402ReceiptTimeoutMs). */
  readonly x402ReceiptTimeoutMs?: number;
  /**
   * Where the gateway's log lines are written, the HTTP server's and every part's alike (default: standard output),
   * each line scrubbed first: an embedder's log pipeline, or a test reading what was logged.
   */
  readonly logStream?: { write(line: string): void };
};

const snapshotAssetCodes = Object.keys(assets);
const marketRefreshMs = 1_000;
const recoveryBatchMax = 1_000;
const strandedQuietMs = 60_000;
const nettingFlushEveryMsMax = 5_000;
const idempotencyInProgressTimeoutMs = 5 * 60_000;
/** How long a payment request waits for a slow rail before it is answered 202 processing (Prefer: wait=N overrides). */
const railWaitMs = 5_000;
/**
 * How often the operator's capital a rail reported, which its clearing account did not hold then, is tried again (it
 * is tried at once when the operator books capital on the rail; money that came in since may make room too).
 */
const parkedRailCapitalRetryMs = 60_000;

/** What each start-up phase leaves to undo: closed in the reverse order of their opening. */
type Closers = Array<() => Promise<void>>;

/** How long an x402 settlement waits for its transaction to be mined (as the EVM rail waits for a receipt). */
const x402ReceiptTimeoutMs = 60_000;

/**
 * x402's chains: each EVM rail that takes money in (its token in USDC, its hot wallet as payTo). An embedded chain
 * configured without interval mining (`configured`, by rail) mines on demand (X402Chain.minesOnDemand).
 */
function x402Chains(
  evm: readonly EvmClients[],
  configured: Config["evm"]["chains"],
  rails: ReadonlyMap<string, Rail>,
  receiptTimeoutMs: number,
): X402Chain[] {
  return evm
    .filter((clients) => rails.get(clients.id)?.submitSignedPayment !== undefined)
    .map((clients) => {
      const source = configured.find((chain) => chain.id === clients.id)?.source;
      return {
        rail: clients.id,
        chainId: clients.chainId,
        publicClient: clients.publicClient,
        token: clients.token,
        asset: assets.USDC,
        hotWallet: clients.walletClient.account.address,
        receiptTimeoutMs,
        confirmations: clients.confirmations,
        minesOnDemand: source?.kind === "embedded" && source.blockIntervalMs === 0,
      };
    });
}

export async function createApp(config: Config, options: AppOptions = {}): Promise<App> {
  // Every line scrubbed of the configuration's secrets (app/secrets.ts): an RPC provider's key in a logged error.
  const scrub = configScrubber(config);
  const logger = createAppLogger(config, scrub, options.logStream);
  const db = await openDb(config.database, logger.child({ module: "db" }));
  const closers: Closers = [() => db.close()];
  // In the reverse order of opening, each whatever the ones before did: one that fails (a rail's stop, a server's
  // close) is logged and the rest still run, down to the ledger's last batch and the database; then the failures
  // are thrown together. Closed once: a second call waits for the first.
  let closing: Promise<void> | null = null;
  const close = () => {
    closing ??= (async () => {
      const failures: unknown[] = [];
      for (const closer of [...closers].reverse()) {
        try {
          await closer();
        } catch (error) {
          logger.error({ err: error }, "closing: a part failed to close; the rest are closed");
          failures.push(error);
        }
      }
      if (failures.length > 0) throw new AggregateError(failures, "closing: some parts failed to close");
    })();
    return closing;
  };
  try {
    await migrate(db, migrationSources);
    const operator = await ensureOperatorKey(db, {
      configured: config.operatorKey,
      generate: config.mode !== "production",
    }).catch((error: unknown) => {
      // The operator's to fix, as any configuration: said as such (exit 2), not as a failure to start.
      throw error instanceof OperatorKeyError ? new ConfigError(error.message) : error;
    });
    const changes = await openChangeBus(config.database, logger.child({ module: "changes" }));
    closers.push(() => changes.close());
    const ledger = createLedger({
      db,
      logger: logger.child({ module: "ledger" }),
      limits: { queueTransfersMax: config.ledgerQueueTransfersMax },
      ...gatewayLedgerParams,
    });
    closers.push(() => ledger.close());
    const evm = await openEvmClients(config.evm, logger, db);
    closers.push(() => closeEvmClients(evm));
    const embedded = embeddedChains(evm);
    const { rails, batchPayer } = await buildRails(closers, { config, db, ledger, logger, evm }, options);
    const { rates, priceFeeds } = await openRates(closers, { config, evm, logger });
    const services = createServices({ db, ledger, rails, changes, logger, rates });
    // The demo is funded before the rails start, so that their first snapshot sees the funds.
    const demo =
      config.mode === "development"
        ? await ensureDemoTenant({
            db,
            ledger,
            chains: demoChainSourcesOf(evm),
          })
        : null;
    const events = new EventEmitter();
    await startRails(closers, { ...services, rails, logger, events });
    if (config.netting !== null && batchPayer !== null) {
      startNetting(closers, {
        db,
        ledger,
        logger,
        payments: services.payments,
        netting: config.netting,
        batchPayer,
      });
    } else if (config.netting !== null) {
      // Payouts under the netting threshold are paid one by one, as with netting off.
      logger.warn(
        "netting is on but no rail pays batches (an EVM rail needs EVM_SPLITTER_ADDRESS): small payouts are not netted",
      );
    }
    await startRecovery(closers, { ...services, logger });
    const idempotencyPrune = startIdempotencyPrune({
      sql: db,
      logger: logger.child({ module: "idempotency" }),
    });
    closers.push(() => idempotencyPrune.stop());
    const l402Prune = startL402TokenPrune({ sql: db, logger: logger.child({ module: "l402" }) });
    closers.push(() => l402Prune.stop());
    const evmWatchers = await startSplitterMirrors(closers, { db, ledger, logger, evm });
    closers.push(...startDepositSweeps({ db, ledger, accounts: services.accounts, logger, rails, evm }));
    closers.push(...startSendGasBooking({ db, ledger, accounts: services.accounts, logger, rails, evm }));
    const x402 = createX402Deps({
      db,
      settlement: services.settlement,
      chains: x402Chains(evm, config.evm.chains, rails, options.x402ReceiptTimeoutMs ?? x402ReceiptTimeoutMs),
      logger: logger.child({ module: "x402" }),
    });
    const x402Reconcile = startX402Reconcile(x402);
    closers.push(() => x402Reconcile.stop());
    const paywalls = createPaywallService({
      sql: db,
      schemes: options.paymentSchemes ?? [
        createX402Scheme(x402),
        createL402Scheme({ settlement: services.settlement }),
      ],
      rates,
      logger: logger.child({ module: "paywall" }),
    });
    closers.push(() => paywalls.close());
    const server = await buildServer({
      paywalls,
      x402,
      railRoutes: [...rails.values()].flatMap((rail) => rail.routes ?? []),
      db,
      ledger,
      accounts: services.accounts,
      rails,
      payments: services.payments,
      settlement: services.settlement,
      changes,
      mode: config.mode,
      egress: { mode: config.mode, allowHosts: config.egressAllowHosts },
      webhookResolver: options.webhookResolver,
      requestTimeoutMs: config.requestTimeoutMs,
      bodyLimitBytes: config.bodyLimitBytes,
      requestsInFlightMax: config.requestsInFlightMax,
      tenantRequestsInFlightMax: config.tenantRequestsInFlightMax,
      rateLimits: config.rateLimits,
      idempotencyInProgressTimeoutMs,
      logLevel: config.logLevel,
      logScrub: scrub,
      ...(options.logStream === undefined ? {} : { logStream: options.logStream }),
    });
    closers.push(() => server.close());
    const demoPaywall =
      demo === null
        ? null
        : await ensureDemoPaywall({ sql: db, accounts: services.accounts, schemes: paywalls.schemes }, demo);
    if (demo !== null && demoPaywall !== null)
      await registerDemoPaywallRoutes(server, { paywall: paywalls.forTenant(demo.tenantId) });
    startWebhookDelivery(closers, {
      db,
      logger,
      intervalMs: config.webhookDeliveryIntervalMs,
      config,
      resolver: options.webhookResolver,
    });
    const eventPrune = startEventPrune({ sql: db, logger });
    closers.push(() => eventPrune.stop());
    const quotePrune = startQuotePrune({ sql: db, logger });
    closers.push(() => quotePrune.stop());
    return {
      server,
      db,
      changes,
      ledger,
      rails,
      payments: services.payments,
      settlement: services.settlement,
      events,
      chain: embedded.get("evm") ?? null,
      chains: embedded,
      rates,
      priceFeeds,
      evmWatcher: evmWatchers.get("evm") ?? null,
      evmWatchers,
      demo,
      demoPaywall,
      paywalls,
      operator,
      close,
    };
  } catch (error) {
    // The start's error is the one to tell; a part that then failed to close is logged (above).
    await close().catch(() => undefined);
    throw error;
  }
}

// ---- rates: price feeds on the first chain, an HTTP source, and the static table in development only

async function openRates(
  closers: Closers,
  deps: { config: Config; evm: readonly EvmClients[]; logger: Logger },
): Promise<{ rates: RateFeed; priceFeeds: Readonly<Record<string, Address>> | null }> {
  const { config } = deps;
  const first = deps.evm.find((clients) => clients.id === "evm") ?? deps.evm[0];
  let feeds = config.rates.priceFeeds;
  if (feeds === null && config.mode === "development" && first?.embedded !== null && first !== undefined)
    feeds = await deployPriceFeeds(priceFeedOwner(first.embedded));
  const sources: PolledRateSource[] = [];
  if (feeds !== null && first !== undefined)
    sources.push(
      chainlinkFeedSource({
        client: first.publicClient,
        feeds: Object.entries(feeds).map(([assetCode, address]) => ({ assetCode, address })),
      }),
    );
  if (config.rates.httpUrl !== null)
    // Every asset but the unit itself: USD is a definition, never a source's (USDC keeps its peg until one names it).
    sources.push(
      httpRateSource({
        url: config.rates.httpUrl,
        assetCodes: Object.keys(assets).filter((code) => code !== "USD"),
      }),
    );
  const rates = createRateFeed({
    sources,
    staticRates: config.mode === "development" ? developmentUsdRateTable : fixedUsdRates,
    fixedRates: fixedUsdRates,
    spreadsPpm: developmentSpreadsPpm,
    maxAgeMs: config.rates.maxAgeMs,
    refreshMs: config.rates.refreshMs,
    disagreementMaxBps: config.rates.disagreementMaxBps,
    logger: deps.logger.child({ module: "rates" }),
  });
  await rates.refresh();
  rates.start();
  closers.push(() => rates.stop());
  return { rates, priceFeeds: first === undefined ? null : feeds };
}

// ---- rails: built by their modules, then given their clearing accounts alike

async function buildRails(
  closers: Closers,
  context: RailContext & { ledger: Ledger },
  options: AppOptions,
): Promise<{ rails: Map<string, Rail>; batchPayer: BatchPayer | null }> {
  const rails = new Map<string, Rail>();
  // Each module's close is registered as soon as it is built: one that throws after others were built (all were
  // built before any was registered) left theirs open.
  for (const module of options.railModules ?? railModules) {
    const { rails: moduleRails, close } = module(context);
    if (close !== undefined) closers.push(close);
    for (const rail of moduleRails) rails.set(rail.id, rail);
  }
  // Netting pays through the first rail that pays many payees at once (the Rail contract's payoutBatch).
  const batchPayer = batchPayerOf(rails.values());
  for (const rail of rails.values()) {
    if (rail.kind !== "internal") await ensureClearingAccount(context, rail);
    const chain = rail.kind === "evm" ? context.evm.find((clients) => clients.id === rail.id) : undefined;
    if (chain !== undefined) await openGasCapital(context, rail.id, chain);
  }
  return { rails, batchPayer };
}

/** The in-process chains among the EVM chains, by rail id. */
function embeddedChains(evm: readonly EvmClients[]): ReadonlyMap<string, EmbeddedChain> {
  const chains = new Map<string, EmbeddedChain>();
  for (const clients of evm) if (clients.embedded !== null) chains.set(clients.id, clients.embedded);
  return chains;
}

/**
 * Books the gas the EVM hot wallet holds as the operator's capital on the rail, the first time the gateway sees
 * that wallet on that chain: clearing (native token) against capital, in gwei rounded down. From then on every
 * payout's gas is booked out of that clearing account as it is paid; gas sent to the wallet later is the operator's
 * to book (a reconciliation finds it). Each EVM rail books its own chain's wallet, with its own clients.
 */
async function openGasCapital(
  context: RailContext & { ledger: Ledger },
  rail: string,
  chain: EvmClients,
): Promise<void> {
  const { walletClient, publicClient } = chain;
  const wallet = walletClient.account.address;
  const wei = await publicClient.getBalance({ address: wallet });
  const deps = {
    db: context.db,
    ledger: context.ledger,
    accounts: createAccountCache({ sql: context.db }, accountCacheDefaults),
  };
  const [clearing, capital] = await Promise.all([
    railAccountOpened(deps, { kind: "clearing", rail, asset: assets.ETH }),
    railAccountOpened(deps, { kind: "capital", rail, asset: assets.ETH }),
  ]);
  await credit(
    context.ledger,
    {
      debitAccountId: clearing.ledgerAccountId,
      creditAccountId: capital.ledgerAccountId,
      amount: wei / 1_000_000_000n,
      ledger: assets.ETH.ledger,
      code: transferCodes.payments.capitalIn,
    },
    {
      id: derivedLedgerId(`${publicClient.chain.id}:${wallet.toLowerCase()}`, "gas-capital"),
      evidence: {
        rail,
        reference: wallet,
        detail: { chainId: String(publicClient.chain.id), wei: wei.toString() },
      },
      label: `the gas capital of rail ${rail}`,
    },
  );
  // "conflict": booked at an earlier start, with the balance the wallet had then.
}

function batchPayerOf(rails: Iterable<Rail>): BatchPayer | null {
  for (const rail of rails) {
    const { payoutBatch } = rail;
    if (payoutBatch !== undefined)
      return { id: rail.id, asset: rail.asset, payoutBatch: payoutBatch.bind(rail) };
  }
  return null;
}

// ---- services: the market's snapshot, accounts, payments and settlement over one database and ledger

type Services = {
  market: Market;
  accounts: AccountCache;
  payments: PaymentsDeps;
  settlement: SettlementDeps;
};

function createServices(deps: {
  db: Db;
  ledger: Ledger;
  rails: ReadonlyMap<string, Rail>;
  changes: ChangeBus;
  logger: Logger;
  rates: RateFeed;
}): Services {
  const { db, ledger, rails } = deps;
  const market = createMarket({
    rails,
    rateSource: deps.rates,
    assetCodes: snapshotAssetCodes,
    refreshMs: marketRefreshMs,
    nowMs: Date.now,
  });
  const accounts = createAccountCache({ sql: db, changes: deps.changes }, accountCacheDefaults);
  const payments: PaymentsDeps = {
    db,
    ledger,
    accounts,
    rails,
    internal: createInternalSettler({ ledger, sql: db, nowMs: Date.now }),
    snapshot: market.snapshot,
    learning: market,
    route,
    railWaitMs,
    logger: deps.logger.child({ module: "payments" }),
    recoveryBatchMax,
    strandedQuietMs,
    nowMs: Date.now,
  };
  const settlement: SettlementDeps = {
    db,
    ledger,
    accounts,
    openInvoices: createOpenInvoiceMemory(openInvoiceMemoryDefaults),
    rails,
    logger: deps.logger.child({ module: "settlement" }),
  };
  return { market, accounts, payments, settlement };
}

/** Every rail's events go to the one settlement path; then the rail starts. */
async function startRails(
  closers: Closers,
  deps: Services & { rails: ReadonlyMap<string, Rail>; logger: Logger; events: EventEmitter },
): Promise<void> {
  // An invoice paid is told by the path that paid it, after its commit (settlement/invoices.ts invoicePaid), and a
  // refund's failure that paid it by its give-back (payments/refunds.ts refundGivesBack), the invoice forgotten as
  // open as the settlement's own paths forget it. A listener that throws, or whose promise rejects, is logged, not
  // turned into a failure of what committed (a rail's event redelivered finds it applied and tells nothing again; a
  // refund's request would answer 500). Each listener is called on its own: emit stops at the first that throws, and
  // the rest never heard it; and a rejection emit never sees went unhandled.
  deps.settlement.onInvoicePaid = (invoiceId) => {
    const threw = (error: unknown) =>
      deps.logger.error({ err: error, invoiceId }, "a listener of invoice.paid threw");
    // rawListeners and `this` as emit gives them: a listener added with `once` is removed as emit removes it.
    for (const listener of deps.events.rawListeners("invoice.paid")) {
      try {
        Promise.resolve(listener.call(deps.events, invoiceId)).catch(threw);
      } catch (error) {
        threw(error);
      }
    }
  };
  deps.payments.onInvoicePaid = (invoiceId) => invoicePaid(deps.settlement, invoiceId);
  const railEvents = {
    settlement: deps.settlement,
    payments: deps.payments,
    logger: deps.logger.child({ module: "settlement" }),
  };
  for (const rail of deps.rails.values()) {
    rail.onEvent((event) => applyRailEvent(railEvents, rail.id, event));
    // Stopped at close even when its start fails partway: the EVM rail arms its refresh before a read of the node
    // that may fail, and that timer went on polling after the failed start. A rail's stop copes with a start that
    // did not finish.
    closers.push(() => rail.stop());
    await rail.start();
  }
  // What a rail's events kept for want of room in its clearing account (a Stripe payout of funds the ledger was never
  // told of): booked once there is room, whichever process finds it first.
  const parkedCapital = startPeriodic({
    name: "parked rail capital pass",
    intervalMs: parkedRailCapitalRetryMs,
    pass: () => applyParkedRailCapital({ ...deps.payments, logger: railEvents.logger }),
    logger: deps.logger,
  });
  closers.push(() => parkedCapital.stop());
}

// ---- background passes: netting, recovery, webhook delivery

function startNetting(
  closers: Closers,
  deps: {
    db: Db;
    ledger: Ledger;
    logger: Logger;
    payments: PaymentsDeps;
    netting: NonNullable<Config["netting"]>;
    batchPayer: BatchPayer;
  },
): void {
  const { netting: config } = deps;
  const nettingDeps = {
    db: deps.db,
    ledger: deps.ledger,
    accounts: deps.payments.accounts,
    nowMs: Date.now,
    config: {
      maxFeeShareBps: config.maxFeeShareBps,
      threshold: { total: config.batchTotal },
      intervalMs: config.intervalMs,
    },
    payer: deps.batchPayer,
  };
  deps.payments.netting = nettingDeps;
  const flush = startPeriodic({
    name: "netting flush",
    intervalMs: Math.min(config.intervalMs, nettingFlushEveryMsMax),
    pass: () => flushNetting(nettingDeps),
    logger: deps.logger,
  });
  closers.push(() => flush.stop());
}

/**
 * At start every open attempt is this process's to finish; afterwards only those left quiet for a while. What the
 * first pass cannot drive (a rail down, a payment whose next rail this process lacks) is logged and left to the
 * periodic passes: one such payment must not keep the gateway from starting, every start alike.
 */
async function startRecovery(closers: Closers, deps: Services & { logger: Logger }): Promise<void> {
  const { market, payments } = deps;
  market.start();
  closers.push(async () => market.stop());
  const leftOpen = (what: string) => (error: unknown) =>
    deps.logger.error({ err: error }, `${what} at start left some open; the periodic pass tries them again`);
  await recoverOpenAttempts(payments, { quietMs: 0 }).catch(leftOpen("recovery"));
  const recovery = startPeriodic({
    name: "recovery pass",
    intervalMs: payments.strandedQuietMs,
    pass: () => recoverOpenAttempts(payments),
    logger: deps.logger,
  });
  closers.push(() => recovery.stop());
  await recoverPendingRefunds(payments, { quietMs: 0 }).catch(leftOpen("refund recovery"));
  const refundRecovery = startPeriodic({
    name: "refund recovery pass",
    intervalMs: payments.strandedQuietMs,
    pass: () => recoverPendingRefunds(payments, { quietMs: payments.strandedQuietMs }),
    logger: deps.logger,
  });
  closers.push(() => refundRecovery.stop());
}

/** Deliveries go out through the egress guard: each connection only to a vetted public address (or an allowed host). */
function startWebhookDelivery(
  closers: Closers,
  deps: {
    db: Db;
    logger: Logger;
    intervalMs: number;
    config: Pick<Config, "mode" | "egressAllowHosts">;
    resolver: Resolver | undefined;
  },
): void {
  const { resolver, ...delivering } = deps;
  const egress = createEgress({
    policy: { mode: deps.config.mode, allowHosts: deps.config.egressAllowHosts },
    ...(resolver === undefined ? {} : { resolver }),
  });
  closers.push(() => egress.close());
  const delivery = startDeliveries({
    ...delivering,
    limits: webhookLimitsDefault,
    nowMs: Date.now,
    send: egress.send,
    livemode: deps.config.mode === "production",
  });
  closers.push(() => delivery.stop());
}

/** Each EVM chain's RevenueSplitter events mirrored into the ledger (adapters/evm watcher → settlement/evm-mirror). */
async function startSplitterMirrors(
  closers: Closers,
  deps: { db: Db; ledger: Ledger; logger: Logger; evm: readonly EvmClients[] },
): Promise<ReadonlyMap<string, SplitterWatcher>> {
  const watchers = new Map<string, SplitterWatcher>();
  for (const chain of deps.evm) {
    if (chain.splitter === null) continue;
    const watcher = await createSplitterMirror({
      db: deps.db,
      ledger: deps.ledger,
      publicClient: chain.publicClient,
      splitter: chain.splitter.address,
      token: { address: chain.token, asset: assets.USDC },
      hotWallet: chain.walletClient.account.address,
      confirmations: chain.confirmations,
      startBlock: chain.splitter.startBlock,
      pollIntervalMs: chain.embedded === null ? 2_000 : 250,
      logger: deps.logger.child({ module: "evm-splitter", rail: chain.id }),
    });
    watcher.start();
    closers.push(() => watcher.stop());
    watchers.set(chain.id, watcher);
  }
  return watchers;
}

/** The rail's clearing account in its asset, opened at the first start. */
async function ensureClearingAccount(
  deps: { db: Db; ledger: Ledger },
  rail: Pick<Rail, "id" | "asset">,
): Promise<AccountRecord> {
  const existing = await getClearingAccount(deps.db, { rail: rail.id, asset: rail.asset });
  if (existing !== null) return existing;
  return createAccount(
    { sql: deps.db, ledger: deps.ledger },
    {
      tenantId: null,
      kind: "clearing",
      asset: rail.asset,
      name: `${rail.id} clearing (${rail.asset.code})`,
      rail: rail.id,
      id: `acct_clearing_${rail.id.replaceAll("-", "_")}_${rail.asset.code.toLowerCase()}`,
    },
  );
}
