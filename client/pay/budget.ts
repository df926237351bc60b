// A total budget per asset, in the asset's minor units (bigint, never a float). A payment reserves its amount
// before the payer signs or pays, synchronously — check and decrement happen in one turn of the event loop, so
// concurrent requests under one budget cannot together spend more than it holds. A reservation is either kept
// (`commit`, possibly for less: a Lightning fee below its maximum) or given back (`release`: the payer failed
// and nothing left the wallet).
import { SwitchyardError } from "../../core/errors.ts";
import { BudgetExceededError } from "./errors.ts";

export type Reservation = {
  readonly asset: string;
  readonly amount: bigint;
  /** Keeps `spent` (at most the amount reserved) and gives the rest back. */
  commit(spent?: bigint): void;
  /** Gives the whole reservation back. */
  release(): void;
};

export type Budget = {
  /** What is left for `asset`: 0 for an asset the budget does not name. */
  remaining(asset: string): bigint;
  /** Reserves `amount` of `asset`, or throws BudgetExceededError and reserves nothing. */
  reserve(asset: string, amount: bigint): Reservation;
};

/**
 * A budget of `totals`: asset id → minor units (`x402AssetId(network, address)`, `lightningAssetId(network)`).
 * An asset absent from `totals` has no budget: paying in it is refused.
 */
export function createBudget(totals: Readonly<Record<string, bigint>>): Budget {
  const left = new Map<string, bigint>();
  for (const [asset, amount] of Object.entries(totals)) {
    if (typeof amount !== "bigint" || amount < 0n)
      throw new SwitchyardError(`The budget for ${asset} must be a non-negative bigint`);
    left.set(asset, amount);
  }
  const remaining = (asset: string) => left.get(asset) ?? 0n;
  return {
    remaining,
    reserve(asset, amount) {
      if (amount < 0n) throw new SwitchyardError("A reservation is a non-negative amount");
      const before = remaining(asset);
      if (amount > before) throw new BudgetExceededError({ asset, amount, remaining: before });
      left.set(asset, before - amount);
      let open = true;
      const giveBack = (back: bigint) => {
        if (!open) throw new SwitchyardError("This reservation was already committed or released");
        open = false;
        if (back > 0n) left.set(asset, remaining(asset) + back);
      };
      return {
        asset,
        amount,
        commit(spent = amount) {
          if (spent < 0n || spent > amount)
            throw new SwitchyardError(`Spent ${spent} is outside the reservation of ${amount}`);
          giveBack(amount - spent);
        },
        release() {
          giveBack(amount);
        },
      };
    },
  };
}

/** A reservation against no budget (none configured): the per-request limits alone apply. */
export function unlimitedReservation(asset: string, amount: bigint): Reservation {
  return { asset, amount, commit() {}, release() {} };
}
