// The EVM rail: stablecoin payouts from the gateway's hot wallet with viem — to an address (`transfer`) or
// into a RevenueSplitter split (`pay`, after a one-time `approve` of the splitter) — and the splitter calls the
// gateway submits for others: `payWithAuthorization` (a payer's EIP-3009 signature), `distribute`, `settleBatch`.
//
// Never twice: an attempt's transaction is signed, its hash and raw bytes stored (evm_sends), and only then
// broadcast. Executing the attempt again finds the stored transaction and waits for its receipt (broadcasting
// the same bytes again if the node lost it), so a retry can only ever land the one transaction. The splitter
// calls use the same table, keyed by their own idempotency key (prefixed: `auth:`, `distribute:`, `settle:`).
// Sends are serialized so that nonces are handed out in order.
import path from "node:path";
import {
  type Account,
  type Address,
  BaseError,
  type Chain,
  decodeErrorResult,
  encodeFunctionData,
  erc20Abi,
  type Hex,
  keccak256,
  maxUint256,
  type PublicClient,
  parseEventLogs,
  parseSignature,
  type TransactionReceipt,
  type Transport,
  type WalletClient,
} from "viem";
import type {
  AttemptOutcome,
  Db,
  MigrationSource,
  OutgoingAttempt,
  Rail,
  RailEventHandler,
  RailFailureCode,
  RailSnapshot,
  SettlementEvidence,
  UsdRate,
} from "../../core/index.ts";
import { type Asset, amountMax, divCeil } from "../../core/index.ts";
import { revenueSplitterAbi, testUsdErrorsAbi } from "./abi.generated.ts";
import { referenceFromId, settleBatchPayeesMax } from "./splits.ts";

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
  /** The RevenueSplitter: with it the rail also reaches `evm_split` destinations. */
  splitter?: Address;
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

type EvmEvidence = Extract<SettlementEvidence, { rail: "evm" }>;

/** The outcome of a splitter call the gateway submits (not a payment attempt). */
export type EvmCallOutcome =
  | { status: "succeeded"; evidence: EvmEvidence; amount: bigint }
  /** Sent (and stored) but no receipt within receiptTimeoutMs: call again with the same key to follow it. */
  | { status: "in_flight"; txHash: Hex }
  | { status: "failed"; code: RailFailureCode; message: string; revert: string | null };

/** A payer's EIP-3009 ReceiveWithAuthorization for RevenueSplitter.payWithAuthorization (nonce = authorizationNonceOf(splitId, ref)). */
export type PayWithAuthorizationParams = {
  splitId: Hex;
  from: Address;
  amount: bigint;
  validAfter: bigint;
  validBefore: bigint;
  ref: Hex;
  /** The payer's 65-byte signature of receiveWithAuthorizationTypedData(…). */
  signature: Hex;
};

export type DistributeParams = {
  /** The caller's idempotency key: the same key never sends a second transaction. */
  key: string;
  splitId: Hex;
  /** Reference carried by Distributed; default referenceFromId(key) when the key fits 32 bytes. */
  ref?: Hex;
};

export type SettleBatchParams = {
  payees: readonly Address[];
  amounts: readonly bigint[];
  /** The batch's reference; the contract accepts it once per payer, and it is also the idempotency key. */
  ref: Hex;
};

export type EvmRail = Rail & {
  refresh(): Promise<void>;
  /** Submits a payer-signed authorization into a split; keyed by (from, authorization nonce). */
  payWithAuthorization(params: PayWithAuthorizationParams): Promise<EvmCallOutcome>;
  /** Credits a split's accrued token balance to its recipients (RevenueSplitter.distribute). */
  distribute(params: DistributeParams): Promise<EvmCallOutcome>;
  /** Pays many netted payouts from the hot wallet in one transaction (RevenueSplitter.settleBatch). */
  settleBatch(params: SettleBatchParams): Promise<EvmCallOutcome>;
};

/** Errors the splitter or the token may revert with, for decoding reverts met in gas estimation. */
const revertAbi = [...revenueSplitterAbi, ...testUsdErrorsAbi] as const;

export function createEvmRail(params: EvmRailParams): EvmRail {
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

  /** Signs a call, stores it under `key`, then broadcasts it. A revert in gas estimation sends nothing. */
  async function signAndStore(
    key: string,
    call: { to: Address; data: Hex },
  ): Promise<SendRow | { status: "failed"; revert: string | null; message: string }> {
    let request: Awaited<ReturnType<typeof params.walletClient.prepareTransactionRequest>>;
    try {
      request = await params.walletClient.prepareTransactionRequest({
        account,
        chain: params.walletClient.chain,
        to: call.to,
        data: call.data,
      });
    } catch (error) {
      // Gas estimation runs the call: a revert here means it cannot succeed now. Nothing was sent.
      const revert = revertName(error);
      return { status: "failed", revert, message: revert ?? shortMessage(error) };
    }
    const raw = await params.walletClient.signTransaction(
      request as Parameters<typeof params.walletClient.signTransaction>[0],
    );
    const row: SendRow = {
      attempt_id: key,
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

  /** The send stored under `key`, rebroadcast; or a new one made by `prepare` (run only when there is none). */
  function sendOnce(
    key: string,
    prepare: () => Promise<
      { to: Address; data: Hex } | { status: "failed"; revert: string | null; message: string }
    >,
  ): Promise<SendRow | { status: "failed"; revert: string | null; message: string }> {
    return serialized(async () => {
      const [existing] = await params.db.query<SendRow>(
        "SELECT attempt_id, tx_hash, raw_tx, nonce FROM evm_sends WHERE attempt_id = $1",
        [key],
      );
      if (existing !== undefined) {
        await broadcast(existing); // harmless if the node has it; needed if it lost it
        return existing;
      }
      const call = await prepare();
      if ("status" in call) return call;
      return signAndStore(key, call);
    });
  }

  /** The hot wallet lets the splitter take at least `amount` (approves the maximum once). Runs inside the send queue. */
  async function ensureAllowance(splitter: Address, amount: bigint): Promise<void> {
    const allowance = await params.publicClient.readContract({
      address: params.token.address,
      abi: erc20Abi,
      functionName: "allowance",
      args: [account.address, splitter],
    });
    if (allowance >= amount) return;
    const hash = await params.walletClient.writeContract({
      account,
      chain: params.walletClient.chain,
      address: params.token.address,
      abi: erc20Abi,
      functionName: "approve",
      args: [splitter, maxUint256],
    });
    const receipt = await params.publicClient.waitForTransactionReceipt({
      hash,
      timeout: params.receiptTimeoutMs,
    });
    if (receipt.status !== "success") throw new EvmRailError(`approve of the splitter reverted (${hash})`);
  }

  async function receiptOf(row: SendRow): Promise<TransactionReceipt | null> {
    return params.publicClient
      .waitForTransactionReceipt({
        hash: row.tx_hash,
        confirmations: params.confirmations,
        timeout: params.receiptTimeoutMs,
      })
      .catch(() => null);
  }

  function evidenceOf(receipt: TransactionReceipt, logIndex: number): EvmEvidence {
    return {
      rail: "evm",
      chainId,
      txHash: receipt.transactionHash,
      logIndex,
      blockNumber: receipt.blockNumber,
    };
  }

  /** Runs one splitter call once under `key` and finds the event that proves it in the receipt. */
  async function splitterCall(
    key: string,
    prepare: () => Promise<
      { to: Address; data: Hex } | { status: "failed"; revert: string | null; message: string }
    >,
    find: (receipt: TransactionReceipt) => { logIndex: number; amount: bigint } | undefined,
  ): Promise<EvmCallOutcome> {
    const sent = await sendOnce(key, prepare);
    if ("status" in sent)
      return {
        status: "failed",
        code: failureCodeOf(sent.revert),
        message: sent.message,
        revert: sent.revert,
      };
    const receipt = await receiptOf(sent);
    if (receipt === null) return { status: "in_flight", txHash: sent.tx_hash };
    if (receipt.status !== "success")
      return {
        status: "failed",
        code: "rejected",
        message: `transaction ${sent.tx_hash} reverted`,
        revert: null,
      };
    const found = find(receipt);
    if (found === undefined)
      throw new EvmRailError(`transaction ${sent.tx_hash} succeeded without the expected splitter event`);
    return { status: "succeeded", evidence: evidenceOf(receipt, found.logIndex), amount: found.amount };
  }

  function requireSplitter(): Address {
    if (params.splitter === undefined)
      throw new EvmRailError("the EVM rail has no RevenueSplitter configured");
    return params.splitter;
  }

  function isSplitterLog(address: Address): boolean {
    return address.toLowerCase() === params.splitter?.toLowerCase();
  }

  async function broadcast(row: SendRow): Promise<void> {
    try {
      await params.publicClient.sendRawTransaction({ serializedTransaction: row.raw_tx });
    } catch (error) {
      // "already known" or "nonce too low" means the node has seen these bytes (or mined them): the receipt decides.
      const text = errorText(error).toLowerCase();
      if (!text.includes("known") && !text.includes("nonce"))
        throw new EvmRailError(`broadcast of ${row.tx_hash} failed: ${shortMessage(error)}`, {
          cause: error,
        });
    }
  }

  async function outcomeOf(attempt: OutgoingAttempt, row: SendRow): Promise<AttemptOutcome> {
    const receipt = await receiptOf(row);
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
    const logIndex = provingLogIndex(attempt, receipt);
    if (logIndex === undefined)
      throw new EvmRailError(`transaction ${row.tx_hash} succeeded without the expected log`);
    state = { ...state, successes: state.successes + 1, liquidity: state.liquidity - attempt.amount };
    // gas is paid by the hot wallet in the native token, not taken from the payment
    return { status: "succeeded", evidence: evidenceOf(receipt, logIndex), fee: 0n };
  }

  /** The log that proves the attempt: the token's Transfer to the address, or the splitter's Paid into the split. */
  function provingLogIndex(attempt: OutgoingAttempt, receipt: TransactionReceipt): number | undefined {
    const destination = attempt.destination;
    if (destination.kind === "evm_split") {
      const ref = referenceFromId(attempt.id);
      return parseEventLogs({ abi: revenueSplitterAbi, eventName: "Paid", logs: receipt.logs }).find(
        (entry) =>
          isSplitterLog(entry.address) &&
          entry.args.splitId.toLowerCase() === destination.splitId.toLowerCase() &&
          entry.args.token.toLowerCase() === params.token.address.toLowerCase() &&
          entry.args.payer.toLowerCase() === account.address.toLowerCase() &&
          entry.args.amount === attempt.amount &&
          entry.args.ref === ref,
      )?.logIndex;
    }
    const to = destination.kind === "evm_address" ? destination.address : null;
    return parseEventLogs({ abi: erc20Abi, eventName: "Transfer", logs: receipt.logs }).find(
      (entry) =>
        to !== null &&
        entry.address.toLowerCase() === params.token.address.toLowerCase() &&
        entry.args.from.toLowerCase() === account.address.toLowerCase() &&
        entry.args.to.toLowerCase() === to.toLowerCase() &&
        entry.args.value === attempt.amount,
    )?.logIndex;
  }

  /** The call that pays the attempt, or null when this rail does not reach its destination. */
  function callFor(attempt: OutgoingAttempt): { to: Address; data: Hex; splitter: Address | null } | null {
    const destination = attempt.destination;
    if (destination.kind === "evm_address")
      return {
        to: params.token.address,
        data: encodeFunctionData({
          abi: erc20Abi,
          functionName: "transfer",
          args: [destination.address, attempt.amount],
        }),
        splitter: null,
      };
    if (destination.kind === "evm_split" && params.splitter !== undefined)
      return {
        to: params.splitter,
        data: encodeFunctionData({
          abi: revenueSplitterAbi,
          functionName: "pay",
          args: [destination.splitId, params.token.address, attempt.amount, referenceFromId(attempt.id)],
        }),
        splitter: params.splitter,
      };
    return null;
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
        reaches: params.splitter === undefined ? ["evm_address"] : ["evm_address", "evm_split"],
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
      const call = callFor(attempt);
      if (call === null)
        return {
          status: "failed",
          code: "unreachable_destination",
          message: `the EVM rail does not reach ${attempt.destination.kind}`,
          retryElsewhere: true,
        };
      const sent = await sendOnce(attempt.id, async () => {
        if (call.splitter !== null) await ensureAllowance(call.splitter, attempt.amount);
        return { to: call.to, data: call.data };
      });
      if ("status" in sent) {
        const code = failureCodeOf(sent.revert);
        return {
          status: "failed",
          code,
          message: `${attempt.destination.kind === "evm_split" ? "pay" : "transfer"} would revert: ${sent.message}`,
          // An unknown split is unknown to every rail; a shortfall of this wallet is not another rail's.
          retryElsewhere: code !== "unreachable_destination",
        };
      }
      return outcomeOf(attempt, sent);
    },
    payWithAuthorization(p) {
      const splitter = requireSplitter();
      const { v, yParity, r, s: sig } = parseSignature(p.signature);
      const vByte = v === undefined ? yParity + 27 : Number(v); // the contract takes v as 27 or 28
      return splitterCall(
        `auth:${p.from.toLowerCase()}:${p.splitId}:${p.ref}`,
        async () => ({
          to: splitter,
          data: encodeFunctionData({
            abi: revenueSplitterAbi,
            functionName: "payWithAuthorization",
            args: [
              p.splitId,
              params.token.address,
              p.from,
              p.amount,
              p.validAfter,
              p.validBefore,
              p.ref,
              vByte,
              r,
              sig,
            ],
          }),
        }),
        (receipt) => {
          const log = parseEventLogs({ abi: revenueSplitterAbi, eventName: "Paid", logs: receipt.logs }).find(
            (entry) =>
              isSplitterLog(entry.address) &&
              entry.args.splitId === p.splitId &&
              entry.args.payer.toLowerCase() === p.from.toLowerCase() &&
              entry.args.ref === p.ref,
          );
          return log === undefined ? undefined : { logIndex: log.logIndex, amount: log.args.amount };
        },
      );
    },
    distribute(p) {
      const splitter = requireSplitter();
      const ref = p.ref ?? referenceFromId(p.key);
      return splitterCall(
        `distribute:${p.key}`,
        async () => ({
          to: splitter,
          data: encodeFunctionData({
            abi: revenueSplitterAbi,
            functionName: "distribute",
            args: [p.splitId, params.token.address, ref],
          }),
        }),
        (receipt) => {
          const log = parseEventLogs({
            abi: revenueSplitterAbi,
            eventName: "Distributed",
            logs: receipt.logs,
          }).find((entry) => isSplitterLog(entry.address) && entry.args.splitId === p.splitId);
          return log === undefined ? undefined : { logIndex: log.logIndex, amount: log.args.amount };
        },
      );
    },
    settleBatch(p) {
      const splitter = requireSplitter();
      if (
        p.payees.length === 0 ||
        p.payees.length > settleBatchPayeesMax ||
        p.payees.length !== p.amounts.length
      )
        throw new RangeError(
          `settleBatch: 1 to ${settleBatchPayeesMax} payees with one amount each (got ${p.payees.length} and ${p.amounts.length})`,
        );
      const total = p.amounts.reduce((sum, amount) => sum + amount, 0n);
      return splitterCall(
        `settle:${p.ref}`,
        async () => {
          await ensureAllowance(splitter, total);
          return {
            to: splitter,
            data: encodeFunctionData({
              abi: revenueSplitterAbi,
              functionName: "settleBatch",
              args: [params.token.address, [...p.payees], [...p.amounts], p.ref],
            }),
          };
        },
        (receipt) => {
          const log = parseEventLogs({
            abi: revenueSplitterAbi,
            eventName: "BatchSettled",
            logs: receipt.logs,
          }).find((entry) => isSplitterLog(entry.address) && entry.args.ref === p.ref);
          return log === undefined ? undefined : { logIndex: log.logIndex, amount: log.args.total };
        },
      );
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

/** The name of the custom error a call reverted with, when the node returned its data. */
function revertName(error: unknown): string | null {
  if (!(error instanceof BaseError)) return null;
  const withData = error.walk((cause) => {
    const data = (cause as { data?: unknown }).data;
    return typeof data === "string" && data.startsWith("0x") && data.length >= 10;
  }) as { data?: Hex } | null;
  if (withData?.data === undefined) return null;
  try {
    return decodeErrorResult({ abi: revertAbi, data: withData.data }).errorName;
  } catch (decodeError) {
    if (decodeError instanceof BaseError) return null; // not one of our errors: the message says what it was
    throw decodeError;
  }
}

/** A revert in gas estimation, in the rail's closed set of failures. */
function failureCodeOf(revert: string | null): RailFailureCode {
  switch (revert) {
    case "RevenueSplitterUnknownSplit":
      return "unreachable_destination";
    case "ERC20InsufficientBalance":
    case "ERC20InsufficientAllowance":
    case null:
      return "insufficient_liquidity";
    default:
      return "rejected";
  }
}

/** Every message in the error's chain (a node's reason often sits in `details`, below a generic short message). */
function errorText(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; depth < errorChainDepthMax && current instanceof Error; depth++) {
    parts.push(current.message);
    if ("details" in current && typeof current.details === "string") parts.push(current.details);
    current = current.cause;
  }
  return parts.join(" | ");
}

const errorChainDepthMax = 8;

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
