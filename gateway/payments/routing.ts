// Checking a payment request and routing it: the router on the current snapshot, or a quote's frozen decision
// less what the snapshot now rules out; and quotes themselves. Nothing here writes but the quote.

import { parseBolt11 } from "../../core/bolt11.ts";
import type { Destination, NetworkFeeEstimate, RailSnapshot } from "../../core/index.ts";
import {
  type Asset,
  assetByCode,
  assets,
  basisPointsTotal,
  formatAmount,
  parseAmount,
} from "../../core/index.ts";
import type { AccountRecord } from "../accounts/index.ts";
import { newId } from "../ids/index.ts";
import { payeeMethods } from "../payees/index.ts";
import {
  convert,
  createQuote,
  crossRate,
  outOfPlayReasons,
  type Quote,
  quoteCandidates,
  quoteMatches,
  reachableByKind,
  sameDestination,
} from "../router/index.ts";
import type {
  Candidate,
  Exclusion,
  PayeeTarget,
  PaymentIntent,
  RouteDecision,
  RoutePolicy,
  Snapshot,
} from "../router/types.ts";
import { type CreatePaymentParams, type PaymentsDeps, type Refused, type Router, refuse } from "./deps.ts";
import { getQuote, insertQuote, shareDecisionJson } from "./store.ts";
import type { PaymentDestination, QuoteRefusal } from "./types.ts";

/** The destination a rail would pay for this intent: the destination, or the payee's first method it reaches. */
function reachedBy(rail: RailSnapshot, destination: PaymentIntent["destination"]): Destination | null {
  const kinds = reachableByKind[rail.kind] ?? [];
  const reaches = (method: Destination) => kinds.includes(method.kind) && rail.reaches.includes(method.kind);
  if (destination.kind !== "payee") return reaches(destination) ? destination : null;
  return destination.methods.find(reaches) ?? null;
}

/**
 * The snapshot with each rail's network fee for this payment where the rail can say better than its snapshot (a
 * Lightning route query for this destination and amount): its model replaced, or the rail out of reach when it
 * found no way there. The estimates run at once, each bounded in time by its rail; one that fails leaves the
 * snapshot's model standing. null when no rail has one to make (a payment to an account): the snapshot as it is,
 * without a promise.
 */
function withEstimates(
  deps: PaymentsDeps,
  snapshot: Snapshot,
  intent: PaymentIntent,
): Promise<Snapshot> | null {
  let asks: Promise<readonly [number, NetworkFeeEstimate | null]>[] | null = null;
  for (let index = 0; index < snapshot.rails.length; index++) {
    const snap = snapshot.rails[index]!;
    const rail = deps.rails.get(snap.rail);
    if (rail?.estimateNetworkFee === undefined || !snap.available) continue;
    const destination = reachedBy(snap, intent.destination);
    if (destination === null) continue;
    // What the rail would send: the payment's amount at the mid rate, rounded down, as the router converts it.
    const rate = crossRate(snapshot.usdRates[intent.asset.code], snapshot.usdRates[snap.asset.code]);
    if (rate === null) continue;
    asks ??= [];
    asks.push(
      rail
        .estimateNetworkFee({ destination, amount: convert(intent.amount, rate, "floor") })
        .catch((error: unknown) => {
          deps.logger?.warn({ rail: snap.rail, error }, "fee estimate failed: the snapshot's model stands");
          return null;
        })
        .then((estimate) => [index, estimate] as const),
    );
  }
  return asks === null ? null : estimated(snapshot, asks);
}

/** The snapshot with the estimates asked for (withEstimates) put in, once they are all in. */
async function estimated(
  snapshot: Snapshot,
  asks: readonly Promise<readonly [number, NetworkFeeEstimate | null]>[],
): Promise<Snapshot> {
  const rails = [...snapshot.rails];
  for (const [index, estimate] of await Promise.all(asks)) {
    const snap = rails[index];
    if (estimate === null || snap === undefined) continue;
    rails[index] =
      estimate.kind === "unreachable" ? { ...snap, reaches: [] } : { ...snap, networkFee: estimate };
  }
  // A new rails list: route() prepares it afresh (a few microseconds), the rest is the snapshot as it was.
  return { ...snapshot, rails };
}

/**
 * Routes on the current snapshot. A rail in another asset than the payment's pays through FX legs in the ledger
 * (reservations.ts); an internal rail in another asset does not take part: a tenant's accounts are paid in their
 * own asset.
 */
async function routeNow(
  deps: PaymentsDeps,
  intent: PaymentIntent,
  policy: RoutePolicy,
): Promise<RouteDecision> {
  const current = deps.snapshot();
  const estimating = withEstimates(deps, current, intent);
  const snapshot = estimating === null ? current : await estimating;
  // The same question on the same snapshot (no estimate of this payment's own in it) gets the same decision: a
  // payment to an account without constraints — the internal hot path, where many payments repeat one pair and
  // amount — is answered from the snapshot's memo, one decision object shared, which the decision's JSON and its
  // view are then made once for (decisionJson, presentRoute).
  const memo = snapshot === current ? decisionMemoOf(deps.route, snapshot, intent, policy) : null;
  if (memo === null) return routeOn(deps, snapshot, intent, policy);
  const remembered = memo.decisions.byAccount.get(memo.key);
  if (remembered !== undefined) return remembered;
  // Another account asked the same (asset and amount) on this snapshot: the router's answer differs only in the
  // account its candidates pay, so that answer is taken with this account put in, and its JSON is the same text
  // (a decision's JSON names no account). With many accounts, each one's first payment on each snapshot was routed
  // and its decision made JSON anew (issue #19, 100 tenants × 10 accounts: ~8 µs a payment in the gateway's profile).
  const destination = memo.destination;
  const like = memo.decisions.byAmount.get(memo.amountKey);
  const retarget = like === undefined ? null : retargeted(like, destination);
  let decision: RouteDecision;
  if (like !== undefined && retarget !== null) {
    decision = retarget;
    shareDecisionJson(decision, like, destination);
  } else {
    decision = routeOn(deps, snapshot, intent, policy);
    if (memo.decisions.byAmount.size < memoDecisionsMax)
      memo.decisions.byAmount.set(memo.amountKey, decision);
  }
  if (memo.decisions.byAccount.size < memoDecisionsMax) memo.decisions.byAccount.set(memo.key, decision);
  return decision;
}

/**
 * `decision` paying `destination` instead: its candidates (and the chosen one among them) with that account; null
 * when its chosen candidate is not one of its candidates (the router's always is: then routed anew, not guessed).
 */
function retargeted(
  decision: RouteDecision,
  destination: Extract<PaymentDestination, { kind: "account" }>,
): RouteDecision | null {
  const chosenAt = decision.chosen === null ? -1 : decision.candidates.indexOf(decision.chosen);
  if (decision.chosen !== null && chosenAt < 0) return null;
  const candidates = decision.candidates.map((candidate) => ({ ...candidate, destination }));
  return { ...decision, candidates, chosen: candidates[chosenAt] ?? null };
}

/** The most decisions one snapshot's memo keeps (a snapshot lives a second or so: marketRefreshMs). */
const memoDecisionsMax = 4_096;

/**
 * A snapshot's decisions for payments to an account under no constraints: by asset, amount and account, and the
 * first one routed for each asset and amount (the others are it, retargeted).
 */
type SnapshotDecisions = { byAccount: Map<string, RouteDecision>; byAmount: Map<string, RouteDecision> };

/** Decisions by router, then snapshot (both held weakly), then question: what routeNow answered on that snapshot. */
const decisionMemos = new WeakMap<Router, WeakMap<Snapshot, SnapshotDecisions>>();

/**
 * The memo a question's decision is kept in, and its key there; null for a question it does not cover. Covered: an
 * account destination (a tenant's account, which its id names) under no constraints, so that the asset, the amount
 * and the account are the whole question. Held by the router and the snapshot themselves, weakly: a memo goes with
 * its snapshot, and another router (a test's) never reads this one's.
 */
function decisionMemoOf(
  router: Router,
  snapshot: Snapshot,
  intent: PaymentIntent,
  policy: RoutePolicy,
): {
  decisions: SnapshotDecisions;
  key: string;
  amountKey: string;
  destination: Extract<PaymentDestination, { kind: "account" }>;
} | null {
  const destination = intent.destination;
  if (destination.kind !== "account" || !isEmptyPolicy(policy)) return null;
  let bySnapshot = decisionMemos.get(router);
  if (bySnapshot === undefined) {
    bySnapshot = new WeakMap();
    decisionMemos.set(router, bySnapshot);
  }
  let decisions = bySnapshot.get(snapshot);
  if (decisions === undefined) {
    decisions = { byAccount: new Map(), byAmount: new Map() };
    bySnapshot.set(snapshot, decisions);
  }
  const amountKey = `${intent.asset.code}\n${intent.amount}`;
  return { decisions, key: `${amountKey}\n${destination.accountId}`, amountKey, destination };
}

function isEmptyPolicy(policy: RoutePolicy): boolean {
  for (const key in policy) if ((policy as Record<string, unknown>)[key] !== undefined) return false;
  return true;
}

/** The router's decision on this snapshot, an internal rail in another asset than the payment's excluded. */
function routeOn(
  deps: PaymentsDeps,
  snapshot: Snapshot,
  intent: PaymentIntent,
  policy: RoutePolicy,
): RouteDecision {
  // Denied through the policy, not by filtering the snapshot: the router keeps its prepared snapshot.
  const otherAsset = snapshot.rails
    .filter((rail) => rail.kind === "internal" && rail.asset.code !== intent.asset.code)
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
            detail: "an internal rail moves its own asset only",
          }
        : exclusion,
    ),
  };
}

/**
 * A quote's candidates under the payment's own constraints: a rail the payment denies (or does not allow), one
 * slower than its maximum latency, or one whose locked fee is above its maximum fee is excluded; the others keep
 * their locked amounts, and their fee caps come down to the payment's caps (the rail's fee limit with them, in
 * proportion, rounded down).
 */
export function underPolicy(
  candidates: readonly Candidate[],
  policy: RoutePolicy,
  amountMicroUsd: bigint | null,
): { candidates: Candidate[]; excluded: Exclusion[] } {
  const kept: Candidate[] = [];
  const excluded: Exclusion[] = [];
  const bpsCap =
    policy.maxFeeBps === undefined || amountMicroUsd === null
      ? null
      : (BigInt(policy.maxFeeBps) * amountMicroUsd) / basisPointsTotal;
  for (const candidate of candidates) {
    const exclude = (reason: Exclusion["reason"], detail: string) =>
      excluded.push({ rail: candidate.rail, reason, detail });
    if (
      policy.deniedRails?.includes(candidate.rail) ||
      (policy.allowedRails !== undefined && !policy.allowedRails.includes(candidate.rail))
    ) {
      exclude("not_allowed", "the payment's constraints do not allow this rail");
      continue;
    }
    if (policy.maxLatencyMs !== undefined && candidate.latencyMs > policy.maxLatencyMs) {
      exclude(
        "latency_above_max",
        `the rail's expected latency of ${candidate.latencyMs} ms is above the payment's maximum`,
      );
      continue;
    }
    let cap = candidate.feeCapMicroUsd;
    if (policy.maxFeeMicroUsd !== undefined && policy.maxFeeMicroUsd < cap) cap = policy.maxFeeMicroUsd;
    if (bpsCap !== null && bpsCap < cap) cap = bpsCap;
    if (candidate.cost.feeMicroUsd > cap) {
      exclude("fee_above_max", "the quote's fee for this rail is above the payment's maximum fee");
      continue;
    }
    if (cap === candidate.feeCapMicroUsd) {
      kept.push(candidate);
      continue;
    }
    kept.push({ ...candidate, feeCapMicroUsd: cap, feeMax: feeMaxUnder(candidate, cap) });
  }
  return { candidates: kept, excluded };
}

/**
 * What the rail may spend under a lower fee cap, in its asset: (cap − fx) converted at the rate the quote converted
 * at, rounded down once, as route() does. Scaling the quote's feeMax instead rounded down twice: a cap equal to the
 * rail's fee left the rail a minor unit short of it, and the payment failed fee_above_max where a payment without a
 * quote was paid. A quote without the rate (a USDC rail, where feeMax is feeCap − fx; or one written before it was
 * kept) is scaled.
 */
function feeMaxUnder(candidate: Candidate, cap: bigint): bigint {
  const fx = candidate.cost.fxMicroUsd;
  if (cap <= fx) return 0n;
  if (candidate.feeRate !== undefined) return ((cap - fx) * candidate.feeRate.num) / candidate.feeRate.den;
  const railShare = candidate.feeCapMicroUsd - fx;
  return railShare <= 0n ? 0n : (candidate.feeMax * (cap - fx)) / railShare;
}

/**
 * A quote to a payee priced the methods the payee had then; a method removed since (often an address that is no
 * longer the payee's) is not paid: its candidates are excluded. The others keep the quote's terms.
 */
function stillPayeeMethods(
  quoted: { candidates: readonly Candidate[]; excluded: readonly Exclusion[] },
  destination: PaymentIntent["destination"],
): { candidates: readonly Candidate[]; excluded: readonly Exclusion[] } {
  if (destination.kind !== "payee") return quoted;
  const candidates: Candidate[] = [];
  const excluded: Exclusion[] = [...quoted.excluded];
  for (const candidate of quoted.candidates)
    if (destination.methods.some((method) => sameDestination(method, candidate.destination)))
      candidates.push(candidate);
    else
      excluded.push({
        rail: candidate.rail,
        reason: "unreachable_destination",
        detail: "the payee no longer has the method the quote priced",
      });
  return { candidates, excluded };
}

/**
 * The quote's candidates with their locked amounts and caps, less the rails the snapshot now rules out and those
 * the payment's own constraints rule out.
 */
async function routeByQuote(
  deps: PaymentsDeps,
  tenantId: string,
  quoteId: string,
  intent: PaymentIntent,
  policy: RoutePolicy,
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
  const quoted = quoteCandidates(quote, deps.snapshot(), nowMs);
  if (!quoted.ok)
    return refuse(
      "quote_expired",
      `quote ${quoteId} expired at ${new Date(quote.expiresAtMs).toISOString()}`,
      "quote",
    );
  // Every rail the quote priced is ruled out now (down, its circuit open, its limits moved past the locked
  // amount): said as such, with the reasons. Before, this was the router's no_route, or fee_above_max when the
  // quote's own exclusions were fee caps, though no cap of the payer's was why.
  if (quoted.candidates.length === 0)
    return {
      ...refuse(
        "quote_stale",
        `no rail quote ${quoteId} priced can take the payment now (${quoted.excluded.map((e) => `${e.rail}: ${e.reason}`).join("; ")}): quote again`,
        "quote",
      ),
      decision: {
        chosen: null,
        candidates: [],
        excluded: [...quote.decision.excluded, ...quoted.excluded],
        amountMicroUsd: quote.decision.amountMicroUsd,
        snapshotTakenAtMs: quote.decision.snapshotTakenAtMs,
      },
    };
  const honoured = stillPayeeMethods(quoted, intent.destination);
  if (honoured.candidates.length === 0 && quoted.candidates.length > 0)
    return refuse(
      "quote_mismatch",
      `none of the methods quote ${quoteId} priced can be paid now (the payee no longer has it, or it is the payer's own account): quote again`,
      "quote",
    );
  const allowed = underPolicy(honoured.candidates, policy, quote.decision.amountMicroUsd);
  if (allowed.candidates.length === 0 && honoured.candidates.length > 0)
    return {
      ...refuse(
        "quote_constraints_unmet",
        `no rail of quote ${quoteId} meets the payment's constraints (${allowed.excluded.map((e) => `${e.rail}: ${e.reason}`).join("; ")})`,
        "constraints",
      ),
      decision: {
        chosen: null,
        candidates: [],
        excluded: [...quote.decision.excluded, ...honoured.excluded, ...allowed.excluded],
        amountMicroUsd: quote.decision.amountMicroUsd,
        snapshotTakenAtMs: quote.decision.snapshotTakenAtMs,
      },
    };
  return {
    chosen: allowed.candidates[0] ?? null,
    candidates: allowed.candidates,
    excluded: [...quote.decision.excluded, ...honoured.excluded, ...allowed.excluded],
    amountMicroUsd: quote.decision.amountMicroUsd,
    snapshotTakenAtMs: quote.decision.snapshotTakenAtMs,
  };
}

/**
 * What the router is asked to reach: the destination itself, or a payee's methods (each a destination some
 * rail may reach). A payee that is not the tenant's is as unknown as one that does not exist. A payee's account
 * method is left out where no payment of `asset` from `sourceAccountId` can reach it: an account in another asset
 * (the internal rail moves one asset), the payer's own account (nothing would move). Left in, the router chose it,
 * and the payment failed rejected at the ledger, using up the quote it was made on. A destination that is not a payee
 * is answered as it is, without a promise (the internal hot path, nearly all of it to accounts).
 */
function targetOf(
  deps: PaymentsDeps,
  tenantId: string,
  destination: PaymentDestination,
  payment: { asset: Asset; sourceAccountId: string },
): Destination | Promise<PayeeTarget | Refused<PayeeTargetRefusal>>;
/** Without a source account (a quote) no method is the payer's own: never `same_account`. */
function targetOf(
  deps: PaymentsDeps,
  tenantId: string,
  destination: PaymentDestination,
  payment: { asset: Asset; sourceAccountId: null },
): Destination | Promise<PayeeTarget | Refused<Exclude<PayeeTargetRefusal, "same_account">>>;
function targetOf(
  deps: PaymentsDeps,
  tenantId: string,
  destination: PaymentDestination,
  payment: { asset: Asset; sourceAccountId: string | null },
): Destination | Promise<PayeeTarget | Refused<PayeeTargetRefusal>> {
  return destination.kind === "payee" ? payeeTarget(deps, tenantId, destination, payment) : destination;
}

type PayeeTargetRefusal = "payee_not_found" | "same_account" | "asset_mismatch";

async function payeeTarget(
  deps: PaymentsDeps,
  tenantId: string,
  destination: Extract<PaymentDestination, { kind: "payee" }>,
  payment: { asset: Asset; sourceAccountId: string | null },
): Promise<PayeeTarget | Refused<PayeeTargetRefusal>> {
  const found = await payeeMethods(deps.db, { tenantId, id: destination.payeeId });
  if (found === null)
    return refuse("payee_not_found", `no payee "${destination.payeeId}"`, "destination.payee");
  const methods: Destination[] = [];
  let own = false;
  for (const method of found.destinations) {
    if (method.kind === "account") {
      if (method.accountId === payment.sourceAccountId) {
        own = true;
        continue;
      }
      const account = await deps.accounts.tenantAccount({ tenantId, id: method.accountId });
      if (account === null || account.asset.code !== payment.asset.code) continue;
    }
    methods.push(method);
  }
  // Every method left out: said as such, not as a route no rail has (a quote again would price the same).
  if (methods.length === 0 && found.destinations.length > 0)
    return own
      ? refuse(
          "same_account",
          `payee "${destination.payeeId}" is paid to the source account only`,
          "destination.payee",
        )
      : refuse(
          "asset_mismatch",
          `no method of payee "${destination.payeeId}" takes ${payment.asset.code}`,
          "destination.payee",
        );
  return { kind: "payee", payeeId: destination.payeeId, methods };
}

/**
 * `destination_is_gateway` when the destination, or one of a payee's methods, is an address of the gateway's own
 * (a hot wallet, a contract, a deposit address it issued: each rail's ownsDestination): paying it would move
 * nothing out of the gateway while the ledger booked it as paid out. Asked before anything is routed or held. null,
 * without a promise, when there is nothing to ask.
 */
function gatewayOwned(
  deps: PaymentsDeps,
  target: Destination | PayeeTarget,
): Promise<Refused<"destination_is_gateway"> | null> | null {
  // A tenant's account is a ledger account, never an address a rail pays to: nothing to ask (the internal hot path).
  if (target.kind === "account") return null;
  const destinations = target.kind === "payee" ? target.methods : [target];
  const asks: Promise<boolean>[] = [];
  for (const rail of deps.rails.values()) {
    if (rail.ownsDestination === undefined) continue;
    for (const destination of destinations) asks.push(rail.ownsDestination(destination));
  }
  if (asks.length === 0) return null;
  return Promise.all(asks).then((owned) => (owned.includes(true) ? ownedRefusal(target) : null));
}

function ownedRefusal(
  target: Exclude<Destination | PayeeTarget, { kind: "account" }>,
): Refused<"destination_is_gateway"> {
  return target.kind === "payee"
    ? refuse(
        "destination_is_gateway",
        `a payment method of payee "${target.payeeId}" is an address of the gateway's own`,
        "destination.payee",
      )
    : refuse(
        "destination_is_gateway",
        "the destination is an address of the gateway's own",
        target.kind === "evm_address" ? "destination.address" : "destination",
      );
}

/**
 * No rail can pay: `fee_above_max` when every rail that could have paid was ruled out by the payment's fee cap
 * alone (raise the cap and it pays), else `no_route`. Either way nothing was written or sent.
 */
function noRoute(decision: RouteDecision): Refused<"fee_above_max" | "no_route"> {
  const inPlay = decision.excluded.filter((exclusion) => !outOfPlayReasons.has(exclusion.reason));
  if (inPlay.length > 0 && inPlay.every((exclusion) => exclusion.reason === "fee_above_max"))
    return {
      ok: false,
      refusal: "fee_above_max",
      message: "every rail that reaches the destination costs more in fees than the payment allows",
      decision,
    };
  return {
    ok: false,
    refusal: "no_route",
    message: "no rail can make this payment under its constraints",
    decision,
  };
}

/**
 * The tenant's account a payment to an account goes to (null: the destination is not an account). Another tenant's
 * account is as unknown as one that does not exist.
 */
async function destinationAccount(
  deps: PaymentsDeps,
  tenantId: string,
  destination: PaymentDestination,
  asset: Asset,
): Promise<AccountRecord | Refused<"destination_not_found" | "asset_mismatch"> | null> {
  if (destination.kind !== "account") return null;
  const target = await deps.accounts.tenantAccount({ tenantId, id: destination.accountId });
  if (target === null)
    return refuse("destination_not_found", `no account "${destination.accountId}"`, "destination.account");
  if (target.asset.code !== asset.code)
    return refuse(
      "asset_mismatch",
      `account ${target.id} holds ${target.asset.code}, not ${asset.code}`,
      "destination.account",
    );
  return target;
}

/** Prices a payment and freezes the decision for `ttlMs`. Writes the quote; nothing else. */
export async function createPaymentQuote(
  deps: PaymentsDeps,
  params: {
    tenantId: string;
    asset: string;
    amount: string;
    destination: PaymentDestination;
    policy: RoutePolicy;
    ttlMs: number;
  },
): Promise<{ ok: true; id: string; quote: Quote } | Refused<QuoteRefusal>> {
  const asset = assetByCode(params.asset);
  if (asset === null) return refuse("unknown_asset", `no asset "${params.asset}"`, "asset");
  const amount = parseAmount(params.amount, asset);
  if (!amount.ok)
    return refuse(amount.error, `amount "${params.amount}" is not a valid ${asset.code} amount`, "amount");
  const account = await destinationAccount(deps, params.tenantId, params.destination, asset);
  if (account !== null && "refusal" in account) return account;
  const target = await targetOf(deps, params.tenantId, params.destination, { asset, sourceAccountId: null });
  if ("refusal" in target) return target;
  const owned = await gatewayOwned(deps, target);
  if (owned !== null) return owned;
  const intent = { asset, amount: amount.value, destination: target };
  const fitted = fittedToInvoice(params.destination, await routeNow(deps, intent, params.policy), intent);
  if ("refusal" in fitted) return fitted;
  const created = createQuote(fitted, intent, deps.nowMs(), params.ttlMs);
  if (!created.ok) return noRoute(fitted);
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
  const target = await destinationAccount(deps, params.tenantId, params.destination, asset);
  if (target !== null && "refusal" in target) return target;
  if (target?.id === source.id)
    return refuse("same_account", "source and destination are the same account", "destination.account");
  // Neither targetOf nor gatewayOwned is awaited when it answers at once (each await is a promise and a turn more on
  // the internal hot path).
  const reaching = targetOf(deps, params.tenantId, params.destination, { asset, sourceAccountId: source.id });
  const reach = reaching instanceof Promise ? await reaching : reaching;
  if ("refusal" in reach) return reach;
  const asking = gatewayOwned(deps, reach);
  const owned = asking === null ? null : await asking;
  if (owned !== null) return owned;
  const intent = { asset, amount: amount.value, destination: reach };
  const decision =
    params.quoteId === null
      ? await routeNow(deps, intent, params.policy)
      : await routeByQuote(deps, params.tenantId, params.quoteId, intent, params.policy);
  if ("refusal" in decision) return decision;
  if (decision.chosen === null) return noRoute(decision);
  const fitted = fittedToInvoice(params.destination, decision, intent);
  if ("refusal" in fitted) return fitted;
  return { ok: true, asset, amount: amount.value, source, target, decision: fitted };
}

/**
 * A Lightning invoice that names its amount is paid exactly that: the rail refuses to send another ("the invoice asks
 * …"). Converted from another asset, rounded down, a payer's amount rarely lands on the invoice's (at $100,000 a BTC
 * one cent is 10,000 msat): the payment amount that reaches it is taken, the least that does — its conversion at
 * least what the invoice asks, one minor unit less short of it — and the rail sends what the invoice asks, the FX desk
 * keeping the remainder of the payer's last unit (less than one of them). Any other amount (asked in BTC for another
 * amount, or converted to less, or to more than that last unit covers) is refused here, naming what the invoice asks
 * and, across assets, the payment amount that pays it at the rate now, before anything is written (param `amount`:
 * what the payer can change). Before, the payment, its attempt and its reservation were written and the rail's
 * refusal answered 402 rejected.
 */
function fittedToInvoice(
  destination: PaymentDestination,
  decision: RouteDecision,
  paid: { asset: Asset; amount: bigint },
): RouteDecision | Refused<"parameter_invalid"> {
  const chosen = decision.chosen;
  if (destination.kind !== "bolt11" || chosen === null || chosen.asset.code !== assets.BTC.code)
    return decision;
  const invoice = parseBolt11(destination.invoice);
  if (!invoice.ok || invoice.value.amountMsat === null) return decision;
  const asked = invoice.value.amountMsat;
  if (chosen.amount === asked) return decision;
  const cross = paid.asset.code !== chosen.asset.code;
  const reaches = (candidate: Candidate) =>
    candidate.amount >= asked && ((paid.amount - 1n) * candidate.rate.num) / candidate.rate.den < asked;
  if (cross && reaches(chosen)) {
    const candidates = decision.candidates.map((candidate) =>
      candidate.asset.code === assets.BTC.code && candidate.amount !== asked && reaches(candidate)
        ? { ...candidate, amount: asked }
        : candidate,
    );
    return { ...decision, candidates, chosen: candidates[0] ?? null };
  }
  // The least payment amount whose conversion reaches the invoice's: asked ÷ rate, rounded up.
  const { num, den } = chosen.rate;
  const least = num > 0n ? (asked * den + num - 1n) / num : null;
  const pays =
    cross && least !== null ? ` (${formatAmount(least, paid.asset)} ${paid.asset.code} at the rate now)` : "";
  return refuse(
    "parameter_invalid",
    `destination.invoice asks ${formatAmount(asked, assets.BTC)} BTC${pays}; this payment would send ${formatAmount(chosen.amount, assets.BTC)} BTC on ${chosen.rail}`,
    "amount", // what the payer can change: the invoice's amount is fixed
  );
}
