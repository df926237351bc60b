// What the router sees: the rails' own snapshots, priced and prepared, with what the gateway has learned of
// each rail's recent outcomes written in. Refreshed on a timer and after every outcome, so that route()
// always gets a prepared snapshot (the per-snapshot work is done once, not per payment).
import type { Rail } from "../../core/index.ts";
import {
  createLearningState,
  type LearningState,
  noteAttempt,
  type PreparedSnapshot,
  type RateSource,
  recordOutcome,
  refreshSnapshot,
} from "../router/index.ts";

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
    recordOutcome(rail, ok) {
      learning = recordOutcome(learning, rail, ok, params.nowMs());
      refresh();
    },
    start() {
      refresh();
      timer = setInterval(refresh, params.refreshMs);
      timer.unref();
    },
    stop() {
      if (timer !== undefined) clearInterval(timer);
    },
  };
}
