// vitest globalSetup: one private PostgreSQL for the whole project run; tests read its URL with
// `inject("postgresUrl")` and make their own database with `createTestDatabase(url)`.
// A missing PostgreSQL fails the run with a clear error (install: apt-get install -y postgresql); never a skip.
import type { TestProject } from "vitest/node";
import { startPostgres } from "./postgres.ts";

declare module "vitest" {
  export interface ProvidedContext {
    /** postgres://postgres@127.0.0.1:<port>/postgres, a superuser with trust auth */
    postgresUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const postgres = await startPostgres();
  project.provide("postgresUrl", postgres.url);
  return () => postgres.stop();
}
