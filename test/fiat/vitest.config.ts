import { defineProject } from "vitest/config";

// The fiat rail against stripe-mock (built from the Go module proxy once, cached outside the repo, started
// on 127.0.0.1 by the global setup), and the webhook route through fastify.inject.
export default defineProject({
  test: {
    name: "fiat",
    include: ["**/*.test.ts"],
    globalSetup: ["./global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
