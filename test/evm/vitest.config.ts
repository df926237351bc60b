import { defineProject } from "vitest/config";

// The EVM rail and the RevenueSplitter mirror, end to end on the embedded defaults: PGlite in memory and
// Hardhat's in-process chain (EDR), driven with Hardhat's network helpers (mine, snapshot/revert for reorgs).
// The global setup only makes sure the contract artifacts are built.
export default defineProject({
  test: {
    name: "evm",
    include: ["**/*.test.ts"],
    globalSetup: ["./global-setup.ts"],
    testTimeout: 120_000,
    hookTimeout: 300_000,
  },
});
