// The gateway process's V8 settings (v8-flags.ts): V8 still knows the flag, and the entry sets it before anything
// else it imports. V8 takes an unknown flag without failing, writing "unrecognized flag" to standard error, so a
// Node upgrade that renamed it would silently bring the promotion back (issue #19's HTTP bench shows it).
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const here = import.meta.dirname;

describe("the gateway process's V8 flags", () => {
  it("are all flags this V8 knows", async () => {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [path.join(here, "v8-flags.ts")]);
    expect([stdout, stderr]).toEqual(["", ""]);
  });

  it("are set by the entry's first import", async () => {
    const source = await readFile(path.join(here, "main.ts"), "utf8");
    const imports = source.split("\n").filter((line) => line.startsWith("import "));
    expect(imports[0]).toBe('import "./v8-flags.ts";');
  });
});
