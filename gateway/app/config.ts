// Every setting, one zod schema, read from the environment. Nothing else in the gateway reads process.env.
import path from "node:path";
import { format } from "node:util";
import { z } from "zod";
import { type FiatConfig, FiatConfigError, loadFiatConfig } from "../../adapters/fiat/index.ts";
import {
  type LightningConfig,
  LightningConfigError,
  loadLightningConfig,
} from "../../adapters/lightning/index.ts";
import { hostName, SwitchyardError, wholeBigint, wholeNumber } from "../../core/index.ts";
import { requestsInFlightMaxDefault, tenantRequestsInFlightMaxDefault } from "../http/admission.ts";
import {
  type RateLimits,
  rateLimitsDevelopmentDefault,
  rateLimitsProductionDefault,
} from "../http/rate-limit.ts";
import { defaultLedgerLimits } from "../ledger/index.ts";
import { rateDisagreementMaxBpsDefault } from "../rates/feed.ts";

const port = wholeNumber(0, 65_535);
const positiveInt = wholeNumber(1);
/**
 * A duration that sets a timer (or PostgreSQL's statement_timeout): at most 2^31 − 1 ms, about 24.8 days. Node fires a
 * longer timer at once (after a warning) and PostgreSQL refuses a longer timeout, so a larger setting is refused here.
 */
const timerMs = wholeNumber(1, 2 ** 31 - 1);
const address = z.string().regex(/^0x[0-9a-fA-F]{40}$/, "a 0x-prefixed 20-byte hex address");
const hotWalletKey = z.string().regex(/^0x[0-9a-fA-F]{64}$/, "a 0x-prefixed 32-byte hex key");
const confirmations = wholeNumber(1, 1_000);
const blockIntervalMs = wholeNumber(0, 3_600_000);
const replaceAfterMs = wholeNumber(0, 86_400_000);
/** A block number (PostgreSQL's bigint holds it). */
const blockNumber = wholeBigint(0n, 2n ** 63n - 1n);
const replaceAfterMsDefault = 120_000;
/** A price per gas in gwei, as a decimal string with at most 9 decimals (a whole number of wei). */
const gwei = z
  .string()
  .regex(/^(0|[1-9][0-9]{0,5})(\.[0-9]{1,9})?$/, "gwei with at most 9 decimals, below 1,000,000");

/** The embedded first chain's base fee: Hardhat's initial 1 gwei, unless `npm start`'s defaults make it an L1's. */
const embeddedBaseFeeGwei = "1";
const embeddedL1BaseFeeGwei = "25";
const embeddedL2BaseFeeGwei = "0.01";
const l1PriorityFeeGwei = "1";
const l1MaxFeeGwei = "200";
const evmChainsMax = 16;
const embeddedFirstChainId = 31_337;

/** One further chain in EVM_CHAINS. Without `rpc_url` it is one more embedded Hardhat chain. */
const evmChainEntry = z.strictObject({
  /** The rail's id: "evm-" and a name ("evm-l2", "evm-base"). */
  id: z.string().regex(/^evm-[a-z0-9][a-z0-9-]{0,27}$/, 'a rail id "evm-…" (lower case, digits, dashes)'),
  rpc_url: z.string().url().optional(),
  /** On an RPC chain: checked against the node at start (unset: whatever the node says). Embedded: its id
   * (default 31337 + the entry's position, from 1). */
  chain_id: z
    .number()
    .int()
    .positive()
    .max(2 ** 53 - 1)
    .optional(),
  /** Default: EVM_HOT_WALLET_KEY. */
  hot_wallet_key: hotWalletKey.optional(),
  /** The stablecoin on an RPC chain (required there); the embedded chain deploys TestUSD. */
  token: address.optional(),
  splitter: address.optional(),
  splitter_start_block: blockNumber.default(0n),
  /** The ForwarderFactory of USDC deposit addresses on an RPC chain, owned by the hot wallet; unset: invoices there
   * are paid by EIP-3009 authorization only. */
  forwarder_factory: address.optional(),
  confirmations: confirmations.default(1),
  priority_fee_gwei: gwei.default(l1PriorityFeeGwei),
  max_fee_gwei: gwei.default(l1MaxFeeGwei),
  replace_after_ms: replaceAfterMs.default(replaceAfterMsDefault),
  /** Embedded only: the base fee it holds, and an empty block this often (0: only with transactions). */
  base_fee_gwei: gwei.default(embeddedL2BaseFeeGwei),
  block_interval_ms: blockIntervalMs.optional(),
});
const evmChainEntries = z.array(evmChainEntry).max(evmChainsMax - 1);

/**
 * What `npm start` adds to the environment it was given (gateway/main.ts): with no chain configured (no
 * EVM_RPC_URL, no EVM_CHAINS), the embedded first chain as an L1 (25 gwei base fee) and an embedded L2 beside it,
 * so that the router has a real choice. The test setups call loadConfig without it (one chain at Hardhat's 1 gwei,
 * as before) unless they ask for these (`embeddedL1L2`).
 */
export function withStartDefaults(
  env: Record<string, string | undefined>,
): Record<string, string | undefined> {
  if (env.EVM_RPC_URL !== undefined || env.EVM_CHAINS !== undefined) return env;
  return { ...embeddedL1L2, ...env };
}

/**
 * Two embedded chains: the first (rail evm, chain 31337) with an L1's base fee of 25 gwei, and rail evm-l2
 * (chain 31338) with an L2's: 0.01 gwei base fee, 0.001 gwei tip, at most 1 gwei.
 */
export const embeddedL1L2: Readonly<Record<string, string>> = {
  EVM_EMBEDDED_BASE_FEE_GWEI: embeddedL1BaseFeeGwei,
  EVM_CHAINS: JSON.stringify([
    { id: "evm-l2", chain_id: 31_338, base_fee_gwei: "0.01", priority_fee_gwei: "0.001", max_fee_gwei: "1" },
  ]),
};

const weiPerGwei = 1_000_000_000n;

/** "1.5" gwei → 1,500,000,000 wei, exactly (the schema allows at most 9 decimals). */
export function gweiToWei(text: string): bigint {
  const [whole = "0", fraction = ""] = text.split(".");
  return BigInt(whole) * weiPerGwei + BigInt(fraction.padEnd(9, "0"));
}

/** A payout whose fee would be more than half its value accrues for a netted batch by default. */
export const nettingMaxFeeShareBpsDefault = 5_000;

const schema = z.object({
  PORT: port.default(8080),
  HOST: hostName.default("127.0.0.1"),
  /** `development` creates a demo tenant with an API key and funds it on the embedded chain. */
  SWITCHYARD_MODE: z.enum(["development", "production"]).default("development"),
  /** The operator's credential (op_ and 32 to 200 URL-safe characters), stored hashed at start. Unset: one is made at
   * the first start, stored hashed and printed once. */
  OPERATOR_KEY: z
    .string()
    .regex(/^op_[A-Za-z0-9_-]{32,200}$/, "op_ and 32 to 200 URL-safe characters")
    .optional(),
  /** postgres://… for PostgreSQL; unset: PGlite in-process (in memory, or in PGLITE_DIR). */
  DATABASE_URL: z.string().url().optional(),
  PGLITE_DIR: z.string().optional(),
  /** `on` (the default): PGlite runs on a worker thread of its own, beside the HTTP thread (gateway/db/pglite-thread.ts);
   * `off`: on the HTTP thread itself. */
  PGLITE_THREAD: z.enum(["on", "off"]).default("on"),
  DATABASE_POOL_SIZE_MAX: positiveInt.default(10),
  DATABASE_STATEMENT_TIMEOUT_MS: timerMs.default(10_000),
  /** The first EVM chain (rail "evm"). JSON-RPC endpoint; unset: Hardhat's in-process chain with the contracts deployed at start. */
  EVM_RPC_URL: z.string().url().optional(),
  /** Hex private key of the gateway's hot wallet on EVM_RPC_URL (and on every chain of EVM_CHAINS that names none). */
  EVM_HOT_WALLET_KEY: hotWalletKey.optional(),
  /** Address of the stablecoin (USDC-like, 6 decimals) on EVM_RPC_URL. */
  EVM_TOKEN_ADDRESS: address.optional(),
  EVM_CONFIRMATIONS: confirmations.default(1),
  /** The embedded chain also mines an empty block this often (0: only with transactions). Unset: 1000 when
   * EVM_CONFIRMATIONS > 1 (else nothing would ever confirm a payout), 0 otherwise. */
  EVM_EMBEDDED_BLOCK_INTERVAL_MS: blockIntervalMs.optional(),
  /** The embedded first chain's base fee, held there block after block (`npm start`: an L1's 25 gwei). */
  EVM_EMBEDDED_BASE_FEE_GWEI: gwei.default(embeddedBaseFeeGwei),
  /** RevenueSplitter on EVM_RPC_URL (deploy: node scripts/evm-deploy.ts); unset: no splits there. */
  EVM_SPLITTER_ADDRESS: address.optional(),
  /** The block the splitter was deployed in: where its watcher starts reading the first time. */
  EVM_SPLITTER_START_BLOCK: blockNumber.default(0n),
  /** ForwarderFactory on EVM_RPC_URL, owned by the hot wallet (deploy: node scripts/evm-deploy.ts): a USDC deposit
   * address per invoice. Unset: invoices there are paid by EIP-3009 authorization only. */
  EVM_FORWARDER_FACTORY: address.optional(),
  /** An Ignition deployment of ignition/modules/Switchyard.ts on EVM_RPC_URL, instead of the three addresses: its
   * folder, or its id under ignition/deployments/ (`chain-31337` after `npx hardhat ignition deploy`). */
  EVM_IGNITION_DEPLOYMENT: z.string().min(1).optional(),
  /** `npm start` serves each embedded chain over JSON-RPC on 127.0.0.1 for wallets: the first at this port, the
   * next ones at the ports after it; `off`: not served. */
  EVM_EMBEDDED_RPC_PORT: z.union([z.literal("off"), port]).default(8545),
  /** Gas policy of the first chain: the tip offered above the base fee, and the most paid per gas (else fee_above_max). */
  EVM_PRIORITY_FEE_GWEI: gwei.default(l1PriorityFeeGwei),
  EVM_MAX_FEE_GWEI: gwei.default(l1MaxFeeGwei),
  /**
   * A transaction not mined this long after it was signed is replaced (same nonce, fees bumped ≥ 12.5%, cut back to
   * the cap while that is still ≥ 10%; none fitting, left and warned of once).
   */
  EVM_REPLACE_AFTER_MS: replaceAfterMs.default(replaceAfterMsDefault),
  /** Further EVM chains, each its own rail: a JSON array of `evmChainEntry` (see README). Unset: none. */
  EVM_CHAINS: z.string().optional(),
  REQUEST_TIMEOUT_MS: timerMs.default(30_000),
  /**
   * Chainlink-style price feeds on the first EVM chain, a JSON object of asset code → feed address, e.g.
   * {"ETH":"0x…","BTC":"0x…"}. Unset in development on the embedded chain: feeds are deployed at start.
   */
  PRICE_FEEDS: z.string().optional(),
  /** An HTTP source of USD rates, {"rates": {"BTC": "100000.00", …}}, read after the feeds. Unset: none. */
  RATES_HTTP_URL: z.string().url().optional(),
  /** A rate older than this is stale: the rails that need it are excluded (stale_rate). */
  RATES_MAX_AGE_MS: timerMs.default(3_600_000),
  RATES_REFRESH_MS: timerMs.default(30_000),
  /**
   * The sources' latest rates of one asset (a stale one included) further apart than this (basis points of the
   * lower) are none of them used: the rails that need the rate are excluded (disputed_rate).
   */
  RATES_DISAGREEMENT_MAX_BPS: wholeNumber(1, 10_000).default(rateDisagreementMaxBpsDefault),
  /**
   * Netting on the EVM rail: a payout whose fee is above this share of its value (basis points) accrues and leaves
   * in a netted batch, never paid at a loss on its own. On by default at 50 %; `off` pays every payout alone.
   */
  NETTING_MAX_FEE_SHARE_BPS: z
    .union([z.literal("off"), wholeNumber(1, 10_000)])
    .default(nettingMaxFeeShareBpsDefault),
  /** A batch leaves when the accrued payouts add up to this many minor units, or at the interval. */
  NETTING_BATCH_TOTAL: wholeBigint(1n, 10n ** 18n - 1n).default(100_000_000n),
  NETTING_INTERVAL_MS: timerMs.default(60_000),
  /** How often due events are delivered to the tenants' webhook endpoints. */
  WEBHOOK_DELIVERY_INTERVAL_MS: timerMs.default(1_000),
  /** Hosts (host or host:port, comma-separated) reached whatever their address, and over http in development: the
   * tests' local receivers. Every other outbound URL (webhooks, Lightning Addresses) must reach a public address. */
  EGRESS_ALLOW_HOSTS: z.string().default(""),
  BODY_LIMIT_BYTES: positiveInt.default(64 * 1024),
  /** The most API (/v1) requests in flight in this process; more are answered 503 `overloaded` with Retry-After. */
  REQUESTS_IN_FLIGHT_MAX: positiveInt.default(requestsInFlightMaxDefault),
  /** The most of one tenant's /v1 requests in flight; more are answered 429 rate_limited. Unset: a quarter of
   * REQUESTS_IN_FLIGHT_MAX; `off`: only the pool's limit. */
  REQUESTS_IN_FLIGHT_PER_TENANT_MAX: z.union([z.literal("off"), positiveInt]).optional(),
  /** Requests a second per client IP (every route), per API key and per tenant (/v1), each past it answered 429
   * rate_limited; `off`: none (load tests). Unset: 1000, 1000 and 10000 in development, 1000, 100 and 1000 in
   * production (gateway/http/rate-limit.ts). */
  RATE_LIMIT_PER_IP: z.union([z.literal("off"), positiveInt]).optional(),
  RATE_LIMIT_PER_KEY: z.union([z.literal("off"), positiveInt]).optional(),
  RATE_LIMIT_PER_TENANT: z.union([z.literal("off"), positiveInt]).optional(),
  /** The most transfers waiting for the ledger's writer; a request beyond it is answered 503 `overloaded`. */
  LEDGER_QUEUE_TRANSFERS_MAX: positiveInt.default(defaultLedgerLimits.queueTransfersMax),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
});

export type Config = {
  port: number;
  host: string;
  mode: "development" | "production";
  /** OPERATOR_KEY: the operator's credential when configured; null: the stored one, made at the first start. */
  operatorKey: string | null;
  database:
    | { kind: "postgres"; url: string; poolSizeMax: number; statementTimeoutMs: number }
    | { kind: "pglite"; dataDir: string | undefined; thread: boolean };
  /** The EVM chains, each its own rail; the first is rail "evm" (EVM_RPC_URL or the embedded L1). */
  evm: { chains: readonly EvmChainConfig[] };
  /** Where `npm start` serves the embedded chains over JSON-RPC (gateway/main.ts); null: not served. */
  embeddedRpc: { host: "127.0.0.1"; port: number } | null;
  /** Where USD rates come from (gateway/rates): price feeds, an HTTP source; the static table only in development. */
  rates: {
    priceFeeds: Readonly<Record<string, `0x${string}`>> | null;
    httpUrl: string | null;
    maxAgeMs: number;
    refreshMs: number;
    /** The sources' latest rates of an asset further apart than this (bps of the lower): none is used. */
    disagreementMaxBps: number;
  };
  /** Stripe: off unless STRIPE_SECRET_KEY is set (the fiat rail reads its own variables, adapters/fiat/config.ts). */
  fiat: FiatConfig;
  /** LND: off unless LND_SOCKET is set (the Lightning rail reads its own variables, adapters/lightning/config.ts). */
  lightning: LightningConfig;
  requestTimeoutMs: number;
  netting: { maxFeeShareBps: number; batchTotal: bigint; intervalMs: number } | null;
  webhookDeliveryIntervalMs: number;
  /** EGRESS_ALLOW_HOSTS, lowercased and trimmed (gateway/egress). */
  egressAllowHosts: readonly string[];
  bodyLimitBytes: number;
  requestsInFlightMax: number;
  /** REQUESTS_IN_FLIGHT_PER_TENANT_MAX; null: off. */
  tenantRequestsInFlightMax: number | null;
  rateLimits: RateLimits;
  ledgerQueueTransfersMax: number;
  logLevel: z.infer<typeof schema>["LOG_LEVEL"];
};

/** How a rail pays for gas (EIP-1559): the base fee of the latest block plus `priorityFeeWei`, never above `maxFeeWei`. */
export type EvmGasPolicy = { priorityFeeWei: bigint; maxFeeWei: bigint };

export type EvmChainConfig = {
  /** The rail's id: "evm" for the first chain, "evm-…" for the others. */
  id: string;
  confirmations: number;
  gas: EvmGasPolicy;
  /** A transaction not mined this long after it was signed is replaced with bumped fees. */
  replaceAfterMs: number;
  source:
    | {
        kind: "embedded";
        chainId: number;
        /** The base fee the chain holds block after block. */
        baseFeeWei: bigint;
        blockIntervalMs: number;
      }
    | {
        kind: "rpc";
        url: string;
        /** Checked against the node at start; null: the node's. */
        chainId: number | null;
        /** null (first chain only): a development chain's Hardhat account, one per database (gateway/app/dev-chain.ts). */
        hotWalletKey: `0x${string}` | null;
        /** null (first chain only): from `ignitionDeployment`, or — none given — a development chain on which the
         * gateway deploys the Ignition module at its first start. */
        tokenAddress: `0x${string}` | null;
        /** The Ignition deployment folder the contracts are read from (EVM_IGNITION_DEPLOYMENT). */
        ignitionDeployment?: string;
        splitter: { address: `0x${string}`; startBlock: bigint } | null;
        /** Deposit addresses (CREATE2 forwarders) for USDC invoices; null: authorizations only. */
        forwarderFactory: `0x${string}` | null;
      };
};

export class ConfigError extends SwitchyardError {
  override name = "ConfigError";
}

/**
 * How a command of ours (`npm start`, `npm run migrate`) ends on an error it did not handle, said on stderr under its
 * `prefix`: a configuration it refuses in one line and exit code 2 (the operator's to fix), anything else with its
 * cause and exit code 1, after `failed`.
 */
/** `scrub`: what the printout of an error passes through (the configuration's secrets redacted: secrets.ts). */
export function commandFailure(
  prefix: string,
  failed: string,
  error: unknown,
  scrub: (text: string) => string = (text) => text,
): 1 | 2 {
  if (error instanceof ConfigError) {
    console.error(scrub(`${prefix}: ${error.message}`));
    return 2;
  }
  console.error(scrub(format(`${prefix}: ${failed}`, error)));
  return 1;
}

export function loadConfig(env: Record<string, string | undefined>): Config {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map((issue) => `${issue.path.join(".")}: ${issue.message}`)
      .join("; ");
    throw new ConfigError(`invalid configuration: ${problems}`);
  }
  const e = parsed.data;
  const evm: Config["evm"] = { chains: [firstChain(e), ...furtherChains(e)] };
  if (e.SWITCHYARD_MODE === "production") productionInfrastructure(e, evm.chains);
  let fiat: FiatConfig;
  let lightning: LightningConfig;
  try {
    fiat = loadFiatConfig(env);
    lightning = loadLightningConfig(env);
  } catch (error) {
    if (error instanceof FiatConfigError || error instanceof LightningConfigError)
      throw new ConfigError(error.message);
    throw error;
  }
  const config: Config = {
    fiat,
    lightning,
    port: e.PORT,
    host: e.HOST,
    mode: e.SWITCHYARD_MODE,
    operatorKey: e.OPERATOR_KEY ?? null,
    database:
      e.DATABASE_URL === undefined
        ? { kind: "pglite", dataDir: e.PGLITE_DIR, thread: e.PGLITE_THREAD === "on" }
        : {
            kind: "postgres",
            url: e.DATABASE_URL,
            poolSizeMax: e.DATABASE_POOL_SIZE_MAX,
            statementTimeoutMs: e.DATABASE_STATEMENT_TIMEOUT_MS,
          },
    evm,
    embeddedRpc:
      e.EVM_EMBEDDED_RPC_PORT === "off" ? null : { host: "127.0.0.1", port: e.EVM_EMBEDDED_RPC_PORT },
    requestTimeoutMs: e.REQUEST_TIMEOUT_MS,
    rates: {
      priceFeeds: e.PRICE_FEEDS === undefined ? null : parsePriceFeeds(e.PRICE_FEEDS),
      httpUrl: e.RATES_HTTP_URL ?? null,
      maxAgeMs: e.RATES_MAX_AGE_MS,
      refreshMs: e.RATES_REFRESH_MS,
      disagreementMaxBps: e.RATES_DISAGREEMENT_MAX_BPS,
    },
    netting:
      e.NETTING_MAX_FEE_SHARE_BPS === "off"
        ? null
        : {
            maxFeeShareBps: e.NETTING_MAX_FEE_SHARE_BPS,
            batchTotal: e.NETTING_BATCH_TOTAL,
            intervalMs: e.NETTING_INTERVAL_MS,
          },
    webhookDeliveryIntervalMs: e.WEBHOOK_DELIVERY_INTERVAL_MS,
    egressAllowHosts: e.EGRESS_ALLOW_HOSTS.split(",")
      .map((host) => host.trim().toLowerCase())
      .filter((host) => host !== ""),
    bodyLimitBytes: e.BODY_LIMIT_BYTES,
    requestsInFlightMax: e.REQUESTS_IN_FLIGHT_MAX,
    tenantRequestsInFlightMax: setting(
      e.REQUESTS_IN_FLIGHT_PER_TENANT_MAX,
      tenantRequestsInFlightMaxDefault(e.REQUESTS_IN_FLIGHT_MAX),
    ),
    rateLimits: rateLimitsOf(e),
    ledgerQueueTransfersMax: e.LEDGER_QUEUE_TRANSFERS_MAX,
    logLevel: e.LOG_LEVEL,
  };
  if (config.mode === "production") productionRates(config);
  return config;
}

type Env = z.infer<typeof schema>;

/** A limit that may be `off` (null): its value, or `otherwise` when unset. */
function setting(value: "off" | number | undefined, otherwise: number | null): number | null {
  return value === undefined ? otherwise : value === "off" ? null : value;
}

/** The settings that turn every rate limit off: what load tests and the benches run with (rateLimitsOff). */
export const rateLimitsOffEnv = {
  RATE_LIMIT_PER_IP: "off",
  RATE_LIMIT_PER_KEY: "off",
  RATE_LIMIT_PER_TENANT: "off",
} as const;

/** RATE_LIMIT_PER_IP, RATE_LIMIT_PER_KEY and RATE_LIMIT_PER_TENANT, each defaulting by mode. */
function rateLimitsOf(e: Env): RateLimits {
  const defaults =
    e.SWITCHYARD_MODE === "production" ? rateLimitsProductionDefault : rateLimitsDevelopmentDefault;
  return {
    ipRequestsPerSecondMax: setting(e.RATE_LIMIT_PER_IP, defaults.ipRequestsPerSecondMax),
    keyRequestsPerSecondMax: setting(e.RATE_LIMIT_PER_KEY, defaults.keyRequestsPerSecondMax),
    tenantRequestsPerSecondMax: setting(e.RATE_LIMIT_PER_TENANT, defaults.tenantRequestsPerSecondMax),
  };
}

const priceFeedsSchema = z.record(
  z.string().regex(/^[A-Z0-9]{2,12}$/, "an asset code"),
  z.string().regex(/^0x[0-9a-fA-F]{40}$/, "a feed address"),
);

/** A setting that holds JSON, checked by its schema; a ConfigError names the setting and the path of each problem. */
function jsonSetting<T>(name: string, text: string, schema: z.ZodType<T>): T {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new ConfigError(`invalid configuration: ${name} is not JSON`, { cause });
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map((issue) => `${[name, ...issue.path].join(".")}: ${issue.message}`)
      .join("; ");
    throw new ConfigError(`invalid configuration: ${problems}`);
  }
  return parsed.data;
}

/**
 * Production starts on infrastructure of its own or not at all: not on records kept in memory (no DATABASE_URL nor
 * PGLITE_DIR: gone at exit, every key and balance with them), nor on an embedded Hardhat chain (no EVM_RPC_URL, or an
 * EVM_CHAINS entry with no rpc_url: its TestUSD, which anyone with its port may mint, would be the rail's USDC).
 */
function productionInfrastructure(e: Env, chains: readonly EvmChainConfig[]): void {
  if (e.DATABASE_URL === undefined && e.PGLITE_DIR === undefined)
    throw new ConfigError(
      "invalid configuration: production keeps its records in DATABASE_URL (PostgreSQL): without it they would be in memory, gone at exit",
    );
  const embedded = chains.filter((chain) => chain.source.kind === "embedded").map((chain) => chain.id);
  if (embedded.length > 0)
    throw new ConfigError(
      `invalid configuration: production pays on chains of its own: ${embedded.join(", ")} would be an embedded Hardhat chain (its TestUSD anyone may mint); set EVM_RPC_URL, and rpc_url in EVM_CHAINS`,
    );
}

/**
 * Production has no static rates: an EVM rail's gas is priced at ETH's rate and Lightning's at BTC's, and a rail whose
 * asset has no rate is excluded from every route. Without a source for one of them the rail would start and never pay.
 * An HTTP source may name any asset; price feeds name theirs.
 */
function productionRates(config: Config): void {
  if (config.rates.httpUrl !== null) return;
  const feeds = config.rates.priceFeeds ?? {};
  const needed = ["ETH", ...(config.lightning.kind === "on" ? ["BTC"] : [])];
  const missing = needed.filter((code) => feeds[code] === undefined);
  if (missing.length > 0)
    throw new ConfigError(
      `invalid configuration: production prices its rails' fees at live rates, and nothing gives ${missing.join(" and ")}'s: set PRICE_FEEDS (${missing.map((code) => `"${code}"`).join(", ")}) or RATES_HTTP_URL`,
    );
}

function parsePriceFeeds(text: string): Record<string, `0x${string}`> {
  return jsonSetting("PRICE_FEEDS", text, priceFeedsSchema) as Record<string, `0x${string}`>;
}

/** The first chain (rail "evm"), from the single-chain variables. */
function firstChain(e: Env): EvmChainConfig {
  const gas = gasPolicy("EVM", e.EVM_PRIORITY_FEE_GWEI, e.EVM_MAX_FEE_GWEI);
  if (e.EVM_RPC_URL === undefined) {
    return {
      id: "evm",
      confirmations: e.EVM_CONFIRMATIONS,
      gas,
      replaceAfterMs: e.EVM_REPLACE_AFTER_MS,
      source: {
        kind: "embedded",
        chainId: embeddedFirstChainId,
        baseFeeWei: gweiToWei(e.EVM_EMBEDDED_BASE_FEE_GWEI),
        blockIntervalMs: e.EVM_EMBEDDED_BLOCK_INTERVAL_MS ?? (e.EVM_CONFIRMATIONS > 1 ? 1000 : 0),
      },
    };
  }
  const addressGiven = [e.EVM_TOKEN_ADDRESS, e.EVM_SPLITTER_ADDRESS, e.EVM_FORWARDER_FACTORY].some(
    (value) => value !== undefined,
  );
  if (e.EVM_IGNITION_DEPLOYMENT !== undefined && addressGiven)
    throw new ConfigError(
      "invalid configuration: EVM_IGNITION_DEPLOYMENT names the contracts; set it or their addresses, not both",
    );
  // Without a token (and no Ignition deployment) the chain must be a development chain: the gateway deploys there.
  // Never in production: there a forgotten token would deploy TestUSD, which anyone may mint, as the rail's USDC.
  if (
    (addressGiven || e.SWITCHYARD_MODE === "production") &&
    (e.EVM_HOT_WALLET_KEY === undefined || e.EVM_TOKEN_ADDRESS === undefined)
  ) {
    throw new ConfigError(
      "invalid configuration: EVM_RPC_URL needs EVM_HOT_WALLET_KEY and EVM_TOKEN_ADDRESS",
    );
  }
  return {
    id: "evm",
    confirmations: e.EVM_CONFIRMATIONS,
    gas,
    replaceAfterMs: e.EVM_REPLACE_AFTER_MS,
    source: {
      kind: "rpc",
      url: e.EVM_RPC_URL,
      chainId: null,
      hotWalletKey: (e.EVM_HOT_WALLET_KEY as `0x${string}` | undefined) ?? null,
      tokenAddress: (e.EVM_TOKEN_ADDRESS as `0x${string}` | undefined) ?? null,
      ...(e.EVM_IGNITION_DEPLOYMENT === undefined
        ? {}
        : { ignitionDeployment: ignitionDeploymentDir(e.EVM_IGNITION_DEPLOYMENT) }),
      splitter:
        e.EVM_SPLITTER_ADDRESS === undefined
          ? null
          : { address: e.EVM_SPLITTER_ADDRESS as `0x${string}`, startBlock: e.EVM_SPLITTER_START_BLOCK },
      forwarderFactory: (e.EVM_FORWARDER_FACTORY as `0x${string}` | undefined) ?? null,
    },
  };
}

/** A folder as given, or an id: Ignition's folder of that name under ignition/deployments/. */
function ignitionDeploymentDir(setting: string): string {
  return /^[A-Za-z0-9_-]+$/.test(setting)
    ? path.resolve("ignition", "deployments", setting)
    : path.resolve(setting);
}

/** The chains of EVM_CHAINS, each checked: a unique rail id, an RPC chain with its token and key, a unique chain id. */
function furtherChains(e: Env): EvmChainConfig[] {
  if (e.EVM_CHAINS === undefined) return [];
  const entries = jsonSetting("EVM_CHAINS", e.EVM_CHAINS, evmChainEntries);
  const ids = new Set<string>();
  const chainIds = new Set<number>([...(e.EVM_RPC_URL === undefined ? [embeddedFirstChainId] : [])]);
  return entries.map((entry, index) => {
    const where = `EVM_CHAINS[${index}] (${entry.id})`;
    if (ids.has(entry.id)) throw new ConfigError(`invalid configuration: ${where}: the id is used twice`);
    ids.add(entry.id);
    const gas = gasPolicy(where, entry.priority_fee_gwei, entry.max_fee_gwei);
    const chainId = entry.chain_id ?? (entry.rpc_url === undefined ? embeddedFirstChainId + index + 1 : null);
    if (chainId !== null) {
      if (chainIds.has(chainId))
        throw new ConfigError(`invalid configuration: ${where}: chain id ${chainId} is another chain's`);
      chainIds.add(chainId);
    }
    if (entry.rpc_url === undefined) {
      return {
        id: entry.id,
        confirmations: entry.confirmations,
        gas,
        replaceAfterMs: entry.replace_after_ms,
        source: {
          kind: "embedded",
          chainId: chainId ?? embeddedFirstChainId + index + 1,
          baseFeeWei: gweiToWei(entry.base_fee_gwei),
          blockIntervalMs: entry.block_interval_ms ?? (entry.confirmations > 1 ? 1000 : 0),
        },
      };
    }
    const key = entry.hot_wallet_key ?? e.EVM_HOT_WALLET_KEY;
    if (key === undefined || entry.token === undefined)
      throw new ConfigError(
        `invalid configuration: ${where}: an rpc_url needs a token and a hot_wallet_key (or EVM_HOT_WALLET_KEY)`,
      );
    return {
      id: entry.id,
      confirmations: entry.confirmations,
      gas,
      replaceAfterMs: entry.replace_after_ms,
      source: {
        kind: "rpc",
        url: entry.rpc_url,
        chainId,
        hotWalletKey: key as `0x${string}`,
        tokenAddress: entry.token as `0x${string}`,
        splitter:
          entry.splitter === undefined
            ? null
            : { address: entry.splitter as `0x${string}`, startBlock: entry.splitter_start_block },
        forwarderFactory: (entry.forwarder_factory as `0x${string}` | undefined) ?? null,
      },
    };
  });
}

function gasPolicy(where: string, priorityFeeGwei: string, maxFeeGwei: string): EvmGasPolicy {
  const policy = { priorityFeeWei: gweiToWei(priorityFeeGwei), maxFeeWei: gweiToWei(maxFeeGwei) };
  if (policy.maxFeeWei === 0n || policy.priorityFeeWei > policy.maxFeeWei)
    throw new ConfigError(
      `invalid configuration: ${where}: the max fee must be above 0 and at least the priority fee`,
    );
  return policy;
}
