import { constants } from "node:buffer";
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { createWriteStream, ftruncateSync, writeSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { SwitchyardError } from "../../core/index.ts";
import { bolt11Field, bytesToWords, signBolt11 } from "../../test/support/bolt11.ts";
import { afterTakenOverByAnotherHost } from "../../test/support/lightning-journal.ts";
import {
  createFileRailStore,
  createMemoryRailStore,
  journalLeaseMs,
  RailStoreError,
  type RailStoreRecord,
} from "./store.ts";

const attempt = (attemptId: string): RailStoreRecord => ({
  t: "attempt",
  attemptId,
  paymentId: `payment-${attemptId}`,
  paymentHash: "ab".repeat(32),
  kind: "bolt11",
  amountMsat: "1000",
  createdAtMs: 1,
  feeMaxMsat: "10",
  destination: null,
  request: "lnbcrt1...",
});

/**
 * A signed regtest invoice of `paymentHash`, made `padding` words longer by descriptions (as route hints make one
 * longer): a mark keeps an earlier invoice only if it is one of its hash.
 */
const invoiceOf = (paymentHash: string, padding = 0): string =>
  signBolt11({
    network: "bcrt",
    amount: "10n",
    timestampSeconds: 1_700_000_000,
    fields: [
      [bolt11Field.paymentHash, bytesToWords(Buffer.from(paymentHash, "hex"))],
      // A field holds at most 1023 words.
      ...Array.from({ length: Math.ceil(padding / 1_000) }, (_, index) => {
        const words = Array<number>(Math.min(1_000, padding - index * 1_000)).fill(0);
        return [bolt11Field.description, words] as const;
      }),
    ],
    privateKey: Buffer.alloc(32, 7),
  });

/** A pid no process of this host has (above Linux's pid_max). */
const gonePid = 2 ** 22 + 12_345;

/**
 * Opens a file store on `file` in another process, which holds it (its lock renewed) until its stdin ends, then
 * closes it: resolves once it holds the journal.
 */
async function holdInAnotherProcess(file: string): Promise<ChildProcess> {
  const store = pathToFileURL(path.join(import.meta.dirname, "store.ts")).href;
  const child = spawn(
    process.execPath,
    [
      "--input-type=module",
      "-e",
      `const { createFileRailStore } = await import(${JSON.stringify(store)});
       const store = createFileRailStore(process.argv[1]);
       await store.load();
       console.log("held");
       process.stdin.on("end", () => store.close().then(() => process.exit(0)));
       process.stdin.resume();`,
      file,
    ],
    { stdio: ["pipe", "pipe", "inherit"] },
  );
  let output = "";
  child.stdout?.setEncoding("utf8");
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on("data", (chunk: string) => {
      output += chunk;
      if (output.includes("held")) resolve();
    });
    child.on("exit", (code) =>
      reject(new Error(`the other process left (${String(code)}) before it held the journal`)),
    );
  });
  return child;
}

describe("rail store", () => {
  let directory = "";
  beforeEach(async () => {
    directory = await mkdtemp(path.join(os.tmpdir(), "rail-store-"));
  });
  afterEach(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  /** A store on `file`, loaded, whose every sync waits until the test settles it: `syncs` in the order they started. */
  async function storeOfHeldSyncs(file: string) {
    const syncs: Array<{ done: () => void; fail: (error: Error) => void }> = [];
    const store = createFileRailStore(file, {
      sync: () =>
        new Promise<void>((done, fail) => {
          syncs.push({ done, fail });
        }),
    });
    await store.load();
    return { store, syncs };
  }

  it("keeps an attempt's tenant across a reopen and a compaction; a line written before it had one reads as none", async () => {
    const file = path.join(directory, "journal.jsonl");
    const first = createFileRailStore(file);
    await first.load();
    await first.append({
      ...(attempt("tenanted") as Extract<RailStoreRecord, { t: "attempt" }>),
      tenantId: "ten_a",
    });
    await first.append(attempt("older"));
    await first.close();
    for (let reopen = 0; reopen < 2; reopen++) {
      const again = createFileRailStore(file);
      const state = await again.load(); // compacts the journal it read
      await again.close();
      expect(state.attempts.get("tenanted")?.tenantId).toBe("ten_a");
      expect(state.attempts.get("older")?.tenantId).toBeNull();
    }
  });

  it("replays attempts, outcomes, invoices and the settle index after a reopen", async () => {
    const file = path.join(directory, "journal.jsonl");
    const first = createFileRailStore(file);
    await first.load();
    await first.append(attempt("a1"));
    await first.append(attempt("a2"));
    // An outcome its caller gets at once goes with its "reported" in one append, as the rail writes it.
    await first.append(
      { t: "outcome", attemptId: "a1", status: "succeeded", preimage: "cd".repeat(32), feeMsat: "7" },
      { t: "reported", attemptId: "a1" },
    );
    await first.append({
      t: "invoice",
      paymentHash: "ef".repeat(32),
      reference: "inv-1",
      expiresAtMs: Date.now() + 60_000,
    });
    await first.append({ t: "settle_index", value: 5 });
    await first.append({ t: "settle_index", value: 3 });
    await first.close();

    const second = createFileRailStore(file);
    const state = await second.load();
    await second.close();
    expect(state.settleIndex).toBe(5);
    expect(state.attempts.get("a1")?.outcome).toEqual({
      status: "succeeded",
      preimage: "cd".repeat(32),
      feeMsat: 7n,
    });
    expect(state.attempts.get("a1")?.reported).toBe(true);
    expect(state.attempts.get("a2")?.outcome).toBeNull();
    expect(state.attempts.get("a2")?.feeMaxMsat).toBe(10n);
    expect(state.invoices.get("ef".repeat(32))?.reference).toBe("inv-1");
  });

  it("keeps lines in the order they were appended, and refuses appends before load or after close", async () => {
    const file = path.join(directory, "journal.jsonl");
    const store = createFileRailStore(file);
    await expect(store.append(attempt("early"))).rejects.toThrow("store not loaded");
    await store.load();
    const ids = Array.from({ length: 50 }, (_, i) => `a${i}`);
    await Promise.all(ids.map((id) => store.append(attempt(id))));
    await store.close();
    await expect(store.append(attempt("late"))).rejects.toThrow("store not loaded");
    const lines = (await readFile(file, "utf8")).trimEnd().split("\n");
    expect(lines.map((line) => (JSON.parse(line) as { attemptId: string }).attemptId)).toEqual(ids);
  });

  it("tolerates a torn last line and refuses corruption in the middle", async () => {
    const file = path.join(directory, "journal.jsonl");
    await writeFile(file, `${JSON.stringify(attempt("a1"))}\n{"t":"outc`);
    const state = await createFileRailStore(file).load();
    expect(state.attempts.has("a1")).toBe(true);
    expect(await readFile(file, "utf8")).not.toContain("outc");

    await writeFile(file, `{"t":\n${JSON.stringify(attempt("a1"))}\n`);
    await expect(createFileRailStore(file).load()).rejects.toThrow(/journal.jsonl:1/);
    const corrupt = await createFileRailStore(file)
      .load()
      .catch((error: unknown) => error);
    expect(corrupt).toBeInstanceOf(RailStoreError);
    expect(corrupt).toBeInstanceOf(SwitchyardError);
    expect((corrupt as RailStoreError).shortMessage).toBe("journal line unreadable");
    expect((corrupt as RailStoreError).cause).toBeInstanceOf(SyntaxError);
  });

  it("refuses a complete last line that fails as it refuses one in the middle; drops it only when torn, no newline after it", async () => {
    const file = path.join(directory, "journal.jsonl");
    // An amount no BigInt reads: an append writes a line with its newline, so this one was written whole as it is.
    const wrong = JSON.stringify({ ...attempt("a2"), amountMsat: "1.5" });
    await writeFile(file, `${JSON.stringify(attempt("a1"))}\n${wrong}\n`);
    // Before: it loaded, a1 alone, the line dropped without a word as if torn.
    const corrupt = await createFileRailStore(file)
      .load()
      .catch((error: unknown) => error);
    expect(corrupt).toBeInstanceOf(RailStoreError);
    expect((corrupt as RailStoreError).shortMessage).toBe("journal line unreadable");
    expect((corrupt as RailStoreError).details).toMatch(/journal\.jsonl:2: SyntaxError/);
    // Refused, the journal is left as it was for an operator.
    expect(await readFile(file, "utf8")).toBe(`${JSON.stringify(attempt("a1"))}\n${wrong}\n`);

    // The same line torn (a crash before its newline was written): dropped, and compaction writes the journal without it.
    await writeFile(file, `${JSON.stringify(attempt("a1"))}\n${wrong}`);
    const state = await createFileRailStore(file).load();
    expect([...state.attempts.keys()]).toEqual(["a1"]);
    expect(await readFile(file, "utf8")).toBe(`${JSON.stringify(attempt("a1"))}\n`);
  });

  it("cuts a write that failed partway back off to the journal's size, so the next append is not glued onto its part and the lines before it stay; once it cannot, writes no more until a load", async () => {
    const file = path.join(directory, "journal.jsonl");
    // Lines there before the first load: the size a failed write is cut back to is what compaction wrote of them.
    const seeded: RailStoreRecord[] = [
      attempt("s1"),
      { t: "outcome", attemptId: "s1", status: "succeeded", preimage: "cd".repeat(32), feeMsat: "3" },
      attempt("s2"),
      { t: "invoice", paymentHash: "ef".repeat(32), reference: "invoice-1", expiresAtMs: 2 },
    ];
    await writeFile(file, seeded.map((record) => `${JSON.stringify(record)}\n`).join(""));
    /** Loads the journal afresh: the seeded lines, and the attempts `appended` after them, a1 with no outcome. */
    const expectJournal = async (appended: string[]) => {
      const reader = createFileRailStore(file);
      const state = await reader.load();
      await reader.close();
      expect([...state.attempts.keys()]).toEqual(["s1", "s2", ...appended]);
      expect(state.attempts.get("s1")?.outcome).toMatchObject({
        status: "succeeded",
        preimage: "cd".repeat(32),
      });
      expect(state.attempts.get("a1")?.outcome).toBeNull();
      expect([...state.invoices.keys()]).toEqual(["ef".repeat(32)]);
    };
    const outcome: RailStoreRecord = {
      t: "outcome",
      attemptId: "a1",
      status: "failed",
      code: "unreachable_destination",
      message: "no route",
    };
    // A full disk: the write takes part of the line, and the call for the rest fails. The cut is the real one.
    let full = false;
    const write = (descriptor: number, bytes: Buffer, offset: number, length: number) => {
      if (!full) return writeSync(descriptor, bytes, offset, length);
      if (offset === 0) return writeSync(descriptor, bytes, 0, Math.floor(length / 2));
      throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
    };
    const store = createFileRailStore(file, { write });
    await store.load();
    await store.append(attempt("a1"));
    full = true;
    const failed = await store.append(outcome).catch((error: unknown) => error);
    expect((failed as RailStoreError).shortMessage).toBe("journal write failed");
    expect(((failed as RailStoreError).cause as NodeJS.ErrnoException).code).toBe("ENOSPC");
    full = false;
    await store.append(attempt("a2"));
    await store.close();
    // The part is gone: a2's line follows a1's, after the seeded lines compaction wrote.
    expect((await readFile(file, "utf8")).split("\n").slice(-3)).toEqual([
      JSON.stringify(attempt("a1")),
      JSON.stringify(attempt("a2")),
      "",
    ]);
    // Before: the part stayed, a2's line glued onto it, and the load failed with `journal line unreadable`.
    await expectJournal(["a1", "a2"]);

    // The part cannot be cut off either: every later write is refused, the part left torn for the next load to drop.
    let cutFails = true;
    const stuck = createFileRailStore(file, {
      write,
      truncate: (descriptor, size) => {
        if (cutFails) throw Object.assign(new Error("EIO: i/o error, ftruncate"), { code: "EIO" });
        ftruncateSync(descriptor, size);
      },
    });
    await stuck.load();
    full = true;
    await expect(stuck.append(outcome)).rejects.toThrow("journal write failed");
    full = false;
    const refused = await stuck.append(attempt("a3")).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(RailStoreError);
    expect((refused as RailStoreError).shortMessage).toBe("journal torn by a failed write or sync");
    expect(((refused as RailStoreError).cause as NodeJS.ErrnoException).code).toBe("EIO");
    expect(await readFile(file, "utf8")).not.toContain('"a3"');
    // A load compacts the journal without the part, and writes go on.
    expect([...(await stuck.load()).attempts.keys()]).toEqual(["s1", "s2", "a1", "a2"]);
    await stuck.append(attempt("a3"));
    // A write that fails partway after that load is cut back to what it compacted, the lines before it kept.
    cutFails = false;
    full = true;
    await expect(stuck.append(outcome)).rejects.toThrow("journal write failed");
    full = false;
    await stuck.append(attempt("a4"));
    await stuck.close();
    await expectJournal(["a1", "a2", "a3", "a4"]);
  });

  it("tears the journal when a failed write's cut cannot be synced, writing no more until a load; a write that wrote nothing is neither cut nor synced", async () => {
    const file = path.join(directory, "journal.jsonl");
    /** How the disk takes a write: whole, part of it (then the call for the rest fails), or none of it. */
    let disk: "whole" | "part" | "none" = "whole";
    const write = (descriptor: number, bytes: Buffer, offset: number, length: number) => {
      if (disk === "whole") return writeSync(descriptor, bytes, offset, length);
      if (disk === "part" && offset === 0) return writeSync(descriptor, bytes, 0, Math.floor(length / 2));
      throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
    };
    const cuts: string[] = [];
    const store = createFileRailStore(file, {
      write,
      truncate: (descriptor, size) => {
        cuts.push("truncate");
        ftruncateSync(descriptor, size);
      },
      // A file system whose sync fails while the disk is full (btrfs, NFS).
      syncCut: () => {
        cuts.push("sync");
        throw Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" });
      },
    });
    await store.load();
    await store.append(attempt("a1"));
    // A disk full already: nothing written, nothing to cut. Before, the cut ran and was synced at every such write,
    // and here, the sync failing, the journal was torn and the next append refused until a restart.
    disk = "none";
    await expect(store.append(attempt("a2"))).rejects.toThrow("journal write failed");
    expect(cuts).toEqual([]);
    disk = "whole";
    await store.append(attempt("a3"));
    // Part of a write taken: cut back off, and the cut's sync failing tears the journal. The cut is synced because a
    // crash before the next append's sync could otherwise leave the part's bytes and the next line mixed.
    disk = "part";
    await expect(store.append(attempt("a4"))).rejects.toThrow("journal write failed");
    expect(cuts).toEqual(["truncate", "sync"]);
    disk = "whole";
    const refused = await store.append(attempt("a5")).catch((error: unknown) => error);
    expect((refused as RailStoreError).shortMessage).toBe("journal torn by a failed write or sync");
    expect(((refused as RailStoreError).cause as NodeJS.ErrnoException).code).toBe("EIO");
    // A load compacts the journal as the cut left it, and writes go on.
    expect([...(await store.load()).attempts.keys()]).toEqual(["a1", "a3"]);
    await store.append(attempt("a6"));
    await store.close();
    expect([...(await createFileRailStore(file).load()).attempts.keys()]).toEqual(["a1", "a3", "a6"]);
  });

  it("refuses an append whose sync was under way, or started after, when a failed write's cut could not be synced: that sync may have taken the error of its lines", async () => {
    const file = path.join(directory, "journal.jsonl");
    const syncs: Array<() => void> = [];
    let part = false;
    const store = createFileRailStore(file, {
      sync: () =>
        new Promise<void>((done) => {
          syncs.push(done);
        }),
      write: (descriptor, bytes, offset, length) => {
        if (!part) return writeSync(descriptor, bytes, offset, length);
        if (offset === 0) return writeSync(descriptor, bytes, 0, Math.floor(length / 2));
        throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
      },
      syncCut: () => {
        throw Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" });
      },
    });
    await store.load();
    const settled: string[] = [];
    const appending = (label: string) =>
      store.append(attempt(label)).then(
        () => settled.push(label),
        (error: unknown) => settled.push(`${label}: ${(error as RailStoreError).shortMessage}`),
      );
    // Synced before the tear: durable.
    const before = appending("a0");
    await Promise.resolve();
    syncs[0]!();
    await before;
    // a1 waits for a sync under way, a2 for the one after it; then a write fails partway and its cut's sync fails.
    const running = appending("a1");
    await Promise.resolve();
    const next = appending("a2");
    part = true;
    await expect(store.append(attempt("a3"))).rejects.toThrow("journal write failed");
    part = false;
    // Both syncs say nothing wrong: the cut's sync may have taken the error of a1's and a2's lines.
    syncs[1]!();
    await running;
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(syncs).toHaveLength(3);
    syncs[2]!();
    await next;
    // Before: a1 and a2 returned as durable.
    expect(settled).toEqual(["a0", "a1: journal sync failed", "a2: journal sync failed"]);
    await store.close();
  });

  it("tears the journal when a sync fails: an append that wrote before it is refused though the sync after says nothing wrong, and nothing more is written until a load", async () => {
    const file = path.join(directory, "journal.jsonl");
    const { store, syncs } = await storeOfHeldSyncs(file);
    /** What an append was refused with, or null once it is durable. */
    const refusal = (label: string) =>
      store.append(attempt(label)).then(
        () => null,
        (error: unknown) => error as RailStoreError,
      );
    // a1 waits for the sync it started, a2 (written meanwhile, in the same page) for the one after it.
    const first = refusal("a1");
    await Promise.resolve();
    const second = refusal("a2");
    syncs[0]!.fail(Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" }));
    expect((await first)?.shortMessage).toBe("journal sync failed");
    // The writeback error was reported to the first sync alone: the second finds nothing dirty, and succeeds.
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(syncs).toHaveLength(2);
    syncs[1]!.done();
    const refused = await second;
    // Before: a2 resolved as durable, its line perhaps lost, its payment sent.
    expect(refused?.shortMessage).toBe("journal sync failed");
    expect(refused?.cause).toMatchObject({ code: "EIO" });
    // Nothing more is written, after lines the disk may have lost, until a load.
    expect((await refusal("a3"))?.shortMessage).toBe("journal torn by a failed write or sync");
    expect(await readFile(file, "utf8")).not.toContain('"a3"');
    expect([...(await store.load()).attempts.keys()]).toEqual(["a1", "a2"]);

    // Torn again while an append waits, and loaded before its sync returns: refused with the error that tore it.
    // Before: with the cause the load cleared, null.
    const third = refusal("a4");
    await Promise.resolve();
    const fourth = refusal("a5");
    syncs[2]!.fail(
      Object.assign(new Error("ENOSPC: no space left on device, fdatasync"), { code: "ENOSPC" }),
    );
    expect((await third)?.shortMessage).toBe("journal sync failed");
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect([...(await store.load()).attempts.keys()]).toEqual(["a1", "a2", "a4", "a5"]);
    syncs[3]!.done();
    expect((await fourth)?.cause).toMatchObject({ code: "ENOSPC" });
    // The load rewrote the journal: writes go on.
    const fifth = refusal("a6");
    await Promise.resolve();
    syncs[4]!.done();
    expect(await fifth).toBeNull();
    await store.close();
    expect([...(await createFileRailStore(file).load()).attempts.keys()]).toEqual([
      "a1",
      "a2",
      "a4",
      "a5",
      "a6",
    ]);
  });

  it("says it is torn, and by what, until a load clears it; its refusals name the file system's code", async () => {
    const file = path.join(directory, "journal.jsonl");
    let fail = false;
    const store = createFileRailStore(file, {
      sync: () =>
        fail
          ? Promise.reject(Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" }))
          : Promise.resolve(),
    });
    await store.load();
    await store.append(attempt("a1"));
    expect(store.torn?.()).toBeNull();
    fail = true;
    const failed = (await store.append(attempt("a2")).catch((error: unknown) => error)) as RailStoreError;
    expect(failed.shortMessage).toBe("journal sync failed");
    expect(failed.details).toBe(`${file}: EIO`);
    // Before: nothing said the store was torn, and the rail went on offering itself, every write refused.
    expect(store.torn?.()).toMatchObject({ code: "EIO" });
    fail = false;
    const refused = (await store.append(attempt("a3")).catch((error: unknown) => error)) as RailStoreError;
    expect(refused.shortMessage).toBe("journal torn by a failed write or sync");
    expect(refused.details).toBe(`${file}: EIO`);
    await store.load();
    expect(store.torn?.()).toBeNull();
    await store.append(attempt("a3"));
    await store.close();
  });

  it("is not torn by a sync that fails after a load replaced its descriptor; a close waits for the sync under way", async () => {
    const file = path.join(directory, "journal.jsonl");
    const { store, syncs } = await storeOfHeldSyncs(file);
    const first = store.append(attempt("a1")).catch((error: unknown) => error as RailStoreError);
    // A load while a1's sync is under way rewrites the journal from what it reads, a1's line with it, and syncs it.
    expect([...(await store.load()).attempts.keys()]).toEqual(["a1"]);
    syncs[0]!.fail(Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" }));
    expect((await first)?.shortMessage).toBe("journal sync failed");
    // Before: the old descriptor's failure tore the journal the load had just cleared, and a2 was refused.
    expect(store.torn?.()).toBeNull();
    const second = store.append(attempt("a2"));
    await Promise.resolve();
    syncs[1]!.done();
    await second;

    // A close while a3's sync is under way waits for it: the descriptor is not closed under the sync.
    const third = store.append(attempt("a3"));
    await Promise.resolve();
    let closed = false;
    const closing = store.close().then(() => {
      closed = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 10));
    // Before: closed at once, and the sync ran on a closed descriptor (EBADF), or on one given to another file since.
    expect(closed).toBe(false);
    syncs[2]!.done();
    await third;
    await closing;
    expect([...(await createFileRailStore(file).load()).attempts.keys()]).toEqual(["a1", "a2", "a3"]);
  });

  it("waits in a close for a sync queued while the one under way finished", async () => {
    const file = path.join(directory, "journal.jsonl");
    const syncs: Array<() => void> = [];
    const store = createFileRailStore(file, {
      sync: () =>
        new Promise<void>((done) => {
          syncs.push(done);
        }),
    });
    await store.load();
    const first = store.append(attempt("a1"));
    await Promise.resolve();
    let closed = false;
    const closing = store.close().then(() => {
      closed = true;
    });
    // a2 is written while a1's sync is under way, and shares the sync queued after it.
    const second = store.append(attempt("a2")).catch((error: unknown) => error as RailStoreError);
    syncs[0]!();
    await first;
    await new Promise((resolve) => setTimeout(resolve, 10));
    // Before: the close left with a1's sync, and a2's queued sync found the store closed ("store not loaded").
    expect(closed).toBe(false);
    syncs[1]!();
    expect(await second).toBeUndefined();
    await closing;
    expect([...(await createFileRailStore(file).load()).attempts.keys()]).toEqual(["a1", "a2"]);
  });

  it("closes within closeWaitMs when a sync never returns (a stalled disk); one returning after refuses its appends", async () => {
    const file = path.join(directory, "journal.jsonl");
    let stalled: (() => void) | null = null;
    const store = createFileRailStore(file, {
      sync: () => new Promise<void>((done) => (stalled = done)),
      closeWaitMs: 50,
    });
    await store.load();
    const appended = store.append(attempt("a1")).catch((error: unknown) => error as RailStoreError);
    await Promise.resolve();
    // Before: the close waited for the sync for good, and the rail's stop, and every closer after it, with it.
    const closed = await Promise.race([
      store.close().then(() => "closed"),
      new Promise((resolve) => setTimeout(() => resolve("still waiting"), 1_000)),
    ]);
    expect(closed).toBe("closed");
    // The sync returns after the close: its descriptor was closed under it (the number perhaps another file's since),
    // and the append is refused, not taken as durable.
    (stalled as (() => void) | null)?.();
    expect(await appended).toMatchObject({ shortMessage: "journal closed before its sync was confirmed" });
  });

  it("keeps the first cause of a tear until a load: a queued sync failing after it changes nothing", async () => {
    const file = path.join(directory, "journal.jsonl");
    const syncs: Array<(error: Error) => void> = [];
    const store = createFileRailStore(file, {
      sync: () =>
        new Promise<void>((_, fail) => {
          syncs.push(fail);
        }),
    });
    await store.load();
    const first = store.append(attempt("a1")).catch((error: unknown) => error as RailStoreError);
    await Promise.resolve();
    const second = store.append(attempt("a2")).catch((error: unknown) => error as RailStoreError);
    syncs[0]!(Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" }));
    expect((await first)?.shortMessage).toBe("journal sync failed");
    await vi.waitFor(() => expect(syncs).toHaveLength(2));
    syncs[1]!(Object.assign(new Error("ENOSPC: no space left on device, fdatasync"), { code: "ENOSPC" }));
    expect((await second)?.shortMessage).toBe("journal sync failed");
    // Before: the second failure took the first's place, and the rail said the tear again, with another cause.
    expect(store.torn?.()).toMatchObject({ code: "EIO" });
    await store.load();
    expect(store.torn?.()).toBeNull();
    await store.close();
  });

  it("drops a torn last line that reads as a record: its append was never acknowledged", async () => {
    const file = path.join(directory, "journal.jsonl");
    // a2's line whole but for its newline: the crash came before the append could return.
    await writeFile(file, `${JSON.stringify(attempt("a1"))}\n${JSON.stringify(attempt("a2"))}`);
    const store = createFileRailStore(file);
    // Before: a2 was loaded, and compaction wrote it back whole.
    expect([...(await store.load()).attempts.keys()]).toEqual(["a1"]);
    await store.close();
    expect(await readFile(file, "utf8")).toBe(`${JSON.stringify(attempt("a1"))}\n`);
  });

  it("loads a journal longer than one string can be, a line at a time, and compacts it", async () => {
    const file = path.join(directory, "journal.jsonl");
    // Lines an attempt's journal may hold between two starts, each of 60,000 characters: more of them than one string
    // holds (readFile of it throws ERR_STRING_TOO_LONG), an attempt's line before and after them.
    const filler = `${JSON.stringify({ t: "invoice_done", paymentHash: "0".repeat(60_000) })}\n`;
    const fillers = Math.ceil(constants.MAX_STRING_LENGTH / filler.length) + 1;
    const out = createWriteStream(file);
    out.write(`${JSON.stringify(attempt("first"))}\n`);
    const block = filler.repeat(100);
    for (let written = 0; written < fillers; written += 100) if (!out.write(block)) await once(out, "drain");
    out.end(`${JSON.stringify(attempt("last"))}\n`);
    await once(out, "close");
    expect((await stat(file)).size).toBeGreaterThan(constants.MAX_STRING_LENGTH);

    const state = await createFileRailStore(file).load();
    expect([...state.attempts.keys()]).toEqual(["first", "last"]);
    expect((await readFile(file, "utf8")).split("\n").filter((line) => line !== "")).toHaveLength(2);
  }, 120_000);

  it("reads a line across the chunks it is read in, multi-byte text whole, and refuses one too long by its number", async () => {
    const file = path.join(directory, "journal.jsonl");
    // Read a mebibyte at a time: lines of 3-byte characters straddle every chunk's end somewhere.
    const wide = (attemptId: string) => ({ ...attempt(attemptId), destination: "€".repeat(20_000) });
    const lines = Array.from({ length: 60 }, (_, index) => JSON.stringify(wide(`a${index}`)));
    await writeFile(file, `${lines.join("\n")}\n`);
    // Loaded twice: the second reads what the first's compaction wrote, more than one chunk of it.
    for (let load = 0; load < 2; load++) {
      const state = await createFileRailStore(file).load();
      expect(state.attempts.size).toBe(60);
      for (const [attemptId, read] of state.attempts)
        expect(read.destination, attemptId).toBe("€".repeat(20_000));
    }

    // A line past 64 Ki characters, whether it is told by its bytes before it is gathered or by its characters after.
    for (const long of ["€".repeat(70_000), "x".repeat(70_000)]) {
      await writeFile(
        file,
        `${lines[0]}\n${JSON.stringify({ ...attempt("long"), destination: long })}\n${lines[1]}\n`,
      );
      const error = await createFileRailStore(file)
        .load()
        .catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(RailStoreError);
      expect((error as RailStoreError).shortMessage).toBe("journal line too long");
      expect((error as RailStoreError).details).toBe(`${file}:2`);
    }

    // A corrupt line before one too long: the corrupt one, the first wrong line, is named.
    await writeFile(
      file,
      `${lines[0]}\n{"t":\n${JSON.stringify({ ...attempt("long"), destination: "x".repeat(70_000) })}\n`,
    );
    const first = await createFileRailStore(file)
      .load()
      .catch((caught: unknown) => caught);
    expect((first as RailStoreError).shortMessage).toBe("journal line unreadable");
    expect((first as RailStoreError).details).toMatch(/journal\.jsonl:2: /);
  });

  it("translates the file system's errors into RailStoreErrors, the original as the cause", async () => {
    const file = path.join(directory, "journal.jsonl");
    await mkdir(file); // a directory where the journal should be: reading it fails with EISDIR
    const error = await createFileRailStore(file)
      .load()
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(RailStoreError);
    expect((error as RailStoreError).shortMessage).toBe("journal unreadable");
    expect(((error as RailStoreError).cause as NodeJS.ErrnoException).code).toBe("EISDIR");
  });

  it("returns from an attempt's append once it is synced, one sync for the appends written while another ran", async () => {
    const { store, syncs } = await storeOfHeldSyncs(path.join(directory, "synced.jsonl"));
    const settled: string[] = [];
    const appending = (label: string, record: RailStoreRecord) =>
      store.append(record).then(
        () => settled.push(label),
        (error: unknown) => settled.push(`${label}: ${(error as Error).name}`),
      );
    // A settle index does not wait for the disk (LND replays from an older one).
    await store.append({ t: "settle_index", value: 1 });
    expect(syncs).toHaveLength(0);
    const first = appending("a1", attempt("a1"));
    await Promise.resolve();
    expect(syncs).toHaveLength(1);
    // Written while the first sync runs: they wait for the next one, which starts after it, and share it.
    const second = appending("a2", attempt("a2"));
    const third = appending("a3", attempt("a3"));
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(settled).toEqual([]);
    expect(syncs).toHaveLength(1);
    syncs[0]!.done();
    await first;
    expect(settled).toEqual(["a1"]);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(syncs).toHaveLength(2);
    expect(settled).toEqual(["a1"]);
    syncs[1]!.fail(Object.assign(new Error("EIO"), { code: "EIO" }));
    await Promise.all([second, third]);
    expect(settled).toEqual(["a1", "a2: RailStoreError", "a3: RailStoreError"]);
    // A failed sync tears the journal: the next append syncs again once a load has rewritten it.
    await expect(store.append(attempt("a4"))).rejects.toThrow("journal torn by a failed write");
    await store.load();
    const fourth = appending("a4", attempt("a4"));
    await Promise.resolve();
    expect(syncs).toHaveLength(3);
    syncs[2]!.done();
    await fourth;
    expect(settled.at(-1)).toBe("a4");
    // An invoice's line waits for the disk too: the invoice is handed out only once a restart will know it as ours
    // (a paid invoice the journal lost would be taken for another's, and never credited).
    const invoice = appending("i1", {
      t: "invoice",
      paymentHash: "02".repeat(32),
      reference: "inv_synced",
      expiresAtMs: 2_000_000_000_000,
    });
    await Promise.resolve();
    expect(syncs).toHaveLength(4);
    expect(settled.at(-1)).toBe("a4");
    syncs[3]!.done();
    await invoice;
    expect(settled.at(-1)).toBe("i1");
    await store.close();
  });

  it("forgets delivered invoices on compaction", async () => {
    const store = createMemoryRailStore();
    await store.load();
    await store.append({
      t: "invoice",
      paymentHash: "01".repeat(32),
      reference: "r",
      expiresAtMs: Date.now() + 1000,
    });
    await store.append({ t: "invoice_done", paymentHash: "01".repeat(32) });
    const state = await store.load();
    expect(state.invoices.size).toBe(0);
    expect(store.records()).toEqual([]);
  });

  it("keeps an invoice set aside marked so through a compacted reopen of the file", async () => {
    const file = path.join(directory, "set-aside.jsonl");
    const [kept, other] = ["02".repeat(32), "03".repeat(32)];
    const first = createFileRailStore(file);
    await first.load();
    await first.append(
      { t: "invoice", paymentHash: kept, reference: "r1", expiresAtMs: 5 },
      { t: "invoice", paymentHash: other, reference: "r2", expiresAtMs: 6 },
      { t: "invoice_set_aside", paymentHash: kept },
    );
    await first.close();
    for (let reopen = 0; reopen < 2; reopen++) {
      const store = createFileRailStore(file);
      const state = await store.load();
      expect(state.invoices.get(kept)).toEqual({
        paymentHash: kept,
        reference: "r1",
        expiresAtMs: 5,
        setAside: true,
      });
      expect(state.invoices.get(other)).toEqual({ paymentHash: other, reference: "r2", expiresAtMs: 6 });
      await store.close();
    }
  });

  it("is held by one process at a time: another's open is refused while its lease holds, taken over once it lapsed or its process is gone", async () => {
    const file = path.join(directory, "held.jsonl");
    const first = createFileRailStore(file);
    await first.load();
    const lock = JSON.parse(await readFile(`${file}.lock`, "utf8")) as {
      pid: number;
      host: string;
      renewedAtMs: number;
    };
    expect(lock.pid).toBe(process.pid);
    const held = (holder: Record<string, unknown>) => writeFile(`${file}.lock`, JSON.stringify(holder));
    const second = createFileRailStore(file);
    // Another live process of this host (this test's parent), its lease fresh: refused, the journal left alone.
    await held({ pid: process.ppid, host: lock.host, renewedAtMs: Date.now() });
    // Before: the second compacted the journal (a rename) from under the first, whose later lines were lost.
    await expect(second.load()).rejects.toThrow(/in use by another process/);
    // A process of another host (a container on a shared volume) renewing its lease: refused too.
    await held({ pid: 1, host: "another-host", renewedAtMs: Date.now() - 10_000 });
    await expect(second.load()).rejects.toThrow(/in use by another process/);
    // Its lease lapsed (it stopped renewing: gone, its pid perhaps reused since): taken over.
    await held({ pid: process.ppid, host: "another-host", renewedAtMs: Date.now() - journalLeaseMs - 1_000 });
    await second.load();
    expect(JSON.parse(await readFile(`${file}.lock`, "utf8")).pid).toBe(process.pid);
    await second.close();
    // A process of this host that is gone (no such pid), its lease fresh: taken over.
    await held({ pid: 2 ** 22 + 12_345, host: lock.host, renewedAtMs: Date.now() });
    const third = createFileRailStore(file);
    await third.load();
    // The first's close leaves the third's lock; the third's removes it.
    await first.close();
    expect(JSON.parse(await readFile(`${file}.lock`, "utf8")).pid).toBe(process.pid);
    await third.close();
    await expect(readFile(`${file}.lock`, "utf8")).rejects.toThrow(/ENOENT/);
  });

  it("lets one of two processes that judged the same lock stale take it over: the other, acting on its look, is refused", async () => {
    const file = path.join(directory, "raced.jsonl");
    const lock = `${file}.lock`;
    // Its holder, a process of this host, is gone.
    await writeFile(
      lock,
      JSON.stringify({ pid: gonePid, host: os.hostname(), token: randomUUID(), renewedAtMs: Date.now() }),
    );
    let other: ChildProcess | null = null;
    const first = createFileRailStore(file, {
      // Between this store's look at the stale lock and its takeover, another process takes the journal, and keeps it.
      beforeTakeover: async () => {
        other ??= await holdInAnotherProcess(file);
      },
    });
    try {
      // Before: this one removed the other's fresh lock on its stale look and made its own: both held the journal,
      // and each compacted it from under the other.
      await expect(first.load()).rejects.toThrow(/in use by another process/);
      expect(other).not.toBeNull();
      expect(JSON.parse(await readFile(lock, "utf8")).pid).toBe((other as ChildProcess | null)?.pid);
      // Nothing of the takeover left beside the journal (no claim, no temporary file).
      expect((await readdir(directory)).sort()).toEqual(["raced.jsonl", "raced.jsonl.lock"]);
    } finally {
      const child = other as ChildProcess | null;
      if (child !== null && child.exitCode === null) {
        const exited = once(child, "exit");
        child.stdin?.end();
        await exited;
      }
    }
    // The other closed its store (and removed its lock): this one takes the journal now.
    await first.load();
    expect(JSON.parse(await readFile(lock, "utf8")).pid).toBe(process.pid);
    await first.close();
    await expect(readFile(lock, "utf8")).rejects.toThrow(/ENOENT/);
  });

  it("takes over a stale lock whose taker crashed half way (its claims left behind), and is refused while a live one is at it", async () => {
    const file = path.join(directory, "claimed.jsonl");
    const lock = `${file}.lock`;
    const host = os.hostname();
    const stale = randomUUID();
    const claimer = randomUUID();
    await writeFile(lock, JSON.stringify({ pid: gonePid, host, token: stale, renewedAtMs: Date.now() }));
    // A taker of the stale lock that is at it now (this test's parent, alive): refused, its claim left alone.
    const claim = `${lock}.${stale}.claim`;
    await writeFile(
      claim,
      JSON.stringify({ pid: process.ppid, host, token: claimer, renewedAtMs: Date.now() }),
    );
    const store = createFileRailStore(file);
    await expect(store.load()).rejects.toThrow(/in use by another process/);
    expect(JSON.parse(await readFile(claim, "utf8")).pid).toBe(process.ppid);
    // The taker crashed half way (its process gone), and so did the one that took its claim over: both claims are
    // taken over in turn, then the lock. Before: the journal stayed locked for good (every taker refused, or, with
    // no claims, two takers held it at once).
    await writeFile(claim, JSON.stringify({ pid: gonePid, host, token: claimer, renewedAtMs: Date.now() }));
    await writeFile(
      `${lock}.${claimer}.claim2`,
      JSON.stringify({ pid: gonePid, host, token: randomUUID(), renewedAtMs: Date.now() }),
    );
    await store.load();
    expect(JSON.parse(await readFile(lock, "utf8")).pid).toBe(process.pid);
    await store.close();
    // A claim this process's pid left in an earlier run (a container's pid 1 restarted) is a crashed taker's too.
    await writeFile(lock, JSON.stringify({ pid: gonePid, host, token: stale, renewedAtMs: Date.now() }));
    await writeFile(
      claim,
      JSON.stringify({ pid: process.pid, host, token: claimer, renewedAtMs: Date.now() }),
    );
    const again = createFileRailStore(file);
    await again.load();
    await again.close();
    expect(await readdir(directory)).toEqual(["claimed.jsonl"]);
  });

  it("writes nothing more once another process took its lock over (its lease left unrenewed past half its life)", async () => {
    const file = path.join(directory, "lost.jsonl");
    const store = createFileRailStore(file);
    await store.load();
    await store.append({ t: "settle_index", value: 1 });
    // Before: written to the journal the other process now holds (and compacts from under this one).
    await afterTakenOverByAnotherHost(file, () =>
      expect(store.append({ t: "settle_index", value: 2 })).rejects.toThrow(/taken over by another process/),
    );
    expect(await readFile(file, "utf8")).not.toContain('"value":2');
    await store.close();
    // Its close leaves the other's lock.
    expect(JSON.parse(await readFile(`${file}.lock`, "utf8")).host).toBe("another-host");
  });

  it("says it holds its journal until another process took it over, without throwing, and not once closed", async () => {
    const file = path.join(directory, "held-or-not.jsonl");
    const store = createFileRailStore(file);
    expect(store.held()).toBe(false);
    await store.load();
    expect(store.held()).toBe(true);
    await afterTakenOverByAnotherHost(file, () => expect(store.held()).toBe(false));
    expect(store.held()).toBe(false); // for good: the lock is the other's
    await store.close();
    const again = createFileRailStore(file);
    await writeFile(
      `${file}.lock`,
      JSON.stringify({ pid: 1, host: "another-host", renewedAtMs: Date.now() - 2 * journalLeaseMs }),
    );
    await again.load();
    expect(again.held()).toBe(true);
    await again.close();
    expect(again.held()).toBe(false);
  });

  it("remembers an attempt found never taken (a `sent` withdrawal) through compacted reopens, sent afresh or not, until its id has an outcome", async () => {
    const file = path.join(directory, "forgotten-sends.jsonl");
    const reopened = async () => {
      const store = createFileRailStore(file);
      const state = await store.load(); // compacts the journal it read
      await store.close();
      return state;
    };
    const first = createFileRailStore(file);
    await first.load();
    await first.append(
      { ...(attempt("late") as Extract<RailStoreRecord, { t: "attempt" }>), createdAtMs: 7 },
      { t: "withdrawn", attemptId: "late", sent: true, createdAtMs: 7 },
      // withdraw's (and a line written before the flag): forgotten, nothing remembered.
      attempt("plain"),
      { t: "withdrawn", attemptId: "plain" },
      // Found never taken twice (sent afresh in between): its first line's time.
      { ...(attempt("again") as Extract<RailStoreRecord, { t: "attempt" }>), createdAtMs: 3 },
      { t: "withdrawn", attemptId: "again", sent: true, createdAtMs: 3 },
      { ...(attempt("again") as Extract<RailStoreRecord, { t: "attempt" }>), createdAtMs: 9 },
      { t: "withdrawn", attemptId: "again", sent: true, createdAtMs: 3 },
      // Found never taken, then sent afresh: written again, no outcome yet.
      { ...(attempt("resent") as Extract<RailStoreRecord, { t: "attempt" }>), createdAtMs: 4 },
      { t: "withdrawn", attemptId: "resent", sent: true, createdAtMs: 4 },
      { ...(attempt("resent") as Extract<RailStoreRecord, { t: "attempt" }>), createdAtMs: 8 },
    );
    await first.close();
    for (let reopen = 0; reopen < 2; reopen++) {
      const state = await reopened();
      expect(new Map([...state.forgottenSends].map(([id, mark]) => [id, mark.firstAtMs]))).toEqual(
        new Map([
          ["again", 3],
          ["late", 7],
          ["resent", 4],
        ]),
      );
      // The one sent afresh is followed as written (not withdrawn by its mark's line, which the compaction puts first).
      expect([...state.attempts.keys()]).toEqual(["resent"]);
      expect(state.attempts.get("resent")).toMatchObject({ createdAtMs: 8, outcome: null });
    }
    // Its outcome ends its mark.
    const last = createFileRailStore(file);
    await last.load();
    await last.append({
      t: "outcome",
      attemptId: "resent",
      status: "succeeded",
      preimage: "00",
      feeMsat: "0",
    });
    await last.close();
    for (let reopen = 0; reopen < 2; reopen++)
      expect([...(await reopened()).forgottenSends.keys()].sort()).toEqual(["again", "late"]);
  });

  it("keeps what an attempt found never taken sent (its hash, its invoice) through compacted reopens, and loads a mark journalled without them", async () => {
    const file = path.join(directory, "forgotten-requests.jsonl");
    const reopened = async () => {
      const store = createFileRailStore(file);
      const state = await store.load(); // compacts the journal it read
      await store.close();
      return state;
    };
    const hash = "cd".repeat(32);
    const first = createFileRailStore(file);
    await first.load();
    await first.append(
      // A Lightning Address's: the invoice its address answered, sent afresh as it is (send.ts execute).
      {
        ...(attempt("address") as Extract<RailStoreRecord, { t: "attempt" }>),
        paymentHash: hash,
        createdAtMs: 5,
      },
      {
        t: "withdrawn",
        attemptId: "address",
        sent: true,
        createdAtMs: 5,
        paymentHash: hash,
        request: invoiceOf(hash),
      },
      // A keysend's: its hash alone.
      {
        ...(attempt("keysend") as Extract<RailStoreRecord, { t: "attempt" }>),
        kind: "keysend",
        request: null,
      },
      { t: "withdrawn", attemptId: "keysend", sent: true, createdAtMs: 1, paymentHash: "ef".repeat(32) },
      // One journalled before the mark kept them: nothing of what it sent is known.
      attempt("old"),
      { t: "withdrawn", attemptId: "old", sent: true, createdAtMs: 1 },
      // Found never taken again (sent afresh as it was, its line written again): the first line's time, and what it sent.
      {
        ...(attempt("address") as Extract<RailStoreRecord, { t: "attempt" }>),
        paymentHash: hash,
        createdAtMs: 9,
      },
      {
        t: "withdrawn",
        attemptId: "address",
        sent: true,
        createdAtMs: 5,
        paymentHash: hash,
        request: invoiceOf(hash),
      },
    );
    await first.close();
    for (let reopen = 0; reopen < 2; reopen++)
      expect(new Map((await reopened()).forgottenSends)).toEqual(
        new Map([
          ["address", { firstAtMs: 5, paymentHash: hash, request: invoiceOf(hash), earlierHashes: [] }],
          ["keysend", { firstAtMs: 1, paymentHash: "ef".repeat(32), request: null, earlierHashes: [] }],
          ["old", { firstAtMs: 1, paymentHash: null, request: null, earlierHashes: [] }],
        ]),
      );
    // As the compaction wrote them: the old mark's line as it was.
    const lines = (await readFile(file, "utf8"))
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(lines).toContainEqual({ t: "withdrawn", attemptId: "old", sent: true, createdAtMs: 1 });
    expect(lines).toContainEqual({
      t: "withdrawn",
      attemptId: "address",
      sent: true,
      createdAtMs: 5,
      paymentHash: hash,
      request: invoiceOf(hash),
    });
  });

  it("reads a mark whose invoice is of another hash than its own, or text no invoice, as one that kept neither, both hashes among its earlier, said by its line; the journal loads, that line last or not", async () => {
    const file = path.join(directory, "forgotten-foreign.jsonl");
    const [own, foreign] = ["a1", "b2"].map((byte) => byte.repeat(32)) as [string, string];
    const mark = (request: string, fields: Partial<RailStoreRecord> = {}): RailStoreRecord =>
      ({
        t: "withdrawn",
        attemptId: "marked",
        sent: true,
        createdAtMs: 5,
        paymentHash: own,
        request,
        ...fields,
      }) as RailStoreRecord;
    const read = async (...records: RailStoreRecord[]) => {
      if (records.length > 0)
        await writeFile(file, records.map((record) => `${JSON.stringify(record)}\n`).join(""));
      const store = createFileRailStore(file);
      const state = await store.load(); // compacts the journal it read
      await store.close();
      return state;
    };
    const marked = { ...(attempt("marked") as Extract<RailStoreRecord, { t: "attempt" }>), paymentHash: own };
    // Which of the two hashes was sent is unknown: both are asked of LND (their invoices journalled as what was paid
    // were one followed), and with no hash of its own a Lightning Address's is held while LND has a payment of its
    // amount (send.ts unmarkedInFlight), a bolt11 payout's taken from its invoice again.
    const bothEarlier = {
      firstAtMs: 5,
      paymentHash: null,
      request: null,
      earlierHashes: [own, foreign],
      earlierRequests: new Map([
        [foreign, invoiceOf(foreign)],
        [own, invoiceOf(own)],
      ]),
    };
    const cases = [
      // Another payment's invoice: sent afresh as this attempt's, or journalled as what it paid.
      { line: mark(invoiceOf(foreign)), read: bothEarlier, said: `${own}: the invoice's is ${foreign}` },
      {
        line: mark("lnbcrt1marked"),
        read: { ...bothEarlier, earlierHashes: [own], earlierRequests: new Map([[own, invoiceOf(own)]]) },
        said: `${own}: `,
      },
      // Naming no hash of its own, after a mark of its hash: the one its invoice is of is still not its.
      {
        line: mark(invoiceOf(foreign), { paymentHash: undefined }),
        read: bothEarlier,
        said: `${own}: the invoice's is ${foreign}`,
      },
    ];
    for (const { line, read: expected, said } of cases) {
      // Before (refused as corrupt): followed by another line, the whole journal unreadable, the gateway not started.
      const state = await read(marked, mark(invoiceOf(own)), line, attempt("after"));
      expect(state.forgottenSends.get("marked")).toEqual(expected);
      expect([...state.attempts.keys()]).toEqual(["after"]);
      expect(state.warnings).toEqual([
        {
          message: expect.stringMatching(/a withdrawn line's invoice is not one of its payment hash/),
          details: expect.stringContaining(`${file}:3: marked: ${said}`),
        },
      ]);
      // Compacted, it reads as it was, nothing more to say.
      const reopened = await read();
      expect(reopened.forgottenSends.get("marked")).toEqual(expected);
      expect(reopened.warnings).toEqual([]);
    }
    // Its own invoice, and one its line names by the hash it carries over: read as written, nothing said.
    const state = await read(marked, mark(invoiceOf(own)), mark(invoiceOf(own), { paymentHash: undefined }));
    expect(state.forgottenSends.get("marked")).toMatchObject({ paymentHash: own, request: invoiceOf(own) });
    expect(state.warnings).toEqual([]);
    // Last, it is a complete line (it parsed), not a torn one: read as followed by others, not dropped.
    const last = await read(marked, mark(invoiceOf(own)), mark(invoiceOf(foreign)));
    expect(last.forgottenSends.get("marked")).toEqual(bothEarlier);
    expect(last.attempts.has("marked")).toBe(false);
    expect(last.warnings).toEqual([
      expect.objectContaining({ details: `${file}:3: marked: ${own}: the invoice's is ${foreign}` }),
    ]);
  });

  it("keeps the hashes a Lightning Address attempt found never taken sent before its mark replaced its invoice, and their invoices, through compacted reopens and its new invoice found never taken again, until its id has an outcome; a mark journalled with their hashes alone reads as it was", async () => {
    const file = path.join(directory, "forgotten-earlier.jsonl");
    const reopened = async () => {
      const store = createFileRailStore(file);
      const state = await store.load(); // compacts the journal it read
      await store.close();
      return state;
    };
    const [first, second, third] = ["a1", "b2", "c3"].map((byte) => byte.repeat(32)) as [
      string,
      string,
      string,
    ];
    const [firstRequest, secondRequest, thirdRequest] = [first, second, third].map((hash) =>
      invoiceOf(hash),
    ) as [string, string, string];
    const mark = (paymentHash: string, request: string, earlierHashes?: string[]): RailStoreRecord => ({
      t: "withdrawn",
      attemptId: "renewed",
      sent: true,
      createdAtMs: 5,
      paymentHash,
      request,
      ...(earlierHashes === undefined ? {} : { earlierHashes }),
    });
    type Legacy = Extract<RailStoreRecord, { t: "withdrawn" }>;
    const store = createFileRailStore(file);
    await store.load();
    await store.append(
      {
        ...(attempt("renewed") as Extract<RailStoreRecord, { t: "attempt" }>),
        paymentHash: first,
        createdAtMs: 5,
      },
      mark(first, firstRequest),
      // Its first invoice expired unpaid: a new one (send.ts addressInvoiceAfresh), sent, and found never taken again.
      mark(second, secondRequest, [first]),
      {
        ...(attempt("renewed") as Extract<RailStoreRecord, { t: "attempt" }>),
        paymentHash: second,
        createdAtMs: 9,
      },
      mark(second, secondRequest, [first]),
      // Renewed once more, by a line that names only the one it replaced: none of the hashes sent before is lost, nor
      // their invoices.
      mark(third, thirdRequest, [second]),
      // One journalled before the invoices of its earlier hashes were kept: their hashes alone, as it was.
      { ...(mark(second, secondRequest, [first]) as Legacy), attemptId: "legacy" },
    );
    await store.close();
    for (let reopen = 0; reopen < 2; reopen++) {
      const { forgottenSends } = await reopened();
      expect(forgottenSends.get("renewed")).toEqual({
        firstAtMs: 5,
        paymentHash: third,
        request: thirdRequest,
        earlierHashes: [first, second],
        // Before: their hashes alone, and an attempt that followed LND's payment of one journalled no invoice.
        earlierRequests: new Map([
          [second, secondRequest],
          [first, firstRequest],
        ]),
      });
      expect(forgottenSends.get("legacy")).toEqual({
        firstAtMs: 5,
        paymentHash: second,
        request: secondRequest,
        earlierHashes: [first],
      });
    }
    const compacted = (await readFile(file, "utf8"))
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(compacted).toContainEqual({
      ...mark(third, thirdRequest),
      earlierHashes: [first, second],
      earlierRequests: { [second]: secondRequest, [first]: firstRequest },
    });
    expect(compacted).toContainEqual({ ...mark(second, secondRequest, [first]), attemptId: "legacy" });
    // Its outcome ends the mark, and its earlier hashes with it.
    const last = createFileRailStore(file);
    await last.load();
    await last.append(
      {
        ...(attempt("renewed") as Extract<RailStoreRecord, { t: "attempt" }>),
        paymentHash: third,
        createdAtMs: 11,
      },
      { t: "outcome", attemptId: "renewed", status: "succeeded", preimage: "00", feeMsat: "0" },
    );
    await last.close();
    expect((await reopened()).forgottenSends.has("renewed")).toBe(false);
  });

  it("keeps the invoices of a mark renewed many times only as far as its journal line stays readable: the latest, the older by their hash alone", async () => {
    const file = path.join(directory, "forgotten-many.jsonl");
    // Forty renewals of invoices two kilobytes long (route hints), each mark naming the one it replaced.
    const hashes = Array.from({ length: 40 }, (_, index) => index.toString(16).padStart(64, "0"));
    const requests = new Map(hashes.map((hash) => [hash, invoiceOf(hash, 1_800)]));
    const requestOf = (hash: string) => requests.get(hash) as string;
    const store = createFileRailStore(file);
    await store.load();
    await store.append(
      ...hashes.map(
        (hash, index): RailStoreRecord => ({
          t: "withdrawn",
          attemptId: "renewed",
          sent: true,
          createdAtMs: 5,
          paymentHash: hash,
          request: requestOf(hash),
          ...(index === 0 ? {} : { earlierHashes: [hashes[index - 1] as string] }),
        }),
      ),
    );
    await store.close();
    for (let reopen = 0; reopen < 2; reopen++) {
      // Every invoice kept, the compacted mark's line ran over journalLineLengthMax, and the next reopen refused it.
      const reopened = createFileRailStore(file);
      const mark = (await reopened.load()).forgottenSends.get("renewed");
      await reopened.close();
      expect(mark?.earlierHashes).toEqual(hashes.slice(0, -1));
      expect([...(mark?.earlierRequests ?? new Map()).keys()]).toEqual(hashes.slice(-9, -1).reverse());
      expect(mark?.earlierRequests?.get(hashes[38] as string)).toBe(requestOf(hashes[38] as string));
    }
  });

  it("keeps a mark's earlier invoice only if it is one of its hash, and its own only while its line names the same hash", async () => {
    const file = path.join(directory, "forgotten-mismatched.jsonl");
    const [first, second, third, fourth] = ["a1", "b2", "c3", "d4"].map((byte) => byte.repeat(32)) as [
      string,
      string,
      string,
      string,
    ];
    const store = createFileRailStore(file);
    await store.load();
    await store.append(
      // Its earlier invoices paired with the wrong hashes (the first's named as the second's), and one not an invoice.
      {
        t: "withdrawn",
        attemptId: "mismatched",
        sent: true,
        createdAtMs: 5,
        paymentHash: third,
        request: invoiceOf(third),
        earlierHashes: [first, second, fourth],
        earlierRequests: { [first]: invoiceOf(first), [second]: invoiceOf(first), [fourth]: "lnbcrt1fourth" },
      },
      // Renewed by a line that names its new hash and no invoice: the one known is the third's, not the fourth's.
      {
        t: "withdrawn",
        attemptId: "renamed",
        sent: true,
        createdAtMs: 5,
        paymentHash: third,
        request: invoiceOf(third),
      },
      { t: "withdrawn", attemptId: "renamed", sent: true, createdAtMs: 6, paymentHash: fourth },
    );
    await store.close();
    for (let reopen = 0; reopen < 2; reopen++) {
      const reopened = createFileRailStore(file);
      const { forgottenSends } = await reopened.load(); // compacts the journal it read
      await reopened.close();
      // Before: the first's invoice was kept as the second's too (and journalled as what a payment of the second paid),
      // the text as the fourth's, and the renamed mark's invoice as the fourth's.
      expect(forgottenSends.get("mismatched")?.earlierRequests).toEqual(new Map([[first, invoiceOf(first)]]));
      expect(forgottenSends.get("renamed")).toEqual({
        firstAtMs: 5,
        paymentHash: fourth,
        request: null,
        earlierHashes: [third],
        earlierRequests: new Map([[third, invoiceOf(third)]]),
      });
    }
  });

  it("drops the invoice of an attempt that ended, paid or failed, at compaction", async () => {
    const file = path.join(directory, "paid-requests.jsonl");
    const request = (hash: string) => invoiceOf(hash);
    const store = createFileRailStore(file);
    await store.load();
    await store.append(
      {
        ...(attempt("paid") as Extract<RailStoreRecord, { t: "attempt" }>),
        request: request("ab".repeat(32)),
      },
      { t: "outcome", attemptId: "paid", status: "succeeded", preimage: "cd".repeat(32), feeMsat: "7" },
      { t: "reported", attemptId: "paid" },
      {
        ...(attempt("failed") as Extract<RailStoreRecord, { t: "attempt" }>),
        paymentHash: "ef".repeat(32),
        request: request("ef".repeat(32)),
      },
      {
        t: "outcome",
        attemptId: "failed",
        status: "failed",
        code: "unreachable_destination",
        message: "no route",
        retryElsewhere: true,
      },
      { t: "reported", attemptId: "failed" },
    );
    await store.close();
    // Each reopen reads what the one before compacted.
    for (let reopen = 0; reopen < 3; reopen++) {
      const reopened = createFileRailStore(file);
      const { attempts } = await reopened.load();
      await reopened.close();
      // The first load reads the lines as written; it compacts them, and every later load reads neither invoice:
      // what compaction keeps stays bounded by the attempts, not by what payees put in their invoices.
      expect(attempts.get("paid")?.request).toBe(reopen === 0 ? request("ab".repeat(32)) : null);
      expect(attempts.get("failed")?.request).toBe(reopen === 0 ? request("ef".repeat(32)) : null);
    }
  });

  it("forgets a withdrawn attempt on load, keeps one with an outcome, and takes the id again when it is written anew", async () => {
    const store = createMemoryRailStore();
    await store.load();
    await store.append(attempt("w1"), { t: "withdrawn", attemptId: "w1" });
    await store.append(
      attempt("sent"),
      {
        t: "outcome",
        attemptId: "sent",
        status: "failed",
        code: "rejected",
        message: "no",
        retryElsewhere: false,
      },
      // Never written for an attempt that has an outcome: ignored if it were.
      { t: "withdrawn", attemptId: "sent" },
    );
    let state = await store.load();
    expect([...state.attempts.keys()]).toEqual(["sent"]);
    expect(store.records().some((record) => "attemptId" in record && record.attemptId === "w1")).toBe(false);
    // Executed afresh after its withdrawal: its new line stands.
    await store.append(attempt("w1"));
    state = await store.load();
    expect(state.attempts.get("w1")).toMatchObject({ attemptId: "w1", outcome: null });
  });
});
