// The one road every rail's event takes into the gateway, whether it came on a stream (LND, chain logs) or
// through a provider's webhook route: the end of an attempt goes to its payment (and what the provider took back of
// a payout since, payout-reversals.ts), money in (and money taken back or given back) to its invoice, the operator's
// own funds the provider moved (a Stripe payout to the operator's bank) to the operator's capital (reconciliation.ts).
// Each step is idempotent, so a redelivered event changes nothing.
import type { Logger, RailEvent, RailEventVerdict } from "../../core/index.ts";
import {
  applyRailEvent as applyAttemptEvent,
  applyRefundEvent,
  type PaymentsDeps,
} from "../payments/index.ts";
import {
  applyReceived,
  applyReinstated,
  applyReversed,
  receivedOn,
  type SettlementDeps,
} from "./invoices.ts";
import { applyPayoutReversals } from "./payout-reversals.ts";
import { bookRailFees } from "./rail-fees.ts";
import {
  applyParkedRailCapital,
  bookRailCapitalMovements,
  parkRailCapital,
  unparkRailCapital,
} from "./reconciliation.ts";

export type RailEventDeps = {
  readonly settlement: SettlementDeps;
  readonly payments: PaymentsDeps;
  readonly logger: Logger;
};

/**
 * Applies one event of rail `rail`; resolves once it is durably applied (or known to be nothing of ours: then
 * `not_ours`, so that the rail does not count it as credited either).
 */
export async function applyRailEvent(
  deps: RailEventDeps,
  rail: string,
  event: RailEvent,
): Promise<RailEventVerdict> {
  const verdict = await applyMoney(deps, rail, event);
  // What the provider took back of a payout since, once the payout's end is applied: an event that tells a reversal
  // tells the payout's end too, so a transfer reversed before its transfer.created was delivered settles its attempt
  // first, and the reversal then finds the payout booked.
  if (event.kind === "attempt_succeeded" && event.reversals !== undefined && event.reversals.length > 0)
    return await applyPayoutReversals(
      { ...deps.payments, logger: deps.logger },
      { rail, attemptId: event.attemptId, evidence: event.evidence, reversals: event.reversals },
    );
  // The provider's fees beside it, once the money is applied (so on a redelivery of an event applied before too);
  // nothing for money that is not ours. The operator's capital books its own (applyCapital).
  if (verdict === "applied" && event.kind !== "capital" && "fees" in event && event.fees !== undefined)
    await bookRailFees(
      { ...deps.settlement, logger: deps.logger },
      { rail, invoiceId: event.reference, fees: event.fees },
    );
  return verdict;
}

async function applyMoney(deps: RailEventDeps, rail: string, event: RailEvent): Promise<RailEventVerdict> {
  // A refund's end: its payout attempt's event, or its provider's reversal of the invoice (not taken twice). An invoice
  // any of these paid is told by the path that paid it, after its commit, not here from what it returned (which a
  // throw after that commit would lose): a receipt or a give-back by invoices.ts invoicePaid, a refund's failure by
  // payments/refunds.ts refundGivesBack (its deps.onInvoicePaid, which app.ts points at invoicePaid).
  if (await applyRefundEvent(deps.payments, rail, event)) return "applied";
  switch (event.kind) {
    case "attempt_succeeded":
    case "attempt_failed":
      await applyAttemptEvent(deps.payments, event);
      return "applied";
    case "received": {
      const outcome = await applyReceived(deps.settlement, { rail, ...event });
      if (outcome !== "unknown_reference") return "applied";
      deps.logger.info({ rail, reference: event.reference }, "money in for a reference that is not ours");
      return "not_ours";
    }
    case "reversed": {
      const outcome = await applyReversed(deps.settlement, { rail, ...event });
      // A reversal of one receipt never credited took nothing: the rail must not count it as a reversal.
      if (outcome.status === "not_received") return "not_ours";
      // The shortfall is recorded with the reversal and collected from what is given back later (shortfalls.ts);
      // until then the rail's clearing account says the rail holds that much more than it does.
      if (outcome.shortfall > 0n)
        deps.logger.warn(
          { rail, reference: event.reference, key: event.key, shortfall: outcome.shortfall.toString() },
          "a reversal asked more than the account still held; the shortfall is recorded, to be collected",
        );
      return "applied";
    }
    case "reinstated":
      // A give-back pays an invoice as a receipt does (its reorganised part-payment mined again, its last reversal
      // given back), and tells it as one does.
      await applyReinstated(deps.settlement, { rail, ...event });
      return "applied";
    // A fee of money received before: booked below, once the invoice says the money came in on this rail as offered.
    case "fee":
      return (await receivedOn(deps.settlement.db, { id: event.reference, rail, evidence: event.evidence }))
        ? "applied"
        : "not_ours";
    case "capital":
      return await applyCapital(deps, rail, event);
  }
}

/**
 * The operator's own funds the provider moved (a Stripe payout of the platform's balance to its bank, and its money
 * back when the payout failed): one booking of the operator's capital per reference, the one POST
 * /v1/rails/:rail/capital makes, so that the rail's clearing account follows what the provider holds; those not booked
 * yet in one ledger write. Those the clearing account does not hold beyond what its payouts and refunds hold are kept,
 * not refused: the ledger was never told of funds the operator put on the rail (or a payout in flight holds them), and
 * a provider stops delivering an event again after a while (Stripe after 3 days), after which nothing would book
 * them. They are booked once the clearing account holds them (reconciliation.ts applyParkedRailCapital). A reference
 * booked before as another movement (by hand) is only logged: no delivery would mend that. One the operator booked by
 * hand under the provider's own name for it (a Stripe payout's taking under its po_…, as before the gateway booked
 * payouts; one booking with the rail's, by its ledger id) is not booked again; a hand booking under that name of
 * another movement is logged, and the rail's is booked all the same, beside it. The provider's fee for the movement
 * (an Instant Payout's) is booked as the rail's fees are, whatever became of the movement: it was taken.
 */
async function applyCapital(
  deps: RailEventDeps,
  rail: string,
  event: Extract<RailEvent, { kind: "capital" }>,
): Promise<RailEventVerdict> {
  const fieldsOf = (movement: (typeof event.movements)[number]) => ({
    rail,
    reference: movement.reference,
    direction: movement.direction,
    amount: movement.amount.toString(),
  });
  const outcome = await bookRailCapitalMovements(deps.payments, { rail, movements: event.movements });
  for (const movement of outcome.reused)
    deps.logger.error(
      fieldsOf(movement),
      "the operator's capital the rail moved has its reference booked as another movement",
    );
  for (const { movement, handReference } of outcome.byHand)
    deps.logger.info(
      { ...fieldsOf(movement), handReference },
      "the operator's capital the rail moved was booked by hand under its own name; it is not booked again",
    );
  for (const { movement, handReference } of outcome.handDiffers)
    deps.logger.error(
      { ...fieldsOf(movement), handReference },
      "the operator booked another movement by hand under the name of one the rail moved; that one is booked all the same (book back the hand booking if it was meant for it)",
    );
  const references = event.movements.map((movement) => movement.reference);
  if (outcome.notHeld.length === 0) {
    // Kept by an earlier delivery (a payout's taking, before its failure gave it back): booked now.
    await unparkRailCapital(deps.payments, { rail, references });
  } else {
    await parkRailCapital(deps.payments, { rail, movements: outcome.notHeld });
    for (const movement of outcome.notHeld)
      deps.logger.warn(
        fieldsOf(movement),
        "the rail's clearing account does not hold the operator's capital the rail took: kept, and booked once it does (book what the operator put on the rail)",
      );
    // The operator's capital booked between the refusal and the keeping found nothing kept: tried once more now.
    await applyParkedRailCapital(
      { ...deps.payments, logger: deps.logger },
      { rail, references: outcome.notHeld.map((movement) => movement.reference) },
    );
  }
  // Linked to the money taken (a payout's), or else to the first movement.
  const named = event.movements.find((movement) => movement.direction === "out") ?? event.movements[0];
  if (event.fees !== undefined && named !== undefined)
    await bookRailFees(
      { ...deps.settlement, logger: deps.logger },
      { rail, fees: event.fees, capitalReference: named.reference },
    );
  return "applied";
}
