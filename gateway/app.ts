// The composition root: configuration → database and ledger → rails → services → HTTP server. Everything is
// built here (and in gateway/app/) and handed its typed dependencies; nothing looks anything up by name
// elsewhere, and nothing else in gateway/ imports adapters/. Every rail is wired alike, through core's Rail
// contract: its clearing account, its events into the one settlement path, its `receive` for invoices, its
// provider routes on the server.
import { EventEmitter } from "node:events";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import { pino } from "pino";
import { type EmbeddedChain, evmMigrations, type SplitterWatcher } from "../adapters/evm/index.ts";
import { fiatMigrations } from "../adapters/fiat/index.ts";
import { type Asset, assets, type Logger, type Rail } from "../core/index.ts";
import {
  type AccountRecord,
  accountCacheDefaults,
  createAccount,
  createAccountCache,
  getClearingAccount,
} from "./accounts/index.ts";
import type { Config } from "./app/config.ts";
import { type DemoTenant, ensureDemoTenant } from "./app/demo.ts";
import { createSplitterMirror, openEvmClients } from "./app/evm.ts";
import { type RailModule, railModules } from "./app/rails.ts";
import { type Db, type MigrationSource, migrate, openDb } from "./db/index.ts";
import { buildServer } from "./http/index.ts";
import { createLedger, type Ledger, ledgerMigrations } from "./ledger/index.ts";
import { createMarket, flushNetting, type PaymentsDeps, recoverOpenAttempts } from "./payments/index.ts";
import { startPeriodic } from "./periodic/index.ts";
import { route, staticRateSource } from "./router/index.ts";
import {
  applyRailEvent,
  createOpenInvoiceMemory,
  openInvoiceMemoryDefaults,
  type SettlementDeps,
} from "./settlement/index.ts";
import { deliverOutbox, webhookLimitsDefault } from "./webhooks/index.ts";

export { type DemoTenant, demoFundingUsdc } from "./app/demo.ts";
export type { RailContext, RailModule } from "./app/rails.ts";
export { railModules } from "./app/rails.ts";

export const gatewayMigrations: MigrationSource = {
  namespace: "gateway",
  directory: path.join(import.meta.dirname, "migrations"),
};

/** Development prices, USD micro-units per minor unit: USDC 1:1, USD cents, BTC at $100,000 (1 msat = 1 µUSD), ETH at $3,000 per 10^18 wei. */
export const developmentUsdRates = staticRateSource({
  usdRates: {
    USDC: { microUsd: 1n, perMinorUnits: 1n },
    USD: { microUsd: 10_000n, perMinorUnits: 1n },
    BTC: { microUsd: 1n, perMinorUnits: 1n },
    ETH: { microUsd: 3n, perMinorUnits: 1_000_000_000n },
  },
});

export type App = {
  server: FastifyInstance;
  db: Db;
  ledger: Ledger;
  rails: ReadonlyMap<string, Rail>;
  payments: PaymentsDeps;
  settlement: SettlementDeps;
  /** In-process notifications after a commit: "invoice.paid" (invoice id). For embedding and benchmarks. */
  events: EventEmitter;
  /** The in-process chain when the gateway runs its own (no EVM_RPC_URL); null on an external chain. */
  chain: EmbeddedChain | null;
  /** Follows the RevenueSplitter's events into the ledger; null without a splitter. */
  evmWatcher: SplitterWatcher | null;
  demo: DemoTenant | null;
  close(): Promise<void>;
};

export type AppOptions = {
  /** The rails to run (default: railModules — internal, EVM, Lightning, fiat). */
  readonly railModules?: readonly RailModule[];
};

const snapshotAssetCodes = Object.keys(assets);
const marketRefreshMs = 1_000;
const recoveryBatchMax = 1_000;
const strandedQuietMs = 60_000;
const nettingFlushEveryMsMax = 5_000;
const idempotencyInProgressTimeoutMs = 5 * 60_000;

export async function createApp(config: Config, options: AppOptions = {}): Promise<App> {
  const logger: Logger = pino({ level: config.logLevel });
  const db = await openDb(config.database);
  const closers: Array<() => Promise<void>> = [() => db.close()];
  const close = async () => {
    for (const closer of closers.reverse()) await closer();
  };
  try {
    await migrate(db, [ledgerMigrations, gatewayMigrations, evmMigrations, fiatMigrations]);
    const ledger = createLedger({ db });
    closers.push(() => ledger.close());
    const evm = await openEvmClients(config.evm);
    if (evm.embedded !== null) {
      const chain = evm.embedded;
      closers.push(() => chain.close());
    }

    // ---- rails: built by their modules, then wired alike
    const rails = new Map<string, Rail>();
    const context = { config, db, logger, evm };
    const built = (options.railModules ?? railModules).map((module) => module(context));
    for (const { rails: moduleRails } of built) for (const rail of moduleRails) rails.set(rail.id, rail);
    const batchPayer = built.find((b) => b.batchPayer !== undefined)?.batchPayer ?? null;
    for (const rail of rails.values()) {
      if (rail.kind !== "internal") await ensureClearingAccount({ db, ledger }, rail.id, rail.asset);
    }

    // ---- services
    const market = createMarket({
      rails,
      rateSource: developmentUsdRates,
      assetCodes: snapshotAssetCodes,
      refreshMs: marketRefreshMs,
      nowMs: Date.now,
    });
    const accounts = createAccountCache({ sql: db }, accountCacheDefaults);
    const payments: PaymentsDeps = {
      db,
      ledger,
      accounts,
      rails,
      snapshot: market.snapshot,
      learning: market,
      route,
      recoveryBatchMax,
      strandedQuietMs,
      nowMs: Date.now,
    };
    // The demo is funded before the rails start, so that their first snapshot sees the funds.
    const demo =
      config.mode === "development" ? await ensureDemoTenant({ db, ledger, chain: evm.embedded }) : null;
    const settlement: SettlementDeps = {
      db,
      ledger,
      accounts,
      openInvoices: createOpenInvoiceMemory(openInvoiceMemoryDefaults),
      rails,
    };
    const events = new EventEmitter();
    const railEvents = {
      settlement,
      payments,
      logger: logger.child({ module: "settlement" }),
      onInvoicePaid: (invoiceId: string) => events.emit("invoice.paid", invoiceId),
    };
    for (const rail of rails.values()) {
      rail.onEvent((event) => applyRailEvent(railEvents, rail.id, event));
      await rail.start();
      closers.push(() => rail.stop());
    }
    if (config.netting !== null && batchPayer !== null) {
      const payer = batchPayer;
      payments.netting = {
        db,
        ledger,
        nowMs: Date.now,
        config: {
          maxFeeShareBps: config.netting.maxFeeShareBps,
          threshold: { total: config.netting.batchTotal },
          intervalMs: config.netting.intervalMs,
        },
        payer,
      };
      const nettingDeps = payments.netting;
      const netting = startPeriodic({
        name: "netting flush",
        intervalMs: Math.min(config.netting.intervalMs, nettingFlushEveryMsMax),
        pass: () => flushNetting(nettingDeps),
        logger,
      });
      closers.push(() => netting.stop());
    }
    // At start every open attempt is this process's to finish; afterwards only those left quiet for a while.
    market.start();
    closers.push(async () => market.stop());
    await recoverOpenAttempts(payments, { quietMs: 0 });
    const recovery = startPeriodic({
      name: "recovery pass",
      intervalMs: payments.strandedQuietMs,
      pass: () => recoverOpenAttempts(payments),
      logger,
    });
    closers.push(() => recovery.stop());

    // RevenueSplitter events mirrored into the ledger (adapters/evm/watcher.ts, settlement/evm-mirror.ts).
    const evmWatcher =
      evm.splitter === null
        ? null
        : await createSplitterMirror({
            db,
            ledger,
            publicClient: evm.publicClient,
            splitter: evm.splitter.address,
            token: { address: evm.token, asset: assets.USDC },
            hotWallet: evm.walletClient.account.address,
            confirmations: config.evm.confirmations,
            startBlock: evm.splitter.startBlock,
            pollIntervalMs: evm.embedded === null ? 2_000 : 250,
            logger: logger.child({ module: "evm-splitter" }),
          });
    if (evmWatcher !== null) {
      evmWatcher.start();
      closers.push(() => evmWatcher.stop());
    }

    // ---- HTTP: the API, and every rail's provider routes beside it
    const server = await buildServer({
      railRoutes: [...rails.values()].flatMap((rail) => rail.routes ?? []),
      db,
      ledger,
      accounts,
      rails,
      payments,
      settlement,
      requestTimeoutMs: config.requestTimeoutMs,
      bodyLimitBytes: config.bodyLimitBytes,
      idempotencyInProgressTimeoutMs,
      logLevel: config.logLevel,
    });
    closers.push(() => server.close());
    const delivery = startPeriodic({
      name: "webhook delivery pass",
      intervalMs: config.webhookDeliveryIntervalMs,
      pass: () => deliverOutbox({ db, limits: webhookLimitsDefault, nowMs: Date.now }),
      logger,
    });
    closers.push(() => delivery.stop());
    return {
      server,
      db,
      ledger,
      rails,
      payments,
      settlement,
      events,
      chain: evm.embedded,
      evmWatcher,
      demo,
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

async function ensureClearingAccount(
  deps: { db: Db; ledger: Ledger },
  rail: string,
  asset: Asset,
): Promise<AccountRecord> {
  const existing = await getClearingAccount(deps.db, { rail, asset });
  if (existing !== null) return existing;
  return createAccount(
    { sql: deps.db, ledger: deps.ledger },
    {
      tenantId: null,
      kind: "clearing",
      asset,
      name: `${rail} clearing (${asset.code})`,
      rail,
      id: `acct_clearing_${rail.replaceAll("-", "_")}_${asset.code.toLowerCase()}`,
    },
  );
}
