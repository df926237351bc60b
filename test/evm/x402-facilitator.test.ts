// Switchyard as an x402 facilitator on the Hardhat chain: the official resource server (@x402/express's
// paymentMiddleware with an HTTPFacilitatorClient pointed at <gateway>/v1/x402, authenticated by the tenant's key)
// paid by the official client (@x402/fetch + @x402/evm's exact scheme, a viem account holding TestUSD): the resource
// is served once, the tenant's account credited once with the transaction as evidence. Then bad input straight to
// /v1/x402/verify and /settle: each refusal is x402's reason code, nothing sent, nothing credited; one authorization
// settled twice at once pays once.
import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import { HTTPFacilitatorClient } from "@x402/core/server";
import { registerExactEvmScheme } from "@x402/evm/exact/client";
import { ExactEvmScheme } from "@x402/evm/exact/server";
import { paymentMiddleware, x402ResourceServer } from "@x402/express";
import { wrapFetchWithPayment, x402Client } from "@x402/fetch";
import express from "express";
import {
  type Account,
  type Address,
  type Chain,
  createPublicClient,
  custom,
  getAddress,
  type Hex,
  type PublicClient,
  type Transport,
  toHex,
} from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { testUsdAbi } from "../../adapters/evm/index.ts";
import type { Db } from "../../core/db.ts";
import { assets, silentLogger } from "../../core/index.ts";
import { getInvoice } from "../../gateway/settlement/index.ts";
import {
  createX402Deps,
  createX402Scheme,
  facilitatorSettle,
  paymentRequiredV2,
  transferTypedData,
  type X402Settler,
} from "../../gateway/x402/index.ts";
import { claim, record } from "../../gateway/x402/store.ts";
import { transferArgs, vrsOf } from "../../gateway/x402/verify.ts";
import { type Gateway, startGateway, submitCopiedAuthorization } from "./support.ts";

let gw: Gateway;
let gatewayUrl: string;
let hotWallet: Address;
let token: Address;
const domain = { name: "", version: "" };
/** The Hardhat chain's kind's `extra` in GET /v1/x402/supported. */
let supportedExtra: Record<string, unknown> = {};
const price = 10_000n; // 0.01 TestUSD
const payerIndex = 5;
const strangerIndex = 6;
const payer = () => gw.chain.accounts[payerIndex]!;
const stranger = () => gw.chain.accounts[strangerIndex]!;
const network = () => `eip155:${gw.chain.chain.id}`;

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

const authHeaders = () => ({
  authorization: `Bearer ${gw.key}`,
  "switchyard-account": merchant.id,
});

async function merchantBalance(): Promise<bigint> {
  const account = await gw.ledgerAccount(merchant.ledgerAccountId);
  return account.creditsPosted - account.debitsPosted;
}

async function hotWalletNonce(): Promise<number> {
  return gw.chain.publicClient.getTransactionCount({ address: hotWallet, blockTag: "pending" });
}

async function facilitator(path: "verify" | "settle", body: unknown, headers = authHeaders()) {
  const response = await gw.app.server.inject({
    method: "POST",
    url: `/v1/x402/${path}`,
    headers: { ...headers, "content-type": "application/json" },
    payload: JSON.stringify(body),
  });
  return { status: response.statusCode, body: response.json() };
}

/** The requirements the resource server would send (v2), overridable. */
function requirements(overrides: Record<string, unknown> = {}) {
  return {
    scheme: "exact",
    network: network(),
    amount: price.toString(),
    asset: token,
    payTo: hotWallet,
    maxTimeoutSeconds: 300,
    extra: { name: domain.name, version: domain.version },
    ...overrides,
  };
}

let nonceCounter = 0;

/** A signed v2 payment for `requirements()`, its authorization's fields overridable (and the signer). */
async function signedPayment(
  options: {
    signer?: Account;
    from?: Address;
    to?: Address;
    value?: bigint;
    validAfter?: bigint;
    validBefore?: bigint;
    nonce?: Hex;
    accepted?: Record<string, unknown>;
  } = {},
) {
  const nowS = BigInt(Math.floor(Date.now() / 1000));
  nonceCounter += 1;
  const authorization = {
    from: options.from ?? payer().address,
    to: options.to ?? hotWallet,
    value: options.value ?? price,
    validAfter: options.validAfter ?? nowS - 600n,
    validBefore: options.validBefore ?? nowS + 300n,
    nonce: options.nonce ?? toHex(BigInt(Date.now()) * 1000n + BigInt(nonceCounter), { size: 32 }),
  };
  const chain = { chainId: gw.chain.chain.id, token } as Parameters<typeof transferTypedData>[0];
  const signer = options.signer ?? payer();
  const signature = await signer.signTypedData!(transferTypedData(chain, domain, authorization));
  const accepted = options.accepted ?? requirements();
  return {
    x402Version: 2,
    paymentPayload: {
      x402Version: 2,
      resource: { url: "http://127.0.0.1/report", description: "a report", mimeType: "application/json" },
      accepted,
      payload: {
        signature,
        authorization: {
          from: authorization.from,
          to: authorization.to,
          value: authorization.value.toString(),
          validAfter: authorization.validAfter.toString(),
          validBefore: authorization.validBefore.toString(),
          nonce: authorization.nonce,
        },
      },
    },
    paymentRequirements: accepted,
  };
}

/** A payload's authorization (x402's strings) as the chain takes it (bigints). */
function termsOf(given: {
  from: string;
  to: string;
  value: string;
  validAfter: string;
  validBefore: string;
  nonce: string;
}) {
  return {
    from: given.from as Address,
    to: given.to as Address,
    value: BigInt(given.value),
    validAfter: BigInt(given.validAfter),
    validBefore: BigInt(given.validBefore),
    nonce: given.nonce as Hex,
  };
}

beforeAll(async () => {
  gw = await startGateway();
  await gw.app.server.listen({ port: 0, host: "127.0.0.1" });
  const { port } = gw.app.server.server.address() as AddressInfo;
  gatewayUrl = `http://127.0.0.1:${port}`;
  token = getAddress(gw.chain.contracts.testUsd);
  for (const index of [payerIndex, strangerIndex])
    await gw.send(gw.chain.accounts[0]!, {
      address: gw.chain.contracts.testUsd,
      abi: testUsdAbi,
      functionName: "mint",
      args: [gw.chain.accounts[index]!.address, 1_000_000_000n],
    });
  const supported = await gw.app.server.inject({
    method: "GET",
    url: "/v1/x402/supported",
    headers: { authorization: `Bearer ${gw.key}` },
  });
  expect(supported.statusCode).toBe(200);
  const kind = supported.json().kinds.find((k: { network: string }) => k.network === network());
  supportedExtra = kind.extra;
  hotWallet = getAddress(kind.extra.payTo);
  domain.name = await gw.chain.publicClient.readContract({
    address: token,
    abi: testUsdAbi,
    functionName: "name",
  });
  domain.version = await gw.chain.publicClient.readContract({
    address: token,
    abi: testUsdAbi,
    functionName: "version",
  });
});
afterAll(async () => {
  await gw?.app.close();
});
/**
 * The account each test's payments credit: one of its own, so that a payment another test left to be credited (the
 * watcher books what is mined) moves no balance this one measures, and no row of another's is counted as its own.
 */
let merchant: { id: string; ledgerAccountId: bigint };
beforeEach(async () => {
  merchant = await gw.merchantAccount(`x402 facilitator merchant ${randomUUID()}`);
});

/** Waits until the deposit watcher has credited the invoice of the authorization with nonce `nonce`. */
async function settledRow(nonce: Hex) {
  for (let i = 0; i < 100; i += 1) {
    const [row] = await gw.app.db.query<{
      status: string;
      invoice_id: string;
      tx_hash: string;
      spent_block: string | null;
    }>(
      "SELECT status, invoice_id, tx_hash, spent_block::text AS spent_block FROM x402_authorizations WHERE nonce = $1",
      [nonce.toLowerCase()],
    );
    if (row !== undefined && row.status === "settled") {
      // Settled with the block its value left the payer in (the paywall counts it against balances read before).
      const mined = await gw.chain.publicClient.getTransactionReceipt({ hash: row.tx_hash as Hex });
      expect(row.spent_block).toBe(mined.blockNumber.toString());
      const invoice = await gw.call("GET", `/v1/invoices/${row.invoice_id}`);
      if (invoice.body.status === "paid") return { row, invoice: invoice.body };
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`authorization ${nonce} was not settled and credited`);
}

/**
 * A payment settled at the facilitator for this test's merchant and credited by the watcher: the payment, the settle's
 * answer, its nonce, and the tenant and account it credited.
 */
async function settledPayment() {
  const payment = await signedPayment();
  const settled = await facilitator("settle", payment);
  expect(settled.body).toMatchObject({ success: true });
  const nonce = payment.paymentPayload.payload.authorization.nonce as Hex;
  await settledRow(nonce);
  return { payment, settled, nonce, credit: { tenantId: gw.app.demo!.tenantId, accountId: merchant.id } };
}

describe("the official @x402/express server with Switchyard as its facilitator", () => {
  it("is paid by the official @x402/fetch client: served once, the tenant's account credited once", async () => {
    let served = 0;
    const resourceServer = new x402ResourceServer(
      new HTTPFacilitatorClient({
        url: `${gatewayUrl}/v1/x402`,
        createAuthHeaders: async () => ({
          verify: { Authorization: `Bearer ${gw.key}`, "Switchyard-Account": merchant.id },
          settle: { Authorization: `Bearer ${gw.key}`, "Switchyard-Account": merchant.id },
          supported: { Authorization: `Bearer ${gw.key}` },
        }),
      }),
    ).register(network() as `${string}:${string}`, new ExactEvmScheme());
    const app = express();
    app.use(
      paymentMiddleware(
        {
          "GET /report": {
            accepts: {
              scheme: "exact",
              network: network() as `${string}:${string}`,
              payTo: hotWallet,
              price: { amount: price.toString(), asset: token, extra: { ...domain } },
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
    try {
      const before = await merchantBalance();
      const payerBefore = await gw.tokenBalance(payer().address);
      const client = new x402Client();
      registerExactEvmScheme(client, { signer: payer() as never });
      // TestUSD is no default asset of the client's: allowed by name, capped at the price.
      client.setSpendControls({
        allowedAssets: [
          {
            network: network() as `${string}:${string}`,
            asset: token,
            maxAmountPerPayment: price.toString(),
          },
        ],
      });
      const sent: string[] = [];
      const recording: typeof fetch = async (input, init) => {
        const request = new Request(input, init);
        const header = request.headers.get("payment-signature");
        if (header !== null) sent.push(header);
        return fetch(request);
      };
      const paidFetch = wrapFetchWithPayment(recording, client);
      const unpaid = await fetch(`${site.url}/report`);
      expect(unpaid.status).toBe(402);
      const response = await paidFetch(`${site.url}/report`);
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({ report: "paid content" });
      expect(served).toBe(1);
      const receipt = JSON.parse(
        Buffer.from(response.headers.get("payment-response")!, "base64").toString("utf8"),
      );
      expect(receipt).toMatchObject({ success: true, network: network() });
      expect(receipt.payer.toLowerCase()).toBe(payer().address.toLowerCase());
      expect(receipt.transaction).toMatch(/^0x[0-9a-f]{64}$/);

      const [row] = await gw.app.db.query<{ nonce: Hex }>(
        "SELECT nonce FROM x402_authorizations WHERE tx_hash = $1",
        [receipt.transaction],
      );
      const { invoice } = await settledRow(row!.nonce);
      expect(invoice.amount).toBe("0.010000");
      const booked = await getInvoice(gw.app.db, { tenantId: gw.app.demo!.tenantId, id: invoice.id });
      expect(booked?.evidence).toMatchObject({ rail: "evm", txHash: receipt.transaction });
      expect(booked?.payer?.toLowerCase()).toBe(payer().address.toLowerCase());
      expect((await merchantBalance()) - before).toBe(price);
      expect(payerBefore - (await gw.tokenBalance(payer().address))).toBe(price);

      // The header the client paid with, sent again: the facilitator refuses it, nothing is served, recorded (one
      // authorization of its nonce, none more of the tenant's: the file's other tests leave theirs) or credited.
      expect(sent).toHaveLength(1);
      const authorizations = () =>
        gw.app.db.query<{ nonce: Hex }>("SELECT nonce FROM x402_authorizations WHERE tenant_id = $1", [
          gw.app.demo!.tenantId,
        ]);
      const recordedBefore = await authorizations();
      const again = await fetch(`${site.url}/report`, { headers: { "PAYMENT-SIGNATURE": sent[0]! } });
      expect(again.status).toBe(402);
      expect(served).toBe(1);
      const recorded = await authorizations();
      expect(recorded).toHaveLength(recordedBefore.length);
      expect(recorded.filter((one) => one.nonce === row!.nonce)).toHaveLength(1);
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect((await merchantBalance()) - before).toBe(price);
    } finally {
      await site.close();
    }
  });
});

/**
 * x402's deps on the gateway's chain, called without the routes; `nowMs`, their clock, `db` (the gateway's),
 * `publicClient` what reads the chain (the gateway's).
 */
function facilitatorDeps(
  nowMs?: () => number,
  db: Db = gw.app.db,
  publicClient: PublicClient<Transport, Chain> = gw.chain.publicClient,
  wallet: Address = hotWallet,
) {
  return createX402Deps({
    db,
    settlement: gw.app.settlement,
    logger: silentLogger,
    chains: [
      {
        rail: "evm",
        chainId: gw.chain.chain.id,
        publicClient,
        token,
        asset: assets.USDC,
        hotWallet: wallet,
        receiptTimeoutMs: 60_000,
      },
    ],
    ...(nowMs === undefined ? {} : { nowMs }),
  });
}

describe("the facilitator's routes", () => {
  it("lists in /supported what a resource server builds requirements from: the token, payTo and the token's EIP-712 domain", () => {
    expect(getAddress(supportedExtra.asset as string)).toBe(token);
    expect(getAddress(supportedExtra.payTo as string)).toBe(hotWallet);
    // What the token itself says (TestUSD's name and version, read in beforeAll), not a default.
    expect(domain.name).not.toBe("");
    expect({ name: supportedExtra.name, version: supportedExtra.version }).toEqual(domain);
  });

  it("verify and settle a good payment: valid, then settled once with the transaction", async () => {
    const payment = await signedPayment();
    const verified = await facilitator("verify", payment);
    expect(verified).toMatchObject({ status: 200, body: { isValid: true } });
    expect(verified.body.payer.toLowerCase()).toBe(payer().address.toLowerCase());
    const before = await merchantBalance();
    const settled = await facilitator("settle", payment);
    expect(settled.status).toBe(200);
    expect(settled.body).toMatchObject({ success: true, network: network(), amount: price.toString() });
    const nonce = payment.paymentPayload.payload.authorization.nonce as Hex;
    const { row } = await settledRow(nonce);
    expect(row.tx_hash).toBe(settled.body.transaction);
    expect((await merchantBalance()) - before).toBe(price);
    // Verified again: the nonce is used (in the gateway first, on the chain too).
    expect((await facilitator("verify", payment)).body).toMatchObject({
      isValid: false,
      invalidReason: "invalid_exact_evm_nonce_already_used",
    });
    // Settled again by the same tenant into the same account (the official resource servers retry settle): the
    // same success, the same transaction, nothing sent or credited again.
    const nonceAfter = await hotWalletNonce();
    const retried = await facilitator("settle", payment);
    expect(retried).toEqual({ status: 200, body: settled.body });
    expect(await hotWalletNonce()).toBe(nonceAfter);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await merchantBalance()) - before).toBe(price);
  });

  it("refuses a settled authorization to another tenant, another account, or other requirements", async () => {
    const payment = await signedPayment();
    const settled = await facilitator("settle", payment);
    expect(settled.body).toMatchObject({ success: true });
    await settledRow(payment.paymentPayload.payload.authorization.nonce as Hex); // credited before the next test
    const deps = facilitatorDeps();
    const tenantId = gw.app.demo!.tenantId;
    const accountId = merchant.id;
    const used = { success: false, errorReason: "invalid_exact_evm_nonce_already_used", transaction: "" };
    // The same tenant and account, straight to the facilitator: the prior success.
    expect(await facilitatorSettle(deps, payment, { tenantId, accountId })).toMatchObject({
      success: true,
      transaction: settled.body.transaction,
    });
    expect(await facilitatorSettle(deps, payment, { tenantId: "ten_another", accountId })).toMatchObject(
      used,
    );
    expect(await facilitatorSettle(deps, payment, { tenantId, accountId: "acct_another" })).toMatchObject(
      used,
    );
    const dearer = requirements({ amount: (price * 2n).toString() });
    const other = await facilitator("settle", {
      ...payment,
      paymentPayload: { ...payment.paymentPayload, accepted: dearer },
      paymentRequirements: dearer,
    });
    expect(other.status).toBe(200);
    expect(other.body).toMatchObject({ success: false, transaction: "" });
    // Its outcome never recorded (left `submitted`): the retry reads the receipt, completes the row, and answers.
    const nonce = payment.paymentPayload.payload.authorization.nonce.toLowerCase();
    const rowOf = async () =>
      (
        await gw.app.db.query<{ status: string; tx_hash: string }>(
          "SELECT status, tx_hash FROM x402_authorizations WHERE nonce = $1",
          [nonce],
        )
      )[0];
    await gw.app.db.query("UPDATE x402_authorizations SET status = 'submitted' WHERE nonce = $1", [nonce]);
    expect((await facilitator("settle", payment)).body).toEqual(settled.body);
    expect(await rowOf()).toEqual({ status: "settled", tx_hash: settled.body.transaction });
    // When that transaction did not spend it, the one that did and paid the hot wallet on these terms (as a copy of it
    // someone submitted first does) answers…
    const another = await signedPayment();
    const anotherSettled = await facilitator("settle", another);
    expect(anotherSettled.body).toMatchObject({ success: true });
    await settledRow(another.paymentPayload.payload.authorization.nonce as Hex);
    await gw.app.db.query(
      "UPDATE x402_authorizations SET status = 'submitted', tx_hash = $2 WHERE nonce = $1",
      [nonce, anotherSettled.body.transaction],
    );
    expect((await facilitator("settle", payment)).body).toEqual(settled.body);
    expect(await rowOf()).toEqual({ status: "settled", tx_hash: anotherSettled.body.transaction });
    // …and when none did, the retry hears it pending (the authorization, unused, may still be mined until its
    // validBefore; before: "nonce already used", and a client signs a new payment), and the row is left for
    // reconciliation.
    const unsent = await signedPayment();
    const u = unsent.paymentPayload.payload.authorization;
    const unsentTerms = termsOf(u);
    expect(await claim(gw.app.db, deps.chains.chains[0]!, unsentTerms, { tenantId, accountId })).toBe(true);
    await record(gw.app.db, deps.chains.chains[0]!, unsentTerms, {
      status: "submitted",
      txHash: anotherSettled.body.transaction,
    });
    expect((await facilitator("settle", unsent)).body).toMatchObject({
      success: false,
      errorReason: "unexpected_settle_error",
      transaction: "",
    });
    const [unsentRow] = await gw.app.db.query<{ status: string }>(
      "SELECT status FROM x402_authorizations WHERE nonce = $1",
      [u.nonce.toLowerCase()],
    );
    expect(unsentRow?.status).toBe("submitted");
    // A payload whose signature is not the payer's over these terms is refused, whatever its nonce settled.
    const forged = {
      ...payment,
      paymentPayload: {
        ...payment.paymentPayload,
        payload: { ...payment.paymentPayload.payload, signature: `0x${"11".repeat(65)}` },
      },
    };
    expect((await facilitator("settle", forged)).body).toMatchObject({ success: false, transaction: "" });
  });

  it("answers a retried settle after the authorization's window shut, and one whose transaction a fee bump replaced", async () => {
    const { payment, settled, nonce, credit } = await settledPayment();
    // An hour on, its validBefore is past: the retry (a resource server's, after a settle not mined in time) answers
    // the settlement. Before, the window's refusal came first and no prior settlement was looked for.
    const later = facilitatorDeps(() => Date.now() + 3_600_000);
    expect(await facilitatorSettle(later, payment, credit)).toMatchObject({
      success: true,
      transaction: settled.body.transaction,
    });
    // An authorization never settled is still refused past its window.
    const unsettled = await signedPayment();
    expect(await facilitatorSettle(later, unsettled, credit)).toMatchObject({
      success: false,
      errorReason: "invalid_exact_evm_payload_authorization_valid_before",
    });
    // Left `submitted` with the transaction a fee bump replaced (never mined): the retry follows the send journal to
    // the replacement that was, answers it, and the row carries it. Before: refused, its receipt not found.
    const mined = settled.body.transaction as Hex;
    const [send] = await gw.app.db.query<{ attempt_id: string }>(
      "SELECT attempt_id FROM evm_sends WHERE tx_hash = lower($1)",
      [mined],
    );
    expect(send).toBeDefined();
    const bumped = toHex(crypto.getRandomValues(new Uint8Array(32)));
    await gw.app.db.query(
      "INSERT INTO evm_sends_replaced (attempt_id, tx_hash, raw_tx) VALUES ($1, $2, '0x')",
      [send!.attempt_id, bumped],
    );
    await gw.app.db.query(
      "UPDATE x402_authorizations SET status = 'submitted', tx_hash = $2 WHERE nonce = $1",
      [nonce.toLowerCase(), bumped],
    );
    expect((await facilitator("settle", payment)).body).toEqual(settled.body);
    const [row] = await gw.app.db.query<{ status: string; tx_hash: string }>(
      "SELECT status, tx_hash FROM x402_authorizations WHERE nonce = $1",
      [nonce.toLowerCase()],
    );
    expect(row).toEqual({ status: "settled", tx_hash: mined });
  });

  it("answers a retried settle of a row still submitted, its transaction not spending it yet, pending", async () => {
    const payment = await signedPayment();
    const settled = await facilitator("settle", payment);
    expect(settled.body).toMatchObject({ success: true });
    const nonce = payment.paymentPayload.payload.authorization.nonce.toLowerCase();
    await settledRow(nonce as Hex);
    // Left `submitted` with a transaction not mined (as one in flight, or one that reverted leaving the authorization
    // open, is): the retry hears it pending. Before: invalid_exact_evm_nonce_already_used, and a client signs anew. Not
    // x402's settlement_pending with the row's transaction: the row cannot tell one still to be mined from one mined
    // and reverted, or replaced.
    const pendingTx = toHex(crypto.getRandomValues(new Uint8Array(32)));
    await gw.app.db.query(
      "UPDATE x402_authorizations SET status = 'submitted', tx_hash = $2 WHERE nonce = $1",
      [nonce, pendingTx],
    );
    try {
      expect((await facilitator("settle", payment)).body).toMatchObject({
        success: false,
        errorReason: "unexpected_settle_error",
        errorMessage: expect.stringMatching(/has not spent this authorization yet/),
        transaction: "",
      });
    } finally {
      await gw.app.db.query(
        "UPDATE x402_authorizations SET status = 'settled', tx_hash = $2 WHERE nonce = $1",
        [nonce, settled.body.transaction],
      );
    }
  });

  it("reads the receipt of a retried settle's mined transaction once, for its answer and its gas alike", async () => {
    const payment = await signedPayment();
    const settled = await facilitator("settle", payment);
    expect(settled.body).toMatchObject({ success: true });
    const nonce = payment.paymentPayload.payload.authorization.nonce.toLowerCase();
    await settledRow(nonce as Hex);
    // Its outcome never recorded (left `submitted`): the retry reads the receipt, books the gas, and concludes the row.
    await gw.app.db.query("UPDATE x402_authorizations SET status = 'submitted' WHERE nonce = $1", [nonce]);
    const receiptsRead: string[] = [];
    const counting = createPublicClient({
      chain: gw.chain.chain,
      transport: custom(
        {
          request: (args: { method: string; params?: unknown }) => {
            if (args.method === "eth_getTransactionReceipt")
              receiptsRead.push(((args.params as string[])[0] ?? "").toLowerCase());
            return gw.chain.provider.request(args as never);
          },
        },
        { retryCount: 0 },
      ),
    });
    const credit = { tenantId: gw.app.demo!.tenantId, accountId: merchant.id };
    expect(await facilitatorSettle(facilitatorDeps(undefined, gw.app.db, counting), payment, credit)).toEqual(
      settled.body,
    );
    const [row] = await gw.app.db.query<{ status: string; tx_hash: string }>(
      "SELECT status, tx_hash FROM x402_authorizations WHERE nonce = $1",
      [nonce],
    );
    expect(row).toEqual({ status: "settled", tx_hash: settled.body.transaction });
    // Before: read by the search for what spent it, then again to book its gas.
    expect(receiptsRead).toEqual([settled.body.transaction.toLowerCase()]);
  });

  it("answers a retried settle of a row left submitted, its transaction reverted by a copy mined first, with the copy", async () => {
    const payment = await signedPayment();
    const signed = payment.paymentPayload.payload;
    const nonce = signed.authorization.nonce.toLowerCase();
    const rowOf = async () =>
      (
        await gw.app.db.query<{ status: string; tx_hash: string; spent_tx_hash: string | null }>(
          "SELECT status, tx_hash, spent_tx_hash FROM x402_authorizations WHERE nonce = $1",
          [nonce],
        )
      )[0];
    await gw.setAutomine(false);
    let settling: ReturnType<typeof facilitator>;
    let copyTx: Hex;
    try {
      settling = facilitator("settle", payment);
      await expect.poll(async () => (await rowOf())?.status, { timeout: 10_000 }).toBe("submitted");
      copyTx = await submitCopiedAuthorization(gw, token, {
        authorization: termsOf(signed.authorization),
        signature: signed.signature as Hex,
      });
      await gw.chain.networkHelpers.mine(1);
    } finally {
      await gw.setAutomine(true);
    }
    expect((await settling!).body).toMatchObject({ success: true, transaction: copyTx! });
    const ownTx = (await rowOf())!.tx_hash as Hex;
    expect((await gw.chain.publicClient.getTransactionReceipt({ hash: ownTx })).status).toBe("reverted");
    // Left as the settler leaves it when the node cannot say whether a copy paid: `submitted`, with ours.
    await gw.app.db.query(
      "UPDATE x402_authorizations SET status = 'submitted', spent_tx_hash = NULL, spent_block = NULL WHERE nonce = $1",
      [nonce],
    );
    // Before: refused invalid_exact_evm_nonce_already_used until reconciliation concluded the row.
    expect((await facilitator("settle", payment)).body).toMatchObject({
      success: true,
      transaction: copyTx!,
    });
    expect(await rowOf()).toEqual({ status: "settled", tx_hash: ownTx, spent_tx_hash: copyTx! });
    // Credited from the copy before the next test reads the merchant's balance.
    await settledRow(signed.authorization.nonce as Hex);
  });

  it("answers a settle retried after the hot wallet's key rotated by what was bound to the wallet before, nothing else", async () => {
    const { payment, settled, nonce, credit } = await settledPayment();
    // The gateway restarted with another key: its payTo is the new wallet; the retry's requirements name the old one.
    const rotated = facilitatorDeps(undefined, gw.app.db, gw.chain.publicClient, stranger().address);
    const sentBefore = await hotWalletNonce();
    // Before: invalid_payment_requirements ("payTo must be the gateway's address"), final, for a payment settled.
    expect(await facilitatorSettle(rotated, payment, credit)).toEqual(settled.body);
    const payTo = "invalid_payment_requirements";
    // For another account of the tenant: refused, as before the rotation.
    const elsewhere = { ...credit, accountId: "acct_another" };
    expect(await facilitatorSettle(rotated, payment, elsewhere)).toMatchObject({
      success: false,
      errorReason: payTo,
    });
    // A new payment signed to the old wallet: refused, nothing sent or claimed.
    const fresh = await signedPayment();
    expect(await facilitatorSettle(rotated, fresh, credit)).toMatchObject({
      success: false,
      errorReason: payTo,
    });
    const freshNonce = fresh.paymentPayload.payload.authorization.nonce.toLowerCase();
    expect(await gw.app.db.query("SELECT 1 FROM x402_authorizations WHERE nonce = $1", [freshNonce])).toEqual(
      [],
    );
    // The payer's second authorization of the settled nonce, to an address of its own named as payTo: not the wallet
    // the settlement was bound with, so not answered by it, before the rotation or after.
    const own = payer().address;
    const ownPayment = await signedPayment({ nonce, to: own, accepted: requirements({ payTo: own }) });
    for (const deps of [rotated, facilitatorDeps()])
      expect(await facilitatorSettle(deps, ownPayment, credit)).toMatchObject({
        success: false,
        errorReason: payTo,
      });
    expect(await hotWalletNonce()).toBe(sentBefore);
  });

  it("refuses bad payments with x402's reason: nothing sent, nothing credited", async () => {
    const nowS = BigInt(Math.floor(Date.now() / 1000));
    const before = await merchantBalance();
    const nonceBefore = await hotWalletNonce();
    const cases: [string, Awaited<ReturnType<typeof signedPayment>> | Record<string, unknown>][] = [
      ["invalid_network", await signedPayment({ accepted: requirements({ network: "eip155:1" }) })],
      [
        "invalid_payment_requirements",
        await signedPayment({ accepted: requirements({ asset: stranger().address }) }),
      ],
      [
        "invalid_payment_requirements",
        await signedPayment({ accepted: requirements({ payTo: stranger().address }) }),
      ],
      // Below the rail's least for one payment (1 atomic unit): before, valid on /verify, then /settle's invoice
      // refused it (answered unexpected_settle_error).
      [
        "invalid_payment_requirements",
        await signedPayment({ value: 0n, accepted: requirements({ amount: "0" }) }),
      ],
      ["invalid_exact_evm_payload_recipient_mismatch", await signedPayment({ to: stranger().address })],
      [
        "invalid_exact_evm_payload_authorization_valid_before",
        await signedPayment({ validBefore: nowS - 10n }),
      ],
      [
        "invalid_exact_evm_payload_authorization_valid_before",
        await signedPayment({ validBefore: nowS + 3n }),
      ],
      // Valid far longer than maxTimeoutSeconds (300 s) and its ten minutes of clock skew: before, taken, and an
      // authorization a reverted transaction left open held the payer's balance, and could pay the hot wallet, past its
      // invoice's watch (60 days here).
      [
        "invalid_exact_evm_payload_authorization_valid_before",
        await signedPayment({ validBefore: nowS + 300n + 600n + 60n }),
      ],
      [
        "invalid_exact_evm_payload_authorization_valid_before",
        await signedPayment({ validBefore: nowS + 60n * 86_400n }),
      ],
      // A seller's maxTimeoutSeconds past a day is its requirements' fault, refused as such at /verify (before: each
      // payer's authorization signed for it was refused, as its validBefore).
      [
        "invalid_payment_requirements",
        await signedPayment({
          validBefore: nowS + 2n * 86_400n,
          accepted: requirements({ maxTimeoutSeconds: 3 * 86_400 }),
        }),
      ],
      [
        "invalid_exact_evm_payload_authorization_valid_after",
        await signedPayment({ validAfter: nowS + 600n }),
      ],
      ["invalid_exact_evm_payload_authorization_value", await signedPayment({ value: price - 1n })],
      ["invalid_exact_evm_payload_authorization_value", await signedPayment({ value: price + 1n })],
      ["invalid_exact_evm_payload_signature", await signedPayment({ signer: stranger() })],
      [
        "invalid_exact_evm_token_name_mismatch",
        await signedPayment({
          accepted: requirements({ extra: { name: "Wrong Coin", version: domain.version } }),
        }),
      ],
      [
        "invalid_exact_evm_missing_eip712_domain",
        await signedPayment({ accepted: requirements({ extra: {} }) }),
      ],
      [
        "insufficient_funds",
        await signedPayment({ signer: gw.chain.accounts[8]!, from: gw.chain.accounts[8]!.address }),
      ],
    ];
    const malformed = await signedPayment();
    cases.push(
      ["invalid_payload", { ...malformed, paymentPayload: { ...malformed.paymentPayload, payload: {} } }],
      [
        "invalid_payload",
        {
          ...malformed,
          paymentPayload: {
            ...malformed.paymentPayload,
            payload: { ...malformed.paymentPayload.payload, signature: "0x12" },
          },
        },
      ],
      [
        "invalid_x402_version",
        { ...malformed, paymentPayload: { ...malformed.paymentPayload, x402Version: 3 } },
      ],
      ["unsupported_scheme", await signedPayment({ accepted: requirements({ scheme: "upto" }) })],
    );
    // 65 bytes that cannot be a signature: a recovery byte of 5, r = 0, s = the curve's order, and an r that is no
    // point's x (noble throws a plain Error for it). Before, the first of them answered 500.
    const good = malformed.paymentPayload.payload.signature as string;
    const order = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";
    for (const signature of [
      `${good.slice(0, 130)}05`,
      `0x${"00".repeat(32)}${good.slice(66)}`,
      `${good.slice(0, 66)}${order}${good.slice(130)}`,
      `0x${"ff".repeat(31)}fe${good.slice(66)}`,
    ])
      cases.push([
        "invalid_exact_evm_payload_signature",
        {
          ...malformed,
          paymentPayload: {
            ...malformed.paymentPayload,
            payload: { ...malformed.paymentPayload.payload, signature },
          },
        },
      ]);
    for (const [reason, body] of cases) {
      const verified = await facilitator("verify", body);
      expect({ reason, status: verified.status, body: verified.body }).toMatchObject({
        reason,
        status: 200,
        body: { isValid: false, invalidReason: reason },
      });
      const settled = await facilitator("settle", body);
      expect({ reason, status: settled.status, body: settled.body }).toMatchObject({
        reason,
        status: 200,
        body: { success: false, errorReason: reason, transaction: "" },
      });
    }
    expect(await hotWalletNonce()).toBe(nonceBefore);
    expect(await merchantBalance()).toBe(before);
  });

  it("settles one authorization sent twice at once exactly once", async () => {
    const before = await merchantBalance();
    const payment = await signedPayment();
    const [a, b] = await Promise.all([facilitator("settle", payment), facilitator("settle", payment)]);
    const outcomes = [a.body, b.body];
    expect(outcomes.filter((o) => o.success === true)).toHaveLength(1);
    // The loser is refused as taken; or, reaching the facilitator once the winner's invoice is bound to the nonce and
    // its transfer not credited yet, answered pending (settle again: the same success), never settled a second time.
    expect(outcomes.find((o) => o.success === false)).toMatchObject({
      errorReason: expect.stringMatching(/^(invalid_exact_evm_nonce_already_used|unexpected_settle_error)$/),
    });
    await settledRow(payment.paymentPayload.payload.authorization.nonce as Hex);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect((await merchantBalance()) - before).toBe(price);
  });

  it("takes only the tenant's key, and settles only into an account of the tenant named in Switchyard-Account", async () => {
    const payment = await signedPayment();
    const noKey = await facilitator("settle", payment, {} as never);
    expect(noKey.status).toBe(401);
    const noAccount = await facilitator("settle", payment, { authorization: `Bearer ${gw.key}` } as never);
    expect(noAccount.status).toBe(400);
    expect(noAccount.body.error.code).toBe("parameter_missing");
    const unknown = await facilitator("settle", payment, {
      authorization: `Bearer ${gw.key}`,
      "switchyard-account": "acct_nobody",
    });
    // A header names it, not the path: 400, as for any object a request's parameter names.
    expect(unknown.status).toBe(400);
    expect(unknown.body.error).toMatchObject({ code: "account_not_found", param: "switchyard-account" });
    const malformedBody = await facilitator("verify", { paymentPayload: "x" });
    expect(malformedBody.status).toBe(400);
    // Nothing was claimed: the same payment still verifies.
    expect((await facilitator("verify", payment)).body).toMatchObject({ isValid: true });
  });

  it("reads no Idempotency-Key: a settle is idempotent by its authorization's nonce, for the account it credited", async () => {
    const key = `settle-${randomUUID()}`;
    const settle = (body: unknown, headers: Record<string, string>) =>
      gw.app.server.inject({
        method: "POST",
        url: "/v1/x402/settle",
        headers: { ...headers, "idempotency-key": key, "content-type": "application/json" },
        payload: JSON.stringify(body),
      });
    // The key was kept with the answer: a retry under it naming another account was told that account was credited
    // (the first answer replayed), and a transient failure (not mined in time) was replayed for 24 hours.
    const payment = await signedPayment();
    const first = await settle(payment, authHeaders());
    expect(first.json()).toMatchObject({ success: true });
    await settledRow(payment.paymentPayload.payload.authorization.nonce as Hex);
    const elsewhere = await settle(payment, { ...authHeaders(), "switchyard-account": "acct_demo_customer" });
    expect(elsewhere.headers["idempotent-replayed"]).toBeUndefined();
    expect(elsewhere.json()).toMatchObject({
      success: false,
      errorReason: "invalid_exact_evm_nonce_already_used",
    });
    const again = await settle(payment, authHeaders());
    expect([again.headers["idempotent-replayed"], again.json()]).toEqual([undefined, first.json()]);
    // A settle without Switchyard-Account is malformed: 400 (schemathesis's finding: a key used before was
    // answered 409 first).
    const { "switchyard-account": _, ...withoutAccount } = authHeaders();
    const missing = await settle(
      { x402Version: 2, paymentPayload: {}, paymentRequirements: {} },
      withoutAccount,
    );
    expect([missing.statusCode, missing.json().error.code, missing.json().error.param]).toEqual([
      400,
      "parameter_missing",
      "switchyard-account",
    ]);
  });
});

describe("the paywall's x402 scheme", () => {
  const resource = {
    tenantId: "",
    paywallId: "pwl_test",
    accountId: "",
    service: "reports",
    description: "a report",
    mimeType: "application/json",
  };
  const request = (headers: Record<string, string> = {}) => ({
    method: "GET",
    url: "http://127.0.0.1/report",
    headers,
  });

  function scheme(options: { settler?: X402Settler; db?: Db; nowMs?: () => number } = {}) {
    const { settler, db = gw.app.db, nowMs } = options;
    resource.tenantId = gw.app.demo!.tenantId;
    resource.accountId = merchant.id;
    const deps = facilitatorDeps(nowMs, db);
    return createX402Scheme(settler === undefined ? deps : { ...deps, settler });
  }

  /**
   * A fresh payer holding `amount` of TestUSD: `sign` signs a payment of one price (options as signedPayment's),
   * `present` offers it to a scheme, `pay` does both.
   */
  async function payerHolding(amount: bigint) {
    const account = privateKeyToAccount(generatePrivateKey());
    await gw.send(gw.chain.accounts[0]!, {
      address: token,
      abi: testUsdAbi,
      functionName: "mint",
      args: [account.address, amount],
    });
    const offers = [{ rail: "evm", price: { asset: assets.USDC, amount: price } }];
    const sign = (options: Parameters<typeof signedPayment>[0] = {}) =>
      signedPayment({ ...options, signer: account, from: account.address });
    const present = (x402: ReturnType<typeof scheme>, signed: Awaited<ReturnType<typeof sign>>) =>
      x402.verify(
        resource,
        offers,
        request({
          "payment-signature": Buffer.from(JSON.stringify(signed.paymentPayload)).toString("base64"),
        }),
      );
    return {
      address: account.address,
      sign,
      present,
      pay: async (x402: ReturnType<typeof scheme>, options: Parameters<typeof signedPayment>[0] = {}) =>
        await present(x402, await sign(options)),
    };
  }

  /**
   * gw.app's database, through which a test holds or fails the next statement whose text contains `text`, or with
   * `text` null the next transaction before it begins (a claim's: PGlite runs nothing else while one is open).
   */
  function interceptedDb() {
    let next: { text: string | null; run: () => Promise<void> } | null = null;
    const db: Db = {
      kind: gw.app.db.kind,
      connectionsMax: gw.app.db.connectionsMax,
      async transaction(fn) {
        const intercepted = next;
        if (intercepted !== null && intercepted.text === null) {
          next = null;
          await intercepted.run();
        }
        return await gw.app.db.transaction(fn);
      },
      queryAll: (statements) => gw.app.db.queryAll(statements),
      exec: (script) => gw.app.db.exec(script),
      session: (fn) => gw.app.db.session(fn),
      close: async () => {},
      async query(text, params) {
        const intercepted = next;
        if (intercepted !== null && intercepted.text !== null && text.includes(intercepted.text)) {
          next = null;
          await intercepted.run();
        }
        return await gw.app.db.query(text, params);
      },
    };
    return {
      db,
      /** Holds the statement (null: the transaction) until `release()`; `reached` resolves once it is held. */
      hold(text: string | null) {
        let reached = () => {};
        let release = () => {};
        const atIt = new Promise<void>((resolve) => {
          reached = resolve;
        });
        const released = new Promise<void>((resolve) => {
          release = resolve;
        });
        next = {
          text,
          run: async () => {
            reached();
            await released;
          },
        };
        return { reached: atIt, release };
      },
      fail(text: string) {
        next = {
          text,
          run: async () => {
            throw new Error("injected: the connection was reset");
          },
        };
      },
    };
  }

  it("challenges with PAYMENT-REQUIRED (no v1 body on Hardhat's chain), serves a payment once and settles it", async () => {
    const x402 = scheme();
    const offers = [{ rail: "evm", price: { asset: assets.USDC, amount: price } }];
    const part = await x402.challenge(resource, offers, request());
    expect(part.body).toBeUndefined(); // 31337 has no v1 name
    const [name, value] = part.headers[0]!;
    expect(name).toBe("PAYMENT-REQUIRED");
    const required = JSON.parse(Buffer.from(value, "base64").toString("utf8"));
    expect(paymentRequiredV2.safeParse(required).success).toBe(true);
    expect(required.accepts[0]).toEqual(requirements());
    const signed = await signedPayment({ accepted: required.accepts[0] });
    const header = Buffer.from(JSON.stringify(signed.paymentPayload)).toString("base64");
    const paid = await x402.verify(resource, offers, request({ "payment-signature": header }));
    expect(paid.kind).toBe("paid");
    // Presented again before it settles: the claim refuses it.
    const replay = await x402.verify(resource, offers, request({ "payment-signature": header }));
    expect(replay).toMatchObject({
      kind: "refused",
      refusal: { code: "invalid_exact_evm_nonce_already_used" },
    });
    if (paid.kind !== "paid") throw new Error("not paid");
    const before = await merchantBalance();
    const done = await paid.complete({ served: true });
    expect(done.settled).toBe(true);
    const receipt = JSON.parse(Buffer.from(done.headers[0]![1], "base64").toString("utf8"));
    expect(done.headers[0]![0]).toBe("PAYMENT-RESPONSE");
    expect(receipt).toMatchObject({ success: true, network: network() });
    await settledRow(signed.paymentPayload.payload.authorization.nonce as Hex);
    expect((await merchantBalance()) - before).toBe(price);
  });

  it("settles two payers' authorizations that share a nonce, each once (an EIP-3009 nonce is its payer's own)", async () => {
    const x402 = scheme();
    const offers = [{ rail: "evm", price: { asset: assets.USDC, amount: price } }];
    const nonce = toHex(BigInt(Date.now()) * 1000n + 999n, { size: 32 });
    const before = {
      merchant: await merchantBalance(),
      payer: await gw.tokenBalance(payer().address),
      stranger: await gw.tokenBalance(stranger().address),
    };
    const headers: string[] = [];
    for (const signer of [payer(), stranger()]) {
      const signed = await signedPayment({ signer, from: signer.address, nonce });
      const header = Buffer.from(JSON.stringify(signed.paymentPayload)).toString("base64");
      headers.push(header);
      const paid = await x402.verify(resource, offers, request({ "payment-signature": header }));
      if (paid.kind !== "paid") throw new Error(`not paid: ${JSON.stringify(paid)}`);
      const done = await paid.complete({ served: true });
      expect(done.settled, JSON.stringify(done)).toBe(true);
    }
    // Each pays once: presented again, refused; each payer's balance down by one price, the seller credited twice.
    for (const header of headers)
      expect(await x402.verify(resource, offers, request({ "payment-signature": header }))).toMatchObject({
        kind: "refused",
        refusal: { code: "invalid_exact_evm_nonce_already_used" },
      });
    expect(before.payer - (await gw.tokenBalance(payer().address))).toBe(price);
    expect(before.stranger - (await gw.tokenBalance(stranger().address))).toBe(price);
    for (let i = 0; i < 100 && (await merchantBalance()) - before.merchant < 2n * price; i += 1)
      await new Promise((resolve) => setTimeout(resolve, 100));
    expect((await merchantBalance()) - before.merchant).toBe(2n * price);
    const rows = await gw.app.db.query<{ payer: string; status: string }>(
      "SELECT payer, status FROM x402_authorizations WHERE nonce = $1 ORDER BY payer",
      [nonce.toLowerCase()],
    );
    expect(rows.map((row) => row.status)).toEqual(["settled", "settled"]);
  });

  it("gives the claim back when the resource was not served, and refuses bad headers and other prices", async () => {
    const x402 = scheme();
    const offers = [{ rail: "evm", price: { asset: assets.USDC, amount: price } }];
    const signed = await signedPayment();
    const header = Buffer.from(JSON.stringify(signed.paymentPayload)).toString("base64");
    const first = await x402.verify(resource, offers, request({ "payment-signature": header }));
    if (first.kind !== "paid") throw new Error("not paid");
    expect(await first.complete({ served: false })).toMatchObject({ settled: false });
    const second = await x402.verify(resource, offers, request({ "payment-signature": header }));
    expect(second.kind).toBe("paid");
    if (second.kind === "paid") await second.complete({ served: false });
    const cheaper = [{ rail: "evm", price: { asset: assets.USDC, amount: price * 2n } }];
    expect(await x402.verify(resource, cheaper, request({ "payment-signature": header }))).toMatchObject({
      kind: "refused",
      refusal: { code: "invalid_payment_requirements" },
    });
    expect(await x402.verify(resource, offers, request({ "payment-signature": "%%%" }))).toMatchObject({
      kind: "refused",
      refusal: { code: "invalid_payload" },
    });
    expect(
      await x402.verify(resource, offers, request({ "payment-signature": header, "x-payment": header })),
    ).toMatchObject({ kind: "refused", refusal: { code: "invalid_payload_header_repeated" } });
    // A network or scheme that is an object whose toString is no function: its refusal's message threw (a 500).
    const base64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64");
    for (const [name, value] of [
      ["payment-signature", { x402Version: 2, accepted: { network: { toString: 0 } } }],
      ["x-payment", { x402Version: 1, scheme: { toString: 0 }, network: { valueOf: 0, toString: 0 } }],
    ] as const)
      expect(await x402.verify(resource, offers, request({ [name]: base64(value) })), name).toMatchObject({
        kind: "refused",
        refusal: { code: "invalid_network" },
      });
  });

  it("keeps a payer's balance held while a transfer may still be mined, and lets it go once its outcome is known", async () => {
    // A payer holding one price. A settlement that answers "not mined in time" (pending) leaves the transfer able
    // to land: the payer's next payment must not run its route on the same balance. One that answers a revert
    // (nothing pending), recording it as the settlers do, lets the next one through. A payer each: the first one's
    // pending payment holds its balance on every scheme of the database.
    const settlerAnswering = (
      refusal: "unexpected_settle_error" | "invalid_transaction_state",
      pending: boolean,
    ): X402Settler => ({
      settle: async (payment, requirements) => {
        if (!pending)
          await record(gw.app.db, requirements.chain, payment.authorization, {
            status: "failed",
            failure: "reverted",
          });
        return {
          ok: false,
          refusal,
          message: "as the test says",
          payer: payment.payer,
          ...(pending ? { pending: true as const } : {}),
        };
      },
    });
    for (const [settler, next] of [
      [settlerAnswering("unexpected_settle_error", true), "refused"],
      [settlerAnswering("invalid_transaction_state", false), "paid"],
    ] as const) {
      const payer = await payerHolding(price);
      const x402 = scheme({ settler });
      const first = await payer.pay(x402);
      if (first.kind !== "paid") throw new Error(`not paid: ${JSON.stringify(first)}`);
      expect(await payer.pay(x402)).toMatchObject({
        kind: "refused",
        refusal: { code: "insufficient_funds" },
      });
      expect(await first.complete({ served: true })).toMatchObject({ settled: false });
      const second = await payer.pay(x402);
      expect(second.kind).toBe(next);
      if (second.kind === "paid") await second.complete({ served: false });
    }
  });

  it("counts a payment settled while another of its payer's was being verified: its balance may not show it yet", async () => {
    // A payer holding one price pays A. B is verified (its balance read: one price) and, before B's claim is made,
    // A settles and is released. B's balance was read before A's transfer: weighed after A's release, B must still
    // be refused before its route runs, not let through on the price A spent.
    const payer = await payerHolding(price);
    const intercepted = interceptedDb();
    const x402 = scheme({ db: intercepted.db });
    const a = await payer.pay(x402);
    if (a.kind !== "paid") throw new Error(`not paid: ${JSON.stringify(a)}`);
    const claim = intercepted.hold(null);
    const b = payer.pay(x402);
    try {
      // B at its claim (or answered already, which fails below).
      await Promise.race([claim.reached, b]);
      expect(await a.complete({ served: true })).toMatchObject({ settled: true });
      expect(await gw.tokenBalance(payer.address)).toBe(0n);
    } finally {
      claim.release();
    }
    expect(await b).toMatchObject({ kind: "refused", refusal: { code: "insufficient_funds" } });
  });

  it("counts a payment's authorization spent by someone else as spent: a verification begun before must not pay on it", async () => {
    // Anyone may submit an EIP-3009 authorization. A's is submitted by a third party while B (same payer, one price)
    // is between its balance read and its claim; A's settlement is then refused (its nonce used), but the value left
    // the payer's balance all the same.
    const payer = await payerHolding(price);
    const intercepted = interceptedDb();
    const x402 = scheme({ db: intercepted.db });
    const signedA = await payer.sign();
    const a = await payer.present(x402, signedA);
    if (a.kind !== "paid") throw new Error(`not paid: ${JSON.stringify(a)}`);
    const claim = intercepted.hold(null);
    const b = payer.pay(x402);
    try {
      await Promise.race([claim.reached, b]);
      const { authorization: given, signature } = signedA.paymentPayload.payload;
      const authorization = termsOf(given);
      await gw.send(gw.chain.accounts[0]!, {
        address: token,
        abi: testUsdAbi,
        functionName: "transferWithAuthorization",
        args: [...transferArgs(authorization, vrsOf(signature as Hex)!)],
      } as never);
      expect(await gw.tokenBalance(payer.address)).toBe(0n);
      expect(await a.complete({ served: true })).toMatchObject({
        settled: false,
        refusal: { code: "invalid_exact_evm_nonce_already_used" },
      });
    } finally {
      claim.release();
    }
    expect(await b).toMatchObject({ kind: "refused", refusal: { code: "insufficient_funds" } });
  });

  it("keeps a hold past validBefore by this process's clock: the chain's clock, which may run behind, decides", async () => {
    const payer = await payerHolding(price);
    const chainNowS = (await gw.chain.publicClient.getBlock({ blockTag: "latest" })).timestamp;
    // This process's clock set to the chain's, then 40 s ahead of it: A's validBefore (chain time + 30 s) is past
    // here, not on the chain, which could still mine A.
    let aheadMs = Number(chainNowS) * 1000 - Date.now();
    const x402 = scheme({ nowMs: () => Date.now() + aheadMs });
    const a = await payer.pay(x402, { validBefore: chainNowS + 30n });
    if (a.kind !== "paid") throw new Error(`not paid: ${JSON.stringify(a)}`);
    aheadMs += 40_000;
    expect(await payer.pay(x402, { validBefore: chainNowS + 300n })).toMatchObject({
      kind: "refused",
      refusal: { code: "insufficient_funds" },
    });
    await a.complete({ served: false });
  });

  it("keeps the hold of a claim whose give-back failed until it lapses: the claim stays, and so does its authorization's", async () => {
    // Nothing was sent for A, but its claim is still there (a give-back that failed): the authorization cannot pay
    // through the gateway, though anyone holding it could still submit it to the token until validBefore. Its payer's
    // balance stays held until A lapses, a minute past its validBefore by this process's clock.
    const payer = await payerHolding(price);
    const chainNowS = (await gw.chain.publicClient.getBlock({ blockTag: "latest" })).timestamp;
    let aheadMs = Number(chainNowS) * 1000 - Date.now();
    const intercepted = interceptedDb();
    const x402 = scheme({ db: intercepted.db, nowMs: () => Date.now() + aheadMs });
    const a = await payer.pay(x402, { validBefore: chainNowS + 30n });
    if (a.kind !== "paid") throw new Error(`not paid: ${JSON.stringify(a)}`);
    intercepted.fail("DELETE FROM x402_authorizations");
    await expect(a.complete({ served: false })).rejects.toThrow(/injected/);
    const later = { validBefore: chainNowS + 300n };
    expect(await payer.pay(x402, later)).toMatchObject({
      kind: "refused",
      refusal: { code: "insufficient_funds" },
    });
    aheadMs += 89_000; // A's validBefore + 59 s: not lapsed yet
    expect((await payer.pay(x402, later)).kind).toBe("refused");
    aheadMs += 2_000;
    const b = await payer.pay(x402, later);
    expect(b.kind, JSON.stringify(b)).toBe("paid");
    if (b.kind === "paid") await b.complete({ served: false });
  });

  it("weighs a payer's payments across two gateway processes: one balance's worth runs a route", async () => {
    // Two schemes on one database are what two gateway processes run. A payer holding one price sends one
    // authorization to each: the second must be refused before its route runs, as it is on one process.
    const payer = await payerHolding(price);
    const first = scheme();
    const second = scheme();
    const a = await payer.pay(first);
    if (a.kind !== "paid") throw new Error(`not paid: ${JSON.stringify(a)}`);
    expect(await payer.pay(second)).toMatchObject({
      kind: "refused",
      refusal: { code: "insufficient_funds" },
    });
    // Given back on the first, the balance is free on the second.
    await a.complete({ served: false });
    const b = await payer.pay(second);
    expect(b.kind, JSON.stringify(b)).toBe("paid");
    if (b.kind === "paid") await b.complete({ served: false });
  });
});
