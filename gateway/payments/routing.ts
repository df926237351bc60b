// Checking a payment request and routing it: the router on the current snapshot, or a quote's frozen decision
// less what the snapshot now rules out; and quotes themselves. Nothing here writes but the quote.

import type { Destination } from "../../core/index.ts";
import { type Asset, assetByCode, parseAmount } from "../../core/index.ts";
import type { AccountRecord } from "../accounts/index.ts";
import { newId } from "../ids/index.ts";
import { createQuote, type Quote, quoteCandidates, quoteMatches } from "../router/index.ts";
import type { PaymentIntent, RouteDecision, RoutePolicy } from "../router/types.ts";
import { type CreatePaymentParams, type PaymentsDeps, type Refused, refuse } from "./deps.ts";
import { getQuote, insertQuote } from "./store.ts";

/** Routes on the current snapshot. Cross-asset settlement (FX legs in the ledger) is not wired yet: only rails of the payment's asset take part. */
function routeNow(deps: PaymentsDeps, intent: PaymentIntent, policy: RoutePolicy): RouteDecision {
  const snapshot = deps.snapshot();
  // Denied through the policy, not by filtering the snapshot: the router keeps its prepared snapshot.
  const otherAsset = snapshot.rails
    .filter((rail) => rail.asset.code !== intent.asset.code)
    .map((rail) => rail.rail);
  if (otherAsset.length === 0) return deps.route(intent, snapshot, policy);
  const decision = deps.route(intent, snapshot, {
    ...policy,
    deniedRails: [...(policy.deniedRails ?? []), ...otherAsset],
  });
  const userDenied = new Set(policy.deniedRails ?? []);
  return {
    ...decision,
    excluded: decision.excluded.map((exclusion) =>
      otherAsset.includes(exclusion.rail) && !userDenied.has(exclusion.rail)
        ? {
            rail: exclusion.rail,
            reason: "no_fx_rate" as const,
            detail: "settles another asset; cross-asset payments are not supported yet",
          }
        : exclusion,
    ),
  };
}

/** The quote's candidates with their locked amounts and caps, less the rails the snapshot now rules out. */
async function routeByQuote(
  deps: PaymentsDeps,
  tenantId: string,
  quoteId: string,
  intent: PaymentIntent,
): Promise<RouteDecision | Refused> {
  const quote = await getQuote(deps.db, { tenantId, id: quoteId });
  if (quote === null) return refuse("quote_not_found", `no quote "${quoteId}"`, "quote");
  if (!quoteMatches(quote, intent))
    return refuse(
      "quote_mismatch",
      "the payment's asset, amount or destination differ from the quote's",
      "quote",
    );
  const nowMs = deps.nowMs();
  const honoured = quoteCandidates(quote, deps.snapshot(), nowMs);
  if (!honoured.ok)
    return refuse(
      "quote_expired",
      `quote ${quoteId} expired at ${new Date(quote.expiresAtMs).toISOString()}`,
      "quote",
    );
  return {
    chosen: honoured.candidates[0] ?? null,
    candidates: honoured.candidates,
    excluded: [...quote.decision.excluded, ...honoured.excluded],
    amountMicroUsd: quote.decision.amountMicroUsd,
    snapshotTakenAtMs: quote.decision.snapshotTakenAtMs,
  };
}

/** Prices a payment and freezes the decision for `ttlMs`. Writes the quote; nothing else. */
export async function createPaymentQuote(
  deps: PaymentsDeps,
  params: {
    tenantId: string;
    asset: string;
    amount: string;
    destination: Destination;
    policy: RoutePolicy;
    ttlMs: number;
  },
): Promise<{ ok: true; id: string; quote: Quote } | Refused> {
  const asset = assetByCode(params.asset);
  if (asset === null) return refuse("unknown_asset", `no asset "${params.asset}"`, "asset");
  const amount = parseAmount(params.amount, asset);
  if (!amount.ok)
    return refuse(amount.error, `amount "${params.amount}" is not a valid ${asset.code} amount`, "amount");
  const intent = { asset, amount: amount.value, destination: params.destination };
  const decision = routeNow(deps, intent, params.policy);
  const created = createQuote(decision, intent, deps.nowMs(), params.ttlMs);
  if (!created.ok)
    return {
      ok: false,
      refusal: "no_route",
      message: "no rail can make this payment under its constraints",
      decision,
    };
  const id = newId("quo");
  await insertQuote(deps.db, { id, tenantId: params.tenantId, quote: created.quote });
  return { ok: true, id, quote: created.quote };
}

/** Checks a request against the tenant's accounts and the router. Writes nothing. */
export async function prepare(
  deps: PaymentsDeps,
  params: CreatePaymentParams,
): Promise<
  | Refused
  | {
      ok: true;
      asset: Asset;
      amount: bigint;
      source: AccountRecord;
      /** The destination's record when it is an account of the tenant. */
      target: AccountRecord | null;
      decision: RouteDecision;
    }
> {
  const asset = assetByCode(params.asset);
  if (asset === null) return refuse("unknown_asset", `no asset "${params.asset}"`, "asset");
  const amount = parseAmount(params.amount, asset);
  if (!amount.ok)
    return refuse(
      amount.error,
      `amount "${params.amount}" is not a valid ${asset.code} amount (${asset.scale} decimals at most, more than zero)`,
      "amount",
    );
  const source = await deps.accounts.tenantAccount({ tenantId: params.tenantId, id: params.sourceAccountId });
  if (source === null)
    return refuse("account_not_found", `no account "${params.sourceAccountId}"`, "source.account");
  if (source.asset.code !== asset.code)
    return refuse(
      "asset_mismatch",
      `account ${source.id} holds ${source.asset.code}, not ${asset.code}`,
      "asset",
    );
  let target: AccountRecord | null = null;
  if (params.destination.kind === "account") {
    target = await deps.accounts.tenantAccount({
      tenantId: params.tenantId,
      id: params.destination.accountId,
    });
    if (target === null)
      return refuse(
        "destination_not_found",
        `no account "${params.destination.accountId}"`,
        "destination.account",
      );
    if (target.asset.code !== asset.code)
      return refuse(
        "asset_mismatch",
        `account ${target.id} holds ${target.asset.code}, not ${asset.code}`,
        "destination.account",
      );
    if (target.id === source.id)
      return refuse("same_account", "source and destination are the same account", "destination.account");
  }
  const intent = { asset, amount: amount.value, destination: params.destination };
  const decision =
    params.quoteId === null
      ? routeNow(deps, intent, params.policy)
      : await routeByQuote(deps, params.tenantId, params.quoteId, intent);
  if ("refusal" in decision) return decision;
  if (decision.chosen === null) {
    return {
      ok: false,
      refusal: "no_route",
      message: "no rail can make this payment under its constraints",
      decision,
    };
  }
  return { ok: true, asset, amount: amount.value, source, target, decision };
}
