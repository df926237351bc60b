// A transaction on PostgreSQL in pipeline mode (gateway/db/index.ts transaction()): its statements go without waiting
// for the answers of those before them, and the COMMIT goes behind them as soon as its body returns. All or none
// still: a statement that fails in this process, before reaching the server (a parameter node-postgres cannot
// serialize), has not aborted the transaction there, so the COMMIT must not go. And what goes together leaves
// together: the statements asked for in one turn of the event loop are one write to the server's socket.
import net from "node:net";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type Db, openPostgres } from "../../gateway/db/index.ts";
import { createTestDatabase } from "../support/postgres.ts";

let db: Db;
let serverPort: number;

beforeAll(async () => {
  const url = await createTestDatabase(inject("postgresUrl"), "pipelined_tx");
  serverPort = Number(new URL(url).port);
  db = openPostgres({
    url,
    poolSizeMax: 2,
    statementTimeoutMs: 10_000,
  });
  await db.query("CREATE TABLE written (id int PRIMARY KEY)");
});

afterAll(async () => {
  await db?.close();
});

/** Counts the writes this process makes to sockets connected to the server (each a system call), until stopped. */
function countingWrites(port: number) {
  const proto = net.Socket.prototype as unknown as Record<"_write" | "_writev", (...args: unknown[]) => void>;
  const originals = { _write: proto._write, _writev: proto._writev };
  const counted = { writes: 0 };
  for (const method of ["_write", "_writev"] as const) {
    proto[method] = function (this: net.Socket, ...args: unknown[]) {
      if (this.remotePort === port) counted.writes += 1;
      return originals[method].apply(this, args);
    };
  }
  return {
    counted,
    stop: () => Object.assign(proto, originals),
  };
}

const writtenIds = async () =>
  (await db.query<{ id: number }>("SELECT id FROM written ORDER BY id")).map((row) => row.id);

/** A parameter whose conversion fails in node-postgres, before anything of its statement is sent. */
const unserializable = {
  toPostgres() {
    throw new Error("cannot be serialized");
  },
};

describe("a pipelined transaction", () => {
  it("a statement that fails before reaching the server: nothing of the transaction is committed", async () => {
    await db.query("DELETE FROM written");
    const outcome = db.transaction(async (tx) => {
      // Sent, not awaited: the body returns before any answer, as a lone ledger batch's does.
      void tx.query("INSERT INTO written (id) VALUES (1)");
      void tx.query("INSERT INTO written (id) VALUES ($1)", [unserializable]);
    });
    await expect(outcome).rejects.toThrow("cannot be serialized");
    // Before: the first insert was committed without the second ([1]).
    expect(await writtenIds()).toEqual([]);
  });

  it("statements sent together commit together, and the transaction waits for their answers", async () => {
    await db.query("DELETE FROM written");
    await db.transaction(async (tx) => {
      void tx.query("INSERT INTO written (id) VALUES (2)");
      void tx.query("INSERT INTO written (id) VALUES (3)");
    });
    expect(await writtenIds()).toEqual([2, 3]);
  });

  it("a statement the server refuses fails the transaction, whatever the body did with its error", async () => {
    await db.query("DELETE FROM written");
    await db.query("INSERT INTO written (id) VALUES (4)");
    const outcome = db.transaction(async (tx) => {
      await tx.query("INSERT INTO written (id) VALUES (5)");
      await tx.query("INSERT INTO written (id) VALUES (4)").catch(() => undefined); // taken: refused, swallowed
    });
    await expect(outcome).rejects.toMatchObject({ code: "23505" });
    expect(await writtenIds()).toEqual([4]);
  });

  it("a statement asked for once the COMMIT has gone is refused alone: the transaction stays committed", async () => {
    await db.query("DELETE FROM written");
    let late: Promise<unknown> | undefined;
    await db.transaction(async (tx) => {
      const first = tx.query("INSERT INTO written (id) VALUES (6)");
      late = first.then(() => tx.query("INSERT INTO written (id) VALUES (7)"));
      late.catch(() => undefined); // heard below, once the transaction has ended
    });
    await expect(late).rejects.toThrow("after its transaction's COMMIT or ROLLBACK");
    expect(await writtenIds()).toEqual([6]);
  });

  it("the statements asked for in one turn, BEGIN and COMMIT with them, leave in one write", async () => {
    await db.query("DELETE FROM written");
    await db.transaction(async (tx) => tx.query("SELECT 1")); // a connection made before counting
    const writes = countingWrites(serverPort);
    try {
      await db.transaction(async (tx) => {
        void tx.query("INSERT INTO written (id) VALUES (8)");
        void tx.query("INSERT INTO written (id) VALUES ($1)", [9]);
        void tx.query("SELECT count(*) FROM written");
      });
    } finally {
      writes.stop();
    }
    // Before: five, one for each of BEGIN, the three statements and COMMIT.
    expect(writes.counted.writes).toBe(1);
    expect(await writtenIds()).toEqual([8, 9]);
  });

  it("a statement asked for after an answer leaves in a write of its own", async () => {
    await db.query("DELETE FROM written");
    const writes = countingWrites(serverPort);
    try {
      await db.transaction(async (tx) => {
        await tx.query("INSERT INTO written (id) VALUES (10)");
        void tx.query("INSERT INTO written (id) VALUES (11)");
      });
    } finally {
      writes.stop();
    }
    // BEGIN with the first insert; the second with the COMMIT, once the first was answered.
    expect(writes.counted.writes).toBe(2);
    expect(await writtenIds()).toEqual([10, 11]);
  });
});
