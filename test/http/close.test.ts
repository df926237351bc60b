// Closing the gateway closes every part, in the reverse order of opening, whatever one of them does: a part that
// fails to close (a rail's stop) is logged and the rest are still closed, down to the database.
import { expect, it } from "vitest";
import { createApp, railModules } from "../../gateway/app.ts";
import { testConfig } from "../support/config.ts";
import { createToyRail } from "../support/toy-rail-module.ts";

it("closes every part when one fails to close, and says so", async () => {
  const toy = createToyRail({ id: "toy", feeFixed: 1n });
  const stubborn = {
    ...toy,
    async stop() {
      throw new Error("the toy rail would not stop");
    },
  };
  const app = await createApp(testConfig({ LOG_LEVEL: "silent", PORT: "0" }), {
    railModules: [...railModules, () => ({ rails: [stubborn] })],
  });
  await expect(app.close()).rejects.toThrow(/some parts failed to close/);
  // Before: the rail's error left the rest unclosed (the rates, the chains, the ledger, the database).
  await expect(app.db.query("SELECT 1")).rejects.toThrow();
  // Closed once: asked again, the same answer, not the parts closed again in another order.
  await expect(app.close()).rejects.toThrow(/some parts failed to close/);
}, 120_000);

it("stops a rail whose start failed partway, with everything started before it", async () => {
  const toy = createToyRail({ id: "toy-half-started", feeFixed: 1n });
  let stopped = 0;
  const halfStarting = {
    ...toy,
    async start() {
      throw new Error("the node did not answer the rail's first read");
    },
    async stop() {
      stopped += 1;
    },
  };
  await expect(
    createApp(testConfig({ LOG_LEVEL: "silent", PORT: "0" }), {
      railModules: [...railModules, () => ({ rails: [halfStarting] })],
    }),
  ).rejects.toThrow(/first read/);
  // Before: its stop was registered only once its start had resolved, and what it had armed ran on.
  expect(stopped).toBe(1);
}, 120_000);

it("closes the rail modules built before one that threw", async () => {
  let closed = 0;
  await expect(
    createApp(testConfig({ LOG_LEVEL: "silent", PORT: "0" }), {
      railModules: [
        ...railModules,
        () => ({
          rails: [],
          close: async () => {
            closed += 1;
          },
        }),
        () => {
          throw new Error("a rail module's configuration is refused");
        },
      ],
    }),
  ).rejects.toThrow(/configuration is refused/);
  // Before: every module was built before any close was registered, and the first one's stayed open.
  expect(closed).toBe(1);
}, 120_000);
