// What the fiat rail remembers: the Stripe objects it created (by idempotency key, so a retry returns the
// first object even after Stripe forgets the key), the webhook events it applied (by event id), and per
// PaymentIntent whether it was credited, with the reversals that arrived before the credit.
// The in-memory stores are for unit tests only; the gateway uses the SQL ones (sql-store.ts).
import { type RailFee, SwitchyardError } from "../../core/index.ts";

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
  };
}
