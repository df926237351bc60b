// The hot wallet's key rotated while a paywall's x402 payment, signed to the old wallet, was still owed to its payer:
// the gateway that comes back with the new key (its x402 payTo the new wallet) serves the same payment sent again once
// it is mined, judging a transfer by the wallet the payment's invoice was bound with (evm_deposits.auth_to, evm
// migration 0023) rather than by the hot wallet of now. Before, one whose own transaction reverted and whose copy,
// mined by someone else, paid the old wallet read as not spent yet for good (402 pending: the payer, charged, never
// served), and an authorization refused before sending, then mined by someone else, read as paying nobody of ours.
// A payment our own transaction spent was served before too (its AuthorizationUsed is enough): kept here as a guard.
import { decodePaymentResponseHeader, x402HTTPClient } from "@x402/fetch";
import Fastify, { type FastifyInstance } from "fastify";
import { type Address, createWalletClient, custom, type Hex, keccak256, stringToHex } from "viem";
import { type PrivateKeyAccount, privateKeyToAccount } from "viem/accounts";
import { baseSepolia } from "viem/chains";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { wrapFetchWithPayment } from "x402-fetch";
import { testUsdAbi } from "../../adapters/evm/index.ts";
import { assets, silentLogger } from "../../core/index.ts";
import {
  createPaywallService,
  type PaywallCheck,
  type PaywallService,
  switchyardPaywall,
} from "../../gateway/paywall/index.ts";
import type { X402Chain } from "../../gateway/x402/chains.ts";
import { createX402Deps, createX402Scheme } from "../../gateway/x402/index.ts";
import { boundTo, unsentSpender } from "../../gateway/x402/spends.ts";
import {
  type Gateway,
  mintedPayer,
  officialX402Client,
  payerWithGas,
  revertedX402Payment,
  signatureOver,
  startGateway,
  submitCopiedAuthorization,
} from "./support.ts";

let gw: Gateway;
/** The hot wallet before the rotation: the gateway's own, the `to` every payment below is signed to. */
let oldWallet: Address;
/** The wallet the key was rotated to: an address only (nothing below is sent from it). */
const rotatedWallet = privateKeyToAccount(
  keccak256(stringToHex("paywall rotation test: the new key")),
).address;
/** x402's chain as the gateway started with the rotated key reads it: the same token and node, another hot wallet. */
let rotatedChain: X402Chain;

/** x402's chain of `rail` on `embedded` as the gateway restarted with the rotated key reads it. */
const rotatedChainOf = (rail: string, embedded: Gateway["chain"]): X402Chain => ({
  rail,
  chainId: embedded.chain.id,
  publicClient: embedded.publicClient,
  token: embedded.contracts.testUsd,
  asset: assets.USDC,
  hotWallet: rotatedWallet,
  receiptTimeoutMs: 30_000,
});

/** The paywall services rotatedPaywalls built, closed before their gateway is. */
const rotatedServices: PaywallService[] = [];

/**
 * The demo tenant's paywalls of `of` as the gateway restarted with the rotated key checks them: on the same database,
 * x402 paid to `chain`'s hot wallet.
 */
function rotatedPaywalls(of: Gateway, chain: X402Chain): PaywallCheck {
  const x402 = createX402Deps({
    db: of.app.db,
    settlement: of.app.settlement,
    chains: [chain],
    logger: silentLogger,
  });
  const service = createPaywallService({
    sql: of.app.db,
    schemes: [createX402Scheme(x402)],
    rates: of.app.rates,
    logger: silentLogger,
  });
  rotatedServices.push(service);
  return service.forTenant(of.app.demo!.tenantId);
}

/** A shop serving `resources` behind `paywall`, calling `serving` each time a route runs; and its address. */
async function shopOf(
  paywall: PaywallCheck,
  resources: readonly string[],
  serving: (resource: string) => void | Promise<void>,
) {
  const shop = Fastify();
  await shop.register(switchyardPaywall, { paywall });
  for (const resource of resources)
    shop.get(resource, async () => {
      await serving(resource);
      return { report: "the goods" };
    });
  return { shop, base: await shop.listen({ port: 0, host: "127.0.0.1" }) };
}

beforeAll(async () => {
  // A settler that waits 300 ms for its receipt: with the chain not mining, the settlement is in flight.
  gw = await startGateway({}, { x402ReceiptTimeoutMs: 300 });
  oldWallet = gw.chain.walletClient.account.address;
  rotatedChain = rotatedChainOf("evm", gw.chain);
});
/** Closes the paywall services rotatedPaywalls built so far. */
async function closeRotatedServices() {
  await Promise.all(rotatedServices.splice(0).map((service) => service.close()));
}

afterAll(async () => {
  await gw?.setAutomine(true);
  await closeRotatedServices();
  await gw?.app.close();
});

describe("a paywall's x402 payment owed to its payer when the hot wallet's key rotated", () => {
  let before: FastifyInstance;
  let after: FastifyInstance;
  let beforeBase: string;
  let afterBase: string;
  let served = 0;
  /** A payer who spends its balance the next time /rotated-unsent's route runs. */
  let spendWhileServed: PrivateKeyAccount | null = null;
  /** The paywalls' price, 0.01 USD, in the test token's units. */
  const unsentPrice = 10_000n;

  beforeAll(async () => {
    const resources = ["/rotated", "/rotated-copied", "/rotated-unsent"];
    for (const resource of resources) {
      const seller = await gw.merchantAccount(`seller of ${resource}`);
      await gw.x402Paywall(resource, "a report paid while the key rotated", seller.id);
    }
    const serving = async (resource: string) => {
      served += 1;
      if (resource === "/rotated-unsent" && spendWhileServed !== null) {
        // The payer spends its balance while its request is served: the rail's simulation refuses the settlement,
        // before sending it, and leaves the invoice bound to the payer's nonce (an x402_unsent_owed row).
        const payer = spendWhileServed;
        spendWhileServed = null;
        await gw.chain.networkHelpers.setBalance(payer.address, 10n ** 18n);
        await gw.send(payer, {
          address: gw.chain.contracts.testUsd,
          abi: testUsdAbi,
          functionName: "transfer",
          args: [gw.chain.accounts[0]!.address, unsentPrice],
        });
      }
    };
    const own = gw.app.paywalls.forTenant(gw.app.demo!.tenantId);
    ({ shop: before, base: beforeBase } = await shopOf(own, resources, serving));
    ({ shop: after, base: afterBase } = await shopOf(rotatedPaywalls(gw, rotatedChain), resources, serving));
  });
  afterAll(async () => {
    await before?.close();
    await after?.close();
  });

  it("is served by the rotated gateway when sent again once its own transaction is mined, once", async () => {
    const client = new x402HTTPClient(officialX402Client(gw));
    const challenge = await fetch(`${beforeBase}/rotated`);
    expect(challenge.status).toBe(402);
    const required = client.getPaymentRequiredResponse(
      (name) => challenge.headers.get(name),
      await challenge.json(),
    );
    expect(required.accepts[0]!.payTo.toLowerCase()).toBe(oldWallet.toLowerCase());
    const header = client.encodePaymentSignatureHeader(await client.createPaymentPayload(required));
    // Settled while the chain mines nothing: the payer hears 402 with the outcome open, the request owed.
    await gw.setAutomine(false);
    try {
      expect((await fetch(`${beforeBase}/rotated`, { headers: header })).status).toBe(402);
    } finally {
      await gw.chain.publicClient.request({ method: "evm_mine" as never, params: [] as never });
      await gw.setAutomine(true);
    }
    expect(served).toBe(1); // the route ran; its answer was not sent

    // The rotated gateway asks payment to the new wallet…
    const fresh = await fetch(`${afterBase}/rotated`);
    expect(fresh.status).toBe(402);
    const freshRequired = client.getPaymentRequiredResponse(
      (name) => fresh.headers.get(name),
      await fresh.json(),
    );
    expect(freshRequired.accepts[0]!.payTo.toLowerCase()).toBe(rotatedWallet.toLowerCase());
    // …and serves the payment owed, signed to the old one and mined to it. Before: 402 unexpected_settle_error, "has
    // not spent this payment's authorization yet", for good.
    const again = await fetch(`${afterBase}/rotated`, { headers: header });
    expect(again.status, await again.clone().text()).toBe(200);
    expect(await again.json()).toEqual({ report: "the goods" });
    expect(served).toBe(2);
    // Once.
    expect((await fetch(`${afterBase}/rotated`, { headers: header })).status).toBe(402);
    expect(served).toBe(2);
  });

  it("is served by the rotated gateway when ours reverted and someone else's copy paid the old wallet, once", async () => {
    const price = 10_000n;
    const payer = await payerWithGas(gw, "paywall rotation test: a payer whose settlement reverted", price);
    const servedBefore = served;
    // The gateway's transaction sent while the chain mines nothing; the payer moves its balance away at a higher fee,
    // mined first in the same block: ours reverts without spending the authorization (given back after).
    const { answer, header, signed } = await revertedX402Payment(
      gw,
      beforeBase,
      "/rotated-copied",
      payer,
      price,
    );
    expect(answer.status).toBe(402);
    // Someone who saw the signed transfer mines it: the money reaches the old wallet.
    expect(signed.authorization.to.toLowerCase()).toBe(oldWallet.toLowerCase());
    const copyTx = await submitCopiedAuthorization(gw, gw.chain.contracts.testUsd, signed);
    expect((await gw.chain.publicClient.waitForTransactionReceipt({ hash: copyTx })).status).toBe("success");
    // Sent again to the gateway with the new key: served, naming the copy. Before: 402 unexpected_settle_error
    // ("has not spent this payment's authorization yet"), the copy's transfer to the old wallet read as another's.
    const again = await fetch(`${afterBase}/rotated-copied`, { headers: header });
    expect(again.status, await again.clone().text()).toBe(200);
    expect(served).toBe(servedBefore + 2); // the first answer's route ran, not sent; this one's was
    expect(decodePaymentResponseHeader(again.headers.get("payment-response")!)).toMatchObject({
      success: true,
      transaction: copyTx,
    });
    // Once.
    expect((await fetch(`${afterBase}/rotated-copied`, { headers: header })).status).toBe(402);
    expect(served).toBe(servedBefore + 2);
  });

  it("is served by the rotated gateway when refused before sending, then mined by someone else to the old wallet, once", async () => {
    const seed = "paywall rotation test: a payer refused before sending, end to end";
    const payer = await mintedPayer(gw, seed, unsentPrice);
    const client = new x402HTTPClient(officialX402Client(gw, keccak256(stringToHex(seed))));
    const challenge = await fetch(`${beforeBase}/rotated-unsent`);
    expect(challenge.status).toBe(402);
    const required = client.getPaymentRequiredResponse(
      (name) => challenge.headers.get(name),
      await challenge.json(),
    );
    const header = client.encodePaymentSignatureHeader(await client.createPaymentPayload(required));
    const signed = (
      JSON.parse(Buffer.from(header["PAYMENT-SIGNATURE"]!, "base64").toString()) as {
        payload: Parameters<typeof submitCopiedAuthorization>[2];
      }
    ).payload;
    expect(signed.authorization.to.toLowerCase()).toBe(oldWallet.toLowerCase());
    const servedBefore = served;
    spendWhileServed = payer;
    const refused = await fetch(`${beforeBase}/rotated-unsent`, { headers: header });
    expect(refused.status).toBe(402);
    expect(((await refused.json()) as { error: string }).error).toBe("insufficient_funds");
    expect(served).toBe(servedBefore + 1); // the route ran; its answer was not sent
    // Bound with the old wallet, and owed where it was refused.
    const [bound] = await gw.app.db.query<{ auth_to: string | null; owed: boolean }>(
      `SELECT d.auth_to, o.owed FROM x402_unsent_owed o JOIN evm_deposits d ON d.reference = o.invoice_id
       WHERE o.payer = $1 AND o.nonce = $2`,
      [signed.authorization.from.toLowerCase(), signed.authorization.nonce.toLowerCase()],
    );
    expect(bound).toEqual({ auth_to: oldWallet.toLowerCase(), owed: true });

    // Then, with the gateway of the rotated key serving afterBase, someone who saw the signed transfer mines it once
    // the payer holds the price again: the money reaches the old wallet.
    await gw.send(gw.chain.accounts[0]!, {
      address: gw.chain.contracts.testUsd,
      abi: testUsdAbi,
      functionName: "mint",
      args: [payer.address, unsentPrice],
    });
    const copyTx = await submitCopiedAuthorization(gw, gw.chain.contracts.testUsd, signed);
    expect((await gw.chain.publicClient.waitForTransactionReceipt({ hash: copyTx })).status).toBe("success");
    // Mined, not credited yet (the watcher has not read it): sent again to the gateway with the new key, it is
    // pending. Judged by the hot wallet of now instead of the wallet its invoice was bound with (spentNotCredited),
    // it was refused for good (invalid_payment_requirements), and an x402 client would pay again.
    const early = await fetch(`${afterBase}/rotated-unsent`, { headers: header });
    expect(early.status).toBe(402);
    expect(((await early.json()) as { error: string }).error).toBe("unexpected_settle_error");
    expect(served).toBe(servedBefore + 1);
    await gw.rail.depositWatcher()!.catchUp(20);

    // Credited (the watcher read it): sent again to the gateway with the new key, served, naming the copy. With the
    // unsent paths' bound wallet not read (unsentOwedAt, unsentBoundTo: evm_deposits.auth_to), the copy paid nobody
    // of ours and the payer, charged, was refused for good (invalid_payment_requirements).
    const again = await fetch(`${afterBase}/rotated-unsent`, { headers: header });
    expect(again.status, await again.clone().text()).toBe(200);
    expect(await again.json()).toEqual({ report: "the goods" });
    expect(served).toBe(servedBefore + 2);
    expect(decodePaymentResponseHeader(again.headers.get("payment-response")!)).toMatchObject({
      success: true,
      transaction: copyTx,
    });
    // Once.
    expect((await fetch(`${afterBase}/rotated-unsent`, { headers: header })).status).toBe(402);
    expect(served).toBe(servedBefore + 2);
  });
});

describe("a v1 paywall payment (x402-fetch) owed to its payer when the hot wallet's key rotated", () => {
  // x402 v1 names only public networks: the gateway's own chain runs under Base Sepolia's id (as paywall-x402-v1).
  const rail = "evm-base";
  let v1: Gateway;
  let before: FastifyInstance;
  let after: FastifyInstance;
  let beforeBase: string;
  let afterBase: string;
  let served = 0;

  beforeAll(async () => {
    v1 = await startGateway(
      { EVM_CHAINS: JSON.stringify([{ id: rail, chain_id: 84_532 }]) },
      { x402ReceiptTimeoutMs: 300 },
    );
    const created = await v1.call("POST", "/v1/paywalls", {
      resource: "/report",
      description: "a v1 report paid while the key rotated",
      price: { amount: "0.01", asset: "USD" },
      offers: [{ scheme: "x402", rail }],
      accounts: [v1.app.demo!.merchant.id],
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const serving = () => {
      served += 1;
    };
    const own = v1.app.paywalls.forTenant(v1.app.demo!.tenantId);
    ({ shop: before, base: beforeBase } = await shopOf(own, ["/report"], serving));
    const rotated = rotatedPaywalls(v1, rotatedChainOf(rail, v1.app.chains.get(rail)!));
    ({ shop: after, base: afterBase } = await shopOf(rotated, ["/report"], serving));
  });
  afterAll(async () => {
    await before?.close();
    await after?.close();
    await closeRotatedServices();
    await v1?.app.close();
  });

  it("is served by the rotated gateway when the same X-PAYMENT is sent again once mined, once", async () => {
    const embedded = v1.app.chains.get(rail)!;
    const demoChain = v1.app.demo!.chains.find((chain) => chain.rail === rail)!;
    const wallet = createWalletClient({
      account: privateKeyToAccount(demoChain.payer!.privateKey),
      chain: baseSepolia,
      transport: custom(embedded.publicClient),
    });
    const sent: Headers[] = [];
    const recording: typeof fetch = async (input, init) => {
      sent.push(new Headers(init?.headers));
      return fetch(input, init);
    };
    const automine = (on: boolean) =>
      embedded.publicClient.request({ method: "evm_setAutomine" as never, params: [on] as never });
    // Paid while the chain mines nothing: the settlement is in flight, the payer hears 402, the request owed.
    await automine(false);
    try {
      const paid = await wrapFetchWithPayment(recording, wallet as never)(`${beforeBase}/report`);
      expect(paid.status).toBe(402);
    } finally {
      await embedded.publicClient.request({ method: "evm_mine" as never, params: [] as never });
      await automine(true);
    }
    expect(served).toBe(1); // the route ran; its answer was not sent
    const payment = sent.at(-1)!.get("x-payment")!;
    expect(payment).not.toBeNull();
    const signedTo = (
      JSON.parse(Buffer.from(payment, "base64").toString()) as {
        payload: { authorization: { to: string } };
      }
    ).payload.authorization.to;
    expect(signedTo.toLowerCase()).toBe(embedded.walletClient.account.address.toLowerCase());

    // The rotated gateway asks v1 payments to the new wallet, and serves the one owed, signed to the old. Before:
    // 402 invalid_exact_evm_payload_recipient_mismatch, for good.
    const asked = (await (await fetch(`${afterBase}/report`)).json()) as { accepts: { payTo: string }[] };
    expect(asked.accepts[0]!.payTo.toLowerCase()).toBe(rotatedWallet.toLowerCase());
    const again = await fetch(`${afterBase}/report`, { headers: { "X-PAYMENT": payment } });
    expect(again.status, await again.clone().text()).toBe(200);
    expect(served).toBe(2);
    // Once: sent a third time, nothing is owed, and it is refused as signed to another wallet.
    const replay = await fetch(`${afterBase}/report`, { headers: { "X-PAYMENT": payment } });
    expect(replay.status).toBe(402);
    expect(((await replay.json()) as { error: string }).error).toBe(
      "invalid_exact_evm_payload_recipient_mismatch",
    );
    expect(served).toBe(2);
  });
});

describe("the transfer of an authorization refused before sending, judged after the key rotated", () => {
  it("is this authorization's payment when it paid the wallet its invoice was bound with, and not otherwise", async () => {
    const payer = await mintedPayer(gw, "paywall rotation test: a payer refused before sending", 10_000n);
    const latest = await gw.chain.publicClient.getBlock({ blockTag: "latest" });
    const authorization = {
      from: payer.address,
      to: oldWallet,
      value: 10_000n,
      validAfter: 0n,
      validBefore: latest.timestamp + 3_600n,
      nonce: keccak256(stringToHex(`rotation unsent ${Date.now()}`)),
    };
    const signature = await signatureOver(
      payer,
      { chainId: gw.chain.chain.id, token: gw.chain.contracts.testUsd },
      {
        ...authorization,
        value: authorization.value.toString(),
        validAfter: authorization.validAfter.toString(),
        validBefore: authorization.validBefore.toString(),
      },
    );
    // Mined by someone who held it (the rail had refused it before sending): the money reached the old wallet.
    const txHash = await submitCopiedAuthorization(gw, gw.chain.contracts.testUsd, {
      authorization,
      signature,
    });
    expect((await gw.chain.publicClient.waitForTransactionReceipt({ hash: txHash })).status).toBe("success");

    const bound = { invoiceId: "inv_bound_before_rotation", txHash, boundTo: oldWallet.toLowerCase() as Hex };
    const found = await unsentSpender(rotatedChain, [bound], authorization, silentLogger);
    // Before: judged by the hot wallet of now, the transfer paid nobody of ours (spending null), and the payer,
    // charged, was refused as a nonce already used.
    expect(found).toEqual({ spending: { invoiceId: bound.invoiceId, txHash }, unread: null, gone: false });
    // A binding that recorded no wallet (before evm migration 0023) is read as the hot wallet of now: not this one.
    const unrecorded = await unsentSpender(
      rotatedChain,
      [{ ...bound, boundTo: null }],
      authorization,
      silentLogger,
    );
    expect(unrecorded.spending).toBeNull();
    // Nor is an invoice bound with another wallet paid by a transfer to the old one.
    const elsewhere = await unsentSpender(
      rotatedChain,
      [{ ...bound, boundTo: rotatedWallet.toLowerCase() as Hex }],
      authorization,
      silentLogger,
    );
    expect(elsewhere.spending).toBeNull();
  });

  it("searches by the first bound wallet its invoices name, the hot wallet of now when none does", () => {
    const old = oldWallet.toLowerCase() as Hex;
    expect(boundTo(rotatedChain, [{ boundTo: null }, { boundTo: old }])).toBe(old);
    expect(boundTo(rotatedChain, [{ boundTo: null }])).toBe(rotatedWallet);
    expect(boundTo(rotatedChain, [])).toBe(rotatedWallet);
  });
});
