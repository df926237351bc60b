// The EVM rail's public types: its parameters, the splitter calls it submits for others and their outcome.
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
import type {
  Asset,
  Db,
  FeePaid,
  Logger,
  Rail,
  RailFailureCode,
  SettlementEvidence,
} from "../../core/index.ts";
import type { DepositParams } from "./deposits.ts";
import type { GasPolicy } from "./gas.ts";
import type { SendGasBooker, SendGasPassResult } from "./send-gas.ts";
import type { SweepBooker, SweepPassResult } from "./sweeps.ts";
import type { ChainWatcher } from "./watcher-state.ts";
import type {
  AuthorizationBatchItemRefusal,
  AuthorizationBatchOutcome,
  AuthorizationBatchParams,
} from "./x402-batch.ts";

export type EvmRailParams = {
  id?: string;
  db: Db;
  publicClient: PublicClient<Transport, Chain>;
  walletClient: WalletClient<Transport, Chain, Account>;
  token: { address: `0x${string}`; asset: Asset };
  /** The RevenueSplitter: with it the rail also reaches `evm_split` destinations. */
  splitter?: Address;
  confirmations: number;
  /** EIP-1559 gas: the tip above the latest base fee, and the most paid per gas (above it: fee_above_max). */
  gas: GasPolicy;
  /** Gas of one token transfer, for the fee estimate the router sees. */
  transferGasEstimate: bigint;
  snapshotRefreshMs: number;
  receiptTimeoutMs: number;
  /** A transaction not mined this long after it was signed is replaced (same nonce, fees bumped ≥ 12.5%, within
   * the cap; up to the cap when that is still ≥ 10%) the next time its attempt is executed (recovery does). */
  replaceAfterMs: number;
  /** The most sends the hot wallet's queue holds in this process (sendsQueuedMaxDefault), a quarter per tenant. */
  sendsQueuedMax?: number;
  expectedLatencyMs: number;
  /** Money in (invoices): deposit addresses and EIP-3009 authorizations. Absent: the rail does not receive. */
  deposits?: DepositParams;
  nowMs?: () => number;
  /** Where the rail logs (a child of the app's logger, from the composition root); silent by default. */
  logger?: Logger;
};

export type EvmEvidence = Extract<SettlementEvidence, { rail: "evm" }>;

/** The outcome of a splitter call the gateway submits (not a payment attempt). */
export type EvmCallOutcome =
  /**
   * `gas`: what the transaction's gas cost the hot wallet, in the native token (payout.ts's gasPaid). settleBatch's
   * is its caller's to book (netting does, through payoutBatch); payWithAuthorization's and distribute's are booked
   * by the rail's send-gas pass (send-gas.ts), not by the caller.
   */
  | { status: "succeeded"; evidence: EvmEvidence; amount: bigint; gas: FeePaid }
  /** Sent (and stored) but no receipt within receiptTimeoutMs: call again with the same key to follow it. */
  | { status: "in_flight"; txHash: Hex }
  | { status: "failed"; code: RailFailureCode; message: string; revert: string | null };

/** A payer's EIP-3009 ReceiveWithAuthorization for RevenueSplitter.payWithAuthorization (nonce = authorizationNonceOf(splitId, ref)). */
export type PayWithAuthorizationParams = {
  splitId: Hex;
  from: Address;
  amount: bigint;
  validAfter: bigint;
  validBefore: bigint;
  ref: Hex;
  /** The payer's 65-byte signature of receiveWithAuthorizationTypedData(…). */
  signature: Hex;
};

export type DistributeParams = {
  /** The caller's idempotency key: the same key never sends a second transaction. */
  key: string;
  splitId: Hex;
  /** Reference carried by Distributed; default referenceFromId(key) when the key fits 32 bytes. */
  ref?: Hex;
};

export type SettleBatchParams = {
  payees: readonly Address[];
  amounts: readonly bigint[];
  /** The batch's reference; the contract accepts it once per payer, and it is also the idempotency key. */
  ref: Hex;
};

/** What the hot wallet holds of the chain's native token: in the ledger's minor unit (gwei, rounded down), and in wei. */
export type NativeBalance = { readonly asset: Asset; readonly amount: bigint; readonly wei: bigint };

export type EvmRail = Rail & {
  refresh(): Promise<void>;
  /**
   * The hot wallet's balance of the native token, beside `balance` (the rail's token): what the rail's clearing
   * account in that asset (the gas) mirrors, for reconciliation.
   */
  nativeBalance(): Promise<NativeBalance>;
  /** Submits a payer-signed authorization into a split; keyed by (from, authorization nonce). */
  payWithAuthorization(params: PayWithAuthorizationParams): Promise<EvmCallOutcome>;
  /** Credits a split's accrued token balance to its recipients (RevenueSplitter.distribute). */
  distribute(params: DistributeParams): Promise<EvmCallOutcome>;
  /** Pays many netted payouts from the hot wallet in one transaction (RevenueSplitter.settleBatch). */
  settleBatch(params: SettleBatchParams): Promise<EvmCallOutcome>;
  /** Many x402 transfer authorizations to the hot wallet, each bound to its invoice, in one X402BatchSettler call. */
  settleAuthorizationBatch(params: AuthorizationBatchParams): Promise<AuthorizationBatchOutcome>;
  /**
   * Why a mined batch of settleAuthorizationBatch did not settle one of its authorizations, read from its receipt as
   * settleAuthorizationBatch reads it (x402's reconciliation concludes the items its settler did not); null when the
   * batch settled it.
   */
  authorizationBatchRefusalOf(
    receipt: Pick<TransactionReceipt, "status" | "to" | "logs" | "blockNumber">,
    authorization: { from: Address; nonce: Hex },
  ): Promise<AuthorizationBatchItemRefusal | null>;
  /**
   * One sweep pass: forwarders with confirmed deposits emptied into the hot wallet in a batch; each final sweep's
   * gas handed to `book` before the sweep is done. Nothing to do without deposits or a factory.
   */
  sweepDeposits(book: SweepBooker): Promise<SweepPassResult>;
  /**
   * One pass over this wallet's open sends in the journal: each mined with the confirmations, succeeded or
   * reverted, has its gas handed to `book` when no caller books it (send-gas.ts: the splitter's approve, a reverted
   * payout or netting batch, …), then is done; one never mined is done once the wallet's nonce passed it. A send
   * whose turn throws is logged and tried again next pass.
   */
  sendGasPass(book: SendGasBooker): Promise<SendGasPassResult>;
  /** The deposit watcher, once the rail has started with deposits (tests poll it on demand); null otherwise. */
  depositWatcher(): ChainWatcher | null;
  /**
   * Every transaction of the send `txHash` is one of (the send journal's: its current transaction, then each a fee
   * bump superseded — at most one is mined); empty when the rail sent no transaction with that hash.
   */
  sendHashesOf(txHash: Hex): Promise<Hex[]>;
};
