import { erc20Abi, parseEventLogs } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApiKey, createTenant } from "../../gateway/tenants/index.ts";
import { errorOf, startTestGateway, type TestGateway } from "./support.ts";

describe.each(["pglite", "postgres"] as const)("on %s", (database) => {
  let gw: TestGateway;
  let payee: `0x${string}`;

  beforeAll(async () => {
    gw = await startTestGateway({ database });
    payee = gw.app.demo!.payee!;
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  async function balance(account: string) {
    const response = await gw.client.GET("/v1/accounts/{id}/balance", { params: { path: { id: account } } });
    expect(response.response.status).toBe(200);
    return response.data!;
  }

  describe("a stablecoin payment end to end", () => {
    it("pays on the EVM rail, records the evidence and moves the ledger by exactly the amount", async () => {
      const before = await balance("acct_demo_customer");
      const payeeBefore = await gw.tokenBalance(payee);
      const response = await gw.client.POST("/v1/payments", {
        body: {
          amount: "1.25",
          asset: "USDC",
          source: { account: "acct_demo_customer" },
          destination: { type: "evm_address", address: payee },
        },
      });
      expect(response.response.status).toBe(201);
      const payment = response.data!;
      expect(payment).toMatchObject({
        object: "payment",
        status: "succeeded",
        amount: "1.250000",
        asset: "USDC" as const,
        rail: "evm",
      });
      expect(payment.route!.chosen).toBe("evm");
      expect(payment.route!.excluded).toContainEqual(
        expect.objectContaining({ rail: "internal-usdc", reason: "unreachable_destination" }),
      );
      const attempt = payment.attempts[0]!;
      expect(attempt.status).toBe("succeeded");
      // The EVM rail's evidence: the transaction and the Transfer log's index in it.
      const evidence = attempt.evidence as { tx_hash: `0x${string}`; log_index: number };
      expect(evidence.tx_hash).toMatch(/^0x[0-9a-f]{64}$/);

      // The chain agrees: the receipt has the Transfer log named as evidence, and the payee holds exactly 1.25 more.
      const receipt = await gw.app.chain!.publicClient.getTransactionReceipt({
        hash: evidence.tx_hash,
      });
      const log = parseEventLogs({ abi: erc20Abi, eventName: "Transfer", logs: receipt.logs }).find(
        (l) => l.logIndex === evidence.log_index,
      );
      expect(log?.args.value).toBe(1_250_000n);
      expect(log?.args.to.toLowerCase()).toBe(payee.toLowerCase());
      expect((await gw.tokenBalance(payee)) - payeeBefore).toBe(1_250_000n);

      // The payer pays the amount and the gas the receipt shows (gwei, rounded up, at 3 µUSD a gwei), within
      // the payment's fee cap; nothing stays held.
      const after = await balance("acct_demo_customer");
      const gasGwei = (receipt.gasUsed * receipt.effectiveGasPrice + 999_999_999n) / 1_000_000_000n;
      const cap = BigInt(payment.route!.candidates[0]!.fee_cap_usd.replace(".", ""));
      const charged = gasGwei * 3n < cap ? gasGwei * 3n : cap;
      expect(charged).toBeGreaterThan(0n);
      expect(BigInt(before.posted.replace(".", "")) - BigInt(after.posted.replace(".", ""))).toBe(
        1_250_000n + charged,
      );
      expect(after.pending_out).toBe("0.000000");

      const fetched = await gw.client.GET("/v1/payments/{id}", { params: { path: { id: payment.id } } });
      expect(fetched.response.status).toBe(200);
      expect(fetched.data!).toEqual(payment);

      // The ledger's posting carries the chain evidence.
      const [row] = await gw.app.db.query<{ evidence: { rail: string; reference: string } }>(
        "SELECT evidence FROM ledger_transfers WHERE evidence IS NOT NULL AND evidence->>'reference' LIKE $1",
        [`${evidence.tx_hash}:%`],
      );
      expect(row?.evidence.reference).toBe(`${evidence.tx_hash}:${evidence.log_index}`);
    });

    it("moves money between two accounts of the tenant on the internal rail, with nothing sent on chain", async () => {
      // A merchant account of its own: the demo merchant is paid by other tests too (in any order), so its balance
      // would not be exactly this payment.
      const created = await gw.client.POST("/v1/accounts", { body: { asset: "USDC", kind: "merchant" } });
      expect(created.response.status).toBe(201);
      const merchant = created.data!.id;
      const nonce = await gw.hotWalletNonce();
      const merchantBefore = await balance(merchant);
      const response = await gw.client.POST("/v1/payments", {
        body: {
          amount: "0.000001",
          asset: "USDC",
          source: { account: "acct_demo_customer" },
          destination: { type: "account", account: merchant },
        },
      });
      expect(response.response.status).toBe(201);
      expect(response.data!).toMatchObject({ status: "succeeded", rail: "internal-usdc" });
      expect(response.data!.route!.excluded).toContainEqual(
        expect.objectContaining({ rail: "evm", reason: "unreachable_destination" }),
      );
      expect((await balance(merchant)).posted).not.toBe(merchantBefore.posted);
      expect((await balance(merchant)).posted).toBe("0.000001");
      expect(await gw.hotWalletNonce()).toBe(nonce);
    });

    it("answers a repeated Idempotency-Key with the first payment and pays once", async () => {
      const body = {
        amount: "2",
        asset: "USDC" as const,
        source: { account: "acct_demo_customer" },
        destination: { type: "evm_address" as const, address: payee },
      };
      const payeeBefore = await gw.tokenBalance(payee);
      const first = await gw.client.POST("/v1/payments", {
        body,
        params: { header: { "Idempotency-Key": "order-42" } },
      });
      const second = await gw.client.POST("/v1/payments", {
        body,
        params: { header: { "Idempotency-Key": "order-42" } },
      });
      expect(first.response.status).toBe(201);
      expect(second.response.status).toBe(201);
      expect(second.response.headers.get("idempotent-replayed")).toBe("true");
      expect(second.data!.id).toBe(first.data!.id);
      expect((await gw.tokenBalance(payee)) - payeeBefore).toBe(2_000_000n);

      const other = await gw.client.POST("/v1/payments", {
        body: { ...body, amount: "3" },
        params: { header: { "Idempotency-Key": "order-42" } },
      });
      expect(other.response.status).toBe(409);
      expect(errorOf(other).code).toBe("idempotency_key_reused");
      expect((await gw.tokenBalance(payee)) - payeeBefore).toBe(2_000_000n);
    });

    it("refuses a payment above the available balance: 402, no ledger posting, nothing on chain", async () => {
      const transfers = await gw.ledgerTransferCount();
      const nonce = await gw.hotWalletNonce();
      const before = await balance("acct_demo_customer");
      const response = await gw.client.POST("/v1/payments", {
        body: {
          amount: "5000",
          asset: "USDC",
          source: { account: "acct_demo_customer" },
          destination: { type: "account", account: "acct_demo_merchant" },
        },
      });
      expect(response.response.status).toBe(402);
      expect(errorOf(response).code).toBe("insufficient_funds");
      expect(errorOf(response).payment.status).toBe("failed");
      expect(await gw.ledgerTransferCount()).toBe(transfers);
      expect(await gw.hotWalletNonce()).toBe(nonce);
      expect(await balance("acct_demo_customer")).toEqual(before);
    });

    it("does not route to the EVM rail beyond what the hot wallet holds: 422 no_route, nothing written", async () => {
      const transfers = await gw.ledgerTransferCount();
      const response = await gw.client.POST("/v1/payments", {
        body: {
          amount: "900000",
          asset: "USDC",
          source: { account: "acct_demo_customer" },
          destination: { type: "evm_address", address: payee },
        },
      });
      expect(response.response.status).toBe(422);
      expect(errorOf(response).code).toBe("no_route");
      expect(errorOf(response).route.excluded).toContainEqual(
        expect.objectContaining({ rail: "evm", reason: "insufficient_liquidity" }),
      );
      expect(await gw.ledgerTransferCount()).toBe(transfers);
    });
  });

  describe("tenant scoping", () => {
    it("hides one tenant's payments and accounts from another tenant's key", async () => {
      const paid = await gw.client.POST("/v1/payments", {
        body: {
          amount: "0.5",
          asset: "USDC",
          source: { account: "acct_demo_customer" },
          destination: { type: "account", account: "acct_demo_merchant" },
        },
      });
      expect(paid.response.status).toBe(201);
      const other = await createTenant(gw.app.db, { name: "Other" });
      const { secret } = await createApiKey(gw.app.db, { tenantId: other.id, mode: "test" });
      const payment = await gw
        .clientFor(secret)
        .GET("/v1/payments/{id}", { params: { path: { id: paid.data!.id } } });
      expect(payment.response.status).toBe(404);
      expect(errorOf(payment).code).toBe("payment_not_found");
      const account = await gw.clientFor(secret).GET("/v1/accounts/{id}/balance", {
        params: { path: { id: "acct_demo_customer" } },
      });
      expect(account.response.status).toBe(404);
      const spend = await gw.clientFor(secret).POST("/v1/payments", {
        body: {
          amount: "1",
          asset: "USDC",
          source: { account: "acct_demo_customer" },
          destination: { type: "account", account: "acct_demo_merchant" },
        },
      });
      // The body names it: 400, as for an account that does not exist (the path's own object would be 404).
      expect(spend.response.status).toBe(400);
      expect(errorOf(spend)).toMatchObject({ code: "account_not_found", param: "source.account" });
    });
  });
});
