// The official x402 SDK for Python (PyPI `x402`, scripts/python-x402.ts), another implementation of the protocol than
// the npm packages (its own header codec, EIP-712 encoding, spend controls and pydantic models of every answer):
// - its client pays Switchyard's paywall, as a Python program would: its httpx transport reads PAYMENT-REQUIRED,
//   signs an EIP-3009 authorization with eth_account and sends it in PAYMENT-SIGNATURE. The seller is credited
//   once, the receipt names the transaction, and the same payment sent again is refused with a stable code;
// - its resource server uses Switchyard as its facilitator (HTTPFacilitatorClient on /v1/x402, the tenant's key):
//   /supported, verify and settle read by its models, the tenant's account credited once, a settle retried answered
//   the same transaction.
import { execFile } from "node:child_process";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { promisify } from "node:util";
import Fastify, { type FastifyInstance } from "fastify";
import { getAddress } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testUsdAbi } from "../../adapters/evm/index.ts";
import { switchyardPaywall } from "../../gateway/paywall/index.ts";
import { ensurePythonX402 } from "../../scripts/python-x402.ts";
import { ledgerInvariantProblems } from "../support/ledger-invariants.ts";
import { type Gateway, startGateway } from "./support.ts";

const run = promisify(execFile);
const payScript = path.join(import.meta.dirname, "x402-python-pay.py");
const facilitatorScript = path.join(import.meta.dirname, "x402-python-facilitator.py");
/** The scripts read the payer's key from the environment, not from a command line every process may list. */
const withPayerKey = (key: string) => ({ ...process.env, X402_PAYER_KEY: key });

type PythonPaid = {
  status: number;
  body: string;
  receipt: { success: boolean; transaction: string; network: string; payer: string; amount: string } | null;
  signature: string | null;
};

type PythonSettled = {
  success: boolean;
  transaction: string;
  network: string;
  payer: string;
  amount?: string;
};
type PythonFacilitated = {
  kind: {
    x402Version: number;
    scheme: string;
    network: string;
    extra: { payTo: string; asset: string; name?: string; version?: string };
  };
  nonce: string;
  verified: { isValid: boolean; payer: string; invalidReason?: string };
  settled: PythonSettled;
  settled_again: PythonSettled;
};

describe("x402 v2, the official Python SDK (PyPI x402)", () => {
  let gw: Gateway;
  let gatewayUrl: string;
  let shop: FastifyInstance;
  let base: string;
  let python: string;
  let seller: string;
  let served = 0;

  beforeAll(async () => {
    // Under CI a missing python3 or package index fails here, as a missing PostgreSQL would: never a skip.
    [{ python }, gw] = await Promise.all([ensurePythonX402(), startGateway()]);
    await gw.app.server.listen({ port: 0, host: "127.0.0.1" });
    gatewayUrl = `http://127.0.0.1:${(gw.app.server.server.address() as AddressInfo).port}`;
    seller = (await gw.merchantAccount("seller of /py-report")).id;
    const created = await gw.call("POST", "/v1/paywalls", {
      resource: "/py-report",
      description: "a report paid from Python",
      price: { amount: "0.01", asset: "USD" },
      offers: [{ scheme: "x402", rail: "evm" }],
      accounts: [seller],
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    shop = Fastify();
    await shop.register(switchyardPaywall, { paywall: gw.app.paywalls.forTenant(gw.app.demo!.tenantId) });
    shop.get("/py-report", async () => {
      served += 1;
      return { report: "the goods, for Python" };
    });
    base = await shop.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => {
    await shop?.close();
    await gw?.app.close();
  });

  const postedOf = async (account: string) =>
    BigInt((await gw.call("GET", `/v1/accounts/${account}/balance`)).body.posted.replace(".", ""));
  const sellerPosted = () => postedOf(seller);
  /** Waits up to 15 s for `account`'s posted balance to leave `before` (the booking may follow the answer). */
  async function postedAfter(account: string, before: bigint): Promise<bigint> {
    const deadline = Date.now() + 15_000;
    while ((await postedOf(account)) === before && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    return postedOf(account);
  }

  /** The Python client's one paid GET of `url`, allowed only TestUSD on the embedded chain, up to 0.1 TestUSD. */
  async function payFromPython(url: string): Promise<PythonPaid> {
    const payer = gw.app.demo!.chains[0]!.payer!;
    const { stdout } = await run(
      python,
      [payScript, url, `eip155:${gw.chain.chain.id}`, gw.chain.contracts.testUsd, "100000"],
      { timeout: 90_000, env: withPayerKey(payer.privateKey) },
    );
    return JSON.parse(stdout) as PythonPaid;
  }

  it("its client pays the paywall: served once and credits the seller once, the receipt naming the transaction; the payment sent again is refused", async () => {
    const before = await sellerPosted();
    const paid = await payFromPython(`${base}/py-report`);

    expect(paid.status, paid.body).toBe(200);
    expect(JSON.parse(paid.body)).toEqual({ report: "the goods, for Python" });
    expect(served).toBe(1);
    const payer = gw.app.demo!.chains[0]!.payer!;
    expect(paid.receipt).toMatchObject({
      success: true,
      network: `eip155:${gw.chain.chain.id}`,
      amount: "10000",
    });
    expect(paid.receipt!.payer.toLowerCase()).toBe(payer.address.toLowerCase());
    expect(paid.receipt!.transaction).toMatch(/^0x[0-9a-f]{64}$/);
    const mined = await gw.chain.publicClient.getTransactionReceipt({
      hash: paid.receipt!.transaction as `0x${string}`,
    });
    expect(mined.status).toBe("success");

    // 0.01 USD at the peg is 10 000 µUSDC, credited once (the settlement's booking may follow the receipt).
    expect((await postedAfter(seller, before)) - before).toBe(10_000n);

    expect(paid.signature).not.toBeNull();
    const replay = await fetch(`${base}/py-report`, { headers: { "PAYMENT-SIGNATURE": paid.signature! } });
    expect(replay.status).toBe(402);
    const refusal = ((await replay.json()) as { error: string }).error;
    expect(refusal).toMatch(/^[a-z0-9_]+$/);
    expect(served).toBe(1);
    await new Promise((r) => setTimeout(r, 500));
    expect((await sellerPosted()) - before).toBe(10_000n);
    expect(await ledgerInvariantProblems(gw.app.db)).toEqual([]);
  });

  it("its resource server settles through Switchyard as facilitator: verified, settled once, a retried settle answered the same", async () => {
    const merchant = (await gw.merchantAccount("merchant of a Python resource server")).id;
    const token = getAddress(gw.chain.contracts.testUsd);
    const read = (functionName: "name" | "version") =>
      gw.chain.publicClient.readContract({ address: token, abi: testUsdAbi, functionName });
    const [name, version] = await Promise.all([read("name"), read("version")]);
    const payer = gw.app.demo!.chains[0]!.payer!;
    const network = `eip155:${gw.chain.chain.id}`;
    const before = await postedOf(merchant);
    const payerBefore = await gw.tokenBalance(payer.address);

    // The token's name and version are not given: the script builds its requirements from /supported's kind alone.
    const { stdout } = await run(
      python,
      [facilitatorScript, `${gatewayUrl}/v1/x402`, gw.key, merchant, network, token, "10000"],
      { timeout: 90_000, env: withPayerKey(payer.privateKey) },
    );
    const facilitated = JSON.parse(stdout) as PythonFacilitated;

    expect(facilitated.kind).toMatchObject({ x402Version: 2, scheme: "exact", network });
    expect(getAddress(facilitated.kind.extra.asset)).toBe(token);
    expect(facilitated.kind.extra).toMatchObject({ name, version });
    expect(facilitated.verified).toMatchObject({ isValid: true });
    expect(facilitated.verified.payer.toLowerCase()).toBe(payer.address.toLowerCase());
    expect(facilitated.settled).toMatchObject({ success: true, network, amount: "10000" });
    expect(facilitated.settled.transaction).toMatch(/^0x[0-9a-f]{64}$/);
    expect(facilitated.settled_again).toEqual(facilitated.settled);
    const mined = await gw.chain.publicClient.getTransactionReceipt({
      hash: facilitated.settled.transaction as `0x${string}`,
    });
    expect(mined.status).toBe("success");
    expect(getAddress(mined.to!)).toBe(token);

    // Paid to the facilitator's payTo once, credited to the tenant's account once: the retried settle sent nothing.
    expect((await postedAfter(merchant, before)) - before).toBe(10_000n);
    expect(payerBefore - (await gw.tokenBalance(payer.address))).toBe(10_000n);
    const [authorizations] = await gw.app.db.query<{ count: string }>(
      "SELECT count(*)::text AS count FROM x402_authorizations WHERE nonce = $1",
      [facilitated.nonce.toLowerCase()],
    );
    expect(authorizations!.count).toBe("1");
    await new Promise((r) => setTimeout(r, 500));
    expect((await postedOf(merchant)) - before).toBe(10_000n);
    expect(await ledgerInvariantProblems(gw.app.db)).toEqual([]);
  });
});
