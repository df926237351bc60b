import { describe, expect, it } from "vitest";
import { SwitchyardError } from "../../core/index.ts";
import { LightningRailError, lndError } from "./errors.ts";
import { lndErrorText } from "./failures.ts";

describe("the Lightning rail's errors", () => {
  it("are SwitchyardErrors with a fixed name, a short message and details", () => {
    const error = new LightningRailError("invoice amount out of range", { details: "0 msat" });
    expect(error).toBeInstanceOf(SwitchyardError);
    expect(error.name).toBe("LightningRailError");
    expect(error.shortMessage).toBe("invoice amount out of range");
    expect(error.details).toBe("0 msat");
  });

  it("translate what lightning rejects with once: LND's text in the details, the array as the cause", () => {
    const grpc = [503, "UnexpectedGetChannelBalanceError", { err: { details: "No connection established" } }];
    const error = lndError("LND did not report its channel balance", grpc);
    expect(error).toBeInstanceOf(LightningRailError);
    expect(error.shortMessage).toBe("LND did not report its channel balance");
    expect(error.details).toBe("UnexpectedGetChannelBalanceError: No connection established");
    expect(error.cause).toBe(grpc);
  });

  it("read as one line where the rail classifies or reports a text", () => {
    const timeout = new LightningRailError("getWalletInfo timed out", { details: "15000 ms" });
    expect(lndErrorText(timeout)).toBe("getWalletInfo timed out: 15000 ms");
    expect(lndErrorText(new LightningRailError("no destination"))).toBe("no destination");
  });
});
