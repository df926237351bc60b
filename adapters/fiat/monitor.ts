// The fiat rail's health, balance and snapshot: Stripe's available balance, read at start and every
// snapshotRefreshMs, is the rail's liquidity (when the rail is limited by it) and its health check.
import type { RailSnapshot, RailUnavailable } from "../../core/index.ts";
import { FiatRailError, translateStripeError } from "./errors.ts";
import type { FiatRailState } from "./rail-state.ts";
import { transferLatencyMsDefault } from "./types.ts";

async function readBalance(state: FiatRailState): Promise<bigint> {
  const balance = await state.stripe.balance.retrieve();
  return balance.available
    .filter((entry) => entry.currency.toLowerCase() === state.currency)
    .reduce((sum, entry) => sum + BigInt(entry.amount), 0n);
}

/** Reads the balance now; a failure is kept as the rail's health (and logged), never thrown. */
export async function refresh(state: FiatRailState): Promise<void> {
  try {
    state.availableBalance = await readBalance(state);
    state.health = { healthy: true, lastCheckedAtMs: state.nowMs(), lastError: null, stripeError: null };
  } catch (error) {
    const failure = translateStripeError(error);
    state.health = {
      healthy: false,
      lastCheckedAtMs: state.nowMs(),
      lastError: `${failure.stripeError}: ${failure.message}`,
      stripeError: failure.stripeError,
    };
    state.logger.warn({ stripeError: failure.stripeError }, "stripe health check failed");
  }
}

/** For reconciliation: Stripe's available balance now, or FiatRailError when Stripe does not answer. */
export async function balance(state: FiatRailState): Promise<bigint> {
  try {
    return await readBalance(state);
  } catch (error) {
    const failure = translateStripeError(error);
    throw new FiatRailError("stripe balance unavailable", { details: failure.stripeError, cause: error });
  }
}

/**
 * Why the rail is not available, or null when it is. Stripe's own message is left to the log: it may quote the key it
 * refused (core/rail.ts RailUnavailable); its error's type and code say enough.
 */
function unavailableOf(state: FiatRailState): RailUnavailable | null {
  const { health } = state;
  if (!state.started) return { code: "not_started", message: "the fiat rail is not started" };
  if (health.healthy) return null;
  // Started, its first check not answered yet (a failure that is no Stripe error leaves the health as it was).
  if (health.stripeError === null) return { code: "not_started", message: "the fiat rail is starting" };
  return {
    code: "provider_unreachable",
    message: `Stripe failed the rail's balance check (${stripeErrorShown(health.stripeError)})`,
  };
}

/**
 * A Stripe error's type and code as the health routes show them (`StripeConnectionError`,
 * `StripeAuthenticationError/api_key_expired`): its type is the Stripe client's class, its code the answering host's
 * text, shown only when it reads as one of Stripe's identifiers (a proxy or another host answering for Stripe may say
 * anything, and the routes need no key).
 */
export function stripeErrorShown(stripeError: string): string {
  return /^[A-Za-z]{1,64}(\/[a-z0-9_]{1,64})?$/.test(stripeError) ? stripeError : "an unrecognised error";
}

export function snapshot(state: FiatRailState): RailSnapshot {
  const { params, feeSchedule, health } = state;
  const unavailable = unavailableOf(state);
  return {
    rail: state.id,
    kind: "fiat",
    asset: state.asset,
    available: unavailable === null,
    ...(unavailable === null ? {} : { unavailable }),
    reaches: ["stripe_account"],
    amountMin: feeSchedule.amountMin,
    amountMax: feeSchedule.amountMax,
    liquidity: params.liquidity === "balance" ? (state.availableBalance ?? 0n) : null,
    feeFixed: feeSchedule.feeFixed,
    feePpm: feeSchedule.feePpm,
    networkFeeMicroUsd: 0n,
    latencyMs: params.latencyMs ?? transferLatencyMsDefault,
    takenAtMs: health.lastCheckedAtMs ?? state.nowMs(),
  };
}
