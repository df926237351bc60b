// The deposit watcher's source and sink: the token's Transfer logs to the deposit addresses and its
// AuthorizationUsed logs of the invoices' nonces, followed by the chain watcher (confirmations, reorgs, lease,
// cursor: watcher.ts). A deposit is credited — a `received` rail event — only once final; one that a reorg takes
// away before that was never credited, and one taken away after it (deeper than the confirmations) is reversed —
// and given back (`reinstated`) when the same transfer (its transaction, to the same invoice, of the same amount) is
// mined again on the new branch and is final there.
//
// Which addresses and nonces: those of invoices whose watch has not ended (expiry + the late window), read after
// the head: a payment in a block up to the head was made after its invoice's row was committed, so it is there.
import {
  type Address,
  type Chain,
  type Hex,
  isAddressEqual,
  type Log,
  type PublicClient,
  parseEventLogs,
  type Transport,
} from "viem";
import { type RailEvent, type RailEventHandler, readInHalves } from "../../core/index.ts";
import { testUsdAbi } from "./abi.generated.ts";
import { EvmRailError } from "./errors.ts";
import type { EvmRailState } from "./rail-state.ts";
import type { EvmEvidence } from "./types.ts";
import { EvmWatcherError, type LogSource, type WatchSink } from "./watcher-state.ts";
import type { EventRow } from "./watcher-store.ts";

/** The most addresses (or nonces) one getLogs call filters on. */
export const depositTopicsPerCallMax = 200;

/**
 * Past this many invoices watched, a range is read whole — the token's every Transfer and AuthorizationUsed of it,
 * split in halves while the node refuses it — and the recipients and nonces found are looked up among the invoices,
 * instead of filtering the node's search by every watched address and nonce (DepositParams.filterWatchedMax). Before,
 * each poll read every invoice watched (until 30 days past its expiry) and asked the node about them 200 at a time:
 * at a million invoices, 10,000 calls and a million rows a poll, every tenant's deposits waiting behind them.
 */
export const depositFilterWatchedMax = 1_000;

/** One stored log of money toward an invoice. */
export type DepositLog = {
  txHash: Hex;
  logIndex: number;
  blockNumber: bigint;
  blockHash: Hex;
  generation: number;
} & (
  | { kind: "transfer"; from: Address; to: Address; value: bigint }
  | { kind: "authorization"; authorizer: Address; nonce: Hex; to: Address; value: bigint }
);

const transferEvent = testUsdAbi.find(
  (item): item is Extract<(typeof testUsdAbi)[number], { type: "event"; name: "Transfer" }> =>
    item.type === "event" && item.name === "Transfer",
)!;
const authorizationUsedEvent = testUsdAbi.find(
  (item): item is Extract<(typeof testUsdAbi)[number], { type: "event"; name: "AuthorizationUsed" }> =>
    item.type === "event" && item.name === "AuthorizationUsed",
)!;

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

export function depositSource(state: EvmRailState): LogSource<DepositLog> {
  const { publicClient, token, db } = state.params;
  return {
    name: "deposits",
    contract: token.address,
    async read(from, to) {
      const filterMax = state.deposits?.params.filterWatchedMax ?? depositFilterWatchedMax;
      const watched = await db.query<{ deposit_address: string | null; auth_nonce: Hex }>(
        `SELECT deposit_address, auth_nonce FROM evm_deposits
         WHERE chain_id = $1 AND token = $2 AND watch_until > now() LIMIT $3`,
        [state.chainId, token.address.toLowerCase(), filterMax + 1],
      );
      if (watched.length > filterMax) return { logs: await readWhole(state, from, to) };
      const addresses = watched.flatMap((w) =>
        w.deposit_address === null ? [] : [w.deposit_address as Address],
      );
      // Once each: payers may share a nonce (each its own authorization), one topic finds all their logs.
      const nonces = [...new Set(watched.map((w) => w.auth_nonce))];
      const logs: DecodedDeposit[] = [];
      for (const group of chunks(addresses, depositTopicsPerCallMax))
        for (const log of await transferLogs(state, from, to, group)) logs.push(transferDeposit(log));
      for (const group of chunks(nonces, depositTopicsPerCallMax))
        for (const log of await authorizationLogs(state, from, to, group))
          await pushAuthorized(publicClient, token.address, log, logs);
      return { logs };
    },
    toEvent: (row) => depositLogOf(row),
  };
}

type TransferLog = Log<bigint, number, false, typeof transferEvent, true>;
type AuthorizationUsedLog = Log<bigint, number, false, typeof authorizationUsedEvent, true>;

function transferDeposit(log: TransferLog): DecodedDeposit {
  return decoded(log, "Transfer", { from: log.args.from, to: log.args.to, value: log.args.value });
}

/** The authorization's transfer (read from its receipt), pushed onto `logs` when it moved money. */
async function pushAuthorized(
  publicClient: PublicClient<Transport, Chain>,
  token: Address,
  log: AuthorizationUsedLog,
  logs: DecodedDeposit[],
): Promise<void> {
  const moved = await authorizedTransfer(publicClient, token, log);
  if (moved === null) return;
  logs.push(
    decoded(log, "AuthorizationUsed", {
      authorizer: log.args.authorizer,
      nonce: log.args.nonce,
      to: moved.to,
      value: moved.value,
    }),
  );
}

/**
 * The token's transfers of [from, to] that moved money, to `recipients` when given (else to anyone: a block the node
 * refuses so is read by the watched invoices' addresses instead, watchedPages).
 */
async function transferLogs(
  state: EvmRailState,
  from: bigint,
  to: bigint,
  recipients?: Address[],
): Promise<TransferLog[]> {
  const { publicClient, token } = state.params;
  const found = await readInHalves(
    from,
    to,
    (fromBlock, toBlock) =>
      publicClient.getLogs({
        address: token.address,
        event: transferEvent,
        ...(recipients === undefined ? {} : { args: { to: recipients } }),
        fromBlock,
        toBlock,
        strict: true,
      }),
    recipients === undefined
      ? (block) =>
          watchedPages(state, "deposit_address", (page) =>
            transferLogs(state, block, block, page as Address[]),
          )
      : undefined,
  );
  return found.filter((log) => log.args.value > 0n);
}

/**
 * The token's authorizations used in [from, to], of `nonces` when given (else any: a block the node refuses so is
 * read by the watched invoices' nonces instead, watchedPages).
 */
async function authorizationLogs(
  state: EvmRailState,
  from: bigint,
  to: bigint,
  nonces?: Hex[],
): Promise<AuthorizationUsedLog[]> {
  const { publicClient, token } = state.params;
  return readInHalves(
    from,
    to,
    (fromBlock, toBlock) =>
      publicClient.getLogs({
        address: token.address,
        event: authorizationUsedEvent,
        ...(nonces === undefined ? {} : { args: { nonce: nonces } }),
        fromBlock,
        toBlock,
        strict: true,
      }),
    nonces === undefined
      ? (block) =>
          watchedPages(state, "auth_nonce", (page) => authorizationLogs(state, block, block, page as Hex[]))
      : undefined,
  );
}

/**
 * `read` of every watched invoice's `column` (its deposit address, or its authorization's nonce), depositTopicsPerCallMax
 * at a time, in the column's order (a keyset over its unique index), the logs found put together. For one block the
 * node refuses to give whole (more logs of the token than its provider returns in one call): slow with many invoices
 * watched, but the watcher moves on past the block instead of failing on it every poll.
 */
async function watchedPages<T>(
  state: EvmRailState,
  column: "deposit_address" | "auth_nonce",
  read: (page: string[]) => Promise<T[]>,
): Promise<T[]> {
  const { token, db } = state.params;
  const found: T[] = [];
  let after = "";
  for (;;) {
    const rows = await db.query<{ value: string }>(
      `SELECT DISTINCT ${column} AS value FROM evm_deposits
       WHERE chain_id = $1 AND token = $2 AND ${column} IS NOT NULL AND ${column} > $3 AND watch_until > now()
       ORDER BY 1 LIMIT $4`,
      [state.chainId, token.address.toLowerCase(), after, depositTopicsPerCallMax],
    );
    if (rows.length === 0) return found;
    found.push(...(await read(rows.map((row) => row.value))));
    after = rows.at(-1)!.value;
  }
}

/**
 * A range read whole (depositFilterWatchedMax): the token's transfers and authorizations of [from, to], those to a
 * watched invoice's address or of a watched nonce kept. The invoices are looked up after the logs are read, as the
 * filtered read looks them up after the head: an invoice paid in the range was committed before it was paid.
 */
async function readWhole(state: EvmRailState, from: bigint, to: bigint): Promise<DecodedDeposit[]> {
  const { publicClient, token, db } = state.params;
  const transfers = await transferLogs(state, from, to);
  const authorizations = await authorizationLogs(state, from, to);
  /** Those of `values` (lower case) that a watched invoice of the token has in `column`. */
  const watchedOf = async (column: "deposit_address" | "auth_nonce", values: string[]) => {
    if (values.length === 0) return new Set<string>();
    const rows = await db.query<{ value: string }>(
      `SELECT lower(${column}) AS value FROM evm_deposits
       WHERE chain_id = $1 AND token = $2 AND ${column} = ANY($3::text[]) AND watch_until > now()`,
      [state.chainId, token.address.toLowerCase(), values],
    );
    return new Set(rows.map((row) => row.value));
  };
  const watchedAddresses = await watchedOf("deposit_address", [
    ...new Set(transfers.map((log) => log.args.to.toLowerCase())),
  ]);
  const watchedNonces = await watchedOf("auth_nonce", [
    ...new Set(authorizations.map((log) => log.args.nonce.toLowerCase())),
  ]);
  const logs: DecodedDeposit[] = [];
  for (const log of transfers)
    if (watchedAddresses.has(log.args.to.toLowerCase())) logs.push(transferDeposit(log));
  for (const log of authorizations)
    if (watchedNonces.has(log.args.nonce.toLowerCase()))
      await pushAuthorized(publicClient, token.address, log, logs);
  return logs;
}

type DecodedDeposit = {
  transactionHash: Hex;
  logIndex: number;
  blockNumber: bigint;
  blockHash: Hex;
  eventName: string;
  args: Record<string, unknown>;
};

function decoded(
  log: {
    transactionHash: Hex | null;
    logIndex: number | null;
    blockNumber: bigint | null;
    blockHash: Hex | null;
  },
  eventName: string,
  args: Record<string, unknown>,
): DecodedDeposit {
  if (
    log.transactionHash === null ||
    log.logIndex === null ||
    log.blockNumber === null ||
    log.blockHash === null
  )
    throw new EvmWatcherError("a pending log came back", { details: eventName });
  return {
    transactionHash: log.transactionHash,
    logIndex: log.logIndex,
    blockNumber: log.blockNumber,
    blockHash: log.blockHash,
    eventName,
    args,
  };
}

/**
 * The Transfer the authorization made, or null. An EIP-3009 token (OpenZeppelin's ERC3009 draft behind TestUSD,
 * Circle's FiatTokenV2 behind USDC) emits AuthorizationUsed(authorizer, nonce) and then, from its `_transfer`,
 * that authorization's Transfer: the log right after it in the transaction. So the pair is found by the
 * authorizer AND the nonce — never the payer's first Transfer, which in a batch carrying two authorizations of
 * the same payer may be the other one's.
 */
async function authorizedTransfer(
  publicClient: PublicClient<Transport, Chain>,
  token: Address,
  log: { transactionHash: Hex | null; args: { authorizer: Address; nonce: Hex } },
): Promise<{ to: Address; value: bigint } | null> {
  if (log.transactionHash === null) return null;
  const receipt = await publicClient.getTransactionReceipt({ hash: log.transactionHash });
  const logs = [...(receipt.logs as Log[])].sort((a, b) => (a.logIndex ?? 0) - (b.logIndex ?? 0));
  const used = logs.findIndex((entry) => {
    if (!isAddressEqual(entry.address, token)) return false;
    const [parsed] = parseEventLogs({ abi: testUsdAbi, eventName: "AuthorizationUsed", logs: [entry] });
    return (
      parsed !== undefined &&
      isAddressEqual(parsed.args.authorizer, log.args.authorizer) &&
      parsed.args.nonce.toLowerCase() === log.args.nonce.toLowerCase()
    );
  });
  const next = used === -1 ? undefined : logs[used + 1];
  if (next === undefined || !isAddressEqual(next.address, token)) return null;
  const [transfer] = parseEventLogs({ abi: testUsdAbi, eventName: "Transfer", logs: [next] });
  if (transfer === undefined || !isAddressEqual(transfer.args.from, log.args.authorizer)) return null;
  return { to: transfer.args.to, value: transfer.args.value };
}

function depositLogOf(row: EventRow): DepositLog {
  const args = row.args;
  const base = {
    txHash: row.tx_hash,
    logIndex: row.log_index,
    blockNumber: row.block_number,
    blockHash: row.block_hash,
    generation: row.generation,
  };
  if (row.event_name === "Transfer")
    return {
      ...base,
      kind: "transfer",
      from: String(args.from) as Address,
      to: String(args.to) as Address,
      value: BigInt(String(args.value)),
    };
  return {
    ...base,
    kind: "authorization",
    authorizer: String(args.authorizer) as Address,
    nonce: String(args.nonce) as Hex,
    to: String(args.to) as Address,
    value: BigInt(String(args.value)),
  };
}

/**
 * What a deposit log pays: the invoice (by its address, or by the (authorizer, nonce) it was bound to), the payer
 * and the amount; null: not ours. An EIP-3009 nonce is in its authorizer's own nonce space and public once its
 * transaction is broadcast: anyone may use the same nonce from his own address, so the nonce alone names no
 * invoice: the authorizer must be the payer the invoice was bound to (auth_from, set before the gateway sends;
 * both columns are stored lower-case), and the transfer must pay the `to` it was bound with (auth_to: the hot wallet
 * then; a row bound before evm migration 0023 that no send named has none, read as the hot wallet now). Before, only
 * the hot wallet now: once the operator rotated its key, an authorization bound before and mined after paid the old
 * wallet, which the operator holds, and was never credited. A transfer to an address never bound is not ours.
 */
async function invoiceOf(
  state: EvmRailState,
  log: DepositLog,
): Promise<{ reference: string; payer: Address; amount: bigint } | null> {
  const token = state.params.token.address.toLowerCase();
  const [row] = await state.params.db.query<{ reference: string }>(
    log.kind === "transfer"
      ? "SELECT reference FROM evm_deposits WHERE chain_id = $1 AND token = $2 AND deposit_address = $3"
      : `SELECT reference FROM evm_deposits
         WHERE chain_id = $1 AND token = $2 AND auth_nonce = $3 AND auth_from = $4
           AND coalesce(auth_to, $5) = $6`,
    log.kind === "transfer"
      ? [state.chainId, token, log.to.toLowerCase()]
      : [
          state.chainId,
          token,
          log.nonce.toLowerCase(),
          log.authorizer.toLowerCase(),
          state.account.address.toLowerCase(),
          log.to.toLowerCase(),
        ],
  );
  if (row === undefined) return null;
  return {
    reference: row.reference,
    payer: log.kind === "transfer" ? log.from : log.authorizer,
    amount: log.value,
  };
}

function evidenceOf(state: EvmRailState, log: DepositLog): EvmEvidence {
  return {
    rail: "evm",
    chainId: state.chainId,
    txHash: log.txHash,
    logIndex: log.logIndex,
    blockNumber: log.blockNumber,
  };
}

/**
 * A reversal a reorg made of this transfer — the same transaction, to the same invoice, of the same amount (its log's
 * place in its block may differ on the new branch) — that nothing gave back yet, or that this log gave back (asked
 * again after a crash); null when none stands.
 */
async function standingReorg(
  state: EvmRailState,
  log: DepositLog,
  paid: { reference: string; amount: bigint },
): Promise<{ logIndex: number; generation: number } | null> {
  const [row] = await state.params.db.query<{ log_index: number; generation: number }>(
    `SELECT log_index, generation FROM evm_deposit_reorgs
     WHERE chain_id = $1 AND token = $2 AND tx_hash = $3 AND reference = $4 AND amount = $5::numeric
       AND (reinstated_by IS NULL OR reinstated_by = $6)
     ORDER BY reinstated_by NULLS LAST, generation DESC, log_index LIMIT 1`,
    [
      state.chainId,
      state.params.token.address.toLowerCase(),
      log.txHash.toLowerCase(),
      paid.reference,
      paid.amount.toString(),
      receiptKey(log),
    ],
  );
  return row === undefined ? null : { logIndex: Number(row.log_index), generation: Number(row.generation) };
}

/** The reversal this log's `final` gave back (or was about to: its mark is set first), or null. */
async function reinstatedBy(
  state: EvmRailState,
  log: DepositLog,
): Promise<{ logIndex: number; generation: number } | null> {
  const [row] = await state.params.db.query<{ log_index: number; generation: number }>(
    `SELECT log_index, generation FROM evm_deposit_reorgs
     WHERE chain_id = $1 AND token = $2 AND tx_hash = $3 AND reinstated_by = $4`,
    [state.chainId, state.params.token.address.toLowerCase(), log.txHash.toLowerCase(), receiptKey(log)],
  );
  return row === undefined ? null : { logIndex: Number(row.log_index), generation: Number(row.generation) };
}

/** The key of the reversal a reorg made of the log at (logIndex, generation) of `log`'s transaction. */
const reorgKey = (logIndex: number, generation: number, log: DepositLog) =>
  `reorg:${receiptKey({ ...log, logIndex, generation })}`;

/** The check that `log` still stands as this generation, its row locked until the credit commits (migration 0021). */
const standsOf = (state: EvmRailState, log: DepositLog) => ({
  check: "evm_watch_event_stands",
  args: [state.chainId, state.params.token.address.toLowerCase(), log.txHash, log.logIndex, log.generation],
});

/** The receipt's key among an invoice's receipts: its log, and how often a reorg brought it back. */
const receiptKey = (log: DepositLog) => `${log.txHash.toLowerCase()}:${log.logIndex}#${log.generation}`;

export function depositSink(
  state: EvmRailState,
  handler: () => RailEventHandler | null,
): WatchSink<DepositLog> {
  const deliver = async (event: RailEvent) => {
    const handle = handler();
    if (handle === null) throw new EvmRailError("a deposit is final before the rail has an event handler");
    return (await handle(event)) ?? "applied";
  };
  return {
    // Seen, not final: nothing is credited (the invoice shows nothing until the confirmations).
    async seen() {},
    async final(log) {
      const paid = await invoiceOf(state, log);
      if (paid === null) return;
      const reversed = await standingReorg(state, log, paid);
      if (reversed !== null) {
        // Mined again after a reorg took it away once credited: its reversal is given back, not a second payment. The
        // reversal is marked as this log's before it is given back, so that a reorg removing this log finds what its
        // `final` may have given back (removed, below) even if the process stops between the two.
        await state.params.db.query(
          `UPDATE evm_deposit_reorgs SET reinstated_by = $6
           WHERE chain_id = $1 AND token = $2 AND tx_hash = $3 AND log_index = $4 AND generation = $5`,
          [
            state.chainId,
            state.params.token.address.toLowerCase(),
            log.txHash.toLowerCase(),
            reversed.logIndex,
            reversed.generation,
            receiptKey(log),
          ],
        );
        // Checked in the give-back's own transaction, as a receipt's credit is (below). Before, a give-back that
        // committed after the watcher that took over the lease had removed this log again (finding nothing given back
        // yet, and dropping the mark above) stood with nothing on chain: the removal held again after the call found
        // no mark, and took nothing.
        await deliver({
          kind: "reinstated",
          reference: paid.reference,
          key: reorgKey(reversed.logIndex, reversed.generation, log),
          evidence: evidenceOf(state, log),
          stands: standsOf(state, log),
        });
      } else {
        const block = await state.params.publicClient.getBlock({ blockHash: log.blockHash });
        await deliver({
          kind: "received",
          reference: paid.reference,
          amount: paid.amount,
          evidence: evidenceOf(state, log),
          key: receiptKey(log),
          payer: paid.payer,
          receivedAtMs: Number(block.timestamp) * 1000,
          // Checked in the credit's own transaction: the log still stands as this generation, its row locked until the
          // credit commits (migration 0021). A reorg's removal marked meanwhile (another watcher took the lease while
          // this call waited) refuses the credit; one marked after it waits for the commit and takes the credit back.
          // Before, the credit could commit after that removal had found nothing to take back, and stood with nothing
          // on chain if this process died before its watcher read the event again (watcher-poll.ts removedDuringCall).
          stands: standsOf(state, log),
        });
      }
      if (log.kind === "transfer")
        await state.params.db.query(
          `UPDATE evm_deposits SET sweep_due_at = now()
           WHERE chain_id = $1 AND token = $2 AND reference = $3`,
          [state.chainId, state.params.token.address.toLowerCase(), paid.reference],
        );
    },
    async removed(log, wasFinal) {
      // Removed before its `final` was called: never credited, so there is nothing to undo.
      if (!wasFinal) return;
      const paid = await invoiceOf(state, log);
      if (paid === null) return;
      // What its `final` credited: the reversal it gave back, marked as this log's (this log mined again after a
      // reorg), or else its receipt. Only this log's own mark: another log's record of the same transaction (a second
      // transfer of the same amount to the address, removed a moment ago by this very reorg) is not what this one did.
      const given = await reinstatedBy(state, log);
      const takes =
        given === null
          ? { receipt: receiptKey(log) }
          : { reinstated: reorgKey(given.logIndex, given.generation, log) };
      const reorg = [
        state.chainId,
        state.params.token.address.toLowerCase(),
        log.txHash.toLowerCase(),
        log.logIndex,
        log.generation,
      ];
      // Kept first: the same log mined again gives this reversal back (final, above).
      await state.params.db.query(
        `INSERT INTO evm_deposit_reorgs (chain_id, token, tx_hash, log_index, generation, reference, amount)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
        [...reorg, paid.reference, paid.amount.toString()],
      );
      // The credit named, so that one whose `final` was called but never made it (the call failed first) takes nothing
      // back: the gateway answers not_ours. Before, only a posted event was reversed, and a credit whose event had not
      // yet moved to posted (held, or a crash between the two) stood after the reorg with nothing on chain.
      const verdict = await deliver({
        kind: "reversed",
        reference: paid.reference,
        key: reorgKey(log.logIndex, log.generation, log),
        amount: paid.amount,
        evidence: evidenceOf(state, log),
        takes,
      });
      if (verdict === "not_ours") {
        // Nothing was taken: the same log mined again is a receipt (or gives back the reversal before), not a reversal
        // given back; and a reversal this log was to give back, and did not, stands again for the next mining.
        await state.params.db.query(
          `DELETE FROM evm_deposit_reorgs
           WHERE chain_id = $1 AND token = $2 AND tx_hash = $3 AND log_index = $4 AND generation = $5
             AND reinstated_by IS NULL`,
          reorg,
        );
        if (given !== null)
          await state.params.db.query(
            `UPDATE evm_deposit_reorgs SET reinstated_by = NULL
             WHERE chain_id = $1 AND token = $2 AND tx_hash = $3 AND reinstated_by = $4`,
            [reorg[0], reorg[1], reorg[2], receiptKey(log)],
          );
        return;
      }
      state.logger.error(
        { txHash: log.txHash, reference: paid.reference },
        "a reorg removed a credited deposit; its credit is reversed",
      );
    },
  };
}
