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
  decodePaymentRequest,
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
import {
  bolt11Field,
  bytesToWords,
  featureWords,
  hopHintWords,
  intToWords,
  publicKeyOf,
  signBolt11,
} from "../support/bolt11.ts";

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
  return { id, paymentId: `payment-${id}`, tenantId: "ten_test", amount, destination, feeMax };
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

  it("reads an invoice as LND decodes it, route hints to a private node included, without asking LND", async () => {
    // A payee no public channel leads to: its invoice's route hint leads there from the payee node, over a
    // channel of the hint's own policy (what LND's pathfinding believes of a hinted channel).
    const privateKey = Buffer.alloc(32, 0x5a);
    const hint = {
      nodeId: cluster.nodes.payee.publicKey,
      shortChannelId: (500n << 40n) | (7n << 16n) | 1n,
      feeBaseMsat: 3_000,
      feeProportionalMillionths: 100,
      cltvExpiryDelta: 40,
    };
    const amount = 1_000_000n;
    const request = signBolt11({
      network: "bcrt",
      amount: "10u",
      timestampSeconds: Math.floor(Date.now() / 1000),
      fields: [
        [bolt11Field.paymentHash, bytesToWords(Buffer.alloc(32, 0x21))],
        [bolt11Field.paymentSecret, bytesToWords(Buffer.alloc(32, 0x22))],
        [bolt11Field.description, bytesToWords(Buffer.from("private"))],
        [bolt11Field.finalCltv, intToWords(80)],
        [bolt11Field.routeHint, hopHintWords([hint])],
        [bolt11Field.features, featureWords([8, 14, 17])],
      ],
      privateKey,
    });
    const decoded = await decodePaymentRequest({ lnd: gateway, request });
    expect(decoded).toMatchObject({ destination: publicKeyOf(privateKey), cltv_delta: 80 });
    expect(decoded.routes).toEqual([
      [
        { public_key: hint.nodeId },
        {
          base_fee_mtokens: "3000",
          channel: "500x7x1",
          cltv_delta: 40,
          fee_rate: 100,
          public_key: publicKeyOf(privateKey),
        },
      ],
    ]);
    // LND's own fee for the route it decodes, against the rail's estimate from the invoice it read itself.
    const { route } = await getRouteToDestination({
      lnd: gateway,
      destination: decoded.destination,
      mtokens: amount.toString(),
      cltv_delta: decoded.cltv_delta,
      routes: decoded.routes,
      features: decoded.features.map(({ bit }) => ({ bit })),
    });
    const hintFee = 3_000n + (amount * 100n) / 1_000_000n;
    expect(route?.fee_mtokens).toBe(hintFee.toString());
    expect(
      routing(await rail.estimateNetworkFee({ destination: { kind: "bolt11", invoice: request }, amount })),
    ).toEqual({ kind: "lightning_routing", base: hintFee, ppm: 0n });
  });

  it("refuses an invoice of another network as unreachable, from the network LND said it runs on", async () => {
    // The specification's "$5 for a cup of coffee" invoice: mainnet.
    const coffee =
      "lnbc2500u1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpuaztrnwngzn3kdzw5hydlzf03qdgm2hdq27cqv3agm2awhz5se903vruatfhq77w3ls4evs3ch9zw97j25emudupq63nyw24cg27h2rspfj9srp";
    expect(
      await rail.estimateNetworkFee({
        destination: { kind: "bolt11", invoice: coffee },
        amount: 250_000_000n,
      }),
    ).toEqual({ kind: "unreachable", detail: 'the invoice is for network "bc", LND runs on "bcrt"' });
  });
});
