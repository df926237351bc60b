// Reconciling the Lightning rail against a real LND: GET /v1/rails shows its clearing account in BTC beside what the
// gateway's node holds in its channels, and the two agree once the operator's channel capital is booked: a channel
// opened with the operator's capital and booked at what it put in, closed and booked out, an invoice paid to the
// gateway and a payout with its routing fee.
import { randomBytes } from "node:crypto";
import {
  authenticatedLndGrpc,
  closeChannel,
  createInvoice,
  getChannelBalance,
  getChannels,
  getClosedChannels,
  openChannel,
} from "lightning";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { clusterControl, waitFor } from "../../scripts/lightning/index.ts";
import { apiClient } from "../support/api.ts";
import { btcAccount, startLightningGateway, topUpByInvoice } from "../support/lightning-gateway.ts";

const cluster = inject("lightningCluster");
const payer = authenticatedLndGrpc(cluster.nodes.payer).lnd;
const remote = authenticatedLndGrpc(cluster.nodes.remote).lnd;
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

describe("the Lightning rail reconciled against its node", () => {
  it("matches the ledger through a channel opened and closed with the operator's capital, an invoice paid and a payout with its fee", async () => {
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
    const settled = await waitFor(
      "payout settled",
      async () => {
        const current = await call("GET", `/v1/payments/${paid.body.id}`);
        return current.body.status === "processing" ? undefined : current.body;
      },
      { timeoutMs: 60_000 },
    );
    expect(settled).toMatchObject({ status: "succeeded", rail: "lightning" });
    const fee = msat(settled.attempts[0].fee);
    expect(fee).toBeGreaterThan(0n);
    const afterPayout = await settledRow();
    expect(msat(afterInvoice.ledger.posted) - msat(afterPayout.ledger.posted)).toBe(1_000_000n + fee);
    expect(msat(afterInvoice.rail_balance!) - msat(afterPayout.rail_balance!)).toBe(1_000_000n + fee);
    expect(msat(afterPayout.difference!)).toBe(0n);
  });
});
