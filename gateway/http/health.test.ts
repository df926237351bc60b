// The health routes' rails: each shows whether it can take payments and, when it cannot, why, as its snapshot says.
// Toy rails stand for the real ones (whose reasons are checked on their own networks); the database is none, so
// /readyz answers 503, with the rails all the same.
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Rail, RailSnapshot } from "../../core/index.ts";
import { buildBareServer } from "../../test/support/bare-server.ts";
import { toyRailSnapshot } from "../../test/support/toy-rail.ts";

/** A rail that only shows its snapshot: nothing else of it is asked by the health routes. */
const railShowing = (snapshot: RailSnapshot) =>
  ({
    id: snapshot.rail,
    kind: snapshot.kind,
    asset: snapshot.asset,
    snapshot: () => snapshot,
  }) as unknown as Rail;

const torn = {
  code: "journal_torn",
  message:
    "the journal refuses every write since a write, cut or sync failed (EIO); restart the gateway to reload it",
} as const;

let server: FastifyInstance;

beforeAll(async () => {
  const rails = [
    toyRailSnapshot("up", 0n),
    { ...toyRailSnapshot("torn", 0n), available: false, unavailable: torn },
    // A rail that does not say why.
    { ...toyRailSnapshot("mute", 0n), available: false },
  ];
  server = await buildBareServer([], {
    rails: new Map(rails.map((snapshot) => [snapshot.rail, railShowing(snapshot)])),
    readinessTimeoutMs: 100,
  });
});

afterAll(async () => {
  await server?.close();
});

const railsExpected = {
  up: { available: true },
  torn: { available: false, reason: torn },
  mute: { available: false },
};

describe("the health routes' rails", () => {
  it("GET /healthz says why a rail is unavailable, and nothing more of one that is available", async () => {
    const response = await server.inject({ method: "GET", url: "/healthz" });
    expect(response.statusCode).toBe(200);
    // Before: { available: false } alone, whatever the rail knew.
    expect(response.json().rails).toEqual(railsExpected);
  });

  it("GET /readyz shows the rails as /healthz does", async () => {
    const response = await server.inject({ method: "GET", url: "/readyz" });
    expect(response.statusCode).toBe(503);
    expect(response.json().rails).toEqual(railsExpected);
  });
});
