// What the router sees: the rails' own snapshots, priced and prepared, with what the gateway has learned of
// each rail's recent outcomes written in. Refreshed on a timer and after outcomes (below), so that route()
// always gets a prepared snapshot (the per-snapshot work is done once, not per payment).
import type { Rail } from "../../core/index.ts";
import {
  circuitState,
  createLearningState,
  type LearningState,
  noteAttempt,
  type PreparedSnapshot,
  type RateSource,
  recordOutcome,
  refreshSnapshot,
  releaseProbe,
} from "../router/index.ts";

/** How long after an outcome that changes no circuit the snapshot is made again with it. */
export const outcomeRefreshMs = 50;

export type Market = {
  snapshot(): PreparedSnapshot;
  refresh(): PreparedSnapshot;
  /**
   * An attempt is about to be sent: whether it may go, that is whether the rail's circuit is closed, or half-open
   * and this attempt is now its probe. Routed while half-open, every payment had the rail as a candidate until the
   * first one claimed the probe; the others are now told no, and fall back without asking the rail.
   */
  noteAttempt(rail: string, attemptId?: string): boolean;
  recordOutcome(rail: string, ok: boolean, attemptId?: string): void;
  /** The attempt ended in a way that says nothing of the rail: if it was the probe, the next one may probe. */
  releaseProbe(rail: string, attemptId: string): void;
  start(): void;
  stop(): void;
};

export function createMarket(params: {
  rails: ReadonlyMap<string, Rail>;
  rateSource: RateSource;
  assetCodes: readonly string[];
  refreshMs: number;
  nowMs: () => number;
}): Market {
  let learning: LearningState = createLearningState();
  let timer: NodeJS.Timeout | undefined;
  let outcomesTimer: NodeJS.Timeout | undefined;
  const build = (): PreparedSnapshot =>
    refreshSnapshot({
      rails: [...params.rails.values()].map((rail) => rail.snapshot()),
      rateSource: params.rateSource,
      assetCodes: params.assetCodes,
      learning,
      nowMs: params.nowMs(),
    });
  let current = build();
  const refresh = () => {
    current = build();
    return current;
  };
  return {
    snapshot: () => current,
    refresh,
    // A probe let through: the circuit reads open to every other payment at once, not after the next refresh.
    noteAttempt(rail, attemptId) {
      const nowMs = params.nowMs();
      const circuit = circuitState(learning, rail, nowMs);
      if (circuit === "open") return false;
      if (circuit === "closed") return true;
      learning = noteAttempt(learning, rail, nowMs, attemptId ?? null);
      refresh();
      return true;
    },
    releaseProbe(rail, attemptId) {
      const next = releaseProbe(learning, rail, attemptId);
      if (next === learning) return;
      learning = next;
      refresh();
    },
    // An outcome that opens or closes a circuit is seen at once; one that only moves the counts, within
    // outcomeRefreshMs, together with the others of that while: made again on every outcome, the snapshot (every
    // rail's, priced and prepared) cost a rebuild per external payment, and the routing memo of internal payments,
    // kept per snapshot, lasted only as long as the time between two of them.
    recordOutcome(rail, ok, attemptId) {
      const nowMs = params.nowMs();
      const before = circuitState(learning, rail, nowMs);
      learning = recordOutcome(learning, rail, ok, nowMs, attemptId ?? null);
      if (circuitState(learning, rail, nowMs) !== before) refresh();
      else if (outcomesTimer === undefined) {
        outcomesTimer = setTimeout(() => {
          outcomesTimer = undefined;
          refresh();
        }, outcomeRefreshMs);
        outcomesTimer.unref();
      }
    },
    start() {
      refresh();
      timer = setInterval(refresh, params.refreshMs);
      timer.unref();
    },
    stop() {
      if (timer !== undefined) clearInterval(timer);
      if (outcomesTimer !== undefined) clearTimeout(outcomesTimer);
    },
  };
}
