import { describe, expect, it } from "vitest";
import { z } from "zod";
import { SwitchyardError } from "../../core/index.ts";
import { ApiError, fromZodError, RequestValidationError } from "./errors.ts";

describe("the API's errors", () => {
  it("ApiError is a SwitchyardError whose short message is what the client reads", () => {
    const error = new ApiError("payment_not_found", 'no payment "pay_1"', { param: "id" });
    expect(error).toBeInstanceOf(SwitchyardError);
    expect(error.name).toBe("ApiError");
    expect(error.shortMessage).toBe('no payment "pay_1"');
    expect(error.message).toBe('no payment "pay_1"');
    expect(error.status).toBe(404);
    expect(error.body()).toEqual({
      error: { code: "payment_not_found", message: 'no payment "pay_1"', param: "id" },
    });
  });

  it("RequestValidationError is a SwitchyardError carrying the zod error as its cause", () => {
    const result = z.strictObject({ amount: z.string() }).safeParse({ amount: 1 }, { reportInput: true });
    if (result.success) throw new Error("the parse was expected to fail");
    const error = new RequestValidationError(result.error);
    expect(error).toBeInstanceOf(SwitchyardError);
    expect(error.name).toBe("RequestValidationError");
    expect(error.shortMessage).toBe("the request does not match its schema");
    expect(error.cause).toBe(result.error);
    expect(error.details).toMatch(/^amount: /);
    expect(fromZodError(error.zodError).body().error).toMatchObject({
      code: "parameter_invalid",
      param: "amount",
    });
  });

  it("tells a missing parameter from a wrong one and from an unknown one", () => {
    const schema = z.strictObject({ source: z.strictObject({ account: z.string() }) });
    const code = (data: unknown) => {
      const result = schema.safeParse(data, { reportInput: true });
      if (result.success) throw new Error("the parse was expected to fail");
      const { error } = fromZodError(result.error).body();
      return [error.code, error.param];
    };
    expect(code({ source: {} })).toEqual(["parameter_missing", "source.account"]);
    expect(code({ source: { account: 1 } })).toEqual(["parameter_invalid", "source.account"]);
    expect(code({ source: { account: "a", acount: "b" } })).toEqual(["parameter_unknown", "source.acount"]);
  });
});
