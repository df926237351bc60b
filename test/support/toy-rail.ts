// The router's view of a toy rail for tests of the payments core: a USDC rail reaching EVM addresses, with
// no liquidity limit, no network fee and a fixed provider fee that orders rails by price.

import type { Asset, RailSnapshot } from "../../core/index.ts";
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

/**
 * The snapshot of a toy rail that takes money in (its invoices) and reaches no destination: available, no fee, no
 * liquidity limit, up to `amountMax` at once.
 */
export function receivingToySnapshot(
  rail: { id: string; kind: RailSnapshot["kind"]; asset: Asset },
  amountMax: bigint,
): RailSnapshot {
  return {
    rail: rail.id,
    kind: rail.kind,
    asset: rail.asset,
    available: true,
    reaches: [],
    amountMin: 1n,
    amountMax,
    liquidity: null,
    feeFixed: 0n,
    feePpm: 0n,
    networkFeeMicroUsd: 0n,
    latencyMs: 1_000,
    takenAtMs: 0,
  };
}
