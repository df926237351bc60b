// The router reads the fiat rail's own fee schedule and minimum from its snapshot (rails started against
// stripe-mock): it never picks fiat below the minimum charge, nor when a cheaper rail reaches the destination.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  createFiatRail,
  createMemoryStripeObjectStore,
  createStripeClient,
  defaultFiatFeeSchedule,
  type FiatFeeSchedule,
  type FiatRail,
} from "../../adapters/fiat/index.ts";
import { createInternalRail } from "../../adapters/internal/index.ts";
import type { Destination } from "../../core/index.ts";
import { assets } from "../../core/index.ts";
import { route } from "../../gateway/router/index.ts";
import type { Snapshot } from "../../gateway/router/types.ts";

const makeRail = (id: string, feeSchedule: FiatFeeSchedule) =>
  createFiatRail({
    id,
    stripe: createStripeClient({
      apiKey: "sk_test_switchyard",
      host: "127.0.0.1",
      port: inject("stripeMockPort"),
      protocol: "http",
      requestTimeoutMs: 5_000,
      networkRetriesMax: 0,
    }),
    store: createMemoryStripeObjectStore(),
    asset: assets.USD,
    feeSchedule,
    liquidity: "not_limited",
  });

let card: FiatRail;
let cheap: FiatRail;
beforeAll(async () => {
  card = makeRail("fiat", defaultFiatFeeSchedule);
  cheap = makeRail("fiat-cheap", { feePpm: 8_000n, feeFixed: 0n, amountMin: 100n, amountMax: 99_999_999n });
  await card.start();
  await cheap.start();
});
afterAll(async () => {
  await card.stop();
  await cheap.stop();
});

const merchant: Destination = { kind: "stripe_account", accountId: "acct_1Merchant" };
const snapshotOf = (...rails: { snapshot(): Snapshot["rails"][number] }[]): Snapshot => ({
  rails: rails.map((rail) => rail.snapshot()),
  usdRates: { USD: { microUsd: 10_000n, perMinorUnits: 1n } }, // 1 ¢ = 10,000 µUSD
  takenAtMs: Date.now(),
});

describe("router with the fiat rail's snapshot", () => {
  it("picks fiat for a payout to a connected account above the minimum, priced by its schedule", () => {
    const decision = route(
      { asset: assets.USD, amount: 1_000n, destination: merchant },
      snapshotOf(card),
      {},
    );
    expect(decision.chosen?.rail).toBe("fiat");
    // 30 ¢ + ceil(1000 ¢ × 2.9 %) = 59 ¢ = 590,000 µUSD
    expect(decision.chosen?.cost.providerMicroUsd).toBe(590_000n);
  });

  it("never picks fiat below its minimum charge (a 5-cent payment)", () => {
    const decision = route({ asset: assets.USD, amount: 5n, destination: merchant }, snapshotOf(card), {});
    expect(decision.chosen).toBeNull();
    expect(decision.excluded).toEqual([expect.objectContaining({ rail: "fiat", reason: "below_minimum" })]);
  });

  it("picks the cheaper rail when two reach the destination", () => {
    const decision = route(
      { asset: assets.USD, amount: 1_000n, destination: merchant },
      snapshotOf(card, cheap),
      {},
    );
    expect(decision.chosen?.rail).toBe("fiat-cheap");
    expect(decision.candidates.map((c) => c.rail)).toEqual(["fiat-cheap", "fiat"]);
  });

  it("does not pick fiat for a destination another rail reaches and it cannot", () => {
    const internal = createInternalRail({ asset: assets.USD });
    const decision = route(
      { asset: assets.USD, amount: 1_000n, destination: { kind: "account", accountId: "acct_internal_1" } },
      snapshotOf(card, internal),
      {},
    );
    expect(decision.chosen?.rail).toBe(internal.id);
    expect(decision.excluded).toEqual([
      expect.objectContaining({ rail: "fiat", reason: "unreachable_destination" }),
    ]);
  });
});
