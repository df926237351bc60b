// POST /v1/payments and GET /v1/payments/:id. A handler parses (the schemas did), calls one function, maps
// the result.
import fp from "fastify-plugin";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import type { Db } from "../../db/index.ts";
import { createPayment, getPayment, type PaymentsDeps } from "../../payments/index.ts";
import { tenantOf } from "../auth.ts";
import { ApiError } from "../errors.ts";
import { destinationFromBody, policyFrom, presentPayment, refusalError } from "../present.ts";
import { createPaymentBody, errorView, idParams, paymentView } from "../schemas.ts";

export type PaymentRoutesOptions = { db: Db; payments: PaymentsDeps };

const plugin: FastifyPluginAsyncZod<PaymentRoutesOptions> = async (app, options) => {
  app.post(
    "/payments",
    {
      schema: { body: createPaymentBody, response: { 201: paymentView, 202: paymentView, "4xx": errorView } },
    },
    async (request, reply) => {
      const { body } = request;
      const result = await createPayment(options.payments, {
        tenantId: tenantOf(request).id,
        asset: body.asset,
        amount: body.amount,
        sourceAccountId: body.source.account,
        destination: destinationFromBody(body.destination),
        policy: policyFrom(body.constraints),
        metadata: body.metadata ?? {},
        idempotencyKey: request.idempotencyKey,
        quoteId: body.quote ?? null,
      });
      if (!result.ok) throw refusalError(result);
      const view = presentPayment(result.payment);
      if (result.payment.status === "failed") {
        const code = result.payment.failureCode ?? "rejected"; // a PaymentFailureCode, itself an ApiErrorCode
        throw new ApiError(code, result.payment.failureMessage ?? "the payment failed", {
          extra: { payment: view },
        });
      }
      return reply.code(result.payment.status === "succeeded" ? 201 : 202).send(view);
    },
  );

  app.get(
    "/payments/:id",
    { schema: { params: idParams("pay"), response: { 200: paymentView, "4xx": errorView } } },
    async (request) => {
      const { id } = request.params;
      const payment = await getPayment(options.db, { tenantId: tenantOf(request).id, id });
      if (payment === null) throw new ApiError("payment_not_found", `no payment "${id}"`);
      return presentPayment(payment);
    },
  );
};

export const paymentRoutes = fp(plugin, {
  name: "switchyard-payments",
  encapsulate: true,
  dependencies: ["switchyard-auth", "switchyard-idempotency"],
  decorators: { request: ["tenant", "idempotencyKey"] },
});
