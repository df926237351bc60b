// USD prices as exact rationals. A price arrives as a whole number of 10^-decimals USD per whole unit of an
// asset (a Chainlink answer, or a decimal string from an HTTP source); the router wants USD micro-units per
// minor unit of the asset. Nothing here rounds: the rate is the exact fraction, reduced.

import type { UsdRate } from "../../core/index.ts";
import { assetByCode } from "../../core/index.ts";

/** A USD price per whole unit as an integer and its decimals: 3000.25 is { units: 300025n, decimals: 2 }. */
export type ScaledPrice = { readonly units: bigint; readonly decimals: number };

/** The most digits before the decimal point a price may have (a quadrillion USD per unit is already absurd). */
export const priceIntegerDigitsMax = 18;
/** The most digits after the decimal point a price may have (Chainlink's feeds use 8 or 18). */
export const priceDecimalsMax = 36;

const usdPerMicroUsd = 1_000_000n;
const decimalPattern = /^(\d+)(?:\.(\d+))?$/;

/**
 * Parses a USD price written as a plain decimal string ("100000.00", "3000", "0.9998"): digits, an optional
 * point and digits, nothing else (no sign, exponent or spaces; a JSON number is not a string and never gets
 * here). Null when malformed, zero, or longer than the maxima.
 */
export function parsePriceDecimal(text: string): ScaledPrice | null {
  const match = decimalPattern.exec(text);
  if (match === null) return null;
  const whole = match[1]!.replace(/^0+(?=\d)/, "");
  const fraction = match[2] ?? "";
  if (whole.length > priceIntegerDigitsMax || fraction.length > priceDecimalsMax) return null;
  const units = BigInt(whole + fraction);
  if (units <= 0n) return null;
  return { units, decimals: fraction.length };
}

/**
 * The USD rate of one minor unit of an asset of `assetScale` decimals, from a price per whole unit:
 * price × 10^6 µUSD ÷ 10^assetScale minor units, as the reduced fraction. Null for a price ≤ 0 or decimals
 * outside [0, priceDecimalsMax].
 */
export function usdRateFromPrice(price: ScaledPrice, assetScale: number): UsdRate | null {
  if (price.units <= 0n) return null;
  if (!Number.isInteger(price.decimals) || price.decimals < 0 || price.decimals > priceDecimalsMax)
    return null;
  if (!Number.isInteger(assetScale) || assetScale < 0) return null;
  return reduceRate(price.units * usdPerMicroUsd, 10n ** BigInt(price.decimals + assetScale));
}

/** The rate of `assetCode` (one of core's assets) from a price per whole unit; null for an unknown asset. */
export function usdRateForAsset(assetCode: string, price: ScaledPrice): UsdRate | null {
  const asset = assetByCode(assetCode);
  return asset === null ? null : usdRateFromPrice(price, asset.scale);
}

/** microUsd / perMinorUnits in lowest terms (both positive). */
export function reduceRate(microUsd: bigint, perMinorUnits: bigint): UsdRate {
  let a = microUsd;
  let b = perMinorUnits;
  while (b !== 0n) [a, b] = [b, a % b];
  return { microUsd: microUsd / a, perMinorUnits: perMinorUnits / a };
}

/**
 * A decimal USD price as the integer answer of a feed with `decimals` decimals: "3100.25" at 8 decimals is
 * 310025000000n. Null when malformed or when it has more decimals than the feed (nothing is rounded).
 */
export function priceToAnswer(text: string, decimals: number): bigint | null {
  const price = parsePriceDecimal(text);
  if (price === null || price.decimals > decimals) return null;
  return price.units * 10n ** BigInt(decimals - price.decimals);
}
