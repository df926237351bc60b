// A fresh in-memory database starts with initdb: about 1.4 s of PGlite's WebAssembly on this host (1.5 s on its worker
// thread), for a cluster that is the same bytes every time. A process that opens many (the test suites start hundreds
// of gateways) keeps a copy of one fresh cluster's files (PGlite's dumpDataDir, ~40 MB uncompressed) and starts the
// later ones from it (loadDataDir): about 0.3 s. A process that opens one or two (`npm start`) keeps nothing: the copy
// is made by the second in-memory open, for the third and after.

/**
 * How an in-memory open starts: `load`, a fresh cluster's files to start from instead of initdb; or `keep`, set when
 * this open is to make the copy: it calls `keep` with the files dumped right after its start, before anything else
 * ran on them, or with undefined when it could not (a later open then tries again). An open given `keep` must call
 * it, in a finally: the opens after it wait for it.
 */
export type FreshStart = { load?: Blob; keep?: (files: Blob | undefined) => void };

export type FreshClusters = {
  start(): Promise<FreshStart>;
  /** Opens started from the kept copy so far. */
  readonly loaded: number;
};

export function createFreshClusters(): FreshClusters {
  let opened = 0;
  let loaded = 0;
  /** The kept copy; undefined before the second open, or after the open that was to make it failed. */
  let kept: Promise<Blob | undefined> | undefined;
  return {
    async start() {
      opened += 1;
      if (kept !== undefined) {
        const files = await kept;
        if (files === undefined) return {};
        loaded += 1;
        return { load: files };
      }
      if (opened < 2) return {};
      let settle: (files: Blob | undefined) => void = () => undefined;
      const making = new Promise<Blob | undefined>((resolve) => {
        settle = resolve;
      });
      kept = making;
      return {
        keep(files) {
          if (files === undefined && kept === making) kept = undefined;
          settle(files);
        },
      };
    },
    get loaded() {
      return loaded;
    },
  };
}

/** This process's: what openPglite uses. */
export const freshClusters = createFreshClusters();
