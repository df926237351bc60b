// The catalog of event types (endpoints.ts eventTypes) against the code: every event type the gateway writes to the
// outbox, in TypeScript or in SQL, is one an endpoint may subscribe to. A type written but missing from the catalog
// could never be chosen; one in the catalog that nothing writes would be a subscription that never fires.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { eventTypes } from "./endpoints.ts";

const gatewayDir = path.join(import.meta.dirname, "..");

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sources(full);
    return /\.(ts|sql)$/.test(entry.name) && !entry.name.includes(".test.") ? [full] : [];
  });
}

/** Quoted literals naming an event of one of the gateway's objects, as the outbox writes take them. */
const eventLiteral = /["'`]((?:payment|invoice|refund|webhook_endpoint)\.[a-z_]+)["'`]/g;

describe("event types", () => {
  it("the catalog holds every type the code writes, and nothing it does not", () => {
    const written = new Set<string>();
    for (const file of sources(gatewayDir)) {
      if (file.endsWith(path.join("webhooks", "endpoints.ts"))) continue; // the catalog itself
      for (const match of readFileSync(file, "utf8").matchAll(eventLiteral)) written.add(match[1]!);
    }
    expect([...written].sort()).toEqual([...eventTypes].sort());
  });
});
