// The fiat rail on Stripe. In: PaymentIntents for a customer's top-up or an invoice. Out: Connect transfers
// to a merchant's connected account, and refunds. Every request carries an idempotency key derived from our
// own ids, and what Stripe created is recorded by that key, so a retry never charges or pays twice, even
// after Stripe has forgotten the key (24 h). Final outcomes arrive by webhook, on the route this rail
// contributes (webhook-route.ts), and reach the settlement as the rail's events.
//
// This module builds the rail's one explicit state (rail-state.ts) and wires the modules that work on it:
// payouts (payouts.ts), PaymentIntents (intents.ts), refunds (refunds.ts), health, balance and snapshot
// (monitor.ts), and the webhook's event delivery (delivery.ts, with its pass over the fees Stripe refused to tell);
// it keeps start and stop.
import { silentLogger } from "../../core/index.ts";
import { bookParkedFees, parkedFeesPassMsDefault, webhookRoutes } from "./delivery.ts";
import { FiatRailError } from "./errors.ts";
import { platformPayoutEventReference, platformPayoutHandReference } from "./events.ts";
import { validateFeeSchedule } from "./fees.ts";
import { cancelReceive, createPaymentIntent, receive } from "./intents.ts";
import { balance, refresh, snapshot } from "./monitor.ts";
import { executeAttempt } from "./payouts.ts";
import type { FiatRailState } from "./rail-state.ts";
import { refund, refundReceived } from "./refunds.ts";
import { type FiatRail, type FiatRailParams, snapshotRefreshMsDefault } from "./types.ts";

export function createFiatRail(params: FiatRailParams): FiatRail {
  const scheduleError = validateFeeSchedule(params.feeSchedule);
  if (scheduleError !== null) throw new FiatRailError(`invalid fee schedule: ${scheduleError}`);
  if (params.asset.scale !== 2)
    throw new FiatRailError(`the fiat rail takes a scale-2 asset, got ${params.asset.code}`);
  const state: FiatRailState = {
    id: params.id ?? "fiat",
    params,
    stripe: params.stripe,
    store: params.store,
    asset: params.asset,
    feeSchedule: params.feeSchedule,
    currency: params.asset.code.toLowerCase(),
    nowMs: params.nowMs ?? Date.now,
    logger: params.logger ?? silentLogger,
    refreshMs: params.snapshotRefreshMs ?? snapshotRefreshMsDefault,
    handler: null,
    started: false,
    timer: null,
    feeTimer: null,
    feePass: null,
    feeBookings: new Set(),
    availableBalance: null,
    health: { healthy: false, lastCheckedAtMs: null, lastError: null, stripeError: null },
  };
  return {
    id: state.id,
    kind: "fiat",
    asset: state.asset,
    receive: (request) => receive(state, request),
    cancelReceive: (offer) => cancelReceive(state, offer),
    routes: webhookRoutes(state),
    createPaymentIntent: (request) => createPaymentIntent(state, request),

    async start() {
      if (state.started) return;
      state.started = true;
      await refresh(state);
      state.timer = setInterval(() => {
        refresh(state).catch((error: unknown) => state.logger.error({ err: error }, "stripe refresh failed"));
      }, state.refreshMs);
      state.timer.unref();
      // Fees Stripe refused to tell when their event came (a restricted key): asked again, each no more often than its
      // backoff lets it, whichever process finds it due first.
      const passMs =
        params.parkedFeesPassMs === undefined ? parkedFeesPassMsDefault : params.parkedFeesPassMs;
      if (params.webhooks !== undefined && passMs !== null) {
        state.feeTimer = setInterval(() => {
          if (state.feePass !== null) return;
          state.feePass = bookParkedFees(state)
            .then(() => undefined)
            .catch((error: unknown) =>
              state.logger.error({ err: error }, "the pass over Stripe's kept fees failed"),
            )
            .finally(() => {
              state.feePass = null;
            });
        }, passMs);
        state.feeTimer.unref();
      }
    },

    async stop() {
      state.started = false;
      if (state.timer !== null) clearInterval(state.timer);
      state.timer = null;
      if (state.feeTimer !== null) clearInterval(state.feeTimer);
      state.feeTimer = null;
      await state.feePass;
      await Promise.all(state.feeBookings);
    },

    snapshot: () => snapshot(state),
    execute: (attempt) => executeAttempt(state, attempt),
    refund: (request) => refund(state, request),
    refundReceived: (request) => refundReceived(state, request),
    capitalHandReference: platformPayoutHandReference,
    capitalEventReference: platformPayoutEventReference,

    onEvent(next) {
      // Stripe's events arrive through this rail's webhook route (webhook-route.ts), which verifies, orders and
      // deduplicates them before they reach the handler (delivery.ts).
      state.handler = next;
    },

    balance: () => balance(state),
    refresh: () => refresh(state),
    bookParkedFees: () => bookParkedFees(state),
    health: () => state.health,
  };
}
