// Reconciling the Lightning rail against a real LND: GET /v1/rails shows its clearing account in BTC beside what the
// gateway's node holds in its channels, and the two agree once the operator's channel capital is booked: a channel
// opened with the operator's capital and booked at what it put in, closed and booked out, an invoice paid to the
// gateway, a payout with its routing fee, and a payout held in flight (it has left the channel, the ledger holds it).
import { createHash, randomBytes } from "node:crypto";
import {
  authenticatedLndGrpc,
  closeChannel,
  createHodlInvoice,
  createInvoice,
  getChannelBalance,
  getChannels,
  getClosedChannels,
  getInvoice,
  openChannel,
  settleHodlInvoice,
} from "lightning";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { clusterControl, waitFor } from "../../scripts/lightning/index.ts";
import { apiClient } from "../support/api.ts";
import { btcAccount, startLightningGateway, topUpByInvoice } from "../support/lightning-gateway.ts";

const cluster = inject("lightningCluster");
const payer = authenticatedLndGrpc(cluster.nodes.payer).lnd;
const remote = authenticatedLndGrpc(cluster.nodes.remote).lnd;
const payee = authenticatedLndGrpc(cluster.nodes.payee).lnd;
const gatewayNode = authenticatedLndGrpc(cluster.nodes.gateway).lnd;
const control = clusterControl(inject("lightningControlUrl"));
const operatorKey = `op_${randomBytes(32).toString("base64url")}`;
const accountId = "acct_btc_reconciled";
let gateway: Awaited<ReturnType<typeof startLightningGateway>>;

beforeAll(async () => {
  gateway = await startLightningGateway(cluster, { OPERATOR_KEY: operatorKey });
  await btcAccount(gateway.app, { id: accountId });
});
afterAll(async () => {
  await gateway?.close();
});

type RailBalance = {
  rail: string;
  asset: string;
  ledger: { posted: string; pending_in: string; pending_out: string };
  rail_balance: string | null;
  rail_error: { code: string; message: string } | null;
  difference: string | null;
};

/** BTC as the API writes it (11 decimals), in msat. */
const msat = (text: string): bigint => {
  const negative = text.startsWith("-");
  const [whole, fraction = ""] = (negative ? text.slice(1) : text).split(".");
  const value = BigInt(whole!) * 10n ** 11n + BigInt(fraction.padEnd(11, "0"));
  return negative ? -value : value;
};

const call = (method: "GET" | "POST", url: string, body?: unknown) =>
  apiClient(gateway.app)(method, url, body);
const operator = (method: "GET" | "POST", url: string, body?: unknown) =>
  apiClient(gateway.app, operatorKey)(method, url, body);

/** Books the operator's own movement of the Lightning rail's funds. */
async function bookCapital(direction: "in" | "out", amount: string, reference: string) {
  const booked = await operator("POST", "/v1/rails/lightning/capital", {
    asset: "BTC",
    direction,
    amount,
    reference,
  });
  expect(booked.status).toBe(201);
}

async function lightningRow(): Promise<RailBalance> {
  const listed = await operator("GET", "/v1/rails");
  expect(listed.status).toBe(200);
  const row = (listed.body.data as RailBalance[]).find((each) => each.rail === "lightning");
  if (row === undefined) throw new Error("no Lightning row in GET /v1/rails");
  expect(row.asset).toBe("BTC");
  expect(row.rail_error).toBeNull();
  return row;
}

/**
 * The Lightning row once the node's channels hold no HTLC: LND reports a payment (or an invoice) settled when the
 * preimage is known, a moment before the channel's next commitment is signed, and until then the channel balance
 * leaves the HTLC out.
 */
async function settledRow(): Promise<RailBalance> {
  await waitFor(
    "the node's channels settled",
    async () => {
      const { channels } = await getChannels({ lnd: gatewayNode });
      return channels.every((channel) => channel.pending_payments.length === 0) ? true : undefined;
    },
    { timeoutMs: 15_000 },
  );
  return lightningRow();
}

/** A payout once it is no longer processing. */
const payoutSettled = (paymentId: string) =>
  waitFor(
    "payout settled",
    async () => {
      const current = await call("GET", `/v1/payments/${paymentId}`);
      return current.body.status === "processing" ? undefined : current.body;
    },
    { timeoutMs: 60_000 },
  );

describe("the Lightning rail reconciled against its node", () => {
  it("matches the ledger through a channel opened and closed with the operator's capital, an invoice paid, a payout with its fee and one held in flight", async () => {
    // A fresh gateway's ledger knows nothing of the node's channels: the rail holds all of it beyond what is booked,
    // and no less than LND's own channel balance.
    const fresh = await settledRow();
    expect(fresh.ledger).toEqual({
      posted: "0.00000000000",
      pending_in: "0.00000000000",
      pending_out: "0.00000000000",
    });
    expect(msat(fresh.difference!)).toBe(msat(fresh.rail_balance!));
    const { channel_balance_mtokens: local } = await getChannelBalance({ lnd: gatewayNode });
    expect(msat(fresh.rail_balance!)).toBeGreaterThanOrEqual(BigInt(local!));

    // The operator books what its node's channels held when the gateway came to it.
    await bookCapital("in", fresh.difference!, `channels-${randomBytes(8).toString("hex")}`);
    expect(msat((await settledRow()).difference!)).toBe(0n);

    // It opens a channel with 0.02 BTC of its own and books that, the channel point its reference. The node sets the
    // commitment's fee and anchors aside out of it (the opener pays them), which are still the operator's: once the
    // channel is open, the rail holds what the ledger says. (Before, LND's local balance was reported, which leaves
    // them out: here some 1,200 sat less, and another amount at each update of the commitment's fee rate.)
    const opened = await openChannel({
      lnd: gatewayNode,
      local_tokens: 2_000_000,
      partner_public_key: cluster.nodes.payee.publicKey,
      chain_fee_tokens_per_vbyte: 2,
    });
    const channelPoint = `${opened.transaction_id}:${opened.transaction_vout}`;
    await bookCapital("in", "0.02", channelPoint);
    await control.mine(6);
    const channel = await waitFor(
      "the new channel active",
      async () =>
        (await getChannels({ lnd: gatewayNode, is_active: true })).channels.find(
          (each) => each.transaction_id === opened.transaction_id,
        ),
      { timeoutMs: 30_000 },
    );
    // LND's own balance of it leaves out what it set aside.
    expect(BigInt(channel.local_balance)).toBeLessThan(2_000_000n);
    expect(msat((await settledRow()).difference!)).toBe(0n);

    // It closes the channel and books what it took off the rail: the 0.02 BTC (the closing transaction's fee is paid on
    // chain, out of what it got back).
    await closeChannel({
      lnd: gatewayNode,
      transaction_id: opened.transaction_id,
      transaction_vout: opened.transaction_vout,
      tokens_per_vbyte: 2,
    });
    await control.mine(6);
    await waitFor(
      "the new channel closed",
      async () =>
        (await getClosedChannels({ lnd: gatewayNode })).channels.some(
          (each) => each.transaction_id === opened.transaction_id,
        )
          ? true
          : undefined,
      { timeoutMs: 30_000 },
    );
    await bookCapital("out", "0.02", `${channelPoint}:closed`);
    expect(msat((await settledRow()).difference!)).toBe(0n);

    // An invoice paid to the gateway: in the channel and in the clearing account alike.
    const beforeInvoice = await lightningRow();
    await topUpByInvoice(gateway.app, { account: accountId, amount: "0.0002", payer });
    const afterInvoice = await settledRow();
    expect(msat(afterInvoice.ledger.posted) - msat(beforeInvoice.ledger.posted)).toBe(20_000_000n);
    expect(msat(afterInvoice.difference!)).toBe(0n);

    // A payout through the payee's fee-charging hop: the amount and LND's routing fee leave both.
    const { request } = await createInvoice({ lnd: remote, tokens: 1_000, description: "reconciled payout" });
    const paid = await call("POST", "/v1/payments", {
      amount: "0.00001",
      asset: "BTC",
      source: { account: accountId },
      destination: { type: "bolt11", invoice: request },
    });
    expect([201, 202]).toContain(paid.status);
    const settled = await payoutSettled(paid.body.id);
    expect(settled).toMatchObject({ status: "succeeded", rail: "lightning" });
    const fee = msat(settled.attempts[0].fee);
    expect(fee).toBeGreaterThan(0n);
    const afterPayout = await settledRow();
    expect(msat(afterInvoice.ledger.posted) - msat(afterPayout.ledger.posted)).toBe(1_000_000n + fee);
    expect(msat(afterInvoice.rail_balance!) - msat(afterPayout.rail_balance!)).toBe(1_000_000n + fee);
    expect(msat(afterPayout.difference!)).toBe(0n);

    // A payout held in flight: a hold invoice at the payee, paid through the channel the node opened to it. Its HTLC
    // has left what the node holds, and only it: the commitment fee the HTLC adds is the node's still (the opener
    // pays it out of its balance). The ledger still posts the payout and holds it as pending out: the difference is
    // the payout until it settles. (Before, the fee was recomputed without the HTLC's weight: the rail reported
    // less by 172 weight units at the commitment's fee rate.)
    const secret = randomBytes(32).toString("hex");
    const id = createHash("sha256").update(Buffer.from(secret, "hex")).digest("hex");
    const hold = await createHodlInvoice({ lnd: payee, id, tokens: 10_000, description: "held payout" });
    const holding = await call("POST", "/v1/payments", {
      amount: "0.0001",
      asset: "BTC",
      source: { account: accountId },
      destination: { type: "bolt11", invoice: hold.request },
    });
    expect(holding.status).toBe(202);
    await waitFor(
      "the payout held at the payee",
      async () => ((await getInvoice({ lnd: payee, id })).is_held ? true : undefined),
      { timeoutMs: 30_000 },
    );
    const { channels } = await getChannels({ lnd: gatewayNode });
    const carrying = channels.find((each) => each.pending_payments.some((payment) => payment.id === id));
    expect(carrying?.is_partner_initiated).toBe(false);
    expect(carrying?.pending_payments).toEqual([
      expect.objectContaining({ is_outgoing: true, tokens: 10_000 }),
    ]);
    const inFlight = await lightningRow();
    expect(inFlight.ledger.posted).toBe(afterPayout.ledger.posted);
    expect(msat(inFlight.ledger.pending_out)).toBeGreaterThanOrEqual(10_000_000n);
    expect(msat(afterPayout.rail_balance!) - msat(inFlight.rail_balance!)).toBe(10_000_000n);
    expect(msat(inFlight.difference!)).toBe(-10_000_000n);
    await settleHodlInvoice({ lnd: payee, secret });
    expect(await payoutSettled(holding.body.id)).toMatchObject({ status: "succeeded", rail: "lightning" });
    const afterHeld = await settledRow();
    expect(msat(afterPayout.ledger.posted) - msat(afterHeld.ledger.posted)).toBe(10_000_000n);
    expect(msat(afterHeld.difference!)).toBe(0n);
  });
});
