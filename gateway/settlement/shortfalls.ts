// A reversal's shortfall: what a reversal of an invoice's money (a dispute, a refund made at the provider, a reorg)
// could not take from an account because the account held less than its leg (a balancing debit takes what is there).
// The rail took it all the same (Stripe takes a dispute's whole amount from the platform's balance), so until it is
// collected the rail's clearing account says the rail holds that much more than it does.
//
// - Recorded per reversal and account (migration 0036), with the reversal's record and in the transaction of its
//   legs (settlement/invoices.ts reversalRecordStatement).
// - Collected from what is given back to that account later for the same invoice: a refund of it that fails (its
//   hold voided, or its post undone: payments/refunds.ts) gives back its amount, of which the account's outstanding
//   shortfalls are taken first, oldest reversal first, and only the rest stays. The collection is one ledger transfer
//   per reversal and account (the account into the rail's clearing account, its id derived from the invoice, the
//   reversal, the account and the give-back), written in the linked chain of the give-back, with its record in the
//   same statement as the give-back's: all or none, once.
// - Given back with its reversal: a reversal undone (a dispute won) gives back what its legs took and what was
//   collected for it, and what was not collected is owed no more (closed).
//
// A collection is computed from the shortfalls it read; its statement checks, under the ledger's lock, that what is
// outstanding on each account given back to is still what it read, and raises shortfall_collection_moved()
// otherwise (another collection, a reversal recorded or given back meanwhile, in this process or another): the
// give-back and the collection are rolled back together and computed again (isShortfallCollectionMoved).
// The lock is what makes the check see a reversal recorded before the give-back in the ledger's order: a reversal's
// shortfall is a row its record inserts, which no lock of the collection's statement waits for. So the give-back's
// chain runs down the ledger's locked path (Alongside.underLock), its statement written after the clock is locked:
// every batch before it has committed. A reversal's batch of another process sent meanwhile may have inserted its
// shortfall already, uncommitted and unseen by the check, but that batch is ordered after the give-back: finding the
// clock's token moved, it is rolled back and written again after the give-back. Pipelined, the statement ran
// before the clock, beside a reversal's batch of the same process still in flight ahead of it, whose shortfall it
// did not see: the check passed, and the give-back left that shortfall uncollected (test/fiat/reversal-shortfall.test.ts).
// Give-backs are rare (a refund failed, a dispute won); the pipeline drains for each, and the statement's waits for
// a row (the invoice's refundable row, which a refund's claim or a reversal's record of another process locks before
// the clock) are bounded: its batch runs again (LedgerLimits.underLockWaitMaxMs).
import { type Sql, type Statement, serverRaised } from "../db/index.ts";
import { derivedLedgerId } from "../ids/index.ts";
import { type ChainMember, type TransferEvidence, transferCodes } from "../ledger/index.ts";

/** What a reversal's leg could not take from one account: its leg's amount less what it took. */
export type LegShortfall = { accountId: string; amount: bigint };

/** One account's part of what a give-back gives back: its ledger account, and how much. */
export type GivenBack = { accountId: string; ledgerAccountId: bigint; amount: bigint };

/** What is still owed of a reversal's shortfall on one account. */
export type OutstandingShortfall = { reversalKey: string; accountId: string; outstanding: bigint };

/** One collection: of reversal `reversalKey`'s shortfall on `accountId`, `amount`, by ledger transfer `transferId`. */
export type ShortfallTake = { reversalKey: string; accountId: string; amount: bigint; transferId: bigint };

/**
 * The collections a give-back makes: the ledger moves to write after the give-back in its chain, and what the
 * statement written with them records and checks.
 */
export type ShortfallCollection = {
  invoiceId: string;
  /**
   * What gives the money back, once: a refund's id; a reversal's key for the look that gives back its legs, its key
   * and the first collection given back for a later look (invoices.ts movesBack).
   */
  source: string;
  /** What was outstanding on each account given back to when it was read (0 included): checked when written. */
  readAt: readonly { accountId: string; outstanding: bigint }[];
  takes: readonly ShortfallTake[];
  members: readonly ChainMember[];
  /** A reversal left out: the one being given back, whose own shortfall is closed instead of collected. */
  exceptReversal: string | null;
};

/** The ledger transfer that collects, from what `source` gave back, reversal `key`'s shortfall on an account. */
export const shortfallCollectionLedgerId = (
  invoiceId: string,
  key: string,
  accountId: string,
  source: string,
): bigint => derivedLedgerId(`${invoiceId}:${key}:${accountId}:${source}`, "shortfall-collected");

/** The ledger transfer that gives a collection back, with its reversal. */
export const shortfallCollectionGivenBackLedgerId = (transferId: bigint): bigint =>
  derivedLedgerId(transferId.toString(), "shortfall-given-back");

/** The shortfalls of each leg of a reversal: what each leg asked less what it took, those above zero. */
export function legShortfalls(
  legs: readonly { accountId: string; asked: bigint }[],
  taken: readonly bigint[],
): LegShortfall[] {
  return legs
    .map((leg, i) => ({ accountId: leg.accountId, amount: leg.asked - (taken[i] ?? 0n) }))
    .filter((shortfall) => shortfall.amount > 0n);
}

/** The invoice's shortfalls still owed (of reversals not given back), oldest reversal first. */
export async function outstandingShortfalls(sql: Sql, invoiceId: string): Promise<OutstandingShortfall[]> {
  const rows = await sql.query<{ reversal_key: string; account_id: string; outstanding: bigint }>(
    `SELECT reversal_key, account_id, amount - collected AS outstanding FROM reversal_shortfalls
     WHERE invoice_id = $1 AND closed_at IS NULL AND collected < amount
     ORDER BY recorded_at, reversal_key, account_id`,
    [invoiceId],
  );
  return rows.map((row) => ({
    reversalKey: row.reversal_key,
    accountId: row.account_id,
    outstanding: BigInt(row.outstanding),
  }));
}

/**
 * What `source` collects of the outstanding shortfalls from what it gives back: of each account's amount, its
 * shortfalls in order, each at most what is left of the amount; the rest stays on the account. `exceptReversal`: a
 * reversal whose own shortfall is not collected (the one being given back: it is closed instead).
 */
export function collectShortfalls(params: {
  invoiceId: string;
  source: string;
  givenBack: readonly GivenBack[];
  outstanding: readonly OutstandingShortfall[];
  /** The rail's clearing account the reversal's legs went to, and its ledger. */
  clearingLedgerAccountId: bigint;
  ledger: number;
  evidence: TransferEvidence;
  exceptReversal?: string;
}): ShortfallCollection {
  const takes: ShortfallTake[] = [];
  const members: ChainMember[] = [];
  const readAt: { accountId: string; outstanding: bigint }[] = [];
  // One account given back to twice (a reversal's leg and a collection it gives back) is one amount: its shortfalls
  // are taken once.
  const accounts = new Map<string, GivenBack>();
  for (const given of params.givenBack) {
    const seen = accounts.get(given.accountId);
    accounts.set(given.accountId, { ...given, amount: (seen?.amount ?? 0n) + given.amount });
  }
  for (const given of accounts.values()) {
    const owed = params.outstanding.filter(
      (shortfall) =>
        shortfall.accountId === given.accountId && shortfall.reversalKey !== params.exceptReversal,
    );
    readAt.push({
      accountId: given.accountId,
      outstanding: owed.reduce((sum, shortfall) => sum + shortfall.outstanding, 0n),
    });
    let left = given.amount;
    for (const shortfall of owed) {
      const amount = least(shortfall.outstanding, left);
      if (amount <= 0n) break;
      const transferId = shortfallCollectionLedgerId(
        params.invoiceId,
        shortfall.reversalKey,
        given.accountId,
        params.source,
      );
      takes.push({ reversalKey: shortfall.reversalKey, accountId: given.accountId, amount, transferId });
      members.push({
        kind: "move",
        posting: {
          debitAccountId: given.ledgerAccountId,
          creditAccountId: params.clearingLedgerAccountId,
          amount,
          ledger: params.ledger,
          code: transferCodes.invoices.shortfallCollected,
        },
        transfer: {
          id: transferId,
          userData128: derivedLedgerId(params.invoiceId, "invoice"),
          evidence: {
            ...params.evidence,
            detail: { ...params.evidence.detail, reversal: shortfall.reversalKey, source: params.source },
          },
          label: `the collection of reversal ${shortfall.reversalKey}'s shortfall on account ${given.accountId} from ${params.source}`,
        },
      });
      left -= amount;
    }
  }
  return {
    invoiceId: params.invoiceId,
    source: params.source,
    readAt,
    takes,
    members,
    exceptReversal: params.exceptReversal ?? null,
  };
}

/**
 * The SQL a give-back's statement adds for its collection, its parameters numbered from `firstParam`: `ctes` (each
 * after a comma, to follow the statement's own) record each take (reversal_shortfall_collections, reversal_shortfalls
 * .collected) when `gate` holds — the give-back moved now, not in an earlier run — and `check`, a boolean expression
 * for the statement's result, raises shortfall_collection_moved() when the shortfalls are no longer what they were
 * read as, or a take found its shortfall gone.
 */
export function collectionSql(
  collection: ShortfallCollection,
  gate: string,
  firstParam: number,
): { ctes: string; check: string; params: unknown[] } {
  const p = (i: number) => `$${firstParam + i}`;
  const ctes = `,
     shortfall_takes AS (
       SELECT * FROM unnest(${p(2)}::text[], ${p(3)}::text[], ${p(4)}::text[], ${p(5)}::text[])
         AS t (reversal_key, account_id, amount, transfer_id)
       WHERE ${gate}),
     shortfall_read_at AS (
       SELECT * FROM unnest(${p(6)}::text[], ${p(7)}::text[]) AS r (account_id, outstanding)),
     shortfall_owed AS (
       SELECT account_id, sum(amount - collected) AS outstanding FROM reversal_shortfalls
       WHERE invoice_id = ${p(0)} AND closed_at IS NULL AND reversal_key IS DISTINCT FROM ${p(8)}::text
       GROUP BY account_id),
     shortfall_logged AS (
       INSERT INTO reversal_shortfall_collections (invoice_id, reversal_key, account_id, source, amount, transfer_id)
       SELECT ${p(0)}, reversal_key, account_id, ${p(1)}, amount::bigint, transfer_id::numeric FROM shortfall_takes
       ON CONFLICT DO NOTHING RETURNING reversal_key, account_id, amount),
     shortfall_collected AS (
       UPDATE reversal_shortfalls s SET collected = s.collected + l.amount FROM shortfall_logged l
       WHERE s.invoice_id = ${p(0)} AND s.reversal_key = l.reversal_key AND s.account_id = l.account_id
         AND s.closed_at IS NULL AND s.collected + l.amount <= s.amount
       RETURNING 1)`;
  const check = `CASE WHEN ${gate} AND (
         (SELECT count(*) FROM shortfall_collected) <> (SELECT count(*) FROM shortfall_takes)
         OR EXISTS (SELECT 1 FROM shortfall_read_at r LEFT JOIN shortfall_owed o ON o.account_id = r.account_id
                    WHERE coalesce(o.outstanding, 0) <> r.outstanding::bigint))
       THEN shortfall_collection_moved() ELSE true END`;
  return {
    ctes,
    check,
    params: [
      collection.invoiceId,
      collection.source,
      collection.takes.map((take) => take.reversalKey),
      collection.takes.map((take) => take.accountId),
      collection.takes.map((take) => take.amount.toString()),
      collection.takes.map((take) => take.transferId.toString()),
      collection.readAt.map((read) => read.accountId),
      collection.readAt.map((read) => read.outstanding.toString()),
      collection.exceptReversal,
    ],
  };
}

/** The smaller of two amounts (Math.min takes no bigint). */
const least = (a: bigint, b: bigint): bigint => (b < a ? b : a);

/**
 * A collection's statement on its own, for a give-back whose chain has no statement of its own (a reversal given
 * back): it records the takes and checks the shortfalls unless its takes were recorded before (the chain is a retry
 * of one written whole, its collections recorded with it). Gated on the takes' own transfers, not on the source: a
 * source that collected before is another look's, whose takes say nothing of these.
 */
export function collectionStatement(collection: ShortfallCollection): Statement {
  const collecting = collectionSql(collection, "(SELECT open FROM shortfall_gate)", 1);
  const takeIds = collecting.params.length + 1;
  return {
    text: `WITH shortfall_gate AS (
       SELECT NOT EXISTS (SELECT 1 FROM reversal_shortfall_collections
                          WHERE transfer_id = ANY ($${takeIds}::text[]::numeric[])) AS open)${collecting.ctes}
     SELECT ${collecting.check} AS collected`,
    params: [...collecting.params, collection.takes.map((take) => take.transferId.toString())],
  };
}

/** Whether an error is shortfall_collection_moved() (migration 0036), along its causes. */
export const isShortfallCollectionMoved = (error: unknown): boolean => serverRaised(error, "SYR04");

/** How many times a give-back and its collection are computed again because the shortfalls moved meanwhile. */
export const shortfallCollectionAttemptsMax = 8;
