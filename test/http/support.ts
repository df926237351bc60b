// Builds a gateway on the embedded defaults for one test file, with helpers to call it — the typed client
// (client/, in-process) and, for requests the client would not send (malformed on purpose), `call` — and to look at
// what it wrote: the ledger's transfers, every table's rows, and the chain's state.
import { erc20Abi } from "viem";
import { inject, onTestFinished } from "vitest";
import { createSwitchyardClient, injectFetch, type SwitchyardClient } from "../../client/index.ts";
import { type App, createApp, type RailModule, railModules } from "../../gateway/app.ts";
import type { Resolver } from "../../gateway/egress/index.ts";
import { routeScopes } from "../../gateway/http/auth.ts";
import { testConfig } from "../support/config.ts";
import { withIdempotencyKey } from "../support/idempotency-keys.ts";
import { createTestDatabase } from "../support/postgres.ts";

export type TestGateway = {
  app: App;
  key: string;
  /** The typed client with the demo tenant's key, calling the server in-process. */
  client: SwitchyardClient;
  /** The typed client with another key (null: none), or asking for an API version. */
  clientFor(key: string | null, options?: { version?: string }): SwitchyardClient;
  /** Raw requests: for what the typed client would not send (a malformed body, a wrong type, no content type). */
  call(
    method: "GET" | "POST" | "PATCH",
    url: string,
    options?: { body?: unknown; rawBody?: string; key?: string | null; headers?: Record<string, string> },
  ): Promise<{ status: number; body: any; headers: Record<string, unknown> }>;
  ledgerTransferCount(): Promise<bigint>;
  /**
   * A digest of every row of every table of the gateway's schema, by table: equal before and after = nothing
   * written. The chain watcher's own tables (backgroundTablePrefixes) are left out: they move on their own.
   */
  tableDigests(): Promise<Record<string, string>>;
  tokenBalance(address: `0x${string}`): Promise<bigint>;
  blockNumber(): Promise<bigint>;
  hotWalletNonce(): Promise<number>;
};

/** Whether a /v1 path is the operator's (its first segment's scope, as auth.ts finds it): called with its credential. */
export const operatorPath = (path: string): boolean =>
  routeScopes[path.split("/")[2]?.split("?")[0] ?? ""] === "operator";

/** Tables a process writes on its own, whatever the requests: the chain watcher's blocks, cursors and leases. */
export const backgroundTablePrefixes: readonly string[] = ["evm_watch_"];

/**
 * A gateway on PGlite in memory, or on a fresh database of the run's private PostgreSQL; with `extraRailModules`,
 * rails beside the embedded ones (a toy rail: test/support/toy-rail-module.ts).
 */
export async function startTestGateway(
  options: {
    database: "pglite" | "postgres";
    /** With "postgres": this database (made by createTestDatabase) instead of a new one. */
    databaseUrl?: string;
    extraRailModules?: readonly RailModule[];
    /** More configuration (WEBHOOK_DELIVERY_INTERVAL_MS, …). */
    env?: Record<string, string>;
    /** What webhook endpoints' names resolve to (the system's resolver unless given). */
    webhookResolver?: Resolver;
    /** Where the gateway's log lines go (none: LOG_LEVEL is silent unless env says otherwise). */
    logStream?: { write(line: string): void };
  } = { database: "pglite" },
): Promise<TestGateway> {
  const env: Record<string, string> = { LOG_LEVEL: "silent", PORT: "0", ...options.env };
  if (options.database === "postgres")
    env.DATABASE_URL = options.databaseUrl ?? (await createTestDatabase(inject("postgresUrl"), "http"));
  const app = await createApp(testConfig(env), {
    ...(options.extraRailModules === undefined
      ? {}
      : { railModules: [...railModules, ...options.extraRailModules] }),
    ...(options.webhookResolver === undefined ? {} : { webhookResolver: options.webhookResolver }),
    ...(options.logStream === undefined ? {} : { logStream: options.logStream }),
  });
  if (app.demo === null || app.chain === null)
    throw new Error("development mode with the embedded chain was expected");
  const chain = app.chain;
  const key = app.demo.apiKey;
  // A POST that names no Idempotency-Key gets a new one: the client's own (client/index.ts); call's, ../support/idempotency-keys.ts.
  const clientFor: TestGateway["clientFor"] = (clientKey, clientOptions = {}) => {
    const client = createSwitchyardClient({
      baseUrl: "http://gateway.test",
      apiKey: clientKey,
      fetch: injectFetch(app.server),
      ...(clientOptions.version === undefined ? {} : { version: clientOptions.version }),
    });
    return client;
  };
  return {
    app,
    key,
    client: clientFor(key),
    clientFor,
    async call(method, url, options = {}) {
      const headers = withIdempotencyKey(method, url, { ...(options.headers ?? {}) });
      const auth = options.key === undefined ? key : options.key;
      if (auth !== null) headers.authorization = `Bearer ${auth}`;
      const payload =
        options.rawBody ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
      if (payload !== undefined) headers["content-type"] ??= "application/json";
      const response = await app.server.inject({
        method,
        url,
        headers,
        ...(payload === undefined ? {} : { payload }),
      });
      return {
        status: response.statusCode,
        body: response.body === "" ? null : response.json(),
        headers: response.headers,
      };
    },
    async ledgerTransferCount() {
      const [row] = await app.db.query<{ count: bigint }>("SELECT count(*) AS count FROM ledger_transfers");
      return row!.count;
    },
    async tableDigests() {
      const tables = await app.db.query<{ name: string }>(
        `SELECT table_name AS name FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`,
      );
      const digests: Record<string, string> = {};
      for (const { name } of tables) {
        if (backgroundTablePrefixes.some((prefix) => name.startsWith(prefix))) continue;
        const [row] = await app.db.query<{ count: bigint; digest: string | null }>(
          `SELECT count(*) AS count, md5(string_agg(t::text, '|' ORDER BY t::text)) AS digest FROM "${name}" t`,
        );
        digests[name] = `${row!.count}:${row!.digest ?? ""}`;
      }
      return digests;
    },
    tokenBalance(address) {
      return chain.publicClient.readContract({
        address: chain.contracts.testUsd,
        abi: erc20Abi,
        functionName: "balanceOf",
        args: [address],
      });
    },
    blockNumber() {
      return chain.publicClient.getBlockNumber({ cacheTime: 0 });
    },
    hotWalletNonce() {
      return chain.publicClient.getTransactionCount({
        address: chain.walletClient.account.address,
        blockTag: "pending",
      });
    },
  };
}

/**
 * The error body of a typed call's refusal: its code and message as the schema types them, and the extras a
 * refusal carries (a route, a scope) as loosely as the schema leaves them.
 */
export function errorOf(result: { error?: unknown; response: Response }): {
  code: string;
  message: string;
  param?: string;
} & Record<string, any> {
  const body = result.error as { error?: { code: string; message: string } } | undefined;
  if (body?.error === undefined) throw new Error(`expected an error, got ${result.response.status}`);
  return body.error;
}

/**
 * The invoices `app`'s process tells paid (its in-process `invoice.paid`), in order, from now to the end of the test;
 * each of `alsoListening` is a listener of it for as long.
 */
export function invoicesHeardPaid(app: App, ...alsoListening: ((invoiceId: string) => void)[]): string[] {
  const heard: string[] = [];
  const listeners = [(invoiceId: string) => void heard.push(invoiceId), ...alsoListening];
  for (const listener of listeners) app.events.on("invoice.paid", listener);
  onTestFinished(() => {
    for (const listener of listeners) app.events.off("invoice.paid", listener);
  });
  return heard;
}
