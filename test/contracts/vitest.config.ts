import { defineProject } from "vitest/config";

// The contract flows the gateway uses, against Hardhat's in-process chain (EDR). Nothing external runs:
// the global setup only makes sure the artifacts are built.
export default defineProject({
  test: {
    name: "contracts",
    include: ["**/*.test.ts"],
    globalSetup: ["./global-setup.ts"],
    testTimeout: 120_000,
    hookTimeout: 300_000,
  },
});
