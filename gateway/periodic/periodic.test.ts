import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Logger } from "../../core/index.ts";
import { startPeriodic } from "./index.ts";

function recordingLogger(
  lines: Array<{ bindings: Record<string, unknown>; fields: unknown; message: string }>,
) {
  const make = (bindings: Record<string, unknown>): Logger => {
    const log = (first: unknown, second?: string) =>
      lines.push(
        typeof first === "string"
          ? { bindings, fields: null, message: first }
          : { bindings, fields: first, message: second ?? "" },
      );
    return { error: log, warn: log, info: log, debug: log, child: (more) => make({ ...bindings, ...more }) };
  };
  return make({});
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("startPeriodic", () => {
  it("logs a failed pass through the logger it is given, naming the pass, and tries again next tick", async () => {
    const lines: Parameters<typeof recordingLogger>[0] = [];
    let calls = 0;
    const boom = new Error("database unavailable");
    const periodic = startPeriodic({
      name: "recovery pass",
      intervalMs: 100,
      pass: async () => {
        calls += 1;
        throw boom;
      },
      logger: recordingLogger(lines),
    });
    await vi.advanceTimersByTimeAsync(250);
    await periodic.stop();
    expect(calls).toBe(2);
    expect(lines).toEqual([
      {
        bindings: { module: "periodic", pass: "recovery pass" },
        fields: { err: boom },
        message: "recovery pass failed",
      },
      {
        bindings: { module: "periodic", pass: "recovery pass" },
        fields: { err: boom },
        message: "recovery pass failed",
      },
    ]);
  });

  it("skips a tick while the previous pass still runs, and stop waits for it", async () => {
    let running = 0;
    let overlapped = false;
    let finished = 0;
    const periodic = startPeriodic({
      name: "slow pass",
      intervalMs: 10,
      pass: async () => {
        running += 1;
        if (running > 1) overlapped = true;
        await new Promise((resolve) => setTimeout(resolve, 35));
        running -= 1;
        finished += 1;
      },
      logger: recordingLogger([]),
    });
    await vi.advanceTimersByTimeAsync(100);
    const stopping = periodic.stop();
    await vi.advanceTimersByTimeAsync(50);
    await stopping;
    expect(overlapped).toBe(false);
    expect(finished).toBeGreaterThanOrEqual(2);
    expect(running).toBe(0);
  });
});
