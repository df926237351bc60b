import { defineProject } from "vitest/config";

// A developer's own Hardhat node (#24): `hardhat node` as its own process on a free port, the Ignition module
// deployed with `hardhat ignition deploy`, and the gateway started as a user would (`node gateway/main.ts`).
export default defineProject({
  test: {
    name: "devchain",
    include: ["**/*.test.ts"],
    testTimeout: 300_000,
    hookTimeout: 300_000,
  },
});
