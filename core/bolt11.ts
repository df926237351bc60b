// Reads a BOLT11 invoice without a round trip to LND: its structure and checksum, and the parts a payment needs
// before it is made (payment hash, amount, expiry; parseBolt11). The signature is not checked here: the Lightning
// rail reads the payee's key from it when it asks for a route (adapters/lightning/bolt11.ts), and LND checks it
// when it pays. The API reads an invoice with this where it enters, so a malformed one is refused as bad input
// before anything is routed. Where a field appears twice, the first counts, as in LND's decoder; a p, h or n field
// of another length than the specification's is skipped, as the specification says.

import { setBounded } from "./bounded.ts";
import { bareBolt11 } from "./destinations.ts";

export type Bolt11Summary = {
  readonly network: string; // "bc", "tb", "bcrt", ...
  readonly paymentHash: string; // hex
  /** null: the invoice leaves the amount to the payer. */
  readonly amountMsat: bigint | null;
  readonly timestampSeconds: number;
  readonly expirySeconds: number;
  /** The `h` field (hex): the SHA-256 of a description kept elsewhere (LNURL-pay's metadata); null when absent. */
  readonly descriptionHash: string | null;
};

export type Bolt11Error =
  | "invoice_malformed"
  | "invoice_checksum"
  | "invoice_no_payment_hash"
  /** readBolt11Payee: no key recovers from the signature, or it does not verify against the `n` field. */
  | "invoice_signature";

/** bech32's alphabet (exported with polymod and hrpExpand for the tests' encoder). */
export const charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
const invoiceLengthMax = 7089;
const signatureWords = 104;
const timestampWords = 7;
const defaultExpirySeconds = 3600;
/** The longest integer field LND reads (13 words; a longer one fails its decoder). */
const integerWordsMax = 13;
/** The tagged fields' types, as their bech32 characters number them. */
export const bolt11Fields = {
  paymentHash: 1,
  routeHint: 3,
  features: 5,
  expiry: 6,
  payeeKey: 19,
  descriptionHash: 23,
  finalCltv: 24,
};
const msatPerBtc = 100_000_000_000n;

export function polymod(values: readonly number[]): number {
  const generator = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
  let checksum = 1;
  for (const value of values) {
    const top = checksum >>> 25;
    checksum = ((checksum & 0x1ffffff) << 5) ^ value;
    for (let i = 0; i < 5; i += 1) if ((top >>> i) & 1) checksum ^= generator[i] as number;
  }
  return checksum;
}

export function hrpExpand(hrp: string): number[] {
  const high = [...hrp].map((c) => c.charCodeAt(0) >> 5);
  const low = [...hrp].map((c) => c.charCodeAt(0) & 31);
  return [...high, 0, ...low];
}

export function wordsToInt(words: readonly number[]): number {
  return words.reduce((value, word) => value * 32 + word, 0);
}

/** The words as bytes: leftover bits dropped, or with `padded`, the last byte completed with zero bits. */
export function wordsToBytes(words: readonly number[], padded = false): Buffer {
  const bytes: number[] = [];
  let accumulator = 0;
  let bits = 0;
  for (const word of words) {
    accumulator = (accumulator << 5) | word;
    bits += 5;
    while (bits >= 8) {
      bits -= 8;
      bytes.push((accumulator >> bits) & 0xff);
    }
    accumulator &= (1 << bits) - 1;
  }
  if (padded && bits > 0) bytes.push((accumulator << (8 - bits)) & 0xff);
  return Buffer.from(bytes);
}

const multipliers: Record<string, { numerator: bigint; denominator: bigint }> = {
  "": { numerator: msatPerBtc, denominator: 1n },
  m: { numerator: msatPerBtc, denominator: 1_000n },
  u: { numerator: msatPerBtc, denominator: 1_000_000n },
  n: { numerator: msatPerBtc, denominator: 1_000_000_000n },
  p: { numerator: msatPerBtc, denominator: 1_000_000_000_000n },
};

export type Bolt11Parts = {
  readonly hrp: string;
  readonly network: string;
  readonly amountMsat: bigint | null;
  /** The timestamp and tagged fields (what the signature signs, after the human-readable part). */
  readonly data: readonly number[];
  readonly signature: readonly number[];
  /** Each tagged field's words, the first of each type (a p, h or n of another length skipped). */
  readonly fields: ReadonlyMap<number, readonly number[]>;
  /** Every route hint, in order (the one field that may repeat). */
  readonly routeHints: readonly (readonly number[])[];
};

/** The lengths, in words, the specification gives a field of these types (another length: skipped). */
const fixedLengths: ReadonlyMap<number, number> = new Map([
  [bolt11Fields.paymentHash, 52],
  [bolt11Fields.descriptionHash, 52],
  [bolt11Fields.payeeKey, 53],
]);

type Bolt11Split = { ok: true; value: Bolt11Parts } | { ok: false; error: Bolt11Error };

/**
 * How many invoices' splits are kept, the latest. A payment's invoice is read by the API (its body), the router (the
 * route's fee: the payee's key) and the rail (the hash it journals), each once: the split is made once, not three
 * times (about 0.1 ms of a lone payout's path on cold caches by its profile, issue #19; too little for lone-out's
 * median to show). Bounded whatever the invoices sent.
 */
const splitsKept = 64;
const lightningPrefixLength = "lightning:".length;
const splits = new Map<string, Bolt11Split>();

/** The invoice's parts, or why it is none. Its parts are shared by every caller: read-only. */
export function splitBolt11(invoice: string): Bolt11Split {
  // Text past any invoice's length is refused each time, not kept.
  if (invoice.length > invoiceLengthMax + lightningPrefixLength) return splitInvoice(invoice);
  const kept = splits.get(invoice);
  if (kept !== undefined) return kept;
  const split = splitInvoice(invoice);
  setBounded(splits, invoice, split, splitsKept);
  return split;
}

function splitInvoice(invoice: string): Bolt11Split {
  const text = bareBolt11(invoice); // a lightning: prefix off, lower case; mixed case refused (BIP-173)
  if (text === null || text.length > invoiceLengthMax) return { ok: false, error: "invoice_malformed" };
  const separator = text.lastIndexOf("1");
  if (separator < 3) return { ok: false, error: "invoice_malformed" };
  const hrp = text.slice(0, separator);
  const words: number[] = [];
  for (const c of text.slice(separator + 1)) {
    const word = charset.indexOf(c);
    if (word < 0) return { ok: false, error: "invoice_malformed" };
    words.push(word);
  }
  if (words.length < timestampWords + signatureWords + 6) return { ok: false, error: "invoice_malformed" };
  if (polymod([...hrpExpand(hrp), ...words]) !== 1) return { ok: false, error: "invoice_checksum" };
  const match = /^ln(bcrt|bc|tbs|tb|sb)(\d+)?([munp])?$/.exec(hrp);
  if (match === null) return { ok: false, error: "invoice_malformed" };
  const [, network = "", digits, unit = ""] = match;
  let amountMsat: bigint | null = null;
  if (digits !== undefined) {
    const multiplier = multipliers[unit] as { numerator: bigint; denominator: bigint };
    const scaled = BigInt(digits) * multiplier.numerator;
    if (scaled % multiplier.denominator !== 0n) return { ok: false, error: "invoice_malformed" };
    amountMsat = scaled / multiplier.denominator;
  } else if (unit !== "") return { ok: false, error: "invoice_malformed" };

  const data = words.slice(0, words.length - 6 - signatureWords);
  const fields = new Map<number, number[]>();
  const routeHints: number[][] = [];
  for (let i = timestampWords; i + 3 <= data.length; ) {
    const type = data[i] as number;
    const length = (data[i + 1] as number) * 32 + (data[i + 2] as number);
    const value = data.slice(i + 3, i + 3 + length);
    if (value.length !== length) return { ok: false, error: "invoice_malformed" };
    if ((type === bolt11Fields.expiry || type === bolt11Fields.finalCltv) && length > integerWordsMax)
      return { ok: false, error: "invoice_malformed" };
    if (type === bolt11Fields.routeHint) routeHints.push(value);
    else if (!fields.has(type) && (fixedLengths.get(type) ?? length) === length) fields.set(type, value);
    i += 3 + length;
  }
  const signature = words.slice(words.length - 6 - signatureWords, words.length - 6);
  return { ok: true, value: { hrp, network, amountMsat, data, signature, fields, routeHints } };
}

/** What each refusal says of an invoice, after the name of the field that holds it. */
export const bolt11ErrorText: Readonly<Record<Bolt11Error, string>> = {
  invoice_malformed: "is not a BOLT11 invoice",
  invoice_checksum: "fails its bech32 checksum: a character was changed or lost",
  invoice_no_payment_hash: "names no payment hash",
  invoice_signature: "is not signed by the key it names, or by any key",
};

export function parseBolt11(
  invoice: string,
): { ok: true; value: Bolt11Summary } | { ok: false; error: Bolt11Error } {
  const parts = splitBolt11(invoice);
  if (!parts.ok) return parts;
  const { network, amountMsat, data, fields } = parts.value;
  const hash = fields.get(bolt11Fields.paymentHash);
  if (hash === undefined) return { ok: false, error: "invoice_no_payment_hash" };
  const expiry = fields.get(bolt11Fields.expiry);
  const descriptionHash = fields.get(bolt11Fields.descriptionHash);
  return {
    ok: true,
    value: {
      network,
      paymentHash: wordsToBytes(hash).subarray(0, 32).toString("hex"),
      amountMsat,
      timestampSeconds: wordsToInt(data.slice(0, timestampWords)),
      expirySeconds: expiry === undefined ? defaultExpirySeconds : wordsToInt(expiry),
      descriptionHash:
        descriptionHash === undefined ? null : wordsToBytes(descriptionHash).subarray(0, 32).toString("hex"),
    },
  };
}
