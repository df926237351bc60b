// An x402 payment whose settlement reverted without spending its authorization (here: the payer's balance moved away
// in the same block, ahead of the gateway's transaction). The signed authorization stays valid until its validBefore,
// and it was public in the mempool: anyone holding it may still submit it to the token, the money then comes to the
// hot wallet and the deposit watcher credits the seller's invoice bound to its nonce. Before, the gateway answered the
// revert as final (invalid_transaction_state, the row failed): once someone mined the authorization, the seller was
// credited and the payer, sending the same payment again, was refused as a nonce used — charged and never served.
// Now the payer hears it pending, and the same payment sent again once it is mined is served, once.
import { decodePaymentResponseHeader, x402HTTPClient } from "@x402/fetch";
import Fastify, { type FastifyInstance } from "fastify";
import { createPublicClient, custom, type Hex } from "viem";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { assets, silentLogger } from "../../core/index.ts";
import { switchyardPaywall } from "../../gateway/paywall/index.ts";
import type { X402Chain } from "../../gateway/x402/chains.ts";
import { reconcileX402 } from "../../gateway/x402/reconcile.ts";
import { spenderOfSend } from "../../gateway/x402/spends.ts";
import { owedAt, sentAuthorization } from "../../gateway/x402/store.ts";
import {
  type Gateway,
  officialX402Client,
  payerWithGas,
  revertedX402Payment,
  startGateway,
  submitCopiedAuthorization,
  x402RowOf,
} from "./support.ts";

/** The paywalls' price, in TestUSD's minor units (0.01). */
const price = 10_000n;

describe("an x402 payment whose settlement reverted without spending its authorization", () => {
  let gw: Gateway;
  let shop: FastifyInstance;
  let base: string;
  let served = 0;
  const sellers = new Map<string, string>();

  beforeAll(async () => {
    // The settler's default wait for its receipt: it sees its transaction mined reverted.
    gw = await startGateway();
    for (const resource of [
      "/reverted",
      "/reverted-far",
      "/reverted-lapsed",
      "/reverted-cut",
      "/reverted-reorg",
      "/skewed",
    ]) {
      const seller = await gw.merchantAccount(`seller of ${resource}`);
      sellers.set(resource, seller.id);
      await gw.x402Paywall(resource, "a report whose settlement reverted", seller.id);
    }
    shop = Fastify();
    await shop.register(switchyardPaywall, { paywall: gw.app.paywalls.forTenant(gw.app.demo!.tenantId) });
    for (const resource of sellers.keys())
      shop.get(resource, async () => {
        served += 1;
        return { report: "the goods" };
      });
    base = await shop.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => {
    await gw?.setAutomine(true);
    await shop?.close();
    await gw?.app.close();
  });

  /** The posted balance, in USDC minor units, of the seller the paywall at `resource` credits. */
  const sellerPosted = async (resource: string) =>
    BigInt(
      ((await gw.call("GET", `/v1/accounts/${sellers.get(resource)}/balance`)).body.posted as string).replace(
        ".",
        "",
      ),
    );

  /** A payer of its own (named: the same key every run) holding one price, with ETH to move it itself. */
  const payerHoldingOnePrice = (name: string) =>
    payerWithGas(gw, `x402 reverted settlement payer ${name}`, price);

  /** The payer's x402 row, as the gateway recorded it. */
  const rowOf = (payer: Hex) => x402RowOf(gw, payer);

  /** The payer's payment of the paywall at `path`, its settlement reverted (support.ts revertedX402Payment). */
  const revertedPayment = (path: string, payer: Awaited<ReturnType<typeof payerHoldingOnePrice>>) =>
    revertedX402Payment(gw, base, path, payer, price);

  /** The gateway's chain as x402 names it, read through `publicClient`, its blocks final at `confirmations`. */
  const x402Chain = (publicClient: X402Chain["publicClient"], confirmations?: number): X402Chain => ({
    rail: "evm",
    chainId: gw.chain.chain.id,
    publicClient,
    token: gw.chain.contracts.testUsd,
    asset: assets.USDC,
    hotWallet: gw.chain.walletClient.account.address,
    receiptTimeoutMs: 30_000,
    ...(confirmations === undefined ? {} : { confirmations }),
  });

  /**
   * One pass of reconciliation over the gateway's chain as x402 names it, every `submitted` row however recent; read
   * through `publicClient` when given, the chain's blocks final at `confirmations` (1 when not given).
   */
  const reconcile = (
    publicClient: X402Chain["publicClient"] = gw.chain.publicClient,
    confirmations?: number,
  ) =>
    reconcileX402(
      {
        db: gw.app.db,
        settlement: gw.app.settlement,
        chains: { chains: [x402Chain(publicClient, confirmations)] },
        logger: silentLogger,
      },
      { submittedQuietMs: 0 },
    );

  /** The gateway's chain read through a node that refuses a read of logs spanning more than 2 blocks. */
  const cappedClient = () =>
    createPublicClient({
      chain: gw.chain.chain,
      transport: custom(
        {
          request: (args: { method: string; params?: unknown }) => {
            if (args.method === "eth_getLogs") {
              const [filter] = args.params as { fromBlock: Hex; toBlock: Hex }[];
              if (BigInt(filter!.toBlock) - BigInt(filter!.fromBlock) > 2n)
                throw { code: -32005, message: "query exceeds max block range 2" };
            }
            return gw.chain.provider.request(args as never);
          },
        },
        { retryCount: 0 },
      ),
    });

  it("serves the same payment sent again once someone else mined its authorization, once, and credits the seller once", async () => {
    const payer = await payerHoldingOnePrice("served");
    const before = await sellerPosted("/reverted");
    const { answer, header, signed, ownTx } = await revertedPayment("/reverted", payer);
    expect(answer.status).toBe(402);
    expect(served).toBe(1); // the route ran; its answer was not sent
    // Sent again while nobody has mined it: not served, and answered pending still, so that the payer does not sign a
    // new payment and pay twice (before: invalid_exact_evm_nonce_already_used).
    const early = await fetch(`${base}/reverted`, { headers: header });
    expect(early.status).toBe(402);
    expect(((await early.json()) as { error: string }).error).toBe("unexpected_settle_error");
    // Reconciliation leaves the row while the authorization may still be mined (before: failed at once). Soft: what
    // the payer then gets is the point, below.
    expect.soft(await reconcile()).toMatchObject({ settled: 0, failed: 0 });
    expect.soft(await rowOf(payer.account.address)).toMatchObject({ status: "submitted", tx_hash: ownTx });

    // Someone who saw the signed transfer submits it to the token: the money reaches the hot wallet.
    const copyTx = await submitCopiedAuthorization(gw, gw.chain.contracts.testUsd, signed);
    expect((await gw.chain.publicClient.waitForTransactionReceipt({ hash: copyTx })).status).toBe("success");
    // The seller is credited the price, from the copy…
    await expect
      .poll(async () => (await sellerPosted("/reverted")) - before, { timeout: 15_000 })
      .toBe(price);
    // …and the payer, sending the same payment again, is served.
    const again = await fetch(`${base}/reverted`, { headers: header });
    // Before: 402 invalid_exact_evm_nonce_already_used, while the seller was credited from the copy.
    expect(again.status, await again.clone().text()).toBe(200);
    expect(await again.json()).toEqual({ report: "the goods" });
    expect(served).toBe(2);
    expect(decodePaymentResponseHeader(again.headers.get("payment-response")!)).toMatchObject({
      success: true,
      transaction: copyTx,
    });
    // Once.
    expect((await fetch(`${base}/reverted`, { headers: header })).status).toBe(402);
    expect(served).toBe(2);
    expect(await reconcile()).toMatchObject({ settled: 1, failed: 0 });
    expect(await rowOf(payer.account.address)).toMatchObject({
      status: "settled",
      tx_hash: ownTx,
      spent_tx_hash: copyTx,
    });
    // Credited once: the watcher's later passes, the payer served and the row settled add nothing.
    await gw.chain.networkHelpers.mine(3);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect((await sellerPosted("/reverted")) - before).toBe(price);

    // What the payer heard at first: the outcome open, and what to do about it (before: invalid_transaction_state).
    expect(answer.body.error).toBe("unexpected_settle_error");
    expect(answer.body.message).toMatch(/reverted without spending the authorization/);
    expect(answer.body.message).toMatch(/send the same payment again once it is mined/);
  });

  it("searches for a later copy from the block the last reading found it unused at: a long wait ends settled, not unknown", async () => {
    const payer = await payerHoldingOnePrice("far");
    const { header, signed, ownTx } = await revertedPayment("/reverted-far", payer);
    const ours = (await gw.chain.publicClient.getTransactionReceipt({ hash: ownTx })).blockNumber;
    const unusedBlock = async () =>
      (
        await gw.app.db.query<{ unused_block: string | null }>(
          "SELECT unused_block::text AS unused_block FROM x402_authorizations WHERE payer = $1",
          [payer.account.address.toLowerCase()],
        )
      )[0]?.unused_block;
    // The settler read it unused at ours's block or later, and kept that.
    expect(BigInt((await unusedBlock()) ?? -1)).toBeGreaterThanOrEqual(ours);
    // A while on (200 blocks), a pass still finds it open, and keeps the block it read it unused at.
    await gw.chain.networkHelpers.mine(200);
    expect(await reconcile()).toMatchObject({ settled: 0, failed: 0 });
    expect(BigInt((await unusedBlock()) ?? -1)).toBeGreaterThanOrEqual(ours + 200n);
    // Then someone mines it, and the next pass reads through a node that refuses a read of logs spanning more than 2
    // blocks: it searches from that block on, a few reads. Before: from ours's block back 1,000 and on to the latest,
    // more reads than a search makes, unknown, every pass, for good, and the payer never served.
    const copyTx = await submitCopiedAuthorization(gw, gw.chain.contracts.testUsd, signed);
    expect((await gw.chain.publicClient.waitForTransactionReceipt({ hash: copyTx })).status).toBe("success");
    await gw.chain.networkHelpers.mine(3);
    // What the payer's paths read before reconciliation has (the paywall's owed request, the facilitator's retried
    // settle): the same search, from the row's unused_block to its validBefore. Before: from ours's block back 1,000
    // and on, unknown through such a node, the payer answered pending until reconciliation recorded the copy.
    const chain = x402Chain(cappedClient());
    const terms = { ...signed.authorization, to: chain.hotWallet };
    const sent = (await sentAuthorization(gw.app.db, chain, terms))!;
    expect(await spenderOfSend(chain, ownTx, terms, silentLogger, null, sent.known)).toMatchObject({
      txHash: copyTx,
      copy: true,
    });
    const [owing] = await gw.app.db.query<{ owed_paywall: string; tenant_id: string }>(
      "SELECT owed_paywall, tenant_id FROM x402_authorizations WHERE payer = $1",
      [payer.account.address.toLowerCase()],
    );
    const owed = (await owedAt(gw.app.db, chain, terms, {
      paywallId: owing!.owed_paywall,
      tenantId: owing!.tenant_id,
    }))!;
    expect(
      await spenderOfSend(chain, owed.txHash as Hex, terms, silentLogger, null, owed.known),
    ).toMatchObject({
      txHash: copyTx,
    });
    expect(await reconcile(cappedClient())).toMatchObject({ settled: 1, failed: 0 });
    expect(await rowOf(payer.account.address)).toMatchObject({ status: "settled", spent_tx_hash: copyTx });
    const again = await fetch(`${base}/reverted-far`, { headers: header });
    expect(again.status, await again.clone().text()).toBe(200);
  });

  it("searches for a later copy up to the last block before its validBefore: a copy mined there, long ago, ends settled", async () => {
    const payer = await payerHoldingOnePrice("cut");
    const { header, signed } = await revertedPayment("/reverted-cut", payer);
    expect(await reconcile()).toMatchObject({ settled: 0, failed: 0 });
    // The chain's time goes past the payment's validBefore here, and back after: the payments of the tests after this
    // one are signed for a window from the time of day.
    const snapshot = await gw.chain.networkHelpers.takeSnapshot();
    try {
      // Someone mines it in the last block the token takes it in (its time one second before validBefore)…
      const { validBefore } = signed.authorization;
      await gw.chain.networkHelpers.time.setNextBlockTimestamp(validBefore - 1n);
      const copyTx = await submitCopiedAuthorization(gw, gw.chain.contracts.testUsd, signed);
      const copy = await gw.chain.publicClient.waitForTransactionReceipt({ hash: copyTx });
      expect(copy.status).toBe("success");
      expect((await gw.chain.publicClient.getBlock({ blockNumber: copy.blockNumber })).timestamp).toBe(
        validBefore - 1n,
      );
      // …and the next pass comes 200 blocks past its validBefore, through a node capped at 2 blocks a read of logs:
      // the search ends at the copy's block, a few reads, and finds it (up to the latest: more reads than a search
      // makes, unknown; ending a block short: spent, and the row failed while the copy paid).
      await gw.chain.networkHelpers.mine(200);
      expect(await reconcile(cappedClient())).toMatchObject({ settled: 1, failed: 0 });
      expect(await rowOf(payer.account.address)).toMatchObject({ status: "settled", spent_tx_hash: copyTx });
      const again = await fetch(`${base}/reverted-cut`, { headers: header });
      expect(again.status, await again.clone().text()).toBe(200);
    } finally {
      await snapshot.restore();
    }
  });

  it("keeps the block it found the nonce unused at below the chain's confirmations: a copy a reorganisation mined below the latest read is found", async () => {
    const payer = await payerHoldingOnePrice("reorg");
    const { signed } = await revertedPayment("/reverted-reorg", payer);
    // A pass reads the nonce unused at the latest block, five past the snapshot, on a chain final at 6 confirmations.
    const snapshot = await gw.chain.networkHelpers.takeSnapshot();
    const forked = await gw.chain.publicClient.getBlockNumber();
    await gw.chain.networkHelpers.mine(5);
    expect(await reconcile(undefined, 6)).toMatchObject({ settled: 0, failed: 0 });
    // Those five blocks are reorganised away: on the other branch, someone's copy is mined in one of them (the first,
    // unless the gateway's own passes sent something meanwhile).
    await snapshot.restore();
    const copyTx = await submitCopiedAuthorization(gw, gw.chain.contracts.testUsd, signed);
    const copy = await gw.chain.publicClient.waitForTransactionReceipt({ hash: copyTx });
    expect(copy.status).toBe("success");
    expect(copy.blockNumber).toBeLessThan(forked + 5n);
    await gw.chain.networkHelpers.mine(1);
    // Before: the pass had kept the latest block it read (forked + 5), searched from the block after it, found no
    // copy, and failed the row for good while the copy paid the hot wallet.
    expect(await reconcile(undefined, 6)).toMatchObject({ settled: 1, failed: 0 });
    expect(await rowOf(payer.account.address)).toMatchObject({ status: "settled", spent_tx_hash: copyTx });
  });

  it("takes a payment from an official client whose clock runs five minutes fast", async () => {
    const payer = await payerHoldingOnePrice("skewed");
    const client = new x402HTTPClient(officialX402Client(gw, payer.privateKey));
    const challenge = await fetch(`${base}/skewed`);
    expect(challenge.status).toBe(402);
    const required = client.getPaymentRequiredResponse(
      (name) => challenge.headers.get(name),
      await challenge.json(),
    );
    // Its validBefore is its now + maxTimeoutSeconds, five minutes past ours: within the ten minutes x402's reference
    // clients allow the other way (validAfter = their now - 600). Before: refused past a minute's skew.
    const fast = Date.now() + 300_000;
    const clock = vi.spyOn(Date, "now").mockReturnValue(fast);
    let payload: Awaited<ReturnType<typeof client.createPaymentPayload>>;
    try {
      payload = await client.createPaymentPayload(required);
    } finally {
      clock.mockRestore();
    }
    const servedBefore = served;
    const paid = await fetch(`${base}/skewed`, { headers: client.encodePaymentSignatureHeader(payload) });
    expect(paid.status, await paid.clone().text()).toBe(200);
    expect(served).toBe(servedBefore + 1);
  });

  it("fails it once its window shut unused: never served, nothing credited", async () => {
    const payer = await payerHoldingOnePrice("lapsed");
    const before = await sellerPosted("/reverted-lapsed");
    const servedBefore = served;
    const { answer, header, signed } = await revertedPayment("/reverted-lapsed", payer);
    expect(answer.body.error).toBe("unexpected_settle_error");
    // Past its validBefore on the chain: no one can submit it now.
    await gw.chain.networkHelpers.time.increaseTo(signed.authorization.validBefore + 1n);
    expect(await reconcile()).toMatchObject({ settled: 0, failed: 1 });
    expect(await rowOf(payer.account.address)).toMatchObject({ status: "failed", failure: "reverted" });
    expect((await fetch(`${base}/reverted-lapsed`, { headers: header })).status).toBe(402);
    expect(served).toBe(servedBefore + 1);
    expect((await sellerPosted("/reverted-lapsed")) - before).toBe(0n);
  });
});
