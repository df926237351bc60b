// The EVM rail: stablecoin payouts from the gateway's hot wallet with viem.
//
// Never twice: an attempt's transaction is signed, its hash and raw bytes stored (evm_sends), and only then
// broadcast. Executing the attempt again finds the stored transaction and waits for its receipt (broadcasting
// the same bytes again if the node lost it), so a retry can only ever land the one transaction.
// Sends are serialized so that nonces are handed out in order.
import path from "node:path";
import {
  type Account,
  type Chain,
  encodeFunctionData,
  erc20Abi,
  keccak256,
  type PublicClient,
  parseEventLogs,
  type Transport,
  type WalletClient,
} from "viem";
import type { Db, MigrationSource } from "../../gateway/db/index.ts";
import { type Asset, amountMax, divCeil } from "../../gateway/money/index.ts";
import type { RailSnapshot, UsdRate } from "../../gateway/router/types.ts";
import type { AttemptOutcome, OutgoingAttempt, Rail, RailEventHandler } from "../rail.ts";

export const evmMigrations: MigrationSource = {
  namespace: "evm",
  directory: path.join(import.meta.dirname, "migrations"),
};

export type EvmRailParams = {
  id?: string;
  db: Db;
  publicClient: PublicClient<Transport, Chain>;
  walletClient: WalletClient<Transport, Chain, Account>;
  token: { address: `0x${string}`; asset: Asset };
  confirmations: number;
  /** USD value of the chain's native token (gas), per wei. */
  nativeUsdRate: UsdRate;
  /** Gas of one token transfer, for the fee estimate the router sees. */
  transferGasEstimate: bigint;
  snapshotRefreshMs: number;
  receiptTimeoutMs: number;
  expectedLatencyMs: number;
  nowMs?: () => number;
};

export class EvmRailError extends Error {
  override name = "EvmRailError";
}

type SendRow = { attempt_id: string; tx_hash: `0x${string}`; raw_tx: `0x${string}`; nonce: number };

export function createEvmRail(params: EvmRailParams): Rail & { refresh(): Promise<void> } {
  const id = params.id ?? "evm";
  const nowMs = params.nowMs ?? Date.now;
  const account = params.walletClient.account;
  const chainId = params.publicClient.chain.id;
  let sendQueue: Promise<unknown> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  let state = { available: false, liquidity: 0n, gasPrice: 0n, successes: 0, failures: 0, takenAtMs: 0 };

  /** Runs `fn` after every send queued before it: nonces are assigned in order. */
  function serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = sendQueue.then(fn, fn);
    sendQueue = run.catch(() => undefined); // the queue goes on; the caller still sees this run's error
    return run;
  }

  async function refresh(): Promise<void> {
    try {
      const [liquidity, gasPrice] = await Promise.all([
        params.publicClient.readContract({
          address: params.token.address,
          abi: erc20Abi,
          functionName: "balanceOf",
          args: [account.address],
        }),
        params.publicClient.getGasPrice(),
      ]);
      state = { ...state, available: true, liquidity, gasPrice, takenAtMs: nowMs() };
    } catch (error) {
      state = { ...state, available: false, takenAtMs: nowMs() };
      console.error(
        `evm rail: snapshot refresh failed: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }

  function destinationAddress(attempt: OutgoingAttempt): `0x${string}` | null {
    return attempt.destination.kind === "evm_address" ? attempt.destination.address : null;
  }

  async function signAndStore(
    attempt: OutgoingAttempt,
    to: `0x${string}`,
  ): Promise<SendRow | AttemptOutcome> {
    const data = encodeFunctionData({ abi: erc20Abi, functionName: "transfer", args: [to, attempt.amount] });
    let request: Awaited<ReturnType<typeof params.walletClient.prepareTransactionRequest>>;
    try {
      request = await params.walletClient.prepareTransactionRequest({
        account,
        chain: params.walletClient.chain,
        to: params.token.address,
        data,
      });
    } catch (error) {
      // Gas estimation runs the transfer: a revert here means the hot wallet cannot pay it. Nothing was sent.
      return {
        status: "failed",
        code: "insufficient_liquidity",
        message: `transfer would revert: ${shortMessage(error)}`,
        retryElsewhere: true,
      };
    }
    const raw = await params.walletClient.signTransaction(
      request as Parameters<typeof params.walletClient.signTransaction>[0],
    );
    const row: SendRow = {
      attempt_id: attempt.id,
      tx_hash: keccak256(raw),
      raw_tx: raw,
      nonce: Number(request.nonce),
    };
    await params.db.query(
      "INSERT INTO evm_sends (attempt_id, chain_id, tx_hash, raw_tx, nonce) VALUES ($1, $2, $3, $4, $5)",
      [row.attempt_id, chainId, row.tx_hash, row.raw_tx, row.nonce],
    );
    await broadcast(row);
    return row;
  }

  async function broadcast(row: SendRow): Promise<void> {
    try {
      await params.publicClient.sendRawTransaction({ serializedTransaction: row.raw_tx });
    } catch (error) {
      // "already known" or "nonce too low" means the node has seen these bytes (or mined them): the receipt decides.
      const text = shortMessage(error).toLowerCase();
      if (!text.includes("known") && !text.includes("nonce"))
        throw new EvmRailError(`broadcast of ${row.tx_hash} failed: ${shortMessage(error)}`, {
          cause: error,
        });
    }
  }

  async function outcomeOf(
    attempt: OutgoingAttempt,
    row: SendRow,
    to: `0x${string}`,
  ): Promise<AttemptOutcome> {
    const receipt = await params.publicClient
      .waitForTransactionReceipt({
        hash: row.tx_hash,
        confirmations: params.confirmations,
        timeout: params.receiptTimeoutMs,
      })
      .catch(() => null);
    if (receipt === null) return { status: "in_flight", reference: row.tx_hash };
    if (receipt.status !== "success") {
      state = { ...state, failures: state.failures + 1 };
      return {
        status: "failed",
        code: "rejected",
        message: `transaction ${row.tx_hash} reverted`,
        retryElsewhere: true,
      };
    }
    const log = parseEventLogs({ abi: erc20Abi, eventName: "Transfer", logs: receipt.logs }).find(
      (entry) =>
        entry.address.toLowerCase() === params.token.address.toLowerCase() &&
        entry.args.from.toLowerCase() === account.address.toLowerCase() &&
        entry.args.to.toLowerCase() === to.toLowerCase() &&
        entry.args.value === attempt.amount,
    );
    if (log === undefined)
      throw new EvmRailError(`transaction ${row.tx_hash} succeeded without the expected Transfer log`);
    state = { ...state, successes: state.successes + 1, liquidity: state.liquidity - attempt.amount };
    return {
      status: "succeeded",
      evidence: {
        rail: "evm",
        chainId,
        txHash: row.tx_hash,
        logIndex: log.logIndex,
        blockNumber: receipt.blockNumber,
      },
      fee: 0n, // gas is paid by the hot wallet in the native token, not taken from the payment
    };
  }

  return {
    id,
    kind: "evm",
    asset: params.token.asset,
    refresh,
    async start() {
      await refresh();
      timer = setInterval(() => void refresh(), params.snapshotRefreshMs);
      timer.unref();
    },
    async stop() {
      if (timer !== undefined) clearInterval(timer);
      await sendQueue;
    },
    snapshot(): RailSnapshot {
      // gas × price is in wei; the rate turns wei into USD micro-units, rounded up: an estimate of a cost.
      const networkFeeMicroUsd = divCeil(
        params.transferGasEstimate * state.gasPrice * params.nativeUsdRate.microUsd,
        params.nativeUsdRate.perMinorUnits,
      );
      return {
        rail: id,
        kind: "evm",
        asset: params.token.asset,
        available: state.available,
        reaches: ["evm_address"],
        amountMin: 1n,
        amountMax,
        liquidity: state.liquidity,
        feeFixed: 0n,
        feePpm: 0n,
        networkFeeMicroUsd,
        latencyMs: params.expectedLatencyMs,
        successes: state.successes,
        failures: state.failures,
        takenAtMs: state.takenAtMs,
      };
    },
    async execute(attempt: OutgoingAttempt): Promise<AttemptOutcome> {
      const to = destinationAddress(attempt);
      if (to === null)
        return {
          status: "failed",
          code: "unreachable_destination",
          message: `the EVM rail does not reach ${attempt.destination.kind}`,
          retryElsewhere: true,
        };
      const sent = await serialized(async () => {
        const [existing] = await params.db.query<SendRow>(
          "SELECT attempt_id, tx_hash, raw_tx, nonce FROM evm_sends WHERE attempt_id = $1",
          [attempt.id],
        );
        if (existing !== undefined) {
          await broadcast(existing); // harmless if the node has it; needed if it lost it
          return existing;
        }
        return signAndStore(attempt, to);
      });
      if ("status" in sent) return sent;
      return outcomeOf(attempt, sent, to);
    },
    onEvent(_handler: RailEventHandler) {
      // Payout outcomes come back from execute; the log watcher that mirrors contract events is not wired yet.
    },
    async balance() {
      return params.publicClient.readContract({
        address: params.token.address,
        abi: erc20Abi,
        functionName: "balanceOf",
        args: [account.address],
      });
    },
  };
}

function shortMessage(error: unknown): string {
  if (
    error !== null &&
    typeof error === "object" &&
    "shortMessage" in error &&
    typeof error.shortMessage === "string"
  )
    return error.shortMessage;
  return error instanceof Error ? error.message : String(error);
}
