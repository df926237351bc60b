// What the batched crash test (batched.test.ts) and its worker (batched-worker.ts) agree on: the tenant and its
// accounts, the payment each key number stands for (the same key always with the same body, so a repeat is a true
// retry), where the worker kills itself, and the lines it reports.
import type { StoredAnswer } from "../../gateway/payments/index.ts";

export const batchedTenantId = "ten_batched";
export const richAccountId = "acct_batched_rich";
/** Holds enough for a few of its payments only: the rest fail (402) in the same batches as their neighbours. */
export const shortAccountId = "acct_batched_short";
export const merchantAccountId = "acct_batched_merchant";
export const richFundingMinor = 1_000_000_000n;
export const shortFundingMinor = 40n;

export type PlannedPayment = { key: string; sourceAccountId: string; amountMinor: bigint };

/** Key number `n`: its Idempotency-Key, source (every fifth is the short account) and amount (1 to 7 minor units). */
export function plannedPayment(n: number): PlannedPayment {
  return {
    key: `batched-${n}`,
    sourceAccountId: n % 5 === 2 ? shortAccountId : richAccountId,
    amountMinor: BigInt(1 + (n % 7)),
  };
}

/** USDC has 6 decimals; the planned amounts are below one unit. */
export function usdcText(minor: bigint): string {
  if (minor < 0n || minor >= 1_000_000n)
    throw new RangeError(`planned amounts are below 1 USDC, not ${minor}`);
  return `0.${minor.toString().padStart(6, "0")}`;
}

/**
 * Where the worker SIGKILLs itself, counted over the ledger transactions that carry payments (the nth one):
 * `in_tx` once its body has returned, before COMMIT is sent (rolled back; its statements sent, some maybe still
 * running: pipeline mode); `committing` on the next turn of the event loop, once COMMIT is sent and before its answer
 * (the server commits it, nobody hears); `committed` as soon as COMMIT is answered, before any of its payments is
 * answered — at the nth transaction or, if that one failed, the first after it that commits.
 */
export type WorkerKill = { at: "in_tx" | "committing" | "committed"; tx: number };

/** One JSON line on the worker's stdout (written synchronously, so a line written before a kill is never lost). */
export type WorkerLine =
  | { event: "started"; keys: number }
  /** Key number `n`, past the list, about to be asked (the list's keys are known to the parent). */
  | { event: "asked"; n: number }
  /** A batch of internal payments handed to the ledger (createTransfersWith), `size` transfers. */
  | { event: "handed"; batch: number; size: number }
  /** A handed batch that failed: `keyTaken` when on SYP01; `payments`: each transfer's user_data_128 (decimal). */
  | { event: "refused"; batch: number; keyTaken: boolean; payments: string[] }
  /** The worker kills itself now; `payments`: the ids of the payments in that ledger transaction. */
  | { event: "kill"; at: WorkerKill["at"]; tx: number; payments: string[] }
  /** The nth ledger transaction that carries payments committed, with this many. */
  | { event: "committed"; tx: number; payments: number }
  /** Key number `n` answered: written now (`replayed` false) or the stored record's answer (key taken). */
  | ({ event: "answered"; n: number; replayed: boolean; paymentId: string } & StoredAnswer)
  /** Key number `n` was taken but its record held no answer (never expected on the internal path). */
  | { event: "unanswered"; n: number; record: string }
  | { event: "refusal"; n: number; refusal: string }
  | { event: "done" };

/** The payment an answer carries: 201's body is the payment, 402's is an error with the payment. */
export function paymentIdOfAnswer(answer: StoredAnswer): string {
  const body = JSON.parse(answer.body) as { id?: string; error?: { payment?: { id?: string } } };
  const id = body.id ?? body.error?.payment?.id;
  if (id === undefined) throw new Error(`an answer without its payment: ${answer.status} ${answer.body}`);
  return id;
}
