// A payee reachable on every kind of rail, paid through the HTTP API with the real parts up: two embedded Hardhat
// chains (an "L1" at 25 gwei and an "L2" at 0.01 gwei), the regtest Lightning network and stripe-mock (fiat). The
// router ranks every rail in one cost unit (USD micro-units), the cheapest wins in its amount band, a winner that
// fails falls back to the next rail under the same payment, paying once, and every fee is booked as the rail
// reported it.
import { authenticatedLndGrpc, getPayments } from "lightning";
import { erc20Abi, numberToHex } from "viem";
import { afterAll, beforeAll, describe, expect, inject, it, onTestFinished } from "vitest";
import { assets, divCeil } from "../../core/index.ts";
import { createAccount, getTenantAccount } from "../../gateway/accounts/index.ts";
import { embeddedL1L2 } from "../../gateway/app/config.ts";
import { priceFeedOwner } from "../../gateway/app/dev-chain.ts";
import type { App } from "../../gateway/app.ts";
import { derivedLedgerId } from "../../gateway/ids/index.ts";
import { selectLedgerTotals } from "../../gateway/ledger/index.ts";
import { devPriceFeedSpecs, updatePriceFeed } from "../../gateway/rates/index.ts";
import { waitFor } from "../../scripts/lightning/index.ts";
import { signEvent, stripeEvents } from "../fiat/stripe-events.ts";
import { apiClient } from "../support/api.ts";
import { btcAccount, startLightningGateway } from "../support/lightning-gateway.ts";

const cluster = inject("lightningCluster");
const payer = authenticatedLndGrpc(cluster.nodes.payer).lnd;
const gatewayNode = authenticatedLndGrpc(cluster.nodes.gateway).lnd;
let app: App;
let gateway: Awaited<ReturnType<typeof startLightningGateway>>;
let address: `0x${string}`;

const call = (method: "GET" | "POST", url: string, body?: unknown) => apiClient(app)(method, url, body);
const stripeWebhookSecret = "whsec_routing_test_secret";

/** Lightning liquidity the ledger knows of: what a BTC account was paid by invoice, $20 at $100,000 a BTC. */
const lightningFundingBtc = "0.0002";

beforeAll(async () => {
  gateway = await startLightningGateway(cluster, {
    ...embeddedL1L2,
    STRIPE_SECRET_KEY: "sk_test_123",
    STRIPE_WEBHOOK_SECRETS: stripeWebhookSecret,
    STRIPE_API_HOST: "127.0.0.1",
    STRIPE_API_PORT: String(inject("stripeMockPort")),
    STRIPE_API_PROTOCOL: "http",
    FIAT_LIQUIDITY: "not_limited",
  });
  app = gateway.app;
  address = app.demo!.payee!;
  await waitFor(
    "every rail available",
    async () =>
      ["evm", "evm-l2", "lightning", "fiat"].every((id) => app.rails.get(id)?.snapshot().available === true)
        ? true
        : undefined,
    { timeoutMs: 60_000 },
  );
  await btcAccount(app, { id: "acct_routing_btc", funding: { amount: lightningFundingBtc, payer } });
});
afterAll(async () => {
  await gateway?.close();
});

async function payee(methods: unknown[]): Promise<string> {
  const created = await call("POST", "/v1/payees", { name: "Everywhere", methods });
  expect(created.status).toBe(201);
  return created.body.id;
}

const everywhere = () => [
  { type: "evm_address", address },
  { type: "lightning_node", pubkey: cluster.nodes.payee.publicKey },
  { type: "stripe_account", account: "acct_1Nv0FGQ9RKHgCVdK" },
];

const pay$ = (payeeId: string, amount: string, extra: Record<string, unknown> = {}) =>
  call("POST", "/v1/payments", {
    amount,
    asset: "USDC",
    source: { account: "acct_demo_customer" },
    destination: { type: "payee", payee: payeeId },
    ...extra,
  });

const micro = (decimal: string) => BigInt(decimal.replace(".", ""));

async function customerLedger() {
  const record = await getTenantAccount(app.db, { tenantId: app.demo!.tenantId, id: "acct_demo_customer" });
  const [account] = await app.ledger.lookupAccounts([record!.ledgerAccountId]);
  return account!;
}

/**
 * Every feed the gateway deployed answers its start price again, in a round of the L1's time now: what a test that
 * aged the L1 leaves for the tests after it (Lightning needs BTC's rate).
 */
async function freshFeeds(payeeId: string): Promise<void> {
  const owner = priceFeedOwner(app.chains.get("evm")!);
  for (const spec of devPriceFeedSpecs)
    await updatePriceFeed(owner, { feed: app.priceFeeds![spec.assetCode]!, usd: spec.usd });
  await app.rates.refresh();
  expect(app.rates.rateStatus("BTC")).toBe("fresh");
  await waitFor(
    "the market's snapshot to see the fresh rate",
    async () => ((await lightningExcluded(payeeId)) ? undefined : true),
    { timeoutMs: 10_000 },
  );
}

/** A quote to the payee, and whether it leaves Lightning out for a stale rate. */
async function lightningExcluded(payeeId: string) {
  const answer = await call("POST", "/v1/quotes", {
    amount: "0.50",
    asset: "USDC",
    destination: { type: "payee", payee: payeeId },
  });
  const excluded = answer.body.route?.excluded as { rail: string; reason: string }[] | undefined;
  return excluded?.some((e) => e.rail === "lightning" && e.reason === "stale_rate") ? answer : undefined;
}

describe("a payee on every rail", () => {
  it("a small payment goes by Lightning (no gas, a 0.2 % spread), and the route shows all four rails with their costs", async () => {
    const id = await payee(everywhere());
    const response = await pay$(id, "0.50");
    expect(response.status).toBe(201);
    expect(response.body).toMatchObject({ status: "succeeded", rail: "lightning" });
    const candidates = response.body.route.candidates as {
      rail: string;
      destination: Record<string, string>;
      cost: { fee_usd: string; total_usd: string };
    }[];
    // Every rail of the payee is priced, cheapest first, each paying the method it reaches.
    expect(candidates.map((c) => c.rail).sort()).toEqual(["evm", "evm-l2", "fiat", "lightning"]);
    for (let i = 1; i < candidates.length; i++)
      expect(micro(candidates[i - 1]!.cost.total_usd)).toBeLessThanOrEqual(
        micro(candidates[i]!.cost.total_usd),
      );
    expect(candidates.find((c) => c.rail === "fiat")?.destination).toEqual({
      type: "stripe_account",
      account: "acct_1Nv0FGQ9RKHgCVdK",
    });
    // Stripe's 30 ¢ + 2.9 % and either chain's gas cost more than the spread on 50 ¢ (0.1 ¢); the L1 costs most.
    expect(micro(candidates[0]!.cost.fee_usd)).toBeLessThan(micro(candidates[1]!.cost.fee_usd));
    expect(candidates[1]!.rail).toBe("evm-l2");
    expect(candidates.at(-1)!.rail).toBe("evm");
    const [attempt] = response.body.attempts;
    expect(attempt.rail).toBe("lightning");
  });

  it("a large payment goes on the L2: its gas is worth less than the spread, and is booked as the receipt says", async () => {
    const id = await payee(everywhere());
    const before = await customerLedger();
    const response = await pay$(id, "200");
    expect(response.status).toBe(201);
    expect(response.body).toMatchObject({ status: "succeeded", rail: "evm-l2" });
    const [attempt] = response.body.attempts;
    expect(attempt.evidence.chain_id).toBe(31338);
    const l2 = app.chains.get("evm-l2")!;
    const receipt = await l2.publicClient.getTransactionReceipt({ hash: attempt.evidence.tx_hash });
    const gwei = divCeil(receipt.gasUsed * receipt.effectiveGasPrice, 1_000_000_000n);
    const [gas] = await app.ledger.lookupTransfers([derivedLedgerId(attempt.id, "native-fee-paid")]);
    expect(gas?.amount).toBe(gwei);
    const [charged] = await app.ledger.lookupTransfers([derivedLedgerId(attempt.id, "fee-post")]);
    const after = await customerLedger();
    expect(after.debitsPosted - before.debitsPosted).toBe(200_000_000n + charged!.amount);
  });

  it("a winner that cannot pay falls back across kinds under the same payment, which pays once", async () => {
    // $60 with the L2 denied: Lightning is ranked first (its spread, 12 ¢) but its clearing account holds only
    // what was paid in ($20); Stripe next (30 ¢ + 2.9 %), but nothing was ever paid in on Stripe's side; then the
    // L1 at 25 gwei pays. The ledger refuses each reservation it cannot cover, so nothing is sent on the way.
    const id = await payee(everywhere());
    const l1 = app.chains.get("evm")!;
    const balanceOf = () =>
      l1.publicClient.readContract({
        address: l1.contracts.testUsd,
        abi: erc20Abi,
        functionName: "balanceOf",
        args: [address],
      });
    const tokensBefore = await balanceOf();
    const paymentsBefore = (await getPayments({ lnd: gatewayNode })).payments.length;
    const response = await pay$(id, "60", { constraints: { rails: { deny: ["evm-l2"] } } });
    expect(response.status).toBe(201);
    expect(response.body.route.candidates.map((c: { rail: string }) => c.rail)).toEqual([
      "lightning",
      "fiat",
      "evm",
    ]);
    expect(response.body.rail).toBe("evm");
    expect(
      response.body.attempts.map((a: { rail: string; status: string; failure: { code: string } | null }) => [
        a.rail,
        a.status,
        a.failure?.code ?? null,
      ]),
    ).toEqual([
      ["lightning", "failed", "insufficient_liquidity"],
      ["fiat", "failed", "insufficient_liquidity"],
      ["evm", "succeeded", null],
    ]);
    expect((await getPayments({ lnd: gatewayNode })).payments.length).toBe(paymentsBefore);
    expect((await balanceOf()) - tokensBefore).toBe(60_000_000n);
  });

  it("a payee behind a fee-charging hop is paid by Lightning with LND's routing fee booked", async () => {
    const id = await payee([{ type: "lightning_node", pubkey: cluster.nodes.remote.publicKey }]);
    const response = await pay$(id, "1");
    expect(response.status).toBe(201);
    expect(response.body).toMatchObject({ status: "succeeded", rail: "lightning" });
    const [attempt] = response.body.attempts;
    const fee = micro(attempt.fee); // msat, as LND reported it
    expect(fee).toBeGreaterThan(0n);
    const [paid] = await app.ledger.lookupTransfers([derivedLedgerId(attempt.id, "fee-paid")]);
    expect(paid?.amount).toBe(fee);
    const lndPayment = (await getPayments({ lnd: gatewayNode })).payments.find(
      (p) => p.id === attempt.evidence.payment_hash,
    );
    expect(BigInt(lndPayment!.fee_mtokens)).toBe(fee);
  });

  it("a quote is used once, and a payment on it keeps its own constraints", async () => {
    const id = await payee(everywhere());
    const quote = await call("POST", "/v1/quotes", {
      amount: "0.50",
      asset: "USDC",
      destination: { type: "payee", payee: id },
      ttl_seconds: 60,
    });
    expect(quote.status).toBe(201);
    const contradicted = await pay$(id, "0.50", {
      quote: quote.body.id,
      constraints: { rails: { deny: ["lightning", "evm", "evm-l2", "fiat"] } },
    });
    expect(contradicted.status).toBe(422);
    expect(contradicted.body.error.code).toBe("quote_constraints_unmet");
    const first = await pay$(id, "0.50", { quote: quote.body.id });
    expect(first.status).toBe(201);
    const second = await pay$(id, "0.50", { quote: quote.body.id });
    expect(second.status).toBe(409);
    expect(second.body.error.code).toBe("quote_used");
  });

  it("a USD balance pays a Stripe connected account (its fee as Stripe's balance transaction says) and a USDC address", async () => {
    // USD arrives first: a card top-up, credited when Stripe's signed webhook says the PaymentIntent succeeded.
    await createAccount(
      { sql: app.db, ledger: app.ledger },
      {
        tenantId: app.demo!.tenantId,
        kind: "customer",
        asset: assets.USD,
        name: "usd",
        id: "acct_routing_usd",
      },
    );
    const topUp = await call("POST", "/v1/invoices", {
      account: "acct_routing_usd",
      amount: "25.00",
      asset: "USD",
      description: "top-up",
    });
    expect(topUp.status).toBe(201);
    const event = stripeEvents.intentSucceeded("evt_routing_topup", {
      intentId: topUp.body.instructions.payment_intent,
      amount: 2500,
      paymentId: topUp.body.id,
      attemptId: "invoice",
      reference: topUp.body.id,
    });
    const { payload, header } = signEvent(event, {
      secret: stripeWebhookSecret,
      timestamp: Math.floor(Date.now() / 1000),
    });
    const delivered = await app.server.inject({
      method: "POST",
      url: "/v1/webhooks/stripe",
      headers: { "content-type": "application/json", "stripe-signature": header },
      payload,
    });
    expect(delivered.statusCode).toBe(200);

    const stripeOnly = await payee([{ type: "stripe_account", account: "acct_1Nv0FGQ9RKHgCVdK" }]);
    const paid = await call("POST", "/v1/payments", {
      amount: "10.00",
      asset: "USD",
      source: { account: "acct_routing_usd" },
      destination: { type: "payee", payee: stripeOnly },
    });
    expect(paid.status).toBe(201);
    expect(paid.body).toMatchObject({ status: "succeeded", rail: "fiat" });
    const [attempt] = paid.body.attempts;
    // What Stripe took for the transfer: its balance transaction's fee, read back from stripe-mock.
    const transfer = await fetch(
      `http://127.0.0.1:${inject("stripeMockPort")}/v1/transfers/${attempt.evidence.psp_id}?expand[]=balance_transaction`,
      { headers: { authorization: "Bearer sk_test_123" } },
    ).then((response) => response.json() as Promise<{ balance_transaction: { fee: number } }>);
    expect(micro(attempt.fee)).toBe(BigInt(transfer.balance_transaction.fee));

    // The same USD balance pays a USDC address: through the FX desk, on the L2.
    const tokensBefore = await app.chains.get("evm-l2")!.publicClient.readContract({
      address: app.chains.get("evm-l2")!.contracts.testUsd,
      abi: erc20Abi,
      functionName: "balanceOf",
      args: [address],
    });
    const crossed = await call("POST", "/v1/payments", {
      amount: "5.00",
      asset: "USD",
      source: { account: "acct_routing_usd" },
      destination: { type: "evm_address", address },
    });
    expect(crossed.status).toBe(201);
    expect(crossed.body).toMatchObject({ status: "succeeded", rail: "evm-l2" });
    expect(crossed.body.attempts[0]).toMatchObject({ asset: "USDC", amount: "5.000000" });
    const tokensAfter = await app.chains.get("evm-l2")!.publicClient.readContract({
      address: app.chains.get("evm-l2")!.contracts.testUsd,
      abi: erc20Abi,
      functionName: "balanceOf",
      args: [address],
    });
    expect(tokensAfter - tokensBefore).toBe(5_000_000n);
    const reserveId = derivedLedgerId(crossed.body.attempts[0].id, "reserve").toString();
    const [spread] = await app.ledger.lookupTransfers([derivedLedgerId(reserveId, "fx-spread")]);
    expect(spread?.amount).toBe(1n); // 0.2 % of $5, one cent
  });

  it("a stale BTC rate excludes Lightning as stale_rate, and the other rails still price the payment", async () => {
    const id = await payee(everywhere());
    // The BTC feed lives on the L1 chain: two hours on that chain make its last answer older than RATES_MAX_AGE_MS.
    const l1 = app.chains.get("evm")!;
    await l1.provider.request({ method: "evm_increaseTime", params: [numberToHex(2 * 60 * 60)] } as never);
    await l1.provider.request({ method: "evm_mine", params: [] } as never);
    onTestFinished(() => freshFeeds(id));
    await app.rates.refresh();
    expect(app.rates.rateStatus("BTC")).toBe("stale");
    const quote = await waitFor("the market's snapshot to see the stale rate", () => lightningExcluded(id), {
      timeoutMs: 10_000,
    });
    expect(quote.status).toBe(201);
    expect(quote.body.rail).toBe("evm-l2");
  });

  // After all of it, in whatever order: every ledger balances.
  afterAll(async () => {
    for (const totals of await selectLedgerTotals(app.db)) {
      expect(totals.debitsPosted).toBe(totals.creditsPosted);
      expect(totals.debitsPending).toBe(totals.creditsPending);
    }
  });
});
