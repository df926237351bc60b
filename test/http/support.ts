// Builds a gateway on the embedded defaults for one test file, with helpers to call it and to look at what
// it wrote: the ledger's transfers and the chain's state.
import { erc20Abi } from "viem";
import { inject } from "vitest";
import { loadConfig } from "../../gateway/app/config.ts";
import { type App, createApp } from "../../gateway/app.ts";
import { createTestDatabase } from "../support/postgres.ts";

export type TestGateway = {
  app: App;
  key: string;
  call(
    method: "GET" | "POST" | "PATCH",
    url: string,
    options?: { body?: unknown; rawBody?: string; key?: string | null; headers?: Record<string, string> },
  ): Promise<{ status: number; body: any; headers: Record<string, unknown> }>;
  ledgerTransferCount(): Promise<bigint>;
  tokenBalance(address: `0x${string}`): Promise<bigint>;
  blockNumber(): Promise<bigint>;
  hotWalletNonce(): Promise<number>;
};

/** A gateway on PGlite in memory, or on a fresh database of the run's private PostgreSQL. */
export async function startTestGateway(
  options: { database: "pglite" | "postgres" } = { database: "pglite" },
): Promise<TestGateway> {
  const env: Record<string, string> = { LOG_LEVEL: "silent", PORT: "0" };
  if (options.database === "postgres")
    env.DATABASE_URL = await createTestDatabase(inject("postgresUrl"), "http");
  const app = await createApp(loadConfig(env));
  if (app.demo === null || app.chain === null)
    throw new Error("development mode with the embedded chain was expected");
  const chain = app.chain;
  const key = app.demo.apiKey;
  return {
    app,
    key,
    async call(method, url, options = {}) {
      const headers: Record<string, string> = { ...(options.headers ?? {}) };
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
