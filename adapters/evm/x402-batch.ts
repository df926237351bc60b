// Many EIP-3009 TransferWithAuthorization payments to the hot wallet in one transaction: X402BatchSettler.settle
// (contracts/X402BatchSettler.sol), sent by the hot wallet through the send journal like every other call of the
// rail (one signer, the database's nonce, sent at most once per key), and its receipt read back item by item.
// Each item is bound to its invoice first, as a single transfer authorization is (authorizations.ts): the invoice
// takes the payer and the nonce, so the deposit watcher credits the invoice when it sees the token's
// AuthorizationUsed log, in whatever transaction it came.
import {
  type Address,
  concatHex,
  encodeFunctionData,
  type Hex,
  isAddressEqual,
  numberToHex,
  parseEventLogs,
  parseSignature,
  type TransactionReceipt,
  toFunctionSelector,
} from "viem";
import { feeWeiOf, isUniqueViolation, x402BatchSendKeyPrefix } from "../../core/index.ts";
import { testUsdAbi } from "./abi.generated.ts";
import { EvmRailError, translatingViemErrors } from "./errors.ts";
import type { EvmRailState } from "./rail-state.ts";
import { claim, handedToX402 } from "./send-gas.ts";
import { receiptOf, sendOnce } from "./send-journal.ts";

/** X402BatchSettler's interface (test/evm/x402-batch.test.ts compares it with the compiled contract). */
export const x402BatchSettlerAbi = [
  {
    type: "function",
    name: "settle",
    stateMutability: "nonpayable",
    inputs: [
      { name: "token", type: "address", internalType: "address" },
      { name: "to", type: "address", internalType: "address" },
      { name: "items", type: "bytes", internalType: "bytes" },
    ],
    outputs: [{ name: "settledBitmap", type: "uint256", internalType: "uint256" }],
  },
  {
    type: "event",
    name: "BatchSettled",
    anonymous: false,
    inputs: [
      { name: "token", type: "address", indexed: true, internalType: "address" },
      { name: "to", type: "address", indexed: true, internalType: "address" },
      { name: "count", type: "uint256", indexed: false, internalType: "uint256" },
      { name: "settledBitmap", type: "uint256", indexed: false, internalType: "uint256" },
    ],
  },
  {
    type: "event",
    name: "AuthorizationFailed",
    anonymous: false,
    inputs: [
      { name: "token", type: "address", indexed: true, internalType: "address" },
      { name: "from", type: "address", indexed: true, internalType: "address" },
      { name: "nonce", type: "bytes32", indexed: true, internalType: "bytes32" },
      { name: "index", type: "uint256", indexed: false, internalType: "uint256" },
      { name: "reason", type: "bytes4", indexed: false, internalType: "bytes4" },
    ],
  },
] as const;

/** The contract's ITEMS_MAX: one word of bitmap. */
export const authorizationBatchItemsMax = 256;
/** The contract's ITEM_BYTES. */
export const authorizationBatchItemBytes = 145;
/** The contract's FAILURE_GAS_RESERVE: the gas limit must leave this much above what the items use. */
const failureGasReserve = 50_000n;

const uint128Max = (1n << 128n) - 1n;
const uint48Max = (1n << 48n) - 1n;

/** One payer's signed TransferWithAuthorization to the batch's payee. */
export type TransferAuthorization = {
  from: Address;
  value: bigint;
  validAfter: bigint;
  validBefore: bigint;
  nonce: Hex;
  /** The payer's 65-byte ECDSA signature (an ERC-1271 wallet's is settled one by one instead). */
  signature: Hex;
};

/** Whether the authorization fits the contract's packed item (value ≤ 2^128 − 1, window ≤ 2^48 − 1, 65-byte signature). */
export function fitsAuthorizationBatch(a: TransferAuthorization): boolean {
  return (
    a.value <= uint128Max &&
    a.validAfter <= uint48Max &&
    a.validBefore <= uint48Max &&
    a.signature.length === 132 &&
    a.nonce.length === 66
  );
}

/** The items as X402BatchSettler.settle reads them: from | value | validAfter | validBefore | nonce | r | s | v. */
export function packAuthorizations(items: readonly TransferAuthorization[]): Hex {
  return concatHex(
    items.map((a) => {
      if (!fitsAuthorizationBatch(a))
        throw new RangeError(`authorization ${a.nonce} of ${a.from} does not fit a packed batch item`);
      const { v, yParity, r, s } = parseSignature(a.signature);
      const vByte = v === undefined ? yParity + 27 : Number(v); // the token takes v as 27 or 28
      return concatHex([
        a.from,
        numberToHex(a.value, { size: 16 }),
        numberToHex(a.validAfter, { size: 6 }),
        numberToHex(a.validBefore, { size: 6 }),
        a.nonce,
        r,
        s,
        numberToHex(vByte, { size: 1 }),
      ]);
    }),
  );
}

/** What the token's revert selector in AuthorizationFailed means (TestUSD / OpenZeppelin and USDC). */
const refusalBySelector: ReadonlyMap<string, AuthorizationBatchItemRefusal> = new Map([
  [toFunctionSelector("ERC3009InvalidSignature()"), "signature_invalid"],
  [toFunctionSelector("ECDSAInvalidSignature()"), "signature_invalid"],
  [toFunctionSelector("ECDSAInvalidSignatureS(bytes32)"), "signature_invalid"],
  [toFunctionSelector("ERC3009InvalidAuthorizationTime(uint256,uint256)"), "authorization_expired"],
  [toFunctionSelector("ERC3009UsedAuthorization(address,bytes32)"), "authorization_used"],
  [toFunctionSelector("ERC20InsufficientBalance(address,uint256,uint256)"), "payer_insufficient_funds"],
]);

export type AuthorizationBatchItemRefusal =
  | "signature_invalid"
  | "authorization_expired"
  | "authorization_used"
  | "payer_insufficient_funds"
  /** The invoice could not take this payer and nonce (another invoice holds the nonce): nothing sent for it. */
  | "authorization_mismatch"
  /** The token refused it for a reason this list does not name (`revert` carries the selector). */
  | "rejected";

export type AuthorizationBatchItemOutcome =
  | { status: "settled"; logIndex: number }
  | { status: "refused"; refusal: AuthorizationBatchItemRefusal; revert: Hex | null };

export type AuthorizationBatchParams = {
  /** The batch's idempotency key: the same key never sends a second transaction. */
  key: string;
  /** The X402BatchSettler. */
  settler: Address;
  /** Each item with the invoice (its rail reference) it pays. */
  items: readonly { reference: string; authorization: TransferAuthorization }[];
};

export type AuthorizationBatchOutcome =
  | {
      status: "mined";
      txHash: Hex;
      blockNumber: bigint;
      /** What the transaction cost the hot wallet, in wei (payout.ts feeWeiOf). */
      gasWei: bigint;
      /** In the order of `items`. */
      items: AuthorizationBatchItemOutcome[];
    }
  /** No item could be bound to its invoice (each refused authorization_mismatch): nothing was sent. */
  | { status: "none_sent"; items: AuthorizationBatchItemOutcome[] }
  /** Sent (and stored) but not mined within receiptTimeoutMs: the same key follows it. */
  | { status: "in_flight"; txHash: Hex }
  /**
   * Nothing mined: refused before sending (gas estimation, fee cap, node unreachable; txHash and gasWei null) or
   * reverted as a whole (its gas, used × effective price in wei, was paid all the same).
   */
  | { status: "failed"; message: string; revert: string | null; txHash: Hex | null; gasWei: bigint | null };

/**
 * Binds each item to its invoice, then sends X402BatchSettler.settle(token, hot wallet, items) once under `key`
 * through the journal and reads each item's outcome from the receipt. Items the invoice refuses are not sent.
 */
export function settleAuthorizationBatch(
  state: EvmRailState,
  params: AuthorizationBatchParams,
): Promise<AuthorizationBatchOutcome> {
  const count = params.items.length;
  if (count === 0 || count > authorizationBatchItemsMax)
    throw new RangeError(
      `an authorization batch has 1 to ${authorizationBatchItemsMax} items (got ${count})`,
    );
  return translatingViemErrors(`authorization batch ${params.key}`, () => settleOnce(state, params));
}

async function settleOnce(
  state: EvmRailState,
  params: AuthorizationBatchParams,
): Promise<AuthorizationBatchOutcome> {
  const bound = await Promise.all(params.items.map((item) => bindToInvoice(state, item)));
  const sentIndexes = params.items.flatMap((_, i) => (bound[i] !== null ? [i] : []));
  const outcomes: AuthorizationBatchItemOutcome[] = params.items.map(() => ({
    status: "refused",
    refusal: "authorization_mismatch",
    revert: null,
  }));
  if (sentIndexes.length === 0) return { status: "none_sent", items: outcomes };
  const sentItems = sentIndexes.map((i) => params.items[i]!.authorization);
  const token = state.params.token.address;
  const data = encodeFunctionData({
    abi: x402BatchSettlerAbi,
    functionName: "settle",
    args: [token, state.account.address, packAuthorizations(sentItems)],
  });
  // The key x402's reconciliation and the gateway's send-gas booker find the batch's send by (core/evm-sends.ts).
  const batchSendKey = `${x402BatchSendKeyPrefix}${params.key}`;
  // The estimate covers what the contract asks to be left before each item (its call's gas cap and the reserve to
  // log a refusal); the reserve once more on top, for items that cost more when mined than when estimated.
  const sent = await sendOnce(state.journal, batchSendKey, async () => ({
    to: params.settler,
    data,
    gasAboveEstimate: failureGasReserve,
  }));
  if ("status" in sent) {
    // Nothing was sent: each invoice gives its payer and nonce back, so the authorization can pay another invoice.
    for (const i of sentIndexes) await unbindFromInvoice(state, params.items[i]!, bound[i]!);
    return { status: "failed", message: sent.message, revert: sent.revert, txHash: null, gasWei: null };
  }
  // Not taken by the node now: sent all the same (broadcast again later), in flight at once.
  const receipt = sent.broadcast === "taken" ? await receiptOf(state.journal, sent) : null;
  if (receipt === null) {
    await handGasToX402(state, sent.attempt_id);
    return { status: "in_flight", txHash: sent.tx_hash };
  }
  // The transaction mined: the send's, or one a fee bump of it superseded.
  const txHash = receipt.transactionHash;
  if (receipt.status !== "success") {
    await handGasToX402(state, sent.attempt_id);
    return {
      status: "failed",
      message: `transaction ${txHash} reverted`,
      revert: null,
      txHash,
      gasWei: feeWeiOf(receipt),
    };
  }
  const logs = parseEventLogs({ abi: x402BatchSettlerAbi, logs: receipt.logs }).filter(
    (log) => log.address.toLowerCase() === params.settler.toLowerCase(),
  );
  const summary = logs.find((log) => log.eventName === "BatchSettled");
  if (
    summary === undefined ||
    summary.eventName !== "BatchSettled" ||
    summary.args.count !== BigInt(sentItems.length)
  )
    throw new EvmRailError("an authorization batch was mined without its BatchSettled event", {
      details: `transaction ${txHash}`,
    });
  const failures = new Map<number, Hex>();
  for (const log of logs)
    if (log.eventName === "AuthorizationFailed") failures.set(Number(log.args.index), log.args.reason);
  await Promise.all(
    sentIndexes.map(async (itemIndex, batchIndex) => {
      const settled = ((summary.args.settledBitmap >> BigInt(batchIndex)) & 1n) === 1n;
      if (settled) {
        outcomes[itemIndex] = { status: "settled", logIndex: summary.logIndex };
        return;
      }
      const revert = failures.get(batchIndex) ?? null;
      const { authorization } = params.items[itemIndex]!;
      const refusal = await refusalOf(state, revert, authorization, receipt.blockNumber);
      outcomes[itemIndex] = { status: "refused", refusal, revert };
    }),
  );
  await handGasToX402(state, sent.attempt_id);
  return {
    status: "mined",
    txHash,
    blockNumber: receipt.blockNumber,
    gasWei: feeWeiOf(receipt),
    items: outcomes,
  };
}

/**
 * Why the token refused an item, from the selector its AuthorizationFailed carries (`revert`; null: none). Refused for
 * a reason the selector does not name, with its nonce spent at the batch's block: `authorization_used` (the batch did
 * not spend it: the item failed). A token that refuses with a reason string, as USDC does ("FiatTokenV2: authorization
 * is used or canceled"), leaves AuthorizationFailed only `Error(string)`'s selector. The spend was a copy of the
 * authorization someone mined first, perhaps (x402 looks for one: gateway/x402/spends.ts), or the payer's own use of
 * the nonce elsewhere. A read that fails leaves the item `rejected`, which x402 searches for a copy of too.
 */
async function refusalOf(
  state: EvmRailState,
  revert: Hex | null,
  a: Pick<TransferAuthorization, "from" | "nonce">,
  blockNumber: bigint,
): Promise<AuthorizationBatchItemRefusal> {
  const named = revert === null ? undefined : refusalBySelector.get(revert);
  if (named !== undefined) return named;
  const used = await state.params.publicClient
    .readContract({
      address: state.params.token.address,
      abi: testUsdAbi,
      functionName: "authorizationState",
      args: [a.from, a.nonce],
      blockNumber,
    })
    .catch(() => false);
  return used ? "authorization_used" : "rejected";
}

/**
 * Why the mined batch `receipt` (an X402BatchSettler.settle of this rail's token) did not settle the authorization of
 * `from` and `nonce`, read as settleAuthorizationBatch reads it: the refusal its AuthorizationFailed names (found by
 * the payer and nonce it is indexed by), or `authorization_mismatch` when the batch did not carry it (its invoice
 * refused it: nothing was sent for it, as settleAuthorizationBatch answers it). For x402's reconciliation, which
 * concludes the items of a batch its settler did not (gateway/x402/reconcile.ts): read otherwise, one item was
 * recorded one way by the settler and another by reconciliation. Null when the batch settled it, or the receipt is
 * not a successful batch of this token.
 */
export async function authorizationBatchRefusalOf(
  state: EvmRailState,
  receipt: Pick<TransactionReceipt, "status" | "to" | "logs" | "blockNumber">,
  a: Pick<TransferAuthorization, "from" | "nonce">,
): Promise<AuthorizationBatchItemRefusal | null> {
  const settler = receipt.to;
  if (receipt.status !== "success" || settler === null) return null;
  const token = state.params.token.address;
  const logs = parseEventLogs({ abi: x402BatchSettlerAbi, logs: receipt.logs }).filter(
    (log) => isAddressEqual(log.address, settler) && isAddressEqual(log.args.token, token),
  );
  if (!logs.some((log) => log.eventName === "BatchSettled")) return null;
  const failed = logs.find(
    (log) =>
      log.eventName === "AuthorizationFailed" &&
      isAddressEqual(log.args.from, a.from) &&
      log.args.nonce.toLowerCase() === a.nonce.toLowerCase(),
  );
  if (failed?.eventName === "AuthorizationFailed")
    return refusalOf(state, failed.args.reason, a, receipt.blockNumber);
  const spent = parseEventLogs({ abi: testUsdAbi, eventName: "AuthorizationUsed", logs: receipt.logs }).some(
    (log) =>
      isAddressEqual(log.address, token) &&
      isAddressEqual(log.args.authorizer, a.from) &&
      log.args.nonce.toLowerCase() === a.nonce.toLowerCase(),
  );
  return spent ? null : "authorization_mismatch";
}

/**
 * Before x402 hears of a batch's transaction (it then books the gas, or records the transaction for its
 * reconciliation to book), the send's gas is claimed for x402 (send-gas.ts): the send-gas pass, which books a batch
 * x402 never heard of (this rail threw: no BatchSettled; a crash before the hand-over), then leaves it to x402. Claimed
 * by the pass first (it stops waiting for this hand-over receiptTimeoutMs and a margin after the send was signed),
 * nothing is handed over: this throws, x402 answers "unknown" and books nothing here. Either way one of them books
 * it: the pass's booker leaves to x402 a batch whose rows x402 marked with its key before sending (x402's
 * reconciliation adopts them from this send and books it), and books the rest.
 */
async function handGasToX402(state: EvmRailState, key: string): Promise<void> {
  const owner = await claim(state, key, handedToX402);
  if (owner !== handedToX402)
    throw new EvmRailError(`the gas of authorization batch ${key} is the send-gas pass's (${owner})`);
}

/** An invoice's payer and nonce before an item was bound to it. */
type Binding = { auth_from: string | null; auth_nonce: string; auth_to: string | null };

/**
 * The invoice takes this payer and nonce, as a single transfer authorization's does (authorizations.ts): once, and
 * only when no other invoice holds the same payer and nonce. What it held before when it holds them now (a retry of
 * the same batch too); null when it does not.
 */
async function bindToInvoice(
  state: EvmRailState,
  item: AuthorizationBatchParams["items"][number],
): Promise<Binding | null> {
  const a = item.authorization;
  let rows: Binding[];
  try {
    rows = await state.params.db.query<Binding>(
      `WITH before AS (
       SELECT auth_from, auth_nonce, auth_to FROM evm_deposits WHERE chain_id = $1 AND token = $2 AND reference = $3
     )
     UPDATE evm_deposits SET auth_from = $4, auth_nonce = $5, auth_to = $7
     WHERE chain_id = $1 AND token = $2 AND reference = $3 AND amount = $6
       AND ((auth_from IS NULL AND NOT EXISTS (
              SELECT 1 FROM evm_deposits other
              WHERE other.chain_id = $1 AND other.token = $2 AND other.auth_nonce = $5 AND other.auth_from = $4
                AND other.reference <> $3))
         OR (auth_from = $4 AND auth_nonce = $5))
     RETURNING (SELECT auth_from FROM before) AS auth_from, (SELECT auth_nonce FROM before) AS auth_nonce,
       (SELECT auth_to FROM before) AS auth_to`,
      [
        state.chainId,
        state.params.token.address.toLowerCase(),
        item.reference,
        a.from.toLowerCase(),
        a.nonce.toLowerCase(),
        a.value,
        // Its `to`: the hot wallet the batch pays (evm migration 0023).
        state.account.address.toLowerCase(),
      ],
    );
  } catch (error) {
    // Another invoice bound this (payer, nonce) between the NOT EXISTS and the write (evm_deposits_nonce): this
    // item is refused alone, as a mismatch; its neighbours in the batch are sent.
    if (isUniqueViolation(error, "evm_deposits_nonce")) return null;
    throw error;
  }
  return rows[0] ?? null;
}

/** Gives the invoice back what it held before `bindToInvoice`, while no transaction of it was sent. */
async function unbindFromInvoice(
  state: EvmRailState,
  item: AuthorizationBatchParams["items"][number],
  before: Binding,
): Promise<void> {
  await state.params.db.query(
    `UPDATE evm_deposits SET auth_from = $6, auth_nonce = $7, auth_to = $8
     WHERE chain_id = $1 AND token = $2 AND reference = $3 AND auth_from = $4 AND auth_nonce = $5
       AND auth_tx_hash IS NULL`,
    [
      state.chainId,
      state.params.token.address.toLowerCase(),
      item.reference,
      item.authorization.from.toLowerCase(),
      item.authorization.nonce.toLowerCase(),
      before.auth_from,
      before.auth_nonce,
      before.auth_to,
    ],
  );
}
