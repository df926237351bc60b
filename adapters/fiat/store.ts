// What the fiat rail remembers: the Stripe objects it created (by idempotency key, so a retry returns the
// first object even after Stripe forgets the key), the webhook events it applied (by event id), and per
// PaymentIntent whether it was credited, with the reversals that arrived before the credit; and the payouts' and
// refunds' fees Stripe refused to tell, until it tells them (asked for a week, then given up).
// The in-memory stores are for unit tests only; the gateway uses the SQL ones (sql-store.ts).
import { type RailCapitalMovement, type RailFee, SwitchyardError } from "../../core/index.ts";

export type StripeObjectKind = "payment_intent" | "transfer" | "refund";

export type StripeObjectRecord = {
  readonly idempotencyKey: string;
  readonly kind: StripeObjectKind;
  readonly objectId: string;
  readonly paymentId: string;
  readonly attemptId: string | null;
  readonly amount: bigint;
};

export interface StripeObjectStore {
  find(idempotencyKey: string): Promise<StripeObjectRecord | null>;
  /** Keeps the first record for a key; returns the one that holds the key now (the first, not `record` if it lost). */
  record(record: StripeObjectRecord): Promise<StripeObjectRecord>;
}

/** Stripe ids that prove a movement; all that apply to the event are set. */
export type FiatPspIds = {
  readonly event?: string;
  readonly paymentIntent?: string;
  readonly charge?: string;
  readonly transfer?: string;
  readonly refund?: string;
  readonly dispute?: string;
  readonly payout?: string;
};

export type ReversalReason = "dispute" | "refund";

/** Money taken back from a credited PaymentIntent. `key` is unique per reversal: "dispute:du_…", "refund:re_…". */
export type ParkedReversal = {
  readonly key: string;
  readonly reason: ReversalReason;
  readonly amount: bigint;
  readonly pspIds: FiatPspIds;
  /** What Stripe took for it (a dispute's fee), booked with it. */
  readonly fees?: readonly RailFee[];
};

export type CreditedIntent = {
  readonly intentId: string;
  readonly paymentId: string;
  readonly attemptId: string;
  readonly reference: string;
  readonly amount: bigint;
};

/**
 * A payout's or a refund's fee Stripe refused to tell when its event was delivered (a restricted key's 403, a 404:
 * delivery.ts), or did not tell all of (a balance transaction unexpanded, its failure's not there yet), kept to be asked again and
 * booked once Stripe tells it: what Stripe object `objectId` (po_…, re_…)'s balance transaction took, and with
 * `failure` what its failure's gave back, under the fee ids that object names (platformPayoutReferences, refundFeeIds),
 * linked as its event's booking linked them: a refund's to the invoice it refunds (paid by `paymentIntent`), a payout's
 * to the operator's capital it moved (`movements`, booked again as nothing more: once per reference).
 */
export type ParkedFee = { readonly rail: string; readonly objectId: string; readonly failure: boolean } & (
  | { readonly kind: "refund"; readonly invoice: string; readonly paymentIntent: string }
  | { readonly kind: "payout"; readonly movements: readonly RailCapitalMovement[] }
);

/** Every kind of kept fee: payouts' and refunds' (a pass asks them all until Stripe refuses one; takeDueFees). */
export const parkedFeeKinds: readonly ParkedFee["kind"][] = ["payout", "refund"];

/** A kept fee taken for a try: `revision` says which keeping of it the try read (unparkFee). */
export type DueFee = ParkedFee & { readonly tries: number; readonly revision: number };

/** The wait before a kept fee's first try, doubled after each try up to parkedFeeRetryMsMax. */
export const parkedFeeRetryMsMin = 60_000;
export const parkedFeeRetryMsMax = 3_600_000;

/** The wait after a kept fee's `tries`-th try (0: its keeping). */
export const parkedFeeRetryMs = (tries: number): number =>
  Math.min(parkedFeeRetryMsMax, parkedFeeRetryMsMin * 2 ** Math.min(tries, 20));

/**
 * How long a kept fee is asked for after it was kept: past that it is given up (giveUpFees), no longer asked. A key that
 * may never read the object (another account's, a restricted key never given the permission) would otherwise have every
 * refund's fee asked every hour for ever, each taking from Stripe's rate limit beside the webhook's lookups and refunds.
 */
export const parkedFeeKeptMsMax = 7 * 24 * 3_600_000;

/** A kept fee given up (giveUpFees): which, and how many times it was asked. */
export type GivenUpFee = {
  readonly rail: string;
  readonly objectId: string;
  readonly kind: ParkedFee["kind"];
  readonly tries: number;
};

export interface StripeWebhookStore {
  isApplied(eventId: string): Promise<boolean>;
  /** Idempotent. Called only after the event's effects were applied. */
  markApplied(params: { eventId: string; type: string }): Promise<void>;
  /** The intent, when its success was applied; null otherwise. */
  creditedIntent(intentId: string): Promise<CreditedIntent | null>;
  /**
   * Atomically marks the intent credited (idempotent) and returns the reversals parked for it, which stay
   * parked until `unpark`, and whether a fee waits for it (parkFeeUnlessCredited), which waits until
   * `clearFeePending`: a crash between the two leaves them to the next delivery.
   */
  markCredited(intent: CreditedIntent): Promise<{
    wasCredited: boolean;
    parked: ParkedReversal[];
    feePending: boolean;
    /** The fees of its reversals undone before the credit (withdraw, parkUnlessCredited), kept until clearFeePending. */
    pendingFees: RailFee[];
  }>;
  /**
   * Atomically: when the intent is credited, returns it; otherwise remembers that its charge's fee is to be booked
   * once it is (idempotent). The intent may never be credited (not ours): then nothing comes of it.
   */
  parkFeeUnlessCredited(
    intentId: string,
  ): Promise<{ status: "credited"; intent: CreditedIntent } | { status: "parked" }>;
  clearFeePending(intentId: string): Promise<void>;
  /**
   * Atomically: a reversal withdrawn already is "withdrawn" (its fees kept for the credit when the intent is not
   * credited yet: Stripe took them all the same); otherwise, when the intent is credited, returns it;
   * otherwise parks the reversal (idempotent by key; parked again, its fees are merged by id: a dispute's
   * funds_withdrawn brings the fee its created did not have).
   */
  parkUnlessCredited(params: {
    intentId: string;
    reversal: ParkedReversal;
  }): Promise<
    { status: "credited"; intent: CreditedIntent } | { status: "parked" } | { status: "withdrawn" }
  >;
  /**
   * Atomically remembers that the reversal `key` is undone (parkUnlessCredited refuses it from now on) and drops it
   * if parked; returns the intent when it is credited (the reversal may have been applied: give it back). Not
   * credited yet, the parked reversal's fees and `fees` (the undoing's: a dispute's fee, and its return) are kept for
   * the credit.
   */
  withdraw(params: {
    intentId: string;
    key: string;
    fees?: readonly RailFee[];
  }): Promise<{ status: "credited"; intent: CreditedIntent } | { status: "withdrawn" }>;
  unpark(params: { intentId: string; key: string }): Promise<void>;
  /**
   * Keeps `fee` to be asked again, its first try parkedFeeRetryMsMin on; kept already (its event delivered again
   * while Stripe still refuses), it is asked for its failure's fee too when `fee` is, and booked as `fee` says. One
   * given up is kept anew, as if never kept (its week, tries and wait from the start): another event of its object
   * came, Stripe still refusing, and an event's fee is asked for a week from its event, not left to the operator. So is
   * one kept past parkedFeeKeptMsMax that no giveUpFees gave up yet (no pass since its week ended, or one racing this):
   * takeDueFees takes it no more, and it is given up as if no event had come since.
   * `parked`: it was not kept before, or given up or past its week (said once each time it is kept anew, not at every
   * delivery).
   */
  parkFee(fee: ParkedFee): Promise<{ parked: boolean }>;
  /**
   * Up to `max` kept fees of `rail` whose try is due, oldest first, each taken for this try: its next one is put off by
   * parkedFeeRetryMs (so that another process's pass takes none of them meanwhile, and a restricted key is not asked
   * every minute). Only those of `kinds` (every kind when absent). None given up, nor kept longer than
   * parkedFeeKeptMsMax (given up at the next giveUpFees).
   */
  takeDueFees(params: { rail: string; max: number; kinds?: readonly ParkedFee["kind"][] }): Promise<DueFee[]>;
  /**
   * Gives up the fees of `rail` kept longer than parkedFeeKeptMsMax, oldest first, `max` at most: no longer taken
   * (takeDueFees), they stay kept for the operator. Each is returned once, by the call that gave it up.
   */
  giveUpFees(params: { rail: string; max: number }): Promise<GivenUpFee[]>;
  /**
   * Forgets a kept fee booked, unless it was kept again since its try read it (then asked again at its next try). A
   * revision is never given twice, to a row of one object or of any other (parkFee): one forgotten and kept anew since
   * is not this one.
   */
  unparkFee(params: { rail: string; objectId: string; revision: number }): Promise<void>;
  /** The revision of the fee kept of `objectId`, given up or not; null when none is kept. */
  keptFeeRevision(params: { rail: string; objectId: string }): Promise<number | null>;
  /**
   * Forgets the kept fee of `objectId`, given up or not, that an event of its object has booked, Stripe telling it at
   * the event's lookup: only as `revision` (keptFeeRevision, read before the lookup) says it was, for one kept since
   * (another event's, Stripe refusing it after this one's lookup) asks for what the lookup may not have told; and not
   * when it asks for its failure's fee and `failure` says that fee was not told with it (then it stays, for a try to
   * book that one).
   */
  forgetBookedFee(params: {
    rail: string;
    objectId: string;
    revision: number;
    failure: boolean;
  }): Promise<void>;
}

/** Fees of two deliveries of one reversal: each balance transaction once, the first delivery's first. */
export function mergedFees(kept: readonly RailFee[] = [], more: readonly RailFee[] = []): RailFee[] {
  const ids = new Set(kept.map((fee) => fee.id));
  return [...kept, ...more.filter((fee) => !ids.has(fee.id))];
}

/** The most reversals kept waiting for one intent (Stripe allows far fewer refunds and disputes per charge). */
export const parkedPerIntentMax = 100;

export class FiatStoreError extends SwitchyardError {
  override name = "FiatStoreError";
}

/** For unit tests only: unbounded maps, lost on restart. */
export function createMemoryStripeObjectStore(): StripeObjectStore {
  const byKey = new Map<string, StripeObjectRecord>();
  return {
    async find(idempotencyKey) {
      return byKey.get(idempotencyKey) ?? null;
    },
    async record(record) {
      const existing = byKey.get(record.idempotencyKey);
      if (existing !== undefined) return existing;
      byKey.set(record.idempotencyKey, record);
      return record;
    },
  };
}

/** For unit tests only. Each method runs without an await inside, so it is atomic on one event loop. */
export function createMemoryStripeWebhookStore(): StripeWebhookStore {
  const applied = new Map<string, string>();
  const credited = new Map<string, CreditedIntent>();
  const parked = new Map<string, Map<string, ParkedReversal>>();
  const withdrawn = new Set<string>();
  const feePending = new Set<string>();
  const pendingFees = new Map<string, RailFee[]>();
  const keepFees = (intentId: string, fees: readonly RailFee[] = []) => {
    if (fees.length > 0) pendingFees.set(intentId, mergedFees(pendingFees.get(intentId), fees));
  };
  const withdrawnKey = (intentId: string, key: string) => `${intentId} ${key}`;
  const feesKept = new Map<
    string,
    { fee: DueFee; parkedAtMs: number; nextTryAtMs: number; gaveUpAtMs: number | null }
  >();
  const feeKey = (rail: string, objectId: string) => `${rail} ${objectId}`;
  // As the SQL store's sequence: a revision is never given twice, a row kept anew after it was forgotten included.
  let revisions = 0;
  // Ties broken as the SQL store's ORDER BY … object_id breaks them (its text bytewise: ids are ASCII), not by age.
  const byObjectId = (x: { fee: DueFee }, y: { fee: DueFee }) =>
    x.fee.objectId < y.fee.objectId ? -1 : x.fee.objectId > y.fee.objectId ? 1 : 0;
  return {
    async isApplied(eventId) {
      return applied.has(eventId);
    },
    async markApplied({ eventId, type }) {
      if (!applied.has(eventId)) applied.set(eventId, type);
    },
    async creditedIntent(intentId) {
      return credited.get(intentId) ?? null;
    },
    async markCredited(intent) {
      const wasCredited = credited.has(intent.intentId);
      if (!wasCredited) credited.set(intent.intentId, intent);
      return {
        wasCredited,
        parked: [...(parked.get(intent.intentId)?.values() ?? [])],
        feePending: feePending.has(intent.intentId),
        pendingFees: [...(pendingFees.get(intent.intentId) ?? [])],
      };
    },
    async parkFeeUnlessCredited(intentId) {
      const intent = credited.get(intentId);
      if (intent !== undefined) return { status: "credited", intent };
      feePending.add(intentId);
      return { status: "parked" };
    },
    async clearFeePending(intentId) {
      feePending.delete(intentId);
      pendingFees.delete(intentId);
    },
    async parkUnlessCredited({ intentId, reversal }) {
      if (withdrawn.has(withdrawnKey(intentId, reversal.key))) {
        if (!credited.has(intentId)) keepFees(intentId, reversal.fees);
        return { status: "withdrawn" };
      }
      const intent = credited.get(intentId);
      if (intent !== undefined) return { status: "credited", intent };
      let waiting = parked.get(intentId);
      if (waiting === undefined) {
        waiting = new Map();
        parked.set(intentId, waiting);
      }
      const earlier = waiting.get(reversal.key);
      if (earlier === undefined) {
        if (waiting.size >= parkedPerIntentMax)
          throw new FiatStoreError(`more than ${parkedPerIntentMax} reversals parked for ${intentId}`);
        waiting.set(reversal.key, reversal);
      } else {
        const fees = mergedFees(earlier.fees, reversal.fees);
        waiting.set(reversal.key, { ...earlier, ...(fees.length === 0 ? {} : { fees }) });
      }
      return { status: "parked" };
    },
    async unpark({ intentId, key }) {
      parked.get(intentId)?.delete(key);
    },
    async withdraw({ intentId, key, fees }) {
      withdrawn.add(withdrawnKey(intentId, key));
      const intent = credited.get(intentId);
      if (intent === undefined) keepFees(intentId, mergedFees(parked.get(intentId)?.get(key)?.fees, fees));
      parked.get(intentId)?.delete(key);
      return intent === undefined ? { status: "withdrawn" } : { status: "credited", intent };
    },
    async parkFee(fee) {
      const key = feeKey(fee.rail, fee.objectId);
      const kept = feesKept.get(key);
      const nowMs = Date.now();
      if (kept === undefined) {
        feesKept.set(key, {
          fee: { ...fee, tries: 0, revision: revisions++ },
          parkedAtMs: nowMs,
          nextTryAtMs: nowMs + parkedFeeRetryMs(0),
          gaveUpAtMs: null,
        });
        return { parked: true };
      }
      const failure = kept.fee.failure || fee.failure;
      // Past its week, given up yet or not: as the SQL store's, so that no pass's timing decides it.
      const expired = kept.gaveUpAtMs !== null || kept.parkedAtMs <= nowMs - parkedFeeKeptMsMax;
      kept.fee = { ...fee, failure, tries: expired ? 0 : kept.fee.tries, revision: revisions++ };
      if (expired) {
        kept.parkedAtMs = nowMs;
        kept.nextTryAtMs = nowMs + parkedFeeRetryMs(0);
        kept.gaveUpAtMs = null;
      }
      return { parked: expired };
    },
    async takeDueFees({ rail, max, kinds }) {
      const nowMs = Date.now();
      const due = [...feesKept.values()]
        .filter(
          (kept) =>
            kept.fee.rail === rail &&
            (kinds === undefined || kinds.includes(kept.fee.kind)) &&
            kept.gaveUpAtMs === null &&
            kept.parkedAtMs > nowMs - parkedFeeKeptMsMax &&
            kept.nextTryAtMs <= nowMs,
        )
        .sort((x, y) => x.nextTryAtMs - y.nextTryAtMs || byObjectId(x, y))
        .slice(0, max);
      for (const kept of due) {
        kept.fee = { ...kept.fee, tries: kept.fee.tries + 1 };
        kept.nextTryAtMs = nowMs + parkedFeeRetryMs(kept.fee.tries);
      }
      return due.map((kept) => kept.fee);
    },
    async unparkFee({ rail, objectId, revision }) {
      const key = feeKey(rail, objectId);
      if (feesKept.get(key)?.fee.revision === revision) feesKept.delete(key);
    },
    async keptFeeRevision({ rail, objectId }) {
      return feesKept.get(feeKey(rail, objectId))?.fee.revision ?? null;
    },
    async forgetBookedFee({ rail, objectId, revision, failure }) {
      const key = feeKey(rail, objectId);
      const kept = feesKept.get(key);
      if (kept?.fee.revision === revision && (failure || !kept.fee.failure)) feesKept.delete(key);
    },
    async giveUpFees({ rail, max }) {
      const nowMs = Date.now();
      const old = [...feesKept.values()]
        .filter(
          (kept) =>
            kept.fee.rail === rail &&
            kept.gaveUpAtMs === null &&
            kept.parkedAtMs <= nowMs - parkedFeeKeptMsMax,
        )
        .sort((x, y) => x.parkedAtMs - y.parkedAtMs || byObjectId(x, y))
        .slice(0, max);
      for (const kept of old) kept.gaveUpAtMs = nowMs;
      return old.map(({ fee }) => ({ rail, objectId: fee.objectId, kind: fee.kind, tries: fee.tries }));
    },
  };
}
