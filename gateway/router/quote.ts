// Quotes: a decision frozen for a time-to-live. The quote locks, for every candidate, the conversion rate,
// the amount to send on that rail and the fee cap; a payment made with the quote id honours them until
// the quote expires, or fails with quote_expired.

import { divCeil, SwitchyardError } from "../../core/index.ts";
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
 * the current snapshot rules out (unavailable, circuit open, not enough liquidity for the locked amount).
 * The payments service tries them in order; an empty list means no rail can honour the quote now.
 */
export function quoteCandidates(quote: Quote, snapshot: Snapshot, nowMs: number): QuoteCandidatesResult {
  const check = checkQuote(quote, nowMs);
  if (!check.ok) return check;
  const candidates: Candidate[] = [];
  const excluded: Exclusion[] = [];
  for (const candidate of quote.decision.candidates) {
    const rail = snapshot.rails.find((r) => r.rail === candidate.rail);
    if (rail === undefined || !rail.available) {
      excluded.push({
        rail: candidate.rail,
        reason: "rail_unavailable",
        detail: "the rail is not available now",
      });
    } else if (rail.circuit === "open") {
      excluded.push({
        rail: candidate.rail,
        reason: "circuit_open",
        detail: "the rail's circuit is open now",
      });
    } else if (rail.liquidity !== null && candidate.amount > rail.liquidity) {
      excluded.push({
        rail: candidate.rail,
        reason: "insufficient_liquidity",
        detail: "the locked amount is above what the rail can send now",
      });
    } else {
      candidates.push(candidate);
    }
  }
  return { ok: true, candidates, excluded };
}

/** Seconds left on a quote, rounded up; 0 once expired. */
export function quoteSecondsLeft(quote: Quote, nowMs: number): number {
  const leftMs = quote.expiresAtMs - nowMs;
  return leftMs <= 0 ? 0 : Number(divCeil(BigInt(Math.ceil(leftMs)), 1_000n));
}
