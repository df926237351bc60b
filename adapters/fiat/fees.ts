// The fiat rail's fee schedule: a percentage plus a fixed part, with a minimum charge, all configurable.
// Fees we pay the PSP (and pass on) round up: a fraction of a cent is a whole cent.
import { divCeil, ppmTotal } from "../../core/index.ts";

/** Amounts in the rail's asset (USD cents). */
export type FiatFeeSchedule = {
  /** Proportional part in parts per million of the amount: 2.9 % is 29_000. */
  readonly feePpm: bigint;
  /** Fixed part per charge or transfer. */
  readonly feeFixed: bigint;
  /** The smallest amount the PSP takes in one charge (Stripe: $0.50 for USD). */
  readonly amountMin: bigint;
  /** The largest amount in one charge (Stripe: $999,999.99 for USD). */
  readonly amountMax: bigint;
};

/** Stripe's published card pricing for US cards: 2.9 % + 30 ¢, at least 50 ¢ per charge. */
export const defaultFiatFeeSchedule: FiatFeeSchedule = {
  feePpm: 29_000n,
  feeFixed: 30n,
  amountMin: 50n,
  amountMax: 99_999_999n,
};

export type FeeScheduleError =
  | "fee_ppm_out_of_range"
  | "fee_fixed_negative"
  | "amount_min_not_positive"
  | "amount_max_below_min";

export function validateFeeSchedule(schedule: FiatFeeSchedule): FeeScheduleError | null {
  if (schedule.feePpm < 0n || schedule.feePpm >= ppmTotal) return "fee_ppm_out_of_range";
  if (schedule.feeFixed < 0n) return "fee_fixed_negative";
  if (schedule.amountMin <= 0n) return "amount_min_not_positive";
  if (schedule.amountMax < schedule.amountMin) return "amount_max_below_min";
  return null;
}

export type FiatFeeQuote =
  | { ok: true; fee: bigint }
  | { ok: false; error: "below_minimum" | "above_maximum"; amountMin: bigint; amountMax: bigint };

/**
 * The fee for one charge of `amount` minor units: feeFixed + ceil(amount × feePpm / 1_000_000).
 * Rounding: ceiling (`divCeil`), the fee is never under-counted. Amounts outside [amountMin, amountMax]
 * are refused, not priced.
 */
export function fiatFee(schedule: FiatFeeSchedule, amount: bigint): FiatFeeQuote {
  if (amount < schedule.amountMin)
    return {
      ok: false,
      error: "below_minimum",
      amountMin: schedule.amountMin,
      amountMax: schedule.amountMax,
    };
  if (amount > schedule.amountMax)
    return {
      ok: false,
      error: "above_maximum",
      amountMin: schedule.amountMin,
      amountMax: schedule.amountMax,
    };
  return { ok: true, fee: schedule.feeFixed + divCeil(amount * schedule.feePpm, ppmTotal) };
}
