// A rail that is not one of Switchyard's own, built only from core's Rail contract, for the test that adding a
// rail is one module line in the composition root. It pays USDC to EVM addresses at a lower fee than the EVM
// rail (so the router picks it), takes money in for invoices, and contributes a provider webhook route.
import {
  type AttemptOutcome,
  amountMax,
  assets,
  type OutgoingAttempt,
  type Rail,
  type RailEventHandler,
  type RailRoute,
  type RailSnapshot,
  type ReceiveOutcome,
  type ReceiveRequest,
} from "../../core/index.ts";
import type { App } from "../../gateway/app.ts";
import { typedClient } from "./api.ts";

export type ToyRail = Rail & {
  /** What the toy paid out, by attempt id (execute is idempotent per attempt). */
  readonly payouts: ReadonlyMap<string, { amount: bigint; to: string }>;
  /** The references it was asked to receive for, with their amounts. */
  readonly offers: ReadonlyMap<string, bigint>;
};

export const toyWebhookPath = "/v1/webhooks/toy";
export const toyWebhookSecret = "toy-secret";

export function createToyRail(params: {
  id: string;
  feeFixed: bigint;
  /** When given, every payout waits for it: a slow rail. */
  gate?: () => Promise<void>;
}): ToyRail {
  const payouts = new Map<string, { amount: bigint; to: string }>();
  const offers = new Map<string, bigint>();
  let handler: RailEventHandler | null = null;
  let balance = 0n;

  // The toy's provider tells it that money came in: {"reference": "...", "amount": "123"}, with a shared secret.
  const route: RailRoute = {
    method: "POST",
    path: toyWebhookPath,
    bodyLimitBytes: 4_096,
    async handle(request) {
      if (request.headers["x-toy-secret"] !== toyWebhookSecret)
        return { status: 401, body: { error: { code: "signature_invalid", message: "bad toy secret" } } };
      const body = JSON.parse(request.rawBody.toString("utf8")) as { reference: string; amount: string };
      if (handler === null) return { status: 503, body: { error: { code: "not_started", message: "" } } };
      const amount = BigInt(body.amount);
      await handler({
        kind: "received",
        reference: body.reference,
        amount,
        evidence: { rail: "external", railId: params.id, reference: `toy_in_${body.reference}` },
      });
      balance += amount;
      return { status: 200, body: { received: true } };
    },
  };

  return {
    id: params.id,
    kind: "evm",
    asset: assets.USDC,
    payouts,
    offers,
    routes: [route],
    async start() {},
    async stop() {},
    snapshot(): RailSnapshot {
      return {
        rail: params.id,
        kind: "evm",
        asset: assets.USDC,
        available: true,
        reaches: ["evm_address"],
        amountMin: 1n,
        amountMax,
        liquidity: null,
        feeFixed: params.feeFixed,
        feePpm: 0n,
        networkFeeMicroUsd: 0n,
        latencyMs: 10,
        takenAtMs: Date.now(),
      };
    },
    async execute(attempt: OutgoingAttempt): Promise<AttemptOutcome> {
      if (attempt.destination.kind !== "evm_address")
        return { status: "failed", code: "unreachable_destination", message: "toy", retryElsewhere: true };
      await params.gate?.();
      if (!payouts.has(attempt.id)) {
        payouts.set(attempt.id, { amount: attempt.amount, to: attempt.destination.address });
        balance -= attempt.amount;
      }
      return {
        status: "succeeded",
        evidence: { rail: "external", railId: params.id, reference: `toy_out_${attempt.id}` },
        fee: params.feeFixed,
      };
    },
    onEvent(next) {
      handler = next;
    },
    async balance() {
      return balance;
    },
    async receive(request: ReceiveRequest): Promise<ReceiveOutcome> {
      offers.set(request.reference, request.amount);
      return {
        status: "offered",
        railReference: `toy_${request.reference}`,
        expiresAtMs: null,
        instructions: { method: "toy", pay_to: request.reference },
      };
    },
  };
}

/**
 * Gives the toy rail something to pay out of, as its provider would: an invoice of `amount` (USDC, decimal) to the
 * demo merchant on the toy, paid through the toy's webhook route.
 */
export async function fundToy(app: App, apiKey: string, amount: string): Promise<void> {
  const invoice = await typedClient(app, apiKey).POST("/v1/invoices", {
    body: { account: app.demo!.merchant.id, asset: "USDC", amount, rail: "toy" },
  });
  if (invoice.data === undefined) throw new Error(`no toy invoice: ${JSON.stringify(invoice.error)}`);
  const paid = await app.server.inject({
    method: "POST",
    url: toyWebhookPath,
    headers: { "content-type": "application/json", "x-toy-secret": toyWebhookSecret },
    payload: JSON.stringify({ reference: invoice.data.id, amount: (BigInt(amount) * 1_000_000n).toString() }),
  });
  if (paid.statusCode !== 200) throw new Error(`the toy was not funded: ${paid.body}`);
}
