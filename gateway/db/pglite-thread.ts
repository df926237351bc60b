// The embedded database on a thread of its own. Under load PGlite's WASM backend and its protocol code were 45% of
// the gateway's one thread (internal-pglite, issue #19), while the host's second core sat a third idle. Here the
// PGlite instance lives in a worker thread (pglite-worker.ts) and this thread keeps only what PGlite builds on top
// of one exchange: `query`, `exec` and `transaction` come from PGlite's own base class, and each exchange of wire
// protocol bytes is one message to the worker and one back. The locks PGlite takes around a query and a transaction
// are taken here, where every caller is: the worker runs one exchange at a time, in the order they were sent.
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
  serializers: Record<number, (value: unknown) => string>;
  parsers: Record<number, (value: string, oid: number) => unknown>;
  _initArrayTypes(): Promise<void>;
};
/** PGlite's base class (query, exec, transaction, array types), not exported under its own name. */
const BasePGlite = Object.getPrototypeOf(PGliteWorker) as new () => BaseMembers;

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

type Pending = { resolve(value: Uint8Array | undefined): void; reject(error: Error): void };

/**
 * Opens PGlite in a worker thread: `dataDir` a directory, or undefined for memory. The answer has PGlite's `query`,
 * `exec`, `transaction`, `execProtocolStream`, `serializers` and `parsers`, and what preparedStatements needs of it.
 */
export async function openPgliteThread(dataDir: string | undefined): Promise<PgliteThread> {
  const worker = new Worker(new URL("./pglite-worker.ts", import.meta.url), { workerData: { dataDir } });
  const db = new PgliteThread(worker);
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

  constructor(worker: Worker) {
    super();
    this.#worker = worker;
    worker.on("message", (answer: WorkerAnswer | { ready: true }) => {
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
    const id = ++this.#nextId;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ ...request, id }, transfer);
    });
  }

  /** One exchange: the worker's answer parsed here; a database error thrown as PGlite throws it. */
  async execProtocolStream(
    message: Uint8Array,
    options: { syncToFs?: boolean; throwOnError?: boolean } = {},
  ): Promise<unknown[]> {
    const bytes = await this.#ask({ op: "exchange", bytes: message, syncToFs: options.syncToFs ?? true });
    const messages: unknown[] = [];
    let error: unknown = null;
    new protocol.Parser().parse(bytes!, (parsed: unknown) => {
      if (parsed instanceof protocol.messages.DatabaseError) error ??= parsed;
      else messages.push(parsed);
    });
    if (error !== null && options.throwOnError !== false) throw error;
    return messages;
  }

  async syncToFs(): Promise<void> {
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
