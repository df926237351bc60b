// A database that records the first word of every statement sent through it (directly or inside a transaction),
// for tests that pin down how many statements a path costs.
import type { Db } from "../../gateway/db/index.ts";

export function recordStatements(db: Db, statements: string[]): Db {
  const record = (text: string) => {
    statements.push(text.trim().split(/\s+/)[0]!);
  };
  return {
    ...db,
    query: (text, params) => {
      record(text);
      return db.query(text, params);
    },
    transaction: (fn) =>
      db.transaction((tx) =>
        fn({
          query: (text, params) => {
            record(text);
            return tx.query(text, params);
          },
        }),
      ),
  };
}
