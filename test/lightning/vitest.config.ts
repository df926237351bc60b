import { defineProject } from "vitest/config";

// The Lightning rail against a real regtest network: btcd + four lnd nodes built from the Go module
// proxy (cached outside the repo), started once per run by the global setup. Files run one after another:
// some tests restart the gateway's lnd. Each file has its own module graph (vitest's default isolation), which
// rail-finish.test.ts relies on: its vi.mock("lightning") delays LND's real GetPayment, and must not reach another file.
export default defineProject({
  test: {
    name: "lightning",
    include: ["**/*.test.ts"],
    globalSetup: ["./global-setup.ts"],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
