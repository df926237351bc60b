// The fees a rail's provider takes beside the money an event moves (core RailFee): Stripe's processing fee on a
// card payment, its dispute fee, and that fee given back when a dispute is won. The money itself goes to the
// invoice's accounts (invoices.ts); the fee never reaches them — the provider keeps it out of its balance, the balance
// that holds the customers' money — so it is the platform's cost, funded by the operator. Each fee is booked as two
// linked transfers (all or none):
// - the operator's capital put on the rail to fund it (payments.capitalIn, the rail's capital account into its
//   clearing account), and
// - the fee the provider took (payments.feePaid, from the rail's fee account into its clearing account);
// a fee given back, the other way round. So the clearing account keeps saying what the provider holds for the
// customers — every refund and reversal of their money still fits in it, and a payout the rail cannot cover is still
// refused there — and the capital account says what the operator owes the provider for its fees: the provider's
// balance is the clearing account less that, until the operator tops it up. (Booking the fee against the clearing
// account alone made it hold less than the customers' money: a refund or a dispute of a whole payment after its fee
// was then refused by the ledger.)
//
// Booked after the event was applied, under ids derived from the rail and the provider's own id for the fee: a
// redelivery (the event is redelivered until everything it implies resolved, fees included) books nothing twice,
// and one fee that several events name (a dispute's first fee, listed again when the dispute is won) once.
import type { Logger, RailFee } from "../../core/index.ts";
import { derivedLedgerId } from "../ids/index.ts";
import { creditChain, type Leg, transferCodes } from "../ledger/index.ts";
import { railAccountOpened } from "../payments/index.ts";
import type { SettlementDeps } from "./invoices.ts";
import { railCapitalLedgerId } from "./reconciliation.ts";

/** The ledger transfer that books fee `feeId` of rail `rail`. */
export const railFeeLedgerId = (rail: string, feeId: string): bigint =>
  derivedLedgerId(`${rail}:${feeId}`, "rail-fee");

/** The ledger transfer of the operator's capital that funds fee `feeId` (or takes it back, the fee given back). */
export const railFeeFundingLedgerId = (rail: string, feeId: string): bigint =>
  derivedLedgerId(`${rail}:${feeId}`, "rail-fee-funding");

/**
 * Books `fees` taken for (or given back with) what happened to invoice `invoiceId` on rail `rail`, or to the
 * operator's capital the rail moved under `capitalReference` (an Instant Payout's fee), in the rail's asset. A fee of 0
 * books nothing. A fee id booked before with another amount is left as it is and logged: the provider names a fee
 * once, so that is broken data no redelivery would mend.
 */
export async function bookRailFees(
  deps: SettlementDeps & { logger: Logger },
  params: {
    rail: string;
    fees: readonly RailFee[];
  } & ({ invoiceId: string } | { capitalReference: string }),
): Promise<void> {
  const fees = params.fees.filter((fee) => fee.amount !== 0n);
  if (fees.length === 0) return;
  const rail = deps.rails.get(params.rail);
  if (rail === undefined) throw new Error(`fees of rail ${params.rail}, which is not configured here`);
  const [feeAccount, clearing, capital] = await Promise.all([
    railAccountOpened(deps, { kind: "fee", rail: params.rail, asset: rail.asset }),
    railAccountOpened(deps, { kind: "clearing", rail: params.rail, asset: rail.asset }),
    railAccountOpened(deps, { kind: "capital", rail: params.rail, asset: rail.asset }),
  ]);
  // Each fee's transfers name what it was taken for: the invoice, or the booking of the operator's capital.
  const [link, of] =
    "invoiceId" in params
      ? [derivedLedgerId(params.invoiceId, "invoice"), `invoice ${params.invoiceId}`]
      : [
          railCapitalLedgerId(params.rail, params.capitalReference),
          `the operator's capital ${params.capitalReference}`,
        ];
  for (const fee of fees) {
    const taken = fee.amount > 0n;
    const amount = taken ? fee.amount : -fee.amount;
    const label = `fee ${fee.id} of ${of}`;
    // Taken: the fee leaves the clearing account into the fee account, the operator's capital funding it; given back,
    // each the other way round.
    const [feeFrom, feeTo] = taken ? [clearing, feeAccount] : [feeAccount, clearing];
    const [fundFrom, fundTo] = taken ? [capital, clearing] : [clearing, capital];
    const leg = (
      from: { ledgerAccountId: bigint },
      to: { ledgerAccountId: bigint },
      code: number,
      id: bigint,
      kind: string,
      legLabel: string,
    ): Leg => ({
      posting: {
        debitAccountId: to.ledgerAccountId,
        creditAccountId: from.ledgerAccountId,
        amount,
        ledger: rail.asset.ledger,
        code,
      },
      // The same whichever event books it (a dispute's, or its payment's credit for a dispute undone before it):
      // a repeat is compared with what was booked, evidence included.
      transfer: {
        id,
        userData128: link,
        evidence: { rail: params.rail, reference: fee.id, detail: { kind } },
        label: legLabel,
      },
    });
    const feeLeg = leg(
      feeFrom,
      feeTo,
      transferCodes.payments.feePaid,
      railFeeLedgerId(params.rail, fee.id),
      taken ? "fee_taken" : "fee_given_back",
      label,
    );
    const fundingLeg = leg(
      fundFrom,
      fundTo,
      transferCodes.payments.capitalIn,
      railFeeFundingLedgerId(params.rail, fee.id),
      taken ? "fee_funded" : "fee_funding_given_back",
      `the operator's funding of fee ${fee.id}`,
    );
    // Funded first, then taken (the clearing account never dips); given back, the other way round.
    const legs = taken ? [fundingLeg, feeLeg] : [feeLeg, fundingLeg];
    if ((await creditChain(deps.ledger, legs, label)) === "conflict")
      deps.logger.error(
        { rail: params.rail, feeId: fee.id, amount: fee.amount.toString(), of },
        "a rail's fee is booked already with other terms; the ledger's fees differ from the provider's here",
      );
  }
}
