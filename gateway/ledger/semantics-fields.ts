// The semantics' checks of single fields, pure: ranges a u128/u64/u32/u16 field can hold, settlement evidence (valid,
// as stored, equal), and when a pending transfer expires.
import { isStorableText } from "../../core/text.ts";
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

/**
 * A timestamp the caller set on an event that is not imported (`importedFlag` clear in its flags): the ledger sets
 * it, and TigerBeetle answers timestamp_must_be_zero before anything else of the event.
 */
export const timestampGiven = (timestamp: bigint | undefined, flags: number, importedFlag: number): boolean =>
  timestamp !== undefined && timestamp !== 0n && !(isUint(flags, u16Max) && (flags & importedFlag) !== 0);

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
