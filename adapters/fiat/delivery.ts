// Stripe's events, from the rail's webhook route (webhook-route.ts: verified, ordered and deduplicated there)
// to the settlement's handler, as the rail's events. Informational events (a failed charge, a connected
// account's failed payout) stop here.
import type { RailEventVerdict, RailRoute } from "../../core/index.ts";
import { FiatRailError } from "./errors.ts";
import { type FiatEvent, toRailEvent } from "./events.ts";
import type { FiatRailState } from "./rail-state.ts";
import { createStripeWebhookRoute } from "./webhook-route.ts";

// biome-ignore lint/suspicious/noConfusingVoidType: a handler that returns nothing applied the event
export async function deliver(state: FiatRailState, event: FiatEvent): Promise<RailEventVerdict | void> {
  const railEvent = toRailEvent(event);
  if (railEvent === null) return; // informational: nothing was credited, or not our money (a connected account's payout)
  if (state.handler === null)
    throw new FiatRailError("a Stripe event arrived before the rail's handler was set");
  return await state.handler(railEvent);
}

/** The route this rail contributes (POST /v1/webhooks/stripe); none when the rail was given no webhooks. */
export function webhookRoutes(state: FiatRailState): RailRoute[] {
  const { params, logger } = state;
  if (params.webhooks === undefined) return [];
  return [
    createStripeWebhookRoute({
      ...params.webhooks,
      applyEvent: (event) => deliver(state, event),
      currency: state.currency,
      feeSchedule: params.feeSchedule,
      onRefused: (fields) => logger.warn(fields, "stripe webhook refused"),
    }),
  ];
}
