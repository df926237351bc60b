// Reads the parts of a BOLT11 invoice the rail needs before it pays (payment hash, amount, expiry)
// without a round trip to LND. The signature is not checked here: LND checks it when it pays.
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

export type Bolt11Error = "invoice_malformed" | "invoice_checksum" | "invoice_no_payment_hash";

const charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
const invoiceLengthMax = 7089;
const signatureWords = 104;
const timestampWords = 7;
const defaultExpirySeconds = 3600;
const msatPerBtc = 100_000_000_000n;

function polymod(values: readonly number[]): number {
  const generator = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
  let checksum = 1;
  for (const value of values) {
    const top = checksum >>> 25;
    checksum = ((checksum & 0x1ffffff) << 5) ^ value;
    for (let i = 0; i < 5; i += 1) if ((top >>> i) & 1) checksum ^= generator[i] as number;
  }
  return checksum;
}

function hrpExpand(hrp: string): number[] {
  const high = [...hrp].map((c) => c.charCodeAt(0) >> 5);
  const low = [...hrp].map((c) => c.charCodeAt(0) & 31);
  return [...high, 0, ...low];
}

function wordsToInt(words: readonly number[]): number {
  return words.reduce((value, word) => value * 32 + word, 0);
}

function wordsToBytes(words: readonly number[]): Buffer {
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
  return Buffer.from(bytes);
}

const multipliers: Record<string, { numerator: bigint; denominator: bigint }> = {
  "": { numerator: msatPerBtc, denominator: 1n },
  m: { numerator: msatPerBtc, denominator: 1_000n },
  u: { numerator: msatPerBtc, denominator: 1_000_000n },
  n: { numerator: msatPerBtc, denominator: 1_000_000_000n },
  p: { numerator: msatPerBtc, denominator: 1_000_000_000_000n },
};

export function parseBolt11(
  invoice: string,
): { ok: true; value: Bolt11Summary } | { ok: false; error: Bolt11Error } {
  if (invoice.length > invoiceLengthMax) return { ok: false, error: "invoice_malformed" };
  const text = invoice.toLowerCase().replace(/^lightning:/, "");
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
  const timestampSeconds = wordsToInt(data.slice(0, timestampWords));
  let paymentHash: string | null = null;
  let expirySeconds = defaultExpirySeconds;
  let descriptionHash: string | null = null;
  for (let i = timestampWords; i + 3 <= data.length; ) {
    const type = data[i] as number;
    const length = (data[i + 1] as number) * 32 + (data[i + 2] as number);
    const field = data.slice(i + 3, i + 3 + length);
    if (field.length !== length) return { ok: false, error: "invoice_malformed" };
    if (type === 1 && length === 52) paymentHash = wordsToBytes(field).subarray(0, 32).toString("hex");
    if (type === 6) expirySeconds = wordsToInt(field);
    if (type === 23 && length === 52) descriptionHash = wordsToBytes(field).subarray(0, 32).toString("hex");
    i += 3 + length;
  }
  if (paymentHash === null) return { ok: false, error: "invoice_no_payment_hash" };
  return {
    ok: true,
    value: { network, paymentHash, amountMsat, timestampSeconds, expirySeconds, descriptionHash },
  };
}
