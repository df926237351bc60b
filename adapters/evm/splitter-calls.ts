// The RevenueSplitter calls the gateway submits for others — payWithAuthorization (a payer's EIP-3009
// signature), distribute, settleBatch — each sent once under its own idempotency key through the send journal
// (prefixed: `auth:`, `distribute:`, `settle:`), and the event in the receipt that proves it.
import { encodeFunctionData, isHex, parseEventLogs, parseSignature, type TransactionReceipt } from "viem";
import { type PayoutBatch, type PayoutBatchOutcome, SwitchyardError } from "../../core/index.ts";
import { revenueSplitterAbi } from "./abi.generated.ts";
import { refusedPayouts } from "./batch-refusals.ts";
import { EvmRailError, translatingViemErrors } from "./errors.ts";
import { gasPaid } from "./payout.ts";
import {
  type EvmRailState,
  ensureAllowance,
  evidenceOf,
  isSplitterLog,
  requireSplitter,
} from "./rail-state.ts";
import {
  type Call,
  chainPartOfKey,
  receiptOf,
  type SendOptions,
  type SendRefused,
  sendOnce,
} from "./send-journal.ts";
import { referenceFromId, settleBatchPayeesMax } from "./splits.ts";
import type {
  DistributeParams,
  EvmCallOutcome,
  PayWithAuthorizationParams,
  SettleBatchParams,
} from "./types.ts";

type FindProof = (receipt: TransactionReceipt) => { logIndex: number; amount: bigint } | undefined;

/** Runs one splitter call once under `key` and finds the event that proves it in the receipt. */
function splitterCall(
  state: EvmRailState,
  key: string,
  prepare: () => Promise<Call | SendRefused>,
  find: FindProof,
  options: SendOptions = {},
): Promise<EvmCallOutcome> {
  return translatingViemErrors(`splitter call ${key}`, () => callOnce(state, key, prepare, find, options));
}

async function callOnce(
  state: EvmRailState,
  key: string,
  prepare: () => Promise<Call | SendRefused>,
  find: FindProof,
  options: SendOptions,
): Promise<EvmCallOutcome> {
  const sent = await sendOnce(state.journal, key, prepare, options);
  if ("status" in sent)
    return {
      status: "failed",
      code: sent.code,
      message: sent.message,
      revert: sent.revert,
    };
  // Not taken by the node now: sent all the same (broadcast again later), in flight at once.
  const receipt = sent.broadcast === "taken" ? await receiptOf(state.journal, sent) : null;
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
    throw new EvmRailError("a splitter call succeeded without the expected event", {
      details: `transaction ${sent.tx_hash}`,
    });
  return {
    status: "succeeded",
    evidence: evidenceOf(state, receipt, found.logIndex),
    amount: found.amount,
    gas: gasPaid(receipt),
  };
}

export async function payWithAuthorization(
  state: EvmRailState,
  p: PayWithAuthorizationParams,
): Promise<EvmCallOutcome> {
  const splitter = requireSplitter(state);
  const { v, yParity, r, s: sig } = parseSignature(p.signature);
  const vByte = v === undefined ? yParity + 27 : Number(v); // the contract takes v as 27 or 28
  const chainPart = await chainPartOfKey(state.journal, `auth:${p.from.toLowerCase()}:${p.splitId}:${p.ref}`);
  return await splitterCall(
    state,
    `auth:${chainPart}${p.from.toLowerCase()}:${p.splitId}:${p.ref}`,
    async () => ({
      to: splitter,
      data: encodeFunctionData({
        abi: revenueSplitterAbi,
        functionName: "payWithAuthorization",
        args: [
          p.splitId,
          state.params.token.address,
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
          isSplitterLog(state, entry.address) &&
          entry.args.splitId === p.splitId &&
          entry.args.payer.toLowerCase() === p.from.toLowerCase() &&
          entry.args.ref === p.ref,
      );
      return log === undefined ? undefined : { logIndex: log.logIndex, amount: log.args.amount };
    },
  );
}

export function distribute(state: EvmRailState, p: DistributeParams): Promise<EvmCallOutcome> {
  const splitter = requireSplitter(state);
  const ref = p.ref ?? referenceFromId(p.key);
  return splitterCall(
    state,
    `distribute:${p.key}`,
    async () => ({
      to: splitter,
      data: encodeFunctionData({
        abi: revenueSplitterAbi,
        functionName: "distribute",
        args: [p.splitId, state.params.token.address, ref],
      }),
    }),
    (receipt) => {
      const log = parseEventLogs({
        abi: revenueSplitterAbi,
        eventName: "Distributed",
        logs: receipt.logs,
      }).find((entry) => isSplitterLog(state, entry.address) && entry.args.splitId === p.splitId);
      return log === undefined ? undefined : { logIndex: log.logIndex, amount: log.args.amount };
    },
  );
}

export function settleBatch(state: EvmRailState, p: SettleBatchParams): Promise<EvmCallOutcome> {
  const splitter = requireSplitter(state);
  if (p.payees.length === 0 || p.payees.length > settleBatchPayeesMax || p.payees.length !== p.amounts.length)
    throw new RangeError(
      `settleBatch: 1 to ${settleBatchPayeesMax} payees with one amount each (got ${p.payees.length} and ${p.amounts.length})`,
    );
  const total = p.amounts.reduce((sum, amount) => sum + amount, 0n);
  return splitterCall(
    state,
    `settle:${p.ref}`,
    async () => {
      const refused = await ensureAllowance(state, splitter, total, `settle:${p.ref}`);
      if (refused !== null) return refused;
      return {
        to: splitter,
        data: encodeFunctionData({
          abi: revenueSplitterAbi,
          functionName: "settleBatch",
          args: [state.params.token.address, [...p.payees], [...p.amounts], p.ref],
        }),
      };
    },
    (receipt) => {
      const log = parseEventLogs({
        abi: revenueSplitterAbi,
        eventName: "BatchSettled",
        logs: receipt.logs,
      }).find((entry) => isSplitterLog(state, entry.address) && entry.args.ref === p.ref);
      return log === undefined ? undefined : { logIndex: log.logIndex, amount: log.args.total };
    },
    // Netting puts a refused batch's payouts back in the queue: asked again (a flush whose lease ran out), the
    // batch must stay refused rather than be sent beside the batch that pays them now.
    { refusalIsFinal: true },
  );
}

/**
 * The Rail contract's payoutBatch, the shape netting pays through: many payees in one settleBatch transaction. The
 * fee is 0 in the token: gas is paid in the chain's coin, not out of what was paid (the native fee). A batch that reverts says which
 * payees it reverts for, when the chain can tell (batch-refusals.ts): the others can then be paid without them.
 */
export async function payoutBatch(state: EvmRailState, batch: PayoutBatch): Promise<PayoutBatchOutcome> {
  const payees = batch.payouts.map(({ destination }) => {
    if (destination.kind !== "evm_address")
      throw new SwitchyardError("an EVM batch pays EVM addresses only", { details: destination.kind });
    return destination.address;
  });
  if (!isHex(batch.reference))
    throw new SwitchyardError("an EVM batch's reference is a hex string", { details: batch.reference });
  const ref = batch.reference;
  const amounts = batch.payouts.map((payout) => payout.amount);
  const outcome = await settleBatch(state, { payees, amounts, ref });
  switch (outcome.status) {
    case "succeeded":
      return { status: "succeeded", evidence: outcome.evidence, fee: 0n, nativeFee: outcome.gas };
    case "in_flight":
      return { status: "in_flight", reference: outcome.txHash };
    case "failed": {
      const refused = await translatingViemErrors(`the refusals of batch ${ref}`, () =>
        refusedPayouts(state, {
          splitter: requireSplitter(state),
          reference: ref,
          payees,
          amounts,
          code: outcome.code,
        }),
      );
      return {
        status: "failed",
        code: outcome.code,
        message: outcome.message,
        ...(refused.length > 0 ? { refused } : {}),
      };
    }
  }
}
