// The EVM adapter's thrown errors are SwitchyardErrors, and viem's errors are translated once, at the adapter's
// boundary: what was being done as the short message, viem's account as the details, viem's error as the cause.
// What the rail only reports (a failed refresh) goes to the logger it was given.
import { BaseError, createPublicClient, createWalletClient, defineChain, HttpRequestError, http } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { describe, expect, it } from "vitest";
import { assets, type Db, type OutgoingAttempt, SwitchyardError } from "../../core/index.ts";
import { recordingLogger } from "../../test/support/recording-logger.ts";
import { ContractArtifactMissingError, ContractDeploymentError } from "./deploy.ts";
import { EvmRailError, translatingViemErrors } from "./errors.ts";
import { createEvmRail } from "./rail.ts";
import { createSplitterWatcher, EvmWatcherError } from "./watcher.ts";

const refused = () =>
  new HttpRequestError({ url: "http://127.0.0.1:1", details: "fetch failed: connect ECONNREFUSED" });

describe("the EVM adapter's errors", () => {
  it("extend SwitchyardError with fixed names", () => {
    const errors = [
      new EvmRailError("x"),
      new EvmWatcherError("x"),
      new ContractArtifactMissingError("artifacts/x.json", { cause: new Error("ENOENT") }),
      new ContractDeploymentError("RevenueSplitter", { txHash: "0x01" }),
    ];
    for (const error of errors) expect(error).toBeInstanceOf(SwitchyardError);
    expect(errors.map((error) => error.name)).toEqual([
      "EvmRailError",
      "EvmWatcherError",
      "ContractArtifactMissingError",
      "ContractDeploymentError",
    ]);
    expect(errors[3]?.shortMessage).toBe("deploying RevenueSplitter failed");
  });
});

describe("translatingViemErrors", () => {
  it("turns a viem error into the adapter's, viem's short message and details kept, viem's error as the cause", async () => {
    const viemError = refused();
    const thrown = await translatingViemErrors("reading a balance", () => Promise.reject(viemError)).catch(
      (error: unknown) => error,
    );
    expect(thrown).toBeInstanceOf(EvmRailError);
    const error = thrown as EvmRailError;
    expect(error.shortMessage).toBe("reading a balance failed");
    expect(error.details).toBe("HTTP request failed. (fetch failed: connect ECONNREFUSED)");
    expect(error.cause).toBe(viemError);
    expect(error.message.split("\n")[0]).toBe("reading a balance failed");
  });

  it("lets the adapter's own errors and anything not viem's through unchanged", async () => {
    for (const original of [new EvmRailError("ours"), new TypeError("a bug")]) {
      await expect(translatingViemErrors("x", () => Promise.reject(original))).rejects.toBe(original);
    }
  });
});

describe("at the boundary", () => {
  // A node that is not there: viem's HTTP transport fails at once, without retries.
  const chain = defineChain({
    id: 31337,
    name: "nowhere",
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: ["http://127.0.0.1:1"] } },
  });
  const transport = http("http://127.0.0.1:1", { retryCount: 0, timeout: 2_000 });
  const publicClient = createPublicClient({ chain, transport });
  const account = privateKeyToAccount(`0x${"11".repeat(32)}`);
  const walletClient = createWalletClient({ chain, transport, account });
  // The lease is ours; no send or refusal is stored yet. Nothing else is asked of the database before the node; a
  // refusal is then kept in a transaction of its own (answered here as the one just written).
  const query = async (text: string) =>
    text.includes("evm_watch_leases")
      ? [{ holder: "me" }]
      : text.includes("FROM evm_send_refusals") && !text.includes("INSERT")
        ? kept
        : text.includes("FROM evm_nonces")
          ? [{ next_nonce: 0n }]
          : [];
  let kept: unknown[] = [];
  const db = {
    query,
    transaction: async <T>(fn: (tx: unknown) => Promise<T>) => {
      const result = await fn({
        query: async (text: string, params: unknown[]) => {
          if (text.includes("INSERT INTO evm_send_refusals"))
            kept = [{ status: "failed", code: params[2], revert: params[3], message: params[4] }];
          return query(text);
        },
      });
      return result;
    },
  } as unknown as Db;
  const watcherParams = () => ({
    db,
    publicClient,
    splitter: `0x${"bb".repeat(20)}` as const,
    startBlock: 0n,
    confirmations: 1,
    sink: { seen: async () => {}, final: async () => {}, removed: async () => {} },
    pollIntervalMs: 60_000,
    blockRangeMax: 1_000n,
    eventsPerPollMax: 1_000,
    leaseMs: 10_000,
  });
  const railParams = () => ({
    db,
    publicClient,
    walletClient,
    token: { address: `0x${"aa".repeat(20)}` as const, asset: assets.USDC },
    confirmations: 1,
    gas: { priorityFeeWei: 1_000_000_000n, maxFeeWei: 100_000_000_000n },
    transferGasEstimate: 60_000n,
    snapshotRefreshMs: 60_000,
    receiptTimeoutMs: 1_000,
    replaceAfterMs: 60_000,
    expectedLatencyMs: 1_000,
  });

  it("the rail's balance: an EvmRailError caused by viem's", async () => {
    const rail = createEvmRail(railParams());
    const error = await rail.balance().catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(EvmRailError);
    expect((error as EvmRailError).shortMessage).toBe("reading the hot wallet's balance failed");
    expect((error as EvmRailError).cause).toBeInstanceOf(BaseError); // viem's ContractFunctionExecutionError
    expect((error as EvmRailError).details).toMatch(/HTTP request failed/);
  });

  it("the watcher's poll: an EvmWatcherError caused by viem's", async () => {
    const watcher = createSplitterWatcher(watcherParams());
    const error = await watcher.poll().catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(EvmWatcherError);
    expect((error as EvmWatcherError).shortMessage).toBe("polling the splitter failed");
    expect((error as EvmWatcherError).cause).toBeInstanceOf(HttpRequestError);
  });

  it("a failed snapshot refresh leaves the rail unavailable and is logged through the rail's logger", async () => {
    const recorded = recordingLogger();
    const rail = createEvmRail({ ...railParams(), logger: recorded.logger });
    expect(rail.snapshot().unavailable).toEqual({
      code: "not_started",
      message: "the EVM rail is not started",
    });
    await rail.refresh();
    expect(rail.snapshot().available).toBe(false);
    // Why, for the health routes: not viem's message, which names the RPC's URL (a provider's holds its API key).
    expect(rail.snapshot().unavailable).toEqual({
      code: "node_unreachable",
      message: "the chain's node did not answer the rail's reads of its balance and base fee",
    });
    const lines = recorded.lines.filter((line) => line.level === "warn");
    expect(lines).toHaveLength(1);
    expect(lines[0]?.message).toMatch(/snapshot refresh failed/);
    expect(String(lines[0]?.fields.error)).toMatch(/HTTP request failed/);
  });

  it("a failed poll of the started watcher is logged through its logger, and it polls on", async () => {
    let logged: () => void = () => {};
    const firstLine = new Promise<void>((resolve) => {
      logged = resolve;
    });
    const recorded = recordingLogger({ onLine: (line) => line.level === "error" && logged() });
    const watcher = createSplitterWatcher({ ...watcherParams(), logger: recorded.logger });
    watcher.start();
    await firstLine;
    await watcher.stop();
    const lines = recorded.lines.filter((line) => line.level === "error");
    expect(lines[0]?.message).toBe("poll failed; the next one tries again");
    expect(String(lines[0]?.fields.error)).toMatch(/^polling the splitter failed/);
  });

  it("the rail's snapshot leaves the success counts to the router's learning", () => {
    const snapshot = createEvmRail(railParams()).snapshot();
    expect(snapshot).not.toHaveProperty("successes");
    expect(snapshot).not.toHaveProperty("failures");
  });

  it("a payout the node never answered fails as rail_unavailable (not a shortfall), nothing sent", async () => {
    const outcome = await createEvmRail(railParams()).execute({
      id: "att_nowhere",
      paymentId: "pay_nowhere",
      tenantId: "ten_test",
      amount: 1n,
      destination: { kind: "evm_address", address: `0x${"cc".repeat(20)}` },
      feeMax: 0n,
    } satisfies OutgoingAttempt);
    expect(outcome).toMatchObject({ status: "failed", code: "rail_unavailable", retryElsewhere: true });
  });
});
