import { defineConfig } from "vitest/config";

// Unit tests sit beside their modules and need nothing running. Each folder test/<area>/ with a
// vitest.config.ts is a project of its own, with the global setup that starts the real parts it needs
// (PostgreSQL, the Lightning regtest network, stripe-mock, the Hardhat chain).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: [
            "core/**/*.test.ts",
            "gateway/**/*.test.ts",
            "adapters/**/*.test.ts",
            "client/**/*.test.ts",
            "scripts/**/*.test.ts",
          ],
          testTimeout: 30_000,
          hookTimeout: 120_000,
        },
      },
      "test/*/vitest.config.ts",
    ],
  },
});
