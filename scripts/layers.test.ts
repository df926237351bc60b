// The layer rule of ARCHITECTURE.md, as `npm run lint` enforces it: the project's own biome.json is copied
// into a scratch folder beside probe files placed where each layer lives, and Biome must refuse exactly the
// imports that cross a layer the wrong way. (`npm run lint` then applies the same rule to the real tree.)
import { execFile } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, "..");
const biome = path.join(root, "node_modules", ".bin", "biome");

type Probe = { readonly file: string; readonly imports: string; readonly refused: boolean };

const probes: readonly Probe[] = [
  { file: "core/probe-gateway.ts", imports: "../gateway/ledger/index.ts", refused: true },
  { file: "core/probe-adapters.ts", imports: "../adapters/evm/index.ts", refused: true },
  { file: "core/probe-own.ts", imports: "./money.ts", refused: false },
  { file: "adapters/evm/probe-gateway.ts", imports: "../../gateway/ledger/index.ts", refused: true },
  { file: "adapters/evm/probe-core.ts", imports: "../../core/index.ts", refused: false },
  { file: "gateway/payments/probe-adapters.ts", imports: "../../adapters/evm/index.ts", refused: true },
  { file: "gateway/payments/probe-gateway.ts", imports: "../ledger/index.ts", refused: false },
  { file: "gateway/app/probe-adapters.ts", imports: "../../adapters/evm/index.ts", refused: false },
  { file: "gateway/app.ts", imports: "../adapters/evm/index.ts", refused: false },
];

let scratch = "";

beforeAll(() => {
  scratch = mkdtempSync(path.join(os.tmpdir(), "switchyard-layers-"));
  cpSync(path.join(root, "biome.json"), path.join(scratch, "biome.json"));
  for (const probe of probes) {
    mkdirSync(path.join(scratch, path.dirname(probe.file)), { recursive: true });
    writeFileSync(
      path.join(scratch, probe.file),
      `import { value } from "${probe.imports}";\n\nexport const probe = value;\n`,
    );
  }
});

afterAll(() => {
  if (scratch !== "") rmSync(scratch, { recursive: true, force: true });
});

async function refusedFiles(): Promise<Set<string>> {
  const result = await run(
    biome,
    ["lint", "--only=style/noRestrictedImports", "--reporter=json", "--max-diagnostics=none", "."],
    { cwd: scratch },
  ).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? "" }));
  const report = JSON.parse(result.stdout) as {
    diagnostics: { category: string; location: { path: string } }[];
  };
  return new Set(
    report.diagnostics
      .filter((d) => d.category === "lint/style/noRestrictedImports")
      .map((d) => d.location.path.split(path.sep).join("/")),
  );
}

describe("layer rule (biome.json)", () => {
  it("refuses an import across a layer the wrong way, and only that", async () => {
    const refused = await refusedFiles();
    for (const probe of probes) {
      expect({ file: probe.file, refused: refused.has(probe.file) }).toEqual({
        file: probe.file,
        refused: probe.refused,
      });
    }
  });
});
