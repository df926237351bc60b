// Paying a payee through the HTTP API: every rail that reaches one of its methods competes, the route lists each
// candidate with the method it pays, and the cheapest pays once; a method no payment from the source can reach (an
// account in another asset, the payer's own) is left out. On PGlite with the embedded chain (the EVM rail) and the
// internal rails.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RequestBody } from "../../client/index.ts";
import { assets } from "../../core/index.ts";
import { createAccount } from "../../gateway/accounts/index.ts";
import { createApiKey, createTenant } from "../../gateway/tenants/index.ts";
import { errorOf, startTestGateway, type TestGateway } from "./support.ts";

let gw: TestGateway;
let address: `0x${string}`;

beforeAll(async () => {
  gw = await startTestGateway();
  address = gw.app.demo!.payee!;
});
afterAll(async () => {
  await gw?.app.close();
});

async function payee(methods: RequestBody<"/v1/payees", "post">["methods"]): Promise<string> {
  const created = await gw.client.POST("/v1/payees", { body: { name: "Payee", methods } });
  expect(created.response.status).toBe(201);
  return created.data!.id;
}

const pay = (payeeId: string, extra: Partial<RequestBody<"/v1/payments", "post">> = {}) =>
  gw.client.POST("/v1/payments", {
    body: {
      amount: "2",
      asset: "USDC",
      source: { account: "acct_demo_customer" },
      destination: { type: "payee", payee: payeeId },
      ...extra,
    },
  });

async function balanceOf(account: string): Promise<string> {
  const answer = await gw.client.GET("/v1/accounts/{id}/balance", { params: { path: { id: account } } });
  expect(answer.response.status).toBe(200);
  return answer.data!.posted;
}

describe("payments to a payee", () => {
  it("ranks every rail that reaches a method; the internal account wins and nothing goes on chain", async () => {
    const id = await payee([
      { type: "evm_address", address },
      { type: "account", account: "acct_demo_merchant" },
    ]);
    const merchantBefore = await balanceOf("acct_demo_merchant");
    const payeeTokensBefore = await gw.tokenBalance(address);
    const response = await pay(id);
    expect(response.response.status).toBe(201);
    expect(response.data!).toMatchObject({
      status: "succeeded",
      rail: "internal-usdc",
      destination: { type: "payee", payee: id },
    });
    const candidates = response.data!.route!.candidates;
    expect(candidates.map((c: { rail: string }) => c.rail)).toEqual(["internal-usdc", "evm"]);
    expect(candidates[0]!.destination).toEqual({ type: "account", account: "acct_demo_merchant" });
    expect(candidates[1]!.destination).toEqual({ type: "evm_address", address });
    expect(BigInt(candidates[1]!.cost.fee_usd.replace(".", ""))).toBeGreaterThan(0n);
    expect(
      BigInt((await balanceOf("acct_demo_merchant")).replace(".", "")) -
        BigInt(merchantBefore.replace(".", "")),
    ).toBe(2_000_000n);
    expect(await gw.tokenBalance(address)).toBe(payeeTokensBefore);
    const fetched = await gw.client.GET("/v1/payments/{id}", { params: { path: { id: response.data!.id } } });
    expect(fetched.data!).toEqual(response.data!);
  });

  it("a payee's account in another asset is left out: the address is paid on chain, with no failed attempt first", async () => {
    // The payee's account holds BTC: the internal USDC rail cannot move USDC into it. It used to be ranked first
    // (no fee) and fail at the ledger before the EVM rail paid; test/routing shows a fallback across kinds.
    const btc = await createAccount(
      { sql: gw.app.db, ledger: gw.app.ledger },
      { tenantId: gw.app.demo!.tenantId, kind: "merchant", asset: assets.BTC, name: "BTC merchant" },
    );
    const id = await payee([
      { type: "account", account: btc.id },
      { type: "evm_address", address },
    ]);
    const tokensBefore = await gw.tokenBalance(address);
    const response = await pay(id);
    expect(response.response.status).toBe(201);
    expect(response.data!).toMatchObject({ status: "succeeded", rail: "evm" });
    expect(response.data!.attempts.map((a: { rail: string; status: string }) => [a.rail, a.status])).toEqual([
      ["evm", "succeeded"],
    ]);
    expect((await gw.tokenBalance(address)) - tokensBefore).toBe(2_000_000n);
  });

  it("an address that names another chain is out of every rail's reach", async () => {
    const id = await payee([{ type: "evm_address", address, chain_id: 999_999 }]);
    const response = await pay(id);
    expect(response.response.status).toBe(422);
    expect(errorOf(response).code).toBe("no_route");
    expect(errorOf(response).route.excluded).toContainEqual(
      expect.objectContaining({ rail: "evm", reason: "unreachable_destination" }),
    );
  });

  it("the payment's constraints still apply: denying the internal rail pays the address on chain", async () => {
    const id = await payee([
      { type: "account", account: "acct_demo_merchant" },
      { type: "evm_address", address },
    ]);
    const response = await pay(id, { constraints: { rails: { deny: ["internal-usdc"] } } });
    expect(response.response.status).toBe(201);
    expect(response.data!.rail).toBe("evm");
  });

  it("a fee cap no rail can meet is refused as fee_above_max before anything is written or sent", async () => {
    const id = await payee([{ type: "evm_address", address }]);
    const [before] = await gw.app.db.query<{ count: string }>("SELECT count(*)::text AS count FROM payments");
    const response = await pay(id, { constraints: { max_fee_usd: "0.000001" } });
    expect(response.response.status).toBe(402);
    expect(errorOf(response).code).toBe("fee_above_max");
    expect(errorOf(response).route.excluded).toContainEqual(
      expect.objectContaining({ rail: "evm", reason: "fee_above_max" }),
    );
    const [after] = await gw.app.db.query<{ count: string }>("SELECT count(*)::text AS count FROM payments");
    expect(after?.count).toBe(before?.count);
  });

  it("leaves out an account method no payment from this source can reach: another asset, the payer's own account", async () => {
    const btc = await gw.client.POST("/v1/accounts", { body: { asset: "BTC", kind: "merchant" } });
    expect(btc.response.status).toBe(201);
    const countPayments = async () =>
      (await gw.app.db.query<{ count: string }>("SELECT count(*)::text AS count FROM payments"))[0]!.count;
    const before = await countPayments();
    // Before: the internal USDC rail was chosen for each, and the payment failed rejected at the ledger (402),
    // written as failed; a quote to the first was offered and then used up by the failure.
    for (const [account, code] of [
      [btc.data!.id, "asset_mismatch"],
      ["acct_demo_customer", "same_account"],
    ] as const) {
      const id = await payee([{ type: "account", account }]);
      const paid = await pay(id);
      expect(paid.response.status).toBe(400);
      expect(errorOf(paid)).toMatchObject({ code, param: "destination.payee" });
    }
    const quote = await gw.client.POST("/v1/quotes", {
      body: {
        amount: "2",
        asset: "USDC",
        destination: { type: "payee", payee: await payee([{ type: "account", account: btc.data!.id }]) },
      },
    });
    expect(quote.response.status).toBe(400);
    expect(errorOf(quote).code).toBe("asset_mismatch");
    expect(await countPayments()).toBe(before);
    // With a method that can be paid beside them, that one pays.
    const mixed = await payee([
      { type: "account", account: btc.data!.id },
      { type: "account", account: "acct_demo_merchant" },
    ]);
    const paid = await pay(mixed);
    expect(paid.response.status).toBe(201);
    expect(paid.data!.status).toBe("succeeded");
  });

  it("another tenant's payee is not found, and nothing is written", async () => {
    const id = await payee([{ type: "evm_address", address }]);
    const tenant = await createTenant(gw.app.db, { name: "Other" });
    const key = (await createApiKey(gw.app.db, { tenantId: tenant.id, mode: "test" })).secret;
    const response = await gw.clientFor(key).POST("/v1/payments", {
      body: {
        amount: "1",
        asset: "USDC",
        source: { account: "acct_demo_customer" },
        destination: { type: "payee", payee: id },
      },
    });
    // Named in the body, not the path: 400, as Stripe answers resource_missing for a parameter.
    expect(response.response.status).toBe(400);
    expect(["account_not_found", "payee_not_found"]).toContain(errorOf(response).code);
  });
});
