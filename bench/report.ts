// The one shape of every benchmark result, and how it is written and shown.
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";

/** A row names its case and carries metrics whose names end in their unit: transfers_per_s, p99_ms, gas. */
export type BenchRow = { case: string } & Record<string, number | string>;
export type BenchResult = { benchmark: string; rows: BenchRow[] };

export const resultsDirectory = path.join(import.meta.dirname, "results");

export async function writeResult(result: BenchResult): Promise<string> {
  await mkdir(resultsDirectory, { recursive: true });
  const file = path.join(resultsDirectory, `${result.benchmark}.json`);
  await writeFile(file, `${JSON.stringify(result, null, 2)}\n`);
  return file;
}

export function formatTable(result: BenchResult): string {
  const columns = [
    "case",
    ...new Set(result.rows.flatMap((row) => Object.keys(row).filter((key) => key !== "case"))),
  ];
  const cell = (value: unknown) =>
    typeof value === "number"
      ? Number.isInteger(value)
        ? value.toLocaleString("en-US")
        : value.toFixed(3)
      : String(value ?? "");
  const cells = result.rows.map((row) => columns.map((column) => cell(row[column])));
  const widths = columns.map((column, i) => Math.max(column.length, ...cells.map((row) => row[i]!.length)));
  const line = (values: string[]) =>
    values.map((value, i) => (i === 0 ? value.padEnd(widths[i]!) : value.padStart(widths[i]!))).join("  ");
  return [line(columns), line(widths.map((width) => "-".repeat(width))), ...cells.map(line)].join("\n");
}

/** Percentile by nearest rank over a sorted copy of the samples. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/** xorshift32: a fixed seed gives the same sequence on every run, so every run measures the same work. */
export function makeRandom(start: number): () => number {
  let state = start >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state;
  };
}
