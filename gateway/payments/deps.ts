// What the payments service is given (its dependencies, wired by the composition root) and what it answers:
// a payment, or a refusal from the closed set in types.ts.
import type { Logger, Rail } from "../../core/index.ts";
import type { AccountCache } from "../accounts/index.ts";
import type { Db } from "../db/index.ts";
import type { Ledger } from "../ledger/index.ts";
import type { PaymentIntent, RouteDecision, RoutePolicy, Snapshot } from "../router/types.ts";
import type { NettingDeps } from "./batch-payouts.ts";
import type { IdempotencyRecord, InternalSettler, StoredAnswer } from "./internal.ts";
import type { Market } from "./market.ts";
import type { Payment, PaymentDestination, PaymentRefusal } from "./types.ts";

export type Router = (intent: PaymentIntent, snapshot: Snapshot, policy: RoutePolicy) => RouteDecision;

export type PaymentsDeps = {
  db: Db;
  ledger: Ledger;
  /** Account lookups, remembered per process (accounts/createAccountCache). */
  accounts: AccountCache;
  rails: ReadonlyMap<string, Rail>;
  /** Writes internal payments together (internal.ts createInternalSettler, over this ledger). */
  internal: InternalSettler;
  snapshot: () => Snapshot;
  route: Router;
  /** When set, payouts whose fee would eat too much of their value accrue and leave in netted batches. */
  netting?: NettingDeps;
  /**
   * Told when an attempt starts, and when one ends on its rail: succeeded, or failed because the rail is
   * unavailable (the router's circuit and failure rate come from these; other failures are the payment's own).
   */
  learning?: Pick<Market, "noteAttempt" | "recordOutcome" | "releaseProbe">;
  /**
   * How long a request waits for a rail before it is answered `processing` (its reservation durable, the rail
   * still working; the outcome follows by webhook and GET). Unset: until the rail reports. Internal payments never
   * wait on a rail.
   */
  railWaitMs?: number;
  /** Where a payment still working after its request was answered reports an unexpected failure. */
  logger?: Logger;
  /**
   * Told after the commit when a refund's failure (the rail's answer to its request or to the recovery pass, or the
   * rail's event) paid its invoice again (refunds.ts refundGivesBack): the invoice forgotten as open and the process's
   * listeners told, as a receipt that pays it tells them (app.ts: settlement's invoicePaid). Should not throw: one that
   * does is logged (`logger`), the refund's failure committed and answered as such.
   */
  onInvoicePaid?: (invoiceId: string) => void;
  /** How many attempts open at a restart are resumed in one pass. */
  recoveryBatchMax: number;
  /** Periodic recovery takes an open attempt, or a processing payment with none open, as stranded once untouched this long. */
  strandedQuietMs: number;
  nowMs: () => number;
};

export type CreatePaymentParams = {
  tenantId: string;
  asset: string;
  amount: string;
  sourceAccountId: string;
  destination: PaymentDestination;
  policy: RoutePolicy;
  metadata: Record<string, string>;
  /** The caller's Idempotency-Key: with it, a repeated request returns the first payment. */
  idempotencyKey: string | null;
  /**
   * With the key, the HTTP request's record: written with the payment, in the same transaction (with the answer
   * when the payment is final there). When the key turns out taken, the result is `key_taken` and the caller looks
   * the record up. Without it, a taken key returns the payment that holds it.
   */
  idempotencyRecord?: IdempotencyRecord;
  /**
   * With the key and without the record: the digest of the request it came with, kept on the payment (migration
   * 0030) so that a later request under the key with another body is refused. With the record: its own.
   */
  requestSha256?: Buffer;
  /**
   * A quote to honour: its locked rates and fee caps, on those of its rails that can take them now; else
   * quote_expired, or quote_stale when none can.
   */
  quoteId: string | null;
  /** This request's own bound on waiting for a rail (`Prefer: respond-async` is 0); else deps.railWaitMs. */
  waitMs?: number;
};

export type CreatePaymentResult =
  /** `answer`: what was stored as the request's answer with the payment (internal payments), else null. */
  | {
      ok: true;
      payment: Payment;
      answer: StoredAnswer | null;
      /** Without the record: the payment was already under the key (another request's, or this one's earlier). */
      replayed?: true;
    }
  /** With `idempotencyRecord`: the key is another request's, and nothing was written. */
  | { ok: false; keyTaken: true }
  | { ok: false; refusal: PaymentRefusal; message: string; param?: string; decision?: RouteDecision };

/** A refusal; `R` narrows it to the codes a step can give, so that a route's list of them is checked (quotes). */
export type Refused<R extends PaymentRefusal = PaymentRefusal> = Extract<
  CreatePaymentResult,
  { refusal: PaymentRefusal }
> & { refusal: R };

export function refuse<R extends PaymentRefusal>(refusal: R, message: string, param?: string): Refused<R> {
  return param === undefined ? { ok: false, refusal, message } : { ok: false, refusal, message, param };
}
