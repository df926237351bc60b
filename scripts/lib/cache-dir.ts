// Where what the project builds or installs outside the repo is kept (stripe-mock, the Python x402 SDK; lnd and btcd
// through scripts/lightning/build.sh, which reads the same variable): reused by every run on the machine.
import os from "node:os";
import path from "node:path";

/** $SWITCHYARD_CACHE_DIR, or ~/.cache/switchyard. */
export function switchyardCacheDir(): string {
  return process.env.SWITCHYARD_CACHE_DIR ?? path.join(os.homedir(), ".cache", "switchyard");
}
