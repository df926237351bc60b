// From the API's JSON to the gateway's terms (destinations, route policies) and back from its records
// (bigints become decimal strings, names become snake_case); a service's refusal as the API error it is.
import { bolt11ErrorText, parseBolt11 } from "../../core/bolt11.ts";
import { bareBolt11 } from "../../core/destinations.ts";
import type { Destination, SettlementEvidence } from "../../core/index.ts";
import { assetByCode, formatAmount } from "../../core/index.ts";
import {
  type Attempt,
  insufficientLiquidityMessage,
  type NetworkFee,
  type Payment,
  type PaymentDestination,
} from "../payments/index.ts";
import { outOfPlayReasons } from "../router/index.ts";
import type { CostBreakdown, RouteDecision, RoutePolicy } from "../router/types.ts";
import type { Invoice } from "../settlement/index.ts";
import { ApiError, type ApiErrorCode } from "./errors.ts";
import type { ConstraintsBody, CreatePaymentBody, InvoiceView, PaymentView } from "./schemas.ts";

const microUsd = { scale: 6 };

/**
 * A caller's BOLT11 invoice as the gateway stores it and LND is handed it: bare, lower case (bareBolt11). Mixed
 * case is refused here (BIP-173; LND would refuse it at payment time), and so is what parseBolt11 cannot read (a
 * changed character, no payment hash): bad input, not a destination no rail reaches. The signature, the network
 * and the expiry are the rail's to judge. A payment's and a refund's alike.
 */
export function bolt11Destination(invoice: string): { kind: "bolt11"; invoice: string } {
  const bare = bareBolt11(invoice);
  if (bare === null)
    throw new ApiError("parameter_invalid", "a BOLT11 invoice is in lower case or in upper case, not both", {
      param: "destination.invoice",
    });
  const parsed = parseBolt11(bare);
  if (!parsed.ok)
    throw new ApiError("parameter_invalid", `destination.invoice ${bolt11ErrorText[parsed.error]}`, {
      param: "destination.invoice",
    });
  return { kind: "bolt11", invoice: bare };
}

export function destinationFromBody(body: CreatePaymentBody["destination"]): PaymentDestination {
  switch (body.type) {
    case "payee":
      return { kind: "payee", payeeId: body.payee };
    case "account":
      return { kind: "account", accountId: body.account };
    case "evm_address":
      return body.chain_id === undefined
        ? { kind: "evm_address", address: body.address as `0x${string}` }
        : { kind: "evm_address", address: body.address as `0x${string}`, chainId: body.chain_id };
    case "evm_split":
      return { kind: "evm_split", splitId: body.split_id as `0x${string}` };
    case "bolt11":
      return bolt11Destination(body.invoice);
    case "lightning_node":
      return { kind: "lightning_node", pubkey: body.pubkey };
    case "lightning_address":
      return { kind: "lightning_address", address: body.address.toLowerCase() };
    case "stripe_account":
      return { kind: "stripe_account", accountId: body.account };
  }
}

export function presentDestination(
  destination: Destination | PaymentDestination,
): Record<string, string | number> {
  switch (destination.kind) {
    case "payee":
      return { type: "payee", payee: destination.payeeId };
    case "account":
      return { type: "account", account: destination.accountId };
    case "evm_address":
      return destination.chainId === undefined
        ? { type: "evm_address", address: destination.address }
        : { type: "evm_address", address: destination.address, chain_id: destination.chainId };
    case "evm_split":
      return { type: "evm_split", split_id: destination.splitId };
    case "bolt11":
      return { type: "bolt11", invoice: destination.invoice };
    case "lightning_node":
      return { type: "lightning_node", pubkey: destination.pubkey };
    case "lightning_address":
      return { type: "lightning_address", address: destination.address };
    case "stripe_account":
      return { type: "stripe_account", account: destination.accountId };
  }
}

function presentCost(cost: CostBreakdown) {
  return {
    network_usd: formatAmount(cost.networkMicroUsd, microUsd),
    provider_usd: formatAmount(cost.providerMicroUsd, microUsd),
    fx_usd: formatAmount(cost.fxMicroUsd, microUsd),
    fee_usd: formatAmount(cost.feeMicroUsd, microUsd),
    failure_usd: formatAmount(cost.failureMicroUsd, microUsd),
    latency_usd: formatAmount(cost.latencyMicroUsd, microUsd),
    total_usd: formatAmount(cost.totalMicroUsd, microUsd),
  };
}

/** The route as the API shows it; made once for each decision (payments routed alike share one: routing.ts). */
export function presentRoute(decision: RouteDecision): RouteView {
  const made = routeViews.get(decision);
  if (made !== undefined) return made;
  const view = routeViewOf(decision);
  routeViews.set(decision, view);
  return view;
}

type RouteView = ReturnType<typeof routeViewOf>;

/** Views shared by the answers that show them: read-only, as JSON.stringify and the response schema read them. */
const routeViews = new WeakMap<RouteDecision, RouteView>();

function routeViewOf(decision: RouteDecision) {
  return {
    chosen: decision.chosen?.rail ?? null,
    candidates: decision.candidates.map((candidate) => ({
      rail: candidate.rail,
      kind: candidate.kind,
      destination: presentDestination(candidate.destination),
      amount: formatAmount(candidate.amount, candidate.asset),
      asset: candidate.asset.code,
      cost: presentCost(candidate.cost),
      fee_cap_usd: formatAmount(candidate.feeCapMicroUsd, microUsd),
      latency_ms: candidate.latencyMs,
    })),
    excluded: decision.excluded.map((exclusion) => ({
      rail: exclusion.rail,
      reason: exclusion.reason,
      // Stored decisions from before #22 named the rail's balance (a shared fact): the reason alone is shown.
      detail:
        exclusion.reason === "insufficient_liquidity"
          ? "the amount is above what the rail can send now"
          : exclusion.detail,
    })),
  };
}

export function presentEvidence(evidence: SettlementEvidence) {
  switch (evidence.rail) {
    case "internal":
      return { rail: "internal" as const };
    case "evm":
      return {
        rail: "evm" as const,
        chain_id: evidence.chainId,
        tx_hash: evidence.txHash,
        log_index: evidence.logIndex,
        block_number: evidence.blockNumber.toString(),
      };
    case "lightning":
      return { rail: "lightning" as const, payment_hash: evidence.paymentHash, preimage: evidence.preimage };
    case "fiat":
      return { rail: "fiat" as const, psp_id: evidence.pspId };
    case "external":
      return { rail: "external" as const, rail_id: evidence.railId, reference: evidence.reference };
  }
}

/** An attempt, its amount and fee in its rail's asset (another than the payment's for a cross-asset payout). */
function presentAttempt(attempt: Attempt, asset: { code: string; scale: number }) {
  return {
    id: attempt.id,
    rail: attempt.rail,
    status: attempt.status,
    asset: asset.code,
    amount: formatAmount(attempt.amount, asset),
    fee: attempt.fee === null ? null : formatAmount(attempt.fee, asset),
    network_fee: attempt.networkFee === null ? null : presentNetworkFee(attempt.networkFee),
    amount_reversed: formatAmount(attempt.amountReversed, asset),
    evidence: attempt.evidence === null ? null : presentEvidence(attempt.evidence),
    failure:
      attempt.failureCode === null
        ? null
        : { code: attempt.failureCode, message: failureText(attempt.failureCode, attempt.failureMessage) },
  };
}

/** A fee paid in an asset of its own; an asset this build does not know (it cannot have booked one) in minor units. */
export function presentNetworkFee(fee: NetworkFee) {
  return {
    asset: fee.assetCode,
    amount: formatAmount(fee.amount, { scale: assetByCode(fee.assetCode)?.scale ?? 0 }),
  };
}

/** A failure's text; a rail's shortfall in the fixed words (a rail's own text, stored before #22, may carry its balance). */
function failureText(code: string, message: string | null): string {
  return code === "insufficient_liquidity" ? insufficientLiquidityMessage : (message ?? "");
}

/**
 * A time as the API writes it (Date.toISOString), the last one's text kept: the payments one batch answers share one
 * time, created and updated alike, so a batch makes it once rather than twice for each payment (two toISOString
 * calls were 1.1 of the 3.7 µs an internal payment's answer took to make; issue #19). An invalid Date still throws.
 */
function isoTextOf(date: Date): string {
  const ms = date.getTime();
  if (ms !== lastIso.ms) {
    lastIso.text = date.toISOString();
    lastIso.ms = ms;
  }
  return lastIso.text;
}

const lastIso = { ms: Number.NaN, text: "" };

export function presentPayment(payment: Payment): PaymentView {
  const scale = assetByCode(payment.assetCode)?.scale ?? 0;
  return {
    id: payment.id,
    object: "payment",
    status: payment.status,
    amount: formatAmount(payment.amount, { scale }),
    asset: payment.assetCode,
    source: { account: payment.sourceAccountId },
    destination: presentDestination(payment.destination),
    rail: payment.rail,
    route: payment.decision === null ? null : presentRoute(payment.decision),
    attempts: payment.attempts.map((attempt) =>
      presentAttempt(
        attempt,
        payment.decision?.candidates[attempt.seq]?.asset ?? { code: payment.assetCode, scale },
      ),
    ),
    failure:
      payment.failureCode === null
        ? null
        : { code: payment.failureCode, message: failureText(payment.failureCode, payment.failureMessage) },
    metadata: payment.metadata,
    created_at: isoTextOf(payment.createdAt),
    updated_at: isoTextOf(payment.updatedAt),
  };
}

export function presentInvoice(invoice: Invoice): InvoiceView {
  const scale = assetByCode(invoice.assetCode)?.scale ?? 0;
  return {
    id: invoice.id,
    object: "invoice",
    status: invoice.status,
    account: invoice.accountId,
    amount: formatAmount(invoice.amount, { scale }),
    asset: invoice.assetCode,
    rail: invoice.rail,
    description: invoice.description,
    // An EVM invoice's chain id is kept as text, as every instruction is (core's ReceiveOutcome); answered a number
    // (at most 2^53 - 1, as config.ts takes it), as a payment's evidence and destination answer it.
    instructions: /^[0-9]{1,16}$/.test(invoice.instructions.chain_id ?? "")
      ? { ...invoice.instructions, chain_id: Number(invoice.instructions.chain_id) }
      : invoice.instructions,
    received_amount: invoice.receivedAmount === null ? null : formatAmount(invoice.receivedAmount, { scale }),
    payer: invoice.payer,
    expires_at: invoice.expiresAt?.toISOString() ?? null,
    created_at: invoice.createdAt.toISOString(),
    paid_at: invoice.paidAt?.toISOString() ?? null,
  };
}

export function policyFrom(constraints: ConstraintsBody | undefined): RoutePolicy {
  if (constraints === undefined) return {};
  const microUsd = constraints.max_fee_usd === undefined ? undefined : usdToMicro(constraints.max_fee_usd);
  return {
    ...(constraints.max_fee_bps === undefined ? {} : { maxFeeBps: constraints.max_fee_bps }),
    ...(microUsd === undefined ? {} : { maxFeeMicroUsd: microUsd }),
    ...(constraints.max_latency_ms === undefined ? {} : { maxLatencyMs: constraints.max_latency_ms }),
    ...(constraints.rails?.allow === undefined ? {} : { allowedRails: constraints.rails.allow }),
    ...(constraints.rails?.deny === undefined ? {} : { deniedRails: constraints.rails.deny }),
  };
}

/** "0.25" USD → 250000 micro-USD; the schema allows 6 decimals at most, so this is exact. */
function usdToMicro(text: string): bigint {
  const [whole = "0", fraction = ""] = text.split(".");
  return BigInt(whole) * 1_000_000n + BigInt(fraction.padEnd(6, "0"));
}

/**
 * `no_route` because every rail that reaches the destination takes less in one payment (each rail's snapshot's
 * amountMax, checked by the router before any rail is asked): 400 `amount_too_large`, the route attached. The rails
 * that never had a chance (outOfPlayReasons) do not count.
 */
function amountAboveEveryMaximum(decision: RouteDecision): boolean {
  const inReach = decision.excluded.filter((exclusion) => !outOfPlayReasons.has(exclusion.reason));
  return inReach.length > 0 && inReach.every((exclusion) => exclusion.reason === "above_maximum");
}

/** A refusal from a service (payments, quotes, invoices) as the API error it is, with the route when there is one. */
export function refusalError(result: {
  refusal: ApiErrorCode;
  message: string;
  param?: string;
  decision?: RouteDecision;
}): ApiError {
  if (
    result.refusal === "no_route" &&
    result.decision !== undefined &&
    amountAboveEveryMaximum(result.decision)
  )
    return new ApiError(
      "amount_too_large",
      "the amount is above the most every rail that reaches the destination takes in one payment",
      { param: "amount", extra: { route: presentRoute(result.decision) } },
    );
  return new ApiError(result.refusal, result.message, {
    ...(result.param === undefined ? {} : { param: result.param }),
    ...(result.decision === undefined ? {} : { extra: { route: presentRoute(result.decision) } }),
  });
}
