// The one place a Stripe client is built: explicit timeout and retries, and host/port/protocol for stripe-mock.
import Stripe from "stripe";

export type StripeClientConfig = {
  readonly apiKey: string;
  /** Absent: api.stripe.com over HTTPS. stripe-mock: "127.0.0.1", its port, "http". */
  readonly host?: string;
  readonly port?: number;
  readonly protocol?: "http" | "https";
  /** Per request; stripe-node's default is 80 s. */
  readonly requestTimeoutMs: number;
  /** Network retries with backoff (stripe-node adds our idempotency key to each). */
  readonly networkRetriesMax: number;
};

export function createStripeClient(config: StripeClientConfig): Stripe {
  return new Stripe(config.apiKey, {
    timeout: config.requestTimeoutMs,
    maxNetworkRetries: config.networkRetriesMax,
    telemetry: false,
    ...(config.host === undefined ? {} : { host: config.host }),
    ...(config.port === undefined ? {} : { port: config.port }),
    ...(config.protocol === undefined ? {} : { protocol: config.protocol }),
  });
}
