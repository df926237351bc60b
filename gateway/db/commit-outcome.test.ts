// Which COMMIT failures leave a transaction's outcome unknown (commitOutcomeKnown, gateway/db/index.ts), fed the
// errors node-postgres really rejects with: a DatabaseError built as pg-protocol's parser builds it from the server's
// ErrorResponse (severity and SQLSTATE set on it), and a Node socket error. Only an ERROR from the server says the
// COMMIT rolled back; a FATAL (the server shutting down, a pooler losing its server connection) or a socket's error
// may come after the commit record was flushed.

import pg from "pg";
import { describe, expect, it } from "vitest";
import { commitOutcomeKnown } from "./index.ts";

/** A server's ErrorResponse as node-postgres gives it (pg-protocol's parseErrorMessage). */
function serverError(severity: string, code: string, message: string): pg.DatabaseError {
  const error = new pg.DatabaseError(message, message.length + 40, "error");
  error.severity = severity;
  error.code = code;
  return error;
}

/** A Node socket error as the client rejects with it. */
function socketError(code: string): Error {
  return Object.assign(new Error(`write ${code}`), { code, errno: -32, syscall: "write" });
}

describe("a COMMIT's failure", () => {
  it("is known to have rolled back only when the server answered it with an ERROR", () => {
    expect(commitOutcomeKnown(serverError("ERROR", "40001", "could not serialize access"))).toBe(true);
    expect(commitOutcomeKnown(serverError("ERROR", "23505", "duplicate key value (deferred)"))).toBe(true);
  });

  it("leaves the outcome unknown when the server ended the session (FATAL, PANIC)", () => {
    const shutdown = serverError("FATAL", "57P01", "terminating connection due to administrator command");
    expect(commitOutcomeKnown(shutdown)).toBe(false);
    expect(commitOutcomeKnown(serverError("FATAL", "57P02", "terminating connection because of crash"))).toBe(
      false,
    );
    expect(commitOutcomeKnown(serverError("FATAL", "08P01", "server conn crashed?"))).toBe(false);
    expect(commitOutcomeKnown(serverError("PANIC", "XX000", "could not write to file"))).toBe(false);
    // A pooler or proxy may relay a lost server connection or a shutdown as a mere ERROR.
    expect(commitOutcomeKnown(serverError("ERROR", "08006", "server connection lost"))).toBe(false);
    expect(commitOutcomeKnown(serverError("ERROR", "57P01", "terminating connection"))).toBe(false);
  });

  it("leaves the outcome unknown when the connection failed (a Node error, whatever its code looks like)", () => {
    for (const code of ["EPIPE", "EBADF", "EPERM", "ECONNRESET"])
      expect(commitOutcomeKnown(socketError(code))).toBe(false);
    expect(commitOutcomeKnown(new Error("Connection terminated unexpectedly"))).toBe(false);
    // Not the server's answer, though it looks like one.
    expect(commitOutcomeKnown(Object.assign(new Error("x"), { code: "40001", severity: "ERROR" }))).toBe(
      false,
    );
  });
});
