// A database that records the first word of every statement sent through it (directly or inside a transaction;
// statements sent together with queryAll as one entry, their first words joined by "+"), for tests that pin down
// how many statements a path costs.
import type { Db } from "../../gateway/db/index.ts";

export function recordStatements(db: Db, statements: string[]): Db {
  const firstWord = (text: string) => text.trim().split(/\s+/)[0]!;
  const record = (text: string) => {
    statements.push(firstWord(text));
  };
  return {
    ...db,
    query: (text, params) => {
      record(text);
      return db.query(text, params);
    },
    queryAll: (list) => {
      statements.push(list.map((statement) => firstWord(statement.text)).join("+"));
      return db.queryAll(list);
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
