// /v1/refunds: money given back to whoever paid. Create against a paid invoice (`invoice`: Stripe refunds the
// PaymentIntent; Lightning pays a BOLT11 invoice the payer gives as `destination`; USDC goes back to an address that
// paid, the first unless `destination` names another) or a succeeded internal payment (`payment`: moved back
// between the two accounts); retrieve; list (Stripe's convention, newest first, `status`, `invoice`, `payment`).
// With an Idempotency-Key (claimed first, as on most routes) a repeat is the same refund.
// Another tenant's invoice, payment or refund is not found, never forbidden.
import fp from "fastify-plugin";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { assetByCode, formatAmount } from "../../../core/index.ts";
import {
  type CreateRefundResult,
  createRefund,
  getRefund,
  type Refund,
  RefundContendedError,
  type RefundDestination,
  type RefundRow,
  type RefundsDeps,
  refundFromRow,
} from "../../payments/index.ts";
import { requireScope, tenantOf } from "../auth.ts";
import { ApiError, type ApiErrorCode, overloaded } from "../errors.ts";
import { clientGone, listPage, listParams, listQuery, listView, statusParam } from "../lists.ts";
import { bolt11Destination, presentEvidence, presentNetworkFee } from "../present.ts";
import {
  bolt11Shape,
  checksummedAddress,
  decimalAmount,
  documented,
  errorView,
  evidenceView,
  idParams,
  metadataSchema,
  networkFeeView,
} from "../schemas.ts";

export type RefundRoutesOptions = { refunds: RefundsDeps };

/** A route's business refusals, for the OpenAPI document (openapi.ts files each under its status). */
const refusals = (...codes: ApiErrorCode[]): Record<never, never> => ({ "x-error-codes": codes });

const invoiceId = z.string().regex(/^inv_[0-9a-z]{26}$/, "an invoice id (inv_…)");
const paymentId = z.string().regex(/^pay_[0-9a-z]{26}$/, "a payment id (pay_…)");

// Exactly one of invoice and payment, checked by the route (parameter_missing, parameter_invalid) and stated in the
// document, so that a client generator or a fuzzer does not send both, or neither.
export const createRefundBody = documented(
  z.strictObject({
    /** The paid invoice to refund; or `payment`. Exactly one of the two. */
    invoice: invoiceId.optional(),
    /** The succeeded payment to refund (between two accounts only); or `invoice`. */
    payment: paymentId.optional(),
    /** A decimal in the asset's major unit; absent: all that is left to refund. */
    amount: decimalAmount().optional(),
    reason: z.enum(["duplicate", "fraudulent", "requested_by_customer"]).optional(),
    metadata: metadataSchema.optional(),
    /**
     * Where the rail pays the refund, when it cannot go back the way it came: Lightning, an invoice of the payer's;
     * USDC, which of the addresses that paid the invoice (absent: the first that paid).
     */
    destination: z
      .discriminatedUnion("type", [
        z.strictObject({
          type: z.literal("bolt11"),
          // As a payment's bolt11 destination takes it (schemas.ts).
          invoice: z.string().regex(bolt11Shape, "a BOLT11 invoice"),
        }),
        z.strictObject({ type: z.literal("evm_address"), address: checksummedAddress }),
      ])
      .optional(),
  }),
  { oneOf: [{ required: ["invoice"] }, { required: ["payment"] }] },
);
export type CreateRefundBody = z.infer<typeof createRefundBody>;

export const refundView = z.object({
  id: z.string(),
  object: z.literal("refund"),
  status: z.enum(["pending", "succeeded", "failed"]),
  amount: z.string(),
  asset: z.string(),
  /** What was refunded: one of the two is set. */
  invoice: z.string().nullable(),
  payment: z.string().nullable(),
  /** The tenant's account the money left. */
  account: z.string(),
  rail: z.string(),
  reason: z.enum(["duplicate", "fraudulent", "requested_by_customer"]).nullable(),
  destination: z
    .union([
      z.object({ type: z.literal("bolt11"), invoice: z.string() }),
      z.object({ type: z.literal("evm_address"), address: z.string(), chain_id: z.number().nullable() }),
    ])
    .nullable(),
  /** The rail's name for the refund: a Stripe refund id (re_…), a Lightning payment hash, a transaction hash. */
  rail_reference: z.string().nullable(),
  evidence: evidenceView.nullable(),
  /** What the rail paid to move the refund, in the rail's asset; the platform's, not charged to the account. */
  fee: z.string().nullable(),
  /** What it paid in another asset than its rail's: an on-chain refund's gas (ETH), as booked; the platform's too. */
  network_fee: networkFeeView.nullable(),
  failure: z.object({ code: z.string(), message: z.string() }).nullable(),
  metadata: z.record(z.string(), z.string()),
  created_at: z.string(),
  updated_at: z.string(),
});
export type RefundView = z.infer<typeof refundView>;

export const listRefundsQuery = listQuery({
  idPrefix: "rfd",
  extra: {
    status: statusParam(["pending", "succeeded", "failed"]),
    invoice: invoiceId.optional(),
    payment: paymentId.optional(),
  },
});

function presentDestination(destination: RefundDestination): NonNullable<RefundView["destination"]> {
  switch (destination.kind) {
    case "bolt11":
      return { type: "bolt11", invoice: destination.invoice };
    case "evm_address":
      return { type: "evm_address", address: destination.address, chain_id: destination.chainId ?? null };
  }
}

export function presentRefund(refund: Refund): RefundView {
  const scale = assetByCode(refund.assetCode)?.scale ?? 0;
  return {
    id: refund.id,
    object: "refund",
    status: refund.status,
    amount: formatAmount(refund.amount, { scale }),
    asset: refund.assetCode,
    invoice: refund.target.kind === "invoice" ? refund.target.invoiceId : null,
    payment: refund.target.kind === "payment" ? refund.target.paymentId : null,
    account: refund.accountId,
    rail: refund.rail,
    reason: refund.reason,
    destination: refund.destination === null ? null : presentDestination(refund.destination),
    rail_reference: refund.railReference,
    evidence: refund.evidence === null ? null : presentEvidence(refund.evidence),
    // An invoice's asset is its rail's: the fee is in the refund's asset.
    fee: refund.fee === null ? null : formatAmount(refund.fee, { scale }),
    network_fee: refund.networkFee === null ? null : presentNetworkFee(refund.networkFee),
    failure:
      refund.failureCode === null ? null : { code: refund.failureCode, message: refund.failureMessage ?? "" },
    metadata: refund.metadata,
    created_at: refund.createdAt.toISOString(),
    updated_at: refund.updatedAt.toISOString(),
  };
}

/** The refund written, or the refusal as the API error it is. */
function refundOf(result: CreateRefundResult): Refund {
  if (result.ok) return result.refund;
  throw new ApiError(
    result.refusal,
    result.message,
    result.param === undefined ? {} : { param: result.param },
  );
}

function destinationOf(body: CreateRefundBody["destination"]): RefundDestination | null {
  if (body === undefined) return null;
  if (body.type === "evm_address") return { kind: "evm_address", address: body.address as `0x${string}` };
  return bolt11Destination(body.invoice);
}

const plugin: FastifyPluginAsyncZod<RefundRoutesOptions> = async (app, options) => {
  const deps = options.refunds;

  app.post(
    "/refunds",
    {
      schema: {
        body: createRefundBody,
        response: { 201: refundView, "4xx": errorView },
        ...refusals(
          "invoice_not_found",
          "payment_not_found",
          "invoice_not_paid",
          "payment_not_succeeded",
          "refund_unsupported",
          "rail_unavailable",
          "refund_exceeds_remaining",
          "amount_not_a_decimal",
          "amount_not_positive",
          "amount_too_precise",
          "amount_too_large",
          "insufficient_funds",
          "insufficient_liquidity",
        ),
      },
      // Moves money: a retry without a key would refund twice.
      config: { idempotencyRequired: true, errorCodes: ["idempotency_key_missing"] },
    },
    async (request, reply) => {
      const { body } = request;
      if (body.invoice === undefined && body.payment === undefined)
        throw new ApiError("parameter_missing", "give the invoice or the payment to refund", {
          param: "invoice",
        });
      if (body.invoice !== undefined && body.payment !== undefined)
        throw new ApiError("parameter_invalid", "give the invoice or the payment to refund, not both", {
          param: "payment",
        });
      // The route's scope (invoices) gives back money received; a payment's refund reverses money a payment moved
      // out, which takes the payments scope too (else an invoices-only key could undo a payments key's transfers).
      if (body.payment !== undefined)
        try {
          requireScope(request, "payments");
        } catch (error) {
          request.idempotencyOutcome = "refused"; // nothing was done: the key stays free for a key with the scope
          throw error;
        }
      const result = await createRefund(deps, {
        tenantId: tenantOf(request).id,
        target:
          body.invoice !== undefined
            ? { kind: "invoice", invoiceId: body.invoice }
            : { kind: "payment", paymentId: body.payment ?? "" },
        amount: body.amount ?? null,
        reason: body.reason ?? null,
        metadata: body.metadata ?? {},
        destination: destinationOf(body.destination),
        idempotencyKey: request.idempotencyKey,
        requestSha256: request.idempotencyDigest,
      }).catch((error: unknown) => {
        // Other refunds of the same invoice kept changing what is left while this one was computed: nothing written.
        if (error instanceof RefundContendedError)
          throw overloaded(
            "other refunds of this target are being written; retry after the seconds in Retry-After",
          );
        throw error;
      });
      // The key is another request's refund (past its record's 24 hours): this request's claim is given back.
      if (!result.ok && result.refusal === "idempotency_key_reused") request.idempotencyOutcome = "refused";
      return reply.code(201).send(presentRefund(refundOf(result)));
    },
  );

  app.get(
    "/refunds/:id",
    {
      schema: {
        // An id of the refund's shape but no refund of the tenant's (a mistyped one too) is 404, as invoices' are.
        params: idParams("rfd"),
        response: { 200: refundView, "4xx": errorView },
      },
    },
    async (request) => {
      const { id } = request.params;
      const refund = await getRefund(deps.db, { tenantId: tenantOf(request).id, id });
      if (refund === null) throw new ApiError("refund_not_found", `no refund "${id}"`);
      return presentRefund(refund);
    },
  );

  app.get(
    "/refunds",
    { schema: { querystring: listRefundsQuery, response: { 200: listView(refundView), "4xx": errorView } } },
    async (request) => {
      const { query } = request;
      return listPage(
        deps.db,
        {
          table: "refunds",
          tenantColumn: "tenant_id",
          noun: "refund",
          equals: { status: query.status, invoice_id: query.invoice, payment_id: query.payment },
          map: (row: RefundRow) => presentRefund(refundFromRow(row)),
        },
        {
          tenantId: tenantOf(request).id,
          url: "/v1/refunds",
          params: listParams(query),
          gone: clientGone(request),
        },
      );
    },
  );
};

export const refundRoutes = fp(plugin, {
  name: "switchyard-refunds",
  encapsulate: true,
  dependencies: ["switchyard-auth"],
  decorators: { request: ["tenant"] },
});
