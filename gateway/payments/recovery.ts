// Recovery: what a stop or a crash left open is driven on to its end, at start and then periodically.
import { SwitchyardError } from "../../core/index.ts";
import type { PaymentsDeps } from "./deps.ts";
import { type Driven, driveAttempt, paymentOf, readPayment, runCandidates } from "./execution.ts";
import { accrualPayee, accrue } from "./service.ts";
import { listOpenAttempts, listStrandedPayments, touchOpenAttempts, touchStrandedPayments } from "./store.ts";

/**
 * Resumes every attempt left open by a stop or a crash: the ledger is asked whether each one's reservation
 * was made (and it is made when not), rails are asked for the outcome of what they were executing (they never
 * pay an attempt id twice). Run at start with `quietMs` 0 and then periodically; a live request working on
 * the same attempt at the same time is harmless, since every step is idempotent and every status move
 * conditional.
 */
export async function recoverOpenAttempts(
  deps: PaymentsDeps,
  options: { quietMs: number } = { quietMs: deps.strandedQuietMs },
): Promise<number> {
  const open = await listOpenAttempts(deps.db, {
    quietMs: options.quietMs,
    limit: deps.recoveryBatchMax,
    rails: [...deps.rails.keys()],
  });
  // One attempt or payment that cannot be driven (a bug, a dependency down) must not keep the ones after it open:
  // each is driven on its own, and what failed is thrown together once the others had their turn.
  // Several at once: a rail asked about an attempt in flight waits for its outcome a while (LND's payment, an
  // unmined transaction's receipt), and one after another, a few such attempts held every other one back a pass.
  const failures: RecoveryFailure[] = [];
  await eachAtMost(open, recoveryConcurrencyMax, async (attempt) => {
    const rail = deps.rails.get(attempt.rail);
    if (rail === undefined) return; // that rail is not configured in this process; it stays open for one that has it
    try {
      const driven: Driven = { payment: await paymentOf(deps, attempt), current: true };
      const next = await driveAttempt(deps, driven, attempt, rail, "ask_ledger");
      if (next === "fall_back") await runCandidates(deps, driven, { firstSeq: attempt.seq + 1, first: null });
    } catch (error) {
      failures.push({ kind: "attempt", id: attempt.id, error });
    }
  });
  // Those still open (the statement's condition) go behind the others for the next pass.
  await touchOpenAttempts(
    deps.db,
    open.map((attempt) => attempt.id),
  );
  // A payment with no open attempt: its next candidate was never written. The unique (payment, seq) of
  // attempts makes a race with a live request in another process lose on insert instead of paying twice. One with
  // no attempt at all although its route chose a rail accrues for netting (any other is written with its first
  // attempt): it is accrued (its request stopped before, or is on its way), never paid on its own, which would pay
  // it a second time once its request accrues it; a process without netting on that rail leaves it to one with it.
  const stranded = await listStrandedPayments(deps.db, {
    quietMs: options.quietMs,
    limit: deps.recoveryBatchMax,
    rails: [...deps.rails.keys()],
  });
  await eachAtMost(stranded, recoveryConcurrencyMax, async (row) => {
    try {
      await recoverStranded(deps, row);
    } catch (error) {
      failures.push({ kind: "payment", id: row.id, error });
    }
  });
  // Those still processing go behind the others for the next pass.
  await touchStrandedPayments(
    deps.db,
    stranded.map((row) => row.id),
  );
  if (failures.length > 0) throw new RecoveryError(failures);
  return open.length + stranded.length;
}

/** Attempts (and stranded payments) one pass drives at once. */
export const recoveryConcurrencyMax = 16;

/** Runs `each` over `items`, at most `limit` at once; `each` handles its own errors. */
async function eachAtMost<T>(
  items: readonly T[],
  limit: number,
  each: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await each(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

async function recoverStranded(
  deps: PaymentsDeps,
  row: Awaited<ReturnType<typeof listStrandedPayments>>[number],
): Promise<void> {
  const payment = await readPayment(deps, row.tenantId, row.id);
  const accrues = row.nextSeq === 0 && payment.decision?.chosen != null;
  if (!accrues) {
    // Its next rail is not configured in this process (Lightning runs in one process only): left to one with it,
    // as an open attempt on such a rail is.
    const next = payment.decision?.candidates[row.nextSeq];
    if (next !== undefined && !deps.rails.has(next.rail)) return;
    await runCandidates(deps, { payment, current: true }, { firstSeq: row.nextSeq, first: null });
    return;
  }
  const payee = accrualPayee(deps.netting, payment.decision, payment.assetCode, true);
  if (payee === null || deps.netting === undefined) return;
  await accrue(deps, deps.netting, {
    id: payment.id,
    tenantId: payment.tenantId,
    sourceAccountId: payment.sourceAccountId,
    payee,
    amount: payment.amount,
  });
}

type RecoveryFailure = { readonly kind: "attempt" | "payment"; readonly id: string; readonly error: unknown };

/**
 * Open attempts, and payments stranded between two attempts, that recovery could not drive this pass; the others
 * were driven. `cause` is the first one's error.
 */
export class RecoveryError extends SwitchyardError {
  override name = "RecoveryError";
  readonly attemptIds: readonly string[];
  readonly paymentIds: readonly string[];
  constructor(failures: readonly RecoveryFailure[]) {
    super(
      `recovery could not drive ${failures.length} open attempt(s) or payment(s); the others were driven`,
      {
        details: failures
          .slice(0, 10)
          .map(
            (f) => `${f.id}: ${f.error instanceof Error ? f.error.message.split("\n")[0] : String(f.error)}`,
          )
          .join("; "),
        cause: failures[0]?.error,
      },
    );
    this.attemptIds = failures.flatMap((f) => (f.kind === "attempt" ? [f.id] : []));
    this.paymentIds = failures.flatMap((f) => (f.kind === "payment" ? [f.id] : []));
  }
}
