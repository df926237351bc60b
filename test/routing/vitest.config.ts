import { defineProject } from "vitest/config";

// The router choosing for real, through the HTTP API: a payee reachable by the EVM chains, the Lightning regtest
// network (btcd + lnd, test/lightning's global setup) and stripe-mock (test/fiat's), all started for the run.
// Nothing here skips: a part that cannot start fails the run.
export default defineProject({
  test: {
    name: "routing",
    include: ["**/*.test.ts"],
    globalSetup: ["../lightning/global-setup.ts", "../fiat/global-setup.ts"],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 180_000,
  },
});
