// The gateway's side of the EVM rail's sweeps: each final sweep's gas booked as a fee of the rail — the rail's fee
// account (ETH) against its ETH clearing account (the hot wallet's gas), in gwei rounded up, as a payout's gas is —
// once per sweep transaction (its ledger id derived from the chain and the transaction hash). The tokens a sweep
// moves need no entry: forwarders and the hot wallet are both the rail's clearing account. The composition root
// runs a pass periodically (gateway/app/evm.ts); tests run one on demand.
import type { Logger } from "../../core/index.ts";
import type { AccountCache } from "../accounts/index.ts";
import type { Db } from "../db/index.ts";
import type { Ledger } from "../ledger/index.ts";
import { bookRailGas, chainTransactionLedgerId, type GasCost } from "./evm-send-gas.ts";

/** A sweep as the EVM rail reports it once final (adapters/evm DepositSweep, the fields booked). */
export type FinalSweep = {
  readonly key: string;
  readonly txHash: string;
  readonly amount: bigint;
  readonly forwarders: number;
  readonly reverted: boolean;
  readonly gas: GasCost;
};

/** What the EVM rail offers for sweeping: a pass that hands each final sweep to the booker. */
export type DepositSweeper = {
  readonly id: string;
  sweepDeposits(book: (sweep: FinalSweep) => Promise<void>): Promise<{ swept: readonly FinalSweep[] }>;
};

export type SweepDeps = { db: Db; ledger: Ledger; accounts: AccountCache; logger?: Logger };

/** Books one final sweep's gas (idempotent: its id is the sweep transaction's). */
export function bookSweepGas(
  deps: SweepDeps,
  rail: string,
  chainId: number,
  sweep: FinalSweep,
): Promise<void> {
  return bookRailGas(deps, {
    rail,
    gas: sweep.gas,
    id: chainTransactionLedgerId(chainId, sweep.txHash, "sweep-gas"),
    evidence: {
      rail,
      reference: sweep.txHash,
      detail: {
        kind: "sweep_gas",
        sweep: sweep.key,
        forwarders: String(sweep.forwarders),
        swept: sweep.amount.toString(),
        reverted: String(sweep.reverted),
        ...sweep.gas.detail,
      },
    },
    label: `the gas of sweep ${sweep.key}`,
  });
}

/** One sweep pass of a rail, every final sweep's gas booked before the rail marks it done. */
export async function sweepDepositsOnce(
  deps: SweepDeps,
  rail: DepositSweeper,
  chainId: number,
): Promise<{ swept: readonly FinalSweep[] }> {
  return rail.sweepDeposits((sweep) => bookSweepGas(deps, rail.id, chainId, sweep));
}
