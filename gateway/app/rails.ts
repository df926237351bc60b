// The rails the gateway runs, one module a line in `railModules`. A module builds its rails from the
// configuration; everything else — clearing accounts, events into the settlement, money in, provider routes,
// the router's snapshot — the composition root does for every rail alike, through core's Rail contract.
// Adding a rail: a folder under adapters/ and one line here (test/http/toy-rail.test.ts proves it).
import { createEvmRail } from "../../adapters/evm/index.ts";
import {
  createFiatRail,
  createSqlStripeObjectStore,
  createSqlStripeWebhookStore,
  createStripeClient,
  stripeWebhookBodyLimitBytes,
} from "../../adapters/fiat/index.ts";
import { createInternalRail } from "../../adapters/internal/index.ts";
import { createFileRailStore, createLightningRail } from "../../adapters/lightning/index.ts";
import { assets, type Logger, type Rail } from "../../core/index.ts";
import type { Db } from "../db/index.ts";
import { createEgress } from "../egress/index.ts";
import { startInvoicesKnownRecord } from "../l402/index.ts";
import type { Config } from "./config.ts";
import { depositParamsOf, type EvmClients } from "./evm.ts";

export type RailContext = {
  readonly config: Config;
  readonly db: Db;
  /** The app's logger; a module hands each rail a child naming it. */
  readonly logger: Logger;
  /** Every configured EVM chain, the first being rail "evm". */
  readonly evm: readonly EvmClients[];
};

/** What a module built: its rails, and what to release when the app closes (after the rails have stopped). */
export type BuiltRails = { readonly rails: readonly Rail[]; readonly close?: () => Promise<void> };

export type RailModule = (context: RailContext) => BuiltRails;

export const railModules: readonly RailModule[] = [internalRails, evmRails, lightningRails, fiatRails];

function internalRails(): BuiltRails {
  return { rails: [assets.USDC, assets.USD, assets.BTC].map((asset) => createInternalRail({ asset })) };
}

/** One rail per EVM chain, each with its chain's gas policy; its snapshot names the chain (core's chainId). */
function evmRails({ db, evm, logger }: RailContext): BuiltRails {
  const rails = evm.map((chain) =>
    createEvmRail({
      id: chain.id,
      db,
      publicClient: chain.publicClient,
      walletClient: chain.walletClient,
      token: { address: chain.token, asset: assets.USDC },
      ...(chain.splitter === null ? {} : { splitter: chain.splitter.address }),
      confirmations: chain.confirmations,
      gas: chain.gas,
      transferGasEstimate: 60_000n,
      snapshotRefreshMs: 5_000,
      receiptTimeoutMs: 60_000,
      replaceAfterMs: chain.replaceAfterMs,
      expectedLatencyMs: chain.embedded === null ? 12_000 * chain.confirmations : 1_000,
      deposits: depositParamsOf(chain),
      logger: logger.child({ module: "rail", rail: chain.id }),
    }),
  );
  return { rails };
}

function lightningRails({ config, db, logger }: RailContext): BuiltRails {
  if (config.lightning.kind !== "on") return { rails: [] };
  const lnurl = lnurlEgressOf(config, config.lightning.limits.lnurlHttpHosts ?? []);
  const rail = createLightningRail({
    logger: logger.child({ module: "rail", rail: "lightning" }),
    lnd: config.lightning.lnd,
    store: createFileRailStore(config.lightning.journalPath),
    limits: config.lightning.limits,
    lnurlFetch: lnurl.fetch,
  });
  // Up to when the rail knows its invoices' fate, and the invoices it holds set aside (the point past them), recorded
  // where every process's prune of unpaid L402 challenges reads them: only this process follows this LND, and the
  // prune runs in each.
  const known = startInvoicesKnownRecord({
    sql: db,
    rail: rail.id,
    expiredBeforeMs: () => rail.invoicesKnownBeforeMs(),
    setAside: () => rail.invoicesSetAside(),
    logger: logger.child({ module: "l402" }),
  });
  // The egress's connection pool to Lightning Address servers, closed with the app.
  return {
    rails: [rail],
    close: async () => {
      await known.stop();
      await lnurl.close();
    },
  };
}

/** Lightning Addresses reach public addresses only, but for EGRESS_ALLOW_HOSTS and the hosts asked over http. */
export function lnurlEgressOf(
  config: Pick<Config, "mode" | "egressAllowHosts">,
  httpHosts: readonly string[],
) {
  return createEgress({
    policy: { mode: config.mode, allowHosts: [...config.egressAllowHosts, ...httpHosts] },
  });
}

function fiatRails({ config, db, logger }: RailContext): BuiltRails {
  if (config.fiat.kind !== "on") return { rails: [] };
  return {
    rails: [
      createFiatRail({
        stripe: createStripeClient(config.fiat.client),
        store: createSqlStripeObjectStore(db),
        asset: assets.USD,
        feeSchedule: config.fiat.feeSchedule,
        liquidity: config.fiat.liquidity,
        ...(config.fiat.parkedFeesPassMs === undefined
          ? {}
          : { parkedFeesPassMs: config.fiat.parkedFeesPassMs }),
        webhooks: {
          secrets: config.fiat.webhook.secrets,
          toleranceSeconds: config.fiat.webhook.toleranceSeconds,
          bodyLimitBytes: Math.max(config.bodyLimitBytes, stripeWebhookBodyLimitBytes),
          store: createSqlStripeWebhookStore(db),
        },
        logger: logger.child({ module: "rail", rail: "fiat" }),
      }),
    ],
  };
}
