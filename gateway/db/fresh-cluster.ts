// A fresh in-memory database starts with initdb: about 1.4 s of PGlite's WebAssembly on this host (1.5 s on its worker
// thread), for a cluster that is the same bytes every time. So a copy of one fresh cluster's files (PGlite's
// dumpDataDir, a 40 MB tar) is kept, and the later opens start from it (loadDataDir): about 0.3 s.
//
// The copy is kept in the machine's cache directory ($SWITCHYARD_CACHE_DIR or ~/.cache/switchyard, where the project
// keeps what it builds), for every process after the one that made it: `npm start`, and each test file's process
// (the suites start hundreds of gateways). Its name carries its SHA-256 and its PGlite version: a copy whose bytes do
// not match its name is never handed to PGlite (which does not survive every malformed archive: a stream error it
// throws past its caller ends the process), nor one made by another PGlite. Written to a file of its own and renamed,
// a copy is whole or absent. Without a directory to keep it in (none given, or it cannot be written), the copy lives
// in the process, made by its second in-memory open for the third and after.
import { createHash, randomBytes } from "node:crypto";
import { openAsBlob, readFileSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { switchyardCacheDir } from "../../scripts/lib/cache-dir.ts";

/**
 * How an in-memory open starts. `load`: a fresh cluster's files to start from instead of initdb; if that open fails,
 * it calls `spoiled` and opens again by initdb. `keep`: set when this open is to make the copy; it calls `keep` with
 * the files dumped right after its start, before anything else ran on them, or with undefined when it could not (a
 * later open then tries again). An open given `keep` must call it, in a finally: the opens after it wait for it.
 */
export type FreshStart = {
  load?: Blob;
  spoiled?: () => void;
  keep?: (files: Blob | undefined) => void;
};

export type FreshClusters = {
  start(): Promise<FreshStart>;
  /** Opens started from a copy so far (less those that could not start from it: `spoiled`). */
  readonly loaded: number;
  /** Writes to the directory still going (a copy being saved): for a test to wait for. */
  saved(): Promise<void>;
};

/** `dir`: where copies are kept across processes; null: in this process only. `version`: PGlite's. */
export function createFreshClusters(options: { dir: string | null; version: string }): FreshClusters {
  const { dir, version } = options;
  let opened = 0;
  let loaded = 0;
  let saving: Promise<void> = Promise.resolve();
  /** The copy: being read or made, found or not (undefined). Unset: not looked for yet, or dropped as spoiled. */
  let kept: Promise<Blob | undefined> | undefined;
  let lookedOnDisk = false;
  const loading = (files: Blob, from: Promise<Blob | undefined>): FreshStart => {
    loaded += 1;
    return {
      load: files,
      spoiled() {
        loaded -= 1;
        if (kept === from) kept = undefined;
      },
    };
  };
  return {
    async start() {
      opened += 1;
      if (kept === undefined && dir !== null && !lookedOnDisk) {
        lookedOnDisk = true;
        kept = readCopy(dir, version);
      }
      if (kept !== undefined) {
        const waitedFor = kept;
        const files = await waitedFor;
        if (files !== undefined) return loading(files, waitedFor);
        // None on disk, or the open making it could not: this open makes one, unless another already does.
        if (kept === waitedFor) kept = undefined;
        else if (kept !== undefined) {
          const another = kept;
          const other = await another;
          return other === undefined ? {} : loading(other, another);
        }
      }
      // With a directory, the first open without a copy makes it (for the processes after); in memory, the second.
      if (dir === null && opened < 2) return {};
      let settle: (files: Blob | undefined) => void = () => undefined;
      const making = new Promise<Blob | undefined>((resolve) => {
        settle = resolve;
      });
      kept = making;
      return {
        keep(files) {
          if (files === undefined) {
            if (kept === making) kept = undefined;
          } else if (dir !== null) {
            saving = saving.then(() => writeCopy(dir, version, files));
          }
          settle(files);
        },
      };
    },
    get loaded() {
      return loaded;
    },
    saved: () => saving,
  };
}

/** A copy of any PGlite's. */
const anyCopy = /^pglite-.+-fresh-[0-9a-f]{64}\.tar$/;

const copyPattern = (version: string) =>
  new RegExp(`^pglite-${version.replaceAll(".", "\\.")}-fresh-([0-9a-f]{64})\\.tar$`);

/** The copy kept in `dir` for this PGlite whose bytes match its name, as a Blob read from the file when used. */
async function readCopy(dir: string, version: string): Promise<Blob | undefined> {
  try {
    const pattern = copyPattern(version);
    for (const name of await readdir(dir)) {
      const digest = pattern.exec(name)?.[1];
      if (digest === undefined) continue;
      const file = path.join(dir, name);
      if (
        createHash("sha256")
          .update(await readFile(file))
          .digest("hex") !== digest
      )
        continue;
      // Read again when PGlite loads it; its name is its content, so a file put in its place is the same bytes.
      return await openAsBlob(file);
    }
  } catch {
    // No directory yet, or one that cannot be read: no copy.
  }
  return undefined;
}

/**
 * Saves `files` in `dir` under their digest: to a file of this process's, renamed into place once written. Not when
 * another process saved one meanwhile: two fresh clusters differ (their system identifier, their times), and one copy
 * is enough.
 */
async function writeCopy(dir: string, version: string, files: Blob): Promise<void> {
  const pattern = copyPattern(version);
  if ((await readdir(dir).catch(() => [])).some((name) => pattern.test(name))) return;
  const bytes = new Uint8Array(await files.arrayBuffer());
  const name = `pglite-${version}-fresh-${createHash("sha256").update(bytes).digest("hex")}.tar`;
  const partial = path.join(dir, `.${name}.${process.pid}.${randomBytes(4).toString("hex")}`);
  try {
    await mkdir(dir, { recursive: true });
    await writeFile(partial, bytes);
    await rename(partial, path.join(dir, name));
    // Another PGlite's copies (40 MB each) go: an upgrade leaves none behind. A process of that version still
    // running, whose copy this was, opens its next database by initdb and saves its copy again.
    for (const other of await readdir(dir)) {
      if (anyCopy.test(other) && !pattern.test(other)) await rm(path.join(dir, other), { force: true });
    }
  } catch {
    // A directory that cannot be written: the copy lives in this process only.
    await rm(partial, { force: true }).catch(() => undefined);
  }
}

/** The installed PGlite's version (its package.json, beside the dist/ its entry point is in). */
function pgliteVersion(): string {
  const manifest = new URL("../package.json", import.meta.resolve("@electric-sql/pglite"));
  return (JSON.parse(readFileSync(manifest, "utf8")) as { version: string }).version;
}

/** This process's: what openPglite uses, kept in the project's cache directory. */
export const freshClusters = createFreshClusters({ dir: switchyardCacheDir(), version: pgliteVersion() });
