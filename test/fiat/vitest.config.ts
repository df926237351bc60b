import { defineProject } from "vitest/config";

// The fiat rail against stripe-mock (built from the Go module proxy once, cached outside the repo, started
// on 127.0.0.1 by the global setup), the webhook route through fastify.inject, and the SQL stores on PGlite
// and on a private PostgreSQL (test/support, from the Debian packages; never skipped).
export default defineProject({
  test: {
    name: "fiat",
    include: ["**/*.test.ts"],
    globalSetup: ["./global-setup.ts", "../support/postgres-global-setup.ts"],
    testTimeout: 120_000,
    hookTimeout: 180_000,
  },
});
