// The official x402 client for Python (PyPI `x402`), for the interop test that pays Switchyard's paywall with it:
// installed once into a virtual environment in a cache outside the repo, reused when present.
// `node scripts/python-x402.ts` installs it ahead and prints the interpreter's path.
import { execFile } from "node:child_process";
import { access, constants, mkdir, mkdtemp, rename, rm } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { switchyardCacheDir } from "./lib/cache-dir.ts";

/** The x402 release the interop test runs against, with the extras its httpx client and EVM signer need. Bump it here only. */
export const pythonX402Version = "2.25.0";
const requirement = `x402[httpx,evm]==${pythonX402Version}`;
/** A cold install (download and unpack of about 40 wheels) took 19 s here; this leaves room for a busy machine. */
const installTimeoutMs = 10 * 60_000;

const run = promisify(execFile);

/**
 * The interpreter of a virtual environment holding the x402 client, made if missing: `python3 -m venv` into a
 * temporary folder beside the cache, `pip install`, then renamed into place, so a concurrent or interrupted run
 * never sees half an environment. Fails with pip's own words when python3 or the package index is missing.
 */
export async function ensurePythonX402(
  params: { cacheDir?: string; log?: (line: string) => void } = {},
): Promise<{ python: string; installed: boolean }> {
  const log = params.log ?? ((line: string) => console.log(line));
  // The cache (switchyardCacheDir), then python/x402-<version>, the environment; its interpreter in bin/.
  const environment = path.join(
    params.cacheDir ?? switchyardCacheDir(),
    "python",
    `x402-${pythonX402Version}`,
  );
  const python = path.join(environment, "bin", "python");
  try {
    await access(python, constants.X_OK);
    return { python, installed: false };
  } catch {}
  await mkdir(path.dirname(environment), { recursive: true });
  const building = await mkdtemp(path.join(path.dirname(environment), `.build-x402-${pythonX402Version}-`));
  const started = Date.now();
  log(`python-x402: installing ${requirement} into a virtual environment (cache: ${environment})`);
  try {
    await run("python3", ["-m", "venv", building], { timeout: installTimeoutMs });
    await run(
      path.join(building, "bin", "python"),
      ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input", requirement],
      { timeout: installTimeoutMs, maxBuffer: 16 * 1024 * 1024 },
    );
    await rename(building, environment).catch(async (error: NodeJS.ErrnoException) => {
      // Another run put its environment in place meanwhile: use that one.
      if (error.code !== "ENOTEMPTY" && error.code !== "EEXIST") throw error;
      await access(python, constants.X_OK);
    });
  } catch (error) {
    const { stderr, message } = error as { stderr?: string; message: string };
    throw new Error(`python-x402: could not install ${requirement}: ${stderr?.trim() || message}`, {
      cause: error,
    });
  } finally {
    await rm(building, { recursive: true, force: true });
  }
  log(`python-x402: installed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return { python, installed: true };
}

if (import.meta.main) console.log((await ensurePythonX402()).python);
