// The one contract every rail implements. A rail is added by one folder under adapters/ and one line in
// gateway/app.ts. Errors from the rail's own stack (JSON-RPC, gRPC, HTTP) are translated into these values
// at the adapter boundary; nothing above it sees them raw.
import type { Destination, DestinationKind, RailKind } from "./destinations.ts";
import type { Asset } from "./money.ts";

/** A price of one asset in USD micro-units per one minor unit, as a rational: exact, no float. */
export type UsdRate = { readonly microUsd: bigint; readonly perMinorUnits: bigint };

/**
 * How a rail's network fee for one payment is estimated. Absent: `networkFeeMicroUsd` as it stands.
 * - `evm_gas`: gas units × gas price (wei) × the native token's USD rate (`usdRates[nativeAsset]`, per minor unit of
 *   it), over `weiPerMinorUnit` (how many wei one minor unit is: 10^9 for ETH kept in gwei; absent, 1: kept in wei).
 * - `lightning_routing`: the routing-fee estimate from the rail's quote, base + parts per million of the
 *   amount, in the rail's asset (millisatoshi).
 */
export type NetworkFeeModel =
  | {
      readonly kind: "evm_gas";
      readonly gasUnits: bigint;
      readonly gasPriceWei: bigint;
      readonly nativeAsset: string;
      readonly weiPerMinorUnit?: bigint;
    }
  | { readonly kind: "lightning_routing"; readonly base: bigint; readonly ppm: bigint };

/** The circuit breaker's view of a rail: open excludes it, half_open lets probes through. */
export type CircuitState = "closed" | "open" | "half_open";

/**
 * Why a rail is unavailable, as far as it knows: `not_started` (not started, or stopped), `journal_torn` (its journal
 * refuses every write since a write, cut or sync failed, until the gateway restarts), `journal_lock_lost` (another
 * process took its journal over), `node_unreachable` (its node, LND or the chain's RPC, did not answer its last check,
 * or failed it), `node_not_synced` (LND answers, not synced to its chain yet), `token_unreadable` (the chain's node
 * answers, but the configured token's balanceOf does not: no contract at that address on this chain, or one that
 * reverts), `provider_unreachable` (its provider, Stripe, failed its last health check).
 */
export type RailUnavailableCode =
  | "not_started"
  | "journal_torn"
  | "journal_lock_lost"
  | "node_unreachable"
  | "node_not_synced"
  | "token_unreadable"
  | "provider_unreachable";

/**
 * A stable code and a line for the operator. The message is shown without an API key (GET /healthz): a fixed text,
 * at most with an error's code or name (EIO, api_connection_error), never an address, a path, a credential or a
 * provider's own message; those are in the rail's logs.
 */
export type RailUnavailable = { readonly code: RailUnavailableCode; readonly message: string };

/** What one rail offers at the moment its snapshot was taken. Amounts are in the rail's asset. */
export type RailSnapshot = {
  readonly rail: string; // the rail's id: "internal", "evm", "lightning", "fiat"
  readonly kind: RailKind;
  readonly asset: Asset;
  readonly available: boolean; // healthy and started
  /**
   * Why `available` is false, in the same look; absent while it is true, and from a rail that cannot say why. Read by
   * the health routes only: the router reads `available` alone.
   */
  readonly unavailable?: RailUnavailable;
  readonly reaches: readonly DestinationKind[];
  /**
   * The least and the most one payment on this rail may be, in or out, in its asset's minor units: the provider's
   * own limits (Stripe's 99,999,999 minor units for a USD charge — its eight-digit maximum — and its minimum; a
   * Lightning invoice's or payment's ceiling; on an EVM chain, what the ledger holds). The gateway checks them
   * before it asks the rail anything (the router before `execute`, the settlement before `receive`), so a rail's
   * own check is a second line, never the only one.
   */
  readonly amountMin: bigint;
  readonly amountMax: bigint;
  /** What the rail can send right now (hot-wallet balance, outbound channel capacity); null: not limited. */
  readonly liquidity: bigint | null;
  /** Provider fee: fixed part plus a proportional part in parts per million of the amount, in the rail's asset. */
  readonly feeFixed: bigint;
  readonly feePpm: bigint;
  /** Network fee estimate for one payment (gas × price, routing fee), in USD micro-units. */
  readonly networkFeeMicroUsd: bigint;
  readonly latencyMs: number; // expected time to finality
  /**
   * Recent outcomes of attempts on this rail, within the router's window. Written by the router's learning
   * (gateway/router/learning.ts) from what the payments service saw; a rail leaves them out. Absent: 0.
   */
  readonly successes?: number;
  readonly failures?: number;
  readonly takenAtMs: number;
  /** The smallest provider fee charged (a PSP's minimum), in the rail's asset. Absent: 0. */
  readonly feeMin?: bigint;
  /** Replaces `networkFeeMicroUsd` with a model computed from its inputs. */
  readonly networkFee?: NetworkFeeModel;
  /** Spread to buy this rail's asset with another asset, parts per million, when the snapshot names none for the pair. */
  readonly fxSpreadPpm?: bigint;
  /** The circuit breaker's state, written by the router's learning like the counts. Absent: closed. */
  readonly circuit?: CircuitState;
  /** The EVM chain the rail settles on; an address destination that names another chain is out of its reach. */
  readonly chainId?: number;
};

/**
 * A rail's network fee for one destination and amount, asked before routing (a route query, a probe): the model
 * that replaces the snapshot's for this payment, or `unreachable` when the rail found no way there.
 */
export type NetworkFeeEstimate = NetworkFeeModel | { readonly kind: "unreachable"; readonly detail: string };

/** Proof that money moved on a rail; it rides on the ledger transfer that mirrors the movement. */
export type SettlementEvidence =
  | { rail: "internal" }
  | { rail: "evm"; chainId: number; txHash: `0x${string}`; logIndex: number; blockNumber: bigint }
  | { rail: "lightning"; paymentHash: string; preimage: string }
  | { rail: "fiat"; pspId: string }
  /** A rail with no evidence kind of its own: its id and the provider's reference for the movement. */
  | { rail: "external"; railId: string; reference: string };

/** One try at paying out on one rail. `id` is the attempt's idempotency key on that rail. */
export type OutgoingAttempt = {
  readonly id: string;
  readonly paymentId: string;
  /**
   * The tenant the attempt pays for. A rail shares out what it holds for everyone by it (the EVM hot wallet's send
   * queue, Lightning's places in flight): one tenant's burst takes its share, never every other tenant's place.
   */
  readonly tenantId: string;
  readonly amount: bigint; // in the rail's asset
  readonly destination: Destination;
  readonly feeMax: bigint; // in the rail's asset, from the router's quote
  /**
   * The gateway may have asked for this attempt before without keeping the answer (recovery after a stop, a crash,
   * or an outcome still unknown). A rail that keeps no record of an ask whose answer was lost may look for what it
   * made before making it again.
   */
  readonly resumed?: boolean;
};

export type RailFailureCode =
  | "rail_unavailable"
  | "insufficient_liquidity"
  | "unreachable_destination"
  | "fee_above_max"
  | "expired"
  | "rejected";

/**
 * What a rail paid to move money, beyond the amount itself. `fee` on an outcome is in the rail's own asset (a
 * Lightning routing fee, a PSP's fee); a fee paid in another asset (gas, in the chain's native token) is a
 * FeePaid of its own. `detail` is what shows it (gas used × effective gas price, the PSP's balance transaction).
 */
export type FeePaid = {
  readonly asset: Asset;
  readonly amount: bigint;
  readonly detail: Readonly<Record<string, string>>;
};

/** A payout that went through: its proof, the fee it cost in the rail's asset, and any fee paid in another asset. */
export type AttemptSucceeded = {
  status: "succeeded";
  evidence: SettlementEvidence;
  fee: bigint;
  /** What shows `fee` (a PSP's balance transaction), when the rail has it. */
  feeDetail?: Readonly<Record<string, string>>;
  /** A fee paid in another asset than the rail's: gas, in the native token. */
  nativeFee?: FeePaid;
};

export type AttemptOutcome =
  | AttemptSucceeded
  | { status: "in_flight"; reference: string } // the final outcome arrives as a RailEvent
  | {
      status: "failed";
      code: RailFailureCode;
      message: string;
      retryElsewhere: boolean;
      /**
       * The rail keeps this answer for the attempt id: asked again, it answers the same and never pays it. Absent: a
       * rail that could not be reached, asked again, may try anew (its first answer says nothing for good).
       */
      final?: boolean;
      /**
       * Refused for load, not for ill health: the rail's queue full, or the paying tenant's share of it (its other
       * payments in flight). Says nothing of whether the rail works, so the router's circuit does not count it: counted,
       * one tenant holding its share full would open the rail's circuit for every tenant.
       */
      busy?: true;
    };

/**
 * A fee the rail's provider took out of what the rail holds (`amount` > 0), or gave back into it (< 0), beside the
 * money an event moves: Stripe's processing fee on a card payment, its dispute fee and that fee returned when the
 * dispute is won. `id` is the provider's own name for it (a balance transaction), the same on every delivery: the
 * gateway books each id once, from the rail's fee account against its clearing account, so that the clearing
 * account follows the provider's balance.
 */
export type RailFee = { readonly id: string; readonly amount: bigint };

/**
 * A rail's check that what its event tells still stands (a `received` or `reinstated` event's `stands`): the rail's
 * SQL function `check`, called with `args` in the transaction that applies the event.
 */
export type RailCheck = { readonly check: string; readonly args: readonly unknown[] };

/**
 * Money a payout's provider took back from the payee after the payout was made, and gave back to the platform's
 * balance (a Stripe transfer reversal, whole or in part), in the rail's asset. `key` is the provider's own name for it
 * (a TransferReversal's id), the same on every delivery: the gateway books each key once, and never more in all than
 * the payout's amount.
 */
export type PayoutReversal = { readonly key: string; readonly amount: bigint };

/**
 * What a rail reports on its own, on a stream (LND, chain logs) or from its provider's webhooks: the end of an
 * attempt in flight (with what the provider has taken back of that payout since, when it tells it: each reversal of a
 * Stripe transfer), money that came in, and money taken back from what came in (a dispute, a refund of a
 * top-up) or given back after all (a dispute won, a refund failed); and the operator's own funds the provider moved
 * (a Stripe payout of the platform's balance to the operator's bank). `reference` is the one the rail was given in
 * `receive`; `key` names one reversal, so a second partial refund is a second reversal.
 */
export type RailEvent =
  | ({
      kind: "attempt_succeeded";
      attemptId: string;
      /** What the provider has taken back of the payout since (a Stripe transfer reversal), as it lists it now. */
      reversals?: readonly PayoutReversal[];
    } & Omit<AttemptSucceeded, "status">)
  | {
      kind: "attempt_failed";
      attemptId: string;
      code: RailFailureCode;
      message: string;
      retryElsewhere: boolean;
    }
  | {
      kind: "received";
      reference: string;
      amount: bigint;
      evidence: SettlementEvidence;
      /** Names this receipt among several for one reference (a second transfer to a deposit address); absent: the one receipt. */
      key?: string;
      /** Who paid, when the rail knows (the EVM address a token transfer came from): where a refund goes back to. */
      payer?: string;
      /** When the money arrived on the rail (a block's timestamp); absent: when the event is applied. */
      receivedAtMs?: number;
      /** What the provider took for it (a card payment's processing fee). */
      fees?: readonly RailFee[];
      /**
       * A check the receipt's credit makes in its own transaction, on the gateway's database, where the rail's tables
       * are too (the gateway migrates them into it and gives the rail its Db): the rail's SQL function `check`, called
       * with `args`, raises when what the event tells no longer stands on the rail, and nothing of the credit is
       * written (the handler rejects). The EVM deposit watcher's: its event's row, locked so that a reorg's removal of
       * the deposit comes after the credit and finds it (adapters/evm migration 0021). A named receipt's (`key`) only.
       */
      stands?: RailCheck;
    }
  | {
      kind: "reversed";
      reference: string;
      key: string;
      amount: bigint;
      evidence: SettlementEvidence;
      /**
       * The one credit it takes back, when it takes back one (a deposit a reorg removed): a receipt (its `key` in
       * `received`), or what a `reinstated` gave back (the reversal's `key`). One never credited (the receipt never
       * booked, the reversal never given back) has nothing to take back: nothing is taken, and the verdict is
       * `not_ours`.
       */
      takes?: { readonly receipt: string } | { readonly reinstated: string };
      /** What the provider took for the reversal (a dispute's fee). */
      fees?: readonly RailFee[];
    }
  | {
      kind: "reinstated";
      reference: string;
      key: string;
      evidence: SettlementEvidence;
      /** The reversal's fees as the provider now has them (a dispute fee given back: a negative one). */
      fees?: readonly RailFee[];
      /**
       * As a receipt's (`received`): the rail's check that what gives the reversal back still stands, made in the
       * give-back's own transaction. The EVM deposit watcher's: the log mined again, whose removal by a reorg then
       * finds the give-back (or refuses it) rather than find none and leave it standing with nothing on chain.
       */
      stands?: RailCheck;
    }
  /**
   * A fee the provider took later than the money it was taken for, which was `received` for `reference` already (a
   * card charge's processing fee, known once its balance transaction exists).
   */
  | { kind: "fee"; reference: string; evidence: SettlementEvidence; fees: readonly RailFee[] }
  /**
   * The operator's own funds the provider moved, not a payment: a Stripe payout of the platform's balance to the
   * operator's bank takes its amount off what the rail holds (an `out` movement), and gives it back if the payout fails
   * or is canceled (an `in` before it). Each movement is booked as the operator's capital, as POST
   * /v1/rails/:rail/capital books it, once per `reference`; those not booked yet are booked in one ledger write (all or
   * none), in their order. One the rail's clearing account does not hold yet is kept, and booked once it does.
   */
  | {
      kind: "capital";
      movements: readonly RailCapitalMovement[];
      /** What the provider took for the movement (an Instant Payout's fee), or gave back (< 0). */
      fees?: readonly RailFee[];
    };

/**
 * One movement of the operator's funds the provider made, in the rail's asset: `reference` is the provider's own name
 * for it, the same on every delivery (and `description` with it).
 */
export type RailCapitalMovement = {
  readonly direction: "in" | "out";
  readonly amount: bigint;
  readonly reference: string;
  readonly description: string;
};

/**
 * What the gateway made of a delivered event. `not_ours`: money in for a reference that is none of the gateway's,
 * or whose evidence is not what the rail offered for it (another PaymentIntent, another payment hash): nothing was
 * booked, and a rail that keeps state of its own from events (a receipt counted as credited, later reversed) must
 * not count it. `applied` (or nothing) otherwise, including an event applied before.
 */
export type RailEventVerdict = "applied" | "not_ours";

/**
 * The one handler a rail delivers its events to. It resolves once the event is durably applied (and applying
 * it again changes nothing), so a rail treats an event as delivered only then, and redelivers otherwise.
 */
// biome-ignore lint/suspicious/noConfusingVoidType: a handler that returns nothing applied the event
export type RailEventHandler = (event: RailEvent) => Promise<RailEventVerdict | void>;

/** Money in: what the gateway asks a rail for, to be paid `amount` (in the rail's asset) for `reference`. */
export type ReceiveRequest = {
  readonly reference: string;
  readonly amount: bigint;
  readonly description: string;
  readonly expirySeconds: number;
};

/**
 * What a payer needs (a BOLT11 invoice, a PaymentIntent's client secret, …) under `instructions`, and the
 * rail's own name for it; or why the rail cannot be paid that. A refusal has created nothing on the rail.
 */
export type ReceiveOutcome =
  | {
      status: "offered";
      railReference: string;
      expiresAtMs: number | null;
      instructions: Readonly<Record<string, string>>;
    }
  | { status: "refused"; code: RailFailureCode | "amount_too_large"; message: string };

/**
 * Money that came in for an invoice, given back to whoever paid it (a Stripe refund of its PaymentIntent). `id` is
 * the refund's idempotency key on the rail: asked again, the rail refunds once and reports the first outcome.
 */
export type ReceivedRefund = {
  readonly id: string;
  /** The invoice the money came in for (`ReceiveRequest.reference`), and the rail's own name for it. */
  readonly reference: string;
  readonly railReference: string;
  readonly amount: bigint; // in the rail's asset
};

/**
 * `in_flight`: the rail took the refund and will say how it ended as a `reversed` (effective) or `reinstated`
 * (failed) event of `reference` whose evidence is this one. A failure moved nothing.
 */
export type ReceivedRefundOutcome =
  | { status: "succeeded"; evidence: SettlementEvidence; fee: bigint }
  | { status: "in_flight"; evidence: SettlementEvidence }
  | { status: "failed"; code: RailFailureCode | "amount_too_large"; message: string };

/**
 * A payer's signed payment for an invoice that the rail submits itself (an EIP-3009 authorization: the payer pays no
 * gas): `fields` are the payer's message and signature, as strings in the rail's own terms. The rail checks them
 * before it submits anything; a refusal has submitted nothing.
 */
export type SignedPayment = { readonly reference: string; readonly fields: Readonly<Record<string, string>> };

export type SignedPaymentRefusal =
  | "signature_invalid"
  | "authorization_mismatch"
  | "authorization_expired"
  | "authorization_used"
  | "payer_insufficient_funds"
  | "invoice_not_payable"
  | "rail_unavailable"
  // The provider (the chain's node) could not be reached to check or send it, or the hot wallet's queue is full:
  // nothing was sent, and the same payment may be sent again shortly (503 with Retry-After, kept under no
  // Idempotency-Key).
  | "rail_unreachable";

/** What a rail_unreachable answer's Retry-After says: a provider's return (LND, a chain's node) takes seconds. */
export const railUnreachableRetryAfterSeconds = 5;

/**
 * `submitted`: on its way (credited by a `received` event once final); `railReference` is its transaction; `taken`,
 * where the rail says, whether its node took the transaction now (false: journaled, broadcast again later, and no
 * receipt can come before that).
 */
export type SignedPaymentOutcome =
  | { status: "submitted"; railReference: string; taken?: boolean }
  | { status: "refused"; code: SignedPaymentRefusal; message: string };

/** An offer to withdraw: the reference `receive` was given, and the rail's own name for what it made. */
export type ReceiveCancellation = { readonly reference: string; readonly railReference: string };

export type ReceiveCancellationOutcome =
  | { status: "cancelled" }
  | { status: "failed"; code: RailFailureCode; message: string };

/** A request from the rail's provider (a webhook), as the server received it: the body's exact bytes. */
export type RailRouteRequest = {
  readonly headers: Readonly<Record<string, string | readonly string[] | undefined>>;
  readonly rawBody: Buffer;
};

/** The answer to a provider: an HTTP status and a JSON body. */
export type RailRouteReply = {
  readonly status: number;
  readonly body: Readonly<Record<string, unknown>>;
  /** Headers of the answer (a 503's Retry-After). */
  readonly headers?: Readonly<Record<string, string>>;
};

/**
 * An HTTP route a rail contributes for its provider's calls, framework-free: the server mounts it outside the
 * API's authentication (the rail authenticates the provider itself, on the raw body, before parsing it).
 */
export type RailRoute = {
  readonly method: "POST";
  /** The full path, under /v1/webhooks/ by convention: "/v1/webhooks/stripe". */
  readonly path: string;
  readonly bodyLimitBytes: number;
  handle(request: RailRouteRequest): Promise<RailRouteReply>;
};

/** Many netted payouts paid in one transaction; `reference` is its idempotency key on the rail. */
export type PayoutBatch = {
  readonly reference: string;
  readonly payouts: ReadonlyArray<{ readonly destination: Destination; readonly amount: bigint }>;
};

/** A payout of a batch that the rail refuses for its destination, by its index in the batch's payouts. */
export type PayoutRefused = {
  readonly index: number;
  readonly code: RailFailureCode;
  readonly message: string;
};

export type PayoutBatchOutcome =
  /** `nativeFee`: a fee paid in another asset than the rail's (an EVM batch's gas), as on a payout. */
  | { status: "succeeded"; evidence: SettlementEvidence; fee: bigint; nativeFee?: FeePaid }
  | { status: "in_flight"; reference: string }
  | {
      status: "failed";
      code: RailFailureCode;
      message: string;
      /**
       * The payouts the batch failed for, when the rail can tell: each is refused for its destination (the same
       * payout to the gateway's own wallet would go), and the others may leave in a batch of their own at once.
       * Absent or empty: the batch failed as a whole (the node, its gas, its funds), and nothing is said of any
       * payee.
       */
      refused?: readonly PayoutRefused[];
    };

/**
 * The contract every rail implements. Required: pay out, report events, a snapshot for the router, a balance
 * for reconciliation. Optional capabilities, which the gateway uses when present: money in (`receive`), the
 * provider's webhook routes (`routes`), and batched payouts (`payoutBatch`, for netting).
 */
export interface Rail {
  readonly id: string;
  readonly kind: RailKind;
  readonly asset: Asset;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** What the router needs; cheap and synchronous, refreshed by the rail in the background. */
  snapshot(): RailSnapshot;
  /** Pays out once. Called again with the same attempt id, it never pays twice: it reports the first outcome. */
  execute(attempt: OutgoingAttempt): Promise<AttemptOutcome>;
  /**
   * Writes ahead what `execute` must record before it pays this attempt (its own journal), while the gateway writes
   * the attempt's reservation, so that `execute` then pays at once. Pays nothing and never rejects: a write that
   * fails is `execute`'s to try again. The gateway calls `execute` once the reservation is made, or `withdraw` when
   * it is not; an attempt left with neither is withdrawn by the rail after a while. Another attempt that would pay
   * the same thing (one invoice) waits meanwhile, since a refused reservation leaves it free. Absent: `execute`
   * writes it.
   */
  prepare?(attempt: OutgoingAttempt): Promise<void>;
  /**
   * Forgets an attempt `prepare` wrote ahead and `execute` never saw (its reservation was refused or failed):
   * nothing of it was sent, and an `execute` of its id later starts afresh. An attempt `execute` has seen, or one
   * the rail does not know, is left as it is.
   */
  withdraw?(attemptId: string): Promise<void>;
  /** Registers the one handler for events; the rail awaits it before it treats an event as delivered. */
  onEvent(handler: RailEventHandler): void;
  /** What the rail holds now (hot wallet, channels, PSP balance), in its asset. */
  balance(): Promise<bigint>;
  /** Money in: asked again with the same reference, it offers the same thing (never a second charge). */
  receive?(request: ReceiveRequest): Promise<ReceiveOutcome>;
  /**
   * Withdraws an offer `receive` made that reached nobody — the gateway could not record its invoice — so that
   * nothing is left payable on the rail for an invoice that does not exist (a PaymentIntent is cancelled). Asked
   * again, it changes nothing. Absent: such an offer is left to expire unpaid (no payer ever saw it).
   */
  cancelReceive?(offer: ReceiveCancellation): Promise<ReceiveCancellationOutcome>;
  /**
   * Whether money came in for an offer `receive` made, by its rail reference (Lightning: the payment hash), asked
   * of the provider once and bounded in time, for when a payer holds proof before the rail's event is booked.
   * Absent: only the rail's events tell.
   */
  lookupReceived?(railReference: string): Promise<boolean>;
  /** Gives money that came in for an invoice back to its payer, once per refund id. */
  refundReceived?(refund: ReceivedRefund): Promise<ReceivedRefundOutcome>;
  /** Money in pushed by the payer: a signed payment for an invoice, checked, then submitted by the rail. */
  submitSignedPayment?(payment: SignedPayment): Promise<SignedPaymentOutcome>;
  /** Routes for the rail's provider (webhooks); their events reach the handler given to `onEvent`. */
  readonly routes?: readonly RailRoute[];
  /** Pays many payouts at once; asked again with the same reference, it reports the first outcome. */
  payoutBatch?(batch: PayoutBatch): Promise<PayoutBatchOutcome>;
  /**
   * Whether the destination is the gateway's own on this rail (its hot wallet, its contracts, a deposit address
   * it issued), on whatever chain the destination names: a payment there moves nothing out of the gateway while
   * the ledger would book it as paid out, so the gateway refuses it before anything is held. Absent: none is.
   */
  ownsDestination?(destination: Destination): Promise<boolean>;
  /**
   * The network fee to this destination for this amount (in the rail's asset), when the snapshot's one model
   * does not fit every destination (Lightning routes). Bounded in time and cached by the rail; null: no better
   * estimate than the snapshot's.
   */
  estimateNetworkFee?(request: {
    destination: Destination;
    amount: bigint;
  }): Promise<NetworkFeeEstimate | null>;
}
