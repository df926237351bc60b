import { protocol } from "@electric-sql/pglite";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { SwitchyardError } from "../../core/errors.ts";
import {
  ClaimTurnError,
  KnownIdError,
  LedgerBackpressureError,
  LedgerClosedError,
  LedgerInvariantError,
  LedgerRequestInvalidError,
  LedgerRequestTooLargeError,
  LedgerStoreError,
  StaleClockError,
  sqlStateOf,
  staleBatchCode,
  toStoreError,
} from "./errors.ts";

describe("the ledger's errors", () => {
  it("are SwitchyardErrors with a fixed name and a one-line short message", () => {
    const errors = [
      new LedgerBackpressureError({ queuedTransfers: 3, queueTransfersMax: 3 }),
      new LedgerRequestTooLargeError({ size: 3, sizeMax: 2 }),
      new LedgerRequestInvalidError("limit out of range"),
      new LedgerStoreError("ledger batch write failed", { cause: new Error("disk full") }),
      new LedgerClosedError(),
      new LedgerInvariantError("not loaded"),
      new StaleClockError(),
      new ClaimTurnError(2000),
      new KnownIdError(),
    ];
    for (const error of errors) {
      expect(error).toBeInstanceOf(SwitchyardError);
      expect(error.name).toBe(error.constructor.name);
      expect(error.shortMessage).not.toContain("\n");
    }
  });

  it("translate a database error once, keeping it as the cause and its SQLSTATE", () => {
    const database = pgError("ERROR", "23505", 'duplicate key value violates unique constraint "x"');
    const translated = toStoreError("batch write", database);
    expect(translated).toBeInstanceOf(LedgerStoreError);
    expect(translated.shortMessage).toBe("ledger batch write failed");
    expect(translated.details).toBe('duplicate key value violates unique constraint "x"');
    expect(translated.cause).toBe(database);
    expect(sqlStateOf(translated)).toBe("23505");
    // once: a translated error, or one of the ledger's own, goes through unchanged
    expect(toStoreError("locked batch", translated)).toBe(translated);
    const stale = new StaleClockError();
    expect(toStoreError("pipelined batch write", stale)).toBe(stale);
    expect(sqlStateOf(stale)).toBe(staleBatchCode);
    expect(sqlStateOf(new ClaimTurnError(1))).toBe(staleBatchCode);
    expect(sqlStateOf(database)).toBeUndefined();
  });

  it("make any other layer's failure a LedgerStoreError, its SwitchyardErrors included", () => {
    // The Db layer's own error (a short PGlite exchange) is a database failure to the ledger's callers.
    const fromDb = new SwitchyardError("pglite: an exchange completed fewer statements than it sent");
    const translated = toStoreError("batch write", fromDb);
    expect(translated).toBeInstanceOf(LedgerStoreError);
    expect(translated.cause).toBe(fromDb);
    expect(toStoreError("batch write", new LedgerInvariantError("x"))).toBeInstanceOf(LedgerInvariantError);
  });

  it("take only a server's SQLSTATE as sqlState (PostgreSQL's or PGlite's), not a Node error's code", () => {
    const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });
    expect(sqlStateOf(toStoreError("lookup", refused))).toBeUndefined();
    // Five capitals, as a SQLSTATE: still a socket's, not the server's.
    for (const code of ["EPIPE", "EBADF", "EPERM"]) {
      const socket = Object.assign(new Error(`write ${code}`), { code, syscall: "write" });
      expect(sqlStateOf(toStoreError("lookup", socket))).toBeUndefined();
    }
    expect(sqlStateOf(toStoreError("lookup", pgError("ERROR", "40001", "could not serialize access")))).toBe(
      "40001",
    );
    const pglite = new protocol.messages.DatabaseError("could not serialize access", 60, "error");
    pglite.code = "40001";
    expect(sqlStateOf(toStoreError("lookup", pglite))).toBe("40001");
  });
});

/** A server's error as node-postgres gives it (pg-protocol's parser: severity and SQLSTATE set on a DatabaseError). */
function pgError(severity: string, code: string, message: string): pg.DatabaseError {
  const error = new pg.DatabaseError(message, message.length + 40, "error");
  error.severity = severity;
  error.code = code;
  return error;
}
