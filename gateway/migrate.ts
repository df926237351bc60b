// `npm run migrate`: brings the database to this version's schema and exits, without starting the gateway. What a
// deploy runs ahead of the new version, so that the first start does not hold the tables for long: on a database
// whose default collation is not C, the first run after db/bytewise.ts rebuilds every index of the gateway's tables.
// Reads the configuration as `npm start` does (DATABASE_URL, or PGLITE_DIR); with neither, the database would be a
// PGlite in memory, gone at exit, and there is nothing to migrate: it says so and exits 2.
import { commandFailure, loadConfig, withStartDefaults } from "./app/config.ts";
import { configScrubber } from "./app/secrets.ts";
import { migrationSources } from "./app.ts";
import { migrate, openDb } from "./db/index.ts";

/** What a failure is printed through, once the configuration (and so its secrets) is known. */
let scrub = (text: string) => text;

async function main(): Promise<number> {
  const config = loadConfig(withStartDefaults(process.env));
  scrub = configScrubber(config);
  if (config.database.kind === "pglite" && config.database.dataDir === undefined) {
    console.error("switchyard migrate: no database to migrate: set DATABASE_URL (or PGLITE_DIR)");
    return 2;
  }
  const started = performance.now();
  const db = await openDb(config.database);
  try {
    const applied = await migrate(db, migrationSources);
    const took = `${Math.round(performance.now() - started)} ms`;
    console.log(
      applied.length === 0
        ? `switchyard migrate: up to date (${took})`
        : `switchyard migrate: applied ${applied.length} in ${took}: ${applied.join(", ")}`,
    );
    return 0;
  } finally {
    await db.close();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    // As `npm start`: a configuration it refuses exits 2, anything else 1.
    process.exitCode = commandFailure("switchyard migrate", "failed", error, scrub);
  },
);
