// `npm run bench -- <name>`: runs bench/<name>.ts, writes bench/results/<name>.json and prints a table.
// Each benchmark module exports `run(): Promise<BenchResult>`.
import { readdir } from "node:fs/promises";
import path from "node:path";
import { type BenchResult, formatTable, writeResult } from "./report.ts";

const names = (await readdir(import.meta.dirname))
  .filter((file) => file.endsWith(".ts") && !["run.ts", "report.ts"].includes(file))
  .map((file) => file.slice(0, -3))
  .sort();
const wanted = process.argv.slice(2);
if (wanted.length === 0) {
  console.error(`usage: npm run bench -- <name> [<name> …]\nbenchmarks: ${names.join(", ")}`);
  process.exit(2);
}
for (const name of wanted) {
  if (!names.includes(name)) {
    console.error(`unknown benchmark "${name}"; benchmarks: ${names.join(", ")}`);
    process.exit(2);
  }
}
for (const name of wanted) {
  const module = (await import(path.join(import.meta.dirname, `${name}.ts`))) as {
    run: () => Promise<BenchResult>;
  };
  const result = await module.run();
  const file = await writeResult(result);
  console.log(`\n${result.benchmark}\n${formatTable(result)}\n→ ${path.relative(process.cwd(), file)}`);
}
