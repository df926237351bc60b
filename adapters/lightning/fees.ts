// Routing fees, asked before a payment is routed: what LND's pathfinding says a payment of this amount to this
// destination costs. Asked with QueryRoutes (`getRouteToDestination`): LND answers from its graph and mission
// control in milliseconds, sends no HTLC and holds no liquidity. A probe (an HTLC with a made-up payment hash,
// `probeForRoute`) would also prove the remote channels' balances, but it sends an HTLC through every hop for
// each estimate — seconds before every payment, liquidity held meanwhile, a failure in every hop's forwarding
// history — and the payment itself finds out about balances anyway (a failed attempt falls back). The route
// LND answers is the one SendPaymentV2 tries first (the same pathfinding and mission control), so its fee is
// what the payment pays when its first try goes through.
//
// Answers are cached per destination (the node, and an invoice's route hints) and exact amount, "no route"
// for a shorter time than a route: a route's fee is each hop's base fee plus its rate of what it forwards, so a
// band of amounts would hand one amount's fee to another. A caller waits at most feeEstimateTimeoutMs; a late
// answer still fills the cache. The snapshot's model, for a destination nobody has asked about, never claims
// less than the configured fee of an unknown route.
import { createHash } from "node:crypto";
import { decodePaymentRequest, type GetRouteToDestinationArgs, getRouteToDestination } from "lightning";
import { bareBolt11 } from "../../core/destinations.ts";
import type { Destination, NetworkFeeEstimate, NetworkFeeModel } from "../../core/index.ts";
import { type Bolt11HopHint, type Bolt11Payee, readBolt11Payee } from "./bolt11.ts";
import { lndError } from "./errors.ts";
import { classifyLndError, lndErrorText } from "./failures.ts";
import { type Cached, load, withDeadline } from "./fee-cache.ts";
import { type FeeEstimate, type LightningRailState, type RouteFee, withTimeout } from "./state.ts";

export type FeeEstimateResult =
  | { ok: true; value: FeeEstimate }
  | { ok: false; code: "unreachable_destination" | "rail_unavailable" | "rejected"; message: string };

type LightningDestination = Extract<Destination, { kind: "bolt11" | "lightning_node" }>;

/** Where a payment goes, as LND's route query takes it. */
type RouteTarget = {
  readonly pubkey: string;
  readonly cltvDelta: number;
  readonly routes: GetRouteToDestinationArgs["routes"];
  readonly features: GetRouteToDestinationArgs["features"];
};

/** The final hop's CLTV delta of a keysend payment (what `lightning` uses when there is no invoice to say). */
export const keysendFinalCltvDelta = 43;
const nodePublicKey = /^0[23][0-9a-f]{64}$/;
/** `lightning`'s rejections of a route query that mean "no way there", not "LND is in trouble". */
const noWayThere = /TargetNotFound|PaymentTooLargeToFindRoute/;

const isLightningDestination = (destination: Destination): destination is LightningDestination =>
  destination.kind === "bolt11" || destination.kind === "lightning_node";

/** The node, its invoice's route hints (they lead to private channels) and the amount. */
function cacheKey(target: RouteTarget, amountMsat: bigint): string {
  const hints =
    target.routes === undefined || target.routes.length === 0
      ? ""
      : `:${createHash("sha256").update(JSON.stringify(target.routes)).digest("hex")}`;
  return `${target.pubkey}:${amountMsat}${hints}`;
}

/** LND's route-hint format (`lightning`'s): the first hop's node, then each channel with the node it leads to. */
function routesOf(hints: Bolt11Payee["routeHints"], payee: string): RouteTarget["routes"] {
  if (hints.length === 0) return undefined;
  return hints.map((hops) => [
    { public_key: (hops[0] as Bolt11HopHint).nodeId },
    ...hops.map((hop, i) => ({
      base_fee_mtokens: hop.feeBaseMsat.toString(),
      channel: channelOf(hop.shortChannelId),
      cltv_delta: hop.cltvExpiryDelta,
      fee_rate: hop.feeProportionalMillionths,
      public_key: hops[i + 1]?.nodeId ?? payee,
    })),
  ]);
}

/** A short channel id in the standard format: block height x transaction index x output index. */
const channelOf = (id: bigint) => `${id >> 40n}x${(id >> 16n) & 0xffffffn}x${id & 0xffffn}`;

/**
 * The invoice's node, hints and final CLTV delta: read here (bolt11.ts, the node key recovered from the
 * signature) once LND has said which network it runs on, else asked of LND's DecodePayReq.
 */
async function targetOf(
  s: LightningRailState,
  destination: LightningDestination,
): Promise<RouteTarget | Extract<RouteFee, { kind: "unreachable" }>> {
  if (destination.kind === "lightning_node") {
    if (!nodePublicKey.test(destination.pubkey))
      return { kind: "unreachable", detail: "not a node public key" };
    return {
      pubkey: destination.pubkey,
      cltvDelta: keysendFinalCltvDelta,
      routes: undefined,
      features: undefined,
    };
  }
  if (s.invoiceNetwork !== null) {
    const read = readBolt11Payee(destination.invoice);
    if (!read.ok) return { kind: "unreachable", detail: `the invoice cannot be read: ${read.error}` };
    const payee = read.value;
    if (payee.network !== s.invoiceNetwork)
      return {
        kind: "unreachable",
        detail: `the invoice is for network "${payee.network}", LND runs on "${s.invoiceNetwork}"`,
      };
    return {
      pubkey: payee.nodeId,
      cltvDelta: payee.finalCltvDelta,
      routes: routesOf(payee.routeHints, payee.nodeId),
      features: payee.featureBits.length === 0 ? undefined : payee.featureBits.map((bit) => ({ bit })),
    };
  }
  try {
    const decoded = await withTimeout(
      s,
      decodePaymentRequest({ lnd: s.lnd, request: bareBolt11(destination.invoice) ?? destination.invoice }),
      "decode",
    );
    return {
      pubkey: decoded.destination,
      cltvDelta: decoded.cltv_delta ?? keysendFinalCltvDelta,
      routes: decoded.routes.length === 0 ? undefined : decoded.routes,
      features: decoded.features.length === 0 ? undefined : decoded.features.map(({ bit }) => ({ bit })),
    };
  } catch (error) {
    const text = lndErrorText(error);
    if (classifyLndError(text).kind === "disconnected")
      throw lndError("LND did not decode the invoice", error);
    return { kind: "unreachable", detail: `LND cannot decode the invoice: ${text}` };
  }
}

async function queryRouteFee(
  s: LightningRailState,
  target: RouteTarget,
  amountMsat: bigint,
): Promise<RouteFee> {
  try {
    const { route } = await withTimeout(
      s,
      getRouteToDestination({
        lnd: s.lnd,
        destination: target.pubkey,
        mtokens: amountMsat.toString(),
        cltv_delta: target.cltvDelta,
        ...(target.routes === undefined ? {} : { routes: target.routes }),
        ...(target.features === undefined ? {} : { features: target.features }),
      }),
      "route query",
    );
    if (route === undefined)
      return { kind: "unreachable", detail: `no route to ${target.pubkey} for ${amountMsat} msat` };
    return { kind: "route", feeMsat: BigInt(route.fee_mtokens) };
  } catch (error) {
    const text = lndErrorText(error);
    if (noWayThere.test(text))
      return { kind: "unreachable", detail: `no route to ${target.pubkey} for ${amountMsat} msat: ${text}` };
    throw lndError("LND did not answer the route query", error);
  }
}

/**
 * The cached or fresh answer for this destination and amount. Throws a LightningRailError when LND could not
 * answer (unreachable, an unexpected error) or too many queries are in flight.
 */
async function routeFee(
  s: LightningRailState,
  destination: LightningDestination,
  amountMsat: bigint,
): Promise<Cached<RouteFee>> {
  const target = await targetOf(s, destination);
  if ("kind" in target) return { value: target, takenAtMs: s.now() };
  return await load(s.feeCache, cacheKey(target, amountMsat), () => queryRouteFee(s, target, amountMsat));
}

/**
 * The Rail contract's estimate: a model that reproduces the route's fee for this amount (its fee as the
 * base, no proportional part), `unreachable` when LND has no route, or null — the snapshot's model stands —
 * when LND did not answer within feeEstimateTimeoutMs or could not answer at all.
 */
export async function estimateNetworkFee(
  s: LightningRailState,
  request: { destination: Destination; amount: bigint },
): Promise<NetworkFeeEstimate | null> {
  const { destination, amount } = request;
  // A Lightning Address names no node until its server is asked for an invoice, which this does not do for a
  // mere estimate: the snapshot's model stands.
  if (destination.kind === "lightning_address") return null;
  if (!isLightningDestination(destination))
    return { kind: "unreachable", detail: `Lightning cannot pay a ${destination.kind}` };
  if (!s.running || !s.health.connected) return null;
  if (amount < s.limits.amountMinMsat || amount > s.limits.amountMaxMsat) return null;
  let answer: Awaited<ReturnType<typeof withDeadline<Cached<RouteFee>>>>;
  try {
    answer = await withDeadline(routeFee(s, destination, amount), s.limits.feeEstimateTimeoutMs);
  } catch (error) {
    s.logger.warn({ error: lndErrorText(error) }, "route fee estimate failed");
    return null;
  }
  if (!answer.done) {
    s.logger.info({ timeoutMs: s.limits.feeEstimateTimeoutMs }, "route fee estimate timed out");
    return null;
  }
  const fee = answer.value.value;
  return fee.kind === "route" ? { kind: "lightning_routing", base: fee.feeMsat, ppm: 0n } : fee;
}

/** The rail's own estimate, with its age (quotes, the background probe). */
export async function estimateFee(
  s: LightningRailState,
  feeParams: { destination: Destination; amountMsat: bigint },
): Promise<FeeEstimateResult> {
  const { destination, amountMsat } = feeParams;
  if (!isLightningDestination(destination))
    return {
      ok: false,
      code: "unreachable_destination",
      message: `Lightning cannot pay a ${destination.kind}`,
    };
  try {
    const { value, takenAtMs } = await routeFee(s, destination, amountMsat);
    if (value.kind === "unreachable")
      return { ok: false, code: "unreachable_destination", message: value.detail };
    return { ok: true, value: { feeMsat: value.feeMsat, takenAtMs, ageMs: s.now() - takenAtMs } };
  } catch (error) {
    return { ok: false, code: "rail_unavailable", message: lndErrorText(error) };
  }
}

/**
 * The snapshot's routing fee, for a destination nobody has asked about: the fee of a typical payment (the
 * probe's, else the median of recent successes) as the base, but never less than the configured fee of an
 * unknown route (unknownRouteFeeBaseMsat + unknownRouteFeePpm) — a history of payments over direct channels
 * says nothing about the next destination, and a 0 here would become a fee cap of 0.
 */
export function snapshotRoutingFee(
  s: LightningRailState,
  typicalFeeMsat: bigint | null,
): Extract<NetworkFeeModel, { kind: "lightning_routing" }> {
  const floor = s.limits.unknownRouteFeeBaseMsat;
  return {
    kind: "lightning_routing",
    base: typicalFeeMsat !== null && typicalFeeMsat > floor ? typicalFeeMsat : floor,
    ppm: s.limits.unknownRouteFeePpm,
  };
}
