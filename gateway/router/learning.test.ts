import { describe, expect, it } from "vitest";
import { evmRail, staticSnapshot, usdc } from "./fixtures.ts";
import {
  applyLearning,
  circuitState,
  createLearningState,
  type LearningConfig,
  LearningConfigError,
  type LearningState,
  learningConfigDefault,
  noteAttempt,
  prepareSnapshot,
  recordOutcome,
  refreshSnapshot,
  releaseProbe,
  route,
  staticRateSource,
  staticUsdRates,
  windowCounts,
} from "./index.ts";

const config: LearningConfig = {
  ...learningConfigDefault,
  windowSize: 10,
  windowMs: 60_000,
  consecutiveFailuresMax: 3,
  failureRatePpmMax: 500_000,
  minSamples: 6,
  openMs: 1_000,
  openMsMax: 4_000,
  probeTimeoutMs: 500,
};

function record(state: LearningState, outcomes: string, startMs: number, stepMs = 1): LearningState {
  let s = state;
  [...outcomes].forEach((c, i) => {
    s = recordOutcome(s, "evm", c === "+", startMs + i * stepMs);
  });
  return s;
}

describe("learning: the success window", () => {
  it("counts the last windowSize outcomes that are younger than windowMs", () => {
    let state = record(createLearningState(config), "++-+", 0);
    expect(windowCounts(state, "evm", 10)).toEqual({ successes: 3, failures: 1 });
    state = record(state, "++++++++", 10); // 12 outcomes: the oldest 2 (++) drop out
    expect(windowCounts(state, "evm", 20)).toEqual({ successes: 9, failures: 1 });
    expect(windowCounts(state, "evm", 60_005)).toEqual({ successes: 8, failures: 0 }); // the first 4 have aged out
    expect(windowCounts(state, "lightning", 0)).toEqual({ successes: 0, failures: 0 });
  });

  it("is written into the snapshot, where it prices failure", () => {
    const state = record(createLearningState(config), "+-", 0);
    const snapshot = applyLearning(staticSnapshot([evmRail]), state, 10);
    expect(snapshot.rails[0]).toMatchObject({ successes: 1, failures: 1, circuit: "closed" });
    const decision = route(
      { asset: usdc, amount: 1_000_000n, destination: { kind: "evm_address", address: "0x01" } },
      prepareSnapshot(snapshot),
      {},
    );
    // ceil(1 × (1 950 + 10 000) / 3)
    expect(decision.chosen?.cost.failureMicroUsd).toBe(3_984n);
  });

  it("refuses a window larger than its maximum", () => {
    expect(() => createLearningState({ ...config, windowSize: 1_001 })).toThrow(LearningConfigError);
  });
});

describe("learning: the circuit breaker", () => {
  it("opens after consecutive failures, excludes the rail, then lets one probe through", () => {
    let state = record(createLearningState(config), "+--", 0);
    expect(circuitState(state, "evm", 3)).toBe("closed");
    state = recordOutcome(state, "evm", false, 100); // third failure in a row
    expect(circuitState(state, "evm", 100)).toBe("open");
    expect(circuitState(state, "evm", 1_099)).toBe("open");

    const intent = {
      asset: usdc,
      amount: 1n,
      destination: { kind: "evm_address", address: "0x01" },
    } as const;
    const excluded = route(intent, applyLearning(staticSnapshot([evmRail]), state, 500), {});
    expect(excluded.excluded.map((e) => e.reason)).toEqual(["circuit_open"]);

    expect(circuitState(state, "evm", 1_100)).toBe("half_open");
    const probing = route(intent, applyLearning(staticSnapshot([evmRail]), state, 1_100), {});
    expect(probing.chosen?.rail).toBe("evm");

    state = noteAttempt(state, "evm", 1_100); // this attempt is the probe
    expect(circuitState(state, "evm", 1_200)).toBe("open"); // others wait for it
    expect(circuitState(state, "evm", 1_600)).toBe("half_open"); // the probe timed out: another may go
  });

  it("closes on the probe's success", () => {
    let state = record(createLearningState(config), "---", 0);
    state = noteAttempt(state, "evm", 1_500);
    state = recordOutcome(state, "evm", true, 1_700);
    expect(circuitState(state, "evm", 1_700)).toBe("closed");
    // The failures before the close do not reopen it on the next single failure.
    state = recordOutcome(state, "evm", false, 1_800);
    expect(circuitState(state, "evm", 1_800)).toBe("closed");
  });

  it("reopens on the probe's failure for twice as long, up to openMsMax", () => {
    let state = record(createLearningState(config), "---", 0); // opened at 2 for 1 000
    state = recordOutcome(state, "evm", false, 1_002); // probe fails: open for 2 000
    expect(circuitState(state, "evm", 3_001)).toBe("open");
    expect(circuitState(state, "evm", 3_002)).toBe("half_open");
    state = recordOutcome(state, "evm", false, 3_002); // 4 000
    state = recordOutcome(state, "evm", false, 7_002); // 8 000 → capped at 4 000
    expect(circuitState(state, "evm", 11_001)).toBe("open");
    expect(circuitState(state, "evm", 11_002)).toBe("half_open");
  });

  it("ignores late answers while open, and opens on a high failure share too", () => {
    let state = record(createLearningState(config), "---", 0);
    state = recordOutcome(state, "evm", true, 500); // a late success during the cool-down
    expect(circuitState(state, "evm", 500)).toBe("open");

    // No three in a row, but 3 failures in 6 samples reach 50 %.
    state = record(createLearningState(config), "+-+-+-", 0);
    expect(circuitState(state, "evm", 5)).toBe("open");
    state = record(createLearningState(config), "+-+-+", 0);
    expect(circuitState(state, "evm", 5)).toBe("closed");
  });

  it("takes only the named probe's outcome as the probe's: a late answer of another attempt only counts", () => {
    let state = record(createLearningState(config), "---", 0); // opened at 2 for 1 000
    state = noteAttempt(state, "evm", 1_100, "att_probe");
    // An attempt sent before the circuit opened succeeds late: before, it closed the circuit with nothing probed.
    state = recordOutcome(state, "evm", true, 1_200, "att_sent_before");
    expect(circuitState(state, "evm", 1_200)).toBe("open");
    state = recordOutcome(state, "evm", true, 1_300, "att_probe");
    expect(circuitState(state, "evm", 1_300)).toBe("closed");
  });

  it("closes on a slow probe's late success though another probe took its place after the timeout", () => {
    let state = record(createLearningState(config), "---", 0); // opened at 2 for 1 000
    state = noteAttempt(state, "evm", 1_100, "att_slow"); // a payout waiting for its confirmations
    state = noteAttempt(state, "evm", 1_600, "att_next"); // the probe timed out (500): another goes
    // Before: only the newest probe's answer counted, and the slow one's success left the circuit open.
    state = recordOutcome(state, "evm", true, 1_700, "att_slow");
    expect(circuitState(state, "evm", 1_700)).toBe("closed");
  });

  it("lets the next attempt probe at once when the probe ended saying nothing of the rail", () => {
    let state = record(createLearningState(config), "---", 0);
    state = noteAttempt(state, "evm", 1_100, "att_no_route");
    expect(circuitState(state, "evm", 1_150)).toBe("open"); // the probe in flight
    // Its destination had no route (not recorded): before, every other payment waited out probeTimeoutMs.
    state = releaseProbe(state, "evm", "att_no_route");
    expect(circuitState(state, "evm", 1_150)).toBe("half_open");
    // Another attempt's end releases nothing.
    state = noteAttempt(state, "evm", 1_160, "att_next");
    expect(releaseProbe(state, "evm", "att_other")).toBe(state);
  });

  it("never mutates the state it is given", () => {
    const before = record(createLearningState(config), "+-", 0);
    const copy = structuredClone(before);
    recordOutcome(before, "evm", false, 10);
    noteAttempt(before, "evm", 10);
    expect(before).toEqual(copy);
  });
});

describe("refreshSnapshot", () => {
  it("prices the rails, writes in what was learned and prepares the snapshot", () => {
    let learning = createLearningState(config);
    learning = record(learning, "---", 0);
    const snapshot = refreshSnapshot({
      rails: [evmRail],
      rateSource: staticRateSource({ usdRates: staticUsdRates, spreadsPpm: { "USD->USDC": 500n } }),
      assetCodes: ["USD"],
      learning,
      nowMs: 10,
    });
    expect(Object.keys(snapshot.usdRates).sort()).toEqual(["ETH", "USD", "USDC"]);
    expect(snapshot.fxSpreadsPpm).toEqual({ "USD->USDC": 500n });
    expect(snapshot.rails[0]).toMatchObject({ failures: 3, circuit: "open" });
    expect(snapshot.prepared.rails).toHaveLength(1);
    expect(snapshot.takenAtMs).toBe(10);
  });
});
