// The internal rail: money moves between two Switchyard accounts of one asset. The ledger transfer is
// the movement, so executing an attempt has nothing left to do on any network and costs nothing.
import type {
  Asset,
  AttemptOutcome,
  OutgoingAttempt,
  Rail,
  RailEventHandler,
  RailSnapshot,
} from "../../core/index.ts";
import { amountMax } from "../../core/index.ts";

export function createInternalRail(params: { asset: Asset; id?: string; nowMs?: () => number }): Rail {
  const nowMs = params.nowMs ?? Date.now;
  const id = params.id ?? `internal-${params.asset.code.toLowerCase()}`;
  return {
    id,
    kind: "internal",
    asset: params.asset,
    async start() {},
    async stop() {},
    snapshot(): RailSnapshot {
      return {
        rail: id,
        kind: "internal",
        asset: params.asset,
        available: true,
        reaches: ["account"],
        amountMin: 1n,
        amountMax,
        liquidity: null,
        feeFixed: 0n,
        feePpm: 0n,
        networkFeeMicroUsd: 0n,
        latencyMs: 0,
        takenAtMs: nowMs(),
      };
    },
    async execute(attempt: OutgoingAttempt): Promise<AttemptOutcome> {
      if (attempt.destination.kind !== "account") {
        return {
          status: "failed",
          code: "unreachable_destination",
          message: "the internal rail reaches Switchyard accounts only",
          retryElsewhere: true,
        };
      }
      return { status: "succeeded", evidence: { rail: "internal" }, fee: 0n };
    },
    onEvent(_handler: RailEventHandler) {
      // The internal rail settles inside execute: it has no events of its own.
    },
    async balance() {
      return 0n;
    },
  };
}
