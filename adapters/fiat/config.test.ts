import { describe, expect, it } from "vitest";
import { FiatConfigError, loadFiatConfig } from "./config.ts";

describe("loadFiatConfig", () => {
  it("is off, and says why, without a Stripe key", () => {
    expect(loadFiatConfig({})).toEqual({
      kind: "off",
      reason: "no STRIPE_SECRET_KEY configured: the fiat rail (Stripe) is off",
    });
  });

  it("reads a key, rotating webhook secrets, stripe-mock's address and a fee schedule", () => {
    const config = loadFiatConfig({
      STRIPE_SECRET_KEY: "sk_test_123",
      STRIPE_WEBHOOK_SECRETS: "whsec_new, whsec_old",
      STRIPE_API_HOST: "127.0.0.1",
      STRIPE_API_PORT: "12111",
      STRIPE_API_PROTOCOL: "http",
      FIAT_FEE_PPM: "25000",
      FIAT_AMOUNT_MIN: "100",
    });
    expect(config).toEqual({
      kind: "on",
      client: {
        apiKey: "sk_test_123",
        host: "127.0.0.1",
        port: 12111,
        protocol: "http",
        requestTimeoutMs: 10_000,
        networkRetriesMax: 2,
      },
      webhook: { secrets: ["whsec_new", "whsec_old"], toleranceSeconds: 300 },
      feeSchedule: { feePpm: 25_000n, feeFixed: 30n, amountMin: 100n, amountMax: 99_999_999n },
      liquidity: "balance",
    });
  });

  it("refuses a key without webhook secrets, bad secrets, bad keys and bad fee schedules", () => {
    expect(() => loadFiatConfig({ STRIPE_SECRET_KEY: "sk_test_1" })).toThrow(FiatConfigError);
    expect(() =>
      loadFiatConfig({ STRIPE_SECRET_KEY: "sk_test_1", STRIPE_WEBHOOK_SECRETS: "secret" }),
    ).toThrow(/whsec_/);
    expect(() =>
      loadFiatConfig({ STRIPE_SECRET_KEY: "pk_test_1", STRIPE_WEBHOOK_SECRETS: "whsec_1" }),
    ).toThrow(/STRIPE_SECRET_KEY/);
    expect(() =>
      loadFiatConfig({
        STRIPE_SECRET_KEY: "sk_test_1",
        STRIPE_WEBHOOK_SECRETS: "whsec_1",
        FIAT_FEE_PPM: "1.5",
      }),
    ).toThrow(/FIAT_FEE_PPM/);
    for (const refused of ["", " 7", "0x10", "1e3", "1000000000000000"])
      expect(
        () =>
          loadFiatConfig({
            STRIPE_SECRET_KEY: "sk_test_1",
            STRIPE_WEBHOOK_SECRETS: "whsec_1",
            FIAT_FEE_FIXED: refused,
          }),
        refused,
      ).toThrow(/FIAT_FEE_FIXED/);
    expect(() =>
      loadFiatConfig({
        STRIPE_SECRET_KEY: "sk_test_1",
        STRIPE_WEBHOOK_SECRETS: "whsec_1",
        FIAT_AMOUNT_MIN: "0",
      }),
    ).toThrow(/amount_min_not_positive/);
  });
});
