// The official x402 client for Python (PyPI `x402`, scripts/python-x402.ts) pays Switchyard's paywall, as a Python
// program would: its httpx transport reads PAYMENT-REQUIRED, signs an EIP-3009 authorization with eth_account and
// sends it again in PAYMENT-SIGNATURE. Another implementation of the protocol than @x402/fetch's (its own header
// codec, EIP-712 encoding and spend controls): the seller is credited once, the receipt names the transaction, and
// the Python client's payment sent again is refused with a stable code.
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { switchyardPaywall } from "../../gateway/paywall/index.ts";
import { ensurePythonX402 } from "../../scripts/python-x402.ts";
import { ledgerInvariantProblems } from "../support/ledger-invariants.ts";
import { type Gateway, startGateway } from "./support.ts";

const run = promisify(execFile);
const payScript = path.join(import.meta.dirname, "x402-python-pay.py");

type PythonPaid = {
  status: number;
  body: string;
  receipt: { success: boolean; transaction: string; network: string; payer: string; amount: string } | null;
  signature: string | null;
};

describe("x402 v2, the official Python client (PyPI x402), pays the paywall", () => {
  let gw: Gateway;
  let shop: FastifyInstance;
  let base: string;
  let python: string;
  let seller: string;
  let served = 0;

  beforeAll(async () => {
    // Under CI a missing python3 or package index fails here, as a missing PostgreSQL would: never a skip.
    [{ python }, gw] = await Promise.all([ensurePythonX402(), startGateway()]);
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

  const sellerPosted = async () =>
    BigInt((await gw.call("GET", `/v1/accounts/${seller}/balance`)).body.posted.replace(".", ""));

  /** The Python client's one paid GET of `url`, allowed only TestUSD on the embedded chain, up to `cap` (atomic). */
  async function payFromPython(url: string, cap = "100000"): Promise<PythonPaid> {
    const payer = gw.app.demo!.chains[0]!.payer!;
    const { stdout } = await run(
      python,
      [payScript, url, payer.privateKey, `eip155:${gw.chain.chain.id}`, gw.chain.contracts.testUsd, cap],
      { timeout: 90_000 },
    );
    return JSON.parse(stdout) as PythonPaid;
  }

  it("is served once and credits the seller once, the receipt naming the transaction; the payment sent again is refused", async () => {
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
    const deadline = Date.now() + 15_000;
    while ((await sellerPosted()) === before && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    expect((await sellerPosted()) - before).toBe(10_000n);

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
});
