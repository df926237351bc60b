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
} from "../router/index.ts";

/** How long after an outcome that changes no circuit the snapshot is made again with it. */
export const outcomeRefreshMs = 50;

export type Market = {
  snapshot(): PreparedSnapshot;
  refresh(): PreparedSnapshot;
  noteAttempt(rail: string): void;
  recordOutcome(rail: string, ok: boolean): void;
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
    noteAttempt(rail) {
      const next = noteAttempt(learning, rail, params.nowMs());
      if (next === learning) return;
      learning = next;
      refresh();
    },
    // An outcome that opens or closes a circuit is seen at once; one that only moves the counts, within
    // outcomeRefreshMs, together with the others of that while: made again on every outcome, the snapshot (every
    // rail's, priced and prepared) cost a rebuild per external payment, and the routing memo of internal payments,
    // kept per snapshot, lasted only as long as the time between two of them.
    recordOutcome(rail, ok) {
      const nowMs = params.nowMs();
      const before = circuitState(learning, rail, nowMs);
      learning = recordOutcome(learning, rail, ok, nowMs);
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
