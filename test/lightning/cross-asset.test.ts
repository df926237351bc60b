// Paying a BOLT11 invoice (BTC) from a USDC balance: the router prices the Lightning rail with the FX spread,
// the ledger moves the payer's USDC into the FX desk's capital and the desk's BTC out to the Lightning clearing
// account, as one linked chain, with the spread booked as the desk's revenue — every ledger balances — and LND
// pays the invoice once.
import { authenticatedLndGrpc, createInvoice } from "lightning";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { assets } from "../../core/index.ts";
import { getRailAccount, getTenantAccount } from "../../gateway/accounts/index.ts";
import type { App } from "../../gateway/app.ts";
import { derivedLedgerId } from "../../gateway/ids/index.ts";
import { selectLedgerTotals, transferCodes } from "../../gateway/ledger/index.ts";
import { apiClient } from "../support/api.ts";
import { btcAccount, startLightningGateway } from "../support/lightning-gateway.ts";

const cluster = inject("lightningCluster");
const payer = authenticatedLndGrpc(cluster.nodes.payer).lnd;
const payee = authenticatedLndGrpc(cluster.nodes.payee).lnd;
let app: App;
let gateway: Awaited<ReturnType<typeof startLightningGateway>>;

beforeAll(async () => {
  gateway = await startLightningGateway(cluster);
  app = gateway.app;
  // BTC arrives on the gateway's node first (an invoice of a BTC account paid by the payer node): the Lightning
  // clearing account then holds what the FX leg pays out of it.
  await btcAccount(app, { id: "acct_fx_btc", funding: { amount: "0.0001", payer } });
});
afterAll(async () => {
  await gateway?.close();
});

const call = (method: "GET" | "POST", url: string, body?: unknown) => apiClient(app)(method, url, body);

async function ledgerAccount(id: bigint) {
  const [account] = await app.ledger.lookupAccounts([id]);
  if (account === undefined) throw new Error(`no ledger account ${id}`);
  return account;
}

describe("a USDC balance pays a BOLT11 invoice", () => {
  it("pays once through the FX desk, with the spread booked and every ledger balanced", async () => {
    const customer = await getTenantAccount(app.db, {
      tenantId: app.demo!.tenantId,
      id: "acct_demo_customer",
    });
    const customerBefore = await ledgerAccount(customer!.ledgerAccountId);
    // 5,000 sat at $100,000 a BTC is $5: 5 USDC at the mid rate.
    const { request, id: paymentHash } = await createInvoice({ lnd: payee, tokens: 5_000 });
    const response = await call("POST", "/v1/payments", {
      amount: "5",
      asset: "USDC",
      source: { account: "acct_demo_customer" },
      destination: { type: "bolt11", invoice: request },
    });
    expect(response.status).toBe(201);
    expect(response.body).toMatchObject({ status: "succeeded", rail: "lightning" });
    const [candidate] = response.body.route.candidates;
    expect(candidate).toMatchObject({ rail: "lightning", asset: "BTC", amount: "0.00005000000" });
    // 0.2 % of $5, the development spread.
    expect(candidate.cost.fx_usd).toBe("0.010000");
    const [attempt] = response.body.attempts;
    expect(attempt.evidence.payment_hash).toBe(paymentHash);
    // The attempt is in the rail's asset: what LND sent, in BTC.
    expect(attempt).toMatchObject({ asset: "BTC", amount: "0.00005000000" });

    const reserveId = derivedLedgerId(attempt.id, "reserve").toString();
    const [main, fxOut, spread] = await app.ledger.lookupTransfers([
      derivedLedgerId(attempt.id, "post"),
      derivedLedgerId(reserveId, "fx-out"),
      derivedLedgerId(reserveId, "fx-spread"),
    ]);
    const fxUsdc = await getRailAccount(app.db, { kind: "capital", rail: "fx", asset: assets.USDC });
    const fxBtc = await getRailAccount(app.db, { kind: "capital", rail: "fx", asset: assets.BTC });
    const revenue = await getRailAccount(app.db, { kind: "fee", rail: "fx", asset: assets.USDC });
    const clearing = await getRailAccount(app.db, { kind: "clearing", rail: "lightning", asset: assets.BTC });
    // The payer's USDC into the desk, posted.
    expect(main).toMatchObject({
      amount: 5_000_000n,
      ledger: assets.USDC.ledger,
      debitAccountId: customer!.ledgerAccountId,
      creditAccountId: fxUsdc!.ledgerAccountId,
    });
    // The desk's BTC out to the Lightning clearing account: what LND paid.
    const [fxOutPost] = await app.ledger.lookupTransfers([derivedLedgerId(attempt.id, "fx-out-post")]);
    expect(fxOut).toMatchObject({
      amount: 5_000_000n,
      code: transferCodes.payments.fxOut,
      ledger: assets.BTC.ledger,
    });
    expect(fxOutPost).toMatchObject({
      amount: 5_000_000n,
      debitAccountId: fxBtc!.ledgerAccountId,
      creditAccountId: clearing!.ledgerAccountId,
    });
    // The spread: $0.01 in USDC, to the desk's revenue.
    expect(spread).toMatchObject({ amount: 10_000n, creditAccountId: revenue!.ledgerAccountId });
    const [spreadPost] = await app.ledger.lookupTransfers([derivedLedgerId(attempt.id, "fx-spread-post")]);
    expect(spreadPost?.amount).toBe(10_000n);
    // The payer paid the amount and the spread (the direct channel's routing fee is 0), nothing held.
    const customerAfter = await ledgerAccount(customer!.ledgerAccountId);
    expect(customerAfter.debitsPosted - customerBefore.debitsPosted).toBe(5_010_000n);
    expect(customerAfter.debitsPending).toBe(customerBefore.debitsPending);

    // Every ledger balances: debits and credits over all accounts are equal, per ledger, posted and pending.
    for (const totals of await selectLedgerTotals(app.db)) {
      expect(totals.debitsPosted).toBe(totals.creditsPosted);
      expect(totals.debitsPending).toBe(totals.creditsPending);
    }
  });

  it("refuses an invoice whose amount the payment would not send exactly, before anything is written", async () => {
    const customer = await getTenantAccount(app.db, {
      tenantId: app.demo!.tenantId,
      id: "acct_demo_customer",
    });
    const before = await ledgerAccount(customer!.ledgerAccountId);
    const paymentCount = async () =>
      (await app.db.query<{ n: number }>("SELECT count(*)::int AS n FROM payments"))[0]!.n;
    const paymentsBefore = await paymentCount();
    const { request } = await createInvoice({ lnd: payee, tokens: 5_000 });
    // 5.000001 USDC converts to 5,000.001 sat, and 0.00005001 BTC is another amount: neither is what the invoice asks.
    // Before: written, reserved, then refused by the rail, 402 rejected.
    for (const [amount, asset] of [
      ["5.000001", "USDC"],
      ["0.00005001", "BTC"],
    ] as const) {
      const response = await call("POST", "/v1/payments", {
        amount,
        asset,
        source: { account: asset === "USDC" ? "acct_demo_customer" : "acct_fx_btc" },
        destination: { type: "bolt11", invoice: request },
      });
      expect({ amount, status: response.status, body: response.body }).toMatchObject({
        amount,
        status: 400,
        body: { error: { code: "parameter_invalid", param: "amount" } },
      });
      expect(response.body.error.message).toContain("asks 0.00005000000 BTC");
    }
    expect(await paymentCount()).toBe(paymentsBefore);
    const after = await ledgerAccount(customer!.ledgerAccountId);
    expect(after.debitsPending).toBe(before.debitsPending);
    expect(after.debitsPosted).toBe(before.debitsPosted);
  });
});
