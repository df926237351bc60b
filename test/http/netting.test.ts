// Micro-payouts whose gas would eat their value accrue in the ledger and leave together in one settleBatch.

import { erc20Abi } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type App, createApp } from "../../gateway/app.ts";
import { flushNetting } from "../../gateway/payments/index.ts";
import { typedClient } from "../support/api.ts";
import { testConfig } from "../support/config.ts";

let app: App;

beforeAll(async () => {
  app = await createApp(
    testConfig({ LOG_LEVEL: "silent", NETTING_MAX_FEE_SHARE_BPS: "1000", NETTING_INTERVAL_MS: "3600000" }),
  );
});
afterAll(async () => {
  await app?.close();
});

const tokenBalance = (address: `0x${string}`) =>
  app.chain!.publicClient.readContract({
    address: app.chain!.contracts.testUsd,
    abi: erc20Abi,
    functionName: "balanceOf",
    args: [address],
  });

const balance = async (account: string) =>
  (await typedClient(app).GET("/v1/accounts/{id}/balance", { params: { path: { id: account } } })).data!;

describe("netting", () => {
  it("accrues micro-payouts, then settles them per payee in one transaction", async () => {
    const payees = app.chain!.accounts.slice(4, 7).map((account) => account.address);
    const before = await Promise.all(payees.map(tokenBalance));
    const customerBefore = await balance("acct_demo_customer");
    const ids: string[] = [];
    for (const payee of [...payees, ...payees]) {
      const response = await typedClient(app).POST("/v1/payments", {
        body: {
          amount: "0.01",
          asset: "USDC",
          source: { account: "acct_demo_customer" },
          destination: { type: "evm_address" as const, address: payee },
        },
      });
      expect(response.response.status).toBe(202);
      expect(response.data!).toMatchObject({ status: "processing", attempts: [] });
      ids.push(response.data!.id);
    }
    // The payer is debited at once; nothing has left on chain yet.
    const customerAfter = await balance("acct_demo_customer");
    expect(
      BigInt(customerBefore.posted.replace(".", "")) - BigInt(customerAfter.posted.replace(".", "")),
    ).toBe(60_000n);
    expect(await Promise.all(payees.map(tokenBalance))).toEqual(before);

    const flushed = await flushNetting(app.payments.netting!, { force: true });
    expect(flushed).toMatchObject({ batches: 1, payouts: 6, trigger: "timer" });
    const after = await Promise.all(payees.map(tokenBalance));
    expect(after.map((balance, i) => balance - before[i]!)).toEqual([20_000n, 20_000n, 20_000n]); // two payouts of 0.01 each

    const payments = await Promise.all(
      ids.map((id) => typedClient(app).GET("/v1/payments/{id}", { params: { path: { id } } })),
    );
    const hashes = new Set(
      payments.map((p) => (p.data!.attempts[0]?.evidence as { tx_hash?: string } | null)?.tx_hash),
    );
    expect(payments.every((p) => p.data!.status === "succeeded")).toBe(true);
    expect(hashes.size).toBe(1); // one transaction for all six

    // A second flush finds nothing to send.
    expect(await flushNetting(app.payments.netting!, { force: true })).toMatchObject({ batches: 0 });
    const [payable] = await app.db.query<{ ledger_account_id: string }>(
      "SELECT ledger_account_id::text FROM accounts WHERE kind = 'payable'",
    );
    const [account] = await app.ledger.lookupAccounts([BigInt(payable!.ledger_account_id)]);
    expect(account!.creditsPosted - account!.debitsPosted).toBe(0n);
  });

  it("pays a payout worth its fee at once", async () => {
    const response = await typedClient(app).POST("/v1/payments", {
      body: {
        amount: "50",
        asset: "USDC",
        source: { account: "acct_demo_customer" },
        destination: { type: "evm_address", address: app.chain!.accounts[7]!.address },
      },
    });
    expect(response.response.status).toBe(201);
    expect(response.data!.status).toBe("succeeded");
  });
  it("a payee paid on chain nets like an address: the micro-payout to its address method accrues", async () => {
    const payee = app.chain!.accounts[8]!.address;
    const created = await typedClient(app).POST("/v1/payees", {
      body: {
        name: "Tiny",
        methods: [{ type: "evm_address" as const, address: payee }],
      },
    });
    expect(created.response.status).toBe(201);
    const before = await tokenBalance(payee);
    const response = await typedClient(app).POST("/v1/payments", {
      body: {
        amount: "0.01",
        asset: "USDC",
        source: { account: "acct_demo_customer" },
        destination: { type: "payee", payee: created.data!.id },
      },
    });
    expect(response.response.status).toBe(202);
    expect(response.data!).toMatchObject({ status: "processing", attempts: [] });
    const flushed = await flushNetting(app.payments.netting!, { force: true });
    expect(flushed).toMatchObject({ payouts: 1 });
    expect((await tokenBalance(payee)) - before).toBe(10_000n);
  });
});
