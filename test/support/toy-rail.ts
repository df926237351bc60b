// The router's view of a toy rail for tests of the payments core: a USDC rail reaching EVM addresses, with
// no liquidity limit, no network fee and a fixed provider fee that orders rails by price.

import type { RailSnapshot } from "../../core/index.ts";
import { amountMax, assets } from "../../core/index.ts";

export function toyRailSnapshot(id: string, feeFixed: bigint): RailSnapshot {
  return {
    rail: id,
    kind: "evm",
    asset: assets.USDC,
    available: true,
    reaches: ["evm_address"],
    amountMin: 1n,
    amountMax,
    liquidity: null,
    feeFixed,
    feePpm: 0n,
    networkFeeMicroUsd: 0n,
    latencyMs: 1_000,
    successes: 0,
    failures: 0,
    takenAtMs: 0,
  };
}
