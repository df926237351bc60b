// Each tenant's list reads take turns (lists.ts listTurn): at most listReadsPerTenantMax of them run at once in a
// process, the others wait in order, passing over one whose client hung up; another tenant's read never waits
// behind them. On a stand-in database whose queries the test answers.
import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import Fastify from "fastify";
import { expect, it, vi } from "vitest";
import type { Row, Sql } from "../../core/index.ts";
import { clientGone, listPage, listReadsPerTenantMax } from "./lists.ts";

/** A database whose every query waits until the test answers it; what each query's tenant and limit were. */
function heldDatabase() {
  const pending: { tenantId: unknown; limit: unknown; answer: () => void }[] = [];
  const sql: Sql = {
    query: <R extends Row>(_text: string, params?: readonly unknown[]) =>
      new Promise<R[]>((resolve) =>
        pending.push({ tenantId: params?.[0], limit: params?.at(-1), answer: () => resolve([]) }),
      ),
  };
  return { sql, pending };
}

const source = { table: "payments", tenantColumn: "tenant_id", noun: "payment", map: (row: Row) => row };
const page = (sql: Sql, tenantId: string) =>
  listPage(sql, source, {
    tenantId,
    url: "/v1/payments",
    params: {
      limit: 10,
      cursor: null,
      createdFromSeconds: null,
      createdUntilSeconds: null,
      expand: new Set(),
    },
  });
const settle = () => new Promise((resolve) => setTimeout(resolve, 10));

it("runs a tenant's list reads a few at a time, in order, and never holds another tenant's", async () => {
  const { sql, pending } = heldDatabase();
  const reads = Array.from({ length: listReadsPerTenantMax + 40 }, () => page(sql, "ten_busy"));
  await settle();
  // Before: every read of the tenant was at the database at once (a connection of the pool each).
  expect(pending.map((query) => query.tenantId)).toEqual(Array(listReadsPerTenantMax).fill("ten_busy"));
  // Another tenant's read goes to the database at once.
  const other = page(sql, "ten_other");
  await settle();
  expect(pending.map((query) => query.tenantId)).toEqual([
    ...Array(listReadsPerTenantMax).fill("ten_busy"),
    "ten_other",
  ]);
  // Each answer lets the next waiting read in; all end.
  while (pending.length > 0) {
    pending.shift()!.answer();
    await settle();
    expect(pending.filter((query) => query.tenantId === "ten_busy").length).toBeLessThanOrEqual(
      listReadsPerTenantMax,
    );
  }
  const pages = await Promise.all([...reads, other]);
  expect(pages).toHaveLength(listReadsPerTenantMax + 40 + 1);
  // Its turns given back: a read now goes to the database at once.
  const again = page(sql, "ten_busy");
  await settle();
  expect(pending).toHaveLength(1);
  pending.shift()!.answer();
  await again;
});

it("passes over a waiting read whose client hung up: the next one still there gets the turn", async () => {
  const { sql, pending } = heldDatabase();
  const limitOf = (query: (typeof pending)[number]) => query.limit;
  const read = (limit: number, gone?: () => boolean) =>
    listPage(sql, source, {
      tenantId: "ten_busy",
      url: "/v1/payments",
      params: { limit, cursor: null, createdFromSeconds: null, createdUntilSeconds: null, expand: new Set() },
      gone,
    });
  const running = Array.from({ length: listReadsPerTenantMax }, () => read(10));
  let left = false;
  // Two reads whose clients hang up while they wait, then one whose client stays.
  const abandoned = [read(20, () => left), read(30, () => left)].map((page) =>
    page.then(
      () => null,
      (error: unknown) => error,
    ),
  );
  const staying = read(40, () => false);
  await settle();
  expect(pending.map(limitOf)).toEqual(Array(listReadsPerTenantMax).fill(11));
  left = true;
  pending.shift()!.answer();
  await settle();
  // The turn went to the read still wanted, not to the first in line.
  expect(pending.map(limitOf)).toEqual([...Array(listReadsPerTenantMax - 1).fill(11), 41]);
  expect(await Promise.all(abandoned)).toEqual([
    expect.objectContaining({ code: "overloaded" }),
    expect.objectContaining({ code: "overloaded" }),
  ]);
  while (pending.length > 0) {
    pending.shift()!.answer();
    await settle();
  }
  await Promise.all([...running, staying]);
  // Every turn given back.
  const again = read(10);
  await settle();
  expect(pending).toHaveLength(1);
  pending.shift()!.answer();
  await again;
});

it("clientGone tells a request whose client hung up from one still waiting for its answer", async () => {
  const app = Fastify();
  let asked = () => {};
  const arrived = new Promise<void>((resolve) => {
    asked = resolve;
  });
  let answer = () => {};
  const held = new Promise<void>((resolve) => {
    answer = resolve;
  });
  const seen: boolean[] = [];
  let closed: Promise<unknown> = Promise.resolve();
  app.get("/held", async (request) => {
    const gone = clientGone(request);
    seen.push(gone());
    closed = new Promise((resolve) => request.socket.once("close", resolve));
    asked();
    await held;
    seen.push(gone());
    return { ok: true };
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  try {
    const { port } = app.server.address() as AddressInfo;
    const socket = connect(port, "127.0.0.1");
    socket.on("error", () => {});
    socket.write("GET /held HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    await arrived;
    socket.destroy();
    await closed; // the server's side of the connection has closed
    answer();
    await vi.waitFor(() => expect(seen).toEqual([false, true]));
  } finally {
    await app.close();
  }
});
