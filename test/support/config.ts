// The tests' configuration: loadConfig with the request rate limits off unless a test sets them. Development's
// default limits (gateway/http/rate-limit.ts) would answer 429 to the suites that send hundreds of requests a second
// from one key on 127.0.0.1; test/http/rate-limit.test.ts sets its own limits and checks the defaults.
import { type Config, loadConfig } from "../../gateway/app/config.ts";

export function testConfig(env: Record<string, string | undefined>): Config {
  return loadConfig({ RATE_LIMIT_PER_IP: "off", RATE_LIMIT_PER_KEY: "off", ...env });
}
