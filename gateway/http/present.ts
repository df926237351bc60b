// From the gateway's records to the API's JSON: bigints become decimal strings, names become snake_case.
import type { Destination, SettlementEvidence } from "../../core/index.ts";
import { assetByCode, formatAmount } from "../../core/index.ts";
import type { Attempt, Payment } from "../payments/index.ts";
import type { CostBreakdown, RouteDecision } from "../router/types.ts";
import type { CreatePaymentBody, PaymentView } from "./schemas.ts";

const microUsd = { scale: 6 };

export function destinationFromBody(body: CreatePaymentBody["destination"]): Destination {
  switch (body.type) {
    case "account":
      return { kind: "account", accountId: body.account };
    case "evm_address":
      return { kind: "evm_address", address: body.address as `0x${string}` };
    case "evm_split":
      return { kind: "evm_split", splitId: body.split_id as `0x${string}` };
    case "bolt11":
      return { kind: "bolt11", invoice: body.invoice };
    case "lightning_node":
      return { kind: "lightning_node", pubkey: body.pubkey };
    case "stripe_account":
      return { kind: "stripe_account", accountId: body.account };
  }
}

export function presentDestination(destination: Destination): Record<string, string> {
  switch (destination.kind) {
    case "account":
      return { type: "account", account: destination.accountId };
    case "evm_address":
      return { type: "evm_address", address: destination.address };
    case "evm_split":
      return { type: "evm_split", split_id: destination.splitId };
    case "bolt11":
      return { type: "bolt11", invoice: destination.invoice };
    case "lightning_node":
      return { type: "lightning_node", pubkey: destination.pubkey };
    case "stripe_account":
      return { type: "stripe_account", account: destination.accountId };
  }
}

function presentCost(cost: CostBreakdown) {
  return {
    network_usd: formatAmount(cost.networkMicroUsd, microUsd),
    provider_usd: formatAmount(cost.providerMicroUsd, microUsd),
    fx_usd: formatAmount(cost.fxMicroUsd, microUsd),
    failure_usd: formatAmount(cost.failureMicroUsd, microUsd),
    total_usd: formatAmount(cost.totalMicroUsd, microUsd),
  };
}

export function presentRoute(decision: RouteDecision) {
  return {
    chosen: decision.chosen?.rail ?? null,
    candidates: decision.candidates.map((candidate) => ({
      rail: candidate.rail,
      kind: candidate.kind,
      cost: presentCost(candidate.cost),
      latency_ms: candidate.latencyMs,
    })),
    excluded: decision.excluded.map((exclusion) => ({
      rail: exclusion.rail,
      reason: exclusion.reason,
      detail: exclusion.detail,
    })),
  };
}

function presentEvidence(evidence: SettlementEvidence) {
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

function presentAttempt(attempt: Attempt, scale: number) {
  return {
    id: attempt.id,
    rail: attempt.rail,
    status: attempt.status,
    amount: formatAmount(attempt.amount, { scale }),
    fee: attempt.fee === null ? null : formatAmount(attempt.fee, { scale }),
    evidence: attempt.evidence === null ? null : presentEvidence(attempt.evidence),
    failure:
      attempt.failureCode === null
        ? null
        : { code: attempt.failureCode, message: attempt.failureMessage ?? "" },
  };
}

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
    attempts: payment.attempts.map((attempt) => presentAttempt(attempt, scale)),
    failure:
      payment.failureCode === null
        ? null
        : { code: payment.failureCode, message: payment.failureMessage ?? "" },
    metadata: payment.metadata,
    created_at: payment.createdAt.toISOString(),
    updated_at: payment.updatedAt.toISOString(),
  };
}
