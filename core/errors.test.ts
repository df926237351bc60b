import { describe, expect, it } from "vitest";
import { SwitchyardError } from "./errors.ts";

class ToyRailError extends SwitchyardError {
  override name = "ToyRailError";
}

describe("SwitchyardError", () => {
  it("keeps the short message, the details and the cause apart", () => {
    const cause = new Error("ECONNREFUSED 127.0.0.1:10009\n    at connect");
    const error = new ToyRailError("the node is unreachable", { cause });
    expect(error.name).toBe("ToyRailError");
    expect(error.shortMessage).toBe("the node is unreachable");
    expect(error.details).toBe("ECONNREFUSED 127.0.0.1:10009");
    expect(error.message).toBe("the node is unreachable\n\nDetails: ECONNREFUSED 127.0.0.1:10009");
    expect(error.cause).toBe(cause);
    expect(error).toBeInstanceOf(SwitchyardError);
  });

  it("prefers explicit details, and has none without a cause", () => {
    expect(new ToyRailError("a", { details: "b", cause: new Error("c") }).details).toBe("b");
    const bare = new ToyRailError("only this");
    expect(bare.details).toBeUndefined();
    expect(bare.message).toBe("only this");
  });

  it("walks the cause chain", () => {
    const root = new RangeError("deep");
    const error = new ToyRailError("top", { cause: new SwitchyardError("middle", { cause: root }) });
    expect(error.walk((e) => e instanceof RangeError)).toBe(root);
    expect(error.walk((e) => e instanceof TypeError)).toBeUndefined();
  });
});
