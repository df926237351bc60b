// Micro-payouts whose gas would eat their value accrue in the ledger and leave together in one settleBatch.

import { erc20Abi } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { divCeil } from "../../core/index.ts";
import { type App, createApp } from "../../gateway/app.ts";
import { derivedLedgerId } from "../../gateway/ids/index.ts";
import { flushNetting, recoverOpenAttempts } from "../../gateway/payments/index.ts";
import { typedClient } from "../support/api.ts";
import { installBlacklist } from "../support/blacklisting-token.ts";
import { testConfig } from "../support/config.ts";
import { latch } from "../support/latch.ts";

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

/** A payout of 0.01 USDC from the demo customer to `address`, accepted (202) to accrue: its payment's id. */
async function pay(address: `0x${string}`) {
  const response = await typedClient(app).POST("/v1/payments", {
    body: {
      amount: "0.01",
      asset: "USDC",
      source: { account: "acct_demo_customer" },
      destination: { type: "evm_address" as const, address },
    },
  });
  expect(response.error ?? null).toBeNull();
  expect(response.response.status).toBe(202);
  return response.data!.id;
}

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
    // Each payout's end is told once, with the rail the batch paid it on.
    const told = await app.db.query<{ type: string; payment_id: string; rail: string; amount: string }>(
      `SELECT type, payload->>'payment_id' AS payment_id, payload->>'rail' AS rail, payload->>'amount' AS amount
       FROM events WHERE payload->>'payment_id' = ANY($1::text[])`,
      [ids],
    );
    expect(told.map((event) => event.payment_id).sort()).toEqual([...ids].sort());
    for (const event of told)
      expect(event).toMatchObject({ type: "payment.succeeded", rail: "evm", amount: "10000" });

    // A second flush finds nothing to send.
    expect(await flushNetting(app.payments.netting!, { force: true })).toMatchObject({ batches: 0 });
    const [payable] = await app.db.query<{ ledger_account_id: string }>(
      "SELECT ledger_account_id::text FROM accounts WHERE kind = 'payable'",
    );
    const [account] = await app.ledger.lookupAccounts([BigInt(payable!.ledger_account_id)]);
    expect(account!.creditsPosted - account!.debitsPosted).toBe(0n);
  });

  it("books the batch's gas, from the rail's fee account out of the hot wallet's, once", async () => {
    const payee = "0x7777777777777777777777777777777777777777" as const;
    await pay(payee);
    expect(await flushNetting(app.payments.netting!, { force: true })).toMatchObject({ batches: 1 });
    const [batch] = await app.db.query<{ id: string; tx_hash: `0x${string}` }>(
      "SELECT id, evidence->>'txHash' AS tx_hash FROM netting_batches WHERE status = 'succeeded' ORDER BY created_at DESC LIMIT 1",
    );
    const receipt = await app.chain!.publicClient.getTransactionReceipt({ hash: batch!.tx_hash });
    const gasGwei = divCeil(receipt.gasUsed * receipt.effectiveGasPrice, 1_000_000_000n);
    // Before: a batch's gas was never booked, and the ledger showed the wallet holding gas it had spent.
    const [booked] = await app.ledger.lookupTransfers([derivedLedgerId(batch!.id, "native-fee-paid")]);
    expect(booked?.amount).toBe(gasGwei);
    const [wallet] = await app.db.query<{ ledger_account_id: string }>(
      "SELECT ledger_account_id::text FROM accounts WHERE kind = 'clearing' AND rail = 'evm' AND asset = 'ETH'",
    );
    expect(booked?.creditAccountId).toBe(BigInt(wallet!.ledger_account_id));
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

  it.each([
    ["this process's recovery", false],
    ["the recovery of a process without netting", true],
  ] as const)(
    "a payment whose request is on its way to its accrual is never paid on its own as well (%s)",
    async (_, withoutNetting) => {
      const netting = app.payments.netting!;
      const ledger = netting.ledger;
      const payee = withoutNetting
        ? ("0x2222222222222222222222222222222222222222" as const)
        : ("0x1111111111111111111111111111111111111111" as const);
      const before = await tokenBalance(payee);
      const customerBefore = await balance("acct_demo_customer");
      // The request's accrual waits (its payment written, processing, nothing accrued) while another process's
      // recovery runs at start (quiet time 0).
      const held = latch();
      const reached = latch();
      let first = true;
      netting.ledger = new Proxy(ledger, {
        get(target, key) {
          if (key === "createTransfersWith" && first)
            return async (...args: Parameters<typeof ledger.createTransfersWith>) => {
              first = false;
              reached.release();
              await held.done;
              return target.createTransfersWith(...args);
            };
          const value = Reflect.get(target, key, target);
          return typeof value === "function" ? value.bind(target) : value;
        },
      });
      try {
        const request = typedClient(app).POST("/v1/payments", {
          body: {
            amount: "0.01",
            asset: "USDC",
            source: { account: "acct_demo_customer" },
            destination: { type: "evm_address" as const, address: payee },
          },
        });
        await reached.done;
        // Before: recovery paid it alone on chain; without netting there, it still does not weigh the fee.
        await recoverOpenAttempts(withoutNetting ? { ...app.payments, netting: undefined } : app.payments, {
          quietMs: 0,
        });
        held.release();
        const response = await request;
        expect(response.response.status).toBe(202);
        const id = response.data!.id;
        // Before: recovery paid it alone on chain (an attempt), and the request then accrued it for the batch too.
        const attempts = await app.db.query("SELECT 1 FROM attempts WHERE payment_id = $1", [id]);
        expect(attempts).toEqual([]);
        const queued = await app.db.query("SELECT 1 FROM netted_payouts WHERE payment_id = $1", [id]);
        expect(queued).toHaveLength(1);
        const customerAfter = await balance("acct_demo_customer");
        expect(
          BigInt(customerBefore.posted.replace(".", "")) - BigInt(customerAfter.posted.replace(".", "")),
        ).toBe(10_000n);
        expect(await flushNetting(netting, { force: true })).toMatchObject({ payouts: 1 });
        expect((await tokenBalance(payee)) - before).toBe(10_000n);
      } finally {
        netting.ledger = ledger;
      }
    },
  );
});

describe("netting, a payee the token refuses", () => {
  // Blacklisted by the token (as USDC blacklists an address: test/support/blacklisting-token.ts): every settleBatch
  // that pays it reverts in gas estimation, whoever else is in the batch.
  const refusedPayee = "0x6666666666666666666666666666666666666666" as const;
  const payees = [
    "0x4444444444444444444444444444444444444444",
    "0x5555555555555555555555555555555555555555",
  ] as const;

  beforeAll(async () => {
    const token = await installBlacklist(app.chain!);
    await token.blacklist(refusedPayee);
  });

  const paymentOf = async (id: string) =>
    (await typedClient(app).GET("/v1/payments/{id}", { params: { path: { id } } })).data!;
  const posted = async (account: string) => BigInt((await balance(account)).posted.replace(".", ""));

  it("does not hold back the other payees of its batch: they are paid, its payouts fail and their money goes back", async () => {
    const before = await Promise.all(payees.map(tokenBalance));
    const customerBefore = await posted("acct_demo_customer");
    const paid = [await pay(payees[0]), await pay(payees[1])];
    const refused = [await pay(refusedPayee), await pay(refusedPayee)];

    const flushed = await flushNetting(app.payments.netting!, { force: true });
    // Before: the one batch was refused as a whole, every payout went back in the queue, and nobody was paid.
    const after = await Promise.all(payees.map(tokenBalance));
    expect(after.map((balance, i) => balance - before[i]!)).toEqual([10_000n, 10_000n]);
    // The refused batch (all four payouts), then the one that paid the other two: at once, not a pause later.
    expect(flushed).toMatchObject({ batches: 2, payouts: 6, refused: 2 });
    for (const id of paid) expect((await paymentOf(id)).status).toBe("succeeded");
    for (const id of refused)
      expect(await paymentOf(id)).toMatchObject({
        status: "failed",
        failure: {
          code: "rejected",
          message: `a payout to ${refusedPayee} alone reverts: Blacklistable: account is blacklisted`,
        },
      });
    // The refused payouts' money is the payer's again; only what was paid left.
    expect(customerBefore - (await posted("acct_demo_customer"))).toBe(20_000n);
    const events = await app.db.query<{ payment_id: string; failure_code: string }>(
      `SELECT payload->>'payment_id' AS payment_id, payload->>'failure_code' AS failure_code FROM events
       WHERE type = 'payment.failed' AND payload->>'payment_id' = ANY($1::text[])`,
      [refused],
    );
    expect(events.map((event) => event.payment_id).sort()).toEqual([...refused].sort());
    expect(events.map((event) => event.failure_code)).toEqual(refused.map(() => "rejected"));

    // Nothing is left queued, the payable account is square, and the rail is not paused for the refusal.
    expect(await app.db.query("SELECT 1 FROM netted_payouts WHERE batch_id IS NULL")).toEqual([]);
    const [payable] = await app.db.query<{ ledger_account_id: string }>(
      "SELECT ledger_account_id::text FROM accounts WHERE kind = 'payable'",
    );
    const [account] = await app.ledger.lookupAccounts([BigInt(payable!.ledger_account_id)]);
    expect(account!.creditsPosted - account!.debitsPosted).toBe(0n);
    const next = await pay(payees[0]);
    expect(await flushNetting(app.payments.netting!)).toMatchObject({ batches: 0 }); // not due: the timer runs
    expect(await flushNetting(app.payments.netting!, { force: true })).toMatchObject({
      batches: 1,
      payouts: 1,
    });
    expect((await paymentOf(next)).status).toBe("succeeded");
  });
});
