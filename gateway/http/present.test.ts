import { describe, expect, it } from "vitest";
import { wellFormedInvoice } from "../../test/support/bolt11.ts";
import { ApiError } from "./errors.ts";
import { destinationFromBody } from "./present.ts";

describe("destinationFromBody", () => {
  it("keeps a BOLT11 invoice as LND is handed it: lower case, whatever case the caller wrote it in", () => {
    const invoice = wellFormedInvoice();
    expect(destinationFromBody({ type: "bolt11", invoice: invoice.toUpperCase() })).toEqual({
      kind: "bolt11",
      invoice,
    });
    expect(destinationFromBody({ type: "bolt11", invoice: `lightning:${invoice}` })).toEqual({
      kind: "bolt11",
      invoice,
    });
  });

  it("refuses an invoice in mixed case, naming the field", () => {
    expect(() => destinationFromBody({ type: "bolt11", invoice: "lnbcRT10n1xyz" })).toThrow(
      expect.objectContaining({ code: "parameter_invalid", param: "destination.invoice" }),
    );
    expect(() => destinationFromBody({ type: "bolt11", invoice: "lnbcRT10n1xyz" })).toThrow(ApiError);
  });

  it("refuses what parseBolt11 cannot read, saying why", () => {
    const invoice = wellFormedInvoice();
    const changed = `${invoice.slice(0, 20)}${invoice[20] === "q" ? "p" : "q"}${invoice.slice(21)}`;
    expect(() => destinationFromBody({ type: "bolt11", invoice: changed })).toThrow(
      expect.objectContaining({
        code: "parameter_invalid",
        param: "destination.invoice",
        message: expect.stringContaining("checksum"),
      }),
    );
    expect(() => destinationFromBody({ type: "bolt11", invoice: "lnbcrt10n1xyz" })).toThrow(
      expect.objectContaining({
        code: "parameter_invalid",
        message: "destination.invoice is not a BOLT11 invoice",
      }),
    );
  });
});
