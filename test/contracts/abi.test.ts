// The committed ABI module is exactly what its generator makes from the compiled contracts (the global setup
// builds them first), so a contract whose interface changed without `node scripts/evm-abi.ts` fails here.
import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { abiModulePath, generateAbiModule, renderAbiModule } from "../../scripts/evm-abi.ts";

describe("adapters/evm/abi.generated.ts", () => {
  it("is what scripts/evm-abi.ts generates from the current artifacts", async () => {
    expect(await readFile(abiModulePath, "utf8")).toBe(await generateAbiModule());
  });

  it("would differ if a contract's interface changed", () => {
    const event = { type: "event", name: "Paid", inputs: [], anonymous: false };
    const before = renderAbiModule({ TestUSD: [], RevenueSplitter: [event], ForwarderFactory: [] });
    const after = renderAbiModule({
      TestUSD: [],
      RevenueSplitter: [{ ...event, name: "Paid2" }],
      ForwarderFactory: [],
    });
    expect(after).not.toBe(before);
    expect(before).toContain("do not edit");
  });
});
