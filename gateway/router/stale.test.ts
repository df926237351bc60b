// A rate the source has but too old to use, or whose sources disagree: the rails that need it are excluded as
// stale_rate or disputed_rate (not no_fx_rate), the others route as before.
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

describe("disputed rates", () => {
  /** The fixtures' rates, with `disputed` withheld as the rate feed withholds a rate its sources disagree on. */
  const disputedSnapshot = (disputed: readonly string[]) =>
    buildSnapshot({
      rails: [evmRail, lightningRail],
      rateSource: {
        usdRate: (code) => (disputed.includes(code) ? null : (staticUsdRates[code] ?? null)),
        spreadPpm: () => null,
        isStale: () => false,
        isDisputed: (code) => disputed.includes(code),
        lastRate: (code) => (disputed.includes(code) ? null : (staticUsdRates[code] ?? null)),
      },
      assetCodes: ["USDC", "BTC", "ETH"],
      takenAtMs: 0,
    });

  it("a disputed rate of the rail's asset excludes that rail as disputed_rate, and the snapshot names the asset", () => {
    const snapshot = disputedSnapshot(["BTC"]);
    expect(snapshot.disputedAssets).toEqual(["BTC"]);
    expect(snapshot.staleAssets).toBeUndefined();
    const decision = route(toBolt11, snapshot, {});
    expect(decision.chosen).toBeNull();
    expect(decision.excluded).toContainEqual({
      rail: "lightning",
      reason: "disputed_rate",
      detail: "the USD rate sources of the rail's asset BTC disagree: neither rate is used",
    });
  });

  it("a disputed rate of the payment's asset excludes every rail that converts from it as disputed_rate", () => {
    const decision = route(toBolt11, disputedSnapshot(["USDC"]), {});
    expect(decision.excluded).toContainEqual({
      rail: "lightning",
      reason: "disputed_rate",
      detail: "the USD rate sources of the payment's asset USDC disagree: neither rate is used",
    });
  });

  it("a gas token's disputed rate leaves out the rail that pays gas in it: no estimate at a rate either source may have wrong", () => {
    const toAddress: PaymentIntent = {
      asset: usdc,
      amount: 5_000_000n,
      destination: { kind: "evm_address", address: "0x00000000000000000000000000000000000000aa" },
    };
    expect(route(toAddress, disputedSnapshot([]), {}).chosen?.rail).toBe("evm");
    const snapshot = disputedSnapshot(["ETH"]);
    expect(snapshot.gasRates).toBeUndefined();
    expect(route(toAddress, snapshot, {}).excluded).toContainEqual({
      rail: "evm",
      reason: "disputed_rate",
      detail: "the USD rate sources of the native asset ETH disagree: neither rate is used",
    });
  });
});
