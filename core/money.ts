// Money: integer minor units as bigint, an asset that names its scale, and every rounding by name.
// Decimal strings exist only at the edges (JSON, configuration); nothing here touches a float.

/** An asset is one ledger: a code, the number of decimals of its minor unit, and its ledger number. */
export type Asset = {
  readonly code: string;
  /** Decimals of one minor unit: USDC 6, USD 2, BTC on Lightning 11 (millisatoshi). */
  readonly scale: number;
  /** The ledger number that holds this asset's accounts (TigerBeetle's `ledger`, never 0). */
  readonly ledger: number;
};

export type ParseAmountError =
  | "amount_not_a_decimal" // not of the form 123 or 123.45
  | "amount_not_positive" // zero or negative where a payment needs more than zero
  | "amount_too_precise" // more decimals than the asset's scale
  | "amount_too_large"; // beyond amountMax

/** The largest amount the ledger stores: PostgreSQL `bigint`. */
export const amountMax = 2n ** 63n - 1n;

/** A sign is read only to refuse it: a negative decimal is a decimal, refused as not positive, as zero is. */
const decimalPattern = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?$/;
/** The longest text parseAmount reads as a decimal (the API's document says it of every amount). */
export const decimalDigitsMax = 40;

/**
 * Parses a decimal string in major units ("1.50" USD) into minor units (150n), exactly.
 * Refuses a plus sign, exponents, spaces, digits other than ASCII's and more decimals than the asset's scale:
 * nothing is rounded. A minus sign makes a decimal that is not positive, as zero is (amount_not_positive).
 */
export function parseAmount(
  text: string,
  asset: Pick<Asset, "scale">,
): { ok: true; value: bigint } | { ok: false; error: ParseAmountError } {
  if (text.length > decimalDigitsMax || !decimalPattern.test(text))
    return { ok: false, error: "amount_not_a_decimal" };
  if (text.startsWith("-")) return { ok: false, error: "amount_not_positive" };
  const [whole = "0", fraction = ""] = text.split(".");
  if (fraction.replace(/0+$/, "").length > asset.scale) return { ok: false, error: "amount_too_precise" };
  const value =
    BigInt(whole) * 10n ** BigInt(asset.scale) +
    BigInt(fraction.padEnd(asset.scale, "0").slice(0, asset.scale) || "0");
  if (value <= 0n) return { ok: false, error: "amount_not_positive" };
  if (value > amountMax) return { ok: false, error: "amount_too_large" };
  return { ok: true, value };
}

/** Formats minor units as a decimal string in major units with exactly `scale` decimals. */
export function formatAmount(value: bigint, asset: Pick<Asset, "scale">): string {
  const negative = value < 0n;
  const digits = (negative ? -value : value).toString().padStart(asset.scale + 1, "0");
  const whole = digits.slice(0, digits.length - asset.scale);
  const fraction = digits.slice(digits.length - asset.scale);
  return `${negative ? "-" : ""}${whole}${asset.scale > 0 ? `.${fraction}` : ""}`;
}

/** Floor division (towards minus infinity); bigint `/` truncates towards zero. */
export function divFloor(numerator: bigint, denominator: bigint): bigint {
  if (denominator === 0n) throw new RangeError("divFloor: division by zero");
  const quotient = numerator / denominator;
  return numerator % denominator !== 0n && numerator < 0n !== denominator < 0n ? quotient - 1n : quotient;
}

/**
 * Ceiling division (towards plus infinity). On the router's hot path, so the usual case (a non-negative amount
 * over a positive denominator) is one addition and one division; other signs take a division and a remainder.
 */
export function divCeil(numerator: bigint, denominator: bigint): bigint {
  if (numerator >= 0n && denominator > 0n) return (numerator + denominator - 1n) / denominator;
  if (denominator === 0n) throw new RangeError("divCeil: division by zero");
  const quotient = numerator / denominator;
  return numerator % denominator !== 0n && numerator < 0n === denominator < 0n ? quotient + 1n : quotient;
}

/** Division rounding half to even (banker's rounding). */
export function divHalfEven(numerator: bigint, denominator: bigint): bigint {
  const floor = divFloor(numerator, denominator);
  const twiceRemainder = 2n * (numerator - floor * denominator);
  const absDenominator = denominator < 0n ? -denominator : denominator;
  const absTwice = twiceRemainder < 0n ? -twiceRemainder : twiceRemainder;
  if (absTwice > absDenominator) return floor + 1n;
  if (absTwice < absDenominator) return floor;
  return floor % 2n === 0n ? floor : floor + 1n;
}

export const basisPointsTotal = 10_000n;

/** Parts per million: a proportional fee or spread of `ppm` is `amount × ppm / ppmTotal`. */
export const ppmTotal = 1_000_000n;

/**
 * Splits `amount` by basis points. Each share is floored; the remainder (less than the number of
 * recipients, in minor units) goes to the first recipient. The shares always sum to `amount`.
 */
export function splitByBasisPoints(amount: bigint, basisPoints: readonly number[]): bigint[] {
  const total = basisPoints.reduce((sum, bps) => sum + BigInt(bps), 0n);
  if (total !== basisPointsTotal)
    throw new RangeError(`splitByBasisPoints: basis points sum to ${total}, not 10000`);
  if (amount < 0n) throw new RangeError("splitByBasisPoints: negative amount");
  const shares = basisPoints.map((bps) => divFloor(amount * BigInt(bps), basisPointsTotal));
  const remainder = amount - shares.reduce((sum, share) => sum + share, 0n);
  shares[0] = (shares[0] ?? 0n) + remainder;
  return shares;
}

/** The assets this gateway keeps ledgers for. Ledger numbers are permanent: never renumber one. */
export const assets = {
  USDC: { code: "USDC", scale: 6, ledger: 1 },
  USD: { code: "USD", scale: 2, ledger: 2 },
  BTC: { code: "BTC", scale: 11, ledger: 3 }, // millisatoshi
  /**
   * An EVM chain's native token, in gwei (10⁻⁹ ETH): the gas the hot wallet pays, booked as it is paid. Not wei:
   * ledger amounts are 64-bit, and 2⁶³ wei is only 9.2 ETH. A fee in wei is booked rounded up to the gwei.
   */
  ETH: { code: "ETH", scale: 9, ledger: 4 },
} as const satisfies Record<string, Asset>;

export type AssetCode = keyof typeof assets;

export function assetByCode(code: string): Asset | null {
  return Object.hasOwn(assets, code) ? assets[code as AssetCode] : null;
}
