// The payer SDK (client/pay) against the official x402 servers on Hardhat's chain: @x402/express's
// paymentMiddleware (v2) and x402-express (v1), both settling through the official facilitator logic
// (@x402/core x402Facilitator + @x402/evm's exact scheme) over a viem wallet on the chain, on TestUSD's
// EIP-3009 transferWithAuthorization. The same suite runs with a viem account and with an ethers v6 signer.
import type { AddressInfo } from "node:net";
import { x402Facilitator } from "@x402/core/facilitator";
import { toFacilitatorEvmSigner } from "@x402/evm";
import { registerExactEvmScheme } from "@x402/evm/exact/facilitator";
import { ExactEvmScheme as ExactEvmServerScheme } from "@x402/evm/exact/server";
import { paymentMiddleware, x402ResourceServer } from "@x402/express";
import { Wallet } from "ethers";
import express from "express";
import { type Account, type Address, createWalletClient, custom, nonceManager, publicActions } from "viem";
import { generatePrivateKey, mnemonicToAccount, privateKeyToAccount } from "viem/accounts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { paymentMiddleware as paymentMiddlewareV1 } from "x402-express";
import { testUsdDefaults } from "../../adapters/evm/deploy.ts";
import { type EmbeddedChain, hardhatMnemonic, startEmbeddedChain } from "../../adapters/evm/dev-chain.ts";
import { testUsdAbi } from "../../adapters/evm/index.ts";
import {
  AmountOverLimitError,
  BudgetExceededError,
  createBudget,
  type EvmPayer,
  ethersPayer,
  NoAcceptableOfferError,
  type PaymentRecord,
  PaymentRefusedError,
  viemPayer,
  type WrapFetchOptions,
  wrapFetch,
  x402AssetId,
} from "../../client/pay/index.ts";

const price = 10_000n; // 0.01 TestUSD
const v1ChainId = 84_532; // base-sepolia: x402 v1 names its networks, so the v1 chain runs under that id

type Site = { url: string; served: () => number; close(): Promise<void> };

function listen(app: express.Express): Promise<{ url: string; close(): Promise<void> }> {
  return new Promise((resolve) => {
    const server = app.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      resolve({
        url: `http://127.0.0.1:${port}`,
        close: () => new Promise<void>((done) => server.close(() => done())),
      });
    });
  });
}

function facilitatorOn(chain: EmbeddedChain, network: `eip155:${number}`) {
  // The facilitator's own development account (index 7), with a nonce manager: settlements of concurrent
  // requests are sent concurrently and must not take the same nonce.
  const client = createWalletClient({
    account: mnemonicToAccount(hardhatMnemonic, { addressIndex: 7, nonceManager }),
    chain: chain.chain,
    transport: custom(chain.provider),
  }).extend(publicActions);
  const facilitator = new x402Facilitator();
  registerExactEvmScheme(facilitator, { signer: toFacilitatorEvmSigner(client as never), networks: network });
  return facilitator;
}

/** A v2 resource server: @x402/express with the facilitator in process. */
async function startV2Site(chain: EmbeddedChain, payTo: Address): Promise<Site> {
  const network = `eip155:${chain.chain.id}` as const;
  const facilitator = facilitatorOn(chain, network);
  const resourceServer = new x402ResourceServer({
    verify: (payload, requirements) => facilitator.verify(payload, requirements),
    settle: (payload, requirements) => facilitator.settle(payload, requirements),
    getSupported: async () => facilitator.getSupported() as never,
  }).register(network, new ExactEvmServerScheme());
  let served = 0;
  const app = express();
  app.use(
    paymentMiddleware(
      {
        "GET /report": {
          accepts: {
            scheme: "exact",
            network,
            payTo,
            price: {
              amount: price.toString(),
              asset: chain.contracts.testUsd,
              extra: { name: testUsdDefaults.name, version: testUsdDefaults.version },
            },
            maxTimeoutSeconds: 120,
          },
          description: "a report",
          mimeType: "application/json",
        },
      },
      resourceServer,
    ),
  );
  app.get("/report", (_request, response) => {
    served += 1;
    response.json({ report: "paid content" });
  });
  const site = await listen(app);
  return { ...site, served: () => served };
}

/** A v1 resource server: x402-express, its facilitator over HTTP (the same official logic). */
async function startV1Site(
  chain: EmbeddedChain,
  payTo: Address,
): Promise<Site & { closeFacilitator(): Promise<void> }> {
  const facilitator = facilitatorOn(chain, `eip155:${chain.chain.id}`);
  const facilitatorApp = express();
  facilitatorApp.use(express.json());
  facilitatorApp.post("/verify", async (request, response) => {
    response.json(await facilitator.verify(request.body.paymentPayload, request.body.paymentRequirements));
  });
  facilitatorApp.post("/settle", async (request, response) => {
    response.json(await facilitator.settle(request.body.paymentPayload, request.body.paymentRequirements));
  });
  facilitatorApp.get("/supported", (_request, response) => {
    response.json(facilitator.getSupported());
  });
  const facilitatorSite = await listen(facilitatorApp);
  let served = 0;
  const app = express();
  app.use(
    paymentMiddlewareV1(
      payTo,
      {
        "GET /report": {
          price: {
            amount: price.toString(),
            asset: {
              address: chain.contracts.testUsd,
              decimals: 6,
              eip712: { name: testUsdDefaults.name, version: testUsdDefaults.version },
            },
          },
          network: "base-sepolia",
          config: { description: "a report", mimeType: "application/json", maxTimeoutSeconds: 120 },
        },
      },
      { url: facilitatorSite.url as `${string}://${string}` },
    ),
  );
  app.get("/report", (_request, response) => {
    served += 1;
    response.json({ report: "paid content" });
  });
  const site = await listen(app);
  return { ...site, served: () => served, closeFacilitator: facilitatorSite.close };
}

let chain: EmbeddedChain;
let v1Chain: EmbeddedChain;
let v2: Site;
let v1: Site & { closeFacilitator(): Promise<void> };
let payTo: Address;

beforeAll(async () => {
  [chain, v1Chain] = await Promise.all([startEmbeddedChain(), startEmbeddedChain({ chainId: v1ChainId })]);
  payTo = chain.accounts[8]!.address;
  v2 = await startV2Site(chain, payTo);
  v1 = await startV1Site(v1Chain, payTo);
});

afterAll(async () => {
  await v2?.close();
  await v1?.close();
  await v1?.closeFacilitator();
  await chain?.close();
  await v1Chain?.close();
});

async function mint(on: EmbeddedChain, to: Address, amount: bigint) {
  const hash = await on.walletClient.writeContract({
    address: on.contracts.testUsd,
    abi: testUsdAbi,
    functionName: "mint",
    args: [to, amount],
  });
  await on.publicClient.waitForTransactionReceipt({ hash });
}

function balanceOf(on: EmbeddedChain, address: Address): Promise<bigint> {
  return on.publicClient.readContract({
    address: on.contracts.testUsd,
    abi: testUsdAbi,
    functionName: "balanceOf",
    args: [address],
  });
}

/** A fresh payer (its own key, so tests do not share balances or nonces), funded with `funds` on both chains. */
type PayerKind = "viem account" | "ethers signer";
async function newPayer(kind: PayerKind, funds: bigint): Promise<{ address: Address; payer: EvmPayer }> {
  const key = generatePrivateKey();
  const account: Account = privateKeyToAccount(key);
  await Promise.all([mint(chain, account.address, funds), mint(v1Chain, account.address, funds)]);
  if (kind === "viem account")
    return { address: account.address, payer: viemPayer(privateKeyToAccount(key)) };
  // An ethers Wallet without a provider: signing typed data is local.
  return { address: account.address, payer: ethersPayer(new Wallet(key)) };
}

function v2Rule(amountMax = price) {
  return {
    scheme: "x402" as const,
    network: `eip155:${chain.chain.id}`,
    asset: chain.contracts.testUsd,
    amountMax,
  };
}
const v2Asset = () => x402AssetId(`eip155:${chain.chain.id}`, chain.contracts.testUsd);

async function caught(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}

describe.each<PayerKind>(["viem account", "ethers signer"])("wrapFetch paying x402 with a %s", (kind) => {
  it("pays a v2 402 once: the resource served, the seller credited, the receipt read", async () => {
    const { address, payer } = await newPayer(kind, 1_000_000n);
    const payments: PaymentRecord[] = [];
    const before = await balanceOf(chain, payTo);
    const paidFetch = wrapFetch(fetch, {
      accept: [v2Rule()],
      evm: payer,
      onPayment: (payment) => payments.push(payment),
    });
    const servedBefore = v2.served();
    const response = await paidFetch(`${v2.url}/report`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ report: "paid content" });
    expect(v2.served()).toBe(servedBefore + 1);
    expect(await balanceOf(chain, payTo)).toBe(before + price);
    expect(await balanceOf(chain, address)).toBe(1_000_000n - price);
    expect(payments).toHaveLength(1);
    expect(payments[0]).toMatchObject({
      scheme: "x402",
      version: 2,
      asset: v2Asset(),
      amount: price,
      status: 200,
    });
    expect(payments[0]!.receipt).toMatchObject({ success: true, network: `eip155:${chain.chain.id}` });
    expect(payments[0]!.receipt!.transaction).toMatch(/^0x[0-9a-f]{64}$/);
  });

  it("pays a v1 402 (x402-express, X-PAYMENT) under the v1 network's name", async () => {
    const { address, payer } = await newPayer(kind, 1_000_000n);
    const payments: PaymentRecord[] = [];
    const paidFetch = wrapFetch(fetch, {
      accept: [
        {
          scheme: "x402",
          network: `eip155:${v1ChainId}`,
          asset: v1Chain.contracts.testUsd,
          amountMax: price,
        },
      ],
      evm: payer,
      onPayment: (payment) => payments.push(payment),
    });
    const servedBefore = v1.served();
    const response = await paidFetch(`${v1.url}/report`);
    expect(response.status).toBe(200);
    expect(v1.served()).toBe(servedBefore + 1);
    expect(await balanceOf(v1Chain, address)).toBe(1_000_000n - price);
    expect(payments[0]).toMatchObject({ scheme: "x402", version: 1, amount: price });
    expect(payments[0]!.receipt).toMatchObject({ success: true });
  });

  it("a budget of exactly the price pays once, then refuses the next request without signing", async () => {
    const { address, payer } = await newPayer(kind, 1_000_000n);
    const budget = createBudget({ [v2Asset()]: price });
    const paidFetch = wrapFetch(fetch, { accept: [v2Rule()], evm: payer, budget });
    expect((await paidFetch(`${v2.url}/report`)).status).toBe(200);
    expect(budget.remaining(v2Asset())).toBe(0n);
    const servedBefore = v2.served();
    const refused = await caught(paidFetch(`${v2.url}/report`));
    expect(refused).toBeInstanceOf(BudgetExceededError);
    expect(refused).toMatchObject({
      code: "budget_exceeded",
      amount: price,
      remaining: 0n,
      asset: v2Asset(),
    });
    expect(v2.served()).toBe(servedBefore);
    expect(await balanceOf(chain, address)).toBe(1_000_000n - price);
  });

  it("concurrent requests under one budget of two prices: exactly two pay, the others are refused", async () => {
    const { address, payer } = await newPayer(kind, 1_000_000n);
    const budget = createBudget({ [v2Asset()]: 2n * price });
    const paidFetch = wrapFetch(fetch, { accept: [v2Rule()], evm: payer, budget });
    const servedBefore = v2.served();
    const outcomes = await Promise.allSettled(Array.from({ length: 5 }, () => paidFetch(`${v2.url}/report`)));
    const paid = outcomes.filter((o) => o.status === "fulfilled" && o.value.status === 200);
    const refused = outcomes.filter(
      (o) => o.status === "rejected" && o.reason instanceof BudgetExceededError,
    );
    expect(paid).toHaveLength(2);
    expect(refused).toHaveLength(3);
    expect(v2.served()).toBe(servedBefore + 2);
    expect(budget.remaining(v2Asset())).toBe(0n);
    expect(await balanceOf(chain, address)).toBe(1_000_000n - 2n * price);
  });

  it("a price over the per-request limit is refused before signing; nothing is spent", async () => {
    const { address, payer } = await newPayer(kind, 1_000_000n);
    const budget = createBudget({ [v2Asset()]: 1_000_000n });
    const paidFetch = wrapFetch(fetch, { accept: [v2Rule(price - 1n)], evm: payer, budget });
    const refused = await caught(paidFetch(`${v2.url}/report`));
    expect(refused).toBeInstanceOf(AmountOverLimitError);
    expect(refused).toMatchObject({ code: "amount_over_limit", amount: price, amountMax: price - 1n });
    expect(budget.remaining(v2Asset())).toBe(1_000_000n);
    expect(await balanceOf(chain, address)).toBe(1_000_000n);
  });

  it("an offer on a network or asset the policy does not name is not paid", async () => {
    const { payer } = await newPayer(kind, 1_000_000n);
    const otherAsset: WrapFetchOptions["accept"] = [{ ...v2Rule(), asset: chain.contracts.splitter }];
    const refused = await caught(wrapFetch(fetch, { accept: otherAsset, evm: payer })(`${v2.url}/report`));
    expect(refused).toBeInstanceOf(NoAcceptableOfferError);
    expect(refused).toMatchObject({ code: "no_acceptable_offer" });
    expect((refused as NoAcceptableOfferError).offered[0]).toContain(`eip155:${chain.chain.id}`);
    // v2 only accepted: the v1 site's offer is not paid.
    const v2Only = wrapFetch(fetch, {
      accept: [
        {
          scheme: "x402",
          network: `eip155:${v1ChainId}`,
          asset: v1Chain.contracts.testUsd,
          amountMax: price,
          versions: [2],
        },
      ],
      evm: payer,
    });
    expect(await caught(v2Only(`${v1.url}/report`))).toBeInstanceOf(NoAcceptableOfferError);
  });

  it("a payer without funds: the server refuses, the error carries its reason, nothing is retried", async () => {
    const { payer } = await newPayer(kind, 0n);
    const servedBefore = v2.served();
    const refused = await caught(wrapFetch(fetch, { accept: [v2Rule()], evm: payer })(`${v2.url}/report`));
    expect(refused).toBeInstanceOf(PaymentRefusedError);
    expect(refused).toMatchObject({ code: "payment_refused", status: 402 });
    expect((refused as PaymentRefusedError).reason).toMatch(/insufficient|balance|simulation/i);
    expect(v2.served()).toBe(servedBefore);
  });

  it("a request that already carries a payment header is sent as it is and its 402 returned, not paid again", async () => {
    const { address, payer } = await newPayer(kind, 1_000_000n);
    const paidFetch = wrapFetch(fetch, { accept: [v2Rule()], evm: payer });
    const response = await paidFetch(`${v2.url}/report`, {
      headers: { "payment-signature": "bm90IGEgcGF5bWVudA==" },
    });
    expect(response.status).toBe(402);
    expect(await balanceOf(chain, address)).toBe(1_000_000n);
  });
});
