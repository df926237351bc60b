// The EVM rail's one explicit state — its parameters, the hot wallet, the send journal and what the last
// refresh saw — and the small helpers its payouts and splitter calls share.
import {
  type Account,
  type Address,
  encodeFunctionData,
  erc20Abi,
  maxUint256,
  type TransactionReceipt,
} from "viem";
import type { Logger } from "../../core/index.ts";
import type { DepositState } from "./deposits.ts";
import { EvmRailError } from "./errors.ts";
import { receiptOf, type SendJournal, type SendRefused, sendWithinQueue } from "./send-journal.ts";
import type { EvmEvidence, EvmRailParams } from "./types.ts";

/**
 * What the snapshot is made of: the last refresh, less the payouts that succeeded since. Success counts are
 * not here: the router's learning writes them into the snapshot (core/rail.ts).
 */
export type EvmRailView = {
  available: boolean;
  /** The hot wallet's token balance. */
  liquidity: bigint;
  /** Wei per gas a transaction is expected to pay now: the latest base fee + the policy's tip (even above its cap). */
  gasPrice: bigint;
  takenAtMs: number;
};

export type EvmRailState = {
  readonly id: string;
  readonly params: EvmRailParams;
  readonly nowMs: () => number;
  readonly logger: Logger;
  /** The hot wallet. */
  readonly account: Account;
  readonly chainId: number;
  readonly journal: SendJournal;
  view: EvmRailView;
  refreshTimer: NodeJS.Timeout | undefined;
  /** Money in, when the rail receives (params.deposits). */
  deposits: DepositState | null;
  /** The sends the send-gas pass said wait too long for their owner (send-gas.ts): each is said once, until done. */
  readonly ownerWaitsSaid: Set<string>;
};

export function evidenceOf(state: EvmRailState, receipt: TransactionReceipt, logIndex: number): EvmEvidence {
  return {
    rail: "evm",
    chainId: state.chainId,
    txHash: receipt.transactionHash,
    logIndex,
    blockNumber: receipt.blockNumber,
  };
}

export function requireSplitter(state: EvmRailState): Address {
  if (state.params.splitter === undefined)
    throw new EvmRailError("the EVM rail has no RevenueSplitter configured");
  return state.params.splitter;
}

export function isSplitterLog(state: EvmRailState, address: Address): boolean {
  return address.toLowerCase() === state.params.splitter?.toLowerCase();
}

/**
 * The hot wallet lets the splitter take at least `amount` (approves the maximum once), sent through the journal
 * under `approve:<key>` (the database's nonce, the gas policy; a retry of `key` follows the same approve). Runs
 * inside the send queue. A refusal (gas above the cap, the node out of reach) is the caller's to return: nothing
 * of its own was sent.
 */
export async function ensureAllowance(
  state: EvmRailState,
  splitter: Address,
  amount: bigint,
  key: string,
): Promise<SendRefused | null> {
  const { params, account } = state;
  const allowance = await params.publicClient.readContract({
    address: params.token.address,
    abi: erc20Abi,
    functionName: "allowance",
    args: [account.address, splitter],
  });
  if (allowance >= amount) return null;
  const sent = await sendWithinQueue(state.journal, `approve:${key}`, {
    to: params.token.address,
    data: encodeFunctionData({ abi: erc20Abi, functionName: "approve", args: [splitter, maxUint256] }),
  });
  if ("status" in sent) return sent;
  // Not taken by the node now (it is broadcast again later): the payout is not signed behind it, refused as a node
  // not answering is, nothing of its own sent. Before, it threw.
  if (sent.broadcast === "not_taken")
    return {
      status: "failed",
      code: "rail_unavailable",
      revert: null,
      busy: false,
      message: `the splitter's approve (transaction ${sent.tx_hash}) was not taken; nothing was sent behind it`,
    };
  const receipt = await receiptOf(state.journal, sent);
  if (receipt === null)
    throw new EvmRailError("the splitter's approve is not mined yet", {
      details: `transaction ${sent.tx_hash}`,
    });
  if (receipt.status !== "success")
    throw new EvmRailError("approve of the splitter reverted", { details: `transaction ${sent.tx_hash}` });
  return null;
}
