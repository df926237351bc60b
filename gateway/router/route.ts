// route(): for one payment, every rail is either a candidate with its cost in USD micro-units or an
// exclusion with the first reason that rules it out. Pure and synchronous; the per-snapshot work lives in
// prepare.ts. Costs round up (never under-stated); amounts sent round down (never more than was paid for).
// A payment to a payee is reachable by every rail that reaches one of the payee's methods; each candidate
// names the method it pays (the first listed that its rail reaches).
//
// Exclusion precedence (the first that applies is reported): not_allowed, rail_unavailable, circuit_open,
// no_fx_rate (for the rail's asset), unreachable_destination, no_fx_rate (for the payment's asset),
// below_minimum, above_maximum, insufficient_liquidity, latency_above_max, fee_above_max. A rate the source
// withholds is reported in no_fx_rate's place as stale_rate (too old) or disputed_rate (its sources disagree).
import { basisPointsTotal, type Destination, divCeil, ppmTotal, SwitchyardError } from "../../core/index.ts";
import {
  chainIdReaches,
  destinationBits,
  failureCostMicroUsdDefault,
  type PreparedRail,
  preparedFor,
  rateExclusion,
  rateWithheld,
} from "./prepare.ts";

export { failureCostMicroUsdDefault };

import type {
  Candidate,
  Exclusion,
  ExclusionReason,
  FxRate,
  PaymentIntent,
  RouteDecision,
  RoutePolicy,
  Snapshot,
} from "./types.ts";

/**
 * Reasons that say a rail never had a chance at a payment, whatever its amount and caps (an internal rail moves its
 * own asset only: `no_fx_rate`). Among the other exclusions, those the caller can change — `fee_above_max`,
 * `above_maximum` — say whether the amount or the cap is why no rail pays.
 */
export const outOfPlayReasons: ReadonlySet<ExclusionReason> = new Set<ExclusionReason>([
  "not_allowed",
  "rail_unavailable",
  "circuit_open",
  "unreachable_destination",
  "no_fx_rate",
  "stale_rate",
  "disputed_rate",
]);

/** Fee cap head-room over the estimate when the policy does not say: +50 %. */
export const feeHeadroomBpsDefault = 5_000;

const msPerS = 1_000n;
const noMethods: readonly Destination[] = [];
const noMethodBits: readonly number[] = [];

/** An amount in the rail's asset in USD micro-units, rounded up. */
function toUsdCeil(r: PreparedRail, railUnits: bigint): bigint {
  if (r.railUnitRate) return railUnits;
  return (railUnits * r.railMicroUsd + r.railPerMinusOne) / r.railPerMinorUnits;
}
// The default head-room, 1 + 5 000 / 10 000 = 3 / 2, reduced once.
const headroomDefaultNum = 3n;
const headroomDefaultDen = 2n;

/** A caller's bug: route() was given what the payments service must have refused already. */
export class RouterInputError extends SwitchyardError {
  override readonly name = "RouterInputError";
}

function isAllowed(rail: string, policy: RoutePolicy): boolean {
  const denied = policy.deniedRails;
  if (denied?.includes(rail)) return false;
  const allowed = policy.allowedRails;
  return allowed === undefined || allowed.includes(rail);
}

const evmAddressBit = destinationBits.evm_address;

/**
 * The first of a payee's methods the rail reaches, or null. `methodBits[k]` is method k's kind bit, read once
 * per payment: the methods are objects of several shapes, and reading their kind for every rail cost more
 * than the rest of the reach test. Called only when the rail reaches one of the methods' kinds, so null means
 * every such method is a 0x address on another chain.
 */
function methodFor(
  r: PreparedRail,
  methods: readonly Destination[],
  methodBits: readonly number[],
): Destination | null {
  const mask = r.reachMask;
  for (let k = 0; k < methodBits.length; k++) {
    const bit = methodBits[k] as number;
    if ((mask & bit) === 0) continue;
    const method = methods[k] as Destination;
    if (bit !== evmAddressBit) return method;
    if (chainIdReaches(r.chainId, (method as { readonly chainId?: number }).chainId)) return method;
  }
  return null;
}

/** Cheapest total first; ties go to the lower latency, then the rail id, so the order is deterministic. */
function before(a: Candidate, b: Candidate): boolean {
  if (a.cost.totalMicroUsd !== b.cost.totalMicroUsd) return a.cost.totalMicroUsd < b.cost.totalMicroUsd;
  if (a.latencyMs !== b.latencyMs) return a.latencyMs < b.latencyMs;
  return a.rail < b.rail;
}

/**
 * One piece on purpose: this is the router's hot path (a decision in about a microsecond). The per-call values
 * computed above the loop (payment rate, caps, head-room, the bps scale) feed every rail's exclusion checks and
 * cost; split into per-rail helpers they would travel as a dozen parameters or an object allocated per call.
 * The loop reads top to bottom in the exclusion precedence the header lists, then costs, caps and ranking.
 */
export function route(intent: PaymentIntent, snapshot: Snapshot, policy: RoutePolicy): RouteDecision {
  if (intent.amount <= 0n) throw new RouterInputError(`amount must be positive, got ${intent.amount}`);
  const prepared = preparedFor(snapshot);
  const rails = prepared.rails;
  const amount = intent.amount;
  const code = intent.asset.code;
  const paymentRate = snapshot.usdRates[code];
  const hasPaymentRate =
    paymentRate !== undefined && paymentRate.microUsd > 0n && paymentRate.perMinorUnits > 0n;
  const payMicro = hasPaymentRate ? paymentRate.microUsd : 0n;
  const payPer = hasPaymentRate ? paymentRate.perMinorUnits : 1n;
  // One destination: its kind's bit and the chain an address names. A payee: the bits of all its methods'
  // kinds, so that a rail reaching none of them is ruled out with one test, as for one destination.
  const target = intent.destination;
  let plain: Destination | null = null;
  let methods: readonly Destination[] = noMethods;
  let methodBits: readonly number[] = noMethodBits;
  let reachBits = 0;
  let chainWanted: number | undefined;
  if (target.kind === "payee") {
    methods = target.methods;
    const bits = new Array<number>(methods.length);
    for (let k = 0; k < methods.length; k++) {
      const bit = destinationBits[(methods[k] as Destination).kind] ?? 0;
      bits[k] = bit;
      reachBits |= bit;
    }
    methodBits = bits;
  } else {
    plain = target;
    reachBits = destinationBits[target.kind] ?? 0;
    chainWanted = target.kind === "evm_address" ? target.chainId : undefined;
  }

  const maxFeeAbs = policy.maxFeeMicroUsd ?? -1n;
  const hasBps = policy.maxFeeBps !== undefined;
  const maxLatencyMs = policy.maxLatencyMs ?? Number.POSITIVE_INFINITY;
  const defaultFailureCost = policy.failureCostMicroUsd === undefined;
  const failureCost = policy.failureCostMicroUsd ?? failureCostMicroUsdDefault;
  const latencyPrice = policy.latencyCostMicroUsdPerS ?? 0n;
  const headroomBps = policy.feeHeadroomBps;
  const headroomNum =
    headroomBps === undefined || headroomBps === feeHeadroomBpsDefault
      ? headroomDefaultNum
      : basisPointsTotal + BigInt(headroomBps);
  const headroomDen = headroomNum === headroomDefaultNum ? headroomDefaultDen : basisPointsTotal;
  const hasListFilter = policy.allowedRails !== undefined || policy.deniedRails !== undefined;
  // The payment's USD value is valueNum / payPer. The bps cap holds when fee × bpsFeeScale ≤ bpsLimit,
  // compared exactly; its value rounded down bounds the fee cap.
  const valueNum = payMicro === 1n ? amount : amount * payMicro;
  const bpsFeeScale = hasBps ? basisPointsTotal * payPer : 0n;
  const bpsLimit = hasBps ? BigInt(policy.maxFeeBps) * valueNum : 0n;
  const bpsCapMicroUsd = hasBps ? bpsLimit / bpsFeeScale : -1n;

  const candidates: Candidate[] = [];
  const excluded: Exclusion[] = [];

  for (let i = 0; i < rails.length; i++) {
    const r = rails[i] as PreparedRail;
    if (hasListFilter && !isAllowed(r.rail, policy)) {
      excluded.push(r.exclusions.not_allowed);
      continue;
    }
    if (r.staticExclusion !== null) {
      excluded.push(r.staticExclusion);
      continue;
    }
    if ((r.reachMask & reachBits) === 0) {
      excluded.push(r.exclusions.unreachable_destination);
      continue;
    }
    let destination: Destination;
    if (plain !== null) {
      if (chainWanted !== undefined && r.chainId !== chainWanted) {
        excluded.push(r.unreachableChain);
        continue;
      }
      destination = plain;
    } else {
      const method = methodFor(r, methods, methodBits);
      if (method === null) {
        excluded.push(r.unreachableChain);
        continue;
      }
      destination = method;
    }
    const cross = hasPaymentRate ? r.cross[code] : undefined;
    if (cross === undefined) {
      excluded.push(
        rateWithheld(snapshot, code)
          ? rateExclusion(r.rail, code, snapshot, "the payment's asset")
          : r.exclusions.no_fx_rate,
      );
      continue;
    }
    // Amount on the rail: rounded down, so the conversion never sends more than the payment is worth.
    const railAmount = cross.same ? amount : (amount * cross.rate.num) / cross.rate.den;
    const snap = r.snapshot;
    if (railAmount < snap.amountMin) {
      excluded.push(r.exclusions.below_minimum);
      continue;
    }
    if (railAmount > snap.amountMax) {
      excluded.push(r.exclusions.above_maximum);
      continue;
    }
    if (r.liquidity >= 0n && railAmount > r.liquidity) {
      excluded.push(r.exclusions.insufficient_liquidity);
      continue;
    }
    if (snap.latencyMs > maxLatencyMs) {
      excluded.push(r.exclusions.latency_above_max);
      continue;
    }
    // Network fee, USD micro-units, rounded up.
    const network =
      r.networkModel === 0
        ? r.networkMicroUsd
        : toUsdCeil(
            r,
            r.routingBase + (r.routingPpm === 0n ? 0n : divCeil(railAmount * r.routingPpm, ppmTotal)),
          );
    // Provider fee in the rail's asset (fixed + ppm rounded up, at least the minimum), then USD rounded up.
    let providerRail =
      snap.feeFixed + (snap.feePpm === 0n ? 0n : divCeil(railAmount * snap.feePpm, ppmTotal));
    if (providerRail < r.feeMin) providerRail = r.feeMin;
    const provider = providerRail === 0n ? 0n : toUsdCeil(r, providerRail);
    // FX: the payment's USD value × spread, rounded up.
    const fx = cross.fxNum === 0n ? 0n : (amount * cross.fxNum + cross.fxDenMinusOne) / cross.fxDen;
    const fee = network + provider + fx;
    if ((maxFeeAbs >= 0n && fee > maxFeeAbs) || (hasBps && fee * bpsFeeScale > bpsLimit)) {
      excluded.push(r.exclusions.fee_above_max);
      continue;
    }
    const failure =
      r.failNum === 0n
        ? 0n
        : defaultFailureCost && r.networkModel === 0
          ? r.failureAtDefault
          : (r.failNum * (network + failureCost) + r.failDenMinusOne) / r.failDen;
    const latency = latencyPrice === 0n ? 0n : divCeil(r.latencyMsBig * latencyPrice, msPerS);
    // Fee cap: the estimate plus head-room (rounded up), never above either policy cap (the bps cap is
    // rounded down), so fee ≤ feeCap ≤ every cap.
    let feeCap = (fee * headroomNum + headroomDen - 1n) / headroomDen;
    if (maxFeeAbs >= 0n && feeCap > maxFeeAbs) feeCap = maxFeeAbs;
    if (bpsCapMicroUsd >= 0n && feeCap > bpsCapMicroUsd) feeCap = bpsCapMicroUsd;
    // What the rail itself may spend, in its asset, rounded down: its USD value never exceeds feeCap − fx.
    const feeMax = r.railUnitRate ? feeCap - fx : ((feeCap - fx) * r.railPerMinorUnits) / r.railMicroUsd;
    const candidate: Candidate = {
      rail: r.rail,
      kind: snap.kind,
      destination,
      cost: {
        networkMicroUsd: network,
        providerMicroUsd: provider,
        fxMicroUsd: fx,
        failureMicroUsd: failure,
        latencyMicroUsd: latency,
        feeMicroUsd: fee,
        totalMicroUsd: fee + failure + latency,
      },
      latencyMs: snap.latencyMs,
      asset: snap.asset,
      amount: railAmount,
      rate: cross.rate,
      feeCapMicroUsd: feeCap,
      feeMax,
    };
    if (!r.railUnitRate) (candidate as { feeRate?: FxRate }).feeRate = r.feeRate;
    // Insertion into the sorted list: a handful of rails, no comparator closure.
    let j = candidates.length;
    candidates.push(candidate);
    while (j > 0 && before(candidate, candidates[j - 1] as Candidate)) {
      candidates[j] = candidates[j - 1] as Candidate;
      j--;
    }
    candidates[j] = candidate;
  }

  return {
    chosen: candidates[0] ?? null,
    candidates,
    excluded,
    amountMicroUsd: hasPaymentRate ? (payPer === 1n ? valueNum : valueNum / payPer) : null,
    snapshotTakenAtMs: snapshot.takenAtMs,
  };
}
