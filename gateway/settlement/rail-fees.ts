// The fees a rail's provider takes beside the money an event moves (core RailFee): Stripe's processing fee on a
// card payment, its dispute fee, and that fee given back when a dispute is won. The money itself goes to the
// invoice's accounts (invoices.ts); the fee never reaches them — the provider keeps it out of its balance — so it
// is booked as the platform's cost: from the rail's fee account into its clearing account (transfer code
// payments.feePaid, as a payout's fee), and the other way round for a fee given back. Without it the clearing
// account said the provider held every fee more than it did.
//
// Booked after the event was applied, under an id derived from the rail and the provider's own id for the fee:
// a redelivery (the event is redelivered until everything it implies resolved, fees included) books nothing twice,
// and one fee that several events name (a dispute's first fee, listed again when the dispute is won) once.
import type { Logger, RailFee, SettlementEvidence } from "../../core/index.ts";
import { derivedLedgerId } from "../ids/index.ts";
import { credit, transferCodes } from "../ledger/index.ts";
import { railAccountOpened } from "../payments/index.ts";
import type { SettlementDeps } from "./invoices.ts";

/** The ledger transfer that books fee `feeId` of rail `rail`. */
export const railFeeLedgerId = (rail: string, feeId: string): bigint =>
  derivedLedgerId(`${rail}:${feeId}`, "rail-fee");

/**
 * Books `fees` taken for (or given back with) what happened to invoice `invoiceId` on rail `rail`, in the rail's
 * asset. A fee of 0 books nothing. A fee id booked before with another amount is left as it is and logged: the
 * provider names a fee once, so that is broken data no redelivery would mend.
 */
export async function bookRailFees(
  deps: SettlementDeps & { logger: Logger },
  params: {
    rail: string;
    invoiceId: string;
    evidence: SettlementEvidence;
    fees: readonly RailFee[];
  },
): Promise<void> {
  const fees = params.fees.filter((fee) => fee.amount !== 0n);
  if (fees.length === 0) return;
  const rail = deps.rails.get(params.rail);
  if (rail === undefined) throw new Error(`fees of rail ${params.rail}, which is not configured here`);
  const [feeAccount, clearing] = await Promise.all([
    railAccountOpened(deps, { kind: "fee", rail: params.rail, asset: rail.asset }),
    railAccountOpened(deps, { kind: "clearing", rail: params.rail, asset: rail.asset }),
  ]);
  for (const fee of fees) {
    const taken = fee.amount > 0n;
    const booked = await credit(
      deps.ledger,
      {
        debitAccountId: taken ? feeAccount.ledgerAccountId : clearing.ledgerAccountId,
        creditAccountId: taken ? clearing.ledgerAccountId : feeAccount.ledgerAccountId,
        amount: taken ? fee.amount : -fee.amount,
        ledger: rail.asset.ledger,
        code: transferCodes.payments.feePaid,
      },
      {
        id: railFeeLedgerId(params.rail, fee.id),
        userData128: derivedLedgerId(params.invoiceId, "invoice"),
        evidence: {
          rail: params.rail,
          reference: fee.id,
          detail: { kind: taken ? "fee_taken" : "fee_given_back", of: evidenceReference(params.evidence) },
        },
        label: `fee ${fee.id} of invoice ${params.invoiceId}`,
      },
    );
    if (booked === "conflict")
      deps.logger.error(
        { rail: params.rail, feeId: fee.id, amount: fee.amount.toString(), invoiceId: params.invoiceId },
        "a rail's fee is booked already with another amount; the clearing account differs from the provider's here",
      );
  }
}

/** What the fee was taken for, as the provider names it (the PaymentIntent, the dispute). */
function evidenceReference(evidence: SettlementEvidence): string {
  switch (evidence.rail) {
    case "fiat":
      return evidence.pspId;
    case "lightning":
      return evidence.paymentHash;
    case "evm":
      return evidence.txHash;
    case "internal":
      return "ledger";
    case "external":
      return evidence.reference;
  }
}
