// The send journal: how the EVM rail sends a transaction at most once per key. A call is signed, its hash and
// raw bytes stored (evm_sends), and only then broadcast. Sending under the same key again finds the stored
// transaction and broadcasts the same bytes again (harmless if the node has them, needed if it lost them), so a
// retry can only ever land the one transaction. Sends are serialized so that nonces are handed out in order.
import type {
  Account,
  Address,
  Chain,
  Hex,
  PublicClient,
  TransactionReceipt,
  Transport,
  WalletClient,
} from "viem";
import { keccak256 } from "viem";
import type { Db, RailFailureCode } from "../../core/index.ts";
import { EvmRailError, errorText, nodeUnreachable, shortMessage, viemDetails } from "./errors.ts";
import { currentGasFees, type GasPolicy, gweiText } from "./gas.ts";
import { failureCodeOf, revertName } from "./reverts.ts";

/** One stored send; `attempt_id` is the key (a payment attempt's id, or a prefixed splitter-call key). */
export type SendRow = { attempt_id: string; tx_hash: `0x${string}`; raw_tx: `0x${string}`; nonce: number };

/**
 * A call gas estimation says would revert, that the node did not answer, or whose gas would cost more than the
 * policy's cap (fee_above_max): nothing was signed, stored or sent.
 */
export type SendRefused = { status: "failed"; code: RailFailureCode; revert: string | null; message: string };

/** A contract call to send. */
export type Call = { to: Address; data: Hex };

export type SendJournal = {
  readonly db: Db;
  readonly publicClient: PublicClient<Transport, Chain>;
  readonly walletClient: WalletClient<Transport, Chain, Account>;
  readonly account: Account;
  readonly chainId: number;
  readonly confirmations: number;
  readonly receiptTimeoutMs: number;
  /** What every transaction offers for gas (EIP-1559 fees from the latest base fee, capped). */
  readonly gas: GasPolicy;
  /** The last send queued: each send waits for it, so nonces are assigned in order. */
  queue: Promise<unknown>;
};

export function createSendJournal(params: {
  db: Db;
  publicClient: PublicClient<Transport, Chain>;
  walletClient: WalletClient<Transport, Chain, Account>;
  confirmations: number;
  receiptTimeoutMs: number;
  gas: GasPolicy;
}): SendJournal {
  return {
    ...params,
    account: params.walletClient.account,
    chainId: params.publicClient.chain.id,
    queue: Promise.resolve(),
  };
}

/** Runs `fn` after every send queued before it: nonces are assigned in order. */
export function serialized<T>(journal: SendJournal, fn: () => Promise<T>): Promise<T> {
  const run = journal.queue.then(fn, fn);
  journal.queue = run.catch(() => undefined); // the queue goes on; the caller still sees this run's error
  return run;
}

/** The send stored under `key`, rebroadcast; or a new one made by `prepare` (run only when there is none). */
export function sendOnce(
  journal: SendJournal,
  key: string,
  prepare: () => Promise<Call | SendRefused>,
): Promise<SendRow | SendRefused> {
  return serialized(journal, async () => {
    const [existing] = await journal.db.query<SendRow>(
      "SELECT attempt_id, tx_hash, raw_tx, nonce FROM evm_sends WHERE attempt_id = $1",
      [key],
    );
    if (existing !== undefined) {
      await broadcast(journal, existing); // harmless if the node has it; needed if it lost it
      return existing;
    }
    const call = await prepare();
    if ("status" in call) return call;
    return signAndStore(journal, key, call);
  });
}

/**
 * Signs a call with the policy's fees, stores it under `key`, then broadcasts it. A base fee above the cap, or a
 * revert in gas estimation, sends nothing.
 */
async function signAndStore(journal: SendJournal, key: string, call: Call): Promise<SendRow | SendRefused> {
  const { walletClient } = journal;
  let request: Awaited<ReturnType<typeof walletClient.prepareTransactionRequest>>;
  try {
    const fees = await currentGasFees(journal.publicClient, journal.gas);
    if (fees.kind === "above_max")
      return {
        status: "failed",
        code: "fee_above_max",
        revert: null,
        message: `the base fee (${gweiText(fees.baseFeeWei)}) and the tip are above the rail's max fee (${gweiText(fees.maxFeeWei)})`,
      };
    request = await walletClient.prepareTransactionRequest({
      account: journal.account,
      chain: walletClient.chain,
      to: call.to,
      data: call.data,
      type: "eip1559",
      maxFeePerGas: fees.maxFeePerGas,
      maxPriorityFeePerGas: fees.maxPriorityFeePerGas,
    });
  } catch (error) {
    // Gas estimation runs the call: a revert here means it cannot succeed now; a node out of reach has said
    // nothing about it. Either way nothing was sent.
    const revert = revertName(error);
    const code = revert === null && nodeUnreachable(error) ? "rail_unavailable" : failureCodeOf(revert);
    return { status: "failed", code, revert, message: revert ?? shortMessage(error) };
  }
  const raw = await walletClient.signTransaction(
    request as Parameters<typeof walletClient.signTransaction>[0],
  );
  const row: SendRow = {
    attempt_id: key,
    tx_hash: keccak256(raw),
    raw_tx: raw,
    nonce: Number(request.nonce),
  };
  await journal.db.query(
    "INSERT INTO evm_sends (attempt_id, chain_id, tx_hash, raw_tx, nonce) VALUES ($1, $2, $3, $4, $5)",
    [row.attempt_id, journal.chainId, row.tx_hash, row.raw_tx, row.nonce],
  );
  await broadcast(journal, row);
  return row;
}

async function broadcast(journal: SendJournal, row: SendRow): Promise<void> {
  try {
    await journal.publicClient.sendRawTransaction({ serializedTransaction: row.raw_tx });
  } catch (error) {
    // "already known" or "nonce too low" means the node has seen these bytes (or mined them): the receipt decides.
    const text = errorText(error).toLowerCase();
    if (!text.includes("known") && !text.includes("nonce"))
      throw new EvmRailError(`broadcast of ${row.tx_hash} failed`, {
        details: viemDetails(error),
        cause: error,
      });
  }
}

/** The send's receipt once it has the configured confirmations; null when none came within receiptTimeoutMs. */
export async function receiptOf(journal: SendJournal, row: SendRow): Promise<TransactionReceipt | null> {
  return journal.publicClient
    .waitForTransactionReceipt({
      hash: row.tx_hash,
      confirmations: journal.confirmations,
      timeout: journal.receiptTimeoutMs,
    })
    .catch(() => null);
}
