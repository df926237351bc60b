// The gateway's paywalls for every tenant: one PaywallCheck per tenant (built on first use, a bounded number kept),
// sharing the price locks; and the verdicts given over HTTP (POST /v1/paywall_verdicts) that wait for their
// `complete` call, each for at most pendingCompleteWithinMs (then completed unserved: nothing is settled).
import { randomBytes } from "node:crypto";
import { type Logger, setBounded } from "../../core/index.ts";
import type { Sql } from "../db/index.ts";
import type { RateSource } from "../router/index.ts";
import { createPaywall, type PaywallCheck, type PaywallCompletion, type PaywallVerdict } from "./core.ts";
import { createPriceLocks } from "./price.ts";
import type { PaymentScheme } from "./scheme.ts";

export const paywallTenantsCachedMax = 1_000;
export const pendingVerdictsMax = 10_000;
/** The most one tenant's verdicts may wait in one process: no tenant takes every place of the others. */
export const pendingVerdictsPerTenantMax = 1_000;
export const pendingCompleteWithinMs = 5 * 60_000;
/**
 * The most completed verdicts kept for a repeated complete call (pendingCompleteWithinMs each): what 300 paid requests
 * a second leave in that time. Past it, the oldest is forgotten first (its repeat answers 404).
 */
export const completedVerdictsMax = 100_000;

export type PaywallService = {
  readonly schemes: readonly PaymentScheme[];
  /** The rates prices are converted at (a paywall made or changed is checked at them: PaywallsDeps). */
  readonly rates: Pick<RateSource, "usdRate">;
  forTenant(tenantId: string): PaywallCheck;
  /** The tenant's paywalls changed (in this process): read them again at the next request. Other processes read them within paywallsRefreshMs. */
  changed(tenantId: string): void;
  /**
   * A paid verdict given over HTTP, kept until its complete call: its id. Null when too many wait already, in the
   * process or of the tenant. Kept in this process's memory: its complete call must reach this process.
   */
  hold(tenantId: string, verdict: Extract<PaywallVerdict, { kind: "paid" }>): string | null;
  /**
   * Completes a held verdict of the tenant once; null when there is none (unknown, another tenant's, completed longer
   * than pendingCompleteWithinMs ago). Completed again, it answers the first result; `served: false` after a
   * settlement says its answer never reached the payer (remotePaywall's `undelivered`): the same payment sent again
   * is then served once.
   */
  complete(tenantId: string, id: string, outcome: { served: boolean }): Promise<PaywallCompletion | null>;
  close(): Promise<void>;
};

export function createPaywallService(deps: {
  sql: Sql;
  schemes: readonly PaymentScheme[];
  rates: Pick<RateSource, "usdRate">;
  logger: Logger;
  nowMs?: () => number;
  /** How many tenants' paywall checks are kept (default paywallTenantsCachedMax). */
  tenantsCachedMax?: number;
}): PaywallService {
  const nowMs = deps.nowMs ?? Date.now;
  const tenantsCachedMax = deps.tenantsCachedMax ?? paywallTenantsCachedMax;
  const priceLocks = createPriceLocks({ sql: deps.sql, rates: deps.rates, nowMs });
  const checks = new Map<string, PaywallCheck>();
  const pending = new Map<
    string,
    { tenantId: string; verdict: Extract<PaywallVerdict, { kind: "paid" }>; timer: NodeJS.Timeout }
  >();
  const pendingOfTenant = new Map<string, number>();
  // Completed verdicts, for a repeated complete call (a retry, or the payer's answer undelivered), each for as long as
  // a verdict may wait, at most completedVerdictsMax of them.
  const completed = new Map<
    string,
    { tenantId: string; result: Promise<PaywallCompletion>; untilMs: number }
  >();

  function forTenant(tenantId: string): PaywallCheck {
    let check = checks.get(tenantId);
    if (check === undefined) {
      check = createPaywall({ ...deps, tenantId, priceLocks, nowMs, logger: deps.logger });
      setBounded(checks, tenantId, check, tenantsCachedMax);
    }
    return check;
  }

  function take(id: string) {
    const held = pending.get(id);
    if (held === undefined) return null;
    pending.delete(id);
    clearTimeout(held.timer);
    const left = (pendingOfTenant.get(held.tenantId) ?? 1) - 1;
    if (left > 0) pendingOfTenant.set(held.tenantId, left);
    else pendingOfTenant.delete(held.tenantId);
    return held;
  }

  return {
    schemes: deps.schemes,
    rates: deps.rates,
    forTenant,
    changed(tenantId) {
      checks.delete(tenantId);
    },
    hold(tenantId, verdict) {
      const tenantHolds = pendingOfTenant.get(tenantId) ?? 0;
      if (pending.size >= pendingVerdictsMax || tenantHolds >= pendingVerdictsPerTenantMax) return null;
      pendingOfTenant.set(tenantId, tenantHolds + 1);
      const id = `pwv_${randomBytes(16).toString("hex")}`;
      const timer = setTimeout(() => {
        const held = take(id);
        held?.verdict.complete({ served: false }).catch((error: unknown) => {
          deps.logger.error({ err: error, verdict: id }, "paywall: completing an abandoned verdict failed");
        });
      }, pendingCompleteWithinMs);
      timer.unref();
      pending.set(id, { tenantId, verdict, timer });
      return id;
    },
    async complete(tenantId, id, outcome) {
      const held = pending.get(id);
      if (held === undefined || held.tenantId !== tenantId) {
        const done = completed.get(id);
        if (done === undefined || done.tenantId !== tenantId) return null;
        if (done.untilMs <= nowMs()) {
          completed.delete(id);
          return null;
        }
        const result = await done.result;
        if (!outcome.served && result.kind === "settled") await result.undelivered?.();
        return result;
      }
      take(id);
      const result = held.verdict.complete(outcome);
      setBounded(
        completed,
        id,
        { tenantId, result, untilMs: nowMs() + pendingCompleteWithinMs },
        completedVerdictsMax,
      );
      return result;
    },
    async close() {
      const left = [...pending.keys()].map((id) => take(id));
      await Promise.allSettled(left.map((held) => held?.verdict.complete({ served: false })));
      await Promise.allSettled(deps.schemes.map((scheme) => scheme.close?.()));
    },
  };
}
