// The EVM rail: stablecoin payouts from the gateway's hot wallet with viem — to an address (`transfer`) or
// into a RevenueSplitter split (`pay`, after a one-time `approve` of the splitter), in payout.ts — and the
// splitter calls the gateway submits for others (splitter-calls.ts): `payWithAuthorization` (a payer's EIP-3009
// signature), `distribute`, `settleBatch`.
//
// Never twice: every transaction goes through the send journal (send-journal.ts), which signs it, stores it
// under its key and only then broadcasts it, so a retry can only ever land the one transaction. This module
// assembles the rail over one explicit state (rail-state.ts) and keeps its snapshot fresh.
import path from "node:path";
import { BaseError, ContractFunctionRevertedError, ContractFunctionZeroDataError, erc20Abi } from "viem";
import {
  amountMax,
  assets,
  divFloor,
  type MigrationSource,
  type OutgoingAttempt,
  type PayoutBatch,
  type Rail,
  type RailEventHandler,
  type RailSnapshot,
  type RailUnavailable,
  silentLogger,
} from "../../core/index.ts";
import { authorizationRoute, submitSignedPayment } from "./authorizations.ts";
import { depositSink, depositSource } from "./deposit-source.ts";
import { receiveDeposit } from "./deposits.ts";
import { nodeUnreachable, translatingViemErrors, viemDetails } from "./errors.ts";
import { readBaseFee } from "./gas.ts";
import { ownsDestination } from "./own-addresses.ts";
import { executeAttempt } from "./payout.ts";
import type { EvmRailState } from "./rail-state.ts";
import { sendGasPass } from "./send-gas.ts";
import { createSendJournal, sendHashesOf } from "./send-journal.ts";
import { distribute, payoutBatch, payWithAuthorization, settleBatch } from "./splitter-calls.ts";
import { sweepDeposits } from "./sweeps.ts";
import type { EvmRail, EvmRailParams, NativeBalance } from "./types.ts";
import { type ChainWatcher, createChainWatcher } from "./watcher.ts";
import { authorizationBatchRefusalOf, settleAuthorizationBatch } from "./x402-batch.ts";

export const evmMigrations: MigrationSource = {
  namespace: "evm",
  directory: path.join(import.meta.dirname, "migrations"),
  tables: (name) => name.startsWith("evm_"),
};

export function createEvmRail(params: EvmRailParams): EvmRail {
  const journal = createSendJournal({
    db: params.db,
    publicClient: params.publicClient,
    walletClient: params.walletClient,
    confirmations: params.confirmations,
    receiptTimeoutMs: params.receiptTimeoutMs,
    gas: params.gas,
    replaceAfterMs: params.replaceAfterMs,
    ...(params.sendsQueuedMax === undefined ? {} : { sendsQueuedMax: params.sendsQueuedMax }),
    ...(params.logger === undefined ? {} : { logger: params.logger }),
  });
  const state: EvmRailState = {
    id: params.id ?? "evm",
    params,
    nowMs: params.nowMs ?? Date.now,
    logger: params.logger ?? silentLogger,
    account: journal.account,
    chainId: journal.chainId,
    journal,
    view: {
      available: false,
      unavailable: { code: "not_started", message: "the EVM rail is not started" },
      liquidity: 0n,
      gasPrice: 0n,
      takenAtMs: 0,
    },
    refreshTimer: undefined,
    deposits:
      params.deposits === undefined ? null : { params: params.deposits, implementation: null, domain: null },
    ownerWaitsSaid: new Set(),
  };
  let handler: RailEventHandler | null = null;
  let watcher: ChainWatcher | null = null;
  const deposits = state.deposits;
  const moneyIn: Pick<Rail, "receive" | "submitSignedPayment" | "routes"> =
    deposits === null
      ? {}
      : {
          receive: (request) => receiveDeposit(state, deposits, request),
          submitSignedPayment: (payment) => submitSignedPayment(state, deposits, payment),
          routes: [authorizationRoute(state, deposits)],
        };
  return {
    id: state.id,
    kind: "evm",
    asset: params.token.asset,
    refresh: () => refresh(state),
    async start() {
      await refresh(state);
      state.refreshTimer = setInterval(() => void refresh(state), params.snapshotRefreshMs);
      state.refreshTimer.unref();
      if (deposits !== null && watcher === null) {
        watcher = await startDepositWatcher(state, deposits.params, () => handler);
      }
    },
    async stop() {
      if (state.refreshTimer !== undefined) clearInterval(state.refreshTimer);
      await watcher?.stop();
      await journal.queue;
    },
    ...moneyIn,
    sweepDeposits: (book) =>
      deposits === null
        ? Promise.resolve({ swept: [], pending: 0, refused: null })
        : sweepDeposits(state, deposits, book),
    sendGasPass: (book) => sendGasPass(state, book),
    depositWatcher: () => watcher,
    sendHashesOf: (txHash) => sendHashesOf(params.db, journal.chainId, txHash),
    snapshot: () => snapshotOf(state),
    execute: (attempt: OutgoingAttempt) => executeAttempt(state, attempt),
    payWithAuthorization: (p) => payWithAuthorization(state, p),
    distribute: (p) => distribute(state, p),
    settleBatch: (p) => settleBatch(state, p),
    settleAuthorizationBatch: (p) => settleAuthorizationBatch(state, p),
    authorizationBatchRefusalOf: (receipt, a) => authorizationBatchRefusalOf(state, receipt, a),
    // Netting's batches go through the RevenueSplitter: a rail without one pays no batch (netting then pays through
    // another rail, or not at all), where offering it would queue payouts no batch could ever send.
    ...(params.splitter === undefined
      ? {}
      : { payoutBatch: (batch: PayoutBatch) => payoutBatch(state, batch) }),
    ownsDestination: (destination) => ownsDestination(state, destination),
    onEvent(given: RailEventHandler) {
      // Payout outcomes come back from execute; money in comes from the deposit watcher, once final.
      handler = given;
    },
    balance: () => translatingViemErrors("reading the hot wallet's balance", () => readBalance(state)),
    nativeBalance: () =>
      translatingViemErrors("reading the hot wallet's native balance", () => readNativeBalance(state)),
  };
}

/** Follows the token's transfers to deposit addresses and the invoices' authorizations (from the head at the first start). */
async function startDepositWatcher(
  state: EvmRailState,
  deposits: NonNullable<EvmRailParams["deposits"]>,
  handler: () => RailEventHandler | null,
): Promise<ChainWatcher> {
  const { params } = state;
  const startBlock =
    deposits.startBlock ??
    (await translatingViemErrors("reading the head for the deposit watcher", () =>
      params.publicClient.getBlockNumber(),
    ));
  const watcher = createChainWatcher({
    db: params.db,
    publicClient: params.publicClient,
    startBlock,
    confirmations: params.confirmations,
    pollIntervalMs: deposits.pollIntervalMs,
    blockRangeMax: depositBlockRangeMax,
    eventsPerPollMax: depositEventsPerPollMax,
    leaseMs: deposits.leaseMs ?? 10_000,
    ...(deposits.sinkAttemptsMax === undefined ? {} : { sinkAttemptsMax: deposits.sinkAttemptsMax }),
    ...(deposits.heldRetryMs === undefined ? {} : { heldRetryMs: deposits.heldRetryMs }),
    logger: state.logger.child({ part: "deposit-watcher" }),
    source: depositSource(state),
    sink: depositSink(state, handler),
  });
  // The head read above counts only at the first start: kept now, before any invoice can be made on the rail.
  await watcher.keepStartBlock();
  watcher.start();
  return watcher;
}

const depositBlockRangeMax = 1_000n;
const depositEventsPerPollMax = 1_000;

/** The hot wallet's balance of the rail's token, as the chain has it now. */
function readBalance(state: EvmRailState): Promise<bigint> {
  return state.params.publicClient.readContract({
    address: state.params.token.address,
    abi: erc20Abi,
    functionName: "balanceOf",
    args: [state.account.address],
  });
}

const weiPerGwei = 1_000_000_000n;

/**
 * The hot wallet's native token (the gas it pays), in the ledger's minor unit for it (gwei) rounded down: as the gas
 * capital is first booked (gateway/app.ts), so the wallet is never shown holding more than it does.
 */
async function readNativeBalance(state: EvmRailState): Promise<NativeBalance> {
  const wei = await state.params.publicClient.getBalance({ address: state.account.address });
  return { asset: assets.ETH, amount: divFloor(wei, weiPerGwei), wei };
}

/**
 * Reads the hot wallet's token balance and the latest block's base fee (the gas price is base fee + the policy's
 * tip); on failure the rail is unavailable until the next.
 */
async function refresh(state: EvmRailState): Promise<void> {
  const { params } = state;
  try {
    const [liquidity, baseFeeWei] = await Promise.all([readBalance(state), readBaseFee(params.publicClient)]);
    const gasPrice = baseFeeWei + params.gas.priorityFeeWei;
    state.view = {
      ...state.view,
      available: true,
      unavailable: null,
      liquidity,
      gasPrice,
      takenAtMs: state.nowMs(),
    };
  } catch (error) {
    state.view = {
      ...state.view,
      available: false,
      unavailable: refreshFailure(error),
      takenAtMs: state.nowMs(),
    };
    state.logger.warn(
      { error: viemDetails(error) },
      "snapshot refresh failed: the rail is unavailable until one succeeds",
    );
  }
}

/**
 * Why a failed refresh leaves the rail unavailable: the node not reached; the token not answering balanceOf (a token
 * address of another chain, or none at all: a configuration to fix, not a node to wait for); or another error from
 * the node, named by viem's error class alone, since viem's message may hold the RPC's URL, and a provider's URL its
 * API key (the log line has it all).
 */
function refreshFailure(error: unknown): RailUnavailable {
  if (nodeUnreachable(error))
    return {
      code: "node_unreachable",
      message: "the chain's node did not answer the rail's reads of its balance and base fee",
    };
  if (
    error instanceof BaseError &&
    error.walk(
      (cause) =>
        cause instanceof ContractFunctionZeroDataError || cause instanceof ContractFunctionRevertedError,
    )
  )
    return {
      code: "token_unreadable",
      message:
        "the configured token did not answer balanceOf for the hot wallet: no contract at its address on this chain, or one that reverts",
    };
  return {
    code: "node_unreachable",
    message: `the chain's node failed the rail's reads of its balance and base fee (${error instanceof Error ? error.name : "unknown error"})`,
  };
}

function snapshotOf(state: EvmRailState): RailSnapshot {
  const { params, view } = state;
  // gas × price (latest base fee + tip, live), priced by the router at the native token's live USD rate (the
  // snapshot's usdRates: a rail unpriced without one). Above the policy's cap the price stands as it is: the rail
  // would refuse (fee_above_max).
  const networkFee = {
    kind: "evm_gas",
    gasUnits: params.transferGasEstimate,
    gasPriceWei: view.gasPrice,
    nativeAsset: assets.ETH.code,
    weiPerMinorUnit: 10n ** BigInt(18 - assets.ETH.scale),
  } as const;
  return {
    rail: state.id,
    kind: "evm",
    asset: params.token.asset,
    chainId: state.chainId,
    available: view.available,
    ...(view.unavailable === null ? {} : { unavailable: view.unavailable }),
    reaches: params.splitter === undefined ? ["evm_address"] : ["evm_address", "evm_split"],
    amountMin: 1n,
    amountMax,
    liquidity: view.liquidity,
    feeFixed: 0n,
    feePpm: 0n,
    // What no model prices: none here (the router prices networkFee).
    networkFeeMicroUsd: 0n,
    networkFee,
    latencyMs: params.expectedLatencyMs,
    takenAtMs: view.takenAtMs,
  };
}
