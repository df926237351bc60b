// A database that tells of every statement sent through it (directly, with queryAll, or inside a transaction)
// before it is sent: noteStatements for the statements' text, recordStatements for their first word, for tests that
// pin down how many statements a path costs; noteRefusals for the statements the database refuses; crashingOnce, for
// tests of what a crash between two writes leaves.
import type { Db } from "../../gateway/db/index.ts";

/**
 * `db`, each statement sent through `send` with its text (one, or a queryAll's together): the one place the three ways
 * a statement goes in (query, queryAll, a transaction's query) are wrapped.
 */
function wrapStatements(db: Db, send: <T>(texts: readonly string[], go: () => Promise<T>) => Promise<T>): Db {
  return {
    ...db,
    query: (text, params) => send([text], () => db.query(text, params)),
    queryAll: (list) =>
      send(
        list.map((statement) => statement.text),
        () => db.queryAll(list),
      ),
    transaction: (fn) =>
      db.transaction((tx) => fn({ query: (text, params) => send([text], () => tx.query(text, params)) })),
  };
}

/** `db`, telling `noted` of each statement's text before it is sent: one, or a queryAll's together. */
export function noteStatements(db: Db, noted: (texts: readonly string[]) => void): Db {
  return wrapStatements(db, (texts, go) => {
    noted(texts);
    return go();
  });
}

/** `db`, noting in `refused` the SQLSTATE of every statement the database refuses (in or out of a transaction). */
export function noteRefusals(db: Db, refused: string[]): Db {
  return wrapStatements(db, (_texts, go) =>
    go().catch((error: unknown) => {
      refused.push(String((error as { code?: unknown }).code ?? error));
      throw error;
    }),
  );
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
