// Scopes, generated from the OpenAPI document the gateway serves: every operation names the scope it needs
// (security and x-switchyard-scope); a key with every scope but those gets 403 `scope_missing` on it and writes
// nothing; a key with the scope gets past (a read); the operator's routes answer a tenant's key — even one with
// every scope — 403 `operator_only`. A new route is covered without a line here.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApiKey, type Scope, scopes } from "../../gateway/tenants/index.ts";
import {
  type DocumentOperation,
  idPrefixOfParameter,
  isOperatorOnly,
  keyedOperationsOf,
  pathParameters,
  scopesOf,
  sendOperation,
  servedOpenApi,
} from "./generated-support.ts";
import { startTestGateway, type TestGateway } from "./support.ts";

const document = await servedOpenApi();
const operations = keyedOperationsOf(document);
const tenantOperations = operations.filter((op) => !isOperatorOnly(op));
const operatorOperations = operations.filter(isOperatorOnly);
const named = (ops: DocumentOperation[]) =>
  ops.map((op) => [`${op.method.toUpperCase()} ${op.path}`, op] as const);

/** Ids of the right form that name nothing: the scope is refused before anything is looked up. */
function pathOf(op: DocumentOperation): Record<string, string> {
  const path: Record<string, string> = {};
  for (const parameter of pathParameters(op))
    path[parameter.name] = `${idPrefixOfParameter(parameter) ?? "x"}_${"0".repeat(26)}`;
  return path;
}

/** The body the operation would take; refused before it is read, yet well-formed where it can be. */
const bodyOf = (op: DocumentOperation): unknown => (op.operation.requestBody === undefined ? undefined : {});

describe.each(["pglite", "postgres"] as const)("on %s", (database) => {
  let gw: TestGateway;
  const keys = new Map<string, string>();
  /** A key of the demo tenant with exactly these scopes (made once per set). */
  async function keyWith(granted: readonly Scope[]): Promise<string> {
    const name = [...granted].sort().join(",");
    if (!keys.has(name)) {
      const key = await createApiKey(gw.app.db, {
        tenantId: gw.app.demo!.tenantId,
        mode: "test",
        scopes: [...granted],
      });
      keys.set(name, key.secret);
    }
    return keys.get(name)!;
  }

  beforeAll(async () => {
    gw = await startTestGateway({ database });
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  it("every operation of a tenant's names the scopes that open it and answers 403 scope_missing", () => {
    expect(tenantOperations.length).toBeGreaterThan(10);
    for (const op of tenantOperations) {
      const name = `${op.method.toUpperCase()} ${op.path}`;
      expect([name, scopesOf(op).length > 0]).toEqual([name, true]);
      expect([name, scopes as readonly string[]]).toEqual([name, expect.arrayContaining(scopesOf(op))]);
      expect([name, op.operation["x-switchyard-scope"]]).toEqual([name, expect.any(String)]);
      expect([name, op.operation.responses["403"]?.["x-error-codes"]]).toEqual([
        name,
        expect.arrayContaining(["scope_missing"]),
      ]);
    }
  });

  it.each(named(tenantOperations))(
    "%s: a key without its scope gets 403 scope_missing and writes nothing",
    async (_name, op: DocumentOperation) => {
      const opening = scopesOf(op);
      const others = scopes.filter((scope) => !opening.includes(scope));
      expect(others.length).toBeGreaterThan(0);
      const client = gw.clientFor(await keyWith(others));
      const before = await gw.tableDigests();
      const body = bodyOf(op);
      const answer = await sendOperation(client, op, {
        path: pathOf(op),
        ...(body === undefined ? {} : { body }),
      });
      expect([op.path, answer.response.status]).toEqual([op.path, 403]);
      const error = (answer.error as { error: { code: string; scope?: string } }).error;
      expect(error.code).toBe("scope_missing");
      expect(opening).toContain(error.scope);
      expect(await gw.tableDigests()).toEqual(before);
      // A key with one of the scopes that open it gets past the scope (a read, which changes nothing).
      if (op.method === "get") {
        const allowed = await sendOperation(gw.clientFor(await keyWith([opening[0] as Scope])), op, {
          path: pathOf(op),
        });
        expect([op.path, allowed.response.status]).not.toEqual([op.path, 403]);
        expect([op.path, allowed.response.status]).not.toEqual([op.path, 401]);
      }
    },
  );

  it.each(named(operatorOperations))(
    "%s: a tenant's key, even with every scope, gets 403 operator_only",
    async (_name, op: DocumentOperation) => {
      const client = gw.clientFor(await keyWith(scopes));
      const before = await gw.tableDigests();
      const body = bodyOf(op);
      const answer = await sendOperation(client, op, {
        path: pathOf(op),
        ...(body === undefined ? {} : { body }),
      });
      expect([op.path, answer.response.status]).toEqual([op.path, 403]);
      expect((answer.error as { error: { code: string } }).error.code).toBe("operator_only");
      expect(await gw.tableDigests()).toEqual(before);
    },
  );

  it("the operator's routes are in the document", () => {
    expect(operatorOperations.map((op) => op.path)).toContain("/v1/tenants");
  });
});
