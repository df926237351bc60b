// Stripe's events, from the rail's webhook route (webhook-route.ts: verified, ordered and deduplicated there)
// to the settlement's handler, as the rail's events. Informational events (a failed charge, a connected
// account's failed payout) stop here. A payout's or a refund's fee Stripe refused to tell, or did not tell all of yet,
// is kept, and booked by the rail's pass once Stripe tells it (bookParkedFees).
import Stripe from "stripe";
import type { PayoutReversal, RailEvent, RailEventVerdict, RailFee, RailRoute } from "../../core/index.ts";
import { FiatRailError } from "./errors.ts";
import { type FiatEvent, platformPayoutReferences, refundFeeIds, toRailEvent } from "./events.ts";
import type { FiatRailState } from "./rail-state.ts";
import {
  type DueFee,
  type ParkedFee,
  parkedFeeKeptMsMax,
  parkedFeeKinds,
  type StripeWebhookStore,
} from "./store.ts";
import { createStripeWebhookRoute } from "./webhook-route.ts";

// biome-ignore lint/suspicious/noConfusingVoidType: a handler that returns nothing applied the event
export async function deliver(state: FiatRailState, event: FiatEvent): Promise<RailEventVerdict | void> {
  // A payout's or a refund's fee Stripe did not tell does not hold back its money, which needs no lookup: the money is
  // booked (or kept) now. Stripe not answering (a cut connection, a 5xx, 429) is refused after that, for Stripe to
  // deliver the event again and the fee to be booked then (the money's bookings are once each, by reference or by key).
  // Stripe refusing the lookup for good (a restricted key that may not read payouts or refunds: 403; 404; another 4xx;
  // any failure healsOnRedelivery does not expect to heal) keeps the fee to be asked again, for a week at most
  // (parkUntoldFee, bookParkedFees), and the event is done: refused, it came back refused for the 3
  // days Stripe tries it, every one of them, and Stripe warns of (and at last disables) an endpoint failing so long,
  // which would stop payments' and disputes' events too. Before, a payout's amount waited on the lookup, and was lost
  // with the event once Stripe stopped delivering it; and then such a fee was logged and never booked.
  const feesUntold: { of: "payout" | "refund"; id: string; error: unknown }[] = [];
  const untold = (of: "payout" | "refund", id: string) => (error: unknown) => {
    feesUntold.push({ of, id, error });
    return { fee: 0n, failureFee: 0n };
  };
  // What Stripe answered of each object's fees: one it told (expanded: one answered by its id alone is booked as 0, and
  // told nothing), and its failure's with it, books a fee kept of it (forgetBookedFees); one it did not tell all of is
  // kept (keepFeeToldInPart). The kept fee's revision is read before Stripe is asked: only the row the lookup answers
  // for is forgotten.
  const keptRevision = await keptFeeRevision(state, event);
  const answers = new Map<string, FeesTold>();
  const told = (id: string) => (answer: FeesTold) => {
    answers.set(id, answer);
    return { fee: answer.fee ?? 0n, failureFee: answer.failureFee ?? 0n };
  };
  const railEvent = await toRailEvent(event, {
    transferFee: (transferId) => transferFee(state, transferId),
    chargeFee: (intentId) => chargeFee(state, intentId),
    transferReversals: (transferId) => transferReversals(state, transferId),
    payoutFees: (payoutId) =>
      payoutFeesTold(state, payoutId).then(told(payoutId), untold("payout", payoutId)),
    refundFees: (refundId) =>
      refundFeesTold(state, refundId).then(told(refundId), untold("refund", refundId)),
  });
  if (railEvent === null) return; // informational: nothing was credited, or not our money (a connected account's payout)
  if (state.handler === null)
    throw new FiatRailError("a Stripe event arrived before the rail's handler was set");
  const verdict = await state.handler(railEvent);
  // Money not ours books no fee of it: nothing waits for a redelivery.
  if (verdict === "not_ours") return verdict;
  await forgetBookedFees(state, event, keptRevision, answers);
  await keepFeeToldInPart(state, event, answers);
  for (const untold of feesUntold)
    if (!healsOnRedelivery(untold.error)) await parkUntoldFee(state, event, untold);
  const healing = feesUntold.find(({ error }) => healsOnRedelivery(error));
  if (healing !== undefined)
    throw new FiatRailError(
      `Stripe did not tell the fee of ${healing.of} ${healing.id}; its money is booked, its fee waits for a redelivery`,
      { cause: healing.error },
    );
  return verdict;
}

/**
 * Keeps the fee Stripe refused to tell for the rail's pass to ask again (bookParkedFees), said once as it is kept (not
 * at each delivery of its event while Stripe still refuses). Kept failing, the event is refused for Stripe to deliver
 * it again: nothing of it is lost then. One with nothing to book it with (a refund's event the receiver gave no
 * PaymentIntent: receiver.ts reversalPspIds names the credited one) is only logged, as before.
 */
async function parkUntoldFee(
  state: FiatRailState,
  event: FiatEvent,
  untold: { of: "payout" | "refund"; id: string; error: unknown },
): Promise<void> {
  const { of, id, error } = untold;
  const store = state.params.webhooks?.store;
  const fee = parkedFeeOf(state, event);
  if (store === undefined || fee === null || fee.objectId !== id) {
    state.logger.error(
      { err: error, [of]: id },
      `Stripe refused to tell the fee of ${of} ${id} (may the key read it?); its money is booked, its fee is not, and the event is done`,
    );
    return;
  }
  if ((await store.parkFee(fee)).parked)
    state.logger.warn(
      { err: error, [of]: id },
      `Stripe refused to tell the fee of ${of} ${id} (may the key read it?); its money is booked, its fee is kept and asked for again, from every minute up to every hour, until Stripe tells it, for ${parkedFeeKeptMsMax / 86_400_000} days at most`,
    );
}

/**
 * Keeps the fee of `event`'s object when its lookup answered without telling all the event asks of it: its balance
 * transaction by its id alone (not expanded), or, asked for its failure's fee too (a payout's event, an undone
 * refund's), a failed or canceled one's failure without its balance transaction (yet). What it told is booked now, and
 * what it did not is booked as nothing (a fee of 0 is no booking, so its id stays free); the rail's pass asks again,
 * waiting as this keeps (bookParkedFee), and books it once Stripe tells it, under the ids this event booked the rest
 * under: that is booked no second time. Before, only a fee kept already waited for it: with none kept, what the failure
 * gave back (or took) was never booked.
 */
async function keepFeeToldInPart(
  state: FiatRailState,
  event: FiatEvent,
  answers: ReadonlyMap<string, FeesTold>,
): Promise<void> {
  const store = state.params.webhooks?.store;
  const fee = parkedFeeOf(state, event);
  const answer = fee === null ? undefined : answers.get(fee.objectId);
  if (store === undefined || fee === null || answer === undefined) return;
  if (answer.fee !== null && (!fee.failure || answer.failureTold)) return;
  if ((await store.parkFee(fee)).parked)
    state.logger.info(
      { [fee.kind]: fee.objectId },
      `Stripe did not tell yet all the fees of ${fee.kind} ${fee.objectId} (a balance transaction unexpanded, or its failure's not there yet); what it told is booked, the rest is kept and asked for again until Stripe tells it, for ${parkedFeeKeptMsMax / 86_400_000} days at most`,
    );
}

/** The revision of the fee kept of `event`'s object, read before its lookup (forgetBookedFees); null with none. */
async function keptFeeRevision(state: FiatRailState, event: FiatEvent): Promise<number | null> {
  const store = state.params.webhooks?.store;
  const fee = parkedFeeOf(state, event);
  if (store === undefined || fee === null) return null;
  return store.keptFeeRevision({ rail: state.id, objectId: fee.objectId });
}

/**
 * Forgets the fee kept of `event`'s object (given up or not) once the event booked it, Stripe telling it at its lookup:
 * it is booked under the ids a try would book it under, so a try has nothing left to book, and one given up no longer
 * stands in the operator's list of those given up (README "Reconciling a rail"). A refund's event that books only what
 * the refund took (not undone) leaves one kept asking for its failure's fee too. Before, it stayed kept: a try booked
 * nothing more and forgot it, and one given up stayed listed, booked. Only the row as `revision` says it was before the
 * lookup: one kept since (another process's event of the object, Stripe refusing it a failure's fee this lookup did not
 * see yet) stays. Before, it was deleted whatever kept it since, and that failure's fee was never booked.
 */
async function forgetBookedFees(
  state: FiatRailState,
  event: FiatEvent,
  revision: number | null,
  answers: ReadonlyMap<string, FeesTold>,
): Promise<void> {
  const store = state.params.webhooks?.store;
  const fee = parkedFeeOf(state, event);
  const told = fee === null ? undefined : answers.get(fee.objectId);
  if (store === undefined || fee === null || told === undefined || told.fee === null || revision === null)
    return;
  await store.forgetBookedFee({
    rail: state.id,
    objectId: fee.objectId,
    revision,
    failure: fee.failure && told.failureTold,
  });
}

/**
 * The fee of `event` to keep when Stripe refuses to tell it, or tells it in part: what its own booking of the fee would
 * link it to.
 */
function parkedFeeOf(state: FiatRailState, event: FiatEvent): ParkedFee | null {
  switch (event.kind) {
    case "capital":
      // Both of its fees, as every delivery of a payout's event asks for them.
      return {
        rail: state.id,
        kind: "payout",
        objectId: event.payoutId,
        failure: true,
        movements: event.movements,
      };
    case "reversed":
    case "reinstated": {
      const { refund, paymentIntent } = event.pspIds;
      if (refund === undefined || paymentIntent === undefined) return null;
      return {
        rail: state.id,
        kind: "refund",
        objectId: refund,
        // Undone, the refund's events ask for what its failure gave back too (events.ts refundFeesOf).
        failure: event.kind === "reinstated",
        invoice: event.reference,
        paymentIntent,
      };
    }
    default:
      return null;
  }
}

/** How often the rail's pass looks for kept fees due a try (each kept fee waits longer between its tries). */
export const parkedFeesPassMsDefault = 60_000;

/** The most kept fees one pass gives up (giveUpParkedFees); those past them are given up by the next. */
const parkedFeesGiveUpMax = 20;

/**
 * How long one pass asks Stripe before it leaves the fees still due to the next (as a prune pass is bounded:
 * gateway/periodic deleteInBatches): stop() waits for the pass, and each fee is one request to Stripe.
 */
const parkedFeesPassMsMax = 30_000;

/**
 * Asks Stripe again for the fees kept when it refused to tell them (parkUntoldFee), those whose try is due, and books
 * each one it tells as the event it was kept from would have: a refund's as a fee of the invoice's money (as the API's
 * refund books its fee: refunds.ts), a payout's with the operator's capital it moved (booked once per reference: the
 * movements book nothing more). The fees take their ids from the object (platformPayoutReferences, refundFeeIds), and
 * their ledger ids from those, so a redelivered event and this pass, in any process, book each once. One still refused,
 * or Stripe not answering, waits for its next try (said when it was kept, not at each try); one whose booking fails is
 * logged, and tried again at its next try. A fee kept longer than parkedFeeKeptMsMax is given up first: said once, and
 * asked no more.
 *
 * Stripe refusing the key itself (403: it may not read payouts, or refunds) is the answer every fee of that kind would
 * get: the pass asks for none more of that kind, so a key that may not read them costs one request a pass, not one a
 * fee. A pass ends when the rail stops, and after parkedFeesPassMsMax. It takes each fee as it asks for it, so a fee
 * it does not ask for (of a kind refused, or due past its end) keeps its place, its tries and its wait for the next
 * pass. Before, it took a page of 20, and put off each one as if asked: a fee behind a 403 or past a pass's end waited
 * twice as long, never asked. `waiting` counts the fees asked and still kept.
 */
export async function bookParkedFees(state: FiatRailState): Promise<{ booked: number; waiting: number }> {
  const store = state.params.webhooks?.store;
  let booked = 0;
  let waiting = 0;
  if (store === undefined || state.handler === null || !state.started) return { booked, waiting };
  await giveUpParkedFees(state, store);
  const untilMs = state.nowMs() + parkedFeesPassMsMax;
  const kinds = new Set<DueFee["kind"]>(parkedFeeKinds);
  while (state.started && state.nowMs() < untilMs && kinds.size > 0) {
    // Taken (its next try put off) only now that it is asked, so another process's pass takes another.
    const [fee] = await store.takeDueFees({ rail: state.id, max: 1, kinds: [...kinds] });
    if (fee === undefined) break;
    const outcome = await bookParkedFee(state, store, fee);
    if (outcome === "booked") booked += 1;
    else waiting += 1;
    if (outcome === "key_refused") kinds.delete(fee.kind);
  }
  return { booked, waiting };
}

/** Gives up the fees kept longer than parkedFeeKeptMsMax (store.ts), each said once, for the operator. */
async function giveUpParkedFees(state: FiatRailState, store: StripeWebhookStore): Promise<void> {
  const days = parkedFeeKeptMsMax / 86_400_000;
  for (const fee of await store.giveUpFees({ rail: state.id, max: parkedFeesGiveUpMax }))
    state.logger.error(
      { [fee.kind]: fee.objectId, tries: fee.tries },
      `Stripe did not tell the fee of ${fee.kind} ${fee.objectId} for ${days} days (it refused: may the key read it? or it never showed its balance transaction, or its failure's); its money is booked, its fee is not, and it is asked for no more unless another event of it comes (fiat_parked_fees.gave_up_at; README "Reconciling a rail" says how to have it asked again once the key may read it)`,
    );
}

/**
 * One kept fee's try: `booked` (or nothing to book: forgotten), `waiting` for its next try, `key_refused` when Stripe
 * refused the key itself (403), which waits too.
 */
async function bookParkedFee(
  state: FiatRailState,
  store: StripeWebhookStore,
  kept: DueFee,
): Promise<"booked" | "waiting" | "key_refused"> {
  const about = { [kept.kind]: kept.objectId, tries: kept.tries };
  let told: FeesTold;
  try {
    told =
      kept.kind === "payout"
        ? await payoutFeesTold(state, kept.objectId)
        : await refundFeesTold(state, kept.objectId);
  } catch (error) {
    state.logger.debug({ ...about, err: error }, "Stripe still does not tell a kept fee; asked again later");
    return error instanceof Stripe.errors.StripePermissionError ? "key_refused" : "waiting";
  }
  // A balance transaction answered by its id alone (not expanded) tells no fee: not 0, which would forget the fee. Nor
  // does a failed one's failure without its balance transaction (yet), as an event's lookup counts it (failureFeeTold).
  // Before, that was booked as 0 and the fee forgotten: what the failure gave back was never booked.
  if (told.fee === null || (kept.failure && !told.failureTold)) {
    state.logger.debug(
      about,
      "Stripe answered a kept fee's balance transaction unexpanded, or not yet its failure's; asked again later",
    );
    return "waiting";
  }
  const ids = kept.kind === "payout" ? platformPayoutReferences(kept.objectId) : refundFeeIds(kept.objectId);
  const fees = [
    { id: ids.fee, amount: told.fee },
    ...(kept.failure ? [{ id: ids.failureFee, amount: told.failureFee ?? 0n }] : []),
  ].filter((fee) => fee.amount !== 0n);
  const handler = state.handler;
  let notOurs = false;
  if (fees.length > 0) {
    if (handler === null) return "waiting";
    try {
      notOurs = (await handler(parkedFeeEvent(kept, fees))) === "not_ours";
    } catch (error) {
      state.logger.error(
        { ...about, err: error },
        "a fee Stripe told late could not be booked; tried again later",
      );
      return "waiting";
    }
  }
  await store.unparkFee({ rail: kept.rail, objectId: kept.objectId, revision: kept.revision });
  const fields = { ...about, fees: fees.map((fee) => ({ id: fee.id, amount: fee.amount.toString() })) };
  if (notOurs)
    state.logger.error(
      fields,
      "Stripe told a fee late of money the gateway no longer finds received; it is not booked",
    );
  else
    state.logger.info(
      fields,
      "Stripe told a fee it had refused to tell; it is booked (nothing when it is 0)",
    );
  return "booked";
}

/** The rail's event that books a kept fee, as its own event's booking of it would. */
function parkedFeeEvent(kept: DueFee, fees: readonly RailFee[]): RailEvent {
  if (kept.kind === "payout") return { kind: "capital", movements: kept.movements, fees };
  return {
    kind: "fee",
    reference: kept.invoice,
    // The invoice's money, as it came in: the fee is booked only for an invoice paid on this rail by this intent.
    evidence: { rail: "fiat", pspId: kept.paymentIntent },
    fees,
  };
}

/**
 * Whether Stripe may answer a lookup it failed if asked again: it did not answer (a connection cut or timed out), it
 * failed itself (an API error, a 5xx), asked for less (429), or did not know the key (401: a key rolled or expired,
 * which the operator replaces; the events whose money needs a lookup are refused meanwhile too, and heal with it). A
 * refusal of a key it knows (403: a restricted key without the permission), 404 and another 4xx stay one.
 */
function healsOnRedelivery(error: unknown): boolean {
  if (!(error instanceof Stripe.errors.StripeError)) return false;
  if (
    error instanceof Stripe.errors.StripeConnectionError ||
    error instanceof Stripe.errors.StripeAPIError ||
    error instanceof Stripe.errors.StripeRateLimitError ||
    error instanceof Stripe.errors.StripeAuthenticationError
  )
    return true;
  return error.statusCode !== undefined && (error.statusCode >= 500 || error.statusCode === 429);
}

/**
 * The fee Stripe took for a transfer: its balance transaction's (a Connect transfer's is usually 0), as execute
 * books it. Stripe not answering throws: the event is then not applied, and Stripe delivers it again.
 */
async function transferFee(state: FiatRailState, transferId: string): Promise<bigint> {
  const transfer = await state.stripe.transfers.retrieve(transferId, { expand: ["balance_transaction"] });
  const txn = transfer.balance_transaction;
  return txn === null || typeof txn === "string" ? 0n : BigInt(txn.fee);
}

/** The most reversals of one transfer read from Stripe for one event (100 a page). */
const transferReversalsReadMax = 1_000;

/**
 * A transfer's reversals as Stripe lists them, every page (the events that tell a reversal list 10 at most): those of
 * that transfer in the rail's currency, up to transferReversalsReadMax (the rest logged: not booked until an event
 * lists them). Stripe not answering throws: the event is then not applied, and Stripe delivers it again.
 */
async function transferReversals(state: FiatRailState, transferId: string): Promise<PayoutReversal[]> {
  const found: PayoutReversal[] = [];
  let read = 0;
  for await (const reversal of state.stripe.transfers.listReversals(transferId, { limit: 100 })) {
    read += 1;
    if (read > transferReversalsReadMax) {
      state.logger.error(
        { transferId, read: transferReversalsReadMax },
        "a transfer has more reversals than are read; those past them are not booked",
      );
      break;
    }
    const of = typeof reversal.transfer === "string" ? reversal.transfer : reversal.transfer.id;
    if (of !== transferId || reversal.currency.toLowerCase() !== state.currency || reversal.amount <= 0)
      continue;
    found.push({ key: reversal.id, amount: BigInt(reversal.amount) });
  }
  return found;
}

/**
 * A balance transaction's fee, in minor units of the rail's currency; one in another currency (the account settles in
 * another) cannot be booked in the rail's asset: logged with `about`, and answered as 0.
 */
function feeInRailCurrency(
  state: FiatRailState,
  txn: Stripe.BalanceTransaction,
  about: Record<string, string>,
): bigint {
  if (txn.currency.toLowerCase() === state.currency) return BigInt(txn.fee);
  state.logger.error(
    { ...about, balanceTransaction: txn.id, currency: txn.currency, fee: txn.fee },
    "Stripe's fee is in another currency than the rail's; it is not booked",
  );
  return 0n;
}

/**
 * What Stripe took for a PaymentIntent's money: the fee of its charge's balance transaction, under that balance
 * transaction's id; null while the charge has none (asynchronous capture: charge.updated tells when it has). A fee
 * in another currency than the rail's (the account settles in another) cannot be booked in the rail's asset: logged,
 * and answered as 0 (nothing to book, nothing to wait for). Stripe not answering throws: the event is then not
 * applied, and Stripe delivers it again.
 */
async function chargeFee(state: FiatRailState, intentId: string): Promise<RailFee | null> {
  const intent = await state.stripe.paymentIntents.retrieve(intentId, {
    expand: ["latest_charge.balance_transaction"],
  });
  const charge = intent.latest_charge;
  const txn = charge === null || typeof charge === "string" ? null : charge.balance_transaction;
  if (txn === null || txn === undefined || typeof txn === "string") return null;
  return { id: txn.id, amount: feeInRailCurrency(state, txn, { intentId }) };
}

/**
 * What Stripe took for a payout of the platform's balance, and gave back with its failure: the fees of its balance
 * transaction and of its failure's (an Instant Payout's fee; a standard payout's are 0), one request; a fee null when
 * only its balance transaction's id is told (not expanded: deliver books it as 0 and keeps it, the pass waits). A fee
 * in another currency than the rail's cannot be booked in the rail's asset: logged, and answered as 0. Stripe not
 * answering throws: the event is then not applied, and Stripe delivers it again.
 */
async function payoutFeesTold(state: FiatRailState, payoutId: string): Promise<FeesTold> {
  const payout = await state.stripe.payouts.retrieve(payoutId, {
    expand: ["balance_transaction", "failure_balance_transaction"],
  });
  return {
    fee: balanceTransactionFee(state, payout.balance_transaction, { payoutId }),
    failureFee: balanceTransactionFee(state, payout.failure_balance_transaction, { payoutId }),
    failureTold: failureFeeTold(
      payout.status,
      payout.balance_transaction,
      payout.failure_balance_transaction,
    ),
  };
}

/**
 * What Stripe took for a refund, and gave back with its failure: the fees of its balance transaction (0 for most; less
 * than 0 where Stripe returns part of the payment's processing fee with it) and of its failure's, one request; a fee
 * null when only its balance transaction's id is told (not expanded). A fee in another currency than the rail's cannot
 * be booked in the rail's asset: logged, and answered as 0. A refund with no balance transaction yet took nothing yet:
 * 0. Stripe not answering throws.
 */
async function refundFeesTold(state: FiatRailState, refundId: string): Promise<FeesTold> {
  const refund = await state.stripe.refunds.retrieve(refundId, {
    expand: ["balance_transaction", "failure_balance_transaction"],
  });
  return {
    fee: refundFee(state, refundId, refund.balance_transaction),
    failureFee: refundFee(state, refundId, refund.failure_balance_transaction),
    failureTold: failureFeeTold(
      refund.status,
      refund.balance_transaction,
      refund.failure_balance_transaction,
    ),
  };
}

/**
 * A payout's or a refund's fees as Stripe answered (payoutFeesTold, refundFeesTold); `failureTold`: whether its
 * failure's fee is told, for an event to forget one kept asking for it (forgetBookedFees), or to keep it
 * (keepFeeToldInPart).
 */
type FeesTold = { fee: bigint | null; failureFee: bigint | null; failureTold: boolean };

/**
 * Whether a payout's or refund's answer tells its failure's fee: its failure's balance transaction expanded, or none
 * while it has not failed (nothing given back: a failure later is another event, and one kept of it then another
 * revision, which the event's forgetting leaves), or none while it has no balance transaction either (a refund canceled
 * before it took anything has nothing to give back: 0). Failed or canceled with none (yet) tells nothing: not 0, which
 * would forget a fee kept asking for it (an event's lookup and the pass both wait for it). Before, a missing one was
 * told as 0 whatever the status.
 */
function failureFeeTold(
  status: string | null | undefined,
  txn: string | Stripe.BalanceTransaction | null | undefined,
  failureTxn: string | Stripe.BalanceTransaction | null | undefined,
): boolean {
  if (typeof failureTxn === "string") return false;
  if (failureTxn !== null && failureTxn !== undefined) return true;
  return (status !== "failed" && status !== "canceled") || txn === null || txn === undefined;
}

/**
 * The fee of refund `refundId`'s balance transaction `txn` as a refund Stripe answered holds it (refundFeesTold): 0 with
 * none yet, null when only its id is told (not expanded).
 */
export function refundFee(
  state: FiatRailState,
  refundId: string,
  txn: string | Stripe.BalanceTransaction | null | undefined,
): bigint | null {
  return balanceTransactionFee(state, txn, { refundId });
}

/**
 * The fee of a balance transaction `txn` as a payout or refund Stripe answered holds it: 0 with none (yet), null when
 * only its id is told (not expanded). `about` names the object in the log of a fee in another currency.
 */
function balanceTransactionFee(
  state: FiatRailState,
  txn: string | Stripe.BalanceTransaction | null | undefined,
  about: Record<string, string>,
): bigint | null {
  if (typeof txn === "string") return null;
  return txn === null || txn === undefined ? 0n : feeInRailCurrency(state, txn, about);
}

/** The route this rail contributes (POST /v1/webhooks/stripe); none when the rail was given no webhooks. */
export function webhookRoutes(state: FiatRailState): RailRoute[] {
  const { params, logger } = state;
  if (params.webhooks === undefined) return [];
  return [
    createStripeWebhookRoute({
      ...params.webhooks,
      applyEvent: (event) => deliver(state, event),
      currency: state.currency,
      onRefused: (fields) => logger.warn(fields, "stripe webhook refused"),
    }),
  ];
}
