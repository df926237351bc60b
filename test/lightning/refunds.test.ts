// Refunds of a Lightning invoice through the whole gateway on the regtest network: the payer gives a BOLT11 invoice
// (of the refund's amount, or amountless) and the gateway's node pays it; the account is debited by exactly the
// refund and the routing fee LND paid (held beside it at the most the route may cost), the fee booked on the rail's
// fee account, the preimage the evidence. A refund LND cannot pay fails and releases its holds; never more than was
// paid; a Lightning payout is not refundable.
import { authenticatedLndGrpc, createInvoice, getInvoice, pay } from "lightning";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { App } from "../../gateway/app.ts";
import { transferCodes } from "../../gateway/ledger/index.ts";
import { waitFor } from "../../scripts/lightning/index.ts";
import { apiClient } from "../support/api.ts";
import { wellFormedInvoice } from "../support/bolt11.ts";
import { btcAccount, startLightningGateway, topUpByInvoice } from "../support/lightning-gateway.ts";

const cluster = inject("lightningCluster");
const payer = authenticatedLndGrpc(cluster.nodes.payer).lnd;
const payee = authenticatedLndGrpc(cluster.nodes.payee).lnd;
const remote = authenticatedLndGrpc(cluster.nodes.remote).lnd;
let app: App;
let gateway: Awaited<ReturnType<typeof startLightningGateway>>;

beforeAll(async () => {
  gateway = await startLightningGateway(cluster);
  app = gateway.app;
});
afterAll(async () => {
  await gateway?.close();
});

const call = (method: "GET" | "POST", url: string, body?: unknown) => apiClient(app)(method, url, body);

let accountCount = 0;

/**
 * An account of its own and its invoice of 10,000 sat, paid by the payer node: each test refunds an invoice it paid,
 * and reads a balance only its own refunds move.
 */
async function paidInvoice(): Promise<{ accountId: string; invoiceId: string }> {
  accountCount += 1;
  const accountId = `acct_btc_refunds_${accountCount}`;
  await btcAccount(app, { id: accountId });
  const invoiceId = await topUpByInvoice(app, {
    account: accountId,
    amount: "0.0001",
    payer,
    description: "an order",
  });
  return { accountId, invoiceId };
}

/** The account's posted balance and what it holds pending, in msat. */
async function balance(accountId: string): Promise<{ posted: bigint; pending: bigint }> {
  const [account] = await app.db.query<{ ledger_account_id: bigint }>(
    "SELECT ledger_account_id FROM accounts WHERE id = $1",
    [accountId],
  );
  const [found] = await app.ledger.lookupAccounts([BigInt(account!.ledger_account_id)]);
  return { posted: found!.creditsPosted - found!.debitsPosted, pending: found!.debitsPending };
}

/** Waits until the refund is no longer pending; returns it. */
async function settled(id: string) {
  return await waitFor(
    "refund settled",
    async () => {
      const current = await call("GET", `/v1/refunds/${id}`);
      return current.body.status === "pending" ? undefined : current.body;
    },
    { timeoutMs: 60_000 },
  );
}

describe("refunds of a Lightning invoice", () => {
  it("has an invoice of 10,000 sat paid by the payer node", async () => {
    const { accountId } = await paidInvoice();
    expect(await balance(accountId)).toEqual({ posted: 10_000_000n, pending: 0n });
  });

  it("pays the payer's invoice of the refund's amount from the gateway's node", async () => {
    const { accountId, invoiceId } = await paidInvoice();
    const { id: hash, request } = await createInvoice({ lnd: payer, tokens: 2_000, description: "refund" });
    // Without `amount`, the refund is what the invoice asks.
    const created = await call("POST", "/v1/refunds", {
      invoice: invoiceId,
      destination: { type: "bolt11", invoice: request },
      reason: "requested_by_customer",
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ amount: "0.00002000000", rail: "lightning", invoice: invoiceId });
    const refund = await settled(created.body.id);
    expect(refund).toMatchObject({
      status: "succeeded",
      rail_reference: hash,
      evidence: { rail: "lightning", payment_hash: hash, preimage: expect.stringMatching(/^[0-9a-f]{64}$/) },
      destination: { type: "bolt11", invoice: request },
    });
    expect((await getInvoice({ lnd: payer, id: hash })).is_confirmed).toBe(true);
    // The refund and what its route cost (the refund's `fee`, in msat), charged to the tenant from the fee's hold.
    const fee = BigInt(refund.fee.replace(".", ""));
    expect(fee).toBeLessThanOrEqual(10_000n);
    expect(await balance(accountId)).toEqual({ posted: 8_000_000n - fee, pending: 0n });
    const events = await app.db.query<{ type: string }>(
      "SELECT type FROM outbox WHERE payload->>'refund_id' = $1 ORDER BY id",
      [refund.id],
    );
    expect(events.map((e) => e.type)).toEqual(["refund.created", "refund.succeeded"]);
  });

  it("pays an amountless invoice the refund's amount, and books the routing fee LND paid", async () => {
    const { accountId, invoiceId } = await paidInvoice();
    // Behind the payee's fee-charging hop: 1,000 sat cost 2,000 msat + 5,000 ppm = 7,000 msat.
    const { id: hash, request } = await createInvoice({ lnd: remote, description: "refund, far away" });
    const created = await call("POST", "/v1/refunds", {
      invoice: invoiceId,
      amount: "0.00001",
      destination: { type: "bolt11", invoice: request },
    });
    expect(created.status).toBe(201);
    const refund = await settled(created.body.id);
    expect(refund).toMatchObject({ status: "succeeded", amount: "0.00001000000", fee: "0.00000007000" });
    expect((await getInvoice({ lnd: remote, id: hash })).is_confirmed).toBe(true);
    // The tenant pays the refund and its route's fee, charged from the fee's hold (10,000 msat, the rest released);
    // the fee is paid from the rail's fee account, with the refund as its evidence. Before, the platform paid it.
    expect(await balance(accountId)).toEqual({ posted: 9_000_000n - 7_000n, pending: 0n });
    const fees = await app.db.query<{
      amount: bigint;
      evidence: { reference: string; detail: Record<string, string> };
    }>(
      "SELECT amount, evidence FROM ledger_transfers WHERE code = $1 AND evidence->'detail'->>'refund' = $2",
      [transferCodes.payments.feePaid, refund.id],
    );
    expect(fees.map((f) => f.amount)).toEqual([7_000n]);
    expect(fees[0]!.evidence.reference).toBe(hash);
  });

  it("fails a refund LND cannot pay and releases its hold: nothing lost, the amount refundable again", async () => {
    const { accountId, invoiceId } = await paidInvoice();
    // An invoice already paid (here by the payee) cannot be paid again.
    const { request } = await createInvoice({ lnd: payer, tokens: 1_000, description: "twice" });
    await pay({ lnd: payee, request });
    const created = await call("POST", "/v1/refunds", {
      invoice: invoiceId,
      destination: { type: "bolt11", invoice: request },
    });
    expect(created.status).toBe(201);
    const refund = await settled(created.body.id);
    expect(refund).toMatchObject({ status: "failed", failure: { code: expect.any(String) } });
    expect(await balance(accountId)).toEqual({ posted: 10_000_000n, pending: 0n });
    const events = await app.db.query<{ type: string }>(
      "SELECT type FROM outbox WHERE payload->>'refund_id' = $1 ORDER BY id",
      [refund.id],
    );
    expect(events.map((e) => e.type)).toEqual(["refund.created", "refund.failed"]);
    const [left] = await app.db.query<{ left: bigint }>(
      "SELECT paid - refunded AS left FROM refundable WHERE target_id = $1",
      [invoiceId],
    );
    expect(left!.left).toBe(10_000_000n);
  });

  it("refuses bad input and more than is left before LND is asked", async () => {
    // 3,000 of the 10,000 sat given back first: 7,000 are left.
    const { invoiceId } = await paidInvoice();
    const { request: first } = await createInvoice({
      lnd: payer,
      tokens: 3_000,
      description: "a first part",
    });
    const part = await call("POST", "/v1/refunds", {
      invoice: invoiceId,
      destination: { type: "bolt11", invoice: first },
    });
    expect(part.status).toBe(201);
    expect((await settled(part.body.id)).status).toBe("succeeded");
    const transfers = await app.db.query("SELECT count(*) FROM ledger_transfers");
    const refunds = await app.db.query("SELECT count(*) FROM refunds");
    const missing = await call("POST", "/v1/refunds", { invoice: invoiceId, amount: "0.00001" });
    expect(missing.status).toBe(400);
    expect(missing.body.error).toMatchObject({ code: "parameter_missing", param: "destination" });
    const { request } = await createInvoice({ lnd: payer, tokens: 1_500, description: "mismatch" });
    const mismatch = await call("POST", "/v1/refunds", {
      invoice: invoiceId,
      amount: "0.00001",
      destination: { type: "bolt11", invoice: request },
    });
    expect(mismatch.status).toBe(400);
    expect(mismatch.body.error).toMatchObject({ code: "parameter_invalid", param: "destination.invoice" });
    const { request: big } = await createInvoice({ lnd: payer, tokens: 8_000, description: "too much" });
    const over = await call("POST", "/v1/refunds", {
      invoice: invoiceId,
      destination: { type: "bolt11", invoice: big },
    });
    expect(over.status).toBe(409);
    expect(over.body.error.code).toBe("refund_exceeds_remaining");
    // An invoice of zero (lnbcrt0…) taken as the refund's amount broke the refunds table's check: a 500.
    const zero = await call("POST", "/v1/refunds", {
      invoice: invoiceId,
      destination: { type: "bolt11", invoice: wellFormedInvoice({ amount: "0" }) },
    });
    expect([zero.status, zero.body.error?.code, zero.body.error?.param]).toEqual([
      400,
      "parameter_invalid",
      "destination.invoice",
    ]);
    expect(await app.db.query("SELECT count(*) FROM ledger_transfers")).toEqual(transfers);
    expect(await app.db.query("SELECT count(*) FROM refunds")).toEqual(refunds);
  });

  it("refuses to refund a Lightning payout: it cannot be pulled back", async () => {
    const { accountId } = await paidInvoice();
    const { request } = await createInvoice({ lnd: payee, tokens: 500, description: "a payout" });
    const payment = await call("POST", "/v1/payments", {
      amount: "0.000005",
      asset: "BTC",
      source: { account: accountId },
      destination: { type: "bolt11", invoice: request },
    });
    expect([201, 202]).toContain(payment.status);
    await waitFor(
      "payment settled",
      async () =>
        (await call("GET", `/v1/payments/${payment.body.id}`)).body.status === "succeeded" ? true : undefined,
      { timeoutMs: 60_000 },
    );
    const refused = await call("POST", "/v1/refunds", { payment: payment.body.id });
    expect(refused.status).toBe(422);
    expect(refused.body.error.code).toBe("refund_unsupported");
  });
});
