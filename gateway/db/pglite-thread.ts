// The embedded database on a thread of its own. Under load PGlite's WASM backend and its protocol code were 45% of
// the gateway's one thread (internal-pglite, issue #19), while the host's second core sat a third idle. Here the
// PGlite instance lives in a worker thread (pglite-worker.ts) and this thread keeps only what PGlite builds on top
// of one exchange: `query`, `exec` and `transaction` come from PGlite's own base class, and each exchange of wire
// protocol bytes is one message to the worker and one back. The locks PGlite takes around a query and a transaction
// are taken here, where every caller is: the worker runs one exchange at a time, in the order they were sent.
import { readFile } from "node:fs/promises";
import { Worker } from "node:worker_threads";
import { Mutex, protocol } from "@electric-sql/pglite";
import { PGliteWorker } from "@electric-sql/pglite/worker";
import { SwitchyardError } from "../../core/errors.ts";

/** What the worker answers: an exchange's bytes, or what went wrong. */
export type WorkerAnswer =
  | { id: number; bytes: Uint8Array }
  | { id: number; done: true }
  | { id: number; failed: { message: string } };

/** What the worker is asked. */
export type WorkerRequest =
  | { id: number; op: "exchange"; bytes: Uint8Array; syncToFs: boolean }
  | { id: number; op: "sync" }
  | { id: number; op: "close" };

/** What PGlite's base class gives a subclass (of what is used here). */
type BaseMembers = {
  query<T>(text: string, params?: unknown[]): Promise<{ rows: T[] }>;
  exec(text: string): Promise<{ rows: unknown[] }[]>;
  serializers: Record<number, (value: unknown) => string>;
  parsers: Record<number, (value: string, oid: number) => unknown>;
  _initArrayTypes(): Promise<void>;
};
/** PGlite's base class (query, exec, transaction, array types), not exported under its own name. */
const BasePGlite = Object.getPrototypeOf(PGliteWorker) as new () => BaseMembers;

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/**
 * What a worker is started with: where the database lives, PGlite's WebAssembly already compiled, and, in memory, a
 * fresh cluster's files to start from (`load`), or whether to answer with its own fresh files (`dump`): fresh-cluster.ts.
 */
export type PgliteWorkerData = {
  dataDir: string | undefined;
  pgliteWasmModule: WebAssembly.Module;
  initdbWasmModule: WebAssembly.Module;
  load: Blob | undefined;
  dump: boolean;
};

/** The worker's first message, once the database is open: with its fresh files when it was asked to dump them. */
export type WorkerReady = { ready: true; files?: Blob };

/** The global WebAssembly object (the project's TypeScript libraries declare its types, not the global itself). */
const wasm = (
  globalThis as unknown as { WebAssembly: { compile(bytes: Uint8Array): Promise<WebAssembly.Module> } }
).WebAssembly;

type Compiled = Pick<PgliteWorkerData, "pgliteWasmModule" | "initdbWasmModule">;

let compiled: Promise<Compiled> | null = null;

/**
 * PGlite's two WebAssembly modules (the backend, initdb), compiled once for the process. PGlite keeps its compiled
 * modules per thread, so a worker left to itself compiles both again: about 1.8 s longer and 2.5 s more CPU for
 * each database opened after the first (createApp three times in one process, 3.65 s a start on this thread against 5.5 s on a
 * worker that compiled its own). A compiled module is handed to a worker without being compiled again.
 */
function pgliteModules(): Promise<Compiled> {
  compiled ??= (async () => {
    const dist = new URL(".", import.meta.resolve("@electric-sql/pglite"));
    const compile = async (name: string) => await wasm.compile(await readFile(new URL(name, dist)));
    const [pgliteWasmModule, initdbWasmModule] = await Promise.all([
      compile("pglite.wasm"),
      compile("initdb.wasm"),
    ]);
    return { pgliteWasmModule, initdbWasmModule };
  })();
  // A failed compile (a file missing) is not kept: the next open tries again and says why.
  compiled.catch(() => {
    compiled = null;
  });
  return compiled;
}

type Pending = { resolve(value: Uint8Array | undefined): void; reject(error: Error): void };

/**
 * Opens PGlite in a worker thread: `dataDir` a directory, or undefined for memory. The answer has PGlite's `query`,
 * `exec`, `transaction`, `execProtocolStream`, `serializers` and `parsers`, and what preparedStatements needs of it.
 */
export async function openPgliteThread(
  dataDir: string | undefined,
  fresh: { load?: Blob | undefined; dump?: boolean } = {},
): Promise<PgliteThread> {
  const modules = await pgliteModules();
  // A Blob read from a file when used (fresh-cluster.ts) cannot be handed to a thread: its bytes are, read here.
  const load = fresh.load === undefined ? undefined : new Blob([await fresh.load.arrayBuffer()]);
  const worker = new Worker(new URL("./pglite-worker.ts", import.meta.url), {
    workerData: {
      dataDir,
      ...modules,
      load,
      dump: fresh.dump === true,
    } satisfies PgliteWorkerData,
  });
  const db = new PgliteThread(worker, { inMemory: dataDir === undefined });
  await db.started;
  return db;
}

export class PgliteThread extends BasePGlite {
  readonly debug = 0;
  readonly started: Promise<void>;
  #worker: Worker;
  #nextId = 0;
  #pending = new Map<number, Pending>();
  #queryLock = new Mutex();
  #transactionLock = new Mutex();
  #failure: Error | null = null;
  #closed = false;
  readonly #inMemory: boolean;
  /** Messages whose answers nothing reads before the next message's (heldBack): sent with it, in one exchange. */
  #held: Uint8Array[] = [];
  #asked = 0;
  #freshFiles: Blob | undefined;

  constructor(worker: Worker, options: { inMemory: boolean }) {
    super();
    this.#worker = worker;
    this.#inMemory = options.inMemory;
    worker.on("message", (answer: WorkerAnswer | WorkerReady) => {
      if ("ready" in answer) return;
      const pending = this.#pending.get(answer.id);
      if (pending === undefined) return;
      this.#pending.delete(answer.id);
      if ("failed" in answer) pending.reject(new SwitchyardError(`pglite: ${answer.failed.message}`));
      else pending.resolve("bytes" in answer ? answer.bytes : undefined);
    });
    const ended = (error: Error) => {
      this.#failure ??= error;
      for (const pending of this.#pending.values()) pending.reject(error);
      this.#pending.clear();
    };
    worker.on("error", ended);
    worker.on("exit", (code) => ended(new SwitchyardError(`pglite: its thread ended (exit code ${code})`)));
    this.started = new Promise<void>((resolve, reject) => {
      const onMessage = (message: unknown) => {
        if (typeof message === "object" && message !== null && "ready" in message) {
          worker.off("message", onMessage);
          this.#freshFiles = (message as WorkerReady).files;
          resolve();
        }
      };
      worker.on("message", onMessage);
      worker.once("error", reject);
      worker.once("exit", (code) =>
        reject(new SwitchyardError(`pglite: its thread ended while starting (${code})`)),
      );
    }).then(() => this._initArrayTypes());
  }

  #ask(
    request: DistributiveOmit<WorkerRequest, "id">,
    transfer: ArrayBuffer[] = [],
  ): Promise<Uint8Array | undefined> {
    if (this.#failure !== null) return Promise.reject(this.#failure);
    this.#asked += 1;
    const id = ++this.#nextId;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ ...request, id }, transfer);
    });
  }

  /**
   * One exchange: the worker's answer parsed here; a database error thrown as PGlite throws it. PGlite's `query` (and
   * a transaction's) sends its extended-protocol messages one exchange each — Parse, Describe, Bind, Describe, Execute,
   * Sync — and reads only the statement's parameter types (Describe's answer) before the end. Across threads each
   * exchange is a round trip of its own (about 0.3 ms with the two threads otherwise idle: 4,644 of them, 1.6 s, to
   * migrate a new database, against 0.75 s for all of it on this thread), so Parse, Bind and a portal's Describe are
   * held back and sent with the message after them: three exchanges a query. Their answers then come in that
   * message's, in the same order, and so does an error of theirs, which the backend answers in place of everything
   * up to the next Sync, as it did before.
   */
  async execProtocolStream(
    message: Uint8Array,
    options: { syncToFs?: boolean; throwOnError?: boolean } = {},
  ): Promise<unknown[]> {
    if (heldBack(message)) {
      this.#held.push(message);
      return [];
    }
    let sent = message;
    if (this.#held.length > 0) {
      sent = joinMessages([...this.#held, message]);
      this.#held = [];
    }
    const bytes = await this.#ask({ op: "exchange", bytes: sent, syncToFs: options.syncToFs ?? true });
    const messages: unknown[] = [];
    let error: unknown = null;
    new protocol.Parser().parse(bytes!, (parsed: unknown) => {
      if (parsed instanceof protocol.messages.DatabaseError) error ??= parsed;
      else messages.push(parsed);
    });
    if (error !== null && options.throwOnError !== false) throw error;
    return messages;
  }

  /** The fresh cluster's files the worker dumped when started with `dump` (and could): fresh-cluster.ts. */
  get freshFiles(): Blob | undefined {
    return this.#freshFiles;
  }

  /** Round trips to the worker so far (exchanges, syncs, the close). */
  get asked(): number {
    return this.#asked;
  }

  async syncToFs(): Promise<void> {
    // In memory there is no file to write: the worker's sync would be a round trip for nothing.
    if (this.#inMemory) return;
    await this.#ask({ op: "sync" });
  }

  async _checkReady(): Promise<void> {
    if (this.#closed) throw new SwitchyardError("pglite: closed");
  }

  _runExclusiveQuery<T>(fn: () => Promise<T>): Promise<T> {
    return this.#queryLock.runExclusive(fn);
  }

  _runExclusiveTransaction<T>(fn: () => Promise<T>): Promise<T> {
    return this.#transactionLock.runExclusive(fn);
  }

  // No blobs (COPY to and from files) on this path.
  async _handleBlob(): Promise<void> {}
  async _cleanupBlob(): Promise<void> {}
  async _getWrittenBlob(): Promise<undefined> {
    return undefined;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.#ask({ op: "close" });
    } finally {
      await this.#worker.terminate();
    }
  }
}

/**
 * Whether `message` is one Parse, Bind, or Describe of a portal: a message whose answer (ParseComplete,
 * BindComplete, the portal's RowDescription) PGlite's query does not read before it sends the next one. A Describe
 * of a statement is not: its parameter types are read to encode the parameters. Several messages together (the
 * prepared statements' exchanges) are never held.
 */
function heldBack(message: Uint8Array): boolean {
  if (message.length < 6) return false;
  const length = ((message[1]! << 24) | (message[2]! << 16) | (message[3]! << 8) | message[4]!) >>> 0;
  if (length + 1 !== message.length) return false;
  const type = message[0];
  return type === 0x50 /* P */ || type === 0x42 /* B */ || (type === 0x44 /* D */ && message[5] === 0x50);
}

/** Protocol messages as one run of bytes, in order: what one exchange sends. */
export function joinMessages(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
