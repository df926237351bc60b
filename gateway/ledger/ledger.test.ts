import pg from "pg";
import { describe, expect, it } from "vitest";
import { recordingLogger } from "../../test/support/recording-logger.ts";
import type { Db } from "../db/index.ts";
import { LedgerStoreError } from "./errors.ts";
import { createLedger } from "./ledger.ts";

describe("createLedger", () => {
  it("logs a failing expiry sweep through the logger it was given, with the translated error", async () => {
    const down = Object.assign(new pg.DatabaseError("connection failure", 60, "error"), {
      severity: "FATAL",
      code: "08006",
    });
    const db = { kind: "pglite", query: () => Promise.reject(down) } as unknown as Db;
    const { logger, lines } = recordingLogger();
    const errors = () => lines.filter((line) => line.level === "error");
    const ledger = createLedger({ db, limits: { expiryIntervalMs: 5 }, logger });
    try {
      await expect.poll(() => errors().length, { timeout: 2000 }).toBeGreaterThan(0);
    } finally {
      await ledger.close();
    }
    expect(errors()[0]!.message).toBe("ledger expiry sweep failed");
    const logged = errors()[0]!.fields.err;
    expect(logged).toBeInstanceOf(LedgerStoreError);
    expect((logged as LedgerStoreError).sqlState).toBe("08006");
    expect((logged as LedgerStoreError).cause).toBe(down);
  });
});
