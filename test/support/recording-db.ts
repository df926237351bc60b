// A database that tells of every statement sent through it (directly, with queryAll, or inside a transaction)
// before it is sent: noteStatements for the statements' text, recordStatements for their first word, for tests that
// pin down how many statements a path costs; crashingOnce, for tests of what a crash between two writes leaves.
import type { Db } from "../../gateway/db/index.ts";

/** `db`, telling `noted` of each statement's text before it is sent: one, or a queryAll's together. */
export function noteStatements(db: Db, noted: (texts: readonly string[]) => void): Db {
  return {
    ...db,
    query: (text, params) => {
      noted([text]);
      return db.query(text, params);
    },
    queryAll: (list) => {
      noted(list.map((statement) => statement.text));
      return db.queryAll(list);
    },
    transaction: (fn) =>
      db.transaction((tx) =>
        fn({
          query: (text, params) => {
            noted([text]);
            return tx.query(text, params);
          },
        }),
      ),
  };
}

/** `db`, recording the first word of each statement (statements sent together with queryAll: joined by "+"). */
export function recordStatements(db: Db, statements: string[]): Db {
  const firstWord = (text: string) => text.trim().split(/\s+/)[0]!;
  return noteStatements(db, (texts) => {
    statements.push(texts.map(firstWord).join("+"));
  });
}

/**
 * `db`, failing the first statement whose text holds `fragment` (with "crash", before it is sent), as a process that
 * stops there would: its transaction is rolled back, and every statement after it goes through.
 */
export function crashingOnce(db: Db, fragment: string): Db {
  let crashed = false;
  return noteStatements(db, (texts) => {
    if (crashed || !texts.some((text) => text.includes(fragment))) return;
    crashed = true;
    throw new Error("crash");
  });
}
