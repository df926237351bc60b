// The semantics' checks of single fields, pure: ranges a u128/u64/u32/u16 field can hold, settlement evidence (valid,
// as stored, equal), when a pending transfer expires, and the bounds an imported event's timestamp is checked against.
import { isStorableText } from "../../core/text.ts";
import { LedgerInvariantError } from "./errors.ts";
import type { Journal, LedgerState, Undo } from "./semantics.ts";
import {
  type Account,
  evidenceDetailEntriesMax,
  evidenceDetailLengthMax,
  evidenceRailLengthMax,
  evidenceReferenceLengthMax,
  nsPerS,
  type Transfer,
  type TransferEvidence,
  u16Max,
  u64Max,
  u128Max,
} from "./types.ts";

export const copyAccount = (account: Account): Account => ({ ...account });

export const isU128 = (value: bigint) => typeof value === "bigint" && value >= 0n && value <= u128Max;
export const isU64 = (value: bigint) => typeof value === "bigint" && value >= 0n && value <= u64Max;
export const isUint = (value: number, max: number) => Number.isInteger(value) && value >= 0 && value <= max;

export function expiresAt(transfer: Transfer): bigint | null {
  return transfer.timeout > 0 ? transfer.timestamp + BigInt(transfer.timeout) * nsPerS : null;
}

export function evidenceIsValid(evidence: TransferEvidence | undefined | null): boolean {
  if (evidence === undefined || evidence === null) return true;
  if (typeof evidence !== "object") return false;
  const { rail, reference, detail } = evidence;
  if (typeof rail !== "string" || rail.length === 0 || rail.length > evidenceRailLengthMax) return false;
  if (
    typeof reference !== "string" ||
    reference.length === 0 ||
    reference.length > evidenceReferenceLengthMax
  )
    return false;
  // Stored as jsonb, which refuses a NUL and an unpaired surrogate: refused as the transfer's own result, not as the
  // whole batch's failure (its neighbours with it).
  if (!isStorableText(rail) || !isStorableText(reference)) return false;
  if (detail === undefined) return true;
  if (typeof detail !== "object" || detail === null || Array.isArray(detail)) return false;
  const entries = Object.entries(detail);
  if (entries.length > evidenceDetailEntriesMax) return false;
  for (const [key, value] of entries) {
    if (key.length === 0 || key.length > evidenceDetailLengthMax || !isStorableText(key)) return false;
    if (typeof value !== "string" || value.length > evidenceDetailLengthMax || !isStorableText(value))
      return false;
  }
  return true;
}

/** Evidence as stored: detail keys sorted, an empty detail dropped, so equal evidence compares equal. */
export function normalizeEvidence(evidence: TransferEvidence | undefined | null): TransferEvidence | null {
  if (evidence === undefined || evidence === null) return null;
  const keys = Object.keys(evidence.detail ?? {}).sort();
  if (keys.length === 0) return { rail: evidence.rail, reference: evidence.reference };
  const detail: Record<string, string> = {};
  for (const key of keys) detail[key] = evidence.detail![key]!;
  return { rail: evidence.rail, reference: evidence.reference, detail };
}

export function evidenceEquals(a: TransferEvidence | null, b: TransferEvidence | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.rail !== b.rail || a.reference !== b.reference) return false;
  const ak = Object.keys(a.detail ?? {});
  const bk = Object.keys(b.detail ?? {});
  if (ak.length !== bk.length) return false;
  for (const key of ak) if (a.detail![key] !== b.detail?.[key]) return false;
  return true;
}

/** The two kinds of event a request may import. */
export type ImportedKind = "account" | "transfer";

/**
 * What an imported event's timestamp is checked against, as TigerBeetle checks it against its trees, for each kind:
 * the latest one's timestamp, and which of the timestamps the request's imported events carry one already holds. The
 * writer reads them under the ledger's lock for a request that imports (writer-locked.ts), and the request's own
 * events keep them current as they are created (noteCreated).
 */
export type ImportedBounds = Record<ImportedKind, { timestampMax: bigint; timestamps: Set<bigint> }>;

/** The bounds of an empty ledger. */
export const emptyImportedBounds = (): ImportedBounds => ({
  account: { timestampMax: 0n, timestamps: new Set() },
  transfer: { timestampMax: 0n, timestamps: new Set() },
});

export const otherKind = (kind: ImportedKind): ImportedKind => (kind === "account" ? "transfer" : "account");

/**
 * TigerBeetle's imported_event_timestamp_must_not_regress: an imported event's timestamp must come after every one of
 * its kind's, and be no other kind's.
 */
export const importRegresses = (state: LedgerState, kind: ImportedKind, timestamp: bigint): boolean => {
  const bounds = importedBounds(state);
  return timestamp <= bounds[kind].timestampMax || bounds[otherKind(kind)].timestamps.has(timestamp);
};

/** Whether an event carries the `imported` flag (`bit`: the account's or the transfer's); flags past u16 never do. */
export const isImported = (flags: number | undefined, bit: number): boolean =>
  flags !== undefined && isUint(flags, u16Max) && (flags & bit) !== 0;

/** Whether a request imports: TigerBeetle lets its first event decide for the whole request. */
export const importsEvents = (events: readonly { flags?: number }[], bit: number): boolean =>
  events.length > 0 && isImported(events[0]!.flags, bit);

/** The bounds an imported event is checked against; the writer must have read them (ImportedBounds). */
export function importedBounds(state: LedgerState): ImportedBounds {
  if (state.imported === null)
    throw new LedgerInvariantError(
      "an imported event reached the ledger's semantics without its bounds read",
    );
  return state.imported;
}

/**
 * An account or a transfer created at `timestamp`: the bounds move past it (when the batch has them), and a broken
 * linked chain moves them back.
 */
export function noteCreated(
  state: LedgerState,
  journal: Journal,
  kind: ImportedKind,
  timestamp: bigint,
): void {
  if (state.imported === null) return;
  const bounds = state.imported[kind];
  if (journal.inChain)
    journal.undo.push({ kind: "imported", of: kind, timestampMax: bounds.timestampMax, timestamp });
  if (timestamp > bounds.timestampMax) bounds.timestampMax = timestamp;
  bounds.timestamps.add(timestamp);
}

/** Undoes one noteCreated (rollback of a broken chain, last change first). */
export function undoNoted(state: LedgerState, entry: Extract<Undo, { kind: "imported" }>): void {
  if (state.imported === null) return;
  const bounds = state.imported[entry.of];
  bounds.timestampMax = entry.timestampMax;
  bounds.timestamps.delete(entry.timestamp);
}
