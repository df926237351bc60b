import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { loadConfig } from "./config.ts";
import { createAppLogger } from "./logger.ts";
import { configScrubber } from "./secrets.ts";

/** The app's logger writing into an array of parsed lines. */
function recordingLogger(env: Record<string, string>) {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split("\n"))
        if (line.trim() !== "") lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const config = loadConfig({ EVM_EMBEDDED_RPC_PORT: "off", LOG_LEVEL: "debug", ...env });
  return { logger: createAppLogger(config, configScrubber(config), destination), lines };
}

describe("the app's logger", () => {
  it("writes an error logged under `error` with its message and stack, as one under `err`", () => {
    const { logger, lines } = recordingLogger({});
    const cause = new Error("the node hung up");
    logger.error({ error: new Error("a listener threw", { cause }), invoiceId: "inv_1" }, "first");
    logger.warn({ err: new TypeError("not a number") }, "second");
    const [first, second] = lines as [
      { error: { type: string; message: string; stack: string }; invoiceId: string },
      { err: { type: string; message: string } },
    ];
    expect(first.error.type).toBe("Error");
    expect(first.error.message).toContain("a listener threw");
    expect(first.error.stack).toContain("logger.test.ts");
    expect(JSON.stringify(first.error)).toContain("the node hung up");
    expect(first.invoiceId).toBe("inv_1");
    expect(second.err).toMatchObject({ type: "TypeError", message: "not a number" });
  });

  it("writes a string under `error` as it is", () => {
    const { logger, lines } = recordingLogger({});
    logger.warn({ error: "execution reverted" }, "refused");
    expect(lines[0]?.error).toBe("execution reverted");
  });

  it("scrubs the configuration's secrets from an error's message and stack", () => {
    const { logger, lines } = recordingLogger({
      EVM_RPC_URL: "https://eth.example.com/v2/providerKey0123456789",
    });
    logger.error(
      { error: new Error("HTTP request failed.\n\nURL: https://eth.example.com/v2/providerKey0123456789") },
      "a read failed",
    );
    const written = JSON.stringify(lines[0]);
    expect(written).toContain("HTTP request failed.");
    expect(written).toContain("https://eth.example.com/[redacted]");
    expect(written).not.toContain("providerKey0123456789");
  });
});
