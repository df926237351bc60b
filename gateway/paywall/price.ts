// A paywall's price in each scheme's asset, at a rate locked for a window of time. The first challenge in a window
// converts at the feed's mid rate (no spread: the tenant names the price) rounded up to the scheme's minor unit
// (the seller never gets less than the price), and stores the amount; every challenge and every paid retry in
// that window, in this process or another, reads the same amount, so an x402 v2 client's echoed `accepted` matches
// the requirements rebuilt for it by deep equality. A retry is checked against its window and the one before.
import { type Asset, amountMax, divCeil, setBounded } from "../../core/index.ts";
import type { Sql } from "../db/index.ts";
import type { RateSource } from "../router/index.ts";
import type { Paywall } from "./paywalls.ts";

/** How long a locked rate is offered: a challenge stays payable for one to two windows. */
export const rateLockWindowMsDefault = 60_000;
/** How many (paywall, window) price sets a process remembers. */
export const priceLocksCachedMax = 10_000;

/** `amount` of `from` in `to`'s minor units at the mid rate, rounded up; null without a rate for either. */
export function convertPrice(
  rates: Pick<RateSource, "usdRate">,
  params: { amount: bigint; from: Asset; to: Asset },
): bigint | null {
  if (params.from.code === params.to.code) return params.amount;
  const from = rates.usdRate(params.from.code);
  const to = rates.usdRate(params.to.code);
  if (from === null || to === null || to.microUsd <= 0n || from.perMinorUnits <= 0n) return null;
  return divCeil(params.amount * from.microUsd * to.perMinorUnits, from.perMinorUnits * to.microUsd);
}

export type PriceLocks = {
  /** The paywall's price in each of `assets` for the window now, locking it when none is; an asset without a rate is left out. */
  current(paywall: Paywall, assets: readonly Asset[]): Promise<ReadonlyMap<string, bigint>>;
  /** The prices locked in the window before this one (those that differ from a converted-free price), or null. */
  previous(paywall: Paywall): Promise<ReadonlyMap<string, bigint> | null>;
};

export function createPriceLocks(deps: {
  sql: Sql;
  rates: Pick<RateSource, "usdRate">;
  nowMs: () => number;
  windowMs?: number;
  /** How many (paywall, window) price sets are remembered (default priceLocksCachedMax). */
  cachedMax?: number;
}): PriceLocks {
  const windowMs = deps.windowMs ?? rateLockWindowMsDefault;
  const cachedMax = deps.cachedMax ?? priceLocksCachedMax;
  const cached = new Map<string, Map<string, bigint>>();
  const keyOf = (paywall: Paywall, windowStartMs: number) =>
    `${paywall.id}:${paywall.updatedAt.getTime()}:${windowStartMs}`;

  function remember(key: string, prices: Map<string, bigint>): void {
    setBounded(cached, key, prices, cachedMax);
  }

  // A lock is of the paywall's version it was converted from (migration 0044): one a process not yet told of a
  // price change makes is never read as the new price's.
  async function stored(paywall: Paywall, windowStartMs: number): Promise<Map<string, bigint>> {
    const rows = await deps.sql.query<{ asset: string; amount: bigint | string }>(
      `SELECT asset, amount FROM paywall_rate_locks
        WHERE paywall_id = $1 AND paywall_updated_at = $2 AND window_start_ms = $3`,
      [paywall.id, paywall.updatedAt.toISOString(), windowStartMs],
    );
    return new Map(rows.map((row) => [row.asset, BigInt(row.amount)]));
  }

  async function current(paywall: Paywall, assets: readonly Asset[]): Promise<ReadonlyMap<string, bigint>> {
    const windowStartMs = Math.floor(deps.nowMs() / windowMs) * windowMs;
    const key = keyOf(paywall, windowStartMs);
    const prices = new Map<string, bigint>();
    const converted = assets.filter((asset) => asset.code !== paywall.price.asset.code);
    for (const asset of assets)
      if (asset.code === paywall.price.asset.code) prices.set(asset.code, paywall.price.amount);
    if (converted.length === 0) return prices;
    let locked = cached.get(key);
    if (locked === undefined || converted.some((asset) => !locked!.has(asset.code))) {
      locked = await stored(paywall, windowStartMs);
      const missing = converted.filter((asset) => !locked!.has(asset.code));
      const fresh = missing.flatMap((asset) => {
        const amount = convertPrice(deps.rates, {
          amount: paywall.price.amount,
          from: paywall.price.asset,
          to: asset,
        });
        // Nothing to price it with, or more than an amount can be (a large price in a cheap asset): left out, as a
        // rate missing is (the 402 offers the others; none left is 503).
        return amount === null || amount <= 0n || amount > amountMax ? [] : [{ asset: asset.code, amount }];
      });
      if (fresh.length > 0) {
        // Another process may lock the same window at once: the first write wins, and both read it back.
        await deps.sql.query(
          `INSERT INTO paywall_rate_locks (paywall_id, paywall_updated_at, window_start_ms, asset, amount)
           SELECT $1, $5, $2, asset, amount::bigint FROM unnest($3::text[], $4::text[]) AS fresh (asset, amount)
           ON CONFLICT DO NOTHING`,
          [
            paywall.id,
            windowStartMs,
            fresh.map((row) => row.asset),
            fresh.map((row) => row.amount.toString()),
            paywall.updatedAt.toISOString(),
          ],
        );
        await deps.sql.query(
          "DELETE FROM paywall_rate_locks WHERE paywall_id = $1 AND window_start_ms < $2",
          [paywall.id, windowStartMs - windowMs],
        );
        locked = await stored(paywall, windowStartMs);
      }
      remember(key, locked);
    }
    for (const [code, amount] of locked) prices.set(code, amount);
    return prices;
  }

  async function previous(paywall: Paywall): Promise<ReadonlyMap<string, bigint> | null> {
    const windowStartMs = Math.floor(deps.nowMs() / windowMs) * windowMs - windowMs;
    const key = keyOf(paywall, windowStartMs);
    let locked = cached.get(key);
    if (locked === undefined) {
      locked = await stored(paywall, windowStartMs);
      remember(key, locked);
    }
    return locked.size === 0 ? null : locked;
  }

  return { current, previous };
}
