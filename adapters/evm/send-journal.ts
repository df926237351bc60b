// The send journal: how the EVM rail sends a transaction at most once per key. A call is signed, its hash and
// raw bytes stored (evm_sends), and only then broadcast. Sending under the same key again finds the stored
// transaction and broadcasts the same bytes again (harmless if the node has them, needed if it lost them), so a
// retry can only ever land the one transaction — or, once the send has waited `replaceAfterMs` without being
// mined, its replacement: the same call with the same nonce and fees bumped by 12.5% — up to the cap, as long as
// that still raises both by the node's least, 10% (the transactions it superseded are kept, and whichever is mined
// is the send's receipt). A send the cap leaves no replacement for waits as it is, said once; so does one whose
// replacement a node asking more than 10% refuses as underpriced (the transaction it replaced stays in the pool), and
// one whose replacement it refuses in other words while the one replaced holds the nonce (or, its pool having dropped
// that one, takes it again, broadcast once more; or refuses it too, the bump refused as costing too much), the send's
// row pointed back at that one (its bytes are what a later broadcast sends; the refused bump stays among the send's,
// and is the later bump over that one again, its same bytes broadcast, while it offers no more than the fees then ask,
// at most a bump less, and no less than a bump over that one within the cap: a long refusal keeps one more bump only
// when the fees fall below those kept, or rise more than a bump past them).
//
// Nonces come from the database (evm_nonces, one row per chain and wallet): a send takes the row's lock, signs
// with max(the row, the chain's pending count), stores the send and moves the row on in one transaction, so
// several gateway processes can share one hot wallet. Within a process, sends are also queued in order. Nothing
// inside that transaction asks the node anything: the pending count and the node's chain id are read before it
// opens, and the transaction is signed with the wallet's own key (a slow node never holds the row's lock).
//
// A refusal (nothing signed) is kept for keys whose caller moves on when told so (SendOptions.refusalIsFinal):
// asked again, such a key answers its refusal and is never sent.
import {
  type Account,
  type Address,
  assertCurrentChain,
  BaseError,
  type Chain,
  type Hex,
  keccak256,
  LimitExceededRpcError,
  type LocalAccount,
  type PublicClient,
  parseTransaction,
  recoverTransactionAddress,
  type TransactionReceipt,
  TransactionReceiptNotFoundError,
  type TransactionSerializable,
  type Transport,
  type WalletClient,
} from "viem";
import {
  type Db,
  isUniqueViolation,
  type Logger,
  type RailFailureCode,
  type Sql,
  silentLogger,
  tenantShareOf,
} from "../../core/index.ts";
import {
  chainRefused,
  EvmRailError,
  errorText,
  nodeUnreachable,
  shortMessage,
  viemDetails,
} from "./errors.ts";
import { currentGasFees, type GasPolicy, gweiText } from "./gas.ts";
import { failureCodeOf, revertName, revertText } from "./reverts.ts";

/** One stored send; `attempt_id` is the key (a payment attempt's id, or a prefixed splitter-call key). */
export type SendRow = { attempt_id: string; tx_hash: `0x${string}`; raw_tx: `0x${string}`; nonce: number };

/**
 * What a broadcast came to: `taken`, the node took the transaction, holds it, or shows its nonce used (its receipt
 * decides); `not_taken`, the node shows neither (said as a warning, and at error level once it lasts past
 * stalledAfterMs: notTaken): the send stays journaled, and its same bytes are broadcast again (its key sent again,
 * keepOpenSends). While the wallet's lowest open nonce is so past stalledAfterMs, and refused again when a new key
 * comes, new keys are refused (stalledBy).
 */
export type Broadcast = "taken" | "not_taken";

/**
 * A send stored under its key, and what its broadcast this time came to. Not taken, its caller answers it in flight
 * (submitted) at once: it is sent, and waiting for a receipt that cannot come before its next broadcast is no use.
 */
export type Sent = SendRow & { broadcast: Broadcast };

/**
 * A call gas estimation says would revert, that the node did not answer, or whose gas would cost more than the
 * policy's cap (fee_above_max): nothing was signed or sent (with `refusalIsFinal`, the refusal is kept).
 */
export type SendRefused = {
  status: "failed";
  code: RailFailureCode;
  revert: string | null;
  message: string;
  /** Refused because the wallet's queue, or the tenant's share of it, was full: load, not the node's ill health. */
  busy: boolean;
};

/** A contract call to send; `gasAboveEstimate` is added to the estimate (a call that needs headroom at its end). */
export type Call = { to: Address; data: Hex; gasAboveEstimate?: bigint };

export type SendJournal = {
  readonly db: Db;
  readonly publicClient: PublicClient<Transport, Chain>;
  readonly walletClient: WalletClient<Transport, Chain, Account>;
  /** The wallet's own key: a send is signed here, not by the node (no RPC inside the nonce row's transaction). */
  readonly account: LocalAccount;
  readonly chainId: number;
  readonly confirmations: number;
  readonly receiptTimeoutMs: number;
  /** What every transaction offers for gas (EIP-1559 fees from the latest base fee, capped). */
  readonly gas: GasPolicy;
  /** A send not mined this long after it was signed is replaced (same nonce, fees bumped) when sent again. */
  readonly replaceAfterMs: number;
  /** The last send queued: each send waits for it, so nonces are assigned in order. */
  queue: Promise<unknown>;
  /** Sends queued and not done; beyond sendsQueuedMax a new key's send is refused at once. */
  queued: number;
  readonly sendsQueuedMax: number;
  /** Sends queued and not done by share (SendOptions.share), for shares with any. */
  readonly queuedByShare: Map<string, number>;
  /** The most of the queue one share holds: beyond it that share's new key is refused at once. */
  readonly sendsQueuedPerShareMax: number;
  readonly logger: Logger;
  /**
   * The transactions said to wait as they are (no replacement within the cap, or one the node refused as underpriced:
   * waitsAsItIs), by hash, with their nonce and wallet (lower case): each is said once, and forgotten once its wallet's
   * nonce passed it.
   */
  readonly unreplaceable: Map<Hex, { nonce: number; wallet: string }>;
  /**
   * The transactions of sends a fee bump over which the node refused while they held the nonce in its pool, or its
   * pool holding none of the send's, refused them too (broadcast: the send's row points back at them), or a bump it
   * refused as costing too much before those it replaced were all asked again (unbumpedUntilAsked), by hash, with
   * their nonce and when (performance.now()): none is bumped again within stalledAfterMs of it (replaceIfStuck).
   * Forgotten once the wallet's nonce passed it. This process's only: another (or this one restarted) goes by signed_at,
   * which pointedBack and unbumpedUntilAsked move on, so it signs none over it within replaceAfterMs, then one a pass
   * (replaceIfStuck says why the node is not asked).
   */
  readonly bumpsRefused: Map<Hex, { nonce: number; at: number }>;
  /**
   * The last refusal of a new key while the wallet was stalled (stalledBy), with the send that stalled it and when: new
   * keys within stalledRefusalHeldMs are answered it without asking the node. Cleared when that send's broadcast is
   * taken, or its mark cleared.
   */
  stalledRefusal: StalledRefusal | null;
  /**
   * The sends signed by another wallet than this one (a key rotation retired it) said not replaced, by key: each is said
   * once (storedSend, keepOpenSends), the set cleared when it reaches signedByAnotherSaidMax.
   */
  readonly signedByAnotherSaid: Set<string>;
};

/** The most sends of another wallet a journal remembers having said (SendJournal.signedByAnotherSaid). */
const signedByAnotherSaidMax = 1_000;

/** A refusal of new keys while the wallet's lowest open send is not taken (stalledBy), as last answered. */
type StalledRefusal = {
  attemptId: string;
  nonce: number;
  /** performance.now() when answered: a clock the wall clock's steps do not move. */
  at: number;
  refusal: SendRefused;
};

/**
 * The most sends one wallet's queue holds: each takes a few calls to the node in turn, so a slow node drains it slowly,
 * and every tenant's payouts and settlements wait behind whatever joined first. Past it a send is refused
 * (rail_unavailable: another rail, or a retry later), not queued for however long.
 */
export const sendsQueuedMaxDefault = 1_000;

export function createSendJournal(params: {
  db: Db;
  publicClient: PublicClient<Transport, Chain>;
  walletClient: WalletClient<Transport, Chain, Account>;
  confirmations: number;
  receiptTimeoutMs: number;
  gas: GasPolicy;
  replaceAfterMs: number;
  sendsQueuedMax?: number;
  logger?: Logger;
}): SendJournal {
  const sendsQueuedMax = params.sendsQueuedMax ?? sendsQueuedMaxDefault;
  return {
    ...params,
    logger: params.logger ?? silentLogger,
    unreplaceable: new Map(),
    bumpsRefused: new Map(),
    stalledRefusal: null,
    signedByAnotherSaid: new Set(),
    account: localAccountOf(params.walletClient.account),
    chainId: params.publicClient.chain.id,
    queue: Promise.resolve(),
    queued: 0,
    sendsQueuedMax,
    queuedByShare: new Map(),
    // A quarter (core tenantShareOf), as of the API's admission pool: a tenant's burst of payouts (async, each a
    // send) leaves three quarters of the queue to every other tenant's payouts and to the platform's own sends,
    // instead of having them refused `rail_unavailable` — final for a payout — while it drains.
    sendsQueuedPerShareMax: tenantShareOf(sendsQueuedMax),
  };
}

/** The wallet's account, which must hold its key: a node's account (JSON-RPC) would sign over the network. */
function localAccountOf(account: Account): LocalAccount {
  if (account.type !== "local")
    throw new EvmRailError(
      `the EVM rail signs with the hot wallet's key; ${account.address} is an account of the node (${account.type})`,
    );
  return account;
}

/** Runs `fn` after every send queued before it: nonces are assigned in order. Counted in `share`'s part, if any. */
export function serialized<T>(journal: SendJournal, fn: () => Promise<T>, share?: string): Promise<T> {
  journal.queued += 1;
  if (share !== undefined) journal.queuedByShare.set(share, (journal.queuedByShare.get(share) ?? 0) + 1);
  const run = journal.queue.then(fn, fn).finally(() => {
    journal.queued -= 1;
    if (share === undefined) return;
    const left = (journal.queuedByShare.get(share) ?? 1) - 1;
    if (left > 0) journal.queuedByShare.set(share, left);
    else journal.queuedByShare.delete(share);
  });
  journal.queue = run.catch(() => undefined); // the queue goes on; the caller still sees this run's error
  return run;
}

export type SendOptions = {
  /**
   * The key's first outcome is its only one: a refusal is kept (evm_send_refusals) and answered again, and a send
   * is never signed under a key refused before. For keys whose caller moves on when told "refused" (a payout
   * attempt fails and the payment tries another; a netted batch's payouts go back in the queue): another process
   * asking under the same key later, and sending, would pay twice. Keys retried by design after a refusal (a sweep,
   * an authorization given back to its payer) leave it off.
   */
  refusalIsFinal?: boolean;
  /**
   * Whose send this is, for the queue's parts (sendsQueuedShareOfQueue): a tenant's id for its payouts. Absent: the
   * platform's own (sweeps, settlements, netted batches), held back by the whole queue's bound alone.
   */
  share?: string;
};

/**
 * The send stored under `key`, rebroadcast (replaced first when it has waited too long); or a new one made by
 * `prepare` (run only when there is none). With `refusalIsFinal`, the refusal kept under `key` when there is one.
 */
export async function sendOnce(
  journal: SendJournal,
  key: string,
  prepare: () => Promise<Call | SendRefused>,
  options: SendOptions = {},
): Promise<Sent | SendRefused> {
  const final = options.refusalIsFinal === true;
  const { share } = options;
  // A full queue, or a share holding its whole part of it, refuses a new send; a key sent before is followed as ever
  // (its caller needs its outcome).
  const full = journal.queued >= journal.sendsQueuedMax;
  const shareFull =
    share !== undefined && (journal.queuedByShare.get(share) ?? 0) >= journal.sendsQueuedPerShareMax;
  if (
    (full || shareFull) &&
    (await journal.db.query("SELECT 1 FROM evm_sends WHERE attempt_id = $1", [key])).length === 0
  ) {
    const refusal: SendRefused = {
      status: "failed",
      code: "rail_unavailable",
      revert: null,
      busy: true,
      message: full
        ? `${journal.queued} sends are queued on the hot wallet, the most it holds; try again later`
        : `${journal.sendsQueuedPerShareMax} sends of this tenant are queued on the hot wallet, the most one tenant may have there; try again later`,
    };
    // Kept like any refusal when the key's first outcome is its only one (a send stored under it meanwhile wins).
    return final ? keepRefusal(journal, key, refusal) : refusal;
  }
  return serialized(
    journal,
    async () => {
      const existing = await storedSend(journal, key);
      if (existing !== null) return existing;
      if (final) {
        const [refused] = await refusalsOf(journal.db, key);
        if (refused !== undefined) return refused;
      }
      // The wallet's lowest open nonce not taken for longer than stalledAfterMs, and refused again now (a refusal that
      // does not clear): a send signed now waits behind it for good, its reservation held. Refused before anything is
      // signed, so that a payout goes to another rail.
      const stalled = await stalledBy(journal);
      const call: Call | SendRefused = stalled ?? (await prepare());
      // Refused by `prepare` or before signing (gas estimation, the fee cap): nothing was signed.
      const outcome = "status" in call ? call : await signAndStore(journal, key, call, final);
      return final && "status" in outcome ? keepRefusal(journal, key, outcome) : outcome;
    },
    share,
  );
}

/**
 * The least time a send's broadcast goes not taken before the wallet is judged stalled by it (said at error level,
 * new keys refused while still refused): replaceAfterMs when longer. A node that refuses a broadcast for a moment (a
 * node behind the one that took the send before it, a restart) is the common case, and replaceAfterMs may be 0 (tests,
 * an operator bumping at every pass): judged by it alone, one refusal refused every new payout, final for a payout.
 */
export const stalledAfterMsLeast = 120_000;

/** How long a send's broadcast goes not taken before it stalls the wallet: stalledAfterMsLeast, or replaceAfterMs. */
function stalledAfterMs(journal: SendJournal): number {
  return Math.max(journal.replaceAfterMs, stalledAfterMsLeast);
}

/**
 * How long a refusal of new keys while the wallet is stalled answers the next new keys as it is (stalledBy), the node
 * not asked again. Asked for each, a burst of payouts while stalled made some four calls each in turn inside the queue
 * (a thousand payouts, four thousand calls: a hosted RPC's 429s), and a 429 on the mined count let a payout be signed
 * behind the send refused for good. A few seconds: the send's broadcast taken meanwhile clears it sooner.
 */
const stalledRefusalHeldMs = 5_000;

/**
 * A refusal of a new send while the wallet's lowest open nonce is a send whose broadcast has not been taken for longer
 * than stalledAfterMs (not_taken_since) and is refused again now (its stored bytes broadcast once more, as
 * keepOpenSends does); null otherwise, or when the node cannot tell the wallet's mined count now (the send's own steps
 * then meet the node as they are). Asks the node only when some open send of the wallet is so, and not again within
 * stalledRefusalHeldMs of such a refusal (the same refusal answered). Before, the mark alone refused: a node that had
 * recovered refused every new payout until the next send-gas pass broadcast the send again.
 */
async function stalledBy(journal: SendJournal): Promise<SendRefused | null> {
  const wallet = walletKey(journal);
  const notTakenLong = `not_taken_since IS NOT NULL
    AND now() - not_taken_since >= $3::int * interval '1 millisecond'`;
  const any = await journal.db.query(
    `SELECT 1 FROM evm_sends WHERE chain_id = $1 AND wallet = $2 AND NOT gas_done AND ${notTakenLong} LIMIT 1`,
    [journal.chainId, wallet, stalledAfterMs(journal)],
  );
  if (any.length === 0) {
    journal.stalledRefusal = null; // its mark cleared, by whichever process
    return null;
  }
  // Held only while the send it names is still so itself: another process's broadcast of it taken clears its mark, not
  // this process's refusal. Before, any long mark of the wallet (another send's, behind it) held it, and new keys were
  // refused citing a send taken meanwhile.
  const held = journal.stalledRefusal;
  if (
    held !== null &&
    performance.now() - held.at < stalledRefusalHeldMs &&
    (
      await journal.db.query(
        `SELECT 1 FROM evm_sends
          WHERE chain_id = $1 AND wallet = $2 AND attempt_id = $4 AND NOT gas_done AND ${notTakenLong}`,
        [journal.chainId, wallet, stalledAfterMs(journal), held.attemptId],
      )
    ).length > 0
  )
    return held.refusal;
  journal.stalledRefusal = null;
  let minedCount: number;
  try {
    minedCount = await journal.publicClient.getTransactionCount({
      address: journal.account.address,
      blockTag: "latest",
    });
  } catch {
    return null;
  }
  await forgetNotTakenPassed(journal, minedCount);
  const [lowest] = await journal.db.query<SendRow & { stalled: boolean; since: Date | string }>(
    `SELECT attempt_id, tx_hash, raw_tx, nonce, not_taken_since AS since, (${notTakenLong}) AS stalled
       FROM evm_sends WHERE chain_id = $1 AND wallet = $2 AND NOT gas_done AND nonce >= $4
      ORDER BY nonce LIMIT 1`,
    [journal.chainId, wallet, stalledAfterMs(journal), minedCount],
  );
  if (lowest === undefined || lowest.stalled !== true) return null;
  const { stalled: _stalled, since, ...row } = lowest;
  // Taken now (its mark cleared by the broadcast), the new send goes on behind it.
  if ((await broadcast(journal, row, walletKey(journal))).broadcast === "taken") return null;
  const refusal: SendRefused = {
    status: "failed",
    code: "rail_unavailable",
    revert: null,
    busy: false,
    message: `the hot wallet's send at nonce ${row.nonce} (transaction ${row.tx_hash}) has not been taken by the node since ${new Date(since).toISOString()}; nothing is signed behind it until it is`,
  };
  journal.stalledRefusal = {
    attemptId: row.attempt_id,
    nonce: Number(row.nonce),
    at: performance.now(),
    refusal,
  };
  return refusal;
}

/** The refusal kept under `key` (none, or one). */
function refusalsOf(sql: Sql, key: string): Promise<SendRefused[]> {
  return sql.query<SendRefused>(
    "SELECT 'failed' AS status, code, revert, message, busy FROM evm_send_refusals WHERE attempt_id = $1",
    [key],
  );
}

/**
 * Keeps `refusal` as the outcome of `key`, under the wallet's nonce row lock (the lock a send of the key takes
 * to be signed): unless another process signed a send under the key meanwhile (that send is the outcome, and is
 * broadcast again), or kept its own refusal first (that one is).
 */
async function keepRefusal(
  journal: SendJournal,
  key: string,
  refusal: SendRefused,
): Promise<Sent | SendRefused> {
  type SentRow = SendRow & { wallet: string | null };
  const outcome = await journal.db.transaction(async (tx): Promise<SentRow | SendRefused> => {
    await lockedNextNonce(journal, tx);
    const [sent] = await tx.query<SentRow>(
      "SELECT attempt_id, tx_hash, raw_tx, nonce, wallet FROM evm_sends WHERE attempt_id = $1",
      [key],
    );
    if (sent !== undefined) return sent;
    await tx.query(
      `INSERT INTO evm_send_refusals (attempt_id, chain_id, code, revert, message, busy) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (attempt_id) DO NOTHING`,
      [key, journal.chainId, refusal.code, refusal.revert, refusal.message, refusal.busy],
    );
    const [kept] = await refusalsOf(tx, key);
    if (kept === undefined) throw new EvmRailError(`the refusal of ${key} vanished inside its transaction`);
    return kept;
  });
  if ("status" in outcome) return outcome;
  const { wallet, ...sent } = outcome;
  return broadcast(journal, sent, wallet);
}

/**
 * Like sendOnce, for a send a queued one needs first (the splitter's approve before a pay): the caller already
 * holds the queue.
 */
export async function sendWithinQueue(
  journal: SendJournal,
  key: string,
  call: Call,
): Promise<Sent | SendRefused> {
  return (await storedSend(journal, key)) ?? signAndStore(journal, key, call);
}

/**
 * What a key a payer's choice names puts before that choice: the chain id (`31337:`), since a payer may choose the same
 * again on another chain; or nothing when this chain's journal holds a send under `keyBefore`, the key of before the
 * chain was in it, still to be followed (one pending across the upgrade would otherwise be sent a second time).
 */
export async function chainPartOfKey(journal: SendJournal, keyBefore: string): Promise<string> {
  const rows = await journal.db.query("SELECT 1 FROM evm_sends WHERE attempt_id = $1 AND chain_id = $2", [
    keyBefore,
    journal.chainId,
  ]);
  return rows.length > 0 ? "" : `${journal.chainId}:`;
}

type StoredRow = SendRow & { due: boolean };

/**
 * The send under `key`, broadcast again — replaced first when it is due; null when there is none. A key is one
 * chain's: a send of another chain under it is never broadcast or replaced here (its bytes, its nonce are that
 * chain's), the send is refused. A send signed by another wallet (the hot wallet's key rotated since: the retired
 * wallet's sends stay in the journal) is broadcast again as it is, never replaced: its nonce is that wallet's, and a
 * replacement signed with this wallet's key would be another transaction at a nonce of this wallet's own sequence
 * (another payment of the same call once this wallet's count reaches it, the one signed before still mined or
 * minable, and the row no longer naming it). Its key answers its stored send, as any key sent before does: its outcome
 * is followed by its transactions' hashes (receiptOf), and whether it can still be mined by its own wallet's count
 * (sendFateOf).
 */
async function storedSend(journal: SendJournal, key: string): Promise<Sent | null> {
  const [existing] = await journal.db.query<StoredRow & { chain_id: number; wallet: string | null }>(
    `SELECT attempt_id, tx_hash, raw_tx, nonce, chain_id, wallet,
            now() - signed_at >= $2::int * interval '1 millisecond' AS due
       FROM evm_sends WHERE attempt_id = $1`,
    [key, journal.replaceAfterMs],
  );
  if (existing === undefined) return null;
  const { due, chain_id: chainId, wallet, ...row } = existing;
  if (Number(chainId) !== journal.chainId)
    throw new EvmRailError(`send ${key} is chain ${chainId}'s, not chain ${journal.chainId}'s`);
  const current = due && (await signedHere(journal, row, wallet)) ? await replaceIfStuck(journal, row) : row;
  // Harmless if the node has it; needed if it lost it.
  return broadcast(journal, current, wallet);
}

/**
 * Whether `row`'s send was signed by this journal's wallet, so that a replacement signed here takes its place: its
 * `wallet`, or, a row journaled before that column (evm migration 0011, which left it NULL; send-gas.ts fills it in for
 * open sends only, at its next pass), the signer its bytes name. One signed by another wallet, or whose signer its
 * bytes do not name, is said once at warn (a key rotation the operator may not know leaves its sends to be mined as
 * they are), and is never replaced.
 */
async function signedHere(journal: SendJournal, row: SendRow, wallet: string | null): Promise<boolean> {
  const signer = wallet ?? (await signerOf(row.raw_tx));
  if (signer === walletKey(journal)) return true;
  saySignedByAnother(journal, row, signer);
  return false;
}

/** Says once a send (by key) that another wallet than this journal's signed, at warn: broadcast as it is, never replaced. */
function saySignedByAnother(journal: SendJournal, row: SendRow, signer: string | null): void {
  if (!journal.signedByAnotherSaid.has(row.attempt_id)) {
    if (journal.signedByAnotherSaid.size >= signedByAnotherSaidMax) journal.signedByAnotherSaid.clear();
    journal.signedByAnotherSaid.add(row.attempt_id);
    journal.logger.warn(
      {
        send: row.attempt_id,
        txHash: row.tx_hash,
        nonce: row.nonce,
        signedBy: signer === null || signer === "" ? "unknown" : signer,
        hotWallet: walletKey(journal),
      },
      "send signed by another wallet than the hot wallet (its key rotated since?): not replaced, only broadcast again as it is; a wallet the rail no longer signs with mines it, or not, at its own fees",
    );
  }
}

/** The address (lower case) that signed `raw`, from its signature alone; null when its bytes name none. */
async function signerOf(raw: Hex): Promise<string | null> {
  try {
    return (await recoverTransactionAddress({ serializedTransaction: raw as never })).toLowerCase();
  } catch {
    return null;
  }
}

/**
 * Signs a call with the policy's fees and the next nonce of the wallet, stores it under `key`, then broadcasts
 * it. A base fee above the cap, or a revert in gas estimation, sends nothing.
 */
async function signAndStore(
  journal: SendJournal,
  key: string,
  call: Call,
  refusalIsFinal = false,
): Promise<Sent | SendRefused> {
  const { walletClient } = journal;
  let request: Awaited<ReturnType<typeof walletClient.prepareTransactionRequest>>;
  try {
    const fees = await currentGasFees(journal.publicClient, journal.gas);
    if (fees.kind === "above_max")
      return {
        status: "failed",
        code: "fee_above_max",
        revert: null,
        busy: false,
        message: `the base fee (${gweiText(fees.baseFeeWei)}) and the tip are above the rail's max fee (${gweiText(fees.maxFeeWei)})`,
      };
    // The nonce is not the node's to give: it comes from the database below.
    request = await walletClient.prepareTransactionRequest({
      account: journal.account,
      chain: walletClient.chain,
      to: call.to,
      data: call.data,
      type: "eip1559",
      maxFeePerGas: fees.maxFeePerGas,
      maxPriorityFeePerGas: fees.maxPriorityFeePerGas,
      parameters: ["chainId", "gas", "type"],
    });
    if (call.gasAboveEstimate !== undefined) request.gas = (request.gas ?? 0n) + call.gasAboveEstimate;
  } catch (error) {
    // Gas estimation runs the call: a revert here (or a wallet short of gas) means it cannot succeed now; a node out
    // of reach, or one answering an error that is neither, has said nothing about it: rail_unavailable. (Before, the
    // latter read as a shortfall of the wallet, insufficient_liquidity, and was kept so.) Either way nothing was sent.
    const revert = revertName(error);
    const code =
      revert === null && (nodeUnreachable(error) || !chainRefused(error))
        ? "rail_unavailable"
        : failureCodeOf(revert);
    // The message says why in words: a reason string as it is (a token's "Blacklistable: …"), not `Error`.
    return { status: "failed", code, revert, message: revertText(error) ?? shortMessage(error), busy: false };
  }
  // Read before the lock, so that no RPC runs inside the transaction: a send of any gateway process moves the
  // row on before it is broadcast, so a count read early is behind the row, never ahead of it.
  const pending = BigInt(
    await journal.publicClient.getTransactionCount({ address: journal.account.address, blockTag: "pending" }),
  );
  const chainId = await nodeChainId(journal);
  const { account: _account, chain: _chain, ...transaction } = request;
  let row: SendRow | SendRefused;
  try {
    row = await storeSigned(journal, key, transaction, chainId, pending, refusalIsFinal);
  } catch (error) {
    // Another process stored a send under this key since the look for one (both sent the same thing at once):
    // that one is the key's, rolled back here with the nonce this one took.
    const stored = isUniqueViolation(error, "evm_sends_pkey") ? await storedSend(journal, key) : null;
    if (stored === null) throw error;
    return stored;
  }
  if ("status" in row) return row;
  return broadcast(journal, row, walletKey(journal));
}

/** Under the wallet's nonce row's lock: the next nonce, the transaction signed with it, stored under `key`. */
async function storeSigned(
  journal: SendJournal,
  key: string,
  transaction: Omit<TransactionSerializable, "nonce" | "chainId">,
  chainId: number,
  pending: bigint,
  refusalIsFinal: boolean,
): Promise<SendRow | SendRefused> {
  return journal.db.transaction(async (tx): Promise<SendRow | SendRefused> => {
    const nonce = await takeNonce(journal, tx, pending);
    // Under the nonce row's lock, as a refusal is kept: one another process kept since the look before prepare
    // decides the key (its caller has moved on).
    if (refusalIsFinal) {
      const [refused] = await refusalsOf(tx, key);
      if (refused !== undefined) return refused;
    }
    const raw = await signLocally(journal, { ...transaction, nonce, chainId } as TransactionSerializable);
    const signed: SendRow = { attempt_id: key, tx_hash: keccak256(raw), raw_tx: raw, nonce };
    await tx.query(
      `INSERT INTO evm_sends (attempt_id, chain_id, tx_hash, raw_tx, nonce, wallet)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [signed.attempt_id, journal.chainId, signed.tx_hash, signed.raw_tx, signed.nonce, walletKey(journal)],
    );
    await tx.query(
      "UPDATE evm_nonces SET next_nonce = $3, updated_at = now() WHERE chain_id = $1 AND wallet = $2",
      [journal.chainId, walletKey(journal), BigInt(nonce) + 1n],
    );
    return signed;
  });
}

/**
 * The node's chain id, checked against the wallet's chain (viem's ChainMismatchError when another): what viem's
 * signTransaction asks the node on every call, asked here before the nonce row's transaction opens. A node
 * swapped for another chain's is refused before a nonce is taken, not journaled as a send that cannot land.
 */
async function nodeChainId(journal: SendJournal): Promise<number> {
  const { walletClient } = journal;
  const chainId = await walletClient.getChainId();
  assertCurrentChain({ chain: walletClient.chain, currentChainId: chainId });
  return chainId;
}

/**
 * Signs with the wallet's key and the chain's serializer — what viem's signTransaction does for a local account
 * once it has the chain id, without asking the node: it runs inside the nonce row's transaction.
 */
function signLocally(journal: SendJournal, transaction: TransactionSerializable): Promise<Hex> {
  return journal.account.signTransaction(transaction, {
    serializer: journal.walletClient.chain.serializers?.transaction,
  });
}

function walletKey(journal: SendJournal): string {
  return journal.account.address.toLowerCase();
}

/**
 * The wallet's next nonce, under the lock of its row (held until `tx` ends): the row's, or the chain's pending
 * count when that is ahead (a transaction sent from the wallet outside the gateway, or the first send).
 */
async function takeNonce(journal: SendJournal, tx: Sql, pending: bigint): Promise<number> {
  const next = await lockedNextNonce(journal, tx);
  return Number(next > pending ? next : pending);
}

/** The wallet's nonce row's next nonce, under its lock (held until `tx` ends); the row is made when missing. */
async function lockedNextNonce(journal: SendJournal, tx: Sql): Promise<bigint> {
  const wallet = walletKey(journal);
  await tx.query(
    "INSERT INTO evm_nonces (chain_id, wallet, next_nonce) VALUES ($1, $2, 0) ON CONFLICT (chain_id, wallet) DO NOTHING",
    [journal.chainId, wallet],
  );
  const [locked] = await tx.query<{ next_nonce: bigint }>(
    "SELECT next_nonce FROM evm_nonces WHERE chain_id = $1 AND wallet = $2 FOR UPDATE",
    [journal.chainId, wallet],
  );
  if (locked === undefined) throw new EvmRailError("the wallet's nonce row vanished inside its transaction");
  return locked.next_nonce;
}

/** A replacement offers 12.5% more (geth asks 10%, others up to 12.5%): numerator over 8… */
const replacementBumpEighths = 9n;
/** …or, where that passes the cap, the cap, when it is still the least geth and Hardhat take: 10% (over 10). */
const replacementLeastTenths = 11n;

/**
 * Replaces a send that has waited too long: the same call, the same nonce, fees bumped by ≥ 12.5% (or to what
 * the base fee asks now, when more), within the cap — or bumped to the cap when 12.5% passes it and the cap still
 * raises both fees by 10%. Nothing is replaced when a transaction with its nonce has been mined (the receipt decides),
 * when no such bump fits under the cap, or the base fee and the tip alone pass it (the send waits as it is, said
 * once: only a lower base fee or a higher cap moves it), when a lower nonce is still open and the send offers what
 * the chain asks now (it waits for that one, not for its fees), or when this process saw the node refuse a bump over it
 * within stalledAfterMs while it held the nonce. The replacement is a bump kept among the send's when one offers no
 * more than the one computed would, at most a bump (12.5%) less, and no less than a bump (12.5%) over the send's
 * transaction, or the cap where that cuts the bump back (keptBumpWithin): its bytes, not new ones.
 */
async function replaceIfStuck(journal: SendJournal, row: SendRow): Promise<SendRow> {
  const mined = await journal.publicClient.getTransactionCount({
    address: journal.account.address,
    blockTag: "latest",
  });
  forgetPassed(journal, walletKey(journal), mined);
  if (mined > row.nonce) return row;
  // A transaction a bump over which the node refused while it held the nonce (broadcast, the row pointed back at it): a
  // bump signed again at once is refused as well (the node's fee cap, a wallet short of ETH for the bump). Before, each
  // pass signed one more over the last, 12.5% compounding up to the cap, nothing said; the row pointed back, a bump is
  // over this one, never over the refused one, and one is tried again after stalledAfterMs (a wallet topped up, a cap
  // raised). Kept in this process's memory; another process (every one keeps the open sends), or this one restarted,
  // goes by the row's signed_at, which pointedBack and unbumpedUntilAsked move on: it signs none within replaceAfterMs
  // of it, then one a pass while the node refuses (the refused one again, keptBumpWithin, while the fees ask no less
  // than it offers, and at most a bump more). Asking the node instead (no bump over a transaction it does not hold)
  // stalled for good a bump evicted from the pool, and one refused underpriced once the cap was raised.
  const refused = journal.bumpsRefused.get(row.tx_hash);
  if (refused !== undefined && performance.now() - refused.at < stalledAfterMs(journal)) return row;
  const old = parseTransaction(row.raw_tx);
  if (old.type !== "eip1559" || old.maxFeePerGas === undefined || old.maxPriorityFeePerGas === undefined)
    return row;
  const fees = await currentGasFees(journal.publicClient, journal.gas);
  if (fees.kind === "above_max") {
    // The base fee and the tip alone pass the cap: nothing is signed (as a new send is refused fee_above_max). Before,
    // it waited so with nothing said.
    waitsAsItIs(
      journal,
      row,
      walletKey(journal),
      { baseFeeWei: fees.baseFeeWei.toString(), maxFeeWei: fees.maxFeeWei.toString() },
      "send stuck above the gas cap: the base fee and the tip alone pass the cap, so no replacement is signed; it waits as it is, until the base fee falls or the cap is raised",
    );
    return row;
  }
  // Waiting behind a lower nonce of the wallet while offering what the chain asks now: its place holds it, not its
  // fees, and it waits as it is. Bumped at every pass, each send queued behind one stuck nonce compounded 12.5% a pass
  // (ten passes: 3.2 times the tip), and paid that once the queue moved. Once the lowest, it is replaced if still due.
  if (
    row.nonce > mined &&
    old.maxFeePerGas >= fees.maxFeePerGas &&
    old.maxPriorityFeePerGas >= fees.maxPriorityFeePerGas
  )
    return row;
  const bump = (wei: bigint) => (wei * replacementBumpEighths + 7n) / 8n; // rounded up
  const least = (wei: bigint) => (wei * replacementLeastTenths + 9n) / 10n; // rounded up
  // Rounded down: a fee one bump over which is `wei` is no less than this.
  const unbump = (wei: bigint) => (wei * 8n) / replacementBumpEighths;
  const cap = journal.gas.maxFeeWei;
  // The current fees are within the cap (gasFeesFor): only the bump can pass it, and is cut back to it. Before, a
  // send signed within 12.5% of the cap was never replaced, whatever room 10% left, and nothing said so.
  const tip = minOf(maxOf(bump(old.maxPriorityFeePerGas), fees.maxPriorityFeePerGas), cap);
  const maxFee = minOf(maxOf(bump(old.maxFeePerGas), fees.maxFeePerGas, tip), cap);
  if (maxFee < least(old.maxFeePerGas) || tip < least(old.maxPriorityFeePerGas)) {
    // Any replacement the node would take pays above the cap.
    waitsAsItIs(
      journal,
      row,
      walletKey(journal),
      {
        maxFeePerGas: old.maxFeePerGas.toString(),
        maxPriorityFeePerGas: old.maxPriorityFeePerGas.toString(),
        maxFeeWei: cap.toString(),
      },
      "send stuck near the gas cap: no replacement within the cap raises its fees by the 10% a node asks; it waits as it is, until the base fee falls or the cap is raised",
    );
    return row;
  }
  // A bump the node refused as costing too much is kept among the send's when the row is pointed back from it (it may
  // sit in another node's pool), and the bump signed over the same transaction a pass later, the fees of then, was
  // another transaction, refused and kept too: evm_sends_replaced grew by one a pass while the node refused (about
  // 720 a day at worst), and every pass asked each for its receipt. The dearest kept that offers no more than this bump
  // would, and at most a bump (12.5%) less, is the replacement instead: its bytes are broadcast again, as a topped-up
  // wallet or a raised node cap takes them. Not one offering more: the node refused it by cost (gas * fee cap), and
  // refuses anything costing as much while that limit stands, where it may take the cheaper bump the fees of now call
  // for (before, such a one was reused, the fees having fallen by less than a bump: with the wallet's ETH between the
  // two costs, the send never moved again, every later nonce behind it, nothing said). And fees risen past a kept one
  // by less than a bump do not sign a dearer one, refused as surely. Nor is one reused that offers less than a bump
  // (12.5%) over this transaction, unless the cap of now cuts the bump back to what it offers: before, a bump once cut
  // back to a lower cap (10% over it), refused by cost and kept, was reused at flat fees; a node asking 12.5% refused
  // it underpriced, which left it the send's, the next due pass bumped over it to one the wallet could not pay for,
  // refused by cost and pointed back, and the kept one was picked again: the bump the node would take was never
  // signed, nothing said but at debug. One reused offers at least the bump a node asks over this transaction and no more
  // than a fresh bump would (its fee cap up to a bump below it); once a node takes it, the next due pass bumps over it
  // as over any other.
  const kept = await keptBumpWithin(journal, row, old, {
    least: {
      maxFee: maxOf(minOf(bump(old.maxFeePerGas), cap), unbump(maxFee)),
      tip: maxOf(minOf(bump(old.maxPriorityFeePerGas), cap), unbump(tip)),
    },
    most: { maxFee, tip },
  });
  if (kept !== null) {
    journal.logger.debug(
      { send: row.attempt_id, txHash: kept, replaces: row.tx_hash },
      "send replaced by a bump kept among its transactions, broadcast again: no new one signed",
    );
    return journal.db.transaction((tx) => keptMadeCurrent(tx, row, kept));
  }
  const { walletClient } = journal;
  const raw = await walletClient.signTransaction({
    account: journal.account,
    chain: walletClient.chain,
    type: "eip1559",
    chainId: journal.chainId,
    nonce: row.nonce,
    to: old.to ?? null,
    data: old.data ?? "0x",
    value: old.value ?? 0n,
    gas: old.gas,
    maxFeePerGas: maxFee,
    maxPriorityFeePerGas: tip,
  } as Parameters<typeof walletClient.signTransaction>[0]);
  const replacement: SendRow = { ...row, tx_hash: keccak256(raw), raw_tx: raw };
  return journal.db.transaction(async (tx) => {
    // Only over the transaction this process saw: another process may have replaced it meanwhile.
    const updated = await tx.query(
      `UPDATE evm_sends SET tx_hash = $3, raw_tx = $4, signed_at = now()
        WHERE attempt_id = $1 AND tx_hash = $2 RETURNING attempt_id`,
      [row.attempt_id, row.tx_hash, replacement.tx_hash, replacement.raw_tx],
    );
    if (updated.length === 0) return await sendAsItStands(tx, row);
    // A bump kept among the send's at these same fees is reused above (keptBumpWithin), so these bytes are kept only
    // when another process kept them since it read the kept ones: the send's current one again, kept once.
    await replacedBy(tx, row, replacement.tx_hash);
    return replacement;
  });
}

/** The fees a bump offers, wei per gas: its fee cap and its tip. */
type BumpFees = { maxFee: bigint; tip: bigint };

/**
 * The dearest transaction kept among those `row`'s send replaced that is `old`'s call (its nonce, chain, recipient,
 * data, value and gas) offering fees between `least` and `most`, by hash; null when none is. replaceIfStuck passes
 * as `most` the bump it would sign, within the cap of now: a kept one offering more (refused by cost, or signed under
 * a cap lowered since) is not made the send's current one again there.
 */
async function keptBumpWithin(
  journal: SendJournal,
  row: SendRow,
  old: ReturnType<typeof parseTransaction>,
  { least, most }: { least: BumpFees; most: BumpFees },
): Promise<Hex | null> {
  const kept = await journal.db.query<{ tx_hash: Hex; raw_tx: Hex }>(
    "SELECT tx_hash, raw_tx FROM evm_sends_replaced WHERE attempt_id = $1",
    [row.attempt_id],
  );
  let dearest: { hash: Hex; fees: BumpFees } | null = null;
  for (const { tx_hash: hash, raw_tx: raw } of kept) {
    const fees = sameCallFees(raw, old, row.nonce, journal.chainId);
    if (
      fees === null ||
      fees.maxFee < least.maxFee ||
      fees.maxFee > most.maxFee ||
      fees.tip < least.tip ||
      fees.tip > most.tip
    )
      continue;
    if (
      dearest === null ||
      fees.maxFee > dearest.fees.maxFee ||
      (fees.maxFee === dearest.fees.maxFee && fees.tip > dearest.fees.tip)
    )
      dearest = { hash, fees };
  }
  return dearest?.hash ?? null;
}

/** `raw`'s fees when it is `old`'s call with `nonce` on `chainId` (an EIP-1559 transaction); null otherwise. */
function sameCallFees(
  raw: Hex,
  old: ReturnType<typeof parseTransaction>,
  nonce: number,
  chainId: number,
): BumpFees | null {
  let parsed: ReturnType<typeof parseTransaction>;
  try {
    parsed = parseTransaction(raw);
  } catch {
    return null;
  }
  if (
    parsed.type !== "eip1559" ||
    parsed.maxFeePerGas === undefined ||
    parsed.maxPriorityFeePerGas === undefined ||
    parsed.chainId !== chainId ||
    parsed.nonce !== Number(nonce) ||
    (parsed.to ?? "").toLowerCase() !== (old.to ?? "").toLowerCase() ||
    (parsed.data ?? "0x").toLowerCase() !== (old.data ?? "0x").toLowerCase() ||
    (parsed.value ?? 0n) !== (old.value ?? 0n) ||
    parsed.gas !== old.gas
  )
    return null;
  return { maxFee: parsed.maxFeePerGas, tip: parsed.maxPriorityFeePerGas };
}

/** The send's row as it stands, another process having changed it since `row` was read (`row` were it gone). */
async function sendAsItStands(tx: Sql, row: SendRow): Promise<SendRow> {
  const [current] = await tx.query<SendRow>(
    "SELECT attempt_id, tx_hash, raw_tx, nonce FROM evm_sends WHERE attempt_id = $1",
    [row.attempt_id],
  );
  return current ?? row;
}

/**
 * Keeps `row`'s transaction among those its send replaced, once `current` (a bump, a kept bump broadcast again, or one
 * pointed back to) is the send's current one: `current` is taken out of them, as it is kept once (a kept bump is made
 * current from among them; a bump signed over a held one has a kept one's bytes only when another process kept them
 * between keptBumpWithin's read and the signed one's UPDATE).
 */
async function replacedBy(tx: Sql, row: SendRow, current: string): Promise<void> {
  await tx.query("DELETE FROM evm_sends_replaced WHERE attempt_id = $1 AND tx_hash = $2", [
    row.attempt_id,
    current,
  ]);
  await tx.query("INSERT INTO evm_sends_replaced (attempt_id, tx_hash, raw_tx) VALUES ($1, $2, $3)", [
    row.attempt_id,
    row.tx_hash,
    row.raw_tx,
  ]);
}

/**
 * `kept`, a transaction kept among those `row`'s send replaced, made the send's current one (its bytes what a broadcast
 * sends), `row`'s kept in its place (replacedBy), and signed_at moved on as a bump moves it. Only over the transaction
 * `row` is: another process may have changed the row meanwhile, and that one is the send's (returned).
 */
async function keptMadeCurrent(tx: Sql, row: SendRow, kept: Hex): Promise<SendRow> {
  const [current] = await tx.query<SendRow>(
    `UPDATE evm_sends SET tx_hash = kept.tx_hash, raw_tx = kept.raw_tx, signed_at = now()
       FROM evm_sends_replaced kept
      WHERE evm_sends.attempt_id = $1 AND evm_sends.tx_hash = $2
        AND kept.attempt_id = $1 AND kept.tx_hash = lower($3)
    RETURNING evm_sends.attempt_id, evm_sends.tx_hash, evm_sends.raw_tx, evm_sends.nonce`,
    [row.attempt_id, row.tx_hash, kept],
  );
  if (current === undefined) return sendAsItStands(tx, row);
  await replacedBy(tx, row, current.tx_hash);
  return current;
}

/**
 * Says why a send's transaction waits as it is, once a transaction: keepOpenSends comes back to it every pass, and
 * recovery at every run of its attempt; a replacement made since is another transaction, said again.
 */
function waitsAsItIs(
  journal: SendJournal,
  row: SendRow,
  wallet: string | null,
  fields: Record<string, unknown>,
  message: string,
): void {
  if (journal.unreplaceable.has(row.tx_hash)) return;
  journal.unreplaceable.set(row.tx_hash, { nonce: Number(row.nonce), wallet: wallet ?? walletKey(journal) });
  journal.logger.warn({ send: row.attempt_id, txHash: row.tx_hash, nonce: row.nonce, ...fields }, message);
}

/**
 * Forgets the transactions of `wallet` said to wait whose nonce its mined count has passed: one of the send's was
 * mined, or another took its nonce; either way the send waits no more. (Before, the set only grew, for the process's
 * life.) Another wallet's are judged by its own count: before, a retired wallet's were forgotten once the hot wallet's
 * count passed their nonce, and said again at each pass. The refused bumps too, when `wallet` is the hot wallet's (only
 * its sends are bumped: replaceIfStuck).
 */
function forgetPassed(journal: SendJournal, wallet: string, minedCount: number): void {
  for (const [hash, said] of journal.unreplaceable)
    if (said.wallet === wallet && said.nonce < minedCount) journal.unreplaceable.delete(hash);
  if (wallet !== walletKey(journal)) return;
  for (const [hash, { nonce }] of journal.bumpsRefused)
    if (nonce < minedCount) journal.bumpsRefused.delete(hash);
}

/**
 * Clears the not-taken marks of the wallet's sends whose nonce the mined count has passed: one of the send's
 * transactions was mined (broadcast by another route: another node, another process), or another took its nonce;
 * either way it waits for nothing. Before, the mark stood until the send's gas was booked, and every new send asked
 * the node for the wallet's mined count meanwhile (stalledBy). Never throws: it only spares later looks (the marks are
 * judged against the mined count wherever they are read), and its error failed the payout or the pass it ran in.
 */
async function forgetNotTakenPassed(journal: SendJournal, minedCount: number): Promise<void> {
  if (journal.stalledRefusal !== null && journal.stalledRefusal.nonce < minedCount)
    journal.stalledRefusal = null;
  try {
    await journal.db.query(
      `UPDATE evm_sends SET not_taken_since = NULL, not_taken_said = false
        WHERE chain_id = $1 AND wallet = $2 AND nonce < $3 AND NOT gas_done AND not_taken_since IS NOT NULL`,
      [journal.chainId, walletKey(journal), minedCount],
    );
  } catch (error) {
    journal.logger.warn(
      { minedCount, error: errorText(error) },
      "not-taken marks of sends the wallet's nonce passed not cleared; cleared at a later pass",
    );
  }
}

function maxOf(first: bigint, ...rest: bigint[]): bigint {
  let max = first;
  for (const value of rest) if (value > max) max = value;
  return max;
}

function minOf(first: bigint, second: bigint): bigint {
  return second < first ? second : first;
}

/** The most open sends one keepOpenSends looks at (the lowest nonces: each later one waits for them). */
export const openSendsKeptMax = 64;

/**
 * Every send of the wallet whose nonce the chain has not passed yet, broadcast again, lowest nonce first, and
 * replaced first when it has waited past replaceAfterMs. A send is otherwise broadcast again only when its key is
 * sent again, and some keys never are (an x402 settlement, a wallet's authorization: their caller asks once): one of
 * those whose broadcast failed (a node's 5xx, a crash between the commit and the broadcast) held every later nonce
 * of the wallet, every payout behind it, for good. Resolves to how many it looked at; a broadcast not taken is said by
 * the broadcast, and a replacement that fails (the node out of reach) is logged by the caller (the error names the
 * first), the others still tried. The open sends of wallets a key rotation retired follow (keepOtherWalletsOpenSends),
 * counted in.
 */
export function keepOpenSends(journal: SendJournal): Promise<number> {
  return serialized(journal, async () => {
    const minedCount = await journal.publicClient.getTransactionCount({
      address: journal.account.address,
      blockTag: "latest",
    });
    forgetPassed(journal, walletKey(journal), minedCount);
    await forgetNotTakenPassed(journal, minedCount);
    const open = await openSendsOf(journal, walletKey(journal), minedCount);
    let failed: unknown = null;
    for (const { due, ...row } of open) {
      try {
        await broadcast(journal, due ? await replaceIfStuck(journal, row) : row, walletKey(journal));
      } catch (error) {
        failed ??= error;
      }
    }
    let kept = open.length;
    try {
      kept += await keepOtherWalletsOpenSends(journal);
    } catch (error) {
      failed ??= error;
    }
    if (failed !== null) throw failed;
    return kept;
  });
}

/**
 * `wallet`'s sends its mined count has not passed, lowest nonce first (openSendsKeptMax at most), each with whether it
 * has waited replaceAfterMs (due).
 */
function openSendsOf(journal: SendJournal, wallet: string, minedCount: number): Promise<StoredRow[]> {
  return journal.db.query<StoredRow>(
    `SELECT attempt_id, tx_hash, raw_tx, nonce, now() - signed_at >= $4::int * interval '1 millisecond' AS due
       FROM evm_sends WHERE chain_id = $1 AND wallet = $2 AND nonce >= $3 AND NOT gas_done
      ORDER BY nonce LIMIT $5`,
    [journal.chainId, wallet, minedCount, journal.replaceAfterMs, openSendsKeptMax],
  );
}

/**
 * The open sends of the wallets a key rotation retired (evm_sends.wallet another than this journal's), each broadcast
 * again as it is, lowest nonce first and never replaced (no key here signs for that wallet), while its wallet's mined
 * count has not passed it; said once a send (saySignedByAnother). Before, only a send's key sent again broadcast it
 * (storedSend), and the keys some sends are under never are (an x402 batch, a splitter's approve): one signed before
 * the rotation whose broadcast failed was never mined, its invoice or payout in flight for good. A wallet's turn ends
 * at its first send not taken. Resolves to how many it looked at; the first error, after the other wallets were tried.
 */
async function keepOtherWalletsOpenSends(journal: SendJournal): Promise<number> {
  const own = walletKey(journal);
  const rows = await journal.db.query<{ wallet: string }>(
    `SELECT DISTINCT wallet FROM evm_sends
      WHERE chain_id = $1 AND NOT gas_done AND wallet IS NOT NULL AND wallet <> '' AND wallet <> $2`,
    [journal.chainId, own],
  );
  // And a wallet with sends said to wait but none open here by wallet (a row journaled before evm_sends.wallet, its
  // signer recovered from its bytes: broadcast): its count forgets them once passed. Before, they stayed for the
  // process's life.
  const wallets = new Set(rows.map((row) => row.wallet));
  for (const { wallet } of journal.unreplaceable.values())
    if (wallet !== "" && wallet !== own) wallets.add(wallet);
  let looked = 0;
  let failed: unknown = null;
  for (const wallet of wallets) {
    try {
      const minedCount = await journal.publicClient.getTransactionCount({
        address: wallet as Address,
        blockTag: "latest",
      });
      forgetPassed(journal, wallet, minedCount);
      // Never replaced, so whether one is due does not matter.
      for (const { due: _due, ...row } of await openSendsOf(journal, wallet, minedCount)) {
        looked += 1;
        saySignedByAnother(journal, row, wallet);
        // None of its later nonces can be mined before it: one not taken ends the wallet's turn. Before, a wallet
        // drained since had every open send asked about at every pass, each refusal a few calls of the node's.
        try {
          if ((await broadcast(journal, row, wallet)).broadcast === "not_taken") break;
        } catch (error) {
          failed ??= error;
          break;
        }
      }
    } catch (error) {
      failed ??= error;
    }
  }
  if (failed !== null) throw failed;
  return looked;
}

/**
 * What a node answers a replacement whose fees are too low to take its nonce's place in its pool: "replacement
 * transaction underpriced" (geth, anvil, reth; Hardhat's capitalised, naming the nonce), "replacement fee too low"
 * (erigon), Nethermind's FeeTooLowToCompete and ReplacementNotAllowed. Not geth's bare "transaction underpriced" (its
 * pool full, or the fee below its txpool.pricelimit): that refuses the transaction, not its replacing another, and
 * nothing may hold the nonce; the node is asked, as for any refusal.
 */
const underpricedTexts = [
  "replacement transaction underpriced",
  "replacement fee too low",
  "feetoolowtocompete",
  "replacementnotallowed",
];

/**
 * What a node answers bytes it holds already: "already known" (geth, reth), "known transaction" (Hardhat's "Known
 * transaction: 0x…"), Nethermind's AlreadyKnown, "transaction already imported" (anvil, Substrate's EVM), "tx already
 * in mempool". Not viem's UnknownRpcError ("An unknown RPC error occurred"), which says nothing of the kind.
 */
function saysHeld(text: string): boolean {
  return (
    text.replaceAll("unknown", "").includes("known") ||
    text.includes("already imported") ||
    text.includes("already in mempool")
  );
}

/**
 * Broadcasts the send's bytes: taken when the node takes them, says it holds them, or, whatever its words for the
 * refusal, shows the send's nonce used or its transaction known (nonceTakenOnNode); otherwise not taken, said, and left
 * to the next broadcast (the same bytes, never another nonce). A refusal never throws: the send is stored, and its
 * callers answer it in flight. Before, any refusal but "already known" and a "nonce too low" the node showed threw: a
 * send mined long since whose bytes a node refused again in other words (Nethermind's "OldNonce", Cosmos EVM's
 * "invalid nonce; got 3, expected 4", OpenEthereum's "Transaction nonce is too low") never reached its receipt, and a
 * payout refused at its first broadcast answered 500 while it was journaled and sent again later: a client retrying
 * under a new key paid twice. The send as it is after: pointed back at the transaction the node holds when it refused a
 * fee bump in other words than underpriced (pointedBack). `wallet` is the row's (evm_sends.wallet, lower case) when the
 * caller has it, null when not (then, on a refusal, the signer its bytes name): the wallet whose count says the send's
 * nonce passed (nonceTakenOnNode), and whose count forgets its mark (waitsAsItIs).
 */
async function broadcast(journal: SendJournal, row: SendRow, wallet: string | null): Promise<Sent> {
  const sent = (outcome: Broadcast): Sent => ({ ...row, broadcast: outcome });
  try {
    await journal.publicClient.sendRawTransaction({ serializedTransaction: row.raw_tx });
    return sent(await taken(journal, row));
  } catch (error) {
    const text = errorText(error).toLowerCase();
    // The wallet whose nonce the send holds: the row's, or, when the caller has none (a row journaled before that
    // column, sent again under its key: storedSend), the signer its bytes name, recovered only on a refusal. Before,
    // such a send of a retired wallet was marked as the hot wallet's (waitsAsItIs), and forgotten by that wallet's
    // count; and a long refusal of it was said as the hot wallet's own (notTaken).
    const signer = wallet ?? (await signerOf(row.raw_tx));
    // A replacement refused as underpriced: a node asking more than the bump the cap left (12.5% where it left 10%).
    // It is the send's transaction already, and the one it replaced is kept among the send's: that one stays in the
    // pool, and the receipt of either decides. Before, the broadcast threw (but on Hardhat, whose refusal names the
    // nonce), and so did every pass and every run of the attempt, until the one replaced was mined.
    if (underpricedTexts.some((refusal) => text.includes(refusal)) && (await supersedesAny(journal, row))) {
      waitsAsItIs(
        journal,
        row,
        signer,
        { error: shortMessage(error) },
        "send's replacement refused as underpriced: the node asks a larger bump than the gas cap left; the transaction it replaced waits in the node's pool, and whichever of them is mined is the send's",
      );
      return sent(await taken(journal, row));
    }
    if (saysHeld(text)) return sent(await taken(journal, row));
    const heldBy = await nonceTakenOnNode(journal, row, signer);
    if (heldBy !== null && heldBy !== "passed" && heldBy.toLowerCase() !== row.tx_hash.toLowerCase()) {
      // A fee bump refused in other words than underpriced (geth's rpc.txfeecap; "insufficient funds for gas * price +
      // value", the wallet holding enough ETH for the transaction it replaced, not for the bump): that one holds the
      // nonce, and the send's row points back at it, not bumped again for a while. Before, taken with nothing said, and
      // each pass signed a further bump over the refused one; then the row kept the refused bump, whose bytes every
      // later pass broadcast: the pool dropping the one it held (evicted, the node restarted), nothing broadcast that
      // one again, and the send stalled.
      waitsAsItIs(
        journal,
        row,
        signer,
        { error: shortMessage(error), heldBy },
        "send's replacement refused by the node (its fee cap, a wallet short of ETH for the bump?); the transaction it replaced holds the nonce in the node's pool and stays the send's current one, and whichever of them is mined is the send's",
      );
      return leftToHeld(journal, row, heldBy);
    }
    if (heldBy !== null) return sent(await taken(journal, row));
    const takenAgain = await replacedTakenAgain(journal, row, signer, error, text);
    if (takenAgain !== null && takenAgain !== "every_one_refused") return takenAgain;
    // Neither shown by the node asked: "nonce too high" (Hardhat's for a nonce past the pending one while it
    // automines), a gapped nonce refused, the node out of reach, or a node behind the one that refused (behind a load
    // balancer), whose answer only delays the send; or a refusal that never clears (geth's rpc.txfeecap "tx fee (…)
    // exceeds the configured cap", "exceeds block gas limit"). Pointed back only when every transaction the bump
    // replaced was asked and refused too, or costs no less than one refused in the pass as costing too much
    // (costsNoLess: refused alike, not asked): one not asked otherwise may be the one the node takes.
    const current =
      takenAgain === "every_one_refused" ? await leftToSignedOver(journal, row, error, text) : row;
    await notTaken(journal, row, error, signer !== null && signer !== walletKey(journal));
    return { ...current, broadcast: "not_taken" };
  }
}

/**
 * The send left to `heldBy`, a transaction its refused bump `row` replaced that the node holds: the row pointed back at
 * it (pointedBack), and no bump signed over it within stalledAfterMs (replaceIfStuck); taken.
 */
async function leftToHeld(journal: SendJournal, row: SendRow, heldBy: Hex): Promise<Sent> {
  const current = await pointedBackUnbumped(journal, row, heldBy);
  return { ...current, broadcast: await taken(journal, current) };
}

/**
 * The send's row pointed back from `row`, its refused bump, at `to` (pointedBack), and no bump signed over the one it
 * points at within stalledAfterMs (bumpsRefused, replaceIfStuck): unless another process changed the row meanwhile,
 * whose transaction is then the send's (returned) and may be bumped.
 */
async function pointedBackUnbumped(journal: SendJournal, row: SendRow, to: Hex): Promise<SendRow> {
  const current = await pointedBack(journal, row, to);
  if (current.tx_hash === to || current.tx_hash === row.tx_hash)
    journal.bumpsRefused.set(current.tx_hash, { nonce: Number(row.nonce), at: performance.now() });
  return current;
}

/**
 * A fee bump the node refused while holding none of the send's transactions (its pool dropped the one the bump
 * replaced: evicted, the node restarted, the usual reason a send waits past replaceAfterMs): the transactions it
 * replaced broadcast again as they are, the newest first, and the send left to the first the node takes (leftToHeld);
 * "every_one_refused" when each was broadcast again and refused; null when it stopped before asking every one (or the
 * send replaced none); one costing no less than one refused in the pass as costing too much is refused alike, not
 * broadcast again (costsNoLess). Not after a refusal such a one meets as well: an underpriced one (geth's bare
 * "transaction underpriced", its pool full or the fee below its txpool.pricelimit: one replaced offers less), one of
 * the nonce or the gas every one of them shares (refusedAlikeTexts), the node out of reach or rate limiting
 * (saidNothing: the loop stops there too, and a bump refused as costing too much is not bumped over for a while,
 * unbumpedUntilAsked; each one refused is said at debug). Before, the send was not taken, each pass signed a further bump over the refused one
 * (12.5% compounding up to the cap, each refused), the one replaced, which the node would take, was never broadcast
 * again, and past stalledAfterMs every new payout was refused. Every one refused, the send may be left to the one the
 * bump was signed over (leftToSignedOver: the bump refused as costing too much).
 */
async function replacedTakenAgain(
  journal: SendJournal,
  row: SendRow,
  wallet: string | null,
  error: unknown,
  text: string,
): Promise<Sent | "every_one_refused" | null> {
  if (
    text.includes("underpriced") ||
    saidNothing(error) ||
    refusedAlikeTexts.some((said) => text.includes(said))
  )
    return null;
  let replaced: { tx_hash: Hex; raw_tx: Hex }[];
  try {
    replaced = await journal.db.query<{ tx_hash: Hex; raw_tx: Hex }>(
      "SELECT tx_hash, raw_tx FROM evm_sends_replaced WHERE attempt_id = $1 ORDER BY replaced_at DESC",
      [row.attempt_id],
    );
  } catch {
    await unbumpedUntilAsked(journal, row, text);
    return null; // the database not answering: not taken, as before
  }
  // What each transaction of the send refused in this pass as costing too much costs (the bump first): one that costs
  // no less is refused alike, and not broadcast again (costsNoLess).
  const refusedCosts: Cost[] = [];
  const rowCost = costOf(row.raw_tx);
  if (rowCost !== null && costsTooMuchTexts.some((said) => text.includes(said))) refusedCosts.push(rowCost);
  // Those not asked are said in one line a pass. Before, a line each: as many a pass as bumps kept, while refused.
  let notAsked = 0;
  for (const older of replaced) {
    const olderCost = costOf(older.raw_tx);
    if (olderCost !== null && refusedCosts.some((refused) => costsNoLess(olderCost, refused))) {
      notAsked += 1;
      continue;
    }
    try {
      await journal.publicClient.sendRawTransaction({ serializedTransaction: older.raw_tx });
    } catch (olderError) {
      if (saidNothing(olderError)) {
        await unbumpedUntilAsked(journal, row, text);
        return null;
      }
      const olderText = errorText(olderError).toLowerCase();
      if (!saysHeld(olderText)) {
        // Refused too (a wallet short of ETH for it): the next older one.
        journal.logger.debug(
          { send: row.attempt_id, txHash: older.tx_hash, error: shortMessage(olderError) },
          "send's transaction replaced by a refused bump broadcast again, and refused too",
        );
        if (olderCost !== null && costsTooMuchTexts.some((said) => olderText.includes(said)))
          refusedCosts.push(olderCost);
        continue;
      }
    }
    waitsAsItIs(
      journal,
      row,
      wallet,
      { error: shortMessage(error), heldBy: older.tx_hash },
      "send's replacement refused by the node (its fee cap, a wallet short of ETH for the bump?) while its pool held none of the send's transactions; the transaction it replaced was broadcast again and taken, and is the send's current one, and whichever of them is mined is the send's",
    );
    return leftToHeld(journal, row, older.tx_hash);
  }
  if (notAsked > 0)
    journal.logger.debug(
      { send: row.attempt_id, notAsked },
      "send's transactions replaced by a refused bump not broadcast again: each costs no less than one refused as costing too much",
    );
  return replaced.length > 0 ? "every_one_refused" : null;
}

/** What a transaction may cost its wallet: gas at its fee cap, and the value it carries. */
type Cost = { gas: bigint; maxFeePerGas: bigint; value: bigint };

/** What `raw` may cost; null when it carries no fee cap or gas limit, or does not parse (broadcast again as ever). */
function costOf(raw: Hex): Cost | null {
  try {
    const { gas, maxFeePerGas, value } = parseTransaction(raw);
    return gas === undefined || maxFeePerGas === undefined ? null : { gas, maxFeePerGas, value: value ?? 0n };
  } catch {
    return null;
  }
}

/**
 * Whether `cost` is no less than `refused` in each part (gas, fee cap, value): a node that refused `refused` as costing too much (a wallet
 * short of gas * fee cap + value, a fee cap on gas * fee cap: costsTooMuchTexts) refuses it alike. A send's
 * transactions share their gas and value, so the ones costing no less than a refused one are those with a fee cap no
 * lower: each bump over the one the row points back at, once that one is refused so. Before, every pass while the node
 * refused them all broadcast each again, one call each, a refused bump kept each stalledAfterMs while the fees moved
 * (about 720 a day at worst, before keptBumpWithin); those cheaper are still asked, the newest first (a wallet that pays
 * one of them).
 */
function costsNoLess(cost: Cost, refused: Cost): boolean {
  return cost.gas >= refused.gas && cost.maxFeePerGas >= refused.maxFeePerGas && cost.value >= refused.value;
}

/**
 * Refusals every transaction a fee bump replaced meets as well, the bump's nonce and gas theirs: "nonce too high",
 * "nonce too low" (a node behind: nonceTakenOnNode showed the nonce open), "exceeds block gas limit", "intrinsic gas
 * too low". None of them is broadcast again for it (replacedTakenAgain): one call to the node each, every pass, for
 * nothing.
 */
const refusedAlikeTexts = ["nonce", "gas limit", "intrinsic"];

/**
 * Whether the node said nothing of the transaction: out of reach (nodeUnreachable, a 429 among it), or answering a
 * rate limit inside its 200 (viem's LimitExceededRpcError, JSON-RPC's -32005), which another call at once meets too.
 */
function saidNothing(error: unknown): boolean {
  if (nodeUnreachable(error)) return true;
  if (!(error instanceof BaseError)) return false;
  const limited = error.walk((cause) => cause instanceof LimitExceededRpcError);
  return limited !== null && limited !== undefined;
}

/**
 * What a node answers a transaction that costs more than the wallet holds or the node lets one cost: "insufficient
 * funds for gas * price + value" (geth, reth, erigon; viem's InsufficientFundsError carries it), Nethermind's
 * InsufficientFunds, Hardhat's "Sender doesn't have enough funds to send tx", and the rpc.txfeecap refusal "tx fee (…)
 * exceeds the configured cap" (geth, erigon), Besu's "Upfront cost exceeds account balance" and "Transaction fee cap
 * exceeded", geth 1.11–1.12's "transaction would cause overdraft" and zkSync's "insufficient balance". Not a bare "fee
 * cap": older geth said "fee cap less than block base fee" for a fee too low, which a further bump answers.
 */
const costsTooMuchTexts = [
  "insufficient funds",
  "insufficientfunds",
  "enough funds",
  "exceeds the configured cap",
  "txfeecap",
  "upfront cost exceeds", // Besu: "Upfront cost exceeds account balance"
  "fee cap exceeded", // Besu: "Transaction fee cap exceeded"
  "overdraft", // geth 1.11–1.12: "transaction would cause overdraft"
  "insufficient balance", // zkSync: "insufficient balance for transfer"
];

/**
 * A fee bump the node refused as costing too much (costsTooMuchTexts) while holding none of the send's transactions,
 * replacedTakenAgain stopping before every one it replaced was asked again (the node rate limiting or out of reach, the
 * database not answering): the row left at the refused bump (one not asked may be the one the node takes), but no bump
 * signed over it within stalledAfterMs (bumpsRefused, replaceIfStuck), as over one pointed back to
 * (pointedBackUnbumped), and its signed_at moved on as pointedBack moves it: another process, or this one restarted,
 * signs none over it within replaceAfterMs either; the next pass asks them again. Held again at each such refusal: a
 * bump over one refused as costing too much costs more still, and the refused one itself is taken once the wallet is
 * topped up or the cap raised. Before, each pass past replaceAfterMs while the node limited signed one more over the
 * refused one, 12.5% compounding up to the cap, each refused too.
 */
async function unbumpedUntilAsked(journal: SendJournal, row: SendRow, text: string): Promise<void> {
  if (!costsTooMuchTexts.some((said) => text.includes(said))) return;
  journal.bumpsRefused.set(row.tx_hash, { nonce: Number(row.nonce), at: performance.now() });
  try {
    // Only over the bump this process saw: another process may have replaced it, or pointed the row back, meanwhile.
    await journal.db.query("UPDATE evm_sends SET signed_at = now() WHERE attempt_id = $1 AND tx_hash = $2", [
      row.attempt_id,
      row.tx_hash,
    ]);
  } catch (error) {
    // Held in this process all the same; another may sign a bump over it once replaceAfterMs passed its signing.
    journal.logger.warn(
      { send: row.attempt_id, txHash: row.tx_hash, error: errorText(error) },
      "send's refused bump held unbumped in this process only: its signed_at not moved on",
    );
  }
}

/**
 * A fee bump the node refused as costing too much (costsTooMuchTexts: a wallet short of ETH for it, the node's fee cap
 * below it) while holding none of the send's transactions, and refused every one it replaced too, each asked
 * (replacedTakenAgain's "every_one_refused", the only call): the send's row pointed back at the one the bump was signed
 * over, the newest it replaced (pointedBack), and no bump signed over that one within stalledAfterMs (replaceIfStuck),
 * as when the node holds it (leftToHeld); then one over it, not over the refused one. `row` as it is after any other
 * refusal (a fee too low, "max fee per gas less than block base fee", which a further bump answers; "nonce too low"
 * from a node behind one that mined the bump), the database not answering, or when `row` is no bump over the newest it
 * replaced (pointed back from that one already: the bump signed over `row` after stalledAfterMs is that one again).
 * Before, each pass past replaceAfterMs signed a further bump over the refused one, 12.5% compounding up to the cap,
 * each refused; once the wallet was topped up the node took the newest, and the send paid about the cap for its gas.
 */
async function leftToSignedOver(
  journal: SendJournal,
  row: SendRow,
  error: unknown,
  text: string,
): Promise<SendRow> {
  if (!costsTooMuchTexts.some((said) => text.includes(said))) return row;
  let newest: { tx_hash: Hex; raw_tx: Hex } | undefined;
  try {
    [newest] = await journal.db.query<{ tx_hash: Hex; raw_tx: Hex }>(
      "SELECT tx_hash, raw_tx FROM evm_sends_replaced WHERE attempt_id = $1 ORDER BY replaced_at DESC LIMIT 1",
      [row.attempt_id],
    );
  } catch {
    return row; // the database not answering: not taken, as before
  }
  if (newest === undefined || !bumpOver(row.raw_tx, newest.raw_tx)) return row;
  // Said as information, once a bump: the broadcast not taken is said by notTaken (a warning, an error past
  // stalledAfterMs).
  journal.logger.info(
    {
      send: row.attempt_id,
      txHash: row.tx_hash,
      nonce: row.nonce,
      error: shortMessage(error),
      signedOver: newest.tx_hash,
    },
    "send's replacement refused by the node (its fee cap, a wallet short of ETH for the bump?) while its pool held none of the send's transactions, and those it replaced refused too; the send's row points back at the one it was signed over, whose bytes later broadcasts send, and no bump is signed over it for a while",
  );
  return pointedBackUnbumped(journal, row, newest.tx_hash);
}

/**
 * Whether `raw` bumps `older`'s fee cap: a replacement raises it by the node's least at the cap (replaceIfStuck), and
 * a transaction the row was pointed back at offers less than the bump it was pointed back from.
 */
function bumpOver(raw: Hex, older: Hex): boolean {
  try {
    const [bump, replaced] = [parseTransaction(raw), parseTransaction(older)];
    return (
      bump.maxFeePerGas !== undefined &&
      replaced.maxFeePerGas !== undefined &&
      bump.maxFeePerGas > replaced.maxFeePerGas
    );
  } catch {
    return false;
  }
}

/**
 * The send's row pointed back from `row`, a fee bump the node refused, at `heldBy`, a transaction it replaced that the
 * node holds (or, holding none of the send's, refused too: leftToSignedOver): the held one's bytes are the send's
 * current ones again (every later broadcast sends them, and a node that dropped them takes them again), the refused
 * bump kept among those replaced (it may have reached another node's pool, and be mined: its receipt is still looked
 * for, its gas booked). signed_at moved on as a bump moves it: another process, which never saw the bump refused, signs
 * none over the held one within replaceAfterMs (before, one at once when the refused bump, refused at a later pass,
 * was signed longer ago). Only over the bump this process saw: another process may have replaced it meanwhile, and
 * that one is the send's (returned). `row` as it is when the database does not answer: pointed back at its next
 * broadcast refused.
 */
async function pointedBack(journal: SendJournal, row: SendRow, heldBy: Hex): Promise<SendRow> {
  try {
    return await journal.db.transaction((tx) => keptMadeCurrent(tx, row, heldBy));
  } catch (error) {
    journal.logger.warn(
      { send: row.attempt_id, txHash: row.tx_hash, heldBy, error: errorText(error) },
      "send's row not pointed back at the transaction the node holds; pointed back at the refused bump's next broadcast",
    );
    return row;
  }
}

/** A broadcast taken: the send's not-taken time, if any, is cleared (a later refusal is counted from then). */
async function taken(journal: SendJournal, row: SendRow): Promise<Broadcast> {
  // New keys go on behind it again at once, not after stalledRefusalHeldMs.
  if (journal.stalledRefusal?.attemptId === row.attempt_id) journal.stalledRefusal = null;
  try {
    await journal.db.query(
      `UPDATE evm_sends SET not_taken_since = NULL, not_taken_said = false
        WHERE attempt_id = $1 AND not_taken_since IS NOT NULL`,
      [row.attempt_id],
    );
  } catch (error) {
    // Taken all the same; left set, the send is only judged stalled until its next broadcast clears it.
    journal.logger.warn(
      { send: row.attempt_id, error: errorText(error) },
      "send's broadcast taken, not recorded",
    );
  }
  return "taken";
}

/**
 * Says a broadcast not taken: a warning the first time (not_taken_since set), at error level once when it has not been
 * taken for longer than stalledAfterMs (not_taken_said: once per send, whichever process sees it), quietly (debug)
 * otherwise. Before, a refusal that never clears warned at every pass of every send behind it, and nothing more.
 */
async function notTaken(journal: SendJournal, row: SendRow, error: unknown, retired = false): Promise<void> {
  const fields = { send: row.attempt_id, txHash: row.tx_hash, nonce: row.nonce, error: viemDetails(error) };
  let said: "first" | "long" | "again" = "first";
  try {
    const [marked] = await journal.db.query<{ first: boolean }>(
      `UPDATE evm_sends SET not_taken_since = coalesce(not_taken_since, now())
        WHERE attempt_id = $1 RETURNING not_taken_since = now() AS first`,
      [row.attempt_id],
    );
    const long = await journal.db.query<{ since: Date | string }>(
      `UPDATE evm_sends SET not_taken_said = true
        WHERE attempt_id = $1 AND NOT not_taken_said
          AND now() - not_taken_since >= $2::int * interval '1 millisecond'
        RETURNING not_taken_since AS since`,
      [row.attempt_id, stalledAfterMs(journal)],
    );
    said = long.length > 0 ? "long" : marked?.first === false ? "again" : "first";
  } catch (dbError) {
    // Not recorded (the database out of reach): said as the first time, and judged again at the next broadcast.
    journal.logger.warn(
      { ...fields, dbError: errorText(dbError) },
      "send's broadcast not taken, not recorded",
    );
  }
  if (said === "long" && retired)
    journal.logger.error(
      { ...fields, stalledAfterMs: stalledAfterMs(journal) },
      "send of a wallet the hot wallet's key rotated from not taken for longer than stalledAfterMs: the node refuses it (that wallet short of ETH for its gas?); its later sends wait behind it, the hot wallet's do not",
    );
  else if (said === "long")
    journal.logger.error(
      { ...fields, stalledAfterMs: stalledAfterMs(journal) },
      "send's broadcast not taken for longer than stalledAfterMs: the node refuses it and shows neither its nonce used nor its transaction (a node's fee cap, a gas limit above the block's?); every later send of the wallet waits behind it, and new sends are refused while it is refused",
    );
  else if (said === "first")
    journal.logger.warn(
      fields,
      "send's broadcast not taken: the node refused it, and shows neither its nonce used nor its transaction; it is in flight, and broadcast again",
    );
  else journal.logger.debug(fields, "send's broadcast not taken again");
}

/**
 * How the node shows the send's nonce used: `passed`, the wallet's mined count past it; or the hash of the first of the
 * send's transactions known to it (in its pool, or mined): the one broadcast, or one it replaced, the newest first,
 * every one (before, at most 8: a chain of refused bumps the code before left hid the oldest, the one in the pool, and
 * the send was stalled; a refused bump is no longer bumped over, and the bump over the held transaction at each
 * stalledAfterMs while the node still refuses is a kept one again unless the fees fell below every one kept, or rose
 * more than a bump past it, so a long refusal lengthens it by one a pass at most, and only while the fees so move).
 * Null when neither is shown (a node behind the one that refused, behind a load balancer; one not answering): no proof
 * either way, the broadcast is not taken, and is tried again. Before, only the one broadcast was asked: a fee bump the
 * node refused in other words than underpriced (geth's rpc.txfeecap) was not taken while the transaction it replaced
 * held the nonce in the pool, and past stalledAfterMs every new payout was refused.
 */
async function nonceTakenOnNode(
  journal: SendJournal,
  row: SendRow,
  wallet: string | null,
): Promise<Hex | "passed" | null> {
  // The nonce is its signer's: a send of a wallet retired by a key rotation (broadcast again as it is, storedSend) is
  // not passed because this wallet's count is past it. Before, this wallet's count was read, and such a send the node
  // refused was taken for mined, its payout then judged never mined by the same count (sendFateOf) and paid again.
  // The row's `wallet` names it when the caller has it (no signature recovered on each refusal); for a send whose
  // bytes name no signer either, no count is proof of anything (before, this wallet's count judged it): only its own
  // transactions, asked below.
  const signer = wallet ?? (await signerOf(row.raw_tx));
  if (signer !== null && signer !== "") {
    try {
      const mined = await journal.publicClient.getTransactionCount({
        address: signer as Address,
        blockTag: "latest",
      });
      if (mined > Number(row.nonce)) return "passed";
    } catch {
      return null; // the node not answering
    }
  }
  // The database not answering: the one broadcast alone, as before.
  const hashes = await hashesOfSend(journal.db, row).catch(() => [row.tx_hash]);
  for (const hash of hashes) {
    try {
      await journal.publicClient.getTransaction({ hash });
      return hash;
    } catch {
      // viem's TransactionNotFoundError, or the node not answering: the next, if any
    }
  }
  return null;
}

/**
 * Whether the send's transaction replaced others (evm_sends_replaced holds them). The database not answering is a no:
 * the node is asked then (nonceTakenOnNode), as for any refusal. Before, the error went up from the broadcast, which
 * never throws: a payout journaled and answered 500.
 */
async function supersedesAny(journal: SendJournal, row: SendRow): Promise<boolean> {
  try {
    const rows = await journal.db.query("SELECT 1 FROM evm_sends_replaced WHERE attempt_id = $1 LIMIT 1", [
      row.attempt_id,
    ]);
    return rows.length > 0;
  } catch {
    return false;
  }
}

/**
 * The send's receipt once it has the configured confirmations — of its transaction, or of one its replacement
 * superseded, whichever was mined; null when none came within receiptTimeoutMs.
 */
export async function receiptOf(journal: SendJournal, row: SendRow): Promise<TransactionReceipt | null> {
  // The newest first, as hashesOfSend orders them: which is asked first (and whose error goes up) is not left to the
  // plan.
  const superseded = await journal.db.query<{ tx_hash: Hex }>(
    "SELECT tx_hash FROM evm_sends_replaced WHERE attempt_id = $1 ORDER BY replaced_at DESC",
    [row.attempt_id],
  );
  const mined = await firstMined(
    journal,
    superseded.map(({ tx_hash }) => tx_hash),
  );
  return confirmedReceipt(journal, mined?.transactionHash ?? row.tx_hash);
}

/**
 * Like receiptOf without waiting: the receipt of whichever transaction of the send was mined (its current one, or
 * one its replacement superseded), once it has the confirmations; null while none is mined, or it is too recent.
 */
export async function finalReceiptOf(
  journal: SendJournal,
  row: Pick<SendRow, "attempt_id" | "tx_hash">,
): Promise<TransactionReceipt | null> {
  const receipt = await minedReceiptOf(journal, row);
  return receipt !== null && (await confirmed(journal, receipt)) ? receipt : null;
}

/** How many of a send's transactions are asked of the node at once for a receipt (firstMined). */
const receiptsAskedAtOnce = 4;

/**
 * The receipt of the first of `hashes`, in their order, that has one; null when none has. Asked receiptsAskedAtOnce at
 * a time, each answer awaited in turn: a node's error on one before the first found goes up, and one found is answered
 * without waiting for those after it. A refusal the node keeps up adds a transaction to the send at a pass only when
 * the fees fell below every bump kept, or rose more than a bump past it (keptBumpWithin; before, at every pass the fees
 * had moved at all, about 720 a day at worst), each kept and looked for (another node may have taken it); asked in
 * turn, a receipt waited behind a call to the node for each.
 */
async function firstMined(journal: SendJournal, hashes: readonly Hex[]): Promise<TransactionReceipt | null> {
  for (let from = 0; from < hashes.length; from += receiptsAskedAtOnce) {
    const asked = hashes.slice(from, from + receiptsAskedAtOnce).map((hash) => receiptOrNull(journal, hash));
    // Those after the one answered are not awaited: their errors go nowhere, not up as unhandled.
    for (const answer of asked) answer.catch(() => {});
    for (const answer of asked) {
      const receipt = await answer;
      if (receipt !== null) return receipt;
    }
  }
  return null;
}

/** A transaction's receipt; null while it has none (not mined, or not known to the node). */
function receiptOrNull(journal: SendJournal, hash: Hex): Promise<TransactionReceipt | null> {
  return journal.publicClient.getTransactionReceipt({ hash }).catch((error: unknown) => {
    if (error instanceof TransactionReceiptNotFoundError) return null;
    throw error;
  });
}

/** The receipt of the first transaction of the send found mined, with the confirmations or not; null when none is. */
async function minedReceiptOf(
  journal: SendJournal,
  row: Pick<SendRow, "attempt_id" | "tx_hash">,
): Promise<TransactionReceipt | null> {
  const [current, ...replaced] = await hashesOfSend(journal.db, row);
  // The current one asked alone first: usually the one mined, and asked with three more, three calls for nothing.
  const receipt = current === undefined ? null : await receiptOrNull(journal, current);
  return receipt ?? firstMined(journal, replaced);
}

/** Whether a mined transaction has the configured confirmations. */
async function confirmed(journal: SendJournal, receipt: TransactionReceipt): Promise<boolean> {
  const head = await journal.publicClient.getBlockNumber({ cacheTime: 0 });
  return head - receipt.blockNumber + 1n >= BigInt(journal.confirmations);
}

/** What became of a send, without waiting (sendFateOf). */
export type SendFate =
  | { status: "mined"; receipt: TransactionReceipt }
  /** Mined too recently for the confirmations, or not mined and its nonce still open. */
  | { status: "pending" }
  /** No transaction of the send was mined, and the wallet's nonce is past it at a block with the confirmations. */
  | { status: "never_mined" };

/**
 * Like finalReceiptOf, also telling a send that never will be mined: its nonce was taken by another transaction
 * (a replacement sent outside the journal, a broadcast that failed while another process used the nonce) in a block
 * with the confirmations, and none of its own transactions has a receipt. `confirmedNonce` is the wallet's
 * transaction count at such a block, read before the receipts are looked for: had one of the send's transactions
 * been mined at or below that block, its receipt would be found after. `countOf` reads another wallet's such count
 * (a send signed before a key rotation): confirmedNonceOf's read now, unless the caller keeps one a wallet
 * (confirmedCountsOnce).
 */
export async function sendFateOf(
  journal: SendJournal,
  row: Pick<SendRow, "attempt_id" | "tx_hash" | "nonce"> & { wallet?: string },
  confirmedNonce: number,
  countOf: ConfirmedCountOf = (wallet) => confirmedNonceOf(journal, wallet),
): Promise<SendFate> {
  // The receipts are looked for once: one found but too recent is pending, whatever the nonce says.
  const receipt = await minedReceiptOf(journal, row);
  if (receipt !== null)
    return (await confirmed(journal, receipt)) ? { status: "mined", receipt } : { status: "pending" };
  // `confirmedNonce` is this wallet's count: a send signed by another wallet (the hot wallet's key rotated since, its
  // key sent again: storedSend) is judged by its signer's count alone, read now, and its receipts looked for again
  // after it. Before, this wallet's count past its nonce judged it never mined while it could still be (its payout
  // failed, paid again elsewhere, and the first one mined); and its count short of the nonce (a fresh wallet) held it
  // pending while its own wallet's count had passed it. The signer is looked up first, unless the caller's row names
  // it (`wallet`, lower case, as evm_sends keeps it); a send whose signer is not known is never judged so.
  const signer = row.wallet ?? (await storedSignerOf(journal.db, row.attempt_id));
  if (signer === walletKey(journal))
    return confirmedNonce <= row.nonce ? { status: "pending" } : { status: "never_mined" };
  if (signer === null || (await countOf(signer as Address)) <= row.nonce) return { status: "pending" };
  const late = await minedReceiptOf(journal, row);
  if (late !== null)
    return (await confirmed(journal, late)) ? { status: "mined", receipt: late } : { status: "pending" };
  return { status: "never_mined" };
}

/**
 * The wallet (lower case) that signed the send stored under `key`: its `wallet`, or the signer its bytes name when
 * that is NULL (journaled before evm migration 0011); null when there is no such send, or its bytes name no signer.
 */
async function storedSignerOf(db: Db, key: string): Promise<Address | null> {
  const [stored] = await db.query<{ wallet: string | null; raw_tx: Hex }>(
    "SELECT wallet, raw_tx FROM evm_sends WHERE attempt_id = $1",
    [key],
  );
  if (stored === undefined) return null;
  const signer = stored.wallet ?? (await signerOf(stored.raw_tx));
  return signer === null || signer === "" ? null : (signer as Address);
}

/**
 * Blocks below the confirmations at which a send is judged never mined: the receipts are asked of a node that may be
 * a few blocks behind the one that answered the head (a load-balanced RPC), and a reorganisation deeper than the
 * confirmations gives a nonce back. A send judged so is done for good (its gas is never booked), so it is judged late.
 */
export const neverMinedDepthExtra = 6;

/**
 * The wallet's transaction count at the latest block with the confirmations and neverMinedDepthExtra more (nonces
 * below it are final); `wallet`'s, another wallet's, when given (sendFateOf, a send signed before a key rotation).
 */
export async function confirmedNonceOf(
  journal: SendJournal,
  wallet: Address = journal.account.address,
): Promise<number> {
  const head = await journal.publicClient.getBlockNumber({ cacheTime: 0 });
  const confirmed = head - BigInt(Math.max(journal.confirmations, 1) + neverMinedDepthExtra) + 1n;
  if (confirmed < 0n) return 0;
  return journal.publicClient.getTransactionCount({
    address: wallet,
    blockNumber: confirmed,
  });
}

/** Another wallet's transaction count at a block with the confirmations (confirmedNonceOf): sendFateOf's `countOf`. */
export type ConfirmedCountOf = (wallet: Address) => Promise<number>;

/**
 * confirmedNonceOf for other wallets, each read at its first ask and kept: one read a wallet for the sends judged after
 * it (a pass's batch: send-gas.ts), all of whose receipts are looked for after it, as sendFateOf needs. Before, a
 * retired wallet's open send not mined cost two calls of the node's each, every pass: a wallet drained since with a
 * hundred sends open spent two hundred calls of the pass's budget. A read that fails is not kept.
 */
export function confirmedCountsOnce(journal: SendJournal): ConfirmedCountOf {
  const read = new Map<string, Promise<number>>();
  return (wallet) => {
    const key = wallet.toLowerCase();
    let count = read.get(key);
    if (count === undefined) {
      count = confirmedNonceOf(journal, wallet);
      read.set(key, count);
      count.catch(() => read.delete(key));
    }
    return count;
  };
}

/** `row`'s transaction, the send's current one, then each its replacements superseded, the newest first. */
export async function hashesOfSend(db: Db, row: Pick<SendRow, "attempt_id" | "tx_hash">): Promise<Hex[]> {
  // The send's current transaction as stored now, too: `row` may have been read before a fee bump replaced it (a
  // payout waiting for its receipt while the keeper bumps it), whose hash is then in neither `row` nor the replaced.
  const others = await db.query<{ tx_hash: Hex }>(sendHashesSql("SELECT $1::text AS attempt_id"), [
    row.attempt_id,
  ]);
  const hashes = [row.tx_hash];
  for (const { tx_hash: hash } of others)
    if (!hashes.some((known) => known.toLowerCase() === hash.toLowerCase())) hashes.push(hash);
  return hashes;
}

function confirmedReceipt(journal: SendJournal, hash: Hex): Promise<TransactionReceipt | null> {
  return journal.publicClient
    .waitForTransactionReceipt({
      hash,
      confirmations: journal.confirmations,
      timeout: journal.receiptTimeoutMs,
    })
    .catch(() => null);
}

/**
 * Every transaction of the send that `txHash` is one of on chain `chainId`: the send's current transaction, then
 * each its replacements superseded (any of them may be the one mined). Empty when no send has that hash.
 */
export async function sendHashesOf(db: Db, chainId: number, txHash: Hex): Promise<Hex[]> {
  const rows = await db.query<{ tx_hash: Hex }>(
    sendHashesSql(`SELECT attempt_id FROM evm_sends WHERE chain_id = $1 AND tx_hash = lower($2)
       UNION
       SELECT replaced.attempt_id FROM evm_sends_replaced replaced JOIN evm_sends USING (attempt_id)
       WHERE evm_sends.chain_id = $1 AND replaced.tx_hash = lower($2)`),
    [chainId, txHash],
  );
  return rows.map((row) => row.tx_hash);
}

/**
 * SQL: the transactions of the send `send` (a query of its attempt_id) names, in order: its current one, then those
 * it replaced, newest first (the likeliest held by a node). Before, a UNION's order, none.
 */
function sendHashesSql(send: string): string {
  return `WITH send AS (${send})
     SELECT tx_hash FROM (
       SELECT evm_sends.tx_hash, 0 AS rank, signed_at AS at FROM evm_sends JOIN send USING (attempt_id)
       UNION ALL
       SELECT replaced.tx_hash, 1, replaced_at FROM evm_sends_replaced replaced JOIN send USING (attempt_id)
     ) hashes ORDER BY rank, at DESC`;
}
