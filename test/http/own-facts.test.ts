// Tenants see only their own facts (issue #22, item 7), on PGlite and on PostgreSQL:
// - a rail short of liquidity is named with its reason, never with the shared hot wallet's balance;
// - a payment to one of the gateway's own addresses (the hot wallet, the RevenueSplitter, the ForwarderFactory,
//   a deposit address issued for an invoice; directly or as a payee's method) is refused 422
//   `destination_is_gateway` before anything is written or sent; a payee's method that is one is refused when the
//   payee is created or updated. Before, a payment of 100 USDC to the hot wallet
//   succeeded: the transfer from the wallet to itself moved no token, while the ledger booked 100 USDC out of the
//   EVM rail's clearing account, which then stood 100 USDC away from what the wallet holds.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assets } from "../../core/index.ts";
import { balanceOf, getClearingAccount } from "../../gateway/accounts/index.ts";
import { startTestGateway, type TestGateway } from "./support.ts";

describe.each(["pglite", "postgres"] as const)("own facts on %s", (database) => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ database });
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  /** What the ledger says the EVM rail's clearing account holds, less what the hot wallet holds on chain. */
  async function ledgerLessChain(): Promise<bigint> {
    const clearing = await getClearingAccount(gw.app.db, { rail: "evm", asset: assets.USDC });
    const [account] = await gw.app.ledger.lookupAccounts([clearing!.ledgerAccountId]);
    const posted = balanceOf("clearing", account!).posted;
    return posted - (await gw.tokenBalance(gw.app.chain!.walletClient.account.address));
  }

  /** Every table's digest but the idempotency records: a refusal is a final answer, stored under its key. */
  async function written(): Promise<Record<string, string>> {
    const { idempotency_keys: _answers, ...rest } = await gw.tableDigests();
    return rest;
  }

  const pay = (destination: Record<string, unknown>, amount = "100") =>
    gw.call("POST", "/v1/payments", {
      body: { amount, asset: "USDC", source: { account: "acct_demo_customer" }, destination },
      headers: { "idempotency-key": `own-${crypto.randomUUID()}` },
    });

  it("names a rail short of liquidity without its balance, in a payment's route and in a quote's", async () => {
    const held = await gw.tokenBalance(gw.app.chain!.walletClient.account.address);
    const destination = { type: "evm_address", address: gw.app.demo!.payee! };
    const body = { amount: "900000", asset: "USDC", destination };
    const quoted = await gw.call("POST", "/v1/quotes", { body });
    const paid = await pay(destination, "900000");
    for (const answer of [quoted, paid]) {
      expect(answer.status).toBe(422);
      expect(answer.body.error.code).toBe("no_route");
      const excluded = answer.body.error.route.excluded.find((e: { rail: string }) => e.rail === "evm");
      expect(excluded).toEqual({
        rail: "evm",
        reason: "insufficient_liquidity",
        detail: "the amount is above what the rail can send now",
      });
      const text = JSON.stringify(answer.body);
      expect(text).not.toContain(held.toString());
      expect(text).not.toContain((held / 1_000_000n).toString());
    }
  });

  it("refuses a payment to the hot wallet's own address: 422, nothing written or sent, the ledger still matches the chain", async () => {
    const hotWallet = gw.app.chain!.walletClient.account.address;
    const gap = await ledgerLessChain();
    const digests = await written();
    const nonce = await gw.hotWalletNonce();
    for (const address of [hotWallet, hotWallet.toLowerCase()]) {
      const answer = await pay({ type: "evm_address", address });
      expect(answer.status).toBe(422);
      expect(answer.body.error).toMatchObject({
        code: "destination_is_gateway",
        param: "destination.address",
      });
    }
    expect(await written()).toEqual(digests);
    expect(await gw.hotWalletNonce()).toBe(nonce);
    expect(await ledgerLessChain()).toBe(gap);
  });

  it("refuses the splitter, the forwarder factory and an invoice's deposit address, on any chain id", async () => {
    const chain = gw.app.chain!;
    const invoice = await gw.client.POST("/v1/invoices", {
      body: { account: gw.app.demo!.merchant.id, asset: "USDC", amount: "3" },
    });
    expect(invoice.response.status).toBe(201);
    const deposit = invoice.data!.instructions.deposit_address!;
    expect(deposit).toMatch(/^0x[0-9a-fA-F]{40}$/);
    const digests = await written();
    const nonce = await gw.hotWalletNonce();
    for (const address of [chain.contracts.splitter, chain.contracts.forwarderFactory, deposit]) {
      for (const destination of [
        { type: "evm_address", address },
        { type: "evm_address", address, chain_id: 31337 },
      ]) {
        const answer = await pay(destination, "1");
        expect(answer.status).toBe(422);
        expect(answer.body.error.code).toBe("destination_is_gateway");
      }
      const quoted = await gw.call("POST", "/v1/quotes", {
        body: { amount: "1", asset: "USDC", destination: { type: "evm_address", address } },
      });
      expect(quoted.status).toBe(422);
      expect(quoted.body.error.code).toBe("destination_is_gateway");
    }
    expect(await written()).toEqual(digests);
    expect(await gw.hotWalletNonce()).toBe(nonce);
  });

  it("refuses a payee method that is the gateway's own address when it is written, created or updated", async () => {
    const hotWallet = gw.app.chain!.walletClient.account.address;
    const digests = await written();
    const created = await gw.call("POST", "/v1/payees", {
      body: {
        name: "Mirror",
        methods: [
          { type: "lightning_address", address: "mirror@example.com" },
          { type: "evm_address", address: hotWallet },
        ],
      },
    });
    expect(created.status).toBe(422);
    expect(created.body.error).toMatchObject({ code: "destination_is_gateway", param: "methods.1" });
    expect(await written()).toEqual(digests);
    const honest = await gw.client.POST("/v1/payees", {
      body: { name: "Honest", methods: [{ type: "lightning_address", address: "honest@example.com" }] },
    });
    expect(honest.response.status).toBe(201);
    const updated = await gw.call("PATCH", `/v1/payees/${honest.data!.id}`, {
      body: {
        methods: [{ type: "evm_address", address: gw.app.chain!.contracts.splitter, chain_id: 31337 }],
      },
    });
    expect(updated.status).toBe(422);
    expect(updated.body.error).toMatchObject({ code: "destination_is_gateway", param: "methods.0" });
    const kept = await gw.client.GET("/v1/payees/{id}", { params: { path: { id: honest.data!.id } } });
    expect(kept.data!.methods).toEqual([{ type: "lightning_address", address: "honest@example.com" }]);
  });

  it("refuses, at payment time, a payee written before its method was checked", async () => {
    const created = await gw.client.POST("/v1/payees", {
      body: { name: "Old mirror", methods: [{ type: "lightning_address", address: "old@example.com" }] },
    });
    expect(created.response.status).toBe(201);
    // As a payee stored before methods were checked when written: its method is the hot wallet.
    const hotWallet = gw.app.chain!.walletClient.account.address;
    await gw.app.db.query("UPDATE payees SET methods = $1 WHERE id = $2", [
      JSON.stringify([{ kind: "evm_address", address: hotWallet }]),
      created.data!.id,
    ]);
    const gap = await ledgerLessChain();
    const digests = await written();
    const answer = await pay({ type: "payee", payee: created.data!.id });
    expect(answer.status).toBe(422);
    expect(answer.body.error).toMatchObject({ code: "destination_is_gateway", param: "destination.payee" });
    expect(await written()).toEqual(digests);
    expect(await ledgerLessChain()).toBe(gap);
  });

  it("still pays an address that is not the gateway's, and the ledger keeps matching the chain", async () => {
    const gap = await ledgerLessChain();
    const answer = await pay({ type: "evm_address", address: gw.app.demo!.payee! }, "2");
    expect(answer.status).toBe(201);
    expect(answer.body.status).toBe("succeeded");
    expect(await ledgerLessChain()).toBe(gap);
  });
});
