// What the generated tests (generated-*.test.ts) read from the OpenAPI document the gateway serves, and how they
// call any operation of it with the typed client.
import { servedDocument } from "../../client/generate-types.ts";
import type { SwitchyardClient } from "../../client/index.ts";
import { idPrefixOf } from "../../gateway/http/openapi.ts";

export type Parameter = { in: string; name: string; required?: boolean; schema?: Record<string, unknown> };
export type Operation = {
  security?: Record<string, string[]>[];
  parameters?: Parameter[];
  requestBody?: { content: Record<string, { schema: JsonSchema }> };
  responses: Record<string, { content?: Record<string, { schema: JsonSchema }>; "x-error-codes"?: string[] }>;
  "x-switchyard-scope"?: string;
  "x-error-codes"?: string[];
};
type JsonSchema = Record<string, unknown>;
export type OpenApi = {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, JsonSchema> };
};
export type DocumentOperation = { method: string; path: string; operation: Operation };

const methods = ["get", "post", "put", "patch", "delete"] as const;

export async function servedOpenApi(): Promise<OpenApi> {
  return (await servedDocument()) as unknown as OpenApi;
}

export function operationsOf(document: OpenApi): DocumentOperation[] {
  return Object.entries(document.paths).flatMap(([path, byMethod]) =>
    methods.flatMap((method) => {
      const operation = byMethod[method];
      return operation === undefined ? [] : [{ method, path, operation }];
    }),
  );
}

export function pathParameters(op: DocumentOperation): Parameter[] {
  return (op.operation.parameters ?? []).filter((parameter) => parameter.in === "path");
}

/** The prefix of the ids a path parameter takes (`pay` for ^pay_…), or null. */
export function idPrefixOfParameter(parameter: Parameter): string | null {
  return idPrefixOf(parameter);
}

/** The scopes the operation's security names (any one of them is enough). */
export function scopesOf(op: DocumentOperation): string[] {
  return (op.operation.security ?? []).flatMap((requirement) => Object.values(requirement).flat());
}

/**
 * The operations an API key opens: all but a wallet's (/pay/{rail}/authorizations), which an invoice's client secret
 * authorizes (no `security`).
 */
export function keyedOperationsOf(document: OpenApi): DocumentOperation[] {
  return operationsOf(document).filter((op) => (op.operation.security ?? []).length > 0);
}

/** Routes of the operator's (/v1/tenants): a tenant's key never reaches them. */
export function isOperatorOnly(op: DocumentOperation): boolean {
  return op.operation["x-switchyard-scope"] === "operator" || scopesOf(op).includes("operator");
}

/** GET operations without a path parameter whose answer is a list (`object: "list"`, `data`). */
export function listOperations(operations: readonly DocumentOperation[]): DocumentOperation[] {
  return operations.filter((op) => {
    if (op.method !== "get" || pathParameters(op).length > 0) return false;
    const schema = op.operation.responses["200"]?.content?.["application/json"]?.schema as
      | { properties?: Record<string, { const?: unknown; enum?: unknown[]; type?: unknown }> }
      | undefined;
    const object = schema?.properties?.object;
    return (
      (object?.const === "list" || (object?.enum ?? []).includes("list")) &&
      schema?.properties?.data?.type === "array"
    );
  });
}

/**
 * A body that passes an operation's validation, so that what answers is the handler (404, 403), not the schema:
 * `{}` when no field is required; otherwise a sample written here by operation. None: the test says to add one.
 */
const bodySamples: Record<string, unknown> = {
  // Well-formed, signed by nobody: the handler answers (404 for another tenant's invoice) before the rail checks it.
  "POST /v1/invoices/{id}/authorizations": {
    from: `0x${"11".repeat(20)}`,
    value: "1",
    valid_after: "0",
    valid_before: "1",
    nonce: `0x${"22".repeat(32)}`,
    signature: `0x${"33".repeat(65)}`,
  },
};

export function bodySampleFor(op: DocumentOperation): unknown {
  const schema = op.operation.requestBody?.content["application/json"]?.schema;
  if (schema === undefined) return undefined;
  const name = `${op.method.toUpperCase()} ${op.path}`;
  if (name in bodySamples) return bodySamples[name];
  const required = (schema.required as string[] | undefined) ?? [];
  if (required.length === 0) return {};
  throw new Error(
    `${name} requires ${required.join(", ")}: add a body sample to test/http/generated-support.ts`,
  );
}

type Sent = { data?: unknown; error?: unknown; response: Response };
type AnyCall = (path: string, init: Record<string, unknown>) => Promise<Sent>;

/** Calls an operation the document names with the typed client (its path and method known only at run time). */
export function sendOperation(
  client: SwitchyardClient,
  op: DocumentOperation,
  params: { path?: Record<string, string>; query?: Record<string, string>; body?: unknown },
): Promise<Sent> {
  const call = (client as unknown as Record<string, AnyCall>)[op.method.toUpperCase()]!;
  return call(op.path, {
    params: { path: params.path ?? {}, query: params.query ?? {} },
    ...(params.body === undefined ? {} : { body: params.body }),
  });
}
