// Batch payouts: executing the payouts that netting accrued. Whether a payout accrues is the router's policy
// (gateway/router/netting.ts: its fee would eat too much of its value); such a payout is not executed on its own:
// the payer's account is debited at once into the rail's payable account (what Switchyard owes payees on that
// rail), and the payout waits. A flush nets the waiting payouts per payee (the router's planNettingBatch: on a
// total, a per-payee threshold, or a timer) and pays them in one batch through the rail's `payoutBatch` (on EVM,
// RevenueSplitter.settleBatch); the payable account is then debited against the rail's clearing account with the
// batch's evidence, and each payment succeeds with that evidence.
//
// Only what the rail holds: before a batch is sent its total is held against the rail's clearing account, as a payout
// alone reserves its amount there before its rail is asked (reservations.ts); the hold is posted once the batch is
// paid, released once the rail refuses it. A batch the clearing account does not hold is failed unsent, its payouts
// waiting in the queue as a batch the rail refused for its funds does. Before, a batch was sent unheld and its booking
// against the clearing account came after: the rail paid out what it did not hold (what payouts alone had reserved
// there), the booking was refused, and the batch stayed sending, its payments processing, asked again every flush.
//
// Never twice: a batch is written (with its payouts) before it is sent, under a reference the rail and the
// contract accept once; a flush first resumes any batch still sending, with the same reference. One flush sends a
// batch at a time (a lease on it), and only that flush may fail it and put its payouts back in the queue.
//
// A payee the rail refuses (a token's blacklist reverts the whole settleBatch) does not hold back the others: the
// rail says which payees a refused batch was refused for, their payouts stay with the failed batch, marked refused,
// and the rest go back in the queue and leave in the flush's next batch, at once. A refused payout's payment then
// fails with the rail's code, as a payout refused on its own would, and its accrual goes back to its payer, with
// payment.failed, in one transaction: what a Stripe Connect user sees of a payout to a closed bank account (failed,
// a failure code, the money back on the balance, a webhook), never retried. Retrying with backoff would keep the
// payer's money tied up for a destination that refuses it every time; one the rail refuses only for a while (the
// node, gas, the wallet's funds) fails the whole batch instead, which waits and is tried again as before.
import { randomUUID } from "node:crypto";
import {
  type FeePaid,
  type PayoutBatchOutcome,
  type PayoutRefused,
  type Rail,
  type RailFailureCode,
  type SettlementEvidence,
  SwitchyardError,
  storableText,
} from "../../core/index.ts";
import {
  type AccountCache,
  type AccountRecord,
  createAccount,
  getClearingAccount,
  getRailAccount,
  getTenantAccount,
} from "../accounts/index.ts";
import { type Db, type Sql, serverRaised } from "../db/index.ts";
import { derivedLedgerId, newId } from "../ids/index.ts";
import {
  credit,
  debit,
  type Ledger,
  type Reservation,
  type ReserveOutcome,
  reserve,
  transferCodes,
  voidLegs,
  writeChainWith,
} from "../ledger/index.ts";
import {
  type NettingThreshold,
  nettingAccruedMax,
  nettingBatchPayeesMax,
  nettingVerdictForDecision,
  planNettingBatch,
} from "../router/index.ts";
import type { RouteDecision } from "../router/types.ts";
import { railAccountOpened } from "./reservations.ts";
import { finishPayment, paymentEventColumns, paymentEventSql, paymentLedgerLink, toJson } from "./store.ts";

/**
 * A rail that pays many payees at once: any rail with the Rail contract's optional `payoutBatch` (on EVM, one
 * RevenueSplitter.settleBatch transaction). Batches carry `evm_address` destinations and a 32-byte hex reference.
 */
export type BatchPayer = Pick<Rail, "id" | "asset"> & { payoutBatch: NonNullable<Rail["payoutBatch"]> };

export type NettingConfig = {
  /** A payout whose fee is above this share of its value (basis points) accrues instead. */
  maxFeeShareBps: number;
  threshold: NettingThreshold;
  intervalMs: number;
  /** How many waiting payouts a flush reads at most, shared evenly among tenants (accruedReadMaxDefault). */
  accruedReadMax?: number;
};

export type NettingDeps = {
  db: Db;
  ledger: Ledger;
  /** The rails' own accounts, found or opened (the fee and clearing accounts a batch's gas is booked between). */
  accounts: AccountCache;
  payer: BatchPayer;
  config: NettingConfig;
  nowMs: () => number;
};

/** A broken invariant of netting (a bug or broken data), never an expected failure. */
export class NettingInvariantError extends SwitchyardError {
  override name = "NettingInvariantError";
}

/**
 * Batches a flush resumed whose rail threw, or refused payouts it could not give back (the first one's error is the
 * cause); the flush went on without them.
 */
export class NettingResumeError extends SwitchyardError {
  override name = "NettingResumeError";
}

/** Whether this decision's payout should accrue rather than go out on its own. */
export function shouldAccrue(deps: NettingDeps, decision: RouteDecision, destinationKind: string): boolean {
  return (
    decision.chosen?.rail === deps.payer.id &&
    destinationKind === "evm_address" &&
    nettingVerdictForDecision(decision, deps.config.maxFeeShareBps) === "accrue"
  );
}

async function payableAccount(deps: NettingDeps): Promise<AccountRecord> {
  const { id: rail, asset } = deps.payer;
  const existing = await getRailAccount(deps.db, { kind: "payable", rail, asset });
  if (existing !== null) return existing;
  const id = `acct_payable_${rail.replaceAll("-", "_")}_${asset.code.toLowerCase()}`;
  return createAccount(
    { sql: deps.db, ledger: deps.ledger },
    { tenantId: null, kind: "payable", asset, name: `${rail} netting payable`, rail, id },
  );
}

/**
 * Debits the payer into the payable account and queues the payout, in one transaction: a payment is never
 * debited without its queued payout (recovery would take it for stranded and pay it a second time, on its own).
 * "insufficient_funds" when the payer's balance is short (nothing queued); repeated calls for one payment change
 * nothing.
 */
export async function accruePayout(
  deps: NettingDeps,
  payment: { id: string; tenantId: string; sourceAccountId: string; payee: `0x${string}`; amount: bigint },
): Promise<"accrued" | "insufficient_funds"> {
  const source = await getTenantAccount(deps.db, { tenantId: payment.tenantId, id: payment.sourceAccountId });
  if (source === null) throw new NettingInvariantError(`payment ${payment.id} lost its source account`);
  const payable = await payableAccount(deps);
  const transferId = derivedLedgerId(payment.id, "accrue");
  const debited = await debit(
    deps.ledger,
    {
      debitAccountId: source.ledgerAccountId,
      creditAccountId: payable.ledgerAccountId,
      amount: payment.amount,
      ledger: deps.payer.asset.ledger,
      code: transferCodes.netting.accrue,
    },
    {
      id: transferId,
      userData128: paymentLedgerLink(payment.id),
      label: `the accrual of payment ${payment.id}`,
      // Only while the payment is processing (recovery may accrue one its request failed meanwhile): otherwise the
      // debit is rolled back with this statement (isPaymentNotProcessing). The payment's row is locked, as a
      // failure for funds locks it before it looks for the queued payout (failPayment's unlessAccrued).
      alongside: {
        text: `WITH payment AS (
       SELECT id FROM payments WHERE id = $1 AND status = 'processing' FOR UPDATE),
     queued AS (
       INSERT INTO netted_payouts (payment_id, rail, payee, amount, accrue_transfer_id, tenant_id)
       SELECT $1, $2, $3, $4, $5, $6 FROM payment
       ON CONFLICT (payment_id) DO NOTHING RETURNING 1)
     SELECT CASE WHEN EXISTS (SELECT 1 FROM payment) THEN true ELSE netting_payment_not_processing() END AS queued`,
        params: [
          payment.id,
          deps.payer.id,
          payment.payee.toLowerCase(),
          payment.amount,
          transferId.toString(),
          payment.tenantId,
        ],
      },
    },
  );
  return debited === "insufficient_funds" ? "insufficient_funds" : "accrued";
}

/**
 * Whether a payment's payout is queued for netting, read under the payment's row lock (the lock its accrual's
 * statement takes): an accrual racing the caller has committed by then, or finds the payment no longer processing
 * once the caller moves it on.
 */
export async function accruedUnderLock(tx: Sql, paymentId: string): Promise<boolean> {
  await tx.query("SELECT 1 FROM payments WHERE id = $1 FOR UPDATE", [paymentId]);
  const queued = await tx.query("SELECT 1 FROM netted_payouts WHERE payment_id = $1", [paymentId]);
  return queued.length > 0;
}

/** Whether an error is netting_payment_not_processing() (migration 0034), along its causes. */
export const isPaymentNotProcessing = (error: unknown): boolean => serverRaised(error, "SYN01");

type BatchRow = {
  id: string;
  ref: `0x${string}`;
  payees: Array<{ payee: `0x${string}`; amount: string }>;
  total: bigint;
};

/**
 * `batches` and `payouts`: the batches written and sent this flush, whatever their outcome (one the rail's clearing
 * account did not hold failed unsent), and the payouts in them;
 * `refused`: the payouts whose payee the rail refused that this flush gave back to their payers, their payments
 * failed (one that another flush gave back at the same moment counts in both).
 */
export type FlushResult = { batches: number; payouts: number; refused: number; trigger: string | null };

/**
 * How long a flush holds a batch it sends (netting_batches.leased_until, migration 0034): longer than a rail's
 * payoutBatch takes to answer (on EVM, its receipt wait), so that no other flush sends the batch meanwhile. A flush
 * that stopped mid-send leaves its batch to be resumed once the lease runs out.
 */
export const nettingSendLeaseMs = 5 * 60_000;

/** How long after a refused batch a flush sends nothing (unless forced): a rail that refuses is not asked every pass. */
export const nettingRetryAfterRefusalMs = 30_000;

/** The most refused payouts one flush gives back: the rest wait for the next flush. */
export const nettingReturnsPerFlushMax = 1_000;

/** Thrown inside a batch's write to roll it back: another flush batched some of its payouts first. */
class BatchOvertaken extends Error {}

/** How a send of a batch ended, and how many payees the rail refused in it (their payouts left the queue). */
type Sent = { status: PayoutBatchOutcome["status"]; refusedPayees: number };

/** Resumes batches left sending, then settles what the plan says is due now. */
export async function flushNetting(
  deps: NettingDeps,
  options: { force?: boolean } = {},
): Promise<FlushResult> {
  const result: FlushResult = { batches: 0, payouts: 0, refused: 0, trigger: null };
  const lease = randomUUID();
  const sending = await deps.db.query<{ id: string }>(
    "SELECT id FROM netting_batches WHERE rail = $1 AND status = 'sending' ORDER BY created_at",
    [deps.payer.id],
  );
  // Each one this flush can lease: another flush sending it (its lease running) keeps it. One whose rail throws does
  // not hold up the others, nor the payouts waiting: its failure is thrown once the flush is done.
  const failures: unknown[] = [];
  for (const { id } of sending) {
    const [batch] = await deps.db.query<BatchRow>(
      `UPDATE netting_batches SET lease_token = $2, leased_until = now() + make_interval(secs => $3::double precision / 1000)
       WHERE id = $1 AND status = 'sending' AND (leased_until IS NULL OR leased_until <= now())
       RETURNING id, ref, payees, total`,
      [id, lease, nettingSendLeaseMs],
    );
    if (batch !== undefined)
      await sendBatch(deps, batch, lease, true).catch((error: unknown) => failures.push(error));
  }
  // One batch settles at most nettingBatchPayeesMax payees. When a full batch was paid, the flush plans again: the
  // payees the same trigger made due go in its next batch, not an interval later. So it does when the rail refused
  // some payees of a batch: the others went back in the queue and leave now. The loop ends: a batch refused for
  // payees takes at least one payee's payouts out of the queue for good.
  let force = options.force === true;
  let planning: { error: unknown } | null = null;
  try {
    for (;;) {
      const planned = await planAndSend(deps, force, lease);
      result.trigger ??= planned.trigger;
      if (planned.batch === null) break;
      result.batches += 1;
      result.payouts += planned.batch.payouts;
      const full = planned.batch.status === "succeeded" && planned.batch.payees >= nettingBatchPayeesMax;
      if (!full && planned.batch.refusedPayees === 0) break;
      force ||= planned.trigger === "timer" || planned.trigger === "total";
    }
  } catch (error) {
    // The rail out of reach (or any fault) mid-flush: the refused payouts found so far are still given back below
    // (that needs no rail), and the error is thrown as it was once that is done.
    planning = { error };
  }
  // The refused payouts of this flush's batches, and any a stopped flush left refused and not given back.
  result.refused = await returnRefusedPayouts(deps, failures);
  if (planning !== null) {
    if (failures.length === 0) throw planning.error;
    throw new NettingResumeError(
      `the flush stopped (${String(planning.error)}), and ${failures.length} netting batch(es) or refused payout(s) could not be finished`,
      { cause: new AggregateError([planning.error, ...failures]) },
    );
  }
  if (failures.length > 0)
    throw new NettingResumeError(
      `${failures.length} netting batch(es) or refused payout(s) could not be finished this flush`,
      { cause: failures[0] },
    );
  return result;
}

type Planned = {
  trigger: string | null;
  /** The batch written and sent, and how its send ended; null when none was due or another flush took it. */
  batch: ({ payees: number; payouts: number } & Sent) | null;
};

/** Plans the batch due now from the payouts waiting, writes it with them, and sends it under `lease`. */
async function planAndSend(deps: NettingDeps, force: boolean, lease: string): Promise<Planned> {
  const none = (trigger: string | null): Planned => ({ trigger, batch: null });
  const readMax = Math.min(deps.config.accruedReadMax ?? accruedReadMaxDefault, nettingAccruedMax);
  const accrued = await accruedWindow(deps.db, deps.payer.id, readMax);
  if (accrued.length === 0) return none(null);
  // The timer runs from the last batch not refused, or from the oldest payout waiting when there was none; `force`
  // fires it now. A refused batch does not start it over (its payouts have waited their interval already), but
  // nothing is tried again until nettingRetryAfterRefusalMs (at most the interval) after it — unless the rail
  // refused it for some payees: the others are not kept waiting for them.
  // The pause is the database's clock against the refusal's time, which the database wrote.
  const [last] = await deps.db.query<{ at: Date | null; pausing: boolean }>(
    `SELECT max(created_at) FILTER (WHERE status <> 'failed') AS at,
            coalesce(max(updated_at) FILTER (WHERE status = 'failed' AND refused_payees IS NULL)
                       > now() - $2 * interval '1 millisecond', false)
              AS pausing
       FROM netting_batches WHERE rail = $1`,
    [deps.payer.id, Math.min(nettingRetryAfterRefusalMs, deps.config.intervalMs)],
  );
  if (!force && last?.pausing === true) return none(null);
  const nowMs = deps.nowMs();
  const lastFlushMs = force ? nowMs - deps.config.intervalMs : (last?.at ?? accrued[0]!.created_at).getTime();
  const plan = planNettingBatch(
    accrued.map((row) => ({ id: row.payment_id, payee: row.payee, amount: row.amount })),
    deps.config.threshold,
    nowMs,
    lastFlushMs,
    deps.config.intervalMs,
  );
  if (plan.settle.length === 0) return none(plan.trigger);
  const batchId = newId("nb");
  const ref = `0x${derivedLedgerId(batchId, "ref").toString(16).padStart(64, "0")}` as `0x${string}`;
  const payees = plan.settle.map((p) => ({ payee: p.payee as `0x${string}`, amount: p.amount.toString() }));
  const total = plan.settle.reduce((sum, p) => sum + p.amount, 0n);
  const payoutIds = plan.settle.flatMap((p) => p.payoutIds);
  try {
    await deps.db.transaction(async (tx) => {
      await tx.query(
        `INSERT INTO netting_batches (id, rail, ref, payees, total, status, lease_token, leased_until)
         VALUES ($1, $2, $3, $4, $5, 'sending', $6, now() + make_interval(secs => $7::double precision / 1000))`,
        [batchId, deps.payer.id, ref, JSON.stringify(payees), total, lease, nettingSendLeaseMs],
      );
      const assigned = await tx.query(
        "UPDATE netted_payouts SET batch_id = $1 WHERE payment_id = ANY($2::text[]) AND batch_id IS NULL RETURNING payment_id",
        [batchId, payoutIds],
      );
      if (assigned.length !== payoutIds.length) throw new BatchOvertaken();
    });
  } catch (error) {
    // Another flush (another process) planned the same payouts and batched them first: this batch is not written,
    // and that flush pays them.
    if (error instanceof BatchOvertaken) return none(plan.trigger);
    throw error;
  }
  const sent = await sendBatch(deps, { id: batchId, ref, payees, total }, lease, false);
  return { trigger: plan.trigger, batch: { payees: payees.length, payouts: payoutIds.length, ...sent } };
}

/** How many waiting payouts a flush reads at most (NettingConfig.accruedReadMax). */
const accruedReadMaxDefault = 10_000;

type AccruedRow = { payment_id: string; payee: string; amount: bigint; created_at: Date };

/**
 * The payouts waiting for a batch on `rail` that a flush plans from, oldest first: each tenant's oldest, an even share
 * of `readMax` each (at least one), so that one tenant's backlog never fills the window and keeps the others' payouts
 * from being read — before, the window was the `readMax` oldest of any tenant. The tenants with payouts waiting are
 * found by a loose scan of netted_payouts_accrued_by_tenant (0055), one index probe each; payouts accrued without a
 * tenant (before 0054) read as one more share. With more tenants than `readMax`, the `readMax` whose oldest payout
 * waited longest are read, one payout each. At most `readMax` payouts in all.
 */
async function accruedWindow(db: Db, rail: string, readMax: number): Promise<AccruedRow[]> {
  const tenants = await db.query<{ tenant_id: string | null }>(
    `WITH RECURSIVE tenants (tenant_id) AS (
       (SELECT tenant_id FROM netted_payouts WHERE rail = $1 AND batch_id IS NULL AND tenant_id IS NOT NULL
        ORDER BY tenant_id LIMIT 1)
       UNION ALL
       SELECT (SELECT n.tenant_id FROM netted_payouts n
               WHERE n.rail = $1 AND n.batch_id IS NULL AND n.tenant_id > t.tenant_id
               ORDER BY n.tenant_id LIMIT 1)
       FROM tenants t WHERE t.tenant_id IS NOT NULL)
     SELECT tenant_id FROM tenants WHERE tenant_id IS NOT NULL
     UNION ALL
     (SELECT NULL FROM netted_payouts WHERE rail = $1 AND batch_id IS NULL AND tenant_id IS NULL LIMIT 1)`,
    [rail],
  );
  if (tenants.length === 0) return [];
  const unnamed = tenants.some((row) => row.tenant_id === null);
  const named = tenants.flatMap((row) => (row.tenant_id === null ? [] : [row.tenant_id]));
  if (tenants.length > readMax) {
    // One payout each of the tenants whose oldest waited longest (the tenantless share among them, as one more).
    const oldest = await db.query<{ tenant_id: string | null }>(
      `SELECT c.tenant_id FROM (
         SELECT t.tenant_id FROM unnest($2::text[]) AS t (tenant_id) UNION ALL SELECT NULL WHERE $4) AS c
       ORDER BY coalesce(
         (SELECT created_at FROM netted_payouts n
          WHERE n.rail = $1 AND n.batch_id IS NULL AND n.tenant_id = c.tenant_id ORDER BY created_at LIMIT 1),
         (SELECT created_at FROM netted_payouts n
          WHERE n.rail = $1 AND n.batch_id IS NULL AND n.tenant_id IS NULL AND c.tenant_id IS NULL
          ORDER BY created_at LIMIT 1))
       LIMIT $3`,
      [rail, named, readMax, unnamed],
    );
    return accruedOf(db, rail, oldest, 1);
  }
  return accruedOf(db, rail, tenants, Math.max(1, Math.floor(readMax / tenants.length)));
}

/** The `share` oldest waiting payouts of each of `tenants` (null: those accrued without one), oldest first. */
async function accruedOf(
  db: Db,
  rail: string,
  tenants: readonly { tenant_id: string | null }[],
  share: number,
): Promise<AccruedRow[]> {
  const named = tenants.flatMap((row) => (row.tenant_id === null ? [] : [row.tenant_id]));
  const rows = await db.query<AccruedRow>(
    `SELECT w.payment_id, w.payee, w.amount, w.created_at
     FROM unnest($2::text[]) AS t (tenant_id)
     CROSS JOIN LATERAL (
       SELECT payment_id, payee, amount, created_at FROM netted_payouts
       WHERE rail = $1 AND batch_id IS NULL AND tenant_id = t.tenant_id ORDER BY created_at LIMIT $3) w
     UNION ALL
     (SELECT payment_id, payee, amount, created_at FROM netted_payouts
      WHERE rail = $1 AND batch_id IS NULL AND tenant_id IS NULL AND $4 ORDER BY created_at LIMIT $3)`,
    [rail, named, share, named.length < tenants.length],
  );
  return rows.sort((x, y) => x.created_at.getTime() - y.created_at.getTime());
}

/**
 * Sends a batch this flush holds the lease `lease` on (or asks its outcome again, under the same reference), once its
 * total is held against the rail's clearing account (holdBatch). Only while it still holds the lease does a refusal
 * fail the batch and put its payouts back in the queue: a flush whose lease ran out mid-send may have been overtaken
 * by one that paid the batch.
 */
async function sendBatch(deps: NettingDeps, batch: BatchRow, lease: string, resumed: boolean): Promise<Sent> {
  // The lease given back when the rail has no final answer: the next flush asks again with the same reference.
  const release = () => releaseLease(deps, batch, lease);
  const hold = await holdBatch(deps, batch);
  // Only a clearing account short of the total is the rail's funds; a payable account short of it (its accruals hold
  // it) or an account the ledger refuses (closed, another ledger) is a bug, said loudly rather than failed for funds
  // every flush, the payments processing meanwhile.
  if (hold === "insufficient_funds" || hold === "rejected") {
    await release();
    throw new NettingInvariantError(`the hold of netting batch ${batch.id} was refused: ${hold}`);
  }
  if (hold === "insufficient_liquidity") {
    const message = `the rail's clearing account does not hold the batch's total (${hold}): not sent`;
    // Written just now, it was never sent: failed, its payouts wait in the queue (and the rail pauses, as after a
    // refusal for its funds).
    if (!resumed)
      return { status: "failed", refusedPayees: await failBatch(deps, batch, lease, message, [], null) };
    // Resumed without a hold, it was written before batches were held (and may have been sent), or by a flush
    // stopped before it held it: it is not failed, it waits sending until the clearing account holds it.
    await release();
    throw new SwitchyardError(`netting batch ${batch.id} waits: ${message}`);
  }
  let outcome: Awaited<ReturnType<BatchPayer["payoutBatch"]>>;
  try {
    outcome = await deps.payer.payoutBatch({
      reference: batch.ref,
      payouts: batch.payees.map((p) => ({
        destination: { kind: "evm_address", address: p.payee },
        amount: BigInt(p.amount),
      })),
    });
  } catch (error) {
    await release();
    throw error;
  }
  if (outcome.status === "in_flight") {
    await release();
    return { status: outcome.status, refusedPayees: 0 };
  }
  if (outcome.status === "failed") {
    const refused = refusedPayeesOf(batch, outcome.refused ?? []);
    return {
      status: outcome.status,
      refusedPayees: await failBatch(
        deps,
        batch,
        lease,
        storableText(outcome.message),
        refused,
        hold === "booked" ? null : hold,
      ),
    };
  }
  const evidence = outcome.evidence;
  // Before the batch is marked paid: a flush stopped in between asks the rail again and books the same gas once.
  const native = outcome.nativeFee;
  if (native !== undefined && native.amount > 0n) await bookBatchGas(deps, batch.id, evidence, native);
  if (hold !== "booked") {
    const label = `the payment of netting batch ${batch.id}`;
    const { outcome: posted } = await writeChainWith(
      deps.ledger,
      [
        {
          kind: "post",
          reservation: hold,
          transfer: {
            id: batchSettleIdOf(batch.id),
            label,
            ...(evidence.rail === "evm"
              ? {
                  evidence: {
                    rail: "evm",
                    reference: `${evidence.txHash}:${evidence.logIndex}`,
                    detail: {
                      chainId: String(evidence.chainId),
                      blockNumber: evidence.blockNumber.toString(),
                      batch: batch.id,
                    },
                  },
                }
              : {}),
          },
        },
      ],
      { statement: null, when: "always" },
      label,
    );
    // Only a hold released (the rail refused the batch before, and pays it now) is not posted: the rail's bug.
    if (posted !== "reserved")
      throw new NettingInvariantError(
        `netting batch ${batch.id} was paid, but its hold was not posted (${posted})`,
      );
  }
  const payouts = await deps.db.query<{ payment_id: string; amount: bigint; accrue_transfer_id: string }>(
    // In one order, as every transaction that locks several payments should take them.
    "SELECT payment_id, amount, accrue_transfer_id::text FROM netted_payouts WHERE batch_id = $1 ORDER BY payment_id",
    [batch.id],
  );
  await deps.db.transaction(async (tx) => {
    const moved = await tx.query(
      "UPDATE netting_batches SET status = 'succeeded', evidence = $2, updated_at = now() WHERE id = $1 AND status = 'sending' RETURNING id",
      [batch.id, toJson(evidence)],
    );
    if (moved.length === 0) return;
    for (const payout of payouts) {
      await tx.query(
        `INSERT INTO attempts (id, payment_id, seq, rail, status, amount, fee_max, fee, reserve_transfer_id, evidence)
         VALUES ($1, $2, 0, $3, 'succeeded', $4, 0, 0, $5, $6) ON CONFLICT DO NOTHING`,
        [
          newId("att"),
          payout.payment_id,
          deps.payer.id,
          payout.amount,
          payout.accrue_transfer_id,
          toJson(evidence),
        ],
      );
      await finishPayment(tx, { id: payout.payment_id, status: "succeeded", rail: deps.payer.id });
    }
  });
  return { status: "succeeded", refusedPayees: 0 };
}

/** Gives back this flush's lease on a batch left sending (nothing when the lease is no longer its own). */
async function releaseLease(deps: NettingDeps, batch: BatchRow, lease: string): Promise<void> {
  await deps.db.query(
    "UPDATE netting_batches SET lease_token = NULL, leased_until = NULL WHERE id = $1 AND lease_token = $2",
    [batch.id, lease],
  );
}

/** The id a batch's payment is booked under: its hold's post (before batches were held, a transfer of its own). */
const batchSettleIdOf = (batchId: string): bigint => derivedLedgerId(batchId, "settle");

/**
 * Holds a batch's total from the payable account against the rail's clearing account (pending, under an id of the
 * batch's, so once), as a payout alone reserves its amount before its rail is asked: the clearing account never goes
 * below zero, so a batch the rail does not hold is refused before it is sent, and what a batch in flight sends is not
 * reserved by a payout alone meanwhile. "booked" when the batch's payment is booked already (a flush stopped before it
 * marked the batch paid, or one from before batches were held): it is not held again.
 */
async function holdBatch(
  deps: NettingDeps,
  batch: BatchRow,
): Promise<Reservation | "booked" | Exclude<ReserveOutcome, "reserved">> {
  const [booked] = await deps.ledger.lookupTransfers([batchSettleIdOf(batch.id)]);
  if (booked !== undefined) return "booked";
  const payable = await payableAccount(deps);
  const clearing = await getClearingAccount(deps.db, { rail: deps.payer.id, asset: deps.payer.asset });
  if (clearing === null) throw new NettingInvariantError(`no clearing account for ${deps.payer.id}`);
  const hold: Reservation = {
    pendingId: derivedLedgerId(batch.id, "hold"),
    debitAccountId: payable.ledgerAccountId,
    creditAccountId: clearing.ledgerAccountId,
    amount: BigInt(batch.total),
    ledger: deps.payer.asset.ledger,
    code: transferCodes.netting.batchPaid,
  };
  const { outcome } = await reserve(deps.ledger, hold, {
    id: hold.pendingId,
    label: `the hold of netting batch ${batch.id}`,
  });
  return outcome === "reserved" ? hold : outcome;
}

/**
 * Books what a paid batch's gas cost the hot wallet (its native fee): from the rail's fee account in the native
 * asset to its clearing account there, as a payout's native fee is booked (reservations.ts), under an id of the
 * batch's, so once. Nobody is charged it: a netted payout accrued because its gas would have eaten it, and the
 * batch's gas is the platform's to bear. Before, it was never booked, and the ledger showed the wallet holding gas
 * it had spent.
 */
async function bookBatchGas(
  deps: NettingDeps,
  batchId: string,
  evidence: SettlementEvidence,
  native: FeePaid,
): Promise<void> {
  const rail = deps.payer.id;
  const [fees, wallet] = await Promise.all([
    railAccountOpened(deps, { kind: "fee", rail, asset: native.asset }),
    railAccountOpened(deps, { kind: "clearing", rail, asset: native.asset }),
  ]);
  const reference = evidence.rail === "evm" ? `${evidence.txHash}:${evidence.logIndex}` : batchId;
  const booked = await credit(
    deps.ledger,
    {
      debitAccountId: fees.ledgerAccountId,
      creditAccountId: wallet.ledgerAccountId,
      amount: native.amount,
      ledger: native.asset.ledger,
      code: transferCodes.payments.feePaid,
    },
    {
      id: derivedLedgerId(batchId, "native-fee-paid"),
      label: `the gas of netting batch ${batchId}`,
      evidence: { rail, reference, detail: { kind: "native_fee", batch: batchId, ...native.detail } },
    },
  );
  if (booked === "conflict")
    throw new NettingInvariantError(
      `the gas of netting batch ${batchId} was booked with other details before`,
    );
}

type RefusedPayee = { payee: string; code: RailFailureCode; message: string };

/** The payees of `batch` the rail refused, from the indexes it gave: a bad index is the rail's bug. */
function refusedPayeesOf(batch: BatchRow, refused: readonly PayoutRefused[]): RefusedPayee[] {
  const seen = new Set<number>();
  return refused.map(({ index, code, message }) => {
    const entry = batch.payees[index];
    if (!Number.isInteger(index) || entry === undefined || seen.has(index))
      throw new NettingInvariantError(
        `the rail refused payout ${index} of netting batch ${batch.id}, which has ${batch.payees.length}`,
      );
    seen.add(index);
    return { payee: entry.payee.toLowerCase(), code, message: storableText(message) };
  });
}

/**
 * Fails a batch this flush holds the lease on, in one transaction: the payouts of the payees the rail refused stay
 * with it, marked refused (returnRefusedPayouts gives them back), and the others go back in the queue. Its `hold` is
 * released first. Nothing when the lease is no longer this flush's. Returns how many payees were refused (0 also when
 * the lease was lost).
 */
async function failBatch(
  deps: NettingDeps,
  batch: BatchRow,
  lease: string,
  message: string,
  refused: readonly RefusedPayee[],
  hold: Reservation | null,
): Promise<number> {
  // Booked as paid (a rail that answers refused for a batch it paid before): not put back in the queue to be paid again.
  const [booked] = await deps.ledger.lookupTransfers([batchSettleIdOf(batch.id)]);
  if (booked !== undefined) {
    // Left sending, its lease given back: the next flush asks the rail again under the same reference.
    await releaseLease(deps, batch, lease);
    throw new NettingInvariantError(
      `netting batch ${batch.id} was refused after its payment was booked: ${message}`,
    );
  }
  if (hold !== null) {
    // Under a lease renewed to outlast the release, so that no other flush takes the batch meanwhile (and has the rail
    // pay it against a hold released). A flush stopped in between leaves it sending, its hold released: the next
    // flush asks the rail again, which refuses it again (a refusal is final), and fails it.
    const renewed = await deps.db.query(
      `UPDATE netting_batches SET leased_until = now() + make_interval(secs => $3::double precision / 1000)
        WHERE id = $1 AND status = 'sending' AND lease_token = $2 RETURNING id`,
      [batch.id, lease, nettingSendLeaseMs],
    );
    if (renewed.length === 0) return 0;
    const label = `the release of netting batch ${batch.id}'s hold`;
    await voidLegs(
      deps.ledger,
      [{ reservation: hold, transfer: { id: derivedLedgerId(batch.id, "release"), label } }],
      label,
    );
  }
  return await deps.db.transaction(async (tx) => {
    const failed = await tx.query(
      `UPDATE netting_batches
          SET status = 'failed', failure_message = $2, refused_payees = $4::jsonb, updated_at = now(), leased_until = NULL
        WHERE id = $1 AND status = 'sending' AND lease_token = $3 RETURNING id`,
      [batch.id, message, lease, refused.length === 0 ? null : JSON.stringify(refused)],
    );
    if (failed.length === 0) return 0;
    if (refused.length > 0)
      await tx.query(
        `UPDATE netted_payouts n SET refusal_code = r.code, refusal_message = r.message
           FROM jsonb_to_recordset($2::jsonb) AS r(payee text, code text, message text)
          WHERE n.batch_id = $1 AND n.payee = r.payee`,
        [batch.id, JSON.stringify(refused)],
      );
    await tx.query("UPDATE netted_payouts SET batch_id = NULL WHERE batch_id = $1 AND refusal_code IS NULL", [
      batch.id,
    ]);
    return refused.length;
  });
}

/**
 * Gives back the refused payouts not given back yet (at most nettingReturnsPerFlushMax), each on its own; one that
 * cannot be given back is added to `failures` and the others go on. Returns how many were given back.
 */
async function returnRefusedPayouts(deps: NettingDeps, failures: unknown[]): Promise<number> {
  const refused = await deps.db.query<RefusedPayout>(
    `SELECT payment_id, amount, accrue_transfer_id::text, refusal_code, refusal_message FROM netted_payouts
      WHERE rail = $1 AND refusal_code IS NOT NULL AND returned_at IS NULL ORDER BY payment_id LIMIT $2`,
    [deps.payer.id, nettingReturnsPerFlushMax],
  );
  let returned = 0;
  for (const payout of refused) {
    try {
      await returnRefusedPayout(deps, payout);
      returned += 1;
    } catch (error) {
      failures.push(error);
    }
  }
  return returned;
}

type RefusedPayout = {
  payment_id: string;
  amount: bigint;
  accrue_transfer_id: string;
  refusal_code: RailFailureCode;
  refusal_message: string;
};

/**
 * Moves a refused payout's accrual back to its payer (the payable account into the account it was debited from),
 * and in the same transaction fails its payment with the rail's code and queues payment.failed. Asked again, it
 * changes nothing. Only while the payment is processing: otherwise the transfer is rolled back with the statement
 * (netting_refused_payment_not_processing, migration 0037), so that a payment that ended otherwise is not repaid.
 */
async function returnRefusedPayout(deps: NettingDeps, payout: RefusedPayout): Promise<void> {
  const [accrual] = await deps.ledger.lookupTransfers([BigInt(payout.accrue_transfer_id)]);
  if (accrual === undefined || accrual.amount !== BigInt(payout.amount))
    throw new NettingInvariantError(`payment ${payout.payment_id}'s accrual is not in the ledger as queued`);
  const given = await debit(
    deps.ledger,
    {
      debitAccountId: accrual.creditAccountId,
      creditAccountId: accrual.debitAccountId,
      amount: accrual.amount,
      ledger: accrual.ledger,
      code: transferCodes.netting.returned,
    },
    {
      id: derivedLedgerId(payout.payment_id, "accrual-returned"),
      userData128: paymentLedgerLink(payout.payment_id),
      label: `the return of payment ${payout.payment_id}'s refused payout`,
      // `earlier` is read before this statement's changes: a payout given back before (a retry, or another
      // process's flush) finds its payment failed already, and is no error.
      alongside: {
        text: `WITH earlier AS (
       SELECT returned_at FROM netted_payouts WHERE payment_id = $1 AND refusal_code IS NOT NULL),
     returned AS (
       UPDATE netted_payouts SET returned_at = coalesce(returned_at, now())
        WHERE payment_id = $1 AND refusal_code IS NOT NULL RETURNING 1),
     failed AS (
       UPDATE payments SET status = 'failed', failure_code = $2, failure_message = $3, updated_at = now()
        WHERE id = $1 AND status = 'processing' RETURNING ${paymentEventColumns}),
     event AS (
       INSERT INTO outbox (tenant_id, type, payload) SELECT ${paymentEventSql} FROM failed RETURNING 1)
     SELECT CASE WHEN EXISTS (SELECT 1 FROM failed) OR EXISTS (SELECT 1 FROM earlier WHERE returned_at IS NOT NULL)
                 THEN true ELSE netting_refused_payment_not_processing() END AS returned`,
        params: [payout.payment_id, payout.refusal_code, payout.refusal_message],
      },
    },
  );
  if (given === "insufficient_funds")
    throw new NettingInvariantError(
      `the payable account does not hold payment ${payout.payment_id}'s accrual`,
    );
}
