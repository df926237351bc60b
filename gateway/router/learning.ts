// Learning, as pure state and functions with the time passed in: each rail's recent outcomes over a
// sliding window (the success rate the cost model prices), and a circuit breaker. A rail that keeps
// failing opens its circuit and is excluded; after a cool-down it is half-open and one probe may pass;
// the probe's success closes it, its failure opens it again for twice as long (up to a maximum).

import { type CircuitState, type RailSnapshot, SwitchyardError } from "../../core/index.ts";
import { buildSnapshot, type RateSource } from "./fx.ts";
import { type PreparedSnapshot, prepareSnapshot } from "./prepare.ts";
import type { Snapshot } from "./types.ts";

/** The most outcomes a rail's window holds, whatever the configuration asks. */
export const outcomesWindowMax = 1_000;

export type LearningConfig = {
  /** Outcomes kept per rail (≤ outcomesWindowMax). */
  readonly windowSize: number;
  /** Outcomes older than this do not count. */
  readonly windowMs: number;
  /** Consecutive failures that open the circuit. */
  readonly consecutiveFailuresMax: number;
  /** A failure share (parts per million) over the window that opens the circuit, once minSamples are in. */
  readonly failureRatePpmMax: number;
  readonly minSamples: number;
  /** First cool-down after the circuit opens; doubled on each failed probe up to openMsMax. */
  readonly openMs: number;
  readonly openMsMax: number;
  /** How long a probe may stay unanswered before another one is let through. */
  readonly probeTimeoutMs: number;
};

export const learningConfigDefault: LearningConfig = {
  windowSize: 100,
  windowMs: 10 * 60_000,
  consecutiveFailuresMax: 5,
  failureRatePpmMax: 500_000,
  minSamples: 20,
  openMs: 30_000,
  openMsMax: 10 * 60_000,
  probeTimeoutMs: 60_000,
};

export type Outcome = { readonly ok: boolean; readonly atMs: number };

export type RailHealth = {
  /** Oldest first, at most windowSize. */
  readonly outcomes: readonly Outcome[];
  readonly consecutiveFailures: number;
  /** The stored state; an open circuit past its cool-down reads as half_open (see circuitState). */
  readonly circuit: "closed" | "open";
  readonly openedAtMs: number;
  readonly openForMs: number;
  /** When the circuit last closed after a probe: the failure share that opens it counts only outcomes since. */
  readonly closedAtMs: number;
  /** When the probe now in flight was let through; null when none is. */
  readonly probeStartedAtMs: number | null;
  /**
   * The attempts let through as probes since the circuit opened, when their callers named them (the newest last,
   * the one in flight now if probeStartedAtMs is set): only their outcomes close or reopen the circuit (an attempt's
   * sent before the circuit opened and answered late only counts in the window). Every probe of this opening, not
   * only the newest: a probe slower than probeTimeoutMs (a payout waiting for its confirmations) is followed by
   * another, and its late success must still close the circuit. At most probesRememberedMax.
   */
  readonly probeAttemptIds: readonly string[];
};

/** How many probes of one opening are remembered (RailHealth's probeAttemptIds). */
const probesRememberedMax = 16;

export type LearningState = {
  readonly config: LearningConfig;
  readonly rails: Readonly<Record<string, RailHealth>>;
};

export class LearningConfigError extends SwitchyardError {
  override readonly name = "LearningConfigError";
}

export function createLearningState(config: LearningConfig = learningConfigDefault): LearningState {
  if (
    !Number.isInteger(config.windowSize) ||
    config.windowSize < 1 ||
    config.windowSize > outcomesWindowMax
  ) {
    throw new LearningConfigError(`windowSize must be an integer in 1..${outcomesWindowMax}`);
  }
  if (config.consecutiveFailuresMax < 1) throw new LearningConfigError("consecutiveFailuresMax must be ≥ 1");
  if (config.openMs <= 0 || config.openMsMax < config.openMs) {
    throw new LearningConfigError("openMs must be > 0 and ≤ openMsMax");
  }
  return { config, rails: {} };
}

const emptyHealth: RailHealth = {
  outcomes: [],
  consecutiveFailures: 0,
  circuit: "closed",
  openedAtMs: 0,
  openForMs: 0,
  closedAtMs: Number.NEGATIVE_INFINITY,
  probeStartedAtMs: null,
  probeAttemptIds: [],
};

function healthOf(state: LearningState, rail: string): RailHealth {
  return Object.hasOwn(state.rails, rail) ? (state.rails[rail] as RailHealth) : emptyHealth;
}

/** Successes and failures of the rail within the window at nowMs. */
export function windowCounts(
  state: LearningState,
  rail: string,
  nowMs: number,
): { successes: number; failures: number } {
  return windowCountsOf(healthOf(state, rail).outcomes, nowMs - state.config.windowMs);
}

/** The circuit as the router sees it at nowMs. */
export function circuitState(state: LearningState, rail: string, nowMs: number): CircuitState {
  const health = healthOf(state, rail);
  if (health.circuit === "closed") return "closed";
  if (nowMs < health.openedAtMs + health.openForMs) return "open";
  // Cool-down over: one probe at a time. While one is in flight (and not timed out) others wait.
  if (health.probeStartedAtMs !== null && nowMs < health.probeStartedAtMs + state.config.probeTimeoutMs) {
    return "open";
  }
  return "half_open";
}

/**
 * Call when an attempt starts on the rail. When its circuit is half-open this attempt is the probe, and the
 * circuit reads as open to everyone else until the probe's outcome arrives or it times out.
 */
export function noteAttempt(
  state: LearningState,
  rail: string,
  nowMs: number,
  attemptId: string | null = null,
): LearningState {
  if (circuitState(state, rail, nowMs) !== "half_open") return state;
  const health = healthOf(state, rail);
  const probes = attemptId === null ? health.probeAttemptIds : [...health.probeAttemptIds, attemptId];
  return withHealth(state, rail, {
    ...health,
    probeStartedAtMs: nowMs,
    probeAttemptIds: probes.slice(-probesRememberedMax),
  });
}

/**
 * Call when attempt `attemptId` ended in a way that says nothing of the rail (a destination without a route, a fee
 * above the payer's cap), so no outcome is recorded: if it was the probe, the next attempt may probe at once rather
 * than after probeTimeoutMs (before, one tenant paying such a destination at every cool-down kept the rail closed).
 */
export function releaseProbe(state: LearningState, rail: string, attemptId: string): LearningState {
  const health = healthOf(state, rail);
  if (health.probeStartedAtMs === null || health.probeAttemptIds.at(-1) !== attemptId) return state;
  return withHealth(state, rail, {
    ...health,
    probeStartedAtMs: null,
    probeAttemptIds: health.probeAttemptIds.slice(0, -1),
  });
}

function withHealth(state: LearningState, rail: string, health: RailHealth): LearningState {
  return { config: state.config, rails: { ...state.rails, [rail]: health } };
}

/**
 * Records one attempt's final outcome on a rail. Past an open circuit's cool-down, the outcome of a probe (an attempt
 * noteAttempt named since the circuit opened; any outcome when none was named) closes or reopens it; another's only
 * counts.
 */
export function recordOutcome(
  state: LearningState,
  rail: string,
  ok: boolean,
  nowMs: number,
  attemptId: string | null = null,
): LearningState {
  const config = state.config;
  const before = healthOf(state, rail);
  const kept =
    before.outcomes.length >= config.windowSize ? before.outcomes.slice(1) : before.outcomes.slice();
  kept.push({ ok, atMs: nowMs });
  const consecutiveFailures = ok ? 0 : before.consecutiveFailures + 1;
  let health: RailHealth = { ...before, outcomes: kept, consecutiveFailures };

  if (before.circuit === "open") {
    // Before the cool-down ends an outcome (a late answer) only counts in the window. After it, the outcome
    // is the probe's answer: success closes the circuit, failure opens it again for twice as long.
    // An attempt sent before the circuit opened, answered after the cool-down, is not the probe: before, its late
    // success closed the circuit with nothing probed.
    const probe =
      before.probeAttemptIds.length === 0 ||
      (attemptId !== null && before.probeAttemptIds.includes(attemptId));
    if (nowMs >= before.openedAtMs + before.openForMs && probe) {
      health = ok
        ? {
            ...health,
            circuit: "closed",
            openForMs: 0,
            closedAtMs: nowMs,
            probeStartedAtMs: null,
            probeAttemptIds: [],
          }
        : {
            ...health,
            openedAtMs: nowMs,
            openForMs: Math.min(before.openForMs * 2, config.openMsMax),
            probeStartedAtMs: null,
            probeAttemptIds: [],
          };
    }
  } else if (before.circuit === "closed" && !ok) {
    const counts = windowCountsOf(kept, Math.max(nowMs - config.windowMs, before.closedAtMs));
    const samples = counts.successes + counts.failures;
    const rateTooHigh =
      samples >= config.minSamples && counts.failures * 1_000_000 >= config.failureRatePpmMax * samples;
    if (consecutiveFailures >= config.consecutiveFailuresMax || rateTooHigh) {
      health = {
        ...health,
        circuit: "open",
        openedAtMs: nowMs,
        openForMs: config.openMs,
        probeStartedAtMs: null,
        probeAttemptIds: [],
      };
    }
  }
  return withHealth(state, rail, health);
}

function windowCountsOf(
  outcomes: readonly Outcome[],
  sinceMs: number,
): { successes: number; failures: number } {
  let successes = 0;
  let failures = 0;
  for (const outcome of outcomes) {
    if (outcome.atMs < sinceMs) continue;
    if (outcome.ok) successes++;
    else failures++;
  }
  return { successes, failures };
}

/** The rail snapshot with the learned success counts and circuit state written in. */
export function applyLearningToRail(rail: RailSnapshot, state: LearningState, nowMs: number): RailSnapshot {
  const counts = windowCounts(state, rail.rail, nowMs);
  return {
    ...rail,
    successes: counts.successes,
    failures: counts.failures,
    circuit: circuitState(state, rail.rail, nowMs),
  };
}

/** The snapshot with every rail's learned success counts and circuit state written in. */
export function applyLearning(snapshot: Snapshot, state: LearningState, nowMs: number): Snapshot {
  return { ...snapshot, rails: snapshot.rails.map((rail) => applyLearningToRail(rail, state, nowMs)) };
}

/**
 * The background refresh in one call: the rails' own snapshots, priced by the rate source, with the
 * learned success counts and circuit states written in, prepared for route().
 */
export function refreshSnapshot(params: {
  rails: readonly RailSnapshot[];
  rateSource: RateSource;
  /** Payment assets to price besides the rails' own assets and gas tokens. */
  assetCodes: readonly string[];
  learning: LearningState;
  nowMs: number;
}): PreparedSnapshot {
  const built = buildSnapshot({
    rails: params.rails,
    rateSource: params.rateSource,
    assetCodes: params.assetCodes,
    takenAtMs: params.nowMs,
  });
  return prepareSnapshot(applyLearning(built, params.learning, params.nowMs));
}
