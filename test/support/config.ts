// The tests' configuration: loadConfig with the request rate limits off unless a test sets them, and the fiat rail's
// pass over its kept fees off. Development's default limits (gateway/http/rate-limit.ts) would answer 429 to the suites
// that send hundreds of requests a second from one key on 127.0.0.1; test/http/rate-limit.test.ts sets its own limits
// and checks the defaults.
import { type Config, loadConfig, rateLimitsOffEnv } from "../../gateway/app/config.ts";

export function testConfig(env: Record<string, string | undefined>): Config {
  const config = loadConfig({ ...rateLimitsOffEnv, ...env });
  // The fiat rail's pass over the fees Stripe refused to tell off: a test runs it itself (bookParkedFees), which a pass
  // of the rail's own, every minute, would race for the fee it keeps.
  if (config.fiat.kind !== "on") return config;
  return { ...config, fiat: { ...config.fiat, parkedFeesPassMs: null } };
}

/** What production must be given to start (its own database and chain; loadConfig refuses it otherwise), for tests. */
export const productionEnv: Readonly<Record<string, string>> = {
  SWITCHYARD_MODE: "production",
  DATABASE_URL: "postgres://switchyard@127.0.0.1:1/switchyard",
  EVM_RPC_URL: "http://127.0.0.1:1",
  EVM_HOT_WALLET_KEY: `0x${"22".repeat(32)}`,
  EVM_TOKEN_ADDRESS: `0x${"33".repeat(20)}`,
  PRICE_FEEDS: JSON.stringify({ ETH: `0x${"44".repeat(20)}` }),
};
