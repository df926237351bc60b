// The gateway's side of the EVM rail's send-gas pass (adapters/evm send-gas.ts): the gas of each mined transaction of
// the hot wallet that no payment books — the splitter's approve, a payout or a netting batch mined reverted, an
// invoice's authorization submitted — booked as a fee of the rail: its fee account (ETH) against its ETH clearing
// account (what the hot wallet holds), in gwei rounded up as every gas booking is, once per transaction (its ledger
// id derived from the chain and the transaction hash). The evidence names the transaction and what it was sent for.
// The composition root runs a pass periodically (gateway/app/evm.ts); tests run one on demand.
import type { Asset } from "../../core/index.ts";
import { derivedLedgerId } from "../ids/index.ts";
import { credit, type TransferEvidence, transferCodes } from "../ledger/index.ts";
import { railAccountOpened } from "../payments/index.ts";
import type { SweepDeps } from "./evm-deposits.ts";
import { SettlementInvariantError } from "./invoices.ts";

/** Gas a rail's transaction cost, as the EVM rail reports it (core FeePaid: gwei of the native asset, rounded up). */
export type GasCost = {
  readonly asset: Asset;
  readonly amount: bigint;
  readonly detail: Readonly<Record<string, string>>;
};

/** A mined send as the EVM rail hands it to the pass's booker (adapters/evm MinedSend, the fields booked). */
export type MinedSendGas = {
  readonly key: string;
  readonly kind: string;
  readonly txHash: string;
  readonly reverted: boolean;
  readonly gas: GasCost;
};

/** What the EVM rail offers for its send-gas pass. */
export type SendGasFollower = {
  readonly id: string;
  sendGasPass(book: (send: MinedSendGas) => Promise<void>): Promise<{ booked: readonly MinedSendGas[] }>;
};

/**
 * Books gas the hot wallet paid: from the rail's fee account to its clearing account in the gas's asset, under `id`
 * (idempotent: the same id and amount books nothing more; another amount under it is an invariant broken).
 */
export async function bookRailGas(
  deps: SweepDeps,
  booking: {
    rail: string;
    gas: GasCost;
    id: bigint;
    evidence: TransferEvidence;
    label: string;
  },
): Promise<void> {
  const { rail, gas } = booking;
  if (gas.amount === 0n) return;
  const [fees, clearing] = await Promise.all([
    railAccountOpened(deps, { kind: "fee", rail, asset: gas.asset }),
    railAccountOpened(deps, { kind: "clearing", rail, asset: gas.asset }),
  ]);
  const booked = await credit(
    deps.ledger,
    {
      debitAccountId: fees.ledgerAccountId,
      creditAccountId: clearing.ledgerAccountId,
      amount: gas.amount,
      ledger: gas.asset.ledger,
      code: transferCodes.payments.feePaid,
    },
    { id: booking.id, evidence: booking.evidence, label: booking.label },
  );
  if (booked === "conflict")
    throw new SettlementInvariantError(`${booking.label} is booked with other terms`, {
      details: booking.evidence.reference,
    });
}

/** Books one mined send's gas (idempotent: its id is the transaction's). */
export function bookSendGas(
  deps: SweepDeps,
  rail: string,
  chainId: number,
  send: MinedSendGas,
): Promise<void> {
  return bookRailGas(deps, {
    rail,
    gas: send.gas,
    id: derivedLedgerId(`${chainId}:${send.txHash.toLowerCase()}`, "send-gas"),
    evidence: {
      rail,
      reference: send.txHash,
      detail: {
        kind: "send_gas",
        send: send.key,
        sent: send.kind,
        reverted: String(send.reverted),
        ...send.gas.detail,
      },
    },
    label: `the gas of ${send.kind} ${send.txHash}${send.reverted ? " (reverted)" : ""}`,
  });
}

/** One send-gas pass of a rail: every mined send no payment books has its gas booked before the rail marks it done. */
export function sendGasPassOnce(
  deps: SweepDeps,
  rail: SendGasFollower,
  chainId: number,
): Promise<{ booked: readonly MinedSendGas[] }> {
  return rail.sendGasPass((send) => bookSendGas(deps, rail.id, chainId, send));
}
