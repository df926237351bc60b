// PGlite's in-memory file system (Emscripten's MEMFS): what the embedded database in memory changes of it, on
// whichever thread PGlite runs (index.ts openPglite, pglite-worker.ts).
import type { PGlite } from "@electric-sql/pglite";

/** What doubleMemfsGrowth touches of Emscripten's file system under PGlite (present in 0.5; checked at start). */
type MemfsNode = { contents: unknown; usedBytes: number; stream_ops: Record<string | symbol, unknown> };
type MemfsWrite = (
  stream: { node: MemfsNode },
  buffer: Uint8Array,
  offset: number,
  length: number,
  position: number,
  canOwn?: boolean,
) => number;
const doubling = Symbol("switchyard.memfsDoubling");

/**
 * In memory, a file outgrowing its array is copied whole into a new one only an eighth larger once past 1 MB
 * (Emscripten's MEMFS): every table and index copied over and over as it grows, each copy a stall of the one thread
 * (up to 17 ms for a 15 MB index; 250 copies, 263 ms, in a 13 s run of internal-pglite at 128 clients), and each new
 * array garbage for V8 to account. Here a file's array doubles instead, as MEMFS does below 1 MB: a file costs at most
 * twice its size in memory, and is copied about once in all. Issue #19, internal-pglite A/B, two rounds each: best
 * within p99 50 ms 4,326–4,359/s at 64 clients (p99 40–44 ms; 96 clients gave p99 52–57 ms) → 5,650–5,791/s at 96
 * clients (p99 43 ms), gateway CPU 248–272 → 186–230 µs a payment. Left as it is when MEMFS is not as expected.
 */
export async function doubleMemfsGrowth(db: PGlite): Promise<void> {
  const fs = (db as unknown as { Module?: { FS?: { lookupPath?: (path: string) => { node?: MemfsNode } } } })
    .Module?.FS;
  if (typeof fs?.lookupPath !== "function") return;
  const [row] = (
    await db.query<{ directory: string }>("SELECT current_setting('data_directory') AS directory")
  ).rows;
  let node: MemfsNode | undefined;
  try {
    node = fs.lookupPath(`${row?.directory}/PG_VERSION`).node;
  } catch {
    return;
  }
  const ops = node?.stream_ops;
  const write = ops?.write;
  if (ops === undefined || typeof write !== "function" || !(node?.contents instanceof Uint8Array)) return;
  if (ops[doubling] === true) return;
  ops[doubling] = true;
  ops.write = function (this: unknown, ...args: Parameters<MemfsWrite>): number {
    const [stream, , , length, position, canOwn] = args;
    const target = stream.node;
    const contents = target.contents;
    const needed = position + length;
    // An empty file's first write, or one whose buffer it may keep, takes MEMFS's own path.
    if (
      contents instanceof Uint8Array &&
      needed > contents.length &&
      target.usedBytes > 0 &&
      canOwn !== true
    ) {
      const grown = new Uint8Array(Math.max(needed, contents.length * 2));
      grown.set(contents.subarray(0, target.usedBytes));
      target.contents = grown;
    }
    return (write as MemfsWrite).apply(this, args);
  };
}
