// Builds btcd/lnd (or reuses the cache) and starts one regtest cluster for the lightning project. A
// missing Go or a failed build fails the run: these tests never skip.
import type { TestProject } from "vitest/node";
import {
  ensureLightningBinaries,
  type RegtestClusterDescription,
  serveClusterControl,
  startRegtestCluster,
} from "../../scripts/lightning/index.ts";

declare module "vitest" {
  export interface ProvidedContext {
    lightningCluster: RegtestClusterDescription;
    lightningControlUrl: string;
  }
}

const log = (line: string) => process.stderr.write(`${line}\n`);

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const binaries = await ensureLightningBinaries({ onProgress: log });
  log(
    `lightning: binaries ${binaries.cached ? "from cache" : "built"} in ${(binaries.durationMs / 1000).toFixed(1)} s`,
  );
  const cluster = await startRegtestCluster({
    binaries,
    log,
    keepDirectory: process.env.KEEP_REGTEST === "1",
  });
  log(`lightning: cluster started in ${(cluster.startDurationMs / 1000).toFixed(1)} s`);
  // A control server that cannot start leaves no cluster running behind the failed setup.
  const control = await serveClusterControl(cluster).catch(async (error: unknown) => {
    await cluster.stop();
    throw error;
  });
  project.provide("lightningCluster", cluster.describe());
  project.provide("lightningControlUrl", control.url);
  return async () => {
    await control.close();
    await cluster.stop();
  };
}
