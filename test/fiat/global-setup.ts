// Builds stripe-mock (or reuses the cached binary) and starts it for the fiat project. A missing Go or a
// failed build fails the run: these tests never skip.
import type { TestProject } from "vitest/node";
import { ensureStripeMock, startStripeMock, stripeMockBuildTimeoutMs } from "../../scripts/stripe-mock.ts";

declare module "vitest" {
  export interface ProvidedContext {
    stripeMockPort: number;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const ensured = await ensureStripeMock({ buildTimeoutMs: stripeMockBuildTimeoutMs });
  const server = await startStripeMock({ binary: ensured.binary });
  project.provide("stripeMockPort", server.port);
  return () => server.stop();
}
