// How the ledger's batches travel to the database: one array parameter per column, binary on PostgreSQL (a Buffer
// in PostgreSQL's binary array format, which node-postgres sends as is) and text literals on PGlite; and the column
// lists of the two tables they fill. Pure: builds parameters, runs nothing (store.ts and store-batch.ts run them).
import { textArrayLiteral } from "../db/index.ts";
import { idToUuid } from "./id.ts";
import type { Transfer, TransferEvidence } from "./types.ts";

const two64 = 1n << 64n;
const two63 = 1n << 63n;
/** u64 → int8 two's complement, and back. */
export const u64ToInt8 = (value: bigint): bigint => (value >= two63 ? value - two64 : value);
export const int8ToU64 = (value: bigint): bigint => (value < 0n ? value + two64 : value);

export const uuidList = (ids: readonly bigint[]) => `{${ids.map(idToUuid).join(",")}}`;
export const uuidOrNullList = (ids: readonly bigint[]) =>
  `{${ids.map((id) => (id === 0n ? "NULL" : idToUuid(id))).join(",")}}`;
export const numberList = (values: readonly (bigint | number)[]) => `{${values.join(",")}}`;
/**
 * The transfers' evidence as a text array of JSON documents. A batch's transfers often carry one evidence object (every
 * internal payment's): stringified once while it repeats, and textArrayLiteral then escapes that one text once.
 */
function jsonOrNullList(values: readonly (TransferEvidence | null)[]): string {
  let last: TransferEvidence | null = null;
  let lastJson = "";
  return textArrayLiteral(
    values.map((value) => {
      if (value === null) return null;
      if (value !== last) {
        last = value;
        lastJson = JSON.stringify(value);
      }
      return lastJson;
    }),
  );
}

export const accountColumns =
  "id, ledger, code, flags, user_data_128, user_data_64, user_data_32, debits_pending, debits_posted, credits_pending, credits_posted, timestamp";
export const transferColumns =
  "id, debit_account_id, credit_account_id, amount, timestamp, ledger, code, flags, timeout, pending_id, user_data_128, user_data_64, user_data_32, evidence";

/**
 * How array parameters travel. "binary": PostgreSQL's binary array format in a Buffer (node-postgres sends a
 * Buffer parameter in binary), so the server copies 16-byte uuids and 8-byte integers instead of parsing text;
 * "text": array literals, for PGlite.
 */
export type ParamFormat = "text" | "binary";

const oids = { int4: 23, int8: 20, uuid: 2950, jsonb: 3802 } as const;

/**
 * A one-dimensional binary array of `count` fixed-size elements; `write` fills element i at byte `at` through
 * `view` (DataView's 64-bit setters take a bigint as is, where Buffer's go through several bigint operations),
 * and `isNull` (if given) marks SQL NULLs.
 */
function binaryArray(
  oid: number,
  size: number,
  count: number,
  write: (view: DataView, at: number, i: number) => void,
  isNull?: (i: number) => boolean,
): Buffer {
  let nulls = 0;
  if (isNull !== undefined) for (let i = 0; i < count; i++) if (isNull(i)) nulls++;
  const header = count === 0 ? 12 : 20;
  const buffer = Buffer.allocUnsafe(header + count * 4 + (count - nulls) * size);
  const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.length);
  view.setInt32(0, count === 0 ? 0 : 1);
  view.setInt32(4, nulls > 0 ? 1 : 0);
  view.setInt32(8, oid);
  if (count === 0) return buffer;
  view.setInt32(12, count);
  view.setInt32(16, 1);
  let at = header;
  for (let i = 0; i < count; i++) {
    if (nulls > 0 && isNull!(i)) {
      view.setInt32(at, -1);
      at += 4;
      continue;
    }
    view.setInt32(at, size);
    write(view, at + 4, i);
    at += 4 + size;
  }
  return buffer;
}

/** A u128 as uuid bytes: the high half, then the low half (setBigUint64 keeps the low 64 bits). */
const setUuid = (view: DataView, at: number, value: bigint) => {
  view.setBigUint64(at, value >> 64n);
  view.setBigUint64(at + 8, value);
};
/** u128 ids as uuid; 0 is NULL when `zeroIsNull`. */
const uuidArray = (values: readonly bigint[], zeroIsNull = false) =>
  binaryArray(
    oids.uuid,
    16,
    values.length,
    (view, at, i) => setUuid(view, at, values[i]!),
    zeroIsNull ? (i) => values[i] === 0n : undefined,
  );
/** int8 values, each within int8's range (the callers' values are validated amounts, timestamps and deltas). */
const int8Array = (values: readonly bigint[]) =>
  binaryArray(oids.int8, 8, values.length, (view, at, i) => view.setBigInt64(at, values[i]!));
/** Non-negative safe integers (u32 fields) as int8, written without a bigint. */
const uint32AsInt8Array = (values: readonly number[]) =>
  binaryArray(oids.int8, 8, values.length, (view, at, i) => {
    view.setUint32(at, 0);
    view.setUint32(at + 4, values[i]!);
  });
const int4Array = (values: readonly number[]) =>
  binaryArray(oids.int4, 4, values.length, (view, at, i) => view.setInt32(at, values[i]!));

/** Account ids' uuid text, computed once per id (a pure function of the id, never stale). */
export type IdEncoder = (id: bigint) => string;

/** Memoizes up to `entriesMax` ids, then starts over. */
export function createIdEncoder(entriesMax: number): IdEncoder {
  const known = new Map<bigint, string>();
  return (id) => {
    let text = known.get(id);
    if (text === undefined) {
      text = idToUuid(id);
      if (known.size >= entriesMax) known.clear();
      known.set(id, text);
    }
    return text;
  };
}

/** A prepared write of transfers: the parameters are built ahead (while the previous batch commits). */
export type TransferRows = { count: number; params: (string | Buffer)[]; hasEvidence: boolean };

/**
 * A transfer column: how to read it, and its SQL element type. uuid ids of 0 are NULL when `zeroIsNull`;
 * `account` ids may take the memoized text encoding; "u32" fields are stored as int8.
 */
type TransferColumn =
  | { kind: "uuid"; pick: (t: Transfer) => bigint; account?: true; zeroIsNull?: true }
  | { kind: "int8"; pick: (t: Transfer) => bigint }
  | { kind: "u32"; pick: (t: Transfer) => number }
  | { kind: "int4"; pick: (t: Transfer) => number };

/** The insert's columns in order (evidence, jsonb, is added when present). */
const transferColumnList: readonly TransferColumn[] = [
  { kind: "uuid", pick: (t) => t.id },
  { kind: "uuid", pick: (t) => t.debitAccountId, account: true },
  { kind: "uuid", pick: (t) => t.creditAccountId, account: true },
  { kind: "int8", pick: (t) => t.amount },
  { kind: "int8", pick: (t) => t.timestamp },
  { kind: "u32", pick: (t) => t.ledger },
  { kind: "int4", pick: (t) => t.code },
  { kind: "int4", pick: (t) => t.flags },
  { kind: "u32", pick: (t) => t.timeout },
  { kind: "uuid", pick: (t) => t.pendingId, zeroIsNull: true },
  { kind: "uuid", pick: (t) => t.userData128, zeroIsNull: true },
  { kind: "int8", pick: (t) => u64ToInt8(t.userData64) },
  { kind: "u32", pick: (t) => t.userData32 },
];
const sqlType = (kind: TransferColumn["kind"]) => (kind === "u32" ? "int8" : kind);

/** `accountText` may memoize account ids' text (the same accounts recur in every batch); binary needs none. */
export function transferRows(
  transfers: readonly Transfer[],
  format: ParamFormat = "text",
  accountText: IdEncoder = idToUuid,
): TransferRows {
  const count = transfers.length;
  const hasEvidence = transfers.some((t) => t.evidence !== null);
  const params = transferColumnList.map((column): string | Buffer => {
    switch (column.kind) {
      case "int4": {
        const values = transfers.map(column.pick);
        return format === "binary" ? int4Array(values) : numberList(values);
      }
      case "u32": {
        const values = transfers.map(column.pick);
        return format === "binary" ? uint32AsInt8Array(values) : numberList(values);
      }
      case "int8": {
        const values = transfers.map(column.pick);
        return format === "binary" ? int8Array(values) : numberList(values);
      }
    }
    const values = transfers.map(column.pick);
    if (format === "binary") return uuidArray(values, column.zeroIsNull === true);
    const text = column.account ? accountText : idToUuid;
    return `{${values.map((id) => (column.zeroIsNull && id === 0n ? "NULL" : text(id))).join(",")}}`;
  });
  if (hasEvidence) params.push(jsonOrNullList(transfers.map((t) => t.evidence)));
  return { count, params, hasEvidence };
}

/** `at`: how many parameters come before the transfers' columns. */
export const insertTransfersSql = (hasEvidence: boolean, at = 0): string => {
  // Made once for each form: the same string every batch, its hash known to the prepared statements' map.
  const form = `${hasEvidence}:${at}`;
  let text = insertTransfersTexts.get(form);
  if (text === undefined) {
    const types: string[] = transferColumnList.map((column) => sqlType(column.kind));
    if (hasEvidence) types.push("jsonb");
    text = `INSERT INTO ledger_transfers (${hasEvidence ? transferColumns : transferColumns.replace(", evidence", "")})
   SELECT ${types.map((type, i) => `unnest($${at + i + 1}::${type}[])`).join(", ")}`;
    insertTransfersTexts.set(form, text);
  }
  return text;
};

const insertTransfersTexts = new Map<string, string>();

/** Balance changes per account (deltas, so a row is right whatever else the batch's accounts saw), and flags. */
export type BalanceRows = { count: number; params: (string | Buffer)[] };

export function balanceRows(
  changes: readonly {
    id: bigint;
    debitsPending: bigint;
    debitsPosted: bigint;
    creditsPending: bigint;
    creditsPosted: bigint;
    flags: number;
  }[],
  format: ParamFormat = "text",
  accountText: IdEncoder = idToUuid,
): BalanceRows {
  // ids are distinct (one row per account), so one comparison decides
  const sorted = [...changes].sort((a, b) => (a.id < b.id ? -1 : 1));
  const ids = sorted.map((c) => c.id);
  const amounts = [
    sorted.map((c) => c.debitsPending),
    sorted.map((c) => c.debitsPosted),
    sorted.map((c) => c.creditsPending),
    sorted.map((c) => c.creditsPosted),
  ];
  const flags = sorted.map((c) => c.flags);
  return {
    count: sorted.length,
    params:
      format === "binary"
        ? [uuidArray(ids), ...amounts.map(int8Array), int4Array(flags)]
        : [`{${ids.map(accountText).join(",")}}`, ...amounts.map(numberList), numberList(flags)],
  };
}
