import { defineProject } from "vitest/config";

// Kills a gateway process (SIGKILL) at random moments while it makes payments over two rails that fail over
// (crash.test.ts), or internal payments written in batches, also while a batch commits (batched.test.ts), restarts
// it, and checks that no payment was ever paid or written twice. Real PostgreSQL (test/support), never skipped.
export default defineProject({
  test: {
    name: "crash",
    include: ["**/*.test.ts"],
    globalSetup: ["../support/postgres-global-setup.ts"],
    testTimeout: 300_000,
    hookTimeout: 120_000,
  },
});
