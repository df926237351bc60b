import { defineProject } from "vitest/config";

// The ledger on both stores: the behaviour suite and the property test against the reference model on PGlite and
// on a private PostgreSQL (started by the global setup from the Debian packages; never skipped), and the
// concurrency tests (several connections, several OS processes) on PostgreSQL.
export default defineProject({
  test: {
    name: "ledger",
    include: ["**/*.test.ts"],
    globalSetup: ["../support/postgres-global-setup.ts"],
    testTimeout: 180_000,
    hookTimeout: 120_000,
  },
});
