// The EVM rail's one explicit state — its parameters, the hot wallet, the send journal and what the last
// refresh saw — and the small helpers its payouts and splitter calls share.
import {
  type Account,
  type Address,
  encodeFunctionData,
  erc20Abi,
  type Hex,
  isAddressEqual,
  maxUint256,
  parseTransaction,
  type TransactionReceipt,
} from "viem";
import type { Logger, RailUnavailable } from "../../core/index.ts";
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
  /** Why `available` is false (core/rail.ts), null while it is true: never refreshed, or the last refresh failed. */
  unavailable: RailUnavailable | null;
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
 * under `approve:<key>` (the database's nonce, the gas policy; a retry of `key` follows the same approve, and so does
 * any key while one is open: one approve at a time, whoever signed it). Runs inside the send queue. A refusal (gas
 * above the cap, the node out of reach, another's approve not taken or not mined yet) is the caller's to return:
 * nothing of its own was sent.
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
  const call = {
    to: params.token.address,
    data: encodeFunctionData({ abi: erc20Abi, functionName: "approve", args: [splitter, maxUint256] }),
  };
  // An approve of the same still open (another payout's or batch's, not mined yet) is followed, broadcast again, not
  // signed a second time. Before, each attempt and each netting flush behind one not taken or pending signed another
  // max approve, at the next nonces, each its own gas.
  const open = await openApproveOf(state, call);
  const sent = await sendWithinQueue(state.journal, `approve:${open ?? key}`, call);
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
  // Another's approve not mined in time: this payout or batch has sent nothing, and is refused as a node not answering.
  if (receipt === null && open !== null && open !== key)
    return {
      status: "failed",
      code: "rail_unavailable",
      revert: null,
      busy: false,
      message: `the splitter's approve (transaction ${sent.tx_hash}) is not mined yet; nothing was sent behind it`,
    };
  if (receipt === null)
    throw new EvmRailError("the splitter's approve is not mined yet", {
      details: `transaction ${sent.tx_hash}`,
    });
  if (receipt.status !== "success")
    throw new EvmRailError("approve of the splitter reverted", { details: `transaction ${sent.tx_hash}` });
  return null;
}

/**
 * The key (after `approve:`) of the wallet's approve with these very bytes (token, spender, the maximum) whose nonce
 * the chain has not passed and whose gas is not done: still to be mined. Null when there is none.
 */
async function openApproveOf(state: EvmRailState, call: { to: Address; data: Hex }): Promise<string | null> {
  const { journal } = state;
  const minedCount = await journal.publicClient.getTransactionCount({
    address: journal.account.address,
    blockTag: "latest",
  });
  const open = await journal.db.query<{ attempt_id: string; raw_tx: Hex }>(
    `SELECT attempt_id, raw_tx FROM evm_sends
      WHERE chain_id = $1 AND wallet = $2 AND attempt_id LIKE 'approve:%' AND NOT gas_done AND nonce >= $3
      ORDER BY nonce`,
    [journal.chainId, journal.account.address.toLowerCase(), minedCount],
  );
  for (const { attempt_id, raw_tx } of open) {
    const signed = parseTransaction(raw_tx);
    if (
      signed.to !== undefined &&
      signed.to !== null &&
      isAddressEqual(signed.to, call.to) &&
      signed.data?.toLowerCase() === call.data.toLowerCase()
    )
      return attempt_id.slice("approve:".length);
  }
  return null;
}
