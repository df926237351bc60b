// An x402 payment whose settlement is still in flight when the paywall must answer (its transaction not mined within
// the settler's wait): the payer hears 402 with the outcome unknown, the route's answer is not sent. Once the
// transaction is mined, the same payment sent again is served — once — with the receipt of that transaction, and
// nothing more is settled or credited. Before, the same payment was refused as a nonce already used, for good: the
// payer was charged and the merchant credited, and the payer never got what it paid for.
import { inspect } from "node:util";
import { decodePaymentResponseHeader, x402HTTPClient } from "@x402/fetch";
import Fastify, { type FastifyInstance } from "fastify";
import { keccak256, parseSignature, stringToHex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testUsdAbi } from "../../adapters/evm/index.ts";
import { transferWithAuthorizationTypedData } from "../../adapters/evm/typed-data.ts";
import {
  PaymentOutcomeUnknownError,
  PaymentRefusedError,
  viemPayer,
  wrapFetch,
} from "../../client/pay/index.ts";
import { remotePaywall, switchyardPaywall } from "../../gateway/paywall/index.ts";
import { sendGasPassOnce } from "../../gateway/settlement/index.ts";
import {
  anotherProcessRail,
  type Gateway,
  officialX402Client,
  signatureOver,
  startGateway,
} from "./support.ts";

/** The paying SDK's fetch with the demo payer's key, taking TestUSD up to the paywalls' price. */
function demoPayerFetch(gw: Gateway) {
  return wrapFetch(fetch, {
    accept: [
      {
        scheme: "x402",
        network: `eip155:${gw.chain.chain.id}`,
        asset: gw.chain.contracts.testUsd,
        amountMax: 10_000n,
      },
    ],
    evm: viemPayer(privateKeyToAccount(gw.app.demo!.chains[0]!.payer!.privateKey)),
  });
}

describe("an x402 payment settled after the paywall answered", () => {
  let gw: Gateway;
  let shop: FastifyInstance;
  let base: string;
  let served = 0;
  /**
   * Each test's paywall, by resource, crediting a seller of its own: a payment one test leaves to be credited (the
   * watcher books it when it is mined) would otherwise move the balance the next one measures.
   */
  const sellers = new Map<string, string>();
  const paywallIds = new Map<string, string>();

  beforeAll(async () => {
    // A settler that waits 300 ms for its receipt: with the chain not mining, the settlement is in flight.
    gw = await startGateway({}, { x402ReceiptTimeoutMs: 300 });
    const owed = ["/owed", "/owed-replaced", "/owed-spent", "/owed-sdk", "/owed-repriced"];
    for (const resource of owed) {
      const seller = await gw.merchantAccount(`seller of ${resource}`);
      sellers.set(resource, seller.id);
      const paywall = await gw.x402Paywall(resource, "a report paid while the chain was slow", seller.id);
      paywallIds.set(resource, paywall.id);
    }
    // Another paywall of the same account and price as /owed.
    await gw.x402Paywall("/elsewhere", "a report paid while the chain was slow", sellers.get("/owed"));
    shop = Fastify();
    await shop.register(switchyardPaywall, { paywall: gw.app.paywalls.forTenant(gw.app.demo!.tenantId) });
    for (const resource of owed)
      shop.get(resource, async () => {
        served += 1;
        return { report: "the goods" };
      });
    shop.get("/elsewhere", async () => {
      served += 1;
      return { report: "other goods at the same price" };
    });
    base = await shop.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => {
    await setAutomine(true);
    await shop?.close();
    await gw?.app.close();
  });

  const setAutomine = (on: boolean) => gw?.setAutomine(on);
  /** Runs `sending` while the chain mines nothing; then one block is mined (what it sent) and mining goes on. */
  async function minedAfter<T>(sending: () => Promise<T>): Promise<T> {
    await setAutomine(false);
    try {
      return await sending();
    } finally {
      await gw.chain.publicClient.request({ method: "evm_mine" as never, params: [] as never });
      await setAutomine(true);
    }
  }
  /** The posted balance, in USDC minor units, of the seller the paywall at `resource` credits. */
  const sellerPosted = async (resource: string) =>
    BigInt(
      ((await gw.call("GET", `/v1/accounts/${sellers.get(resource)}/balance`)).body.posted as string).replace(
        ".",
        "",
      ),
    );

  /** The demo payer's signed payment of the paywall at `path` (a fresh authorization each time). */
  async function paymentFor(path: string) {
    const payer = gw.app.demo!.chains[0]!.payer!;
    const client = new x402HTTPClient(officialX402Client(gw));
    const challenge = await fetch(`${base}${path}`);
    expect(challenge.status).toBe(402);
    const required = client.getPaymentRequiredResponse(
      (name) => challenge.headers.get(name),
      await challenge.json(),
    );
    return {
      payer,
      header: client.encodePaymentSignatureHeader(await client.createPaymentPayload(required)),
    };
  }

  it("serves the same payment sent again once it is mined, once, and settles nothing more", async () => {
    const { payer, header } = await paymentFor("/owed");
    const before = await sellerPosted("/owed");

    await minedAfter(async () => {
      const pending = await fetch(`${base}/owed`, { headers: header });
      // Not mined in time: 402, its outcome unknown, and what to do about it.
      expect(pending.status).toBe(402);
      const body = (await pending.json()) as { error: string; message: string };
      expect(body.error).toBe("unexpected_settle_error");
      expect(body.message).toMatch(/send the same payment again once it is mined/);
      // Sent again before it is mined: still not served.
      expect((await fetch(`${base}/owed`, { headers: header })).status).toBe(402);
    });
    const servedBefore = served;
    // Owed where it was paid, not at another paywall of the same account and price.
    const elsewhere = await fetch(`${base}/elsewhere`, { headers: header });
    expect(elsewhere.status).toBe(402);
    expect(served).toBe(servedBefore);
    const again = await fetch(`${base}/owed`, { headers: header });
    expect(again.status, await again.clone().text()).toBe(200);
    expect(await again.json()).toEqual({ report: "the goods" });
    expect(served).toBe(servedBefore + 1);
    const receipt = decodePaymentResponseHeader(again.headers.get("payment-response")!);
    expect(receipt).toMatchObject({ success: true, network: `eip155:${gw.chain.chain.id}` });
    const [row] = await gw.app.db.query<{ tx_hash: string }>(
      "SELECT tx_hash FROM x402_authorizations WHERE payer = $1 ORDER BY created_at DESC LIMIT 1",
      [payer.address.toLowerCase()],
    );
    expect(receipt.transaction).toBe(row!.tx_hash);
    // Once: the third time is refused as used, and the merchant was credited the price once.
    const third = await fetch(`${base}/owed`, { headers: header });
    expect(third.status).toBe(402);
    expect(served).toBe(servedBefore + 1);
    await expect.poll(async () => (await sellerPosted("/owed")) - before, { timeout: 15_000 }).toBe(10_000n);
  });

  it("serves it though the paywall's price and account changed since it was paid (it was refused as not the resource's requirements)", async () => {
    const { header } = await paymentFor("/owed-repriced");
    await minedAfter(async () => {
      expect((await fetch(`${base}/owed-repriced`, { headers: header })).status).toBe(402);
    });
    const other = await gw.merchantAccount("the new seller of /owed-repriced");
    const changed = await gw.app.server.inject({
      method: "PATCH",
      url: `/v1/paywalls/${paywallIds.get("/owed-repriced")}`,
      headers: { authorization: `Bearer ${gw.key}`, "content-type": "application/json" },
      payload: JSON.stringify({ price: { amount: "0.02", asset: "USD" }, accounts: [other.id] }),
    });
    expect(changed.statusCode, changed.body).toBe(200);
    // The shop's paywall asks the new price (its paywalls are read again within a second).
    await expect
      .poll(
        async () => {
          const required = (await fetch(`${base}/owed-repriced`)).headers.get("payment-required")!;
          return (
            JSON.parse(Buffer.from(required, "base64").toString("utf8")) as { accepts: { amount: string }[] }
          ).accepts[0]!.amount;
        },
        { timeout: 5_000 },
      )
      .toBe("20000");
    const servedBefore = served;
    // The payer, nonce and value of a spent authorization are public in the token's logs: the same terms signed by
    // another are not the payer's payment, and take nothing owed (its terms are not the resource's now, so the paywall
    // verifies nothing else of it).
    const sent = JSON.parse(Buffer.from(header["PAYMENT-SIGNATURE"]!, "base64").toString()) as {
      payload: {
        signature: `0x${string}`;
        authorization: {
          from: `0x${string}`;
          to: `0x${string}`;
          value: string;
          validAfter: string;
          validBefore: string;
          nonce: `0x${string}`;
        };
      };
    };
    const a = sent.payload.authorization;
    const stranger = privateKeyToAccount(keccak256(stringToHex("a stranger watching the hot wallet")));
    const forged = await signatureOver(
      stranger,
      { chainId: gw.chain.chain.id, token: gw.chain.contracts.testUsd },
      a,
    );
    const made = { ...sent, payload: { ...sent.payload, signature: forged } };
    const taken = await fetch(`${base}/owed-repriced`, {
      headers: { "PAYMENT-SIGNATURE": Buffer.from(JSON.stringify(made)).toString("base64") },
    });
    expect(taken.status).toBe(402);
    expect(served).toBe(servedBefore);
    const again = await fetch(`${base}/owed-repriced`, { headers: header });
    expect(again.status, await again.clone().text()).toBe(200);
    expect(served).toBe(servedBefore + 1);
    // Once, and a new payment pays the new price.
    expect((await fetch(`${base}/owed-repriced`, { headers: header })).status).toBe(402);
    expect(served).toBe(servedBefore + 1);
  });

  it("serves it when a fee bump's replacement of the transaction sent was mined instead, naming that one", async () => {
    const { payer, header } = await paymentFor("/owed-replaced");
    const replacement = await minedAfter(async () => {
      expect((await fetch(`${base}/owed-replaced`, { headers: header })).status).toBe(402);
      const [row] = await gw.app.db.query<{ tx_hash: `0x${string}` }>(
        "SELECT tx_hash FROM x402_authorizations WHERE payer = $1 ORDER BY created_at DESC LIMIT 1",
        [payer.address.toLowerCase()],
      );
      // The send-gas pass bumps the fee of what has waited long enough (here: at once).
      await sendGasPassOnce(
        gw.app.settlement,
        anotherProcessRail(gw, { replaceAfterMs: 0 }),
        gw.chain.chain.id,
      );
      const [send] = await gw.app.db.query<{ tx_hash: `0x${string}` }>(
        "SELECT s.tx_hash FROM evm_sends s JOIN evm_sends_replaced r USING (attempt_id) WHERE r.tx_hash = $1",
        [row!.tx_hash],
      );
      expect(send!.tx_hash).not.toBe(row!.tx_hash);
      return send!.tx_hash;
    });
    const again = await fetch(`${base}/owed-replaced`, { headers: header });
    expect(again.status, await again.clone().text()).toBe(200);
    expect(decodePaymentResponseHeader(again.headers.get("payment-response")!).transaction).toBe(replacement);
  });

  it("is not served on another's spend of the payer's nonce: only a transaction of ours that paid the hot wallet", async () => {
    const { payer, header } = await paymentFor("/owed-spent");
    const account = privateKeyToAccount(payer.privateKey);
    await minedAfter(async () => {
      expect((await fetch(`${base}/owed-spent`, { headers: header })).status).toBe(402);
      // The payer spends its own nonce first, to itself, at a higher fee: the gateway's transaction then reverts.
      const sent = JSON.parse(Buffer.from(header["PAYMENT-SIGNATURE"]!, "base64").toString()) as {
        payload: { authorization: { nonce: `0x${string}` } };
      };
      const nonce = sent.payload.authorization.nonce;
      const authorization = {
        from: account.address,
        to: account.address,
        value: 1n,
        validAfter: 0n,
        validBefore: 2_000_000_000n,
        nonce,
      };
      const signature = await account.signTypedData(
        transferWithAuthorizationTypedData(
          {
            name: "USD Coin",
            version: "2",
            chainId: gw.chain.chain.id,
            verifyingContract: gw.chain.contracts.testUsd,
          },
          authorization,
        ),
      );
      const { v, r, s } = parseSignature(signature);
      await gw.chain.walletClient.writeContract({
        account: gw.chain.accounts[1]!,
        chain: gw.chain.chain,
        address: gw.chain.contracts.testUsd,
        abi: testUsdAbi,
        functionName: "transferWithAuthorization",
        args: [
          authorization.from,
          authorization.to,
          authorization.value,
          authorization.validAfter,
          authorization.validBefore,
          nonce,
          Number(v),
          r,
          s,
        ],
        gas: 150_000n,
        maxFeePerGas: 500_000_000_000n,
        maxPriorityFeePerGas: 100_000_000_000n,
      });
    });
    const servedBefore = served;
    const again = await fetch(`${base}/owed-spent`, { headers: header });
    expect(again.status).toBe(402);
    expect(served).toBe(servedBefore);
  });

  it("the paying SDK's refusal carries the payment's header: sent again once mined, it is served and pays nothing more", async () => {
    const paidFetch = demoPayerFetch(gw);
    const before = await sellerPosted("/owed-sdk");
    const refused = await minedAfter(() => paidFetch(`${base}/owed-sdk`).catch((error: unknown) => error));
    expect(refused).toBeInstanceOf(PaymentRefusedError);
    const { reason, payment } = refused as PaymentRefusedError;
    expect(reason).toBe("unexpected_settle_error");
    expect(payment?.name.toLowerCase()).toBe("payment-signature");
    // A bearer credential of the payer's money: in no message, JSON or inspection of the error.
    expect((refused as Error).message).not.toContain(payment!.value);
    expect(JSON.stringify(refused)).not.toContain(payment!.value);
    expect(inspect(refused, { depth: 5 })).not.toContain(payment!.value);
    // A request that carries a payment is sent as it is: served, and nothing is signed or paid again.
    const again = await paidFetch(`${base}/owed-sdk`, { headers: { [payment!.name]: payment!.value } });
    expect(again.status, await again.clone().text()).toBe(200);
    await expect
      .poll(async () => (await sellerPosted("/owed-sdk")) - before, { timeout: 15_000 })
      .toBe(10_000n);
  });
});

describe.each(["in process", "remote"] as const)(
  "an x402 payment settled after the payer went away (%s)",
  (where) => {
    let gw: Gateway;
    let shop: FastifyInstance;
    let base: string;
    let served = 0;

    beforeAll(async () => {
      // The settler's default wait for its receipt (a minute): the settlement succeeds once the block is mined.
      gw = await startGateway();
      await gw.x402Paywall("/gone", "a report whose buyer left while it settled");
      shop = Fastify();
      const paywall =
        where === "remote"
          ? remotePaywall({
              baseUrl: await gw.app.server.listen({ port: 0, host: "127.0.0.1" }),
              apiKey: gw.key,
            })
          : gw.app.paywalls.forTenant(gw.app.demo!.tenantId);
      await shop.register(switchyardPaywall, { paywall });
      shop.get("/gone", async () => {
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

    it("is served when the same payment is sent again: settled while nobody was there to read the answer (its retry was refused as a nonce used)", async () => {
      const client = new x402HTTPClient(officialX402Client(gw));
      const paymentHeader = async () => {
        const challenge = await fetch(`${base}/gone`);
        const required = client.getPaymentRequiredResponse(
          (name) => challenge.headers.get(name),
          await challenge.json(),
        );
        return client.encodePaymentSignatureHeader(await client.createPaymentPayload(required));
      };
      const payer = gw.app.demo!.chains[0]!.payer!.address.toLowerCase();
      const latest = async () =>
        (
          await gw.app.db.query<{ status: string; tx_hash: string | null; owed_paywall: string | null }>(
            "SELECT status, tx_hash, owed_paywall FROM x402_authorizations WHERE payer = $1 ORDER BY created_at DESC LIMIT 1",
            [payer],
          )
        )[0];
      // An answer delivered leaves nothing owed: the same payment sent again is refused.
      const delivered = await paymentHeader();
      expect((await fetch(`${base}/gone`, { headers: delivered })).status).toBe(200);
      await expect.poll(async () => (await latest())?.status, { timeout: 15_000 }).toBe("settled");
      expect((await latest())?.owed_paywall).toBeNull();
      expect((await fetch(`${base}/gone`, { headers: delivered })).status).toBe(402);
      expect(served).toBe(1);
      served = 0;

      const header = await paymentHeader();
      await gw.setAutomine(false);
      try {
        // The payer gives up while its payment waits to be mined: the handler has answered, the answer is not sent.
        const leaving = new AbortController();
        const request = fetch(`${base}/gone`, { headers: header, signal: leaving.signal }).catch(
          () => "gone",
        );
        await expect.poll(async () => (await latest())?.status, { timeout: 15_000 }).toBe("submitted");
        expect(served).toBe(1);
        leaving.abort();
        expect(await request).toBe("gone");
      } finally {
        await gw.chain.publicClient.request({ method: "evm_mine" as never, params: [] as never });
        await gw.setAutomine(true);
      }
      await expect
        .poll(latest, { timeout: 15_000 })
        .toMatchObject({ status: "settled", owed_paywall: expect.stringMatching(/^pwl_/) });
      const again = await fetch(`${base}/gone`, { headers: header });
      expect(again.status, await again.clone().text()).toBe(200);
      expect(served).toBe(2);
      // Once.
      expect((await fetch(`${base}/gone`, { headers: header })).status).toBe(402);
      expect(served).toBe(2);
    });

    it("the paying SDK's request that got no answer carries the payment: sent again, it is served and nothing more is signed (a new request paid twice)", async () => {
      const paidFetch = demoPayerFetch(gw);
      served = 0;
      const before = await gw.app.db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM x402_authorizations",
      );
      await gw.setAutomine(false);
      let unknown: unknown;
      try {
        const leaving = new AbortController();
        const request = paidFetch(`${base}/gone`, { signal: leaving.signal }).catch(
          (error: unknown) => error,
        );
        await expect.poll(() => served, { timeout: 15_000 }).toBe(1);
        // Its transaction sent (mined only by the block below: a transaction sent after it would wait for the next).
        await expect
          .poll(
            async () =>
              (
                await gw.app.db.query<{ status: string }>(
                  "SELECT status FROM x402_authorizations ORDER BY created_at DESC LIMIT 1",
                )
              )[0]?.status,
            { timeout: 15_000 },
          )
          .toBe("submitted");
        leaving.abort();
        unknown = await request;
      } finally {
        await gw.chain.publicClient.request({ method: "evm_mine" as never, params: [] as never });
        await gw.setAutomine(true);
      }
      expect(unknown).toBeInstanceOf(PaymentOutcomeUnknownError);
      const { payment } = unknown as PaymentOutcomeUnknownError;
      expect(payment?.name.toLowerCase()).toBe("payment-signature");
      // A bearer credential of the payer's money: in no message, JSON or inspection of the error.
      expect(JSON.stringify(unknown)).not.toContain(payment!.value);
      expect(inspect(unknown, { depth: 5 })).not.toContain(payment!.value);
      await expect
        .poll(
          async () =>
            (
              await gw.app.db.query<{ owed_paywall: string | null }>(
                "SELECT owed_paywall FROM x402_authorizations ORDER BY created_at DESC LIMIT 1",
              )
            )[0]?.owed_paywall ?? null,
          { timeout: 15_000 },
        )
        .not.toBeNull();
      const again = await paidFetch(`${base}/gone`, { headers: { [payment!.name]: payment!.value } });
      expect(again.status, await again.clone().text()).toBe(200);
      expect(served).toBe(2);
      // One authorization signed and claimed for both requests.
      const after = await gw.app.db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM x402_authorizations",
      );
      expect(after[0]!.n - before[0]!.n).toBe(1);
    });
  },
);
