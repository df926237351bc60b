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
