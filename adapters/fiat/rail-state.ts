// The fiat rail's one explicit state — its parameters, the event handler the settlement set, the refresh timer
// and what the last refresh saw — and the small checks its payouts, PaymentIntents and refunds share. The
// rail's modules (payouts.ts, intents.ts, refunds.ts, monitor.ts, delivery.ts) are functions of this state;
// rail.ts builds it and wires them. A module's function reads and writes the fields it names, when it runs.
import type Stripe from "stripe";
import type { Asset, Logger, RailEventHandler } from "../../core/index.ts";
import type { FiatFailure } from "./errors.ts";
import { type FiatFeeSchedule, fiatFee } from "./fees.ts";
import type { StripeObjectStore } from "./store.ts";
import {
  type FiatHealth,
  type FiatRailParams,
  type FiatRequestFailure,
  switchyardIdLengthMax,
} from "./types.ts";

export type FiatRailState = {
  readonly id: string;
  readonly params: FiatRailParams;
  readonly stripe: Stripe;
  readonly store: StripeObjectStore;
  readonly asset: Asset;
  readonly feeSchedule: FiatFeeSchedule;
  /** The asset's code in lower case, as Stripe writes currencies ("usd"). */
  readonly currency: string;
  readonly nowMs: () => number;
  readonly logger: Logger;
  readonly refreshMs: number;
  /** The settlement's handler (onEvent); null until it is set. */
  handler: RailEventHandler | null;
  started: boolean;
  timer: NodeJS.Timeout | null;
  /** The pass that asks Stripe again for the fees it refused to tell (delivery.ts bookParkedFees), while started. */
  feeTimer: NodeJS.Timeout | null;
  /**
   * That pass running now, which stop() waits for (a tick that finds it running is skipped): it ends at the fee it is
   * asking when the rail stops (`started` false).
   */
  feePass: Promise<void> | null;
  /** Refunds' fees being booked after their refund's answer (refunds.ts bookRefundFee), which stop() waits for. */
  readonly feeBookings: Set<Promise<void>>;
  /** Stripe's available balance in the rail's currency at the last refresh; null before the first success. */
  availableBalance: bigint | null;
  health: FiatHealth;
};

const idPattern = /^[A-Za-z0-9_.:-]+$/;
export const connectedAccountPattern = /^acct_[A-Za-z0-9]{1,100}$/;

export function checkId(name: string, value: string): FiatRequestFailure | null {
  if (value.length === 0 || value.length > switchyardIdLengthMax || !idPattern.test(value))
    return {
      code: "invalid_id",
      message: `${name} must be 1 to ${switchyardIdLengthMax} characters of A-Z a-z 0-9 _ . : -`,
      retryElsewhere: false,
    };
  return null;
}

export function failureOf(failure: FiatFailure): FiatRequestFailure {
  return { code: failure.code, message: failure.message, retryElsewhere: failure.retryElsewhere };
}

/** The amount is outside the fee schedule's range: below_minimum or above_maximum; null when it is inside. */
export function amountFailure(state: FiatRailState, amount: bigint): FiatRequestFailure | null {
  const { feeSchedule, asset } = state;
  const quote = fiatFee(feeSchedule, amount);
  if (quote.ok) return null;
  return {
    code: quote.error,
    message: `amount ${amount} is outside ${feeSchedule.amountMin}..${feeSchedule.amountMax} ${asset.code} minor units`,
    retryElsewhere: true,
  };
}
