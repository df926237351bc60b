// Money a payout's provider took back from the payee after the payout was made, and gave back to the platform's
// balance: a Stripe transfer reversal, whole or in part. The payout's post took the amount from the payer into the
// rail's clearing account, which then said the rail held that much less; a reversal gives it back the way it came —
// the clearing account takes it in again (so it follows the provider's balance) and the payer's account gets it back
// (across assets: the rail's asset back into the operator's FX capital, and the payer's share of what it paid out of
// the FX capital in its asset). What the payout cost in fees stays charged: the provider keeps its fee, and a Stripe
// transfer reversal gives none back.
//
// Each reversal is booked once, by the provider's id for it (`key`): its legs under ids derived from the attempt and
// the key, in one linked chain written with its record (payout_reversals, migration 0058), the attempt's
// `amount_reversed` and the tenant's `payment.reversed` event, so nothing of it stands without the rest and a
// redelivery finds it booked. Partial reversals add up; one that would take the attempt past what it paid is refused
// and logged (a provider does not reverse more than was transferred: that is broken data no redelivery would mend).
import { divFloor, type Logger, type PayoutReversal, type SettlementEvidence } from "../../core/index.ts";
import type { AccountRecord } from "../accounts/index.ts";
import { type Statement, serverRaised, textArrayLiteral } from "../db/index.ts";
import { derivedLedgerId } from "../ids/index.ts";
import { type ChainMember, type TransferEvidence, transferCodes, writeChainWith } from "../ledger/index.ts";
import {
  evidenceForLedger,
  fromJson,
  PaymentInvariantError,
  type PaymentsDeps,
  railAccountOpened,
  toJson,
} from "../payments/index.ts";
import { pauseAfterMovedVersion } from "../payments/refunds-store.ts";

export type PayoutReversalDeps = Pick<PaymentsDeps, "db" | "ledger" | "accounts" | "rails"> & {
  readonly logger: Logger;
};

/** How many times one reversal is computed again because another reversal of the same payout was recorded first. */
export const payoutReversalAttemptsMax = 8;

/** The ledger transfer that gives reversal `key` of an attempt back (into the payer, or into the FX capital). */
export const payoutReversalLedgerId = (attemptId: string, key: string, leg: "payer" | "fx"): bigint =>
  derivedLedgerId(`${attemptId}:${key}`, leg === "payer" ? "payout-reversed" : "payout-reversed-fx");

/** What booking a reversal needs of its attempt and payment, read together. */
type ReversedPayout = {
  attemptId: string;
  paymentId: string;
  rail: string;
  status: string;
  /** In the rail's asset. */
  amount: bigint;
  amountReversed: bigint;
  /** The payout's proof, as its post booked it; null for an attempt that never paid. */
  evidence: TransferEvidence | null;
  reserveTransferId: bigint;
  tenantId: string;
  sourceAccountId: string;
  paymentAssetCode: string;
  /** In the payment's asset: what the payer paid (across assets, into the FX capital). */
  paymentAmount: bigint;
};

type ReversedPayoutRow = {
  id: string;
  payment_id: string;
  rail: string;
  status: string;
  amount: bigint;
  amount_reversed: bigint;
  evidence: unknown;
  reserve_transfer_id: string;
  tenant_id: string;
  source_account_id: string;
  asset: string;
  payment_amount: bigint;
};

async function reversedPayout(deps: PayoutReversalDeps, attemptId: string): Promise<ReversedPayout | null> {
  const [row] = await deps.db.query<ReversedPayoutRow>(
    `SELECT a.id, a.payment_id, a.rail, a.status, a.amount, a.amount_reversed, a.evidence,
       a.reserve_transfer_id::text AS reserve_transfer_id, p.tenant_id, p.source_account_id, p.asset,
       p.amount AS payment_amount
     FROM attempts a JOIN payments p ON p.id = a.payment_id WHERE a.id = $1`,
    [attemptId],
  );
  if (row === undefined) return null;
  return {
    attemptId: row.id,
    paymentId: row.payment_id,
    rail: row.rail,
    status: row.status,
    amount: BigInt(row.amount),
    amountReversed: BigInt(row.amount_reversed),
    evidence: row.evidence === null ? null : evidenceForLedger(fromJson<SettlementEvidence>(row.evidence)),
    reserveTransferId: BigInt(row.reserve_transfer_id),
    tenantId: row.tenant_id,
    sourceAccountId: row.source_account_id,
    paymentAssetCode: row.asset,
    paymentAmount: BigInt(row.payment_amount),
  };
}

/** The reversals of an attempt recorded already, of those named. */
async function recordedKeys(
  deps: PayoutReversalDeps,
  attemptId: string,
  keys: readonly string[],
): Promise<Set<string>> {
  const rows = await deps.db.query<{ key: string }>(
    "SELECT key FROM payout_reversals WHERE attempt_id = $1 AND key = ANY($2::text[])",
    [attemptId, textArrayLiteral(keys)],
  );
  return new Set(rows.map((row) => row.key));
}

/**
 * Books what the provider of rail `rail` took back of the payout attempt `attemptId` (whose proof is `evidence`),
 * each reversal once. `not_ours`: no payout of this gateway made on that rail with that proof (an attempt unknown here,
 * or one that never paid): nothing is booked.
 */
export async function applyPayoutReversals(
  deps: PayoutReversalDeps,
  event: {
    rail: string;
    attemptId: string;
    evidence: SettlementEvidence;
    reversals: readonly PayoutReversal[];
  },
): Promise<"applied" | "not_ours"> {
  const found = await reversedPayout(deps, event.attemptId);
  const proof = evidenceForLedger(event.evidence).reference;
  if (
    found === null ||
    found.rail !== event.rail ||
    found.status !== "succeeded" ||
    found.evidence?.reference !== proof
  ) {
    deps.logger.info(
      { rail: event.rail, attemptId: event.attemptId, reference: proof },
      "a reversal of a payout that is not ours, or that never paid: nothing is booked",
    );
    return "not_ours";
  }
  const recorded = await recordedKeys(
    deps,
    found.attemptId,
    event.reversals.map((reversal) => reversal.key),
  );
  for (const reversal of event.reversals)
    if (!recorded.has(reversal.key)) await bookReversal(deps, found.attemptId, reversal);
  return "applied";
}

/** Books one reversal, computed again (from new reads) while other reversals of the payout are recorded first. */
async function bookReversal(
  deps: PayoutReversalDeps,
  attemptId: string,
  reversal: PayoutReversal,
): Promise<void> {
  for (let attempt = 1; attempt <= payoutReversalAttemptsMax; attempt++) {
    const payout = await reversedPayout(deps, attemptId);
    if (payout === null) throw new PaymentInvariantError(`attempt ${attemptId} vanished under its reversal`);
    const after = payout.amountReversed + reversal.amount;
    if (after > payout.amount) {
      deps.logger.error(
        {
          attemptId,
          reversal: reversal.key,
          amount: reversal.amount.toString(),
          reversedBefore: payout.amountReversed.toString(),
          paid: payout.amount.toString(),
        },
        "a payout's reversal would take back more than the payout paid; it is not booked",
      );
      return;
    }
    try {
      await writeReversal(deps, payout, reversal);
      return;
    } catch (error) {
      if (!serverRaised(error, payoutReversalMovedCode)) throw error;
    }
    // The reversal recorded meanwhile may be this one (the same event, delivered to another process): done, rather
    // than computed again from a total that now holds it, under the same ledger ids with other amounts.
    if ((await recordedKeys(deps, attemptId, [reversal.key])).has(reversal.key)) return;
    await pauseAfterMovedVersion(attempt);
  }
  throw new PaymentInvariantError(
    `reversals of attempt ${attemptId} kept being recorded under reversal ${reversal.key} ` +
      `${payoutReversalAttemptsMax} times; nothing of it was written`,
  );
}

/** The operator's FX desk, as payments/reservations.ts names it: its capital per asset. */
const fxRail = "fx";

/** SQLSTATE raised by payout_reversal_moved() (migration 0058). */
const payoutReversalMovedCode = "SYR05";

/**
 * What the payer gets back of a reversal, in the payment's asset: the reversal's amount when the payout did not cross
 * assets; across them, the payer's share of what it paid, in proportion to what was reversed of the whole, rounded
 * down once over all the payout's reversals (so a whole reversal in parts gives back exactly what it paid, and the FX
 * desk keeps the rest of a minor unit on the way).
 */
function returnedOf(payout: ReversedPayout, reversal: PayoutReversal, crossed: boolean): bigint {
  if (!crossed) return reversal.amount;
  const before = divFloor(payout.paymentAmount * payout.amountReversed, payout.amount);
  const after = divFloor(payout.paymentAmount * (payout.amountReversed + reversal.amount), payout.amount);
  return after - before;
}

/** The reversal's legs, as one linked chain, with its record (reversalRecordStatement). */
async function writeReversal(
  deps: PayoutReversalDeps,
  payout: ReversedPayout,
  reversal: PayoutReversal,
): Promise<void> {
  const rail = deps.rails.get(payout.rail);
  if (rail === undefined)
    throw new PaymentInvariantError(`attempt ${payout.attemptId} names unknown rail ${payout.rail}`);
  const payer = await deps.accounts.tenantAccount({ tenantId: payout.tenantId, id: payout.sourceAccountId });
  const clearing = await deps.accounts.railAccount({ kind: "clearing", rail: rail.id, asset: rail.asset });
  if (payer === null || clearing === null)
    throw new PaymentInvariantError(`payment ${payout.paymentId} lost the accounts its payout moved between`);
  const crossed = payer.asset.code !== rail.asset.code;
  const returned = returnedOf(payout, reversal, crossed);
  // The reversal's own id as the proof, beside the payout's (a transfer's tr_…).
  const evidence: TransferEvidence = {
    rail: payout.evidence?.rail ?? rail.id,
    reference: reversal.key,
    detail: { kind: "payout_reversal", payout: payout.evidence?.reference ?? payout.attemptId },
  };
  const move = (
    debit: AccountRecord,
    creditAccountId: bigint,
    amount: bigint,
    code: number,
    leg: "payer" | "fx",
  ): ChainMember => ({
    kind: "move",
    posting: {
      debitAccountId: debit.ledgerAccountId,
      creditAccountId,
      amount,
      ledger: debit.asset.ledger,
      code,
    },
    transfer: {
      id: payoutReversalLedgerId(payout.attemptId, reversal.key, leg),
      userData128: payout.reserveTransferId,
      evidence,
      label: `reversal ${reversal.key} of attempt ${payout.attemptId}`,
    },
  });
  const members: ChainMember[] = [];
  if (!crossed) {
    members.push(
      move(clearing, payer.ledgerAccountId, reversal.amount, transferCodes.payments.payoutReversed, "payer"),
    );
  } else {
    // The way the payout came: the operator's FX desk paid the rail's asset out of its capital, and took the payer's.
    const fxOut = await railAccountOpened(deps, { kind: "capital", rail: fxRail, asset: rail.asset });
    members.push(
      move(clearing, fxOut.ledgerAccountId, reversal.amount, transferCodes.payments.payoutReversedFx, "fx"),
    );
    if (returned > 0n) {
      const fxIn = await railAccountOpened(deps, { kind: "capital", rail: fxRail, asset: payer.asset });
      members.push(
        move(fxIn, payer.ledgerAccountId, returned, transferCodes.payments.payoutReversed, "payer"),
      );
    }
  }
  const statement = reversalRecordStatement(payout, reversal, returned);
  const written = await writeChainWith(
    deps.ledger,
    members,
    { statement, when: "held", sql: deps.db },
    `reversal ${reversal.key} of attempt ${payout.attemptId}`,
  );
  // Only a debit of the clearing account or the FX capital, neither of which refuses one: a refusal is a bug.
  if (written.rows === null)
    throw new PaymentInvariantError(
      `reversal ${reversal.key} of attempt ${payout.attemptId}: refused (${written.outcome})`,
    );
}

/**
 * The record of a reversal, written with its legs: its payout_reversals row (once per key: `recorded` says whether
 * this statement wrote it), the attempt's `amount_reversed` moved on from what the legs were computed from (another
 * reversal recorded since raises payout_reversal_moved(), rolling the legs back), and the tenant's `payment.reversed`
 * event. On a redelivery whose legs the ledger has whole it is written on its own, and records nothing.
 */
function reversalRecordStatement(
  payout: ReversedPayout,
  reversal: PayoutReversal,
  returned: bigint,
): Statement {
  const payload = {
    payment_id: payout.paymentId,
    reversal: reversal.key,
    asset: payout.paymentAssetCode,
    amount: returned.toString(),
    source_account: payout.sourceAccountId,
    rail: payout.rail,
  };
  return {
    text: `WITH
     recorded AS (
       INSERT INTO payout_reversals (attempt_id, key, amount, returned) VALUES ($1, $2, $3, $4)
       ON CONFLICT (attempt_id, key) DO NOTHING
       RETURNING 1),
     moved AS (
       UPDATE attempts SET amount_reversed = amount_reversed + $3
       WHERE id = $1 AND amount_reversed = $5 AND EXISTS (SELECT 1 FROM recorded)
       RETURNING 1),
     announced AS (
       INSERT INTO outbox (tenant_id, type, payload) SELECT $6, 'payment.reversed', $7::jsonb FROM moved
       RETURNING 1)
     SELECT EXISTS (SELECT 1 FROM recorded) AS recorded,
       CASE WHEN EXISTS (SELECT 1 FROM recorded) AND NOT EXISTS (SELECT 1 FROM moved)
              THEN payout_reversal_moved() ELSE true END AS standing`,
    params: [
      payout.attemptId,
      reversal.key,
      reversal.amount,
      returned,
      payout.amountReversed,
      payout.tenantId,
      toJson(payload),
    ],
  };
}
