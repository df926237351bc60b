// The composition root: configuration → database and ledger → rails → services → HTTP server. Everything
// is built here and handed its typed dependencies; nothing looks anything up by name elsewhere.
import { EventEmitter } from "node:events";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import {
  type Chain,
  createPublicClient,
  createWalletClient,
  http,
  parseEventLogs,
  type Transport,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  createEvmRail,
  type EmbeddedChain,
  evmMigrations,
  type SplitterWatcher,
  startEmbeddedChain,
  testUsdAbi,
} from "../adapters/evm/index.ts";
import {
  type ApplyFiatEvent,
  createFiatRail,
  createSqlStripeObjectStore,
  createSqlStripeWebhookStore,
  createStripeClient,
  type FiatRail,
  fiatMigrations,
  toRailEvent,
} from "../adapters/fiat/index.ts";
import { createInternalRail } from "../adapters/internal/index.ts";
import { createFileRailStore, createLightningRail } from "../adapters/lightning/index.ts";
import type { Rail } from "../core/index.ts";
import { type Asset, assets } from "../core/index.ts";
import {
  type AccountRecord,
  accountCacheDefaults,
  createAccount,
  createAccountCache,
  getClearingAccount,
  getTenantAccount,
} from "./accounts/index.ts";
import type { Config } from "./config.ts";
import { type Db, type MigrationSource, migrate, openDb } from "./db/index.ts";
import { buildServer } from "./http/index.ts";
import { stripeWebhooksPlugin } from "./http/stripe-webhooks.ts";
import { derivedLedgerId } from "./ids/index.ts";
import { createLedger, type Ledger, ledgerHolds, ledgerMigrations } from "./ledger/index.ts";
import {
  applyRailEvent,
  createMarket,
  flushNetting,
  type PaymentsDeps,
  recoverOpenAttempts,
  transferCodes,
} from "./payments/index.ts";
import { startPeriodic } from "./periodic/index.ts";
import { route, staticRateSource } from "./router/index.ts";
import { createSplitterMirror } from "./settlement/evm.ts";
import {
  applyReceived,
  applyReinstated,
  applyReversed,
  createOpenInvoiceMemory,
  openInvoiceMemoryDefaults,
  type Receiver,
  type SettlementDeps,
} from "./settlement/index.ts";
import { createApiKey, createTenant } from "./tenants/index.ts";
import { deliverOutbox, webhookLimitsDefault } from "./webhooks/index.ts";

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

export type DemoTenant = {
  tenantId: string;
  apiKey: string;
  customer: AccountRecord;
  merchant: AccountRecord;
  /** An address on the embedded chain to pay in the demo. */
  payee: `0x${string}` | null;
};

export type App = {
  server: FastifyInstance;
  db: Db;
  ledger: Ledger;
  rails: ReadonlyMap<string, Rail>;
  payments: PaymentsDeps;
  settlement: SettlementDeps;
  /** In-process notifications after a commit: "invoice.paid" (invoice id). For embedding and benchmarks. */
  events: EventEmitter;
  chain: EmbeddedChain | null;
  /** Follows the RevenueSplitter's events into the ledger; null without a splitter. */
  evmWatcher: SplitterWatcher | null;
  demo: DemoTenant | null;
  close(): Promise<void>;
};

export const demoFundingUsdc = 1_000_000_000n; // 1,000 USDC
const snapshotAssetCodes = Object.keys(assets);

export async function createApp(config: Config): Promise<App> {
  const db = await openDb(config.database);
  const closers: Array<() => Promise<void>> = [() => db.close()];
  const close = async () => {
    for (const closer of closers.reverse()) await closer();
  };
  try {
    await migrate(db, [ledgerMigrations, gatewayMigrations, evmMigrations, fiatMigrations]);
    const ledger = createLedger({ db });
    closers.push(() => ledger.close());

    const chain =
      config.evm.kind === "embedded"
        ? await startEmbeddedChain({ blockIntervalMs: config.evm.blockIntervalMs })
        : null;
    if (chain !== null) closers.push(() => chain.close());
    const evmClients =
      chain !== null
        ? {
            publicClient: chain.publicClient,
            walletClient: chain.walletClient,
            token: chain.contracts.testUsd,
            splitter: { address: chain.contracts.splitter, startBlock: 0n },
          }
        : await rpcClients(config.evm as Extract<Config["evm"], { kind: "rpc" }>);

    const evmRail = createEvmRail({
      db,
      publicClient: evmClients.publicClient,
      walletClient: evmClients.walletClient,
      token: { address: evmClients.token, asset: assets.USDC },
      ...(evmClients.splitter === null ? {} : { splitter: evmClients.splitter.address }),
      confirmations: config.evm.confirmations,
      nativeUsdRate: { microUsd: 3n, perMinorUnits: 1_000_000_000n },
      transferGasEstimate: 60_000n,
      snapshotRefreshMs: 5_000,
      receiptTimeoutMs: 60_000,
      expectedLatencyMs: chain === null ? 12_000 * config.evm.confirmations : 1_000,
    });
    const rails = new Map<string, Rail>();
    for (const rail of [
      createInternalRail({ asset: assets.USDC }),
      createInternalRail({ asset: assets.USD }),
      createInternalRail({ asset: assets.BTC }),
      evmRail,
    ]) {
      rails.set(rail.id, rail);
    }
    const receivers = new Map<string, Receiver>();
    let fiatRail: FiatRail | null = null;
    if (config.fiat.kind === "on") {
      fiatRail = createFiatRail({
        stripe: createStripeClient(config.fiat.client),
        store: createSqlStripeObjectStore(db),
        asset: assets.USD,
        feeSchedule: config.fiat.feeSchedule,
        liquidity: config.fiat.liquidity,
      });
      rails.set(fiatRail.id, fiatRail);
      receivers.set(fiatRail.id, fiatRail.receiver);
    }
    if (config.lightning.kind === "on") {
      const lightning = createLightningRail({
        lnd: config.lightning.lnd,
        store: createFileRailStore(config.lightning.journalPath),
        limits: config.lightning.limits,
      });
      rails.set(lightning.id, lightning);
      receivers.set(lightning.id, {
        rail: lightning.id,
        assetCode: lightning.asset.code,
        async receive(request) {
          const invoice = await lightning.createInvoice({
            amountMsat: request.amount,
            expirySeconds: request.expirySeconds,
            reference: request.reference,
            memo: request.description,
          });
          return {
            railReference: invoice.paymentHash,
            expiresAtMs: invoice.expiresAtMs,
            instructions: { method: "lightning", bolt11: invoice.request, payment_hash: invoice.paymentHash },
          };
        },
      });
    }
    for (const rail of rails.values()) {
      if (rail.kind !== "internal") await ensureClearingAccount({ db, ledger }, rail.id, rail.asset);
    }

    const market = createMarket({
      rails,
      rateSource: developmentUsdRates,
      assetCodes: snapshotAssetCodes,
      refreshMs: 1_000,
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
      recoveryBatchMax: 1_000,
      strandedQuietMs: 60_000,
      nowMs: Date.now,
    };
    // The demo is funded before the rails start, so that their first snapshot sees the funds.
    const demo = config.mode === "development" ? await ensureDemoTenant({ db, ledger, chain }) : null;
    const settlement: SettlementDeps = {
      db,
      ledger,
      accounts,
      openInvoices: createOpenInvoiceMemory(openInvoiceMemoryDefaults),
      receivers,
    };
    const events = new EventEmitter();
    for (const rail of rails.values()) {
      rail.onEvent((event) =>
        event.kind === "received"
          ? applyReceived(settlement, {
              rail: rail.id,
              reference: event.reference,
              amount: event.amount,
              evidence: event.evidence,
            }).then((outcome) => {
              if (outcome === "applied") events.emit("invoice.paid", event.reference);
            })
          : applyRailEvent(payments, event),
      );
      await rail.start();
      closers.push(() => rail.stop());
    }
    if (config.netting !== null) {
      payments.netting = {
        db,
        ledger,
        nowMs: Date.now,
        config: {
          maxFeeShareBps: config.netting.maxFeeShareBps,
          threshold: { total: config.netting.batchTotal },
          intervalMs: config.netting.intervalMs,
        },
        payer: {
          rail: evmRail.id,
          asset: evmRail.asset,
          async settleBatch(batch) {
            const outcome = await evmRail.settleBatch(batch);
            return outcome.status === "failed" ? { status: "failed", message: outcome.message } : outcome;
          },
        },
      };
      const nettingDeps = payments.netting;
      const netting = startPeriodic("netting flush", Math.min(config.netting.intervalMs, 5_000), () =>
        flushNetting(nettingDeps),
      );
      closers.push(() => netting.stop());
    }
    // At start every open attempt is this process's to finish; afterwards only those left quiet for a while.
    market.start();
    closers.push(async () => market.stop());
    await recoverOpenAttempts(payments, { quietMs: 0 });
    const recovery = startPeriodic("recovery pass", payments.strandedQuietMs, () =>
      recoverOpenAttempts(payments),
    );
    closers.push(() => recovery.stop());

    const plugins: Array<(app: FastifyInstance) => Promise<void>> = [];
    if (config.fiat.kind === "on" && fiatRail !== null) {
      const fiat = config.fiat;
      const railId = fiatRail.id;
      const applyEvent: ApplyFiatEvent = async (event) => {
        switch (event.kind) {
          case "received":
            await applyReceived(settlement, {
              rail: railId,
              reference: event.reference,
              amount: event.amount,
              evidence: event.evidence,
            });
            return;
          case "reversed":
            await applyReversed(settlement, {
              rail: railId,
              reference: event.reference,
              key: event.key,
              amount: event.amount,
              evidence: event.evidence,
            });
            return;
          case "reinstated":
            await applyReinstated(settlement, {
              rail: railId,
              reference: event.reference,
              key: event.key,
              evidence: event.evidence,
            });
            return;
          case "attempt_succeeded":
          case "attempt_failed": {
            const railEvent = toRailEvent(event);
            if (railEvent !== null) await applyRailEvent(payments, railEvent);
            return;
          }
          case "receive_failed":
          case "payout_failed":
            return; // informational: nothing was credited, and a connected account's bank payout is not our money
        }
      };
      plugins.push(async (app) => {
        await app.register(stripeWebhooksPlugin, {
          secrets: fiat.webhook.secrets,
          toleranceSeconds: fiat.webhook.toleranceSeconds,
          bodyLimitBytes: config.bodyLimitBytes,
          store: createSqlStripeWebhookStore(db),
          currency: assets.USD.code.toLowerCase(),
          feeSchedule: fiat.feeSchedule,
          applyEvent,
        });
      });
    }

    // RevenueSplitter events mirrored into the ledger (adapters/evm/watcher.ts, settlement/evm-mirror.ts).
    const evmWatcher =
      evmClients.splitter === null
        ? null
        : await createSplitterMirror({
            db,
            ledger,
            publicClient: evmClients.publicClient,
            splitter: evmClients.splitter.address,
            token: { address: evmClients.token, asset: assets.USDC },
            hotWallet: evmClients.walletClient.account.address,
            confirmations: config.evm.confirmations,
            startBlock: evmClients.splitter.startBlock,
            pollIntervalMs: chain === null ? 2_000 : 250,
          });
    if (evmWatcher !== null) {
      evmWatcher.start();
      closers.push(() => evmWatcher.stop());
    }

    const server = await buildServer({
      plugins,
      db,
      ledger,
      accounts,
      rails,
      payments,
      settlement,
      requestTimeoutMs: config.requestTimeoutMs,
      bodyLimitBytes: config.bodyLimitBytes,
      idempotencyInProgressTimeoutMs: 5 * 60_000,
      logLevel: config.logLevel,
    });
    closers.push(() => server.close());
    const delivery = startPeriodic("webhook delivery pass", config.webhookDeliveryIntervalMs, () =>
      deliverOutbox({ db, limits: webhookLimitsDefault, nowMs: Date.now }),
    );
    closers.push(() => delivery.stop());
    return { server, db, ledger, rails, payments, settlement, events, chain, evmWatcher, demo, close };
  } catch (error) {
    await close();
    throw error;
  }
}

async function rpcClients(evm: Extract<Config["evm"], { kind: "rpc" }>) {
  const transport: Transport = http(evm.url, { timeout: 30_000, retryCount: 2 });
  const probe = createPublicClient({ transport });
  const chainId = await probe.getChainId();
  const chain: Chain = {
    id: chainId,
    name: `chain ${chainId}`,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [evm.url] } },
  };
  return {
    publicClient: createPublicClient({ chain, transport }),
    walletClient: createWalletClient({ chain, transport, account: privateKeyToAccount(evm.hotWalletKey) }),
    token: evm.tokenAddress,
    splitter: evm.splitter,
  };
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

const demoTenantId = "ten_demo";

/**
 * Development only: a demo tenant with a fresh API key, a customer and a merchant account, and — on the
 * embedded chain, the first time — 1,000 TestUSD minted to the hot wallet and credited to the customer.
 */
async function ensureDemoTenant(deps: {
  db: Db;
  ledger: Ledger;
  chain: EmbeddedChain | null;
}): Promise<DemoTenant> {
  const exists = await deps.db.query("SELECT 1 FROM tenants WHERE id = $1", [demoTenantId]);
  if (exists.length === 0) await createTenant(deps.db, { id: demoTenantId, name: "Demo" });
  const key = await createApiKey(deps.db, { tenantId: demoTenantId, mode: "test" });
  const account = async (id: string, kind: "customer" | "merchant", name: string) =>
    (await getTenantAccount(deps.db, { tenantId: demoTenantId, id })) ??
    createAccount(
      { sql: deps.db, ledger: deps.ledger },
      { tenantId: demoTenantId, kind, asset: assets.USDC, name, id },
    );
  const customer = await account("acct_demo_customer", "customer", "Demo customer");
  const merchant = await account("acct_demo_merchant", "merchant", "Demo merchant");
  if (deps.chain !== null) await fundFromMint(deps.db, deps.ledger, deps.chain, customer);
  return {
    tenantId: demoTenantId,
    apiKey: key.secret,
    customer,
    merchant,
    payee: deps.chain?.accounts[1]?.address ?? null,
  };
}

/** Mints TestUSD to the hot wallet and mirrors it: clearing (what the wallet holds) against the customer's balance. */
async function fundFromMint(
  db: Db,
  ledger: Ledger,
  chain: EmbeddedChain,
  customer: AccountRecord,
): Promise<void> {
  const [ledgerAccount] = await ledger.lookupAccounts([customer.ledgerAccountId]);
  if (ledgerAccount === undefined || ledgerAccount.creditsPosted > 0n) return;
  const clearing = await getClearingAccount(db, { rail: "evm", asset: assets.USDC });
  if (clearing === null) throw new Error("the evm clearing account is missing");
  const hash = await chain.walletClient.writeContract({
    address: chain.contracts.testUsd,
    abi: testUsdAbi,
    functionName: "mint",
    args: [chain.walletClient.account.address, demoFundingUsdc],
  });
  const receipt = await chain.publicClient.waitForTransactionReceipt({ hash });
  const [log] = parseEventLogs({ abi: testUsdAbi, eventName: "Transfer", logs: receipt.logs });
  if (receipt.status !== "success" || log === undefined) throw new Error(`demo mint ${hash} failed`);
  const [result] = await ledger.createTransfers([
    {
      id: derivedLedgerId(hash, "funding"),
      debitAccountId: clearing.ledgerAccountId,
      creditAccountId: customer.ledgerAccountId,
      amount: demoFundingUsdc,
      ledger: assets.USDC.ledger,
      code: transferCodes.funding,
      evidence: {
        rail: "evm",
        reference: `${hash}:${log.logIndex}`,
        detail: { chainId: String(chain.chain.id), blockNumber: receipt.blockNumber.toString() },
      },
    },
  ]);
  if (!ledgerHolds(result?.status)) throw new Error(`demo funding refused by the ledger: ${result?.status}`);
}
