// The thread PGlite runs on (pglite-thread.ts): it opens the database, then answers each exchange of wire protocol
// bytes with the backend's bytes, one at a time, in the order they come.
import { parentPort, workerData } from "node:worker_threads";
import { PGlite } from "@electric-sql/pglite";
import { doubleMemfsGrowth } from "./memfs.ts";
import type { PgliteWorkerData, WorkerAnswer, WorkerReady, WorkerRequest } from "./pglite-thread.ts";

const port = parentPort!;
// The WebAssembly modules come compiled by the thread that opened the database (pgliteModules in pglite-thread.ts).
const { dataDir, pgliteWasmModule, initdbWasmModule, load, dump } = workerData as PgliteWorkerData;
const db = await PGlite.create({
  pgliteWasmModule,
  initdbWasmModule,
  ...(dataDir === undefined ? {} : { dataDir }),
  ...(load === undefined ? {} : { loadDataDir: load }),
});
// Asked for, the fresh cluster's files, before anything else runs on them (fresh-cluster.ts); none if that failed.
const files = dump ? await db.dumpDataDir("none").catch(() => undefined) : undefined;
// As openPglite does on this thread (see there): no zero-filled WAL segments, files that grow by doubling.
if (dataDir === undefined) {
  await db.exec("SET wal_init_zero = off");
  await doubleMemfsGrowth(db);
}

let queue: Promise<void> = Promise.resolve();
port.on("message", (request: WorkerRequest) => {
  queue = queue.then(() => answer(request));
});
port.postMessage({ ready: true, ...(files === undefined ? {} : { files }) } satisfies WorkerReady);

async function answer(request: WorkerRequest): Promise<void> {
  let reply: WorkerAnswer;
  try {
    if (request.op === "exchange") {
      let bytes = await db.execProtocolRaw(request.bytes, { syncToFs: request.syncToFs });
      // A view into the WASM memory, or into a larger buffer: copied out, so that its buffer can be handed over.
      if (bytes.byteOffset !== 0 || bytes.byteLength !== bytes.buffer.byteLength) bytes = bytes.slice();
      port.postMessage({ id: request.id, bytes } satisfies WorkerAnswer, [bytes.buffer as ArrayBuffer]);
      return;
    }
    if (request.op === "sync") await db.syncToFs();
    else await db.close();
    reply = { id: request.id, done: true };
  } catch (error) {
    reply = { id: request.id, failed: { message: (error as Error).message } };
  }
  port.postMessage(reply);
}
