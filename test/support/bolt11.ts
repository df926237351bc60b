// Signs BOLT11 invoices for tests: any fields, any key, any network — what a wallet or a forger could hand the
// rail, including what LND's own createInvoice would never make (route hints to a private node that does not
// exist, a stated payee key, a field twice, a signature by someone else, a high-S signature).
import { createHash } from "node:crypto";
import { charset, hrpExpand, polymod } from "../../core/bolt11.ts";
import { secp256k1 } from "../../core/secp256k1.ts";

/** Tagged field types, by their bech32 characters. */
export const bolt11Field = {
  paymentHash: 1,
  routeHint: 3,
  features: 5,
  expiry: 6,
  description: 13,
  paymentSecret: 16,
  payeeKey: 19,
  descriptionHash: 23,
  finalCltv: 24,
} as const;

/** Bytes as 5-bit words, the last padded with zero bits. */
export function bytesToWords(bytes: Uint8Array): number[] {
  const words: number[] = [];
  let accumulator = 0;
  let bits = 0;
  for (const byte of bytes) {
    accumulator = ((accumulator << 8) | byte) & 0xfff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      words.push((accumulator >> bits) & 31);
    }
  }
  if (bits > 0) words.push((accumulator << (5 - bits)) & 31);
  return words;
}

/** A non-negative integer as the fewest words (at least `length`). */
export function intToWords(value: number, length = 1): number[] {
  const words: number[] = [];
  for (let rest = value; rest > 0; rest = Math.floor(rest / 32)) words.unshift(rest % 32);
  while (words.length < length) words.unshift(0);
  return words;
}

export const featureWords = (bits: readonly number[]): number[] => {
  const length = Math.floor(Math.max(...bits) / 5) + 1;
  const words = new Array<number>(length).fill(0);
  for (const bit of bits) {
    const at = length - 1 - Math.floor(bit / 5);
    words[at] = (words[at] as number) | (1 << (bit % 5));
  }
  return words;
};

export type HopHint = {
  nodeId: string;
  shortChannelId: bigint;
  feeBaseMsat: number;
  feeProportionalMillionths: number;
  cltvExpiryDelta: number;
};

export function hopHintWords(hops: readonly HopHint[]): number[] {
  const bytes = Buffer.alloc(51 * hops.length);
  hops.forEach((hop, i) => {
    const at = 51 * i;
    Buffer.from(hop.nodeId, "hex").copy(bytes, at);
    bytes.writeBigUInt64BE(hop.shortChannelId, at + 33);
    bytes.writeUInt32BE(hop.feeBaseMsat, at + 41);
    bytes.writeUInt32BE(hop.feeProportionalMillionths, at + 45);
    bytes.writeUInt16BE(hop.cltvExpiryDelta, at + 49);
  });
  return bytesToWords(bytes);
}

export const publicKeyOf = (privateKey: Buffer): string =>
  Buffer.from(secp256k1.publicKeyCreate(privateKey, true)).toString("hex");

/** secp256k1's group order n. */
const curveOrder = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

/**
 * The same signature with s replaced by n − s (high S when libsecp256k1 signed it low), and the recovery id's
 * parity flipped: the other signature of the same key over the same message, which recovers to the same key.
 */
function highS(signature: Uint8Array, recid: number): { signature: Buffer; recid: number } {
  const s = BigInt(`0x${Buffer.from(signature.subarray(32, 64)).toString("hex")}`);
  const flipped = Buffer.from((curveOrder - s).toString(16).padStart(64, "0"), "hex");
  return { signature: Buffer.concat([signature.subarray(0, 32), flipped]), recid: recid ^ 1 };
}

/**
 * An invoice `ln<network><amount>1…` with these fields in this order, signed by `privateKey` (low S, as
 * libsecp256k1 signs; with `highS`, the same signature with s replaced by n − s). `amount` is the human-readable
 * part's amount ("10u", "" for none).
 */
export function signBolt11(params: {
  network: string;
  amount: string;
  timestampSeconds: number;
  fields: readonly (readonly [type: number, words: readonly number[]])[];
  privateKey: Buffer;
  highS?: boolean;
}): string {
  const hrp = `ln${params.network}${params.amount}`;
  const data = [...intToWords(params.timestampSeconds, 7)];
  for (const [type, words] of params.fields) data.push(type, words.length >> 5, words.length & 31, ...words);
  const bits = data.length * 5;
  const bytes = Buffer.alloc(Math.ceil(bits / 8));
  let at = 0;
  for (const word of data)
    for (let bit = 4; bit >= 0; bit -= 1, at += 1)
      if ((word >> bit) & 1) bytes[at >> 3] = (bytes[at >> 3] as number) | (0x80 >> (at & 7));
  const digest = createHash("sha256").update(Buffer.from(hrp, "utf8")).update(bytes).digest();
  const signed = secp256k1.ecdsaSign(digest, params.privateKey);
  const { signature, recid } = params.highS === true ? highS(signed.signature, signed.recid) : signed;
  const words = [...data, ...bytesToWords(Buffer.concat([signature, Buffer.from([recid])]))];
  const values = [...hrpExpand(hrp), ...words, 0, 0, 0, 0, 0, 0];
  const checksum = polymod(values) ^ 1;
  for (let i = 0; i < 6; i += 1) words.push((checksum >> (5 * (5 - i))) & 31);
  return `${hrp}1${words.map((word) => charset[word]).join("")}`;
}

/**
 * A well-formed, signed invoice to nobody in particular (regtest unless `network` says otherwise), for tests that
 * need the API to take an invoice as one and refuse the request for another reason.
 */
export function wellFormedInvoice(
  params: { network?: string; amount?: string; hashByte?: number } = {},
): string {
  return signBolt11({
    network: params.network ?? "bcrt",
    amount: params.amount ?? "10n",
    timestampSeconds: 1_700_000_000,
    fields: [[bolt11Field.paymentHash, bytesToWords(Buffer.alloc(32, params.hashByte ?? 1))]],
    privateKey: Buffer.alloc(32, 7),
  });
}
