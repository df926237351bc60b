import { describe, expect, it } from "vitest";
import type { Logger } from "../../core/logger.ts";
import type { Db } from "../db/index.ts";
import { LedgerStoreError } from "./errors.ts";
import { createLedger } from "./ledger.ts";

/** A logger that keeps what it is told at error level. */
function capturingLogger(): {
  logger: Logger;
  errors: { fields: Record<string, unknown>; message: string }[];
} {
  const errors: { fields: Record<string, unknown>; message: string }[] = [];
  const ignore = () => undefined;
  const logger: Logger = {
    error: ((fields: Record<string, unknown> | string, message?: string) => {
      errors.push(
        typeof fields === "string" ? { fields: {}, message: fields } : { fields, message: message! },
      );
    }) as Logger["error"],
    warn: ignore,
    info: ignore,
    debug: ignore,
    child: () => logger,
  };
  return { logger, errors };
}

describe("createLedger", () => {
  it("logs a failing expiry sweep through the logger it was given, with the translated error", async () => {
    const down = Object.assign(new Error("connection refused"), { code: "08006" });
    const db = { kind: "pglite", query: () => Promise.reject(down) } as unknown as Db;
    const { logger, errors } = capturingLogger();
    const ledger = createLedger({ db, limits: { expiryIntervalMs: 5 }, logger });
    try {
      await expect.poll(() => errors.length, { timeout: 2000 }).toBeGreaterThan(0);
    } finally {
      await ledger.close();
    }
    expect(errors[0]!.message).toBe("ledger expiry sweep failed");
    const logged = errors[0]!.fields.err;
    expect(logged).toBeInstanceOf(LedgerStoreError);
    expect((logged as LedgerStoreError).sqlState).toBe("08006");
    expect((logged as LedgerStoreError).cause).toBe(down);
  });
});
