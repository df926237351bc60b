// Making an invoice over a journal that refuses its line: refused before LND is asked (no LND here: a port nobody
// listens on, so any call to it would fail otherwise).
import { describe, expect, it } from "vitest";
import { freePort } from "../../scripts/lib/free-port.ts";
import { recordingLogger } from "../../test/support/recording-logger.ts";
import { LightningRailError } from "./errors.ts";
import { createLightningRail } from "./rail.ts";
import { createMemoryRailStore } from "./store.ts";

describe("invoices over a torn journal", () => {
  it("refuses the invoice, naming the tear, before LND is asked for one", async () => {
    const tornBy = Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" });
    const rail = createLightningRail({
      lnd: { socket: `127.0.0.1:${await freePort()}`, cert: "", macaroon: "00" },
      store: { ...createMemoryRailStore(), torn: () => tornBy },
      limits: { rpcTimeoutMs: 200 },
      logger: recordingLogger().logger,
    });
    await rail.start();
    try {
      const refused = await rail
        .createInvoice({ amountMsat: 1_000n, expirySeconds: 60, reference: "inv_1", memo: "top-up" })
        .catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(LightningRailError);
      // Before: LND was asked first ("LND did not create the invoice"; with LND there, the journal's append threw).
      expect((refused as LightningRailError).shortMessage).toBe("journal torn by a failed write or sync");
      expect((refused as LightningRailError).details).toBe("EIO: i/o error, fdatasync");
    } finally {
      await rail.stop();
    }
  });
});
