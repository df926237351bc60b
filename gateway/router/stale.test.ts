// A rate the source has but too old to use: the rails that need it are excluded as stale_rate (not no_fx_rate),
// the others route as before.
import { describe, expect, it } from "vitest";
import { evmRail, lightningRail, staticUsdRates, usdc } from "./fixtures.ts";
import { buildSnapshot, type PaymentIntent, type RateSource, route } from "./index.ts";

const toBolt11: PaymentIntent = {
  asset: usdc,
  amount: 5_000_000n,
  destination: { kind: "bolt11", invoice: "lnbc" },
};

/** The fixtures' rates, with `stale` known but too old: usdRate answers null for them. */
function source(stale: readonly string[]): RateSource {
  return {
    usdRate: (code) => (stale.includes(code) ? null : (staticUsdRates[code] ?? null)),
    spreadPpm: () => null,
    isStale: (code) => stale.includes(code),
  };
}

const snapshotWith = (stale: readonly string[]) =>
  buildSnapshot({
    rails: [evmRail, lightningRail],
    rateSource: source(stale),
    assetCodes: ["USDC", "BTC", "ETH"],
    takenAtMs: 0,
  });

describe("stale rates", () => {
  it("a stale rate of the rail's asset excludes that rail as stale_rate, and the snapshot names the asset", () => {
    const snapshot = snapshotWith(["BTC"]);
    expect(snapshot.staleAssets).toEqual(["BTC"]);
    const decision = route(toBolt11, snapshot, {});
    expect(decision.chosen).toBeNull();
    expect(decision.excluded).toContainEqual(
      expect.objectContaining({ rail: "lightning", reason: "stale_rate" }),
    );
  });

  it("a rate that is simply missing is still no_fx_rate", () => {
    const snapshot = buildSnapshot({
      rails: [evmRail, lightningRail],
      rateSource: {
        usdRate: (code) => (code === "BTC" ? null : (staticUsdRates[code] ?? null)),
        spreadPpm: () => null,
      },
      assetCodes: ["USDC", "BTC", "ETH"],
      takenAtMs: 0,
    });
    expect(snapshot.staleAssets).toBeUndefined();
    const decision = route(toBolt11, snapshot, {});
    expect(decision.excluded).toContainEqual(
      expect.objectContaining({ rail: "lightning", reason: "no_fx_rate" }),
    );
  });

  it("a stale rate of the payment's asset excludes every rail that converts from it as stale_rate", () => {
    const decision = route(toBolt11, snapshotWith(["USDC"]), {});
    expect(decision.excluded).toContainEqual(
      expect.objectContaining({ rail: "lightning", reason: "stale_rate" }),
    );
  });

  it("fresh rates route as before", () => {
    const decision = route(toBolt11, snapshotWith([]), {});
    expect(decision.chosen?.rail).toBe("lightning");
  });
});
