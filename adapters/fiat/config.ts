// The fiat rail's settings, validated with zod from an environment record the composition root passes in
// (nothing here reads process.env). No STRIPE_SECRET_KEY: the rail is off, and the reason says so.
import { z } from "zod";
import { SwitchyardError, wholeBigint, wholeNumber } from "../../core/index.ts";
import type { StripeClientConfig } from "./client.ts";
import { defaultFiatFeeSchedule, type FiatFeeSchedule, validateFeeSchedule } from "./fees.ts";
import { signingSecretsMax, stripeSignatureToleranceSecondsDefault } from "./signature.ts";

/** Minor units, up to 15 digits. */
const minorUnits = wholeBigint(0n, 10n ** 15n - 1n);

export const fiatEnvSchema = z.object({
  /** sk_live_…, sk_test_… or a restricted key rk_…. Unset: the fiat rail is off. */
  STRIPE_SECRET_KEY: z
    .string()
    .regex(/^(sk|rk)_(test|live)_[A-Za-z0-9_]+$/, "a Stripe secret key (sk_… or rk_…)")
    .optional(),
  /** Webhook endpoint secrets, comma-separated: two during a rotation. */
  STRIPE_WEBHOOK_SECRETS: z.string().optional(),
  STRIPE_WEBHOOK_TOLERANCE_SECONDS: wholeNumber(1, 3_600).default(stripeSignatureToleranceSecondsDefault),
  /** Another API host (stripe-mock: 127.0.0.1 with its port and http). */
  STRIPE_API_HOST: z.string().min(1).optional(),
  STRIPE_API_PORT: wholeNumber(1, 65_535).optional(),
  STRIPE_API_PROTOCOL: z.enum(["http", "https"]).optional(),
  STRIPE_REQUEST_TIMEOUT_MS: wholeNumber(100, 120_000).default(10_000),
  STRIPE_NETWORK_RETRIES_MAX: wholeNumber(0, 5).default(2),
  FIAT_FEE_PPM: minorUnits.default(defaultFiatFeeSchedule.feePpm),
  FIAT_FEE_FIXED: minorUnits.default(defaultFiatFeeSchedule.feeFixed),
  FIAT_AMOUNT_MIN: minorUnits.default(defaultFiatFeeSchedule.amountMin),
  FIAT_AMOUNT_MAX: minorUnits.default(defaultFiatFeeSchedule.amountMax),
  /** "balance": payouts limited by Stripe's available balance; "not_limited" (stripe-mock reports 0). */
  FIAT_LIQUIDITY: z.enum(["balance", "not_limited"]).default("balance"),
});

export type FiatConfig =
  | { kind: "off"; reason: string }
  | {
      kind: "on";
      client: StripeClientConfig;
      webhook: { secrets: string[]; toleranceSeconds: number };
      feeSchedule: FiatFeeSchedule;
      liquidity: "balance" | "not_limited";
      /**
       * The rail's pass over the fees Stripe refused to tell (FiatRailParams.parkedFeesPassMs). Not read from the
       * environment: absent, the rail's own interval; the tests' configuration sets it null, to run the pass themselves.
       */
      parkedFeesPassMs?: number | null;
    };

export class FiatConfigError extends SwitchyardError {
  override name = "FiatConfigError";
}

export function loadFiatConfig(env: Record<string, string | undefined>): FiatConfig {
  const parsed = fiatEnvSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map((issue) => `${issue.path.join(".")}: ${issue.message}`)
      .join("; ");
    throw new FiatConfigError(`invalid fiat configuration: ${problems}`);
  }
  const e = parsed.data;
  if (e.STRIPE_SECRET_KEY === undefined)
    return { kind: "off", reason: "no STRIPE_SECRET_KEY configured: the fiat rail (Stripe) is off" };
  const secrets = (e.STRIPE_WEBHOOK_SECRETS ?? "")
    .split(",")
    .map((secret) => secret.trim())
    .filter((secret) => secret !== "");
  if (secrets.length === 0)
    throw new FiatConfigError(
      "invalid fiat configuration: STRIPE_SECRET_KEY needs STRIPE_WEBHOOK_SECRETS (charges are credited by webhook)",
    );
  if (secrets.length > signingSecretsMax)
    throw new FiatConfigError(
      `invalid fiat configuration: at most ${signingSecretsMax} STRIPE_WEBHOOK_SECRETS`,
    );
  if (secrets.some((secret) => !secret.startsWith("whsec_")))
    throw new FiatConfigError("invalid fiat configuration: STRIPE_WEBHOOK_SECRETS are whsec_… values");
  const feeSchedule: FiatFeeSchedule = {
    feePpm: e.FIAT_FEE_PPM,
    feeFixed: e.FIAT_FEE_FIXED,
    amountMin: e.FIAT_AMOUNT_MIN,
    amountMax: e.FIAT_AMOUNT_MAX,
  };
  const scheduleError = validateFeeSchedule(feeSchedule);
  if (scheduleError !== null) throw new FiatConfigError(`invalid fiat configuration: ${scheduleError}`);
  return {
    kind: "on",
    client: {
      apiKey: e.STRIPE_SECRET_KEY,
      requestTimeoutMs: e.STRIPE_REQUEST_TIMEOUT_MS,
      networkRetriesMax: e.STRIPE_NETWORK_RETRIES_MAX,
      ...(e.STRIPE_API_HOST === undefined ? {} : { host: e.STRIPE_API_HOST }),
      ...(e.STRIPE_API_PORT === undefined ? {} : { port: e.STRIPE_API_PORT }),
      ...(e.STRIPE_API_PROTOCOL === undefined ? {} : { protocol: e.STRIPE_API_PROTOCOL }),
    },
    webhook: { secrets, toleranceSeconds: e.STRIPE_WEBHOOK_TOLERANCE_SECONDS },
    feeSchedule,
    liquidity: e.FIAT_LIQUIDITY,
  };
}
