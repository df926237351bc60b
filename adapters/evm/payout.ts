// A payout attempt on the EVM rail: a token transfer to an address, or a RevenueSplitter `pay` into a split
// (after a one-time `approve`), sent once per attempt id through the send journal, and the log in its receipt
// that proves it.
import {
  type Address,
  encodeFunctionData,
  erc20Abi,
  type Hex,
  isAddress,
  parseEventLogs,
  type TransactionReceipt,
} from "viem";
import {
  type AttemptOutcome,
  assets,
  divCeil,
  type FeePaid,
  feeWeiOf,
  l1FeeWeiOf,
  type OutgoingAttempt,
} from "../../core/index.ts";
import { revenueSplitterAbi } from "./abi.generated.ts";
import { EvmRailError, translatingViemErrors, viemDetails } from "./errors.ts";
import { type EvmRailState, ensureAllowance, evidenceOf, isSplitterLog } from "./rail-state.ts";
import {
  confirmedNonceOf,
  receiptOf,
  type SendFate,
  type SendRow,
  sendFateOf,
  sendOnce,
} from "./send-journal.ts";
import { referenceFromId } from "./splits.ts";

/** Pays the attempt once (a repeat follows the transaction already sent) and reports how it ended. */
export function executeAttempt(state: EvmRailState, attempt: OutgoingAttempt): Promise<AttemptOutcome> {
  return translatingViemErrors(`EVM payout ${attempt.id}`, () => payOnce(state, attempt));
}

async function payOnce(state: EvmRailState, attempt: OutgoingAttempt): Promise<AttemptOutcome> {
  // The API refuses such an address; one stored before it did (a payment, a payee) ends failed here, nothing sent,
  // where encoding the call threw, answered 500 and left the payment processing with its funds held for good.
  if (attempt.destination.kind === "evm_address" && !isAddress(attempt.destination.address, { strict: true }))
    return {
      status: "failed",
      code: "unreachable_destination",
      message: `${attempt.destination.address} is not an EVM address (or its EIP-55 checksum is wrong)`,
      retryElsewhere: false,
      final: true,
    };
  const call = callFor(state, attempt);
  if (call === null)
    return {
      status: "failed",
      code: "unreachable_destination",
      message:
        attempt.destination.kind === "evm_address"
          ? `the EVM rail on chain ${state.chainId} does not reach chain ${attempt.destination.chainId}`
          : `the EVM rail does not reach ${attempt.destination.kind}`,
      retryElsewhere: true,
      final: true,
    };
  const sent = await sendOnce(
    state.journal,
    attempt.id,
    async () => {
      if (call.splitter !== null) {
        const refused = await ensureAllowance(state, call.splitter, attempt.amount, attempt.id);
        if (refused !== null) return refused;
      }
      return { to: call.to, data: call.data };
    },
    // Told "refused", a payment moves on to another attempt (a refund ends failed): the attempt never sends later,
    // even when refused because the node was out of reach. Queued in its tenant's part of the wallet's queue.
    { refusalIsFinal: true, share: attempt.tenantId },
  );
  if ("status" in sent) {
    const code = sent.code;
    return {
      status: "failed",
      code,
      message: sent.busy
        ? sent.message
        : code === "rail_unavailable"
          ? `the node did not answer: ${sent.message}`
          : code === "fee_above_max"
            ? `gas on chain ${state.chainId}: ${sent.message}`
            : `${attempt.destination.kind === "evm_split" ? "pay" : "transfer"} would revert: ${sent.message}`,
      // Nothing was sent, and none of it is another rail's concern: a shortfall of this wallet, gas above this
      // chain's cap, a split unknown on this chain (a split lives on one chain; another rail's may have it).
      retryElsewhere: true,
      final: true, // kept in evm_send_refusals
      ...(sent.busy ? { busy: true as const } : {}),
    };
  }
  // Signed and journaled, the node not taking it now (a nonce gap, a node out of reach): it is sent, broadcast again
  // by the keeper and by recovery, and in flight at once, no receipt awaited. Before, the payout threw (a 500 the
  // client might retry under a new key, paying twice).
  if (sent.broadcast === "not_taken") return { status: "in_flight", reference: sent.tx_hash };
  return outcomeOf(state, attempt, sent);
}

async function outcomeOf(
  state: EvmRailState,
  attempt: OutgoingAttempt,
  row: SendRow,
): Promise<AttemptOutcome> {
  let receipt = await receiptOf(state.journal, row);
  if (receipt === null) {
    // None of its transactions mined, and the wallet's nonce past it at a final depth (taken by a transaction sent
    // outside the journal): it never will be. Before, every recovery pass waited for it again, its reservation held.
    const fate = await fateOrPending(state, row);
    if (fate.status === "never_mined")
      return {
        status: "failed",
        code: "rejected",
        message: `transaction ${row.tx_hash} was never mined: the wallet's nonce ${row.nonce} went to another transaction`,
        retryElsewhere: true,
        final: true, // nothing of it can be mined any more
      };
    if (fate.status === "pending") return { status: "in_flight", reference: row.tx_hash };
    receipt = fate.receipt; // mined since the wait gave up
  }
  if (receipt.status !== "success") {
    return {
      status: "failed",
      code: "rejected",
      message: `transaction ${row.tx_hash} reverted`,
      retryElsewhere: true,
      final: true, // mined
    };
  }
  const logIndex = provingLogIndex(state, attempt, receipt);
  if (logIndex === undefined)
    throw new EvmRailError("a payout succeeded without the expected log", {
      details: `transaction ${row.tx_hash}`,
    });
  // Gas is paid by the hot wallet in the native token, not in the token paid out: a fee of its own. A payout signed
  // before a key rotation (broadcast again as it is, storedSend) was paid for by the retired wallet: its gas is booked
  // all the same (it was spent, on the rail's behalf), and said, since the new hot wallet's balance does not show it;
  // nor does that balance show its amount, so the liquidity the router reads is left as it is.
  if (receipt.from.toLowerCase() === state.account.address.toLowerCase())
    state.view = { ...state.view, liquidity: state.view.liquidity - attempt.amount };
  else
    state.logger.info(
      {
        attempt: attempt.id,
        txHash: receipt.transactionHash,
        paidBy: receipt.from,
        hotWallet: state.account.address,
      },
      "payout mined from a wallet the hot wallet's key rotated from: its gas, booked, was paid by that wallet",
    );
  return {
    status: "succeeded",
    evidence: evidenceOf(state, receipt, logIndex),
    fee: 0n,
    nativeFee: gasPaid(receipt),
  };
}

/**
 * sendFateOf for a send whose receipt did not come in time; pending when the node cannot say now (a read of an older
 * block's state it no longer keeps, a transport error): the send is then in flight, as it was before the question.
 */
async function fateOrPending(state: EvmRailState, row: SendRow): Promise<SendFate> {
  try {
    return await sendFateOf(state.journal, row, await confirmedNonceOf(state.journal));
  } catch (error) {
    state.logger.warn(
      { error: viemDetails(error), txHash: row.tx_hash },
      "whether a payout can still be mined is unknown now",
    );
    return { status: "pending" };
  }
}

const weiPerGwei = 1_000_000_000n;

/**
 * The gas a receipt shows was paid: gas used × effective gas price, in wei, booked in the native asset's
 * minor unit (gwei) rounded up — the ledger never shows the wallet holding more than it does.
 *
 * The bound this leaves: ETH's minor unit in the ledger is the gwei, so a transaction's gas is booked up to
 * 1 gwei − 1 wei above what it cost (`detail.wei` keeps the exact cost). With every transaction of the hot wallet
 * booked once (the callers, and send-gas.ts for the rest), the rail's ETH clearing account is at most n gwei below
 * the wallet's real balance after n transactions, never above it; matching the chain to the wei would need ETH in
 * wei in the ledger, which its precision does not have.
 */
export function gasPaid(receipt: Pick<TransactionReceipt, "gasUsed" | "effectiveGasPrice">): FeePaid {
  const wei = feeWeiOf(receipt);
  const l1Fee = l1FeeWeiOf(receipt);
  return {
    asset: assets.ETH,
    amount: divCeil(wei, weiPerGwei),
    detail: {
      gasUsed: receipt.gasUsed.toString(),
      effectiveGasPrice: receipt.effectiveGasPrice.toString(),
      ...(l1Fee === 0n ? {} : { l1Fee: l1Fee.toString() }),
      wei: wei.toString(),
    },
  };
}

/**
 * The log that proves the attempt: the token's Transfer to the address, or the splitter's Paid into the split, from the
 * wallet that signed the transaction (`receipt.from`, the chain's word for a mined one). The receipt is of one of the
 * transactions journaled under the attempt's id (receiptOf), so its signer is the hot wallet now or one its key rotated
 * from (a send signed before is broadcast again as it is, never signed again: storedSend); the log must still be the
 * attempt's own (its token, destination and amount; its split and reference). Before, only the hot wallet's own log
 * proved it: a payout signed before a rotation and mined after threw on every recovery pass, its reservation held.
 */
function provingLogIndex(
  state: EvmRailState,
  attempt: OutgoingAttempt,
  receipt: TransactionReceipt,
): number | undefined {
  const { token } = state.params;
  const signer = receipt.from.toLowerCase();
  const destination = attempt.destination;
  if (destination.kind === "evm_split") {
    const ref = referenceFromId(attempt.id);
    return parseEventLogs({ abi: revenueSplitterAbi, eventName: "Paid", logs: receipt.logs }).find(
      (entry) =>
        isSplitterLog(state, entry.address) &&
        entry.args.splitId.toLowerCase() === destination.splitId.toLowerCase() &&
        entry.args.token.toLowerCase() === token.address.toLowerCase() &&
        entry.args.payer.toLowerCase() === signer &&
        entry.args.amount === attempt.amount &&
        entry.args.ref === ref,
    )?.logIndex;
  }
  const to = destination.kind === "evm_address" ? destination.address : null;
  return parseEventLogs({ abi: erc20Abi, eventName: "Transfer", logs: receipt.logs }).find(
    (entry) =>
      to !== null &&
      entry.address.toLowerCase() === token.address.toLowerCase() &&
      entry.args.from.toLowerCase() === signer &&
      entry.args.to.toLowerCase() === to.toLowerCase() &&
      entry.args.value === attempt.amount,
  )?.logIndex;
}

/** The call that pays the attempt, or null when this rail does not reach its destination. */
function callFor(
  state: EvmRailState,
  attempt: OutgoingAttempt,
): { to: Address; data: Hex; splitter: Address | null } | null {
  const { token, splitter } = state.params;
  const destination = attempt.destination;
  // An address on another chain is out of this rail's reach, whatever routed it here: paid on this chain, the
  // money would reach whoever holds the address here (a contract on one chain only: nobody).
  if (
    destination.kind === "evm_address" &&
    destination.chainId !== undefined &&
    destination.chainId !== state.chainId
  )
    return null;
  if (destination.kind === "evm_address")
    return {
      to: token.address,
      data: encodeFunctionData({
        abi: erc20Abi,
        functionName: "transfer",
        args: [destination.address, attempt.amount],
      }),
      splitter: null,
    };
  if (destination.kind === "evm_split" && splitter !== undefined)
    return {
      to: splitter,
      data: encodeFunctionData({
        abi: revenueSplitterAbi,
        functionName: "pay",
        args: [destination.splitId, token.address, attempt.amount, referenceFromId(attempt.id)],
      }),
      splitter,
    };
  return null;
}
