// Development only: the demo tenant that `npm start` prints a working curl for — an API key, a customer and a
// merchant account in USDC, a customer account in BTC and one in USD (empty: money comes in by invoice, on
// Lightning and through Stripe), and on each embedded chain, once, 1,000 TestUSD minted to the hot wallet and
// credited to the USDC customer from that chain's rail. On the first chain reached over JSON-RPC (a developer's
// `hardhat node`), the same once per database where TestUSD's mint is open to the hot wallet (the mint kept in
// evm_dev_chains); where it is not, nothing, and the customer is funded by a USDC invoice. On each embedded chain a
// payer too: a Hardhat development account holding 1,000 TestUSD minted at this start, for wallets and x402 clients.
import {
  type Account,
  type Address,
  type Chain,
  encodeFunctionData,
  type Hex,
  keccak256,
  type PublicClient,
  parseEventLogs,
  parseTransaction,
  recoverTransactionAddress,
  TransactionNotFoundError,
  type TransactionSerialized,
  type Transport,
  type WalletClient,
} from "viem";
import { mnemonicToAccount, privateKeyToAccount } from "viem/accounts";
import { developmentAccountKey, gasPaid, hardhatMnemonic, testUsdAbi } from "../../adapters/evm/index.ts";
import { type Asset, assets, SwitchyardError } from "../../core/index.ts";
import {
  type AccountRecord,
  accountCacheDefaults,
  createAccount,
  createAccountCache,
  getClearingAccount,
  getTenantAccount,
} from "../accounts/index.ts";
import type { Db } from "../db/index.ts";
import { derivedLedgerId } from "../ids/index.ts";
import { credit, type Ledger, transferCodes } from "../ledger/index.ts";
import { bookRailGas, chainTransactionLedgerId } from "../settlement/evm-send-gas.ts";
import { createTenant, ensureDemoApiKey } from "../tenants/index.ts";
import { canMint, type DevChain, readDevChainRecord, recordDemoMint } from "./dev-chain.ts";
import type { EvmClients } from "./evm.ts";

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

export type DemoChain = {
  rail: string;
  chainId: number;
  /** Hardhat's development account 2 on an embedded chain, 1 on another: an address to pay. */
  payee: `0x${string}`;
  /** What the demo funding on this chain was at this start. */
  funding: DemoFunding;
  /** Embedded chains: a development account holding TestUSD minted at this start (wallets, x402 clients). */
  payer: DemoPayer | null;
  /** The gateway's hot wallet there, and on a development chain over JSON-RPC how it and the contracts were chosen. */
  hotWallet: Address;
  contracts: { token: Address; splitter: Address | null; forwarderFactory: Address | null };
  dev: { accountIndex: number | null; contracts: DevChain["contracts"] } | null;
};

/** minted: now; minted before: at an earlier start on this database; not mintable: TestUSD's mint is not open here. */
export type DemoFunding = "minted" | "minted before" | "not mintable";

export type DemoPayer = { address: Address; privateKey: Hex; accountIndex: number; balance: bigint };

/** A chain the demo funds on, and the rail that pays on it. */
export type DemoChainSource = {
  rail: string;
  chainId: number;
  publicClient: PublicClient<Transport, Chain>;
  walletClient: WalletClient<Transport, Chain, Account>;
  token: Address;
  /** embedded: the gateway's in-process chain; rpc: another, its mint kept in the database. */
  kind: "embedded" | "rpc";
  contracts: DemoChain["contracts"];
  dev: DemoChain["dev"];
};

/** The demo's chains: every embedded chain, and the first rail's chain when it is reached over JSON-RPC. */
export function demoChainSourcesOf(evm: readonly EvmClients[]): DemoChainSource[] {
  return evm
    .filter((clients) => clients.embedded !== null || clients.id === "evm")
    .map((clients) => ({
      rail: clients.id,
      chainId: clients.chainId,
      publicClient: clients.publicClient,
      walletClient: clients.walletClient,
      token: clients.token,
      kind: clients.embedded === null ? "rpc" : "embedded",
      contracts: {
        token: clients.token,
        splitter: clients.splitter?.address ?? null,
        forwarderFactory: clients.forwarderFactory,
      },
      dev:
        clients.dev === undefined
          ? null
          : { accountIndex: clients.dev.accountIndex, contracts: clients.dev.contracts },
    }));
}

/** Hardhat's development account that holds TestUSD on each embedded chain for wallets and x402 clients. */
export const demoPayerAccountIndex = 3;

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
    const funding =
      source.kind === "embedded"
        ? await fundFromMint(deps.db, deps.ledger, source, customer)
        : await fundFromMintOnce(deps.db, deps.ledger, source, customer);
    const payer = source.kind === "embedded" ? await fundPayer(deps.db, deps.ledger, source) : null;
    const payeeIndex = source.kind === "embedded" ? 2 : 1;
    const payee = mnemonicToAccount(hardhatMnemonic, { addressIndex: payeeIndex }).address;
    chains.push({
      rail: source.rail,
      chainId: source.chainId,
      payee,
      funding,
      payer,
      hotWallet: source.walletClient.account.address,
      contracts: source.contracts,
      dev: source.dev,
    });
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
): Promise<DemoFunding> {
  const clearing = await clearingOf(db, source.rail);
  const [clearingAccount] = await ledger.lookupAccounts([clearing]);
  if (clearingAccount === undefined || clearingAccount.debitsPosted > 0n) return "minted before";
  const hash = await mint(source, source.walletClient.account.address, demoFundingUsdc);
  await creditMint(db, ledger, source, { clearing, customer, hash });
  return "minted";
}

/**
 * On a chain reached over JSON-RPC: the same, once per database — the mint signed and kept (evm_dev_chains)
 * before it is sent, then credited; a start after a crash anywhere between sends that transaction again if the
 * node lacks it and credits it (the same ledger id: nothing twice), never a second mint. A kept mint the node
 * lacks whose nonce another transaction has taken can never be mined: unless the ledger has its funding (a node
 * started afresh since it was mined), a mint signed now replaces it. Where TestUSD's mint is not open to the hot
 * wallet, nothing.
 */
async function fundFromMintOnce(
  db: Db,
  ledger: Ledger,
  source: DemoChainSource,
  customer: AccountRecord,
): Promise<DemoFunding> {
  const clearing = await clearingOf(db, source.rail);
  const wallet = source.walletClient.account.address;
  const record = await readDevChainRecord(db, source.chainId);
  if (record?.demoMintTx != null) {
    const kept = { hash: record.demoMintTx, raw: record.demoMintRaw };
    if ((await resendIfLost(source, kept)) !== "stale") {
      await creditMint(db, ledger, source, { clearing, customer, hash: kept.hash });
      return "minted before";
    }
    // Never to be mined: credited (mined on the node before it was started afresh), it stays the demo's funding;
    // else it funded nothing, and a mint signed now takes its place in the record.
    if (await mintCredited(ledger, kept.hash)) return "minted before";
  }
  const token = { token: source.token, wallet, amount: demoFundingUsdc };
  if (!(await canMint(source.publicClient, token))) return "not mintable";
  const signed = await signMint(source, wallet, demoFundingUsdc);
  await recordDemoMint(db, { chainId: source.chainId, wallet, txHash: signed.hash, raw: signed.raw });
  await source.publicClient.sendRawTransaction({ serializedTransaction: signed.raw });
  await creditMint(db, ledger, source, { clearing, customer, hash: signed.hash });
  return "minted";
}

/** The mint to `to`, signed by the hot wallet and not sent: its raw transaction and its hash. */
async function signMint(
  source: DemoChainSource,
  to: Address,
  amount: bigint,
): Promise<{ raw: Hex; hash: Hex }> {
  const { walletClient } = source;
  const request = await walletClient.prepareTransactionRequest({
    to: source.token,
    data: encodeFunctionData({ abi: testUsdAbi, functionName: "mint", args: [to, amount] }),
  });
  const raw = await walletClient.signTransaction(request as never);
  return { raw, hash: keccak256(raw) };
}

/**
 * The kept mint on the node: there already (mined or pending); sent again when the node lacks it (the start before
 * stopped before sending it); or stale — lacking, and its nonce below the count of its wallet's mined transactions,
 * taken by another transaction (sent by the wallet meanwhile, or on a node started afresh), so it can never be
 * mined and sending it would be refused (nonce too low).
 */
async function resendIfLost(
  source: DemoChainSource,
  mint: { hash: Hex; raw: Hex | null },
): Promise<"on chain" | "resent" | "stale"> {
  try {
    await source.publicClient.getTransaction({ hash: mint.hash });
    return "on chain";
  } catch (error) {
    if (!(error instanceof TransactionNotFoundError)) throw error;
  }
  if (mint.raw === null)
    throw new DemoSetupError("the demo mint kept in this database is not on the chain: use a new database", {
      details: mint.hash,
    });
  const { nonce } = parseTransaction(mint.raw);
  const from = await recoverTransactionAddress({ serializedTransaction: mint.raw as TransactionSerialized });
  const mined = await source.publicClient.getTransactionCount({ address: from, blockTag: "latest" });
  if (nonce !== undefined && nonce < mined) return "stale";
  await source.publicClient.sendRawTransaction({ serializedTransaction: mint.raw });
  return "resent";
}

/** Whether the demo funding of the mint `hash` is in the ledger. */
async function mintCredited(ledger: Ledger, hash: Hex): Promise<boolean> {
  const found = await ledger.lookupTransfers([derivedLedgerId(hash, "funding")]);
  return found.length > 0;
}

async function clearingOf(db: Db, rail: string): Promise<bigint> {
  const clearing = await getClearingAccount(db, { rail, asset: assets.USDC });
  if (clearing === null) throw new DemoSetupError(`the ${rail} clearing account is missing`);
  return clearing.ledgerAccountId;
}

async function mint(source: DemoChainSource, to: Address, amount: bigint): Promise<Hex> {
  const hash = await source.walletClient.writeContract({
    address: source.token,
    abi: testUsdAbi,
    functionName: "mint",
    args: [to, amount],
  });
  const receipt = await source.publicClient.waitForTransactionReceipt({ hash });
  if (receipt.status !== "success") throw new DemoSetupError("the demo mint failed", { details: hash });
  return hash;
}

/**
 * The gas the hot wallet paid for a demo mint, booked as the rail's fee out of its ETH clearing account, as every
 * transaction of the wallet's is (once: its id is the transaction's). The mints are sent beside the rail's send
 * journal, which the send-gas pass follows, so nothing else books them: the ETH clearing account would stay above the
 * wallet's balance by their gas (GET /v1/rails).
 */
async function bookMintGas(
  db: Db,
  ledger: Ledger,
  source: DemoChainSource,
  receipt: { transactionHash: Hex; gasUsed: bigint; effectiveGasPrice: bigint },
): Promise<void> {
  const gas = gasPaid(receipt);
  await bookRailGas(
    { db, ledger, accounts: createAccountCache({ sql: db }, accountCacheDefaults) },
    {
      rail: source.rail,
      gas,
      id: chainTransactionLedgerId(source.chainId, receipt.transactionHash, "demo-mint-gas"),
      evidence: {
        rail: source.rail,
        reference: receipt.transactionHash,
        detail: { kind: "demo_mint_gas", wei: gas.detail.wei ?? "0" },
      },
      label: `the gas of the demo mint ${receipt.transactionHash}`,
    },
  );
}

/** The mint (its Transfer log the evidence) credited to the customer against the rail's clearing account. */
async function creditMint(
  db: Db,
  ledger: Ledger,
  source: DemoChainSource,
  params: { clearing: bigint; customer: AccountRecord; hash: Hex },
): Promise<void> {
  const { rail } = source;
  const receipt = await source.publicClient.waitForTransactionReceipt({ hash: params.hash });
  const [log] = parseEventLogs({ abi: testUsdAbi, eventName: "Transfer", logs: receipt.logs });
  if (receipt.status !== "success" || log === undefined)
    throw new DemoSetupError("the demo mint failed", { details: params.hash });
  await bookMintGas(db, ledger, source, receipt);
  const funded = await credit(
    ledger,
    {
      debitAccountId: params.clearing,
      creditAccountId: params.customer.ledgerAccountId,
      amount: demoFundingUsdc,
      ledger: assets.USDC.ledger,
      code: transferCodes.payments.funding,
    },
    {
      id: derivedLedgerId(params.hash, "funding"),
      evidence: {
        rail,
        reference: `${params.hash}:${log.logIndex}`,
        detail: { chainId: String(source.chainId), blockNumber: receipt.blockNumber.toString() },
      },
      label: `the demo funding on ${rail}`,
    },
  );
  if (funded === "conflict")
    throw new DemoSetupError("the ledger refused the demo funding", {
      details: "a different funding has its id",
    });
}

/** 1,000 TestUSD minted to the payer on an embedded chain (new at every start): not in the ledger, it is the payer's. */
async function fundPayer(db: Db, ledger: Ledger, source: DemoChainSource): Promise<DemoPayer> {
  // One derivation from the mnemonic (its seed is the costly part): the key, and the address from it.
  const privateKey = developmentAccountKey(demoPayerAccountIndex);
  const account = privateKeyToAccount(privateKey);
  const receipt = await source.publicClient.waitForTransactionReceipt({
    hash: await mint(source, account.address, demoFundingUsdc),
  });
  await bookMintGas(db, ledger, source, receipt);
  return {
    address: account.address,
    privateKey,
    accountIndex: demoPayerAccountIndex,
    balance: demoFundingUsdc,
  };
}
