import { defineConfig } from "vitest/config";

// The HTTP API end to end, on the embedded defaults: PGlite in memory and Hardhat's in-process chain.
export default defineConfig({
  test: {
    name: "http",
    include: ["**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
