// What the chain says of a sent x402 authorization: whether a mined transaction of ours spent it (reconciliation), and
// whether another's transaction spent it with these very terms (the single and batch settlers, reconciliation) — a
// copy of the payer's signed transfer, submitted first by someone who saw it, which makes ours revert while the money
// still comes to the hot wallet and the deposit watcher credits the invoice from that copy; whether an authorization
// ours did not spend may still pay (unspentByOurs); and which of the two did, for what is answered after the settler
// (the facilitator's retried settle, the paywall's owed requests: spenderOf).
import {
  BaseError,
  type Hex,
  isAddressEqual,
  keccak256,
  pad,
  parseAbiItem,
  type TransactionReceipt,
  TransactionReceiptNotFoundError,
  toBytes,
} from "viem";
import { type Logger, nodeRefused, readInHalves } from "../../core/index.ts";
import { nonceUsed, type X402Chain } from "./chains.ts";
import type { UnsentInvoice } from "./store.ts";
import { type Eip3009Authorization, validBeforeSkewS, validForMaxS } from "./verify.ts";

const authorizationUsedTopic = keccak256(toBytes("AuthorizationUsed(address,bytes32)"));

export type MinedReceipt = Pick<
  TransactionReceipt,
  "status" | "logs" | "from" | "to" | "gasUsed" | "effectiveGasPrice" | "blockNumber"
>;

/** Whether the mined `receipt` spent the authorization: successful, with the token's AuthorizationUsed log for it. */
export function spentIn(
  chain: X402Chain,
  receipt: Pick<MinedReceipt, "status" | "logs">,
  a: Pick<Eip3009Authorization, "from" | "nonce">,
): boolean {
  if (receipt.status !== "success") return false;
  const authorizer = pad(a.from.toLowerCase() as Hex).toLowerCase();
  return receipt.logs.some(
    (log) =>
      isAddressEqual(log.address, chain.token) &&
      log.topics[0] === authorizationUsedTopic &&
      log.topics[1]?.toLowerCase() === authorizer &&
      log.topics[2]?.toLowerCase() === a.nonce.toLowerCase(),
  );
}

const transferTopic = keccak256(toBytes("Transfer(address,address,uint256)"));
const authorizationUsedEvent = parseAbiItem(
  "event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce)",
);
const authorizationCanceledEvent = parseAbiItem(
  "event AuthorizationCanceled(address indexed authorizer, bytes32 indexed nonce)",
);

/** How far back from a block spentByAnother looks for another's spend of an authorization. */
const anotherSpendLookbackBlocks = 1_000n;
/** The most reads of logs one search makes (a node that caps a call at 32 blocks or more needs fewer): then unknown. */
const anotherSpendReadsMax = 64;

/**
 * Whether the successful `receipt` spent this very authorization: the token's AuthorizationUsed of (payer, nonce), and
 * right after it (the next log: an EIP-3009 token emits the authorization's Transfer from its `_transfer` just after)
 * the token's Transfer of the value from the payer to the recipient. The pair, never any Transfer of the payer's in the
 * transaction: one transaction may carry another authorization of the payer's of the same value (another nonce) beside
 * a use of this nonce that pays elsewhere. The deposit watcher pairs them the same way (adapters/evm deposit-source.ts
 * authorizedTransfer) when it credits the invoice bound to the nonce.
 */
export function paidIn(
  chain: X402Chain,
  receipt: Pick<MinedReceipt, "status" | "logs">,
  a: Pick<Eip3009Authorization, "from" | "to" | "value" | "nonce">,
): boolean {
  if (receipt.status !== "success") return false;
  const authorizer = pad(a.from.toLowerCase() as Hex).toLowerCase();
  const to = pad(a.to.toLowerCase() as Hex).toLowerCase();
  const logs = [...receipt.logs].sort((x, y) => (x.logIndex ?? 0) - (y.logIndex ?? 0));
  const used = logs.findIndex(
    (log) =>
      isAddressEqual(log.address, chain.token) &&
      log.topics[0] === authorizationUsedTopic &&
      log.topics[1]?.toLowerCase() === authorizer &&
      log.topics[2]?.toLowerCase() === a.nonce.toLowerCase(),
  );
  const next = used === -1 ? undefined : logs[used + 1];
  return (
    next !== undefined &&
    isAddressEqual(next.address, chain.token) &&
    next.topics[0] === transferTopic &&
    next.topics[1]?.toLowerCase() === authorizer &&
    next.topics[2]?.toLowerCase() === to &&
    BigInt(next.data) === a.value
  );
}

/** What the search for another's spend of an authorization found: the copy, none, or nothing it can say now. */
type AnotherSpend = { readonly txHash: Hex; readonly block: bigint } | null | "unknown";

/**
 * The token's `event` logs of (payer, nonce) in [`fromBlock`, `throughBlock`], the range read in halves while the node
 * refuses it (a provider's cap on the blocks one call spans), as the deposit watcher reads it, at most
 * anotherSpendReadsMax reads. Throws what the node throws, and past that many reads.
 */
async function logsOfNonce(
  chain: X402Chain,
  event: typeof authorizationUsedEvent | typeof authorizationCanceledEvent,
  a: Pick<Eip3009Authorization, "from" | "nonce">,
  fromBlock: bigint,
  throughBlock: bigint,
) {
  let reads = 0;
  return readInHalves(
    fromBlock,
    throughBlock,
    (from, to) => {
      reads += 1;
      if (reads > anotherSpendReadsMax)
        throw new Error(`the node refused the range in more than ${anotherSpendReadsMax} reads`);
      return chain.publicClient.getLogs({
        address: chain.token,
        event,
        args: { authorizer: a.from, nonce: a.nonce },
        fromBlock: from,
        toBlock: to,
      });
    },
    undefined,
    // Split only what the node refused (its cap on a call's range): a payer waits on this search, and a timeout or
    // a gateway's 5xx, asked again in halves, would keep it waiting for each half's timeout.
    nodeRefused,
  );
}

/**
 * The transaction, not ours, that spent this very authorization at or before `throughBlock` (from `search.fromBlock`,
 * else within anotherSpendLookbackBlocks): a copy of the payer's signed transfer, submitted by someone who saw it (a bot
 * watching the mempool) before ours was mined, or after ours reverted without spending it. Its receipt holds the
 * token's AuthorizationUsed of (payer, nonce) and, paired with it, the Transfer of the value from the payer to the
 * recipient (paidIn), so the money came where the payment sends it, and the deposit watcher credits the invoice bound
 * to that nonce from that transaction. `search.ours`, our transaction, is never taken for a copy. Null when there is
 * none; "otherwise" when none is but another's use of the nonce is there, one that did not pay it (paidInWindow's
 * evidence for a final refusal). The range is read in halves (logsOfNonce); "unknown" when the node cannot say now (out
 * of reach, a timeout, a range it refuses past anotherSpendReadsMax reads, a receipt it does not answer), never taken
 * for none: the caller leaves the row for reconciliation to look again (the paywall: answers the payer pending). Never
 * throws.
 */
async function spentByAnother(
  chain: X402Chain,
  a: Pick<Eip3009Authorization, "from" | "to" | "value" | "nonce">,
  throughBlock: bigint,
  logger: Logger,
  search: { readonly fromBlock?: bigint; readonly ours?: Hex } = {},
): Promise<AnotherSpend | "otherwise"> {
  try {
    const fromBlock =
      search.fromBlock ??
      (throughBlock > anotherSpendLookbackBlocks ? throughBlock - anotherSpendLookbackBlocks : 0n);
    const logs = await logsOfNonce(chain, authorizationUsedEvent, a, fromBlock, throughBlock);
    let otherwise = false;
    for (const log of logs) {
      if (log.transactionHash === null) continue;
      if (search.ours !== undefined && sameHash(log.transactionHash, search.ours)) continue;
      const receipt = await chain.publicClient.getTransactionReceipt({ hash: log.transactionHash });
      if (paidIn(chain, receipt, a)) return { txHash: log.transactionHash, block: receipt.blockNumber };
      otherwise = true;
    }
    return otherwise ? "otherwise" : null;
  } catch (error) {
    // Why, said here: a node that pruned its logs, one rate-limiting, and a bug all answer "unknown" to the caller.
    logger.warn(
      { error, rail: chain.rail, payer: a.from, nonce: a.nonce },
      "x402: whether a copy of the authorization paid cannot be read now",
    );
    return "unknown";
  }
}

/**
 * The chain's head as a reading of an authorization takes it: the latest block, and the last with the chain's
 * confirmations (X402Chain.confirmations: the latest less confirmations − 1), the one a reorganisation does not undo.
 * Read once for many authorizations (a pass of reconciliation, a batch's items), each reading then fewer blocks.
 */
export type ChainHead = {
  readonly latest: { readonly number: bigint; readonly timestamp: bigint };
  readonly confirmed: { readonly number: bigint; readonly timestamp: bigint };
};

/** The chain's head now (ChainHead). Throws what the node throws. */
export async function chainHead(chain: X402Chain): Promise<ChainHead> {
  const latest = await chain.publicClient.getBlock({ blockTag: "latest" });
  const confirmedNumber = lastConfirmedAt(chain, latest.number);
  if (confirmedNumber === latest.number) return { latest, confirmed: latest };
  const confirmed = await chain.publicClient.getBlock({ blockNumber: confirmedNumber });
  return { latest, confirmed };
}

/**
 * The last block with the chain's confirmations (X402Chain.confirmations) when `head` is the latest: `head` less
 * confirmations − 1, never below block 0.
 */
export function lastConfirmedAt(chain: X402Chain, head: bigint): bigint {
  const depth = BigInt(chain.confirmations ?? 1) - 1n;
  if (depth <= 0n) return head;
  return head > depth ? head - depth : 0n;
}

/**
 * What became of an authorization that a mined transaction of ours did not spend, as the chain says at its latest
 * block: a copy of it paid the hot wallet, mined before ours or after it (copy); its nonce is used on other terms
 * (spent: by that block); it is unused and the time of the chain's last confirmed block is still before its
 * validBefore (open); or it is unused and its window shut by that block (lapsed: it can never pay); or the node cannot
 * say now (unknown). Open names the block the nonce was read unused at (`unusedAt`), for the caller to keep
 * (x402_authorizations.unused_block) and give the next reading.
 */
export type UnspentByOurs =
  | { readonly status: "copy"; readonly txHash: Hex; readonly block: bigint }
  | { readonly status: "spent"; readonly block: bigint }
  | { readonly status: "open"; readonly unusedAt: bigint }
  | { readonly status: "lapsed" }
  | { readonly status: "unknown" };

/**
 * What became of the authorization that `ours` (mined in `ours.block`, or lately when null) did not spend
 * (UnspentByOurs). Open is never taken for failed: a transaction of ours that reverted for another reason than the
 * nonce (out of gas, the payer's balance moved first, a batch reverted whole) leaves the signed authorization valid,
 * and it was public in the mempool — whoever holds it, the payer too, may still submit it to the token until its
 * validBefore, the money then comes to the hot wallet and the deposit watcher credits the invoice bound to its nonce.
 * Its row stays `submitted` (its payer's balance held) and its payer is answered pending, so that the same payment
 * sent again once it is mined is served (scheme.ts servedAsOwed); reconciliation concludes it once it is spent or
 * lapsed. Before, it was failed at once: the seller credited when someone mined it, the payer never served.
 *
 * A copy mined first (what made ours revert) is searched for around ours's block, as before, unless an earlier reading
 * found the nonce unused at `ours.unusedAt` (ours's block or later: nothing spent it by then); one mined after ours
 * only once the token says the nonce is used, from the block after the last found it unused (ours's, without one), and
 * up to the last block before its validBefore, when the chain is past it (the token takes it no later). Before, that
 * range ran from ours's block to the latest one, however long ago ours was mined: after a gateway's downtime, or on a
 * fast chain, it took more reads than a search makes, and the row was left unknown, its payer unserved, for good.
 * `a.validBefore` null: not known (a row claimed before it was kept, migration 0027), never open, its range not cut.
 * The block open names is the last with the chain's confirmations (X402Chain.confirmations) as the nonce was read
 * unused at the latest, never the latest itself: a reorganisation of the last blocks may mine a copy below a block a
 * reading found it unused at, and a search from the block after it would miss that copy, answer spent, and the row
 * would be failed for good while the copy paid the hot wallet (the seller credited, the payer refused). Lapsed, so,
 * by that block's time too, never the latest's: blocks past the last confirmed one may be mined again, a copy in them
 * before its validBefore, after the row was failed and its payer's balance given back. `head`, the chain's head read
 * once for many authorizations (chainHead), else read here. Never throws.
 */
export async function unspentByOurs(
  chain: X402Chain,
  a: Pick<Eip3009Authorization, "from" | "to" | "value" | "nonce"> & { readonly validBefore: bigint | null },
  ours: { readonly txHash: Hex; readonly block: bigint | null; readonly unusedAt?: bigint | null },
  logger: Logger,
  head?: ChainHead,
): Promise<UnspentByOurs> {
  const cannotSay = (error: unknown): UnspentByOurs => {
    logger.warn(
      { error, rail: chain.rail, payer: a.from, nonce: a.nonce },
      "x402: whether an authorization our transaction did not spend may still pay cannot be read now",
    );
    return { status: "unknown" };
  };
  let read: ChainHead;
  try {
    read = head ?? (await chainHead(chain));
  } catch (error) {
    return cannotSay(error);
  }
  const { latest, confirmed } = read;
  const block = ours.block ?? latest.number;
  const unusedAt =
    ours.unusedAt !== undefined && ours.unusedAt !== null && ours.unusedAt >= block ? ours.unusedAt : null;
  if (unusedAt === null) {
    const first = await spentByAnother(chain, a, block, logger, { ours: ours.txHash });
    if (first === "unknown") return { status: "unknown" };
    if (first !== null && first !== "otherwise") return { status: "copy", ...first };
  }
  // The nonce's state, the window and a later copy read at one block (ours's, should the node's latest lag behind
  // it): a spend after it is the next reading's.
  const through = ours.block !== null && ours.block > latest.number ? ours.block : latest.number;
  let used: boolean;
  try {
    used = await nonceUsed(chain, a.from, a.nonce, through);
  } catch (error) {
    return cannotSay(error);
  }
  // The token takes it while block.timestamp < validBefore, and every block after `confirmed` is later, whichever
  // branch mines it.
  if (!used) {
    if (a.validBefore === null || confirmed.timestamp >= a.validBefore) return { status: "lapsed" };
    // Unused at `through`, so at every block before it on this branch; only those the rail counts final stay so.
    return { status: "open", unusedAt: lastConfirmedAt(chain, through) };
  }
  const from = (unusedAt ?? block) + 1n;
  let last = through;
  if (a.validBefore !== null && latest.timestamp >= a.validBefore && through >= from) {
    try {
      last = (await firstBlockAtOrAfter(chain, a.validBefore, from, through)) - 1n;
    } catch (error) {
      return cannotSay(error);
    }
  }
  if (last >= from) {
    const later = await spentByAnother(chain, a, last, logger, { fromBlock: from, ours: ours.txHash });
    if (later === "unknown") return { status: "unknown" };
    if (later !== null && later !== "otherwise") return { status: "copy", ...later };
  }
  return { status: "spent", block: through };
}

/**
 * How many blocks before the verify's (x402_unsent_owed.verified_block) paidInWindow's search starts, past the chain's
 * confirmations: that block may be later than the state the simulation read the nonce unused at. A head read beside
 * the state's reading (simulate-batch.ts balanceOf, at once with a lone simulation; a retry after a rate limit lands
 * it blocks later on a fast chain), or asked of one node of a load balancer's fleet while the eth_call is answered by
 * another behind it. Missed, a copy mined in those blocks is not found, and its payer, refused as a nonce already
 * used, signs again and pays twice; read, it costs a read of logs 64 blocks longer, the same single read.
 */
export const verifiedMarginBlocks = 64n;

/**
 * How long after an authorization's window shut, by the latest block's time, paidInWindow takes a node's logs to have
 * its every block (a provider's log index trailing its head, a node of a load balancer behind the one that read the
 * nonce): no log found is final only then. In time, not blocks: a fast chain mines many blocks in the seconds such an
 * index may trail. Its cost: a payer whose nonce is used with no log found is answered pending that long.
 */
export const logsSettledS = 60n;

/**
 * The transaction that spent this very authorization to `a.to` (spentByAnother: its AuthorizationUsed, paidIn on its
 * receipt) in the blocks the token may have taken it in, up to the latest, or the last before its validBefore once
 * the chain is past it (EIP-3009: the token takes it no later). From `window.verifiedAt`, the block the verify that
 * took it read its nonce unused at (the simulation's state was that block's or a later one's, simulate-batch.ts), so
 * it was mined after that block: the search starts at the last block with the chain's confirmations then
 * (lastConfirmedAt: a reorganisation may mine it again above that one, not below), less verifiedMarginBlocks (a
 * block read later than the state: see there), and reads no block for its start. `window.verifiedAt` null (a row
 * written before migration 0072, or a verify that asked no block): from the first block whose time is past its
 * validAfter, or `window.maxS` before its validBefore when later (some clients sign validAfter 0), found by
 * timestamps (firstBlockAtOrAfter, some 25 reads of a block) — and, there, "unknown" while no block the node has is
 * past that start. Before, the search started at the head read as its row was written (less the chain's
 * confirmations, or the last 1,000 blocks when that read took over a second), and a transfer mined before that read
 * (the mining what made the rail refuse) was missed.
 *
 * None paid it in those blocks: null (final) on evidence in the same logs of how its nonce was used otherwise — the
 * token's AuthorizationUsed of (payer, nonce) in a transaction that did not pay `a.to` (spentByAnother's "otherwise":
 * spent on other terms), or its AuthorizationCanceled (the payer cancelled it) — or once its window shut
 * logsSettledS before the latest block's time (the logs taken to have its every block by then); "unknown" otherwise:
 * the caller read the nonce used, and a log index trailing the head (a provider's, another node behind a load
 * balancer) may not have the block that used it yet (the payer is answered pending, and sent again finds it). Before,
 * none found was final at once, and a payer whose transfer the index had not yet was refused as a nonce already used,
 * signed again and paid twice. "unknown" too when the node cannot say now. Never throws.
 *
 * `window.latest`: the latest block as the caller read it (the one it read the nonce used at), taken for the latest
 * rather than read again; else read here.
 */
export async function paidInWindow(
  chain: X402Chain,
  a: Pick<Eip3009Authorization, "from" | "to" | "value" | "nonce" | "validAfter" | "validBefore">,
  window: {
    readonly verifiedAt: bigint | null;
    readonly maxS: bigint;
    readonly latest?: { readonly number: bigint; readonly timestamp: bigint } | undefined;
  },
  logger: Logger,
): Promise<AnotherSpend> {
  const cannotSay = (error: unknown): AnotherSpend => {
    logger.warn(
      { error, rail: chain.rail, payer: a.from, nonce: a.nonce },
      "x402: whether the authorization paid cannot be read now",
    );
    return "unknown";
  };
  let from: bigint;
  let last: bigint;
  let latestAt: bigint;
  let shut = false;
  try {
    const latest = window.latest ?? (await chain.publicClient.getBlock({ blockTag: "latest" }));
    if (window.verifiedAt !== null) {
      from = lastConfirmedAt(chain, window.verifiedAt) - verifiedMarginBlocks;
      if (from < 0n) from = 0n;
    } else {
      let after = a.validBefore - window.maxS;
      if (a.validAfter > after) after = a.validAfter;
      if (latest.timestamp <= after)
        throw new Error(`the latest block's time (${latest.timestamp}) is not past ${after}`);
      from = await firstBlockAtOrAfter(chain, after + 1n, 0n, latest.number);
    }
    last = latest.number;
    latestAt = latest.timestamp;
    if (latest.timestamp >= a.validBefore) {
      shut = true;
      last = (await firstBlockAtOrAfter(chain, a.validBefore, from, latest.number)) - 1n;
    }
  } catch (error) {
    return cannotSay(error);
  }
  // A node behind the verify's block reads no logs: "unknown" below while the window is open.
  if (last >= from) {
    const spent = await spentByAnother(chain, a, last, logger, { fromBlock: from });
    if (spent === "otherwise") return null;
    if (spent !== null) return spent;
  }
  // No log of its use, whatever the nonce reads at some block: a log index trailing the head has none of the blocks it
  // has not indexed yet, however many a fast chain mines in its lag. A window shut logsSettledS ago, by the chain's
  // clock: the logs had its every block and none paid it.
  if (shut && latestAt - a.validBefore >= logsSettledS) return null;
  if (last < from) return "unknown";
  try {
    const cancelled = await logsOfNonce(chain, authorizationCanceledEvent, a, from, last);
    return cancelled.length > 0 ? null : "unknown";
  } catch (error) {
    return cannotSay(error);
  }
}

/**
 * How long before its validBefore an authorization refused before sending can have been mined at the earliest, for a
 * search (paidInWindow's `maxS`) that has no block its verify read the nonce unused at (a paywall's row written before
 * migration 0072, or a verify that asked none; the facilitator keeps none): the search then runs over its window.
 * Verified by the gateway, it was taken only with a validBefore at most validForMaxS and validBeforeSkewS past the
 * gateway's clock, and its nonce was unused at the node's latest block then (the simulation): it was mined later, by
 * the chain's clock, less a node behind and a clock apart, for which validBeforeSkewS is allowed once more. Its
 * validAfter cuts the search only when later (clients sign it 600 s before now, or 0: @x402/evm's v2 client does).
 * The search's logs span this much of the chain at most: 43,800 blocks of a chain of 2 s, read in halves where the
 * node caps a read's range (spentByAnother).
 */
export const unsentMinedWithinS = validForMaxS + 2n * validBeforeSkewS;

/**
 * The wallet an authorization pays, as the invoices it is bound to recorded it when bound (evm_deposits.auth_to: the
 * hot wallet then), the first that names one; the hot wallet of now when none does (a binding made before evm
 * migration 0023 that no send of ours named, which the migration could not fill). After the operator rotates the hot
 * wallet's key, an authorization signed before pays the old wallet: judged by the wallet of now, its transfer read as
 * paying nobody of ours, and its payer, paid, was refused (the paywall) or told it was pending for good (an owed
 * request). Never the payment's own `to`: a payer's second authorization of the
 * same nonce, to an address of its own and mined first, would read as paying us.
 */
export function boundTo(
  chain: Pick<X402Chain, "hotWallet">,
  invoices: readonly { readonly boundTo: Hex | null }[],
): Hex {
  for (const invoice of invoices) if (invoice.boundTo !== null) return invoice.boundTo;
  return chain.hotWallet;
}

/**
 * Which receipt of the invoices an authorization refused before sending left bound (store.ts UnsentInvoice: the
 * paywall's owed requests, the facilitator's retried settle) names a transaction that spent this very authorization
 * to the wallet the invoice was bound with (paidIn, boundTo), the invoice it paid with it; else null, with `unread`
 * the first receipt whose transaction cannot be read now, and `gone` when one names a transaction the node does not
 * know (a copy a reorg removed, whose reversal the watcher has not recorded yet: its credit is taken back once it
 * does). Never throws.
 */
export async function unsentSpender(
  chain: X402Chain,
  invoices: readonly Pick<UnsentInvoice, "invoiceId" | "txHash" | "boundTo">[],
  a: Pick<Eip3009Authorization, "from" | "value" | "nonce">,
  logger: Logger,
): Promise<{
  readonly spending: { readonly invoiceId: string; readonly txHash: Hex } | null;
  readonly unread: string | null;
  readonly gone: boolean;
}> {
  let unread: string | null = null;
  let gone = false;
  for (const invoice of invoices) {
    if (invoice.txHash === null) continue;
    try {
      const mined = await chain.publicClient.getTransactionReceipt({ hash: invoice.txHash as Hex });
      if (paidIn(chain, mined, { ...a, to: boundTo(chain, [invoice]) }))
        return { spending: { invoiceId: invoice.invoiceId, txHash: mined.transactionHash }, unread, gone };
    } catch (error) {
      // Gone from the chain: not this one. Another receipt of the invoice (the authorization mined again, by another)
      // may still prove it.
      if (error instanceof TransactionReceiptNotFoundError) {
        gone = true;
        continue;
      }
      logger.warn(
        { error, payer: a.from, txHash: invoice.txHash },
        "x402: whether a refused payment's invoice was paid by its authorization is unknown now",
      );
      unread ??= invoice.txHash;
    }
  }
  return { spending: null, unread, gone };
}

/**
 * The first block in [`low`, `high`] whose timestamp is `timestamp` or later, `high`'s being so: each block's time is
 * its parent's or later, so halving the range finds it in a read per halving (about 17 for 100,000 blocks), whatever
 * the chain's pace. Throws what the node throws.
 */
async function firstBlockAtOrAfter(
  chain: X402Chain,
  timestamp: bigint,
  low: bigint,
  high: bigint,
): Promise<bigint> {
  let lo = low;
  let hi = high;
  while (lo < hi) {
    const mid = lo + (hi - lo) / 2n; // rounded down: `hi` itself is never read
    const { timestamp: at } = await chain.publicClient.getBlock({ blockNumber: mid });
    if (at >= timestamp) hi = mid;
    else lo = mid + 1n;
  }
  return lo;
}

/** What spent an authorization (spenderOf), and `ours`: our mined transaction read for it, with its receipt. */
export type Spender = {
  readonly txHash: Hex;
  readonly block: bigint;
  readonly copy: boolean;
  /** Kept for what else the caller reads of it (a retried settle books its gas), not read from the node again. */
  readonly ours: { readonly txHash: Hex; readonly receipt: MinedReceipt };
};

/**
 * What the gateway's row keeps of an authorization for the search for a copy (x402_authorizations): its validBefore,
 * null when not kept (migration 0027), and the block a reading last found its nonce unused at (unused_block), or null.
 */
export type KnownOfRow = { readonly validBefore: bigint | null; readonly unusedAt: bigint | null };

/**
 * The transaction that spent the authorization, if mined transaction `txHash` (ours) or another's copy of it that paid
 * the hot wallet did (unspentByOurs: a copy mined first made ours revert, and one mined later spent what ours, reverted
 * for another reason, left open): for a retried settle or a request owed, answered after the settler. `known`, the
 * row's: the search for a copy runs from the block after the one its nonce was last read unused at, up to its
 * validBefore, as reconciliation's does; before, from ours's block to the latest, a range that grew with every block
 * until it took more reads than a search makes, and the payer, who waits on it, was answered pending until
 * reconciliation recorded the copy. Null while `txHash` is not mined, or neither spent it, or the node cannot say now.
 */
export async function spenderOf(
  chain: X402Chain,
  txHash: Hex,
  a: Pick<Eip3009Authorization, "from" | "to" | "value" | "nonce">,
  logger: Logger,
  known: KnownOfRow,
): Promise<Spender | null> {
  let receipt: MinedReceipt;
  try {
    receipt = await chain.publicClient.getTransactionReceipt({ hash: txHash });
  } catch (error) {
    if (!(error instanceof BaseError)) throw error;
    return null;
  }
  const ours = { txHash, receipt };
  if (spentIn(chain, receipt, a)) return { txHash, block: receipt.blockNumber, copy: false, ours };
  // Open or lapsed alike, no copy: its window only cuts the search.
  const missed = await unspentByOurs(
    chain,
    { ...a, validBefore: known.validBefore },
    { txHash, block: receipt.blockNumber, unusedAt: known.unusedAt },
    logger,
  );
  return missed.status === "copy" ? { txHash: missed.txHash, block: missed.block, copy: true, ours } : null;
}

/** Whether two transaction hashes are the same, whatever the case of their hex digits. */
export const sameHash = (x: Hex, y: Hex) => x.toLowerCase() === y.toLowerCase();

/** The transactions of one send of the chain's rail, from any of them: its current one, then those it replaced. */
export type SendHashes = (txHash: Hex) => Promise<Hex[]>;

/**
 * The reading of the send journal of `chain`'s rail among `rails` (its `sendHashesOf`, beyond the Rail contract); null
 * for a rail without one, each of whose hashes is then a send of its own.
 */
export function sendJournalOf(
  rails: { get(id: string): unknown },
  chain: Pick<X402Chain, "rail">,
): SendHashes | null {
  const rail = rails.get(chain.rail);
  const read = (rail as { sendHashesOf?: unknown } | undefined)?.sendHashesOf;
  return typeof read === "function" ? (read as SendHashes).bind(rail) : null;
}

/**
 * spenderOf over every transaction of our send `sent`: `sent` itself, then the fee bumps of the send that replaced it
 * (`sendHashes`, the rail's send journal), any of which may be the one mined; `known`, the row's, for each.
 * `replaced`: what spent it is one of those replacements, ours (a copy someone else submitted is `copy`). Null while
 * none is mined, or none spent it.
 */
export async function spenderOfSend(
  chain: X402Chain,
  sent: Hex,
  a: Pick<Eip3009Authorization, "from" | "to" | "value" | "nonce">,
  logger: Logger,
  sendHashes: SendHashes | null,
  known: KnownOfRow,
): Promise<(Spender & { readonly replaced: boolean }) | null> {
  const journal = (await sendHashes?.(sent)) ?? [];
  for (const hash of [sent, ...journal.filter((hash) => !sameHash(hash, sent))]) {
    const spent = await spenderOf(chain, hash, a, logger, known);
    if (spent !== null) return { ...spent, replaced: !spent.copy && !sameHash(hash, sent) };
  }
  return null;
}
