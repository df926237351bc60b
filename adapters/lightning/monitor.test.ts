// The rail's snapshot over a journal it may no longer write: the router must not route to it.
import { describe, expect, it } from "vitest";
import { assets } from "../../core/index.ts";
import { recordingLogger } from "../../test/support/recording-logger.ts";
import { snapshot } from "./monitor.ts";
import { type LightningRailState, lightningRailLimitsDefault } from "./state.ts";
import { createMemoryRailStore } from "./store.ts";

/** What snapshot reads of a running rail whose LND is connected and synced. */
const state = (held: boolean) =>
  ({
    id: "lightning",
    asset: assets.BTC,
    running: true,
    health: { connected: true, syncedToChain: true },
    store: { ...createMemoryRailStore(), held: () => held },
    limits: lightningRailLimitsDefault,
    recent: [],
    probeEstimate: null,
    liquidity: null,
    usdRate: () => ({ microUsd: 1n, perMinorUnits: 1n }),
    now: () => 0,
    logger: recordingLogger().logger,
    tearSaid: null,
  }) as unknown as LightningRailState;

describe("the Lightning rail's snapshot", () => {
  it("is unavailable once another process took the journal over: every write is refused", () => {
    expect(snapshot(state(true)).available).toBe(true);
    // Before: available, and every payout routed to it refused.
    expect(snapshot(state(false)).available).toBe(false);
  });
});
