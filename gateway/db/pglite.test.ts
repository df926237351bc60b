// PGlite's query path through named prepared statements (gateway/db/index.ts): same answers, types and errors as
// PGlite's own `query`, alone and next to transactions; and several statements in one exchange (queryAll), all or
// none.
import { createHash } from "node:crypto";
import { openAsBlob } from "node:fs";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFreshClusters, type FreshClusters, type FreshStart, freshClusters } from "./fresh-cluster.ts";
import { type Db, doubleMemfsGrowth, openPglite, textArrayLiteral } from "./index.ts";
import { openPgliteThread } from "./pglite-thread.ts";

/** Each test of PGlite's statements runs on PGlite where it is opened, and on a thread of its own (PGLITE_THREAD). */
const placements = [
  { where: "on the caller's thread", thread: false },
  { where: "on a thread of its own", thread: true },
] as const;

describe.each(placements)("a PGlite directory, $where", ({ thread }) => {
  it("is made with its parents, and keeps what was written there", async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), "switchyard-pglite-"));
    const dataDir = path.join(root, "not", "there", "yet");
    try {
      const first = await openPglite(dataDir, { thread });
      await first.exec("CREATE TABLE kept (n int)");
      await first.query("INSERT INTO kept VALUES (7)");
      await first.close();
      const again = await openPglite(dataDir, { thread });
      expect(await again.query("SELECT n FROM kept")).toEqual([{ n: 7 }]);
      // On disk, new WAL segments are zero-filled as PostgreSQL does by default.
      expect(await again.query("SHOW wal_init_zero")).toEqual([{ wal_init_zero: "on" }]);
      await again.close();
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe.each(placements)("PGlite in memory, $where", ({ thread }) => {
  it("does not zero-fill a new WAL segment (in memory that copies the growing file over and over)", async () => {
    const db = await openPglite(undefined, { thread });
    try {
      expect(await db.query("SHOW wal_init_zero")).toEqual([{ wal_init_zero: "off" }]);
      // Still off after a transaction (a session setting, on PGlite's one session).
      await db.transaction(async (tx) => {
        await tx.query("SELECT 1");
      });
      expect(await db.query("SHOW wal_init_zero")).toEqual([{ wal_init_zero: "off" }]);
    } finally {
      await db.close();
    }
  });
});

describe.each(placements)("PGlite in memory from the kept copy of a fresh cluster, $where", ({ thread }) => {
  it("is empty, its own, and set up as one made by initdb", async () => {
    const loadedBefore = freshClusters.loaded;
    const opened: Db[] = [];
    try {
      // This file opened others before: the copy is kept (in the cache directory, or in this process), and each of
      // these three starts from it, none falling back to initdb.
      for (let i = 0; i < 3; i++) opened.push(await openPglite(undefined, { thread }));
      expect(freshClusters.loaded - loadedBefore).toBe(3);
      const [first, second, third] = opened as [Db, Db, Db];
      await first.exec("CREATE TABLE mine (n int8)");
      await first.query("INSERT INTO mine VALUES ($1)", [9n]);
      // What one wrote is nowhere in another opened from the same copy.
      for (const other of [second, third]) {
        expect(await other.query("SELECT count(*) AS n FROM pg_class WHERE relname = 'mine'")).toEqual([
          { n: 0n },
        ]);
        await other.exec("CREATE TABLE mine (n int8)");
        expect(await other.query("SELECT count(*) AS n FROM mine")).toEqual([{ n: 0n }]);
      }
      expect(await first.query("SELECT n FROM mine")).toEqual([{ n: 9n }]);
      // The same settings as one made by initdb, the in-memory ones included.
      for (const db of opened) {
        expect(await db.query("SHOW wal_init_zero")).toEqual([{ wal_init_zero: "off" }]);
        expect(await db.query("SELECT current_user AS who, current_database() AS name")).toEqual([
          { who: "postgres", name: "postgres" },
        ]);
      }
    } finally {
      for (const db of opened) await db.close();
    }
  });

  it("opens by initdb when its copy cannot be read, and drops that copy", async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), "switchyard-fresh-"));
    try {
      const file = path.join(root, "gone.tar");
      await writeFile(file, new Uint8Array(1024));
      const load = await openAsBlob(file);
      await rm(file);
      let spoiled = 0;
      const clusters: FreshClusters = {
        start: async () => ({
          load,
          spoiled: () => {
            spoiled += 1;
          },
        }),
        loaded: 0,
        saved: async () => undefined,
      };
      const db = await openPglite(undefined, { thread, freshClusters: clusters });
      try {
        expect(spoiled).toBe(1);
        expect(await db.query("SELECT count(*) > 400 AS catalog FROM pg_class")).toEqual([{ catalog: true }]);
      } finally {
        await db.close();
      }
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe("the kept copy of a fresh cluster", () => {
  const files = new Blob([new Uint8Array([1, 2, 3])]);
  const bytesOf = async (blob: Blob | undefined) => [...new Uint8Array(await blob!.arrayBuffer())];
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), "switchyard-fresh-"));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  describe("in this process only", () => {
    it("is made by the second open; the opens after it wait for it and start from it", async () => {
      const clusters = createFreshClusters({ dir: null, version: "1.0.0" });
      expect(await clusters.start()).toEqual({});
      const second = await clusters.start();
      expect(second.keep).toBeTypeOf("function");
      const third = clusters.start();
      let thirdStarted = false;
      void third.then(() => {
        thirdStarted = true;
      });
      await new Promise((resolve) => setTimeout(resolve, 10));
      expect(thirdStarted).toBe(false);
      second.keep?.(files);
      expect((await third).load).toBe(files);
      expect((await clusters.start()).load).toBe(files);
      expect(clusters.loaded).toBe(2);
    });

    it("is made again when the open making it could not, or an open from it failed", async () => {
      const clusters = createFreshClusters({ dir: null, version: "1.0.0" });
      await clusters.start();
      const second = await clusters.start();
      const waiting = [clusters.start(), clusters.start()];
      second.keep?.(undefined);
      // The first open waiting for it makes it instead, and the other waits for that one.
      const [next, behind] = waiting as [Promise<FreshStart>, Promise<FreshStart>];
      const making = await next;
      expect(making.keep).toBeTypeOf("function");
      making.keep?.(files);
      expect((await behind).load).toBe(files);
      const fromCopy = await clusters.start();
      expect(fromCopy.load).toBe(files);
      fromCopy.spoiled?.();
      expect(clusters.loaded).toBe(1);
      const again = await clusters.start();
      expect(again.load).toBeUndefined();
      expect(again.keep).toBeTypeOf("function");
    });
  });

  describe("in a directory, for the processes after", () => {
    it("is made by the first open and saved under its digest; another process starts from it", async () => {
      const first = createFreshClusters({ dir: root, version: "1.0.0" });
      const making = await first.start();
      expect(making.keep).toBeTypeOf("function");
      making.keep?.(files);
      await first.saved();
      const digest = createHash("sha256")
        .update(new Uint8Array([1, 2, 3]))
        .digest("hex");
      expect(await readdir(root)).toEqual([`pglite-1.0.0-fresh-${digest}.tar`]);
      // The next version's saved copy takes its place.
      const upgraded = createFreshClusters({ dir: root, version: "1.1.0" });
      (await upgraded.start()).keep?.(files);
      await upgraded.saved();
      expect(await readdir(root)).toEqual([`pglite-1.1.0-fresh-${digest}.tar`]);
      const later = createFreshClusters({ dir: root, version: "1.1.0" });
      const started = await later.start();
      expect(started.keep).toBeUndefined();
      expect(await bytesOf(started.load)).toEqual([1, 2, 3]);
      expect(later.loaded).toBe(1);
    });

    it("is not used when its bytes do not match its name, nor when another PGlite made it", async () => {
      const digest = createHash("sha256")
        .update(new Uint8Array([1, 2, 3]))
        .digest("hex");
      await writeFile(path.join(root, `pglite-1.0.0-fresh-${digest}.tar`), new Uint8Array([1, 2, 4]));
      const damaged = await createFreshClusters({ dir: root, version: "1.0.0" }).start();
      expect(damaged.load).toBeUndefined();
      expect(damaged.keep).toBeTypeOf("function");
      const otherVersion = await createFreshClusters({ dir: root, version: "1.0.1" }).start();
      expect(otherVersion.load).toBeUndefined();
    });

    it("lives in the process when the directory cannot be written", async () => {
      const blocked = path.join(root, "a-file");
      await writeFile(blocked, "not a directory");
      const clusters = createFreshClusters({ dir: path.join(blocked, "cache"), version: "1.0.0" });
      const making = await clusters.start();
      making.keep?.(files);
      await clusters.saved();
      expect((await clusters.start()).load).toBe(files);
    });
  });
});

describe("a PGlite file in memory", () => {
  /**
   * Fills a table to about 4 MB, counting how often its file's array was replaced once past 1 MB (each time, a copy of
   * all of it): checked after each of 40 inserts, so at most one a batch is counted.
   */
  async function copiesWhileGrowing(db: PGlite): Promise<number> {
    await db.exec("CREATE TABLE grown (n int, pad text)");
    const [{ directory, file }] = (
      await db.query<{ directory: string; file: string }>(
        "SELECT current_setting('data_directory') AS directory, pg_relation_filepath('grown') AS file",
      )
    ).rows as [{ directory: string; file: string }];
    const fs = (
      db as unknown as { Module: { FS: { lookupPath(path: string): { node: { contents: unknown } } } } }
    ).Module.FS;
    const node = () => fs.lookupPath(`${directory}/${file}`).node;
    let copies = 0;
    let seen = node().contents;
    for (let batch = 0; batch < 40; batch += 1) {
      await db.query(
        "INSERT INTO grown SELECT n, repeat('x', 200) FROM generate_series($1::int, $1::int + 399) n",
        [batch * 400],
      );
      if (node().contents !== seen && (seen as Uint8Array).length >= 1 << 20) copies += 1;
      seen = node().contents;
    }
    const [totals] = (
      await db.query<{ count: bigint | number; sum: bigint | number }>(
        "SELECT count(*) AS count, sum(n) AS sum FROM grown",
      )
    ).rows;
    expect(Number(totals?.count)).toBe(16_000);
    expect(Number(totals?.sum)).toBe((16_000 * 15_999) / 2);
    return copies;
  }

  it("doubles its array as it grows (MEMFS alone grows it an eighth at a time past 1 MB)", async () => {
    const plain = await PGlite.create();
    const doubled = await PGlite.create();
    try {
      await doubleMemfsGrowth(doubled);
      const [before, after] = [await copiesWhileGrowing(plain), await copiesWhileGrowing(doubled)];
      expect(before).toBeGreaterThanOrEqual(8); // 1 MB × 1.125^n reaches 4 MB at n = 12
      expect(after).toBeLessThanOrEqual(2); // 1 → 2 → 4 MB
    } finally {
      await plain.close();
      await doubled.close();
    }
  });
});

describe("a text array literal", () => {
  it("reads back element for element, whatever the element holds", async () => {
    const db = await openPglite(undefined);
    try {
      const values = [
        "pay_01m8939ea1prkpt9qjzxcgt9f6",
        'a "quoted" word',
        'a "quoted" word',
        'back\\slash and \\"both',
        "a,comma {braces} and spaces ",
        "NULL",
        "",
        "ünïcødé ✓",
        null,
        "\\",
        null,
        "\\",
      ];
      // With a null or a character to escape, element by element; without any, joined at once.
      const plain = values.filter((value) => value !== null && !/[\\"]/.test(value));
      expect(plain).toEqual([
        "pay_01m8939ea1prkpt9qjzxcgt9f6",
        "a,comma {braces} and spaces ",
        "NULL",
        "",
        "ünïcødé ✓",
      ]);
      for (const array of [values, plain, ["one"]]) {
        const [row] = await db.query<{ values: (string | null)[] }>("SELECT $1::text[] AS values", [
          textArrayLiteral(array),
        ]);
        expect(row!.values).toEqual(array);
      }
      expect(textArrayLiteral([])).toBe("{}");
    } finally {
      await db.close();
    }
  });
});

describe.each(placements)("PGlite statements, $where", ({ thread }) => {
  let db: Db;
  beforeEach(async () => {
    db = await openPglite(undefined, { thread });
    await db.exec(
      "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, amount int8 NOT NULL, tags text[], doc jsonb, at timestamptz)",
    );
  });
  afterEach(async () => {
    await db.close();
  });

  it("binds parameters by their types and parses columns, on the first run and on later ones", async () => {
    const insert =
      "INSERT INTO items (id, name, amount, tags, doc, at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, amount, tags, doc, at";
    const at = new Date("2026-11-21T10:00:00.000Z");
    const first = await db.query(insert, [1, "a", 2n ** 62n, ["x", "y,z"], { k: [1, "2"] }, at]);
    const second = await db.query(insert, [2, "b", -5n, null, null, null]);
    expect(first).toEqual([{ id: 1, amount: 2n ** 62n, tags: ["x", "y,z"], doc: { k: [1, "2"] }, at }]);
    expect(second).toEqual([{ id: 2, amount: -5n, tags: null, doc: null, at: null }]);
    const rows = await db.query("SELECT id, name FROM items WHERE amount > $1 ORDER BY id", [0n]);
    expect(rows).toEqual([{ id: 1, name: "a" }]);
    expect(await db.query("SELECT id FROM items WHERE amount > $1 ORDER BY id", [-10n])).toEqual([
      { id: 1 },
      { id: 2 },
    ]);
  });

  it("raises the database's error with its SQLSTATE and leaves the statement usable", async () => {
    const insert = "INSERT INTO items (id, name, amount) VALUES ($1, $2, $3)";
    await db.query(insert, [1, "a", 1n]);
    await expect(db.query(insert, [1, "again", 1n])).rejects.toMatchObject({ code: "23505" });
    await expect(db.query(insert, [2, null, 1n])).rejects.toMatchObject({ code: "23502" });
    await expect(db.query("SELECT nope FROM items", [])).rejects.toMatchObject({ code: "42703" });
    await db.query(insert, [3, "c", 3n]);
    expect(await db.query("SELECT count(*)::int AS n FROM items")).toEqual([{ n: 2 }]);
  });

  it("parses a statement again when its table changed shape", async () => {
    await db.query("INSERT INTO items (id, name, amount) VALUES (1, 'a', 1)");
    const select = "SELECT * FROM items WHERE id = $1";
    expect(Object.keys((await db.query(select, [1]))[0]!)).not.toContain("extra");
    await db.exec("ALTER TABLE items ADD COLUMN extra int NOT NULL DEFAULT 7");
    expect((await db.query(select, [1]))[0]).toMatchObject({ id: 1, extra: 7 });
    expect((await db.query(select, [1]))[0]).toMatchObject({ id: 1, extra: 7 });

    // A parameter typed text when first parsed, compared with a column that has since become an integer.
    const byName = "SELECT id FROM items WHERE name = $1";
    expect(await db.query(byName, ["a"])).toEqual([{ id: 1 }]);
    await db.exec("ALTER TABLE items ALTER COLUMN name TYPE int USING length(name)");
    expect(await db.query(byName, [1])).toEqual([{ id: 1 }]);
    expect(await db.query(byName, [2])).toEqual([]);
  });

  it("waits for a transaction in progress instead of running inside it", async () => {
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const transaction = db.transaction(async (tx) => {
      await tx.query("INSERT INTO items (id, name, amount) VALUES (1, 'a', 1)");
      await held;
      throw new Error("roll back");
    });
    const outside = db.query("SELECT count(*)::int AS n FROM items");
    await new Promise((resolve) => setTimeout(resolve, 20));
    release();
    await expect(transaction).rejects.toThrow("roll back");
    expect(await outside).toEqual([{ n: 0 }]);
  });

  it("answers and fails through PGlite's own query, in a transaction and in a session, and goes on after", async () => {
    const insert = "INSERT INTO items (id, name, amount, doc) VALUES ($1, $2, $3, $4) RETURNING amount, doc";
    const answered = await db
      .transaction(async (tx) => {
        const rows = (await tx.query(insert, [1, "a", 2n ** 62n, { k: "v" }])) as unknown[];
        // Failing at the parse (at the bind of a parameter and at the execution: below).
        await expect(tx.query("SELEC 1")).rejects.toMatchObject({ code: "42601" });
        return rows;
      })
      .catch((error: unknown) => error);
    // The transaction is aborted by the failure: its insert is gone, and the error said so at COMMIT or before.
    expect(answered).toBeInstanceOf(Error);
    expect(await db.query("SELECT count(*)::int AS n FROM items")).toEqual([{ n: 0 }]);
    const rows = await db.transaction(async (tx) => await tx.query(insert, [1, "a", 2n ** 62n, { k: "v" }]));
    expect(rows).toEqual([{ amount: 2n ** 62n, doc: { k: "v" } }]);
    await expect(db.transaction((tx) => tx.query("SELECT $1::int AS n", ["x"]))).rejects.toMatchObject({
      code: "22P02",
    });
    await expect(db.transaction((tx) => tx.query(insert, [1, "again", 1n, null]))).rejects.toMatchObject({
      code: "23505",
    });
    // A session: statements with no parameters go as simple queries, typed the same; with parameters, extended.
    const seen = await db.session(async (conn) => {
      const plain = await conn.query("SELECT amount, name FROM items");
      const bound = await conn.query("SELECT amount FROM items WHERE id = $1", [1]);
      await expect(conn.query("SELECT nope FROM items")).rejects.toMatchObject({ code: "42703" });
      await expect(conn.query("SELECT $1::int8 AS n", ["y"])).rejects.toMatchObject({ code: "22P02" });
      return { plain, bound, after: await conn.query("SELECT 2::int8 AS n") };
    });
    expect(seen).toEqual({
      plain: [{ amount: 2n ** 62n, name: "a" }],
      bound: [{ amount: 2n ** 62n }],
      after: [{ n: 2n }],
    });
    expect(await db.query("SELECT id, name FROM items")).toEqual([{ id: 1, name: "a" }]);
  });

  it("keeps working past the number of statements it keeps parsed", async () => {
    for (let i = 0; i < 300; i++)
      await db.query(`INSERT INTO items (id, name, amount) VALUES ($1, $2, ${i})`, [i, `n${i}`]);
    expect(await db.query("SELECT count(*)::int AS n, sum(amount) AS total FROM items")).toEqual([
      { n: 300, total: "44850" },
    ]);
  });

  describe("queryAll", () => {
    const insert = "INSERT INTO items (id, name, amount) VALUES ($1, $2, $3) RETURNING id";
    const count = "SELECT count(*)::int AS n FROM items";

    it("returns each statement's rows, in order, each statement seeing the ones before it", async () => {
      const rows = await db.queryAll([
        { text: insert, params: [1, "a", 1n] },
        { text: "UPDATE items SET amount = amount + $1 WHERE id = $2", params: [10n, 1] },
        { text: insert, params: [2, "b", 2n] },
        { text: "SELECT id, amount FROM items ORDER BY id", params: [] },
      ]);
      expect(rows).toEqual([
        [{ id: 1 }],
        [],
        [{ id: 2 }],
        [
          { id: 1, amount: 11n },
          { id: 2, amount: 2n },
        ],
      ]);
    });

    it("writes nothing when a later statement fails, and raises that statement's error", async () => {
      await db.query(insert, [1, "a", 1n]);
      await expect(
        db.queryAll([
          { text: insert, params: [2, "b", 2n] },
          { text: insert, params: [1, "duplicate", 3n] },
          { text: insert, params: [3, "c", 3n] },
        ]),
      ).rejects.toMatchObject({ code: "23505" });
      expect(await db.query(count)).toEqual([{ n: 1 }]);
      // Nothing is left open: the next statements run and commit on their own.
      expect(await db.queryAll([{ text: insert, params: [2, "b", 2n] }])).toEqual([[{ id: 2 }]]);
      expect(await db.query(count)).toEqual([{ n: 2 }]);
    });

    it("parses its statements again when a table changed shape", async () => {
      const select = "SELECT * FROM items WHERE id = $1";
      await db.queryAll([
        { text: insert, params: [1, "a", 1n] },
        { text: select, params: [1] },
      ]);
      await db.exec("ALTER TABLE items ADD COLUMN extra int NOT NULL DEFAULT 7");
      const [inserted, selected] = await db.queryAll([
        { text: insert, params: [2, "b", 2n] },
        { text: select, params: [2] },
      ]);
      expect(inserted).toEqual([{ id: 2 }]);
      expect(selected).toEqual([{ id: 2, name: "b", amount: 2n, tags: null, doc: null, at: null, extra: 7 }]);
      expect(await db.query(count)).toEqual([{ n: 2 }]);
    });

    it("waits for a transaction in progress, and runs in a transaction of its own past the statements kept parsed", async () => {
      let release: () => void = () => undefined;
      const held = new Promise<void>((resolve) => {
        release = resolve;
      });
      const transaction = db.transaction(async (tx) => {
        await tx.query("INSERT INTO items (id, name, amount) VALUES (100, 'held', 1)");
        await held;
        throw new Error("roll back");
      });
      const outside = db.queryAll([{ text: count, params: [] }]);
      await new Promise((resolve) => setTimeout(resolve, 20));
      release();
      await expect(transaction).rejects.toThrow("roll back");
      expect(await outside).toEqual([[{ n: 0 }]]);

      for (let i = 0; i < 300; i++) await db.query(`SELECT ${i} AS n`, []);
      const fresh = (i: number) => ({
        text: `INSERT INTO items (id, name, amount) VALUES ($1, $2, ${i}) RETURNING amount`,
        params: [i, `n${i}`],
      });
      expect(await db.queryAll([fresh(1), fresh(2)])).toEqual([[{ amount: 1n }], [{ amount: 2n }]]);
      await expect(db.queryAll([fresh(3), fresh(1)])).rejects.toMatchObject({ code: "23505" });
      expect(await db.query(count)).toEqual([{ n: 2 }]);
    });
  });
});

describe("PGlite on a thread of its own", () => {
  it("runs a statement while this thread goes on with its own work", async () => {
    const db = await openPglite(undefined, { thread: true });
    try {
      let ticks = 0;
      const ticking = setInterval(() => {
        ticks += 1;
      }, 10);
      try {
        // On the caller's thread PGlite's backend runs inside the call: no timer fires until it returns.
        expect(await db.query("SELECT 1 AS slept FROM pg_sleep(0.3)")).toEqual([{ slept: 1 }]);
      } finally {
        clearInterval(ticking);
      }
      expect(ticks).toBeGreaterThanOrEqual(10);
    } finally {
      await db.close();
    }
  });

  it("sends PGlite's query in three exchanges, and its exec in two", async () => {
    const db = await openPgliteThread(undefined);
    try {
      const before = db.asked;
      // Parse and Describe, then Bind, Describe and Execute, then Sync; in memory, no sync of files after it.
      expect((await db.query("SELECT $1::int AS n", [5])).rows).toEqual([{ n: 5 }]);
      expect(db.asked - before).toBe(3);
      // The simple query, then the Sync PGlite sends after it.
      await db.exec("SELECT 1");
      expect(db.asked - before).toBe(5);
      // An error at the parse is answered in the exchange of the Describe after it; what follows still works.
      await expect(db.query("SELEC 1")).rejects.toMatchObject({ code: "42601" });
      expect((await db.query("SELECT 7 AS n")).rows).toEqual([{ n: 7 }]);
    } finally {
      await db.close();
    }
  });

  it("refuses a statement once closed, instead of waiting for a thread that is gone", async () => {
    const db = await openPglite(undefined, { thread: true });
    await db.close();
    await expect(db.query("SELECT 1")).rejects.toThrow(/closed/);
  });
});
