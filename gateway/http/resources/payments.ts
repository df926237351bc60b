// POST /v1/payments and GET /v1/payments/:id. A handler parses (the schemas did), calls one function, maps
// the result.
import fp from "fastify-plugin";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import type { Db } from "../../db/index.ts";
import {
  type CreatePaymentResult,
  createPayment,
  getPayment,
  type Payment,
  PaymentInvariantError,
  type PaymentsDeps,
  paymentFailureCodes,
  paymentRefusals,
  paymentRequestDigest,
  type StoredAnswer,
} from "../../payments/index.ts";
import { tenantOf } from "../auth.ts";
import { ApiError, errorStatus } from "../errors.ts";
import { answerFromRecord, isKeptAnswer, sendReplay, storedRecord } from "../idempotency.ts";
import { destinationFromBody, policyFrom, presentPayment, refusalError } from "../present.ts";
import { createPaymentBody, errorView, idParams, paymentView } from "../schemas.ts";

export type PaymentRoutesOptions = { db: Db; payments: PaymentsDeps; idempotencyInProgressTimeoutMs: number };

/** The longest `Prefer: wait=N` honoured (the request's own timeout is longer). */
export const preferredWaitMsMax = 25_000;

/**
 * How long the client is willing to wait for a slow rail (RFC 7240): `respond-async` alone is 0 (answered 202 once
 * the reservation is durable), `wait=N` is N seconds (at most preferredWaitMsMax); undefined without either.
 */
export function preferredWaitMs(header: string | string[] | undefined): number | undefined {
  if (header === undefined) return undefined;
  let async = false;
  let waitMs: number | undefined;
  for (const part of (Array.isArray(header) ? header.join(",") : header).split(",")) {
    const [name, value] = part
      .trim()
      .toLowerCase()
      .split("=", 2)
      .map((token) => token.trim());
    if (name === "respond-async") async = true;
    if (name === "wait" && value !== undefined && /^\d{1,6}$/.test(value))
      waitMs = Math.min(Number(value) * 1000, preferredWaitMsMax);
  }
  return waitMs ?? (async ? 0 : undefined);
}

const preferenceApplied = (waitMs: number) => (waitMs === 0 ? "respond-async" : `wait=${waitMs / 1000}`);

/** The status of the answer to a payment's request: 201 succeeded, 202 processing, the failure code's once failed. */
const answerStatusOf = (payment: Pick<Payment, "status" | "failureCode">): number =>
  payment.status === "failed"
    ? errorStatus[payment.failureCode ?? "rejected"] // a PaymentFailureCode, itself an ApiErrorCode
    : payment.status === "succeeded"
      ? 201
      : 202;

/** The status answerOf gives a payment ending so, or null when an Idempotency-Key does not keep such an answer. */
export function keptStatusOf(payment: Pick<Payment, "status" | "failureCode">): number | null {
  const status = answerStatusOf(payment);
  return isKeptAnswer(status) ? status : null;
}

/**
 * What a payment's request is answered, as the JSON text sent (and kept with an Idempotency-Key): 201 once it
 * succeeded, 202 while it is processing, the failure's error (with the payment) once it failed. Sent as text, so
 * the response schema (kept for the OpenAPI document) does not serialize it a second time.
 */
export function answerOf(payment: Payment): StoredAnswer {
  const view = presentPayment(payment);
  const status = answerStatusOf(payment);
  if (payment.status !== "failed") return { status, body: jsonWithRoute(view, view) };
  const error = new ApiError(
    payment.failureCode ?? "rejected",
    payment.failureMessage ?? "the payment failed",
    {
      extra: { payment: view },
    },
  );
  return { status, body: jsonWithRoute(error.body(), view) };
}

/**
 * JSON.stringify(`value`) — a payment's view, or an error carrying it — byte for byte, with the route's text made once
 * for each route view (payments routed alike share one: presentRoute) rather than once for each answer: the route is
 * over half of an internal payment's answer (714 of 1,270 bytes), and answering one (its view made, then its text)
 * took 2.75 µs this way against 3.7 µs (issue #19). The view's `route` is swapped for a mark while the rest is made,
 * then the mark, found with its key, is replaced by the route's text. Inside a JSON string every `"` is escaped,
 * so the key and the mark are found nowhere else; the route comes before the fields a caller writes in any case.
 */
function jsonWithRoute(value: unknown, view: { route: object | null }): string {
  const route = view.route;
  if (route === null) return JSON.stringify(value);
  let routeText = routeTexts.get(route);
  if (routeText === undefined) {
    routeText = JSON.stringify(route);
    routeTexts.set(route, routeText);
  }
  view.route = routeMark;
  let text: string;
  try {
    text = JSON.stringify(value);
  } finally {
    view.route = route;
  }
  const at = text.indexOf(routeMarkText);
  if (at < 0) throw new PaymentInvariantError("a payment's answer without its route");
  return `${text.slice(0, at)}"route":${routeText}${text.slice(at + routeMarkText.length)}`;
}

const routeTexts = new WeakMap<object, string>();
const routeMark = { "\u0000": "switchyard route" };
const routeMarkText = `"route":${JSON.stringify(routeMark)}`;

const plugin: FastifyPluginAsyncZod<PaymentRoutesOptions> = async (app, options) => {
  app.post(
    "/payments",
    {
      schema: { body: createPaymentBody, response: { 201: paymentView, 202: paymentView, "4xx": errorView } },
      config: {
        idempotency: "inline",
        // Moves money: a retry without a key would pay twice.
        idempotencyRequired: true,
        // Refused before anything is written, or failed once written (the payment is in the error's `payment`).
        errorCodes: ["idempotency_key_missing", ...paymentRefusals, ...paymentFailureCodes],
      },
    },
    async (request, reply) => {
      const { body } = request;
      const tenantId = tenantOf(request).id;
      const waitMs = preferredWaitMs(request.headers.prefer);
      const params = {
        ...(waitMs === undefined ? {} : { waitMs }),
        tenantId,
        asset: body.asset,
        amount: body.amount,
        sourceAccountId: body.source.account,
        destination: destinationFromBody(body.destination),
        policy: policyFrom(body.constraints),
        metadata: body.metadata ?? {},
        idempotencyKey: request.idempotencyKey,
        quoteId: body.quote ?? null,
      };
      const key = request.idempotencyKey;
      const digest = request.idempotencyDigest;
      const keyRecord = (key: string, digest: Buffer) =>
        storedRecord(options.db, {
          tenantId,
          key,
          digest,
          inProgressTimeoutMs: options.idempotencyInProgressTimeoutMs,
        });
      /**
       * The payment under the key as it stands, or one made now, asked without the key's record (gone, unusable, or
       * a 202 that told how the payment stood then), the digest kept on a payment made now. A payment the key already
       * held (`replayed`) is this request's only if it was made to this request (the digest the payment keeps,
       * migration 0030; one made before that keeps none, and passes) — checked after the payment was found, so one
       * written just before by another request (another process, another body) is caught too. Another's: 409
       * idempotency_key_reused, the request marked refused (nothing kept under the key), as while its record lived.
       */
      const paymentWithoutRecord = async (key: string, digest: Buffer): Promise<CreatePaymentResult> => {
        const found = await createPayment(options.payments, { ...params, requestSha256: digest });
        if (!found.ok || found.replayed !== true) return found;
        const made = await paymentRequestDigest(options.db, tenantId, key);
        if (made !== null && !made.equals(digest)) answerFromRecord(request, reply, { kind: "reused" });
        return found;
      };
      /** A record answered with its payment, final in the same write: that payment's answer again. */
      const replayPayment = async (paymentId: string) => {
        const payment = await getPayment(options.db, { tenantId, id: paymentId });
        if (payment === null) throw new PaymentInvariantError(`payment ${paymentId} of a key is gone`);
        return sendReplay(request, reply, answerOf(payment));
      };
      // A repeat of a request this process answered with its payment (idempotencyAnsweredWith below).
      if (request.idempotencyRemembered !== null) return replayPayment(request.idempotencyRemembered);
      let result =
        key === null || digest === null
          ? await createPayment(options.payments, params)
          : await createPayment(options.payments, {
              ...params,
              idempotencyRecord: { key, requestSha256: digest, answer: answerOf, keptStatus: keptStatusOf },
            });
      if (!result.ok && "keyTaken" in result && key !== null && digest !== null) {
        const record = await keyRecord(key, digest);
        if (record.kind === "payment") return replayPayment(record.paymentId);
        // A 202 told how the payment stood then: a repeat is answered how it stands now, as a replay.
        const current = record.kind === "answered" && record.answer.status === 202;
        const replayed = current ? null : answerFromRecord(request, reply, record);
        if (replayed !== null) return replayed;
        // Else no answer kept (its request died, a server error dropped it, past its 24 hours, pruned or not yet):
        // the payment under the key, as it stands, or one made now.
        result = await paymentWithoutRecord(key, digest);
        if (current && result.ok) return sendReplay(request, reply, answerOf(result.payment));
      }
      if (!result.ok) {
        if ("keyTaken" in result) throw new PaymentInvariantError("a taken key without its record");
        // Refused before the key was looked at, nothing written. A record under the key (this request's refusal kept
        // by another process, or another request's) answers instead, as a claimed-first route's claim would find it:
        // a replay, or 409 for another body or a request still running.
        if (key !== null && digest !== null) {
          const record = await keyRecord(key, digest);
          if (record.kind === "payment") return replayPayment(record.paymentId);
          if (record.kind === "answered" && record.answer.status === 202) {
            // A payment made under the key since this one was refused (its 202 kept): as it stands now.
            const made = await paymentWithoutRecord(key, digest);
            if (made.ok) return sendReplay(request, reply, answerOf(made.payment));
          } else {
            const replayed = answerFromRecord(request, reply, record);
            if (replayed !== null) return replayed;
          }
        }
        throw refusalError(result);
      }
      // Kept with the payment already, or to fill the record written unanswered with it (or the key's record).
      request.idempotencyOutcome = result.answer !== null ? "stored" : "unanswered";
      if (result.answer !== null) request.idempotencyAnsweredWith = result.payment.id;
      const answer = result.answer ?? answerOf(result.payment);
      // The payment under the key, not made now (its record gone, or unanswered past its timeout): a replay, as
      // Stripe marks one.
      if (result.replayed === true) reply.header("idempotent-replayed", "true");
      if (waitMs !== undefined && answer.status === 202)
        reply.header("preference-applied", preferenceApplied(waitMs));
      // JSON text already: sent as is (the type provider types the payload as the schema's object).
      return reply
        .code(answer.status)
        .type("application/json; charset=utf-8")
        .send(answer.body as never);
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
