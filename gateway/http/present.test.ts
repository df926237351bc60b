import { describe, expect, it } from "vitest";
import { ApiError } from "./errors.ts";
import { destinationFromBody } from "./present.ts";

describe("destinationFromBody", () => {
  it("keeps a BOLT11 invoice as LND is handed it: lower case, whatever case the caller wrote it in", () => {
    expect(destinationFromBody({ type: "bolt11", invoice: "LNBCRT10N1XYZ" })).toEqual({
      kind: "bolt11",
      invoice: "lnbcrt10n1xyz",
    });
    expect(destinationFromBody({ type: "bolt11", invoice: "lnbcrt10n1xyz" })).toEqual({
      kind: "bolt11",
      invoice: "lnbcrt10n1xyz",
    });
  });

  it("refuses an invoice in mixed case, naming the field", () => {
    expect(() => destinationFromBody({ type: "bolt11", invoice: "lnbcRT10n1xyz" })).toThrow(
      expect.objectContaining({ code: "parameter_invalid", param: "destination.invoice" }),
    );
    expect(() => destinationFromBody({ type: "bolt11", invoice: "lnbcRT10n1xyz" })).toThrow(ApiError);
  });
});
