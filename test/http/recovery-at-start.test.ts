// A start never fails for what it cannot recover: an open attempt whose rail throws when asked again is logged and
// left to the periodic passes, and the gateway serves meanwhile.
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, expect, it } from "vitest";
import { type App, createApp, railModules } from "../../gateway/app.ts";
import { typedClient } from "../support/api.ts";
import { testConfig } from "../support/config.ts";
import { createToyRail, fundToy } from "../support/toy-rail-module.ts";

const apps: App[] = [];
let directory = "";

afterAll(async () => {
  for (const app of apps) await app.close().catch(() => undefined);
  if (directory !== "") await rm(directory, { recursive: true, force: true });
});

const start = async (gate: () => Promise<void>) => {
  const toy = createToyRail({ id: "toy", feeFixed: 1n, gate });
  const app = await createApp(
    testConfig({ LOG_LEVEL: "silent", PORT: "0", PGLITE_DIR: path.join(directory, "db") }),
    { railModules: [...railModules, () => ({ rails: [toy] })] },
  );
  apps.push(app);
  return app;
};

it("starts, and serves, when an attempt left open cannot be driven at start", async () => {
  directory = await mkdtemp(path.join(os.tmpdir(), "switchyard-recovery-at-start-"));
  // The first process leaves a payout executing on the toy rail, which never answers.
  const first = await start(() => new Promise<void>(() => undefined));
  const key = first.demo!.apiKey;
  await fundToy(first, key, "100");
  const posted = await typedClient(first, key).POST("/v1/payments", {
    body: {
      amount: "1.00",
      asset: "USDC",
      source: { account: "acct_demo_customer" },
      destination: { type: "evm_address", address: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC" },
    },
    headers: { prefer: "respond-async" },
  });
  expect(posted.response.status).toBe(202);
  const paymentId = posted.data!.id;
  await first.close();
  apps.pop();

  // The next one's toy rail throws when asked about it. Before: recovery's error failed the start, every start.
  const second = await start(() => Promise.reject(new Error("the toy rail is down")));
  const read = await typedClient(second, key).GET("/v1/payments/{id}", {
    params: { path: { id: paymentId } },
  });
  expect(read.response.status).toBe(200);
  expect(read.data!.status).toBe("processing");
}, 120_000);
