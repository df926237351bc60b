// The fiat rail's stores on PostgreSQL or PGlite (same SQL). Tables: migrations/001_fiat_stripe.sql, and those after.
import { fileURLToPath } from "node:url";
import type { Db, MigrationSource, RailCapitalMovement, RailFee, Sql } from "../../core/index.ts";
import {
  type CreditedIntent,
  type DueFee,
  type FiatPspIds,
  FiatStoreError,
  type GivenUpFee,
  mergedFees,
  type ParkedFee,
  type ParkedReversal,
  parkedFeeKeptMsMax,
  parkedFeeKinds,
  parkedFeeRetryMsMax,
  parkedFeeRetryMsMin,
  parkedPerIntentMax,
  type ReversalReason,
  type StripeObjectKind,
  type StripeObjectRecord,
  type StripeObjectStore,
  type StripeWebhookStore,
} from "./store.ts";

export const fiatMigrations: MigrationSource = {
  namespace: "fiat",
  directory: fileURLToPath(new URL("./migrations/", import.meta.url)),
  tables: (name) => name.startsWith("fiat_"),
};

type ObjectRow = {
  idempotency_key: string;
  kind: StripeObjectKind;
  object_id: string;
  payment_id: string;
  attempt_id: string | null;
  amount: bigint;
};

function objectFromRow(row: ObjectRow): StripeObjectRecord {
  return {
    idempotencyKey: row.idempotency_key,
    kind: row.kind,
    objectId: row.object_id,
    paymentId: row.payment_id,
    attemptId: row.attempt_id,
    amount: row.amount,
  };
}

export function createSqlStripeObjectStore(db: Db): StripeObjectStore {
  const find = async (sql: Sql, key: string) => {
    const rows = await sql.query<ObjectRow>(
      "SELECT idempotency_key, kind, object_id, payment_id, attempt_id, amount FROM fiat_stripe_objects WHERE idempotency_key = $1",
      [key],
    );
    return rows[0] === undefined ? null : objectFromRow(rows[0]);
  };
  return {
    find: (key) => find(db, key),
    async record(record) {
      await db.query(
        `INSERT INTO fiat_stripe_objects (idempotency_key, kind, object_id, payment_id, attempt_id, amount)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (idempotency_key) DO NOTHING`,
        [
          record.idempotencyKey,
          record.kind,
          record.objectId,
          record.paymentId,
          record.attemptId,
          record.amount,
        ],
      );
      const holder = await find(db, record.idempotencyKey);
      if (holder === null) throw new FiatStoreError(`fiat_stripe_objects lost key ${record.idempotencyKey}`);
      return holder;
    },
  };
}

type IntentRow = {
  intent_id: string;
  credited: boolean;
  payment_id: string | null;
  attempt_id: string | null;
  reference: string | null;
  amount: bigint | null;
  /** Read under the intent's lock only (lockIntent). */
  fee_pending?: boolean;
  pending_fees?: readonly { id: string; amount: string }[] | string;
};

function creditedFromRow(row: IntentRow | undefined): CreditedIntent | null {
  if (row === undefined || !row.credited) return null;
  if (row.payment_id === null || row.attempt_id === null || row.reference === null || row.amount === null)
    throw new FiatStoreError(`fiat_stripe_intents ${row.intent_id} is credited without its payment`);
  return {
    intentId: row.intent_id,
    paymentId: row.payment_id,
    attemptId: row.attempt_id,
    reference: row.reference,
    amount: row.amount,
  };
}

type ParkedRow = {
  key: string;
  reason: ReversalReason;
  amount: bigint;
  psp_ids: FiatPspIds | string;
  fees: readonly { id: string; amount: string }[] | string;
};

const jsonOf = <T>(value: T | string): T => (typeof value === "string" ? (JSON.parse(value) as T) : value);

/** Fees as kept in a parked reversal's row: amounts as decimal strings. */
const feesJson = (fees: readonly RailFee[]) =>
  JSON.stringify(fees.map((fee) => ({ id: fee.id, amount: fee.amount.toString() })));

/** A parked reversal's fees as kept (amounts as decimal strings); none kept, no `fees`. */
const feesOf = (kept: readonly { id: string; amount: string }[]): Pick<ParkedReversal, "fees"> =>
  kept.length === 0 ? {} : { fees: kept.map((fee) => ({ id: fee.id, amount: BigInt(fee.amount) })) };

/** Adds `fees` to those an intent not credited yet keeps for its credit (each balance transaction once). */
async function keepFees(tx: Sql, row: IntentRow, fees: readonly RailFee[]): Promise<void> {
  if (fees.length === 0) return;
  const kept = feesOf(jsonOf(row.pending_fees ?? [])).fees;
  await tx.query(
    "UPDATE fiat_stripe_intents SET pending_fees = $2, updated_at = now() WHERE intent_id = $1",
    [row.intent_id, feesJson(mergedFees(kept, fees))],
  );
}

/** Locks the intent's row (creating it uncredited if absent) for the rest of the transaction. */
async function lockIntent(tx: Sql, intentId: string): Promise<IntentRow> {
  await tx.query(
    "INSERT INTO fiat_stripe_intents (intent_id) VALUES ($1) ON CONFLICT (intent_id) DO NOTHING",
    [intentId],
  );
  const rows = await tx.query<IntentRow>(
    "SELECT intent_id, credited, payment_id, attempt_id, reference, amount, fee_pending, pending_fees FROM fiat_stripe_intents WHERE intent_id = $1 FOR UPDATE",
    [intentId],
  );
  const row = rows[0];
  if (row === undefined) throw new FiatStoreError(`fiat_stripe_intents lost ${intentId}`);
  return row;
}

/** A kept fee's `booking` as its row keeps it (migrations/004_parked_fees.sql): amounts as decimal strings. */
type ParkedFeeBooking =
  | { invoice: string; paymentIntent: string }
  | { movements: { direction: "in" | "out"; amount: string; reference: string; description: string }[] };

type ParkedFeeRow = {
  rail: string;
  object_id: string;
  kind: ParkedFee["kind"];
  failure: boolean;
  booking: ParkedFeeBooking | string;
  tries: number;
  revision: number;
};

function feeBookingJson(fee: ParkedFee): string {
  const booking: ParkedFeeBooking =
    fee.kind === "refund"
      ? { invoice: fee.invoice, paymentIntent: fee.paymentIntent }
      : { movements: fee.movements.map((movement) => ({ ...movement, amount: movement.amount.toString() })) };
  return JSON.stringify(booking);
}

function dueFeeFromRow(row: ParkedFeeRow): DueFee {
  const kept = {
    rail: row.rail,
    objectId: row.object_id,
    failure: row.failure,
    tries: row.tries,
    revision: row.revision,
  };
  const booking = jsonOf(row.booking);
  if (row.kind === "refund" && "invoice" in booking)
    return { ...kept, kind: "refund", invoice: booking.invoice, paymentIntent: booking.paymentIntent };
  if (row.kind === "payout" && "movements" in booking)
    return {
      ...kept,
      kind: "payout",
      movements: booking.movements.map(
        (movement): RailCapitalMovement => ({ ...movement, amount: BigInt(movement.amount) }),
      ),
    };
  throw new FiatStoreError(
    `fiat_parked_fees ${row.object_id} keeps a ${row.kind}'s fee with another's booking`,
  );
}

export function createSqlStripeWebhookStore(db: Db): StripeWebhookStore {
  return {
    async isApplied(eventId) {
      const rows = await db.query("SELECT 1 FROM fiat_applied_stripe_events WHERE event_id = $1", [eventId]);
      return rows.length > 0;
    },
    async markApplied({ eventId, type }) {
      await db.query(
        "INSERT INTO fiat_applied_stripe_events (event_id, type) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING",
        [eventId, type],
      );
    },
    async creditedIntent(intentId) {
      const rows = await db.query<IntentRow>(
        "SELECT intent_id, credited, payment_id, attempt_id, reference, amount FROM fiat_stripe_intents WHERE intent_id = $1",
        [intentId],
      );
      return creditedFromRow(rows[0]);
    },
    async markCredited(intent) {
      return db.transaction(async (tx) => {
        const row = await lockIntent(tx, intent.intentId);
        if (!row.credited) {
          await tx.query(
            `UPDATE fiat_stripe_intents SET credited = true, payment_id = $2, attempt_id = $3, reference = $4, amount = $5,
             updated_at = now() WHERE intent_id = $1`,
            [intent.intentId, intent.paymentId, intent.attemptId, intent.reference, intent.amount],
          );
        }
        const parked = await tx.query<ParkedRow>(
          "SELECT key, reason, amount, psp_ids, fees FROM fiat_parked_reversals WHERE intent_id = $1 ORDER BY parked_at, key LIMIT $2",
          [intent.intentId, parkedPerIntentMax],
        );
        return {
          wasCredited: row.credited,
          feePending: row.fee_pending === true,
          pendingFees: [...(feesOf(jsonOf(row.pending_fees ?? [])).fees ?? [])],
          parked: parked.map(
            (p): ParkedReversal => ({
              key: p.key,
              reason: p.reason,
              amount: p.amount,
              pspIds: jsonOf(p.psp_ids),
              ...feesOf(jsonOf(p.fees)),
            }),
          ),
        };
      });
    },
    async parkUnlessCredited({ intentId, reversal }) {
      return db.transaction(async (tx) => {
        const row = await lockIntent(tx, intentId);
        const gone = await tx.query(
          "SELECT 1 FROM fiat_withdrawn_reversals WHERE intent_id = $1 AND key = $2",
          [intentId, reversal.key],
        );
        if (gone.length > 0) {
          if (!row.credited) await keepFees(tx, row, reversal.fees ?? []);
          return { status: "withdrawn" as const };
        }
        const intent = creditedFromRow(row);
        if (intent !== null) return { status: "credited" as const, intent };
        const count = await tx.query<{ n: bigint }>(
          "SELECT count(*)::int8 AS n FROM fiat_parked_reversals WHERE intent_id = $1",
          [intentId],
        );
        if ((count[0]?.n ?? 0n) >= BigInt(parkedPerIntentMax))
          throw new FiatStoreError(`more than ${parkedPerIntentMax} reversals parked for ${intentId}`);
        const inserted = await tx.query(
          `INSERT INTO fiat_parked_reversals (intent_id, key, reason, amount, psp_ids, fees)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (intent_id, key) DO NOTHING RETURNING key`,
          [
            intentId,
            reversal.key,
            reversal.reason,
            reversal.amount,
            JSON.stringify(reversal.pspIds),
            feesJson(reversal.fees ?? []),
          ],
        );
        if (inserted.length === 0 && (reversal.fees ?? []).length > 0) {
          // Parked before (the intent's lock holds it): the fees this delivery brings are added, each once.
          const [kept] = await tx.query<Pick<ParkedRow, "fees">>(
            "SELECT fees FROM fiat_parked_reversals WHERE intent_id = $1 AND key = $2",
            [intentId, reversal.key],
          );
          const merged = mergedFees(feesOf(jsonOf(kept?.fees ?? [])).fees, reversal.fees);
          await tx.query("UPDATE fiat_parked_reversals SET fees = $3 WHERE intent_id = $1 AND key = $2", [
            intentId,
            reversal.key,
            feesJson(merged),
          ]);
        }
        return { status: "parked" as const };
      });
    },
    async parkFeeUnlessCredited(intentId) {
      return db.transaction(async (tx) => {
        const row = await lockIntent(tx, intentId);
        const intent = creditedFromRow(row);
        if (intent !== null) return { status: "credited" as const, intent };
        await tx.query(
          "UPDATE fiat_stripe_intents SET fee_pending = true, updated_at = now() WHERE intent_id = $1",
          [intentId],
        );
        return { status: "parked" as const };
      });
    },
    async clearFeePending(intentId) {
      await db.query(
        `UPDATE fiat_stripe_intents SET fee_pending = false, pending_fees = '[]', updated_at = now()
         WHERE intent_id = $1 AND (fee_pending OR pending_fees::text <> '[]')`,
        [intentId],
      );
    },
    async unpark({ intentId, key }) {
      await db.query("DELETE FROM fiat_parked_reversals WHERE intent_id = $1 AND key = $2", [intentId, key]);
    },
    async withdraw({ intentId, key, fees }) {
      return db.transaction(async (tx) => {
        // the intent's lock orders this against parkUnlessCredited and markCredited
        const row = await lockIntent(tx, intentId);
        await tx.query(
          "INSERT INTO fiat_withdrawn_reversals (intent_id, key) VALUES ($1, $2) ON CONFLICT (intent_id, key) DO NOTHING",
          [intentId, key],
        );
        const dropped = await tx.query<Pick<ParkedRow, "fees">>(
          "DELETE FROM fiat_parked_reversals WHERE intent_id = $1 AND key = $2 RETURNING fees",
          [intentId, key],
        );
        if (!row.credited)
          await keepFees(tx, row, mergedFees(feesOf(jsonOf(dropped[0]?.fees ?? [])).fees, fees));
        const intent = creditedFromRow(row);
        return intent === null ? { status: "withdrawn" as const } : { status: "credited" as const, intent };
      });
    },
    async parkFee(fee) {
      // Kept again, it takes the next revision (never one a row of it had before: migration 007): a try or an event's
      // lookup that read the row before books what it read, and leaves the row. Given
      // up, or past its week (not given up yet: no pass since, or giveUpFees skipping the row this locks), it is kept
      // anew (its week, tries and wait from the start); the row's lock, taken first, says which it was.
      const expired = (week: string) => `(fiat_parked_fees.gave_up_at IS NOT NULL
        OR fiat_parked_fees.parked_at <= now() - make_interval(secs => ${week}::double precision / 1000))`;
      return db.transaction(async (tx) => {
        const [was] = await tx.query<{ expired: boolean }>(
          `SELECT ${expired("$3")} AS expired FROM fiat_parked_fees WHERE rail = $1 AND object_id = $2 FOR UPDATE`,
          [fee.rail, fee.objectId, parkedFeeKeptMsMax],
        );
        // xmax 0: the row this statement inserted, not one it updated (PostgreSQL's, as an upsert's tell).
        const [row] = await tx.query<{ inserted: boolean }>(
          `INSERT INTO fiat_parked_fees (rail, object_id, kind, failure, booking, next_try_at)
           VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6::double precision / 1000))
           ON CONFLICT (rail, object_id) DO UPDATE SET failure = fiat_parked_fees.failure OR EXCLUDED.failure,
             booking = EXCLUDED.booking, revision = nextval('fiat_parked_fees_revision'),
             tries = CASE WHEN ${expired("$7")} THEN 0 ELSE fiat_parked_fees.tries END,
             parked_at = CASE WHEN ${expired("$7")} THEN now() ELSE fiat_parked_fees.parked_at END,
             next_try_at = CASE WHEN ${expired("$7")} THEN EXCLUDED.next_try_at ELSE fiat_parked_fees.next_try_at END,
             gave_up_at = NULL
           RETURNING xmax = 0 AS inserted`,
          [
            fee.rail,
            fee.objectId,
            fee.kind,
            fee.failure,
            feeBookingJson(fee),
            parkedFeeRetryMsMin,
            parkedFeeKeptMsMax,
          ],
        );
        return { parked: row?.inserted === true || was?.expired === true };
      });
    },
    async takeDueFees({ rail, max, kinds }) {
      if (kinds?.length === 0) return [];
      // One kind asked, `kind = $6`, which fiat_parked_fees_due_by_kind reads in next_try_at's order (a `kind = ANY`
      // does not keep its order on PostgreSQL before 17: every due fee of the kind read and sorted, for one); every
      // kind asked, fiat_parked_fees_due alone.
      const kind =
        kinds === undefined || parkedFeeKinds.every((each) => kinds.includes(each)) ? null : kinds[0];
      // Skipping the rows another process's pass holds: each try is one process's.
      const rows = await db.query<ParkedFeeRow>(
        `UPDATE fiat_parked_fees SET tries = tries + 1,
           next_try_at = now() + make_interval(secs =>
             least($3::double precision, $4::double precision * 2 ^ least(tries + 1, 20)) / 1000)
         WHERE rail = $1 AND object_id IN (
           SELECT object_id FROM fiat_parked_fees WHERE rail = $1 AND gave_up_at IS NULL AND next_try_at <= now()
             AND parked_at > now() - make_interval(secs => $5::double precision / 1000)
             ${kind === null ? "" : "AND kind = $6"}
           ORDER BY next_try_at, object_id LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING rail, object_id, kind, failure, booking, tries, revision`,
        [
          rail,
          max,
          parkedFeeRetryMsMax,
          parkedFeeRetryMsMin,
          parkedFeeKeptMsMax,
          ...(kind === null ? [] : [kind]),
        ],
      );
      return rows.map(dueFeeFromRow);
    },
    async giveUpFees({ rail, max }) {
      // Each row once: the one statement that sets gave_up_at returns it (another process's skips it, or finds it set).
      const rows = await db.query<{ object_id: string; kind: GivenUpFee["kind"]; tries: number }>(
        `UPDATE fiat_parked_fees SET gave_up_at = now()
         WHERE rail = $1 AND gave_up_at IS NULL AND object_id IN (
           SELECT object_id FROM fiat_parked_fees WHERE rail = $1 AND gave_up_at IS NULL
             AND parked_at <= now() - make_interval(secs => $3::double precision / 1000)
           ORDER BY parked_at, object_id LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING object_id, kind, tries`,
        [rail, max, parkedFeeKeptMsMax],
      );
      return rows.map((row) => ({ rail, objectId: row.object_id, kind: row.kind, tries: row.tries }));
    },
    async unparkFee({ rail, objectId, revision }) {
      await db.query("DELETE FROM fiat_parked_fees WHERE rail = $1 AND object_id = $2 AND revision = $3", [
        rail,
        objectId,
        revision,
      ]);
    },
    async keptFeeRevision({ rail, objectId }) {
      const [row] = await db.query<{ revision: number }>(
        "SELECT revision FROM fiat_parked_fees WHERE rail = $1 AND object_id = $2",
        [rail, objectId],
      );
      return row?.revision ?? null;
    },
    async forgetBookedFee({ rail, objectId, revision, failure }) {
      // The row as the event's lookup found it: one kept since (another revision) stays, and so does one asking for its
      // failure's fee that the lookup did not tell.
      await db.query(
        `DELETE FROM fiat_parked_fees WHERE rail = $1 AND object_id = $2 AND revision = $3
           AND (NOT failure OR $4::boolean)`,
        [rail, objectId, revision, failure],
      );
    },
  };
}
