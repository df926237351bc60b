// Each tenant's list reads take turns (lists.ts listTurn): at most listReadsPerTenantMax of them run at once in a
// process, the others wait in order; another tenant's read never waits behind them. On a stand-in database whose
// queries the test answers.
import { expect, it } from "vitest";
import type { Row, Sql } from "../../core/index.ts";
import { listPage, listReadsPerTenantMax } from "./lists.ts";

/** A database whose every query waits until the test answers it; what each query's tenant was. */
function heldDatabase() {
  const pending: { tenantId: unknown; answer: () => void }[] = [];
  const sql: Sql = {
    query: <R extends Row>(_text: string, params?: readonly unknown[]) =>
      new Promise<R[]>((resolve) => pending.push({ tenantId: params?.[0], answer: () => resolve([]) })),
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
