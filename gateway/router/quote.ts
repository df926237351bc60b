// Quotes: a decision frozen for a time-to-live. The quote locks, for every candidate, the conversion rate,
// the amount to send on that rail and the fee cap; a payment made with the quote id honours them until
// the quote expires, or fails with quote_expired. The price holds, the rails' state does not: a payment goes
// only to the quote's rails that the snapshot at payment time says can take the locked attempt.

import { divCeil, type RailSnapshot, SwitchyardError } from "../../core/index.ts";
import { chainIdReaches, invalidSnapshotReason, reachableByKind } from "./prepare.ts";
import type { Candidate, Exclusion, PaymentIntent, RouteDecision, Snapshot } from "./types.ts";

/** The longest time-to-live a quote may have. */
export const quoteTtlMsMax = 15 * 60_000;

export type Quote = {
  readonly intent: PaymentIntent;
  /** The decision the quote froze; its candidates (cheapest first) carry the locked rate, amount and fee cap. */
  readonly decision: RouteDecision;
  readonly chosen: Candidate;
  readonly createdAtMs: number;
  readonly expiresAtMs: number;
};

export type CreateQuoteResult = { ok: true; quote: Quote } | { ok: false; error: "no_feasible_rail" };
export type CheckQuoteResult = { ok: true } | { ok: false; error: "quote_expired" };

export class QuoteTtlError extends SwitchyardError {
  override readonly name = "QuoteTtlError";
}

export function createQuote(
  decision: RouteDecision,
  intent: PaymentIntent,
  nowMs: number,
  ttlMs: number,
): CreateQuoteResult {
  if (!Number.isFinite(ttlMs) || ttlMs <= 0 || ttlMs > quoteTtlMsMax) {
    throw new QuoteTtlError(`ttlMs must be in (0, ${quoteTtlMsMax}], got ${ttlMs}`);
  }
  if (decision.chosen === null) return { ok: false, error: "no_feasible_rail" };
  return {
    ok: true,
    quote: { intent, decision, chosen: decision.chosen, createdAtMs: nowMs, expiresAtMs: nowMs + ttlMs },
  };
}

/** Valid strictly before expiresAtMs. */
export function checkQuote(quote: Quote, nowMs: number): CheckQuoteResult {
  return nowMs < quote.expiresAtMs ? { ok: true } : { ok: false, error: "quote_expired" };
}

/**
 * Whether two destinations are one: the same kind and every field alike, both ways (a field only one of them has,
 * such as an address's chain id, makes them differ), an EVM address whatever its letters' case (EIP-55's checksum
 * is only case). A payee is its id: its methods are checked against the quote's candidates separately.
 */
export function sameDestination(a: PaymentIntent["destination"], b: PaymentIntent["destination"]): boolean {
  if (a.kind === "payee" || b.kind === "payee")
    return a.kind === "payee" && b.kind === "payee" && a.payeeId === b.payeeId;
  if (a.kind === "evm_address" || b.kind === "evm_address")
    return (
      a.kind === "evm_address" &&
      b.kind === "evm_address" &&
      a.address.toLowerCase() === b.address.toLowerCase() &&
      a.chainId === b.chainId
    );
  const left = a as Record<string, unknown>;
  const right = b as Record<string, unknown>;
  const keys = new Set([...Object.keys(left), ...Object.keys(right)]);
  for (const key of keys) if (left[key] !== right[key]) return false;
  return true;
}

/** Whether a payment asks for what the quote priced: same asset, amount and destination. */
export function quoteMatches(quote: Quote, intent: PaymentIntent): boolean {
  return (
    quote.intent.asset.code === intent.asset.code &&
    quote.intent.amount === intent.amount &&
    sameDestination(quote.intent.destination, intent.destination)
  );
}

export type QuoteCandidatesResult =
  | { ok: true; candidates: readonly Candidate[]; excluded: readonly Exclusion[] }
  | { ok: false; error: "quote_expired" };

/**
 * The quote's candidates, in the quote's order with its locked amounts and fee caps, less the rails that
 * the current snapshot rules out (quotedRailExclusion). The payments service tries them in order; an empty
 * list means no rail can honour the quote now.
 */
export function quoteCandidates(quote: Quote, snapshot: Snapshot, nowMs: number): QuoteCandidatesResult {
  const check = checkQuote(quote, nowMs);
  if (!check.ok) return check;
  const candidates: Candidate[] = [];
  const excluded: Exclusion[] = [];
  for (const candidate of quote.decision.candidates) {
    const exclusion = quotedRailExclusion(
      candidate,
      snapshot.rails.find((r) => r.rail === candidate.rail),
    );
    if (exclusion === null) candidates.push(candidate);
    else excluded.push(exclusion);
  }
  return { ok: true, candidates, excluded };
}

/**
 * Why the rail, as the snapshot now has it, cannot take the quote's locked attempt, or null: everything route()
 * would rule it out for with the locked amount, in route()'s precedence, but its rates and fees. Those are the
 * quote's price, held until it expires (the rail is held to the locked fee limit: above it, it refuses and sends
 * nothing). Before, only availability, an open circuit and liquidity were asked: a rail whose snapshot the router
 * no longer trusted (route() calls it unavailable), one that moved another asset or no longer reached the
 * destination, or one whose limits moved past the locked amount was asked to pay it.
 */
function quotedRailExclusion(candidate: Candidate, rail: RailSnapshot | undefined): Exclusion | null {
  const exclude = (reason: Exclusion["reason"], detail: string): Exclusion => ({
    rail: candidate.rail,
    reason,
    detail,
  });
  if (rail === undefined || !rail.available)
    return exclude("rail_unavailable", "the rail is not available now");
  const invalid = invalidSnapshotReason(rail);
  if (invalid !== null) return exclude("rail_unavailable", `invalid rail snapshot now: ${invalid}`);
  if (rail.asset.code !== candidate.asset.code)
    return exclude(
      "rail_unavailable",
      `the rail moves ${rail.asset.code} now, not the quote's ${candidate.asset.code}`,
    );
  if (rail.circuit === "open") return exclude("circuit_open", "the rail's circuit is open now");
  const destination = candidate.destination;
  if (
    !rail.reaches.includes(destination.kind) ||
    !(reachableByKind[rail.kind] ?? []).includes(destination.kind) ||
    (destination.kind === "evm_address" && !chainIdReaches(rail.chainId, destination.chainId))
  )
    return exclude("unreachable_destination", "the rail no longer reaches the destination the quote priced");
  if (candidate.amount < rail.amountMin)
    return exclude("below_minimum", "the locked amount is below the rail's minimum now");
  if (candidate.amount > rail.amountMax)
    return exclude("above_maximum", "the locked amount is above the rail's maximum now");
  if (rail.liquidity !== null && candidate.amount > rail.liquidity)
    return exclude("insufficient_liquidity", "the locked amount is above what the rail can send now");
  return null;
}

/** Seconds left on a quote, rounded up; 0 once expired. */
export function quoteSecondsLeft(quote: Quote, nowMs: number): number {
  const leftMs = quote.expiresAtMs - nowMs;
  return leftMs <= 0 ? 0 : Number(divCeil(BigInt(Math.ceil(leftMs)), 1_000n));
}
