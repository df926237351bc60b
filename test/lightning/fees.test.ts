// Routing fees on the regtest network: the gateway's node reaches the remote payee only through the payee's
// node, whose channel policy charges remoteHopFee. The rail's estimate for a destination and amount is what LND
// then charges; a fee limit below it fails before any HTLC leaves; a direct channel costs 0; a node nobody
// knows is unreachable.
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {
  type AuthenticatedLnd,
  authenticatedLndGrpc,
  createInvoice,
  getChannels,
  getFailedPayments,
  getInvoice,
  getPayments,
  getPendingPayments,
  getRouteToDestination,
} from "lightning";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  createFileRailStore,
  createLightningRail,
  type LightningRail,
} from "../../adapters/lightning/index.ts";
import type { Destination, NetworkFeeEstimate, OutgoingAttempt } from "../../core/index.ts";
import { type NodeName, remoteHopFee, waitFor } from "../../scripts/lightning/index.ts";

const cluster = inject("lightningCluster");
const client = (name: NodeName): AuthenticatedLnd => authenticatedLndGrpc(cluster.nodes[name]).lnd;
const gateway = client("gateway");
const payee = client("payee");
const remote = client("remote");

/** What LND charges at the payee's hop for `amountMsat` forwarded to the remote payee. */
const hopFeeMsat = (amountMsat: bigint) =>
  remoteHopFee.baseMsat + (amountMsat * remoteHopFee.ppm) / 1_000_000n;
/** The router's default head-room over the estimate: +50 %, rounded up. */
const withHeadroom = (feeMsat: bigint) => (feeMsat * 3n + 1n) / 2n;

let directory = "";
let rail: LightningRail;
let serial = 0;

const attempt = (destination: Destination, amount: bigint, feeMax: bigint): OutgoingAttempt => {
  const id = `fees-${Date.now()}-${++serial}`;
  return { id, paymentId: `payment-${id}`, amount, destination, feeMax };
};

const routing = (estimate: NetworkFeeEstimate | null) => {
  if (estimate?.kind !== "lightning_routing")
    throw new Error(`no routing estimate: ${JSON.stringify(estimate)}`);
  return estimate;
};

beforeAll(async () => {
  directory = await mkdtemp(path.join(os.tmpdir(), "switchyard-lightning-fees-"));
  rail = createLightningRail({
    lnd: cluster.nodes.gateway,
    store: createFileRailStore(path.join(directory, "fees.jsonl")),
    limits: { refreshIntervalMs: 500, executeWaitMs: 30_000 },
  });
  await rail.start();
  await waitFor("rail connected", async () => (rail.health().connected ? true : undefined), {
    timeoutMs: 30_000,
  });
  // Another file may have just restarted the gateway's lnd: wait for its channels, as LND's pathfinding does.
  await waitFor(
    "gateway's route to the remote payee",
    async () => {
      const { channels } = await getChannels({ lnd: gateway, is_active: true });
      if (!channels.some((channel) => channel.partner_public_key === cluster.nodes.payee.publicKey))
        return undefined;
      const { route } = await getRouteToDestination({
        lnd: gateway,
        destination: cluster.nodes.remote.publicKey,
        mtokens: "1000000",
      });
      return route;
    },
    { timeoutMs: 60_000, intervalMs: 250 },
  );
});

afterAll(async () => {
  await rail?.stop();
  await rm(directory, { recursive: true, force: true });
});

describe("Lightning routing fees on regtest", () => {
  it("estimates a payee behind a fee-charging hop at the hop's fee, and LND charges exactly that", async () => {
    const amount = 1_000_000n;
    const invoice = await createInvoice({ lnd: remote, mtokens: amount.toString(), description: "far" });
    const destination: Destination = { kind: "bolt11", invoice: invoice.request };
    const estimate = routing(await rail.estimateNetworkFee({ destination, amount }));
    expect(estimate).toEqual({ kind: "lightning_routing", base: hopFeeMsat(amount), ppm: 0n });
    expect(estimate.base).toBe(7_000n);

    const outcome = await rail.execute(attempt(destination, amount, withHeadroom(estimate.base)));
    expect(outcome).toMatchObject({ status: "succeeded", fee: estimate.base });
    // What LND reports on the payment.
    const { payments } = await getPayments({ lnd: gateway });
    expect(payments.find((payment) => payment.id === invoice.id)?.fee_mtokens).toBe(estimate.base.toString());
    expect((await getInvoice({ lnd: remote, id: invoice.id })).received_mtokens).toBe(amount.toString());
  });

  it("estimates keysend to the remote payee per amount, and pays it at that fee", async () => {
    const destination: Destination = { kind: "lightning_node", pubkey: cluster.nodes.remote.publicKey };
    const amount = 2_500_000n;
    const estimate = routing(await rail.estimateNetworkFee({ destination, amount }));
    expect(estimate.base).toBe(hopFeeMsat(amount));
    // Another amount, another fee: the cache keeps amounts apart.
    expect(routing(await rail.estimateNetworkFee({ destination, amount: 1_000_000n })).base).toBe(7_000n);
    const outcome = await rail.execute(attempt(destination, amount, withHeadroom(estimate.base)));
    expect(outcome).toMatchObject({ status: "succeeded", fee: estimate.base });
  });

  it("fails a fee limit below the route's fee as fee_above_max before any HTLC is sent", async () => {
    const amount = 1_000_000n;
    const invoice = await createInvoice({ lnd: remote, mtokens: amount.toString() });
    const destination: Destination = { kind: "bolt11", invoice: invoice.request };
    const fee = routing(await rail.estimateNetworkFee({ destination, amount })).base;

    const outcome = await rail.execute(attempt(destination, amount, fee - 1n));
    expect(outcome).toMatchObject({ status: "failed", code: "fee_above_max", retryElsewhere: true });
    // LND recorded the payment as failed with no HTLC attempt at all; nothing is held anywhere.
    const { payments: failed } = await getFailedPayments({ lnd: gateway });
    const record = failed.find((payment) => payment.id === invoice.id);
    expect(record).toBeDefined();
    expect(record?.attempts).toEqual([]);
    const { payments: pending } = await getPendingPayments({ lnd: gateway });
    expect(pending.filter((payment) => payment.id === invoice.id)).toHaveLength(0);
    const untouched = await getInvoice({ lnd: remote, id: invoice.id });
    expect(untouched).toMatchObject({ is_confirmed: false, received_mtokens: "0" });

    // The same invoice with the fee as the limit goes through.
    const paid = await rail.execute(attempt(destination, amount, fee));
    expect(paid).toMatchObject({ status: "succeeded", fee });
  });

  it("estimates 0 for the payee over the gateway's direct channel", async () => {
    const invoice = await createInvoice({ lnd: payee, tokens: 1_000 });
    expect(
      await rail.estimateNetworkFee({
        destination: { kind: "bolt11", invoice: invoice.request },
        amount: 1_000_000n,
      }),
    ).toEqual({ kind: "lightning_routing", base: 0n, ppm: 0n });
    expect(
      await rail.estimateNetworkFee({
        destination: { kind: "lightning_node", pubkey: cluster.nodes.payee.publicKey },
        amount: 3_000_000n,
      }),
    ).toEqual({ kind: "lightning_routing", base: 0n, ppm: 0n });
  });

  it("estimates a node no channel leads to as unreachable", async () => {
    // A valid public key (the secp256k1 generator) that no node in this network has.
    const stranger = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
    const estimate = await rail.estimateNetworkFee({
      destination: { kind: "lightning_node", pubkey: stranger },
      amount: 1_000n,
    });
    expect(estimate).toMatchObject({ kind: "unreachable", detail: expect.stringContaining(stranger) });
  });
});
