// The gateway against the regtest cluster's gateway node, for the projects that start the cluster (lightning,
// routing): its Lightning journal in a temporary folder, ready once the Lightning rail is; and a BTC account funded
// the way money arrives on Lightning (an invoice the payer node pays), so the rail's clearing account holds it.
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { type AuthenticatedLnd, pay } from "lightning";
import { assets } from "../../core/index.ts";
import { createAccount } from "../../gateway/accounts/index.ts";
import { type App, createApp } from "../../gateway/app.ts";
import { type RegtestClusterDescription, waitFor } from "../../scripts/lightning/index.ts";
import { apiClient } from "./api.ts";
import { testConfig } from "./config.ts";

const railReadyTimeoutMs = 30_000;
const invoicePaidTimeoutMs = 30_000;

/** Starts the gateway on the cluster's gateway node; `env` adds to (or overrides) its configuration. */
export async function startLightningGateway(
  cluster: RegtestClusterDescription,
  env: Readonly<Record<string, string>> = {},
): Promise<{ app: App; close(): Promise<void> }> {
  const directory = await mkdtemp(path.join(os.tmpdir(), "switchyard-lightning-gateway-"));
  const app = await createApp(
    testConfig({
      LOG_LEVEL: "silent",
      LND_SOCKET: cluster.nodes.gateway.socket,
      LND_CERT_BASE64: cluster.nodes.gateway.cert,
      LND_MACAROON_BASE64: cluster.nodes.gateway.macaroon,
      LIGHTNING_JOURNAL_PATH: path.join(directory, "journal.jsonl"),
      ...env,
    }),
  );
  await waitFor(
    "lightning rail available",
    async () => (app.rails.get("lightning")?.snapshot().available ? true : undefined),
    { timeoutMs: railReadyTimeoutMs },
  );
  return {
    app,
    async close() {
      await app.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}

/** Opens a BTC customer account of the demo tenant; with `funding` (BTC), the payer node pays its invoice. */
export async function btcAccount(
  app: App,
  params: { id: string; funding?: { amount: string; payer: AuthenticatedLnd } },
): Promise<void> {
  await createAccount(
    { sql: app.db, ledger: app.ledger },
    { tenantId: app.demo!.tenantId, kind: "customer", asset: assets.BTC, name: "btc", id: params.id },
  );
  if (params.funding !== undefined) await topUpByInvoice(app, { account: params.id, ...params.funding });
}

/**
 * Puts `amount` BTC on an account the way it arrives on Lightning: its invoice, paid by the payer node. Resolves to the
 * invoice's id once it reads paid.
 */
export async function topUpByInvoice(
  app: App,
  params: { account: string; amount: string; payer: AuthenticatedLnd; description?: string },
): Promise<string> {
  const call = apiClient(app);
  const invoice = await call("POST", "/v1/invoices", {
    account: params.account,
    amount: params.amount,
    asset: "BTC",
    description: params.description ?? "top-up",
  });
  if (invoice.status !== 201) throw new Error(`top-up invoice refused: ${JSON.stringify(invoice.body)}`);
  await pay({ lnd: params.payer, request: invoice.body.instructions.bolt11 });
  await waitFor(
    "top-up invoice paid",
    async () =>
      (await call("GET", `/v1/invoices/${invoice.body.id}`)).body.status === "paid" ? true : undefined,
    { timeoutMs: invoicePaidTimeoutMs },
  );
  return invoice.body.id;
}
