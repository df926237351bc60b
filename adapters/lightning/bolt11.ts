// The parts of a BOLT11 invoice a route query needs (readBolt11Payee: the payee's node key, recovered from the
// signature with libsecp256k1 or checked against the `n` field, its final CLTV delta, route hints and feature
// bits), and the invoice network of LND's chain. Asking LND's DecodePayReq for these took 2.4 ms (median, LND idle
// on regtest) of every outbound payment's time before the send; this takes about a tenth of that. The structure,
// checksum, payment hash and amount are read by core/bolt11.ts.
import { createHash } from "node:crypto";
import {
  type Bolt11Error,
  type Bolt11Parts,
  bolt11Fields,
  splitBolt11,
  wordsToBytes,
  wordsToInt,
} from "../../core/bolt11.ts";
import { secp256k1 } from "../../core/secp256k1.ts";

const defaultFinalCltvDelta = 18;
const hopHintBytes = 51;
/** LND keeps a final CLTV delta in 16 bits. */
const finalCltvDeltaMax = 0xffff;

/** One hop of an invoice's route hint (an `r` field): the channel from `nodeId` towards the payee. */
export type Bolt11HopHint = {
  readonly nodeId: string; // hex, 33 bytes
  readonly shortChannelId: bigint;
  readonly feeBaseMsat: bigint;
  readonly feeProportionalMillionths: number;
  readonly cltvExpiryDelta: number;
};

/** What a route query to an invoice's payee needs. */
export type Bolt11Payee = {
  readonly network: string;
  readonly nodeId: string; // hex, 33 bytes
  /** The `c` field, 18 when absent. */
  readonly finalCltvDelta: number;
  /** One list of hops per `r` field, in the invoice's order (each ends at the payee). */
  readonly routeHints: readonly (readonly Bolt11HopHint[])[];
  /** The `9` field's set bits, ascending. */
  readonly featureBits: readonly number[];
};

/**
 * The payee's node key: the `n` field's when present (the signature must verify against it), else recovered.
 * BOLT 11, reader, as lightning/bolts#1284 states it (with #1298's test vector, a high-S signature and an `n` field,
 * refused): "if a valid `n` field is provided: MUST use the `n` field to validate the signature instead of
 * performing signature recovery. [...] the signature MUST be normalized lower-S form", while recovery (no `n`)
 * accepts a high S as well as a low one. libsecp256k1 does exactly that: its verify refuses a high S and its
 * recovery takes either, so s is not normalized here (which would accept what the specification refuses).
 */
function payeeKey(parts: Bolt11Parts): string | null {
  const signature = wordsToBytes(parts.signature);
  const compact = signature.subarray(0, 64);
  const recid = signature[64] as number;
  const digest = createHash("sha256")
    .update(Buffer.from(parts.hrp, "utf8"))
    .update(wordsToBytes(parts.data, true)) // BOLT11 signs the data zero-padded to whole bytes
    .digest();
  const stated = parts.fields.get(bolt11Fields.payeeKey);
  try {
    if (stated !== undefined) {
      const key = wordsToBytes(stated).subarray(0, 33);
      // libsecp256k1 verifies only a low-S signature, as the specification asks when the key is stated.
      return secp256k1.ecdsaVerify(compact, digest, key) ? key.toString("hex") : null;
    }
    if (recid > 3) return null;
    return Buffer.from(secp256k1.ecdsaRecover(compact, recid, digest, true)).toString("hex");
  } catch {
    return null; // r or s out of range, no point for r, a stated key that is no point
  }
}

function hopHints(words: readonly number[]): Bolt11HopHint[] | null {
  const bytes = wordsToBytes(words);
  if (bytes.length % hopHintBytes !== 0) return null;
  const hops: Bolt11HopHint[] = [];
  for (let at = 0; at < bytes.length; at += hopHintBytes) {
    const hop = bytes.subarray(at, at + hopHintBytes);
    if (!secp256k1.publicKeyVerify(hop.subarray(0, 33))) return null; // LND refuses a hint to no point
    hops.push({
      nodeId: hop.subarray(0, 33).toString("hex"),
      shortChannelId: hop.readBigUInt64BE(33),
      feeBaseMsat: BigInt(hop.readUInt32BE(41)),
      feeProportionalMillionths: hop.readUInt32BE(45),
      cltvExpiryDelta: hop.readUInt16BE(49),
    });
  }
  return hops;
}

/** The set bits of a feature field: bit 0 is the last word's lowest. */
function featureBits(words: readonly number[]): number[] {
  const bits: number[] = [];
  for (let i = words.length - 1; i >= 0; i -= 1)
    for (let bit = 0; bit < 5; bit += 1)
      if (((words[i] as number) >> bit) & 1) bits.push((words.length - 1 - i) * 5 + bit);
  return bits;
}

/**
 * The payee of an invoice and what a route to it must know. `invoice_signature` when its signature names no key
 * (or not the stated one); a route hint that is not whole hops or names no point, and a final CLTV delta above 16
 * bits, are `invoice_malformed`. A stated key's signature must be low S (libsecp256k1's rule, and the
 * specification's); LND itself would accept a high S there, which no libsecp256k1 signer makes. Without a stated
 * key, a high-S signature recovers its signer like a low-S one (the specification's rule too).
 */
export function readBolt11Payee(
  invoice: string,
): { ok: true; value: Bolt11Payee } | { ok: false; error: Bolt11Error } {
  const parts = splitBolt11(invoice);
  if (!parts.ok) return parts;
  const nodeId = payeeKey(parts.value);
  if (nodeId === null) return { ok: false, error: "invoice_signature" };
  const routeHints: Bolt11HopHint[][] = [];
  for (const words of parts.value.routeHints) {
    const hops = hopHints(words);
    if (hops === null) return { ok: false, error: "invoice_malformed" };
    if (hops.length > 0) routeHints.push(hops);
  }
  const cltv = parts.value.fields.get(bolt11Fields.finalCltv);
  const finalCltvDelta = cltv === undefined ? defaultFinalCltvDelta : wordsToInt(cltv);
  if (finalCltvDelta > finalCltvDeltaMax) return { ok: false, error: "invoice_malformed" };
  const features = parts.value.fields.get(bolt11Fields.features);
  return {
    ok: true,
    value: {
      network: parts.value.network,
      nodeId,
      finalCltvDelta,
      routeHints,
      featureBits: features === undefined ? [] : featureBits(features),
    },
  };
}

/**
 * The BOLT11 network of the chains LND reports (getWalletInfo's `chains`: the genesis block's hash, its bytes in
 * the order `lightning` gives them, the reverse of how block explorers write it), or null for a chain not listed
 * here (its invoices are then decoded by LND).
 */
export function invoiceNetworkOf(chains: readonly string[]): string | null {
  const [chain] = chains;
  return chains.length === 1 && chain !== undefined ? (invoiceNetworks.get(chain) ?? null) : null;
}

const invoiceNetworks: ReadonlyMap<string, string> = new Map([
  ["6fe28c0ab6f1b372c1a6a246ae63f74f931e8365e15a089c68d6190000000000", "bc"], // mainnet
  ["43497fd7f826957108f4a30fd9cec3aeba79972084e90ead01ea330900000000", "tb"], // testnet3
  ["43f08bdab050e35b567c864b91f47f50ae725ae2de53bcfbbaf284da00000000", "tb"], // testnet4
  ["f61eee3b63a380a477a063af32b2bbc97c9ff9f01f2c4225e973988108000000", "tbs"], // signet
  ["06226e46111a0b59caaf126043eb5bbf28c34f3a5e332a1fc7b2b73cf188910f", "bcrt"], // regtest
]);
