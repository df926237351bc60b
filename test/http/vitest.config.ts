import { defineConfig } from "vitest/config";

// The HTTP API end to end: on the embedded defaults (PGlite in memory and Hardhat's in-process chain), and
// the payment flow again on a private PostgreSQL (test/support, never skipped).
export default defineConfig({
  test: {
    name: "http",
    include: ["**/*.test.ts"],
    globalSetup: ["../support/postgres-global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
