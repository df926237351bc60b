// What must agree with RevenueSplitter bit for bit: its limits, a split's id and canonical order, a batch's hash,
// and the bytes32 references that carry gateway ids on chain (test/contracts checks each against the contract).
import { type Address, encodeAbiParameters, type Hex, hexToString, keccak256, stringToHex } from "viem";
import type { SplitDefinition } from "../../core/index.ts";

/** RevenueSplitter.RECIPIENTS_MAX: the gas reason is written in contracts/RevenueSplitter.sol. */
export const splitRecipientsMax = 300;
/** RevenueSplitter.SETTLE_BATCH_PAYEES_MAX. */
export const settleBatchPayeesMax = 500;

/** A split as the contract wants it (defined in core/, where the watcher's events carry it). */
export type { SplitDefinition };

/** The split's id, exactly as RevenueSplitter.splitIdOf: keccak256(abi.encode(address[], uint16[])). */
export function splitIdOf(recipients: readonly Address[], basisPoints: readonly number[]): Hex {
  return keccak256(
    encodeAbiParameters(
      [{ type: "address[]" }, { type: "uint16[]" }],
      [recipients as Address[], basisPoints as number[]],
    ),
  );
}

/** Orders a split's recipients ascending (as the contract requires), keeping each share with its recipient. */
export function canonicalSplit(split: SplitDefinition): SplitDefinition {
  if (split.recipients.length !== split.basisPoints.length) {
    throw new RangeError("canonicalSplit: recipients and basisPoints differ in length");
  }
  const pairs = split.recipients.map((recipient, i) => ({ recipient, bps: split.basisPoints[i]! }));
  pairs.sort((a, b) => {
    const x = BigInt(a.recipient);
    const y = BigInt(b.recipient);
    return x < y ? -1 : x > y ? 1 : 0;
  });
  return { recipients: pairs.map((p) => p.recipient), basisPoints: pairs.map((p) => p.bps) };
}

/** BatchSettled's batchHash, as RevenueSplitter.batchHashOf: keccak256(abi.encode(address[], uint256[])). */
export function batchHashOf(payees: readonly Address[], amounts: readonly bigint[]): Hex {
  return keccak256(
    encodeAbiParameters(
      [{ type: "address[]" }, { type: "uint256[]" }],
      [payees as Address[], amounts as bigint[]],
    ),
  );
}

/** Longest text that fits a bytes32 reference. */
export const referenceTextBytesMax = 32;

/** A bytes32 reference holding a gateway id (UTF-8, right-padded with zeros); reversible. */
export function referenceFromId(id: string): Hex {
  if (Buffer.byteLength(id, "utf8") > referenceTextBytesMax) {
    throw new RangeError(`referenceFromId: "${id}" is longer than ${referenceTextBytesMax} bytes`);
  }
  return stringToHex(id, { size: 32 });
}

/** The id a reference made by referenceFromId holds. */
export function idFromReference(ref: Hex): string {
  return hexToString(ref, { size: 32 });
}
