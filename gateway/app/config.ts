// Every setting, one zod schema, read from the environment. Nothing else in the gateway reads process.env.
import { z } from "zod";
import { type FiatConfig, FiatConfigError, loadFiatConfig } from "../../adapters/fiat/index.ts";
import {
  type LightningConfig,
  LightningConfigError,
  loadLightningConfig,
} from "../../adapters/lightning/index.ts";
import { SwitchyardError } from "../../core/index.ts";
import { requestsInFlightMaxDefault } from "../http/admission.ts";
import { defaultLedgerLimits } from "../ledger/index.ts";

const port = z.coerce.number().int().min(0).max(65_535);
const positiveInt = z.coerce.number().int().positive();

const schema = z.object({
  PORT: port.default(8080),
  HOST: z.string().default("127.0.0.1"),
  /** `development` creates a demo tenant with an API key and funds it on the embedded chain. */
  SWITCHYARD_MODE: z.enum(["development", "production"]).default("development"),
  /** postgres://… for PostgreSQL; unset: PGlite in-process (in memory, or in PGLITE_DIR). */
  DATABASE_URL: z.string().url().optional(),
  PGLITE_DIR: z.string().optional(),
  DATABASE_POOL_SIZE_MAX: positiveInt.default(10),
  DATABASE_STATEMENT_TIMEOUT_MS: positiveInt.default(10_000),
  /** JSON-RPC endpoint of an EVM chain; unset: Hardhat's in-process chain with the contracts deployed at start. */
  EVM_RPC_URL: z.string().url().optional(),
  /** Hex private key of the gateway's hot wallet on EVM_RPC_URL. */
  EVM_HOT_WALLET_KEY: z
    .string()
    .regex(/^0x[0-9a-fA-F]{64}$/, "a 0x-prefixed 32-byte hex key")
    .optional(),
  /** Address of the stablecoin (USDC-like, 6 decimals) on EVM_RPC_URL. */
  EVM_TOKEN_ADDRESS: z
    .string()
    .regex(/^0x[0-9a-fA-F]{40}$/)
    .optional(),
  EVM_CONFIRMATIONS: z.coerce.number().int().min(1).max(1_000).default(1),
  /** The embedded chain also mines an empty block this often (0: only with transactions). Unset: 1000 when
   * EVM_CONFIRMATIONS > 1 (else nothing would ever confirm a payout), 0 otherwise. */
  EVM_EMBEDDED_BLOCK_INTERVAL_MS: z.coerce.number().int().min(0).max(3_600_000).optional(),
  /** RevenueSplitter on EVM_RPC_URL (deploy: node scripts/evm-deploy.ts); unset: no splits there. */
  EVM_SPLITTER_ADDRESS: z
    .string()
    .regex(/^0x[0-9a-fA-F]{40}$/)
    .optional(),
  /** The block the splitter was deployed in: where its watcher starts reading the first time. */
  EVM_SPLITTER_START_BLOCK: z.coerce.bigint().min(0n).default(0n),
  REQUEST_TIMEOUT_MS: positiveInt.default(30_000),
  /** Netting on the EVM rail: a payout whose fee is above this share of its value (basis points) accrues. Unset: off. */
  NETTING_MAX_FEE_SHARE_BPS: z.coerce.number().int().min(1).max(10_000).optional(),
  /** A batch leaves when the accrued payouts add up to this many minor units, or at the interval. */
  NETTING_BATCH_TOTAL: z
    .string()
    .regex(/^[1-9][0-9]{0,17}$/, "a whole number of minor units")
    .default("100000000"),
  NETTING_INTERVAL_MS: positiveInt.default(60_000),
  /** How often due events are delivered to the tenants' webhook endpoints. */
  WEBHOOK_DELIVERY_INTERVAL_MS: positiveInt.default(1_000),
  BODY_LIMIT_BYTES: positiveInt.default(64 * 1024),
  /** The most API (/v1) requests in flight in this process; more are answered 503 `overloaded` with Retry-After. */
  REQUESTS_IN_FLIGHT_MAX: positiveInt.default(requestsInFlightMaxDefault),
  /** The most transfers waiting for the ledger's writer; a request beyond it is answered 503 `overloaded`. */
  LEDGER_QUEUE_TRANSFERS_MAX: positiveInt.default(defaultLedgerLimits.queueTransfersMax),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
});

export type Config = {
  port: number;
  host: string;
  mode: "development" | "production";
  database:
    | { kind: "postgres"; url: string; poolSizeMax: number; statementTimeoutMs: number }
    | { kind: "pglite"; dataDir: string | undefined };
  evm:
    | { kind: "embedded"; confirmations: number; blockIntervalMs: number }
    | {
        kind: "rpc";
        url: string;
        hotWalletKey: `0x${string}`;
        tokenAddress: `0x${string}`;
        splitter: { address: `0x${string}`; startBlock: bigint } | null;
        confirmations: number;
      };
  /** Stripe: off unless STRIPE_SECRET_KEY is set (the fiat rail reads its own variables, adapters/fiat/config.ts). */
  fiat: FiatConfig;
  /** LND: off unless LND_SOCKET is set (the Lightning rail reads its own variables, adapters/lightning/config.ts). */
  lightning: LightningConfig;
  requestTimeoutMs: number;
  netting: { maxFeeShareBps: number; batchTotal: bigint; intervalMs: number } | null;
  webhookDeliveryIntervalMs: number;
  bodyLimitBytes: number;
  requestsInFlightMax: number;
  ledgerQueueTransfersMax: number;
  logLevel: z.infer<typeof schema>["LOG_LEVEL"];
};

export class ConfigError extends SwitchyardError {
  override name = "ConfigError";
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
  let evm: Config["evm"];
  if (e.EVM_RPC_URL === undefined) {
    evm = {
      kind: "embedded",
      confirmations: e.EVM_CONFIRMATIONS,
      blockIntervalMs: e.EVM_EMBEDDED_BLOCK_INTERVAL_MS ?? (e.EVM_CONFIRMATIONS > 1 ? 1000 : 0),
    };
  } else {
    if (e.EVM_HOT_WALLET_KEY === undefined || e.EVM_TOKEN_ADDRESS === undefined) {
      throw new ConfigError(
        "invalid configuration: EVM_RPC_URL needs EVM_HOT_WALLET_KEY and EVM_TOKEN_ADDRESS",
      );
    }
    evm = {
      kind: "rpc",
      url: e.EVM_RPC_URL,
      hotWalletKey: e.EVM_HOT_WALLET_KEY as `0x${string}`,
      tokenAddress: e.EVM_TOKEN_ADDRESS as `0x${string}`,
      splitter:
        e.EVM_SPLITTER_ADDRESS === undefined
          ? null
          : { address: e.EVM_SPLITTER_ADDRESS as `0x${string}`, startBlock: e.EVM_SPLITTER_START_BLOCK },
      confirmations: e.EVM_CONFIRMATIONS,
    };
  }
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
  return {
    fiat,
    lightning,
    port: e.PORT,
    host: e.HOST,
    mode: e.SWITCHYARD_MODE,
    database:
      e.DATABASE_URL === undefined
        ? { kind: "pglite", dataDir: e.PGLITE_DIR }
        : {
            kind: "postgres",
            url: e.DATABASE_URL,
            poolSizeMax: e.DATABASE_POOL_SIZE_MAX,
            statementTimeoutMs: e.DATABASE_STATEMENT_TIMEOUT_MS,
          },
    evm,
    requestTimeoutMs: e.REQUEST_TIMEOUT_MS,
    netting:
      e.NETTING_MAX_FEE_SHARE_BPS === undefined
        ? null
        : {
            maxFeeShareBps: e.NETTING_MAX_FEE_SHARE_BPS,
            batchTotal: BigInt(e.NETTING_BATCH_TOTAL),
            intervalMs: e.NETTING_INTERVAL_MS,
          },
    webhookDeliveryIntervalMs: e.WEBHOOK_DELIVERY_INTERVAL_MS,
    bodyLimitBytes: e.BODY_LIMIT_BYTES,
    requestsInFlightMax: e.REQUESTS_IN_FLIGHT_MAX,
    ledgerQueueTransfersMax: e.LEDGER_QUEUE_TRANSFERS_MAX,
    logLevel: e.LOG_LEVEL,
  };
}
