// What a transaction of ours carried of a payer's signed authorization, for reconciliation to submit it again alone
// (reconcile.ts resubmit): the gateway keeps no signature (x402_authorizations), and the one it sent is in the
// transaction's input — transferWithAuthorization's own arguments, or an item of X402BatchSettler.settle's packed
// items (adapters/evm x402-batch.ts packAuthorizations: from | value | validAfter | validBefore | nonce | r | s | v).
import {
  concatHex,
  decodeFunctionData,
  type Hex,
  hexToBigInt,
  isAddressEqual,
  parseAbi,
  size,
  sliceHex,
} from "viem";
import { eip3009Abi } from "./chains.ts";
import type { Eip3009Authorization } from "./verify.ts";

/** What the payer signed beside the row's terms: its window's start and end, and the 65-byte signature (r | s | v). */
export type SignedTerms = {
  readonly validAfter: bigint;
  readonly validBefore: bigint;
  readonly signature: Hex;
};

const batchSettleAbi = parseAbi(["function settle(address token, address to, bytes items)"]);
/** X402BatchSettler's ITEM_BYTES. */
const batchItemBytes = 145;

/**
 * The signed terms of the authorization (payer, nonce) as transaction `input` of ours carried them to the token or to
 * the batch settler; null when it carried none of them (another call, or another authorization).
 */
export function signedTermsIn(
  input: Hex,
  a: Pick<Eip3009Authorization, "from" | "nonce">,
): SignedTerms | null {
  const same = (from: Hex, nonce: Hex) =>
    isAddressEqual(from, a.from) && nonce.toLowerCase() === a.nonce.toLowerCase();
  const single = decoded(() => decodeFunctionData({ abi: eip3009Abi, data: input }));
  if (single?.functionName === "transferWithAuthorization") {
    const [from, , , validAfter, validBefore, nonce, v, r, s] = single.args;
    if (!same(from, nonce)) return null;
    return { validAfter, validBefore, signature: concatHex([r, s, `0x${v.toString(16).padStart(2, "0")}`]) };
  }
  const batch = decoded(() => decodeFunctionData({ abi: batchSettleAbi, data: input }));
  if (batch === null) return null;
  const items = batch.args[2];
  for (let at = 0; at + batchItemBytes <= size(items); at += batchItemBytes) {
    const field = (from: number, to: number) => sliceHex(items, at + from, at + to, { strict: true });
    if (!same(field(0, 20), field(48, 80))) continue;
    return {
      validAfter: hexToBigInt(field(36, 42)),
      validBefore: hexToBigInt(field(42, 48)),
      signature: concatHex([field(80, 112), field(112, 144), field(144, 145)]),
    };
  }
  return null;
}

/** The decoded call, or null for an input of another function (viem throws on a selector not in the ABI). */
function decoded<T>(decode: () => T): T | null {
  try {
    return decode();
  } catch {
    return null;
  }
}
