import { describe, expect, it } from "vitest";
import { evmRail, internalRail, lightningRail, staticSnapshot, usd, usdc } from "./fixtures.ts";
import {
  checkQuote,
  createQuote,
  type PaymentIntent,
  prepareSnapshot,
  QuoteTtlError,
  quoteCandidates,
  quoteMatches,
  quoteSecondsLeft,
  railAmounts,
  route,
} from "./index.ts";

const intent: PaymentIntent = { asset: usd, amount: 250n, destination: { kind: "bolt11", invoice: "lnbc" } };
const second: typeof lightningRail = {
  ...lightningRail,
  rail: "lightning-2",
  networkFee: { kind: "lightning_routing", base: 2_000n, ppm: 500n },
};
const snapshot = prepareSnapshot(staticSnapshot([internalRail, evmRail, lightningRail, second]));

describe("quotes", () => {
  const decision = route(intent, snapshot, { maxFeeBps: 500 });
  const created = createQuote(decision, intent, 10_000, 30_000);
  if (!created.ok) throw new Error("expected a quote");
  const quote = created.quote;

  it("locks the chosen rail, its rate, the amount on the rail and the fee cap until expiry", () => {
    expect(quote.chosen.rail).toBe("lightning");
    // 2.50 USD at 10 000 micro-USD a cent, BTC at 3/5 micro-USD a msat: floor(250 × 50 000 / 3) msat.
    expect(quote.chosen.rate).toEqual({ num: 50_000n, den: 3n });
    expect(quote.chosen.amount).toBe(4_166_666n);
    expect(quote.chosen.feeCapMicroUsd <= 125_000n).toBe(true); // 5 % of 2.50 USD
    expect(quote.expiresAtMs).toBe(40_000);
    expect(railAmounts(quote.chosen, intent.amount)).toEqual({
      asset: quote.chosen.asset,
      amount: 4_166_666n,
      feeMax: quote.chosen.feeMax,
    });
  });

  it("is honoured before expiry and fails with quote_expired from then on", () => {
    expect(checkQuote(quote, 39_999)).toEqual({ ok: true });
    expect(checkQuote(quote, 40_000)).toEqual({ ok: false, error: "quote_expired" });
    expect(quoteSecondsLeft(quote, 38_500)).toBe(2);
    expect(quoteSecondsLeft(quote, 41_000)).toBe(0);
  });

  it("keeps its locked amounts even when rates move, and drops rails that can no longer pay", () => {
    const moved = prepareSnapshot({
      ...staticSnapshot([internalRail, evmRail, { ...lightningRail, available: false }, second]),
      usdRates: { ...snapshot.usdRates, BTC: { microUsd: 1n, perMinorUnits: 1n } },
    });
    const result = quoteCandidates(quote, moved, 20_000);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.candidates.map((c) => [c.rail, c.amount])).toEqual([["lightning-2", 4_166_666n]]);
    expect(result.excluded.map((e) => [e.rail, e.reason])).toEqual([["lightning", "rail_unavailable"]]);
    expect(quoteCandidates(quote, moved, 40_000)).toEqual({ ok: false, error: "quote_expired" });
  });

  it("drops a rail whose liquidity fell below the locked amount without saying how much it holds", () => {
    const short = prepareSnapshot(
      staticSnapshot([internalRail, evmRail, { ...lightningRail, liquidity: 4_166_665n }, second]),
    );
    const result = quoteCandidates(quote, short, 20_000);
    expect(result.ok && result.excluded).toEqual([
      {
        rail: "lightning",
        reason: "insufficient_liquidity",
        detail: "the locked amount is above what the rail can send now",
      },
    ]);
  });

  it("drops a rail the snapshot now says cannot take the locked attempt, keeping its price: as route() would, but fees", () => {
    const now = (lightning: Partial<typeof lightningRail>) =>
      quoteCandidates(
        quote,
        prepareSnapshot(staticSnapshot([internalRail, evmRail, { ...lightningRail, ...lightning }, second])),
        20_000,
      );
    const cases: [Partial<typeof lightningRail>, string][] = [
      // A snapshot route() does not trust is a rail it calls unavailable.
      [{ feeFixed: -1n }, "rail_unavailable"],
      [{ asset: usdc }, "rail_unavailable"],
      [{ circuit: "open" }, "circuit_open"],
      [{ reaches: ["lightning_node"] }, "unreachable_destination"],
      [{ amountMin: 4_166_667n }, "below_minimum"],
      [{ amountMax: 4_166_665n }, "above_maximum"],
      [{ liquidity: 4_166_665n }, "insufficient_liquidity"],
    ];
    for (const [lightning, reason] of cases) {
      const result = now(lightning);
      expect([lightning, result.ok && result.excluded.map((e) => [e.rail, e.reason])]).toEqual([
        lightning,
        [["lightning", reason]],
      ]);
      expect(result.ok && result.candidates.map((c) => [c.rail, c.amount])).toEqual([
        ["lightning-2", 4_166_666n],
      ]);
    }
    // Its fees moved: the quote's price holds (the rail is held to the locked fee limit), the rail stays.
    const dearer = now({
      feeFixed: 1_000_000n,
      networkFee: { kind: "lightning_routing", base: 9_000_000n, ppm: 0n },
    });
    expect(dearer.ok && dearer.candidates.map((c) => [c.rail, c.feeMax])).toEqual([
      ["lightning", quote.chosen.feeMax],
      ["lightning-2", quote.decision.candidates[1]!.feeMax],
    ]);
  });

  it("matches only the payment it priced", () => {
    expect(quoteMatches(quote, { ...intent })).toBe(true);
    expect(quoteMatches(quote, { ...intent, amount: 251n })).toBe(false);
    expect(quoteMatches(quote, { ...intent, asset: usdc })).toBe(false);
    expect(quoteMatches(quote, { ...intent, destination: { kind: "bolt11", invoice: "other" } })).toBe(false);
  });

  it("refuses a decision without a rail, and a time-to-live out of bounds", () => {
    const none = route(intent, snapshot, { maxFeeMicroUsd: 0n });
    expect(createQuote(none, intent, 0, 1_000)).toEqual({ ok: false, error: "no_feasible_rail" });
    expect(() => createQuote(decision, intent, 0, 0)).toThrow(QuoteTtlError);
    expect(() => createQuote(decision, intent, 0, 16 * 60_000)).toThrow(QuoteTtlError);
  });
});
