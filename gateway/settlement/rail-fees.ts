// The fees a rail's provider takes beside the money an event moves (core RailFee): Stripe's processing fee on a
// card payment, its dispute fee, and that fee given back when a dispute is won. The money itself goes to the
// invoice's accounts (invoices.ts); the fee never reaches them — the provider keeps it out of its balance — so it
// is booked as the platform's cost: from the rail's fee account into its clearing account (transfer code
// payments.feePaid, as a payout's fee), and the other way round for a fee given back. Without it the clearing
// account said the provider held every fee more than it did.
//
// The clearing account cannot go below zero (a payout the rail cannot cover is refused there). A fee larger than
// what it holds — a dispute's fee once the disputed money is gone — is what Stripe takes from the platform's bank
// when its balance would go negative: the part the clearing account cannot cover is booked first as the operator's
// capital put on the rail (payments.capitalIn, from the rail's capital account), linked with the fee (all or none).
//
// Booked after the event was applied, under ids derived from the rail and the provider's own id for the fee: a
// redelivery (the event is redelivered until everything it implies resolved, fees included) books nothing twice,
// and one fee that several events name (a dispute's first fee, listed again when the dispute is won) once.
import type { Logger, RailFee, SettlementEvidence } from "../../core/index.ts";
import { derivedLedgerId } from "../ids/index.ts";
import { creditChain, LedgerPostingError, type Leg, transferCodes } from "../ledger/index.ts";
import { railAccountOpened } from "../payments/index.ts";
import type { SettlementDeps } from "./invoices.ts";

/** The ledger transfer that books fee `feeId` of rail `rail`. */
export const railFeeLedgerId = (rail: string, feeId: string): bigint =>
  derivedLedgerId(`${rail}:${feeId}`, "rail-fee");

/** The ledger transfer of the operator's capital that covers what the clearing account could not of fee `feeId`. */
export const railFeeCoverLedgerId = (rail: string, feeId: string): bigint =>
  derivedLedgerId(`${rail}:${feeId}`, "rail-fee-cover");

/** Rounds of booking a fee whose cover another writer changed meanwhile (a payout, another fee), before giving up. */
const coverRoundsMax = 5;

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
    const amount = taken ? fee.amount : -fee.amount;
    const feeLeg: Leg = {
      posting: {
        debitAccountId: taken ? feeAccount.ledgerAccountId : clearing.ledgerAccountId,
        creditAccountId: taken ? clearing.ledgerAccountId : feeAccount.ledgerAccountId,
        amount,
        ledger: rail.asset.ledger,
        code: transferCodes.payments.feePaid,
      },
      transfer: {
        id: railFeeLedgerId(params.rail, fee.id),
        userData128: derivedLedgerId(params.invoiceId, "invoice"),
        evidence: {
          rail: params.rail,
          reference: fee.id,
          detail: { kind: taken ? "fee_taken" : "fee_given_back", of: evidenceReference(params.evidence) },
        },
        label: `fee ${fee.id} of invoice ${params.invoiceId}`,
      },
    };
    const label = feeLeg.transfer.label!;
    let booked: "credited" | "conflict";
    for (let round = 0; ; round += 1) {
      const alone = await booking(deps, [feeLeg], label);
      if (alone !== "short") {
        booked = alone;
        break;
      }
      if (round >= coverRoundsMax) throw new LedgerPostingError(label, "exceeds_debits");
      // The clearing account holds less than the fee: the operator's capital covers the rest, with the fee.
      const [account] = await deps.ledger.lookupAccounts([clearing.ledgerAccountId]);
      const room =
        account === undefined ? 0n : account.debitsPosted - account.creditsPosted - account.creditsPending;
      const uncovered = amount - (room > 0n ? room : 0n);
      if (uncovered <= 0n) continue; // a give-back came in meanwhile: the fee alone fits now
      const capital = await railAccountOpened(deps, {
        kind: "capital",
        rail: params.rail,
        asset: rail.asset,
      });
      const cover: Leg = {
        posting: {
          debitAccountId: clearing.ledgerAccountId,
          creditAccountId: capital.ledgerAccountId,
          amount: uncovered,
          ledger: rail.asset.ledger,
          code: transferCodes.payments.capitalIn,
        },
        transfer: {
          id: railFeeCoverLedgerId(params.rail, fee.id),
          userData128: derivedLedgerId(params.invoiceId, "invoice"),
          evidence: { rail: params.rail, reference: fee.id, detail: { kind: "fee_covered_by_capital" } },
          label: `the operator's cover of fee ${fee.id}`,
        },
      };
      // Short again (a payout reserved meanwhile), or a conflict (the cover booked by another writer with another
      // amount, with the fee: they are linked): the next round looks again, and finds the fee booked in the latter.
      if ((await booking(deps, [cover, feeLeg], label)) === "credited") {
        booked = "credited";
        break;
      }
    }
    if (booked === "conflict")
      deps.logger.error(
        { rail: params.rail, feeId: fee.id, amount: fee.amount.toString(), invoiceId: params.invoiceId },
        "a rail's fee is booked already with another amount; the clearing account differs from the provider's here",
      );
  }
}

/** The legs written as one chain; `short` when the clearing account cannot take them (exceeds_debits). */
async function booking(
  deps: Pick<SettlementDeps, "ledger">,
  legs: readonly Leg[],
  label: string,
): Promise<"credited" | "conflict" | "short"> {
  try {
    return await creditChain(deps.ledger, legs, label);
  } catch (error) {
    if (error instanceof LedgerPostingError && error.result === "exceeds_debits") return "short";
    throw error;
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
