// Development only: the demo tenant that `npm start` prints a working curl for — an API key, a customer and a
// merchant account in USDC, a customer account in BTC and one in USD (empty: money comes in by invoice, on
// Lightning and through Stripe), and on each embedded chain, once, 1,000 TestUSD minted to the hot wallet and
// credited to the USDC customer from that chain's rail.
import { parseEventLogs } from "viem";
import { type EmbeddedChain, testUsdAbi } from "../../adapters/evm/index.ts";
import { type Asset, assets, SwitchyardError } from "../../core/index.ts";
import {
  type AccountRecord,
  createAccount,
  getClearingAccount,
  getTenantAccount,
} from "../accounts/index.ts";
import type { Db } from "../db/index.ts";
import { derivedLedgerId } from "../ids/index.ts";
import { credit, type Ledger, transferCodes } from "../ledger/index.ts";
import { createTenant, ensureDemoApiKey } from "../tenants/index.ts";

export type DemoTenant = {
  tenantId: string;
  apiKey: string;
  customer: AccountRecord;
  merchant: AccountRecord;
  /** A BTC customer account: invoices paid on Lightning fill it, BOLT11 payments spend it. */
  btc: AccountRecord;
  /** A USD customer account: invoices paid through Stripe fill it. */
  usd: AccountRecord;
  /** An address on the first embedded chain to pay in the demo. */
  payee: `0x${string}` | null;
  /** Per embedded chain (one EVM rail each): its rail, its chain id and an address to pay there. */
  chains: readonly DemoChain[];
};

export type DemoChain = { rail: string; chainId: number; payee: `0x${string}` };

/** An embedded chain and the rail that pays on it. */
export type DemoChainSource = { rail: string; chain: EmbeddedChain };

export const demoFundingUsdc = 1_000_000_000n; // 1,000 USDC

export class DemoSetupError extends SwitchyardError {
  override name = "DemoSetupError";
}

const demoTenantId = "ten_demo";

/**
 * Development only: a demo tenant with its API key, a USDC customer and merchant account, a BTC and a USD
 * customer account, and — on each embedded chain, the first time — 1,000 TestUSD minted to the hot wallet and
 * credited to the USDC customer.
 */
export async function ensureDemoTenant(deps: {
  db: Db;
  ledger: Ledger;
  chains: readonly DemoChainSource[];
}): Promise<DemoTenant> {
  const exists = await deps.db.query("SELECT 1 FROM tenants WHERE id = $1", [demoTenantId]);
  if (exists.length === 0) await createTenant(deps.db, { id: demoTenantId, name: "Demo" });
  const key = await ensureDemoApiKey(deps, { tenantId: demoTenantId }); // the same at every start on this database
  const account = async (
    id: string,
    kind: "customer" | "merchant",
    name: string,
    asset: Asset = assets.USDC,
  ) =>
    (await getTenantAccount(deps.db, { tenantId: demoTenantId, id })) ??
    createAccount({ sql: deps.db, ledger: deps.ledger }, { tenantId: demoTenantId, kind, asset, name, id });
  const customer = await account("acct_demo_customer", "customer", "Demo customer");
  const merchant = await account("acct_demo_merchant", "merchant", "Demo merchant");
  const btc = await account("acct_demo_btc", "customer", "Demo customer (BTC)", assets.BTC);
  const usd = await account("acct_demo_usd", "customer", "Demo customer (USD)", assets.USD);
  const chains: DemoChain[] = [];
  for (const source of deps.chains) {
    await fundFromMint(deps.db, deps.ledger, source, customer);
    const payee = source.chain.accounts[1]?.address;
    if (payee !== undefined) chains.push({ rail: source.rail, chainId: source.chain.chain.id, payee });
  }
  return {
    tenantId: demoTenantId,
    apiKey: key.secret,
    customer,
    merchant,
    btc,
    usd,
    payee: chains[0]?.payee ?? null,
    chains,
  };
}

/**
 * Mints TestUSD to the hot wallet and mirrors it: the rail's clearing (what the wallet holds on that chain)
 * against the customer's balance. Once per rail: a clearing account that has paid anything out is funded.
 */
async function fundFromMint(
  db: Db,
  ledger: Ledger,
  source: DemoChainSource,
  customer: AccountRecord,
): Promise<void> {
  const { chain, rail } = source;
  const clearing = await getClearingAccount(db, { rail, asset: assets.USDC });
  if (clearing === null) throw new DemoSetupError(`the ${rail} clearing account is missing`);
  const [clearingAccount] = await ledger.lookupAccounts([clearing.ledgerAccountId]);
  if (clearingAccount === undefined || clearingAccount.debitsPosted > 0n) return;
  const hash = await chain.walletClient.writeContract({
    address: chain.contracts.testUsd,
    abi: testUsdAbi,
    functionName: "mint",
    args: [chain.walletClient.account.address, demoFundingUsdc],
  });
  const receipt = await chain.publicClient.waitForTransactionReceipt({ hash });
  const [log] = parseEventLogs({ abi: testUsdAbi, eventName: "Transfer", logs: receipt.logs });
  if (receipt.status !== "success" || log === undefined)
    throw new DemoSetupError("the demo mint failed", { details: hash });
  const funded = await credit(
    ledger,
    {
      debitAccountId: clearing.ledgerAccountId,
      creditAccountId: customer.ledgerAccountId,
      amount: demoFundingUsdc,
      ledger: assets.USDC.ledger,
      code: transferCodes.payments.funding,
    },
    {
      id: derivedLedgerId(hash, "funding"),
      evidence: {
        rail,
        reference: `${hash}:${log.logIndex}`,
        detail: { chainId: String(chain.chain.id), blockNumber: receipt.blockNumber.toString() },
      },
      label: `the demo funding on ${rail}`,
    },
  );
  if (funded === "conflict")
    throw new DemoSetupError("the ledger refused the demo funding", {
      details: "a different funding has its id",
    });
}
