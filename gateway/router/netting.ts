// Netting: a payout whose fee on its cheapest rail would be more than a configured share of its value
// accrues instead of leaving at once; accrued payouts leave in batches (EVM settleBatch, one Lightning
// payment per payee) when a threshold is reached or a timer fires. Pure: the ledger keeps the accruals.
import { basisPointsTotal, SwitchyardError } from "../../core/index.ts";
import type { RouteDecision } from "./types.ts";

export type NettingVerdict = "pay_now" | "accrue";

/** The most accrued payouts one plan looks at, and the most payees one batch settles. */
export const nettingAccruedMax = 100_000;
export const nettingBatchPayeesMax = 200;

/** A netting plan asked for with inputs outside its bounds: a bug in the caller. */
export class NettingInputError extends SwitchyardError {
  override name = "NettingInputError";
}

/**
 * Accrue when fee > maxFeeShareBps of the amount (both USD micro-units, compared exactly as given). A routed payout's
 * amount comes rounded down to a whole micro-USD (RouteDecision.amountMicroUsd, where one minor unit of its asset is
 * worth less than that): the verdict then leans to accruing, by less than one micro-USD of value.
 */
export function nettingVerdict(params: {
  amountMicroUsd: bigint;
  feeMicroUsd: bigint;
  maxFeeShareBps: number;
}): NettingVerdict {
  return params.feeMicroUsd * basisPointsTotal > BigInt(params.maxFeeShareBps) * params.amountMicroUsd
    ? "accrue"
    : "pay_now";
}

/**
 * The verdict for a routed payout, from its cheapest candidate's fee. Null when nothing can route it or its
 * asset has no USD rate (then it cannot be judged cheap or dear: the caller decides).
 */
export function nettingVerdictForDecision(
  decision: RouteDecision,
  maxFeeShareBps: number,
): NettingVerdict | null {
  if (decision.chosen === null || decision.amountMicroUsd === null) return null;
  return nettingVerdict({
    amountMicroUsd: decision.amountMicroUsd,
    feeMicroUsd: decision.chosen.cost.feeMicroUsd,
    maxFeeShareBps,
  });
}

/** One accrued payout, in the batch's one asset. A negative amount is a credit against the payee (a clawback). */
export type AccruedPayout = { readonly id: string; readonly payee: string; readonly amount: bigint };

/** Settle a payee whose net reaches perPayee; settle everyone once the positive nets add up to total. */
export type NettingThreshold = { readonly perPayee?: bigint; readonly total?: bigint };

export type NettedPayee = {
  readonly payee: string;
  readonly amount: bigint;
  readonly payoutIds: readonly string[];
};

export type NettingPlan = {
  /** Payees to settle now, largest net first (ties by payee), at most payeesMax. */
  readonly settle: readonly NettedPayee[];
  /** Payouts that stay accrued. settled + kept add up to exactly what was accrued. */
  readonly kept: readonly AccruedPayout[];
  readonly trigger: "timer" | "total" | "per_payee" | null;
  /** When the timer fires next: nowMs + intervalMs if this plan flushed on it, else lastFlushMs + intervalMs. */
  readonly nextFlushAtMs: number;
};

/**
 * Which payees to settle now and their netted amounts. When the timer has run (nowMs − lastFlushMs ≥
 * intervalMs) or the positive nets reach threshold.total, every payee with a positive net settles; otherwise
 * only payees whose net reaches threshold.perPayee. A payee whose net is zero or negative always stays.
 */
export function planNettingBatch(
  accrued: readonly AccruedPayout[],
  threshold: NettingThreshold,
  nowMs: number,
  lastFlushMs: number,
  intervalMs: number,
  payeesMax: number = nettingBatchPayeesMax,
): NettingPlan {
  if (accrued.length > nettingAccruedMax) {
    throw new NettingInputError(
      `${accrued.length} accrued payouts, more than nettingAccruedMax ${nettingAccruedMax}`,
    );
  }
  if (!Number.isInteger(payeesMax) || payeesMax < 1) throw new NettingInputError("payeesMax must be ≥ 1");
  const byPayee = new Map<string, { amount: bigint; payouts: AccruedPayout[] }>();
  for (const payout of accrued) {
    const entry = byPayee.get(payout.payee);
    if (entry === undefined) byPayee.set(payout.payee, { amount: payout.amount, payouts: [payout] });
    else {
      entry.amount += payout.amount;
      entry.payouts.push(payout);
    }
  }
  let positiveTotal = 0n;
  for (const entry of byPayee.values()) if (entry.amount > 0n) positiveTotal += entry.amount;

  const timerDue = nowMs - lastFlushMs >= intervalMs;
  const totalDue = threshold.total !== undefined && positiveTotal > 0n && positiveTotal >= threshold.total;
  const trigger: NettingPlan["trigger"] = timerDue ? "timer" : totalDue ? "total" : null;
  const perPayee = threshold.perPayee;

  const eligible: NettedPayee[] = [];
  for (const [payee, entry] of byPayee) {
    if (entry.amount <= 0n) continue;
    if (trigger !== null || (perPayee !== undefined && entry.amount >= perPayee)) {
      eligible.push({ payee, amount: entry.amount, payoutIds: entry.payouts.map((p) => p.id) });
    }
  }
  eligible.sort((a, b) =>
    a.amount !== b.amount ? (a.amount > b.amount ? -1 : 1) : a.payee < b.payee ? -1 : 1,
  );
  const settle = eligible.slice(0, payeesMax);
  const settled = new Set(settle.map((s) => s.payee));
  const kept = accrued.filter((payout) => !settled.has(payout.payee));
  const flushed = trigger === "timer";
  return {
    settle,
    kept,
    trigger: trigger ?? (settle.length > 0 ? "per_payee" : null),
    nextFlushAtMs: flushed ? nowMs + intervalMs : lastFlushMs + intervalMs,
  };
}
