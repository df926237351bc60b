// What the Lightning rail knows, in one object: its settings, the journal's maps, the trackers of payments in
// flight, the event queue and LND's connection and health. The rail's modules (events.ts, send.ts,
// invoices.ts, monitor.ts) are functions of this state; rail.ts builds it and wires them. Nothing else holds
// state: a module's function reads and writes the fields it names, at the moment it runs.
import type { EventEmitter } from "node:events";
import type { AuthenticatedLnd } from "lightning";
import type { Asset, Logger, RailEvent, RailEventHandler, UsdRate } from "../../core/index.ts";
import { LightningRailError } from "./errors.ts";
import type { AnswerCache } from "./fee-cache.ts";
import type { LnurlFetch } from "./lnurl.ts";
import type {
  ForgottenSend,
  LightningRailStore,
  StoredAttempt,
  StoredInvoice,
  StoredOutcome,
} from "./store.ts";

export type LndConnection = {
  /** host:port of LND's gRPC listener */
  readonly socket: string;
  /** tls.cert, base64 or hex */
  readonly cert: string;
  /** macaroon, base64 or hex */
  readonly macaroon: string;
};

export type LightningRailLimits = {
  /** How long execute waits for a final outcome before it answers in_flight. */
  readonly executeWaitMs: number;
  /** How long an attempt prepare wrote ahead waits for execute (or withdraw) before the rail withdraws it. */
  readonly preparedWaitMs: number;
  /** LND's time to find and try routes for one payment. */
  readonly paymentTimeoutMs: number;
  readonly amountMinMsat: bigint;
  readonly amountMaxMsat: bigint;
  /** How long a route's fee (per destination and amount) is reused. */
  readonly feeCacheTtlMs: number;
  /** How long "no route" to a destination is believed: channels open, gossip arrives. */
  readonly feeCacheUnreachableTtlMs: number;
  readonly feeCacheEntriesMax: number;
  /** Route queries on their way at once (distinct destinations and amounts); one more gets no estimate. */
  readonly feeQueriesInFlightMax: number;
  /** How long a payment waits for its route's fee before routing on the snapshot's model. */
  readonly feeEstimateTimeoutMs: number;
  /**
   * The snapshot's routing fee for a destination nobody has asked about: base (msat) plus parts per million of
   * the amount. Not 0: the router's fee cap for LND comes from it.
   */
  readonly unknownRouteFeeBaseMsat: bigint;
  readonly unknownRouteFeePpm: bigint;
  /** Hosts whose Lightning Addresses are asked over plain http (a local LNURL server); every other over https. */
  readonly lnurlHttpHosts: readonly string[];
  /** Health, liquidity and the background fee estimate are refreshed this often. */
  readonly refreshIntervalMs: number;
  readonly reconnectDelayMinMs: number;
  readonly reconnectDelayMaxMs: number;
  /** The most payments in flight at once; one tenant holds at most a quarter of them (send.ts refusal). */
  readonly inFlightMax: number;
  /** Recent outcomes, whose latencies and fees (of the successes) the snapshot takes the medians of. */
  readonly outcomeWindowMax: number;
  readonly eventRetryDelayMs: number;
  /**
   * Failures of one event's handler after which it is set aside (journalled, for an invoice), so that the events
   * behind it go on; what is set aside is tried again every setAsideRetryMs, and after a restart.
   */
  readonly eventAttemptsMax: number;
  readonly setAsideRetryMs: number;
  /**
   * Events whose handlers run at once (each event is about a different invoice or attempt); they are still
   * delivered, and the settle index moved, in arrival order.
   */
  readonly eventsConcurrentMax: number;
  /** How long `stop` waits for started event handlers to finish and be delivered. */
  readonly stopWaitMs: number;
  /** Invoice events waiting for the handler; beyond this the subscription pauses and resumes by settle index. */
  readonly pendingEventsMax: number;
  readonly rpcTimeoutMs: number;
  readonly invoiceExpirySecondsMax: number;
  readonly memoLengthMax: number;
  readonly referenceLengthMax: number;
  /** Open invoices checked one by one when the settle index cannot replay them (settle index 0), the newest. */
  readonly openInvoicesCheckMax: number;
  /** How often invoices past their expiry (by expiredInvoiceAskAfterMs) are asked about, to be forgotten or delivered. */
  readonly expiredInvoicesCheckIntervalMs: number;
  /**
   * How long past its expiry an invoice is kept before LND is asked about it: forgotten once LND says it was never
   * paid (cancelled, or expired with nothing held: LND settles nothing after), delivered when it says it was (paid just
   * before it expired, while the rail was stopped). A margin for the clocks, not a retention: every unpaid L402
   * challenge is held in memory until then. Compaction never forgets an invoice by its age alone.
   */
  readonly expiredInvoiceAskAfterMs: number;
};

export const lightningRailLimitsDefault: LightningRailLimits = {
  executeWaitMs: 15_000,
  preparedWaitMs: 60_000,
  paymentTimeoutMs: 60_000,
  amountMinMsat: 1n,
  // 2^32 − 1 satoshis (42.9 BTC): a bound of our own. LND 0.21 sets none on an invoice (one of 4,294,967,296,000 msat
  // was made on regtest); what a payment can carry is its channels' to say.
  amountMaxMsat: 4_294_967_295_000n,
  feeCacheTtlMs: 60_000,
  feeCacheUnreachableTtlMs: 5_000,
  feeCacheEntriesMax: 1_000,
  feeQueriesInFlightMax: 64,
  feeEstimateTimeoutMs: 2_000,
  // About two hops at LND's default base fee (1 sat each), and 0.1 % of the amount.
  unknownRouteFeeBaseMsat: 2_000n,
  unknownRouteFeePpm: 1_000n,
  lnurlHttpHosts: [],
  refreshIntervalMs: 5_000,
  reconnectDelayMinMs: 250,
  reconnectDelayMaxMs: 5_000,
  inFlightMax: 1_000,
  outcomeWindowMax: 100,
  eventRetryDelayMs: 1_000,
  eventAttemptsMax: 10,
  setAsideRetryMs: 60_000,
  eventsConcurrentMax: 16,
  stopWaitMs: 5_000,
  pendingEventsMax: 1_000,
  rpcTimeoutMs: 15_000,
  invoiceExpirySecondsMax: 30 * 24 * 3600,
  memoLengthMax: 639,
  referenceLengthMax: 200,
  openInvoicesCheckMax: 1_000,
  expiredInvoicesCheckIntervalMs: 300_000,
  expiredInvoiceAskAfterMs: 600_000,
};

export type FeeEstimate = { readonly feeMsat: bigint; readonly takenAtMs: number; readonly ageMs: number };

/** LND's answer to "what does this destination cost for this amount": a route's fee, or no way there. */
export type RouteFee =
  | { readonly kind: "route"; readonly feeMsat: bigint }
  | { readonly kind: "unreachable"; readonly detail: string };

export type LightningHealth = {
  readonly connected: boolean;
  readonly syncedToChain: boolean;
  readonly checkedAtMs: number;
  readonly lastError: string | null;
  readonly invoiceSubscription: boolean;
};

export type Liquidity = {
  readonly outboundMsat: bigint;
  readonly inboundMsat: bigint;
  readonly takenAtMs: number;
};

/** One outgoing payment followed until its outcome: its journal entry, LND's stream, who waits for it. */
export type Tracker = {
  readonly attempt: StoredAttempt;
  readonly settled: Promise<StoredOutcome>;
  resolve(outcome: StoredOutcome): void;
  subscription: EventEmitter | null;
  /** The caller was told in_flight (or cannot know): the outcome goes out as an event. */
  eventWanted: boolean;
  /** Sent, but the connection broke: follow it again once LND answers. */
  detached: boolean;
  /** LND was asked about it (sent, or followed): only then can a broken connection detach it. */
  asked: boolean;
  /**
   * Admitted and not sent yet (execute or prepare wrote its journal line, or is writing it): the line's write, true
   * once durable (false: it could not be written, and the attempt is forgotten), and the send to make then. Taken,
   * and so null, by the execute that sends it or the withdraw that forgets it. `expiry`: prepare's timer that
   * withdraws it should neither come.
   */
  unsent: { written: Promise<boolean>; send: () => void; expiry: NodeJS.Timeout | null } | null;
  /**
   * Admitted and neither sent nor forgotten yet: `decided` resolves once it is (or the rail stops), when this is set
   * to null (decide in send.ts); null too for an attempt this process did not admit. What another attempt of its
   * hash waits for (admit).
   */
  undecided: { decided: Promise<void>; resolve: () => void } | null;
  /** How many execute calls wait for the outcome (awaitOutcome). */
  waiting: number;
  lastErrorText: string | null;
  feeMaxMsat: bigint;
  destination: string | null;
  request: string | null;
  readonly startedAtMs: number;
};

/** event null: nothing for the handler, only `delivered` to run in order (a cursor to move). */
export type QueuedEvent = {
  event: RailEvent | null;
  delivered: () => Promise<void>;
  /**
   * Takes the event out of the queue's order once its handler has failed eventAttemptsMax times: writes what a
   * restart needs to try it again, and moves the cursor past it. Absent: never set aside.
   */
  setAside?: () => Promise<void>;
  /** The handler's run, once started: resolves with null, or with its failure. */
  handled?: Promise<unknown | null>;
  /** How many times its handler failed. */
  failures?: number;
};

export type LightningRailState = {
  // ---- settings (fixed at creation) ----
  readonly id: string;
  readonly asset: Asset;
  readonly limits: LightningRailLimits;
  readonly connection: LndConnection;
  readonly store: LightningRailStore;
  readonly now: () => number;
  readonly logger: Logger;
  readonly usdRate: () => UsdRate;
  readonly feeProbe: { readonly destination: string; readonly amountMsat: bigint } | undefined;
  readonly receiveForeignInvoices: boolean;
  /** How Lightning Addresses' LNURL servers are asked: the gateway's egress guard. */
  readonly lnurlFetch: LnurlFetch;
  /**
   * The monitor's scheduleTick, wired by the factory: the one call that goes up, from a stream that broke (the
   * pump's invoice subscription, a payment's stream) to the loop that reconnects.
   */
  readonly scheduleTick: (delayMs: number) => void;

  // ---- LND and the lifecycle ----
  /** Replaced by a fresh client when LND stops answering (see monitor's tick). */
  lnd: AuthenticatedLnd;
  running: boolean;
  handler: RailEventHandler | null;
  keysendSecret: Buffer | null;

  // ---- the journal's maps (store.load on start) ----
  attempts: Map<string, StoredAttempt>;
  /** The last attempt sent for each payment hash (built from `attempts` on start). */
  attemptByHash: Map<string, string>;
  /**
   * Attempts found never taken (send.ts neverTaken), until they have an outcome: each id's first line's time, and what
   * it sent. LND may have taken the send late: a send afresh is of the same invoice, one that LND refuses is followed,
   * and one the rail cannot make is left in flight, never failed.
   */
  forgottenSends: Map<string, ForgottenSend>;
  /**
   * What was said of an attempt found never taken that every recovery pass would say again (a Lightning Address's that
   * LND has payments of which may be its own, left in flight for an operator; LND's payments not listed): by its id,
   * said once (send.ts sayOnce), forgotten when the attempt ends.
   */
  readonly saidOnce: Map<string, Set<string>>;
  invoices: Map<string, StoredInvoice>;
  /** Highest settle index whose invoice the handler has taken. */
  settleIndexDelivered: number;
  /** Highest settle index whose invoice is queued (or delivered). */
  settleIndexQueued: number;

  // ---- outgoing payments ----
  readonly trackers: Map<string, Tracker>;
  /** Payments LND has in flight that no stored attempt accounts for (found on start). */
  unattributed: string[];

  // ---- the event pump ----
  /** Settled invoices queued for the handler, so that a lookup and the subscription do not both report one. */
  readonly invoicesQueued: Set<string>;
  readonly queue: QueuedEvent[];
  pumping: boolean;
  /** Settles when the pump has stopped (at once if it is not running). */
  pumpIdle: Promise<void>;
  invoiceSubscription: EventEmitter | null;
  invoiceBacklog: boolean;
  /** Outcomes set aside (an invoice set aside is marked in `invoices`): emitted again by the retry. */
  readonly outcomesSetAside: Map<string, { attempt: StoredAttempt; outcome: StoredOutcome }>;
  /** When what was set aside was last tried again (0: never, so at the first tick after a start). */
  setAsideRetriedAtMs: number;
  /** When the last pass over long-expired invoices began (0: never), and whether one is running. */
  expiredInvoicesCheckedAtMs: number;
  expiredInvoicesChecking: boolean;
  /**
   * Every invoice of ours that expired before this moment was paid and delivered, is set aside, or is known never to
   * be paid (LND said so): what the gateway's prune of unpaid L402 challenges may delete up to, but the invoices set
   * aside (recorded with it: invoices.ts invoicesSetAside). Moved as each pass over long-expired invoices goes and
   * after it (invoices.ts noteInvoicesKnown), never back; null until the first since the start.
   */
  invoicesKnownBeforeMs: number | null;

  // ---- the monitor ----
  tickTimer: NodeJS.Timeout | null;
  reconnectDelayMs: number;
  health: LightningHealth;
  /** The journal's tear (the store's torn) last logged, so that each is said once (monitor.ts journalTear). */
  tearSaid: unknown;
  /** Whether the journal's lock, lost since the rail started, was logged (monitor.ts journalLockLost). */
  lockLostSaid: boolean;
  /** The BOLT11 network of LND's chain (bolt11.ts invoiceNetworkOf), once LND has said; null before or if unknown. */
  invoiceNetwork: string | null;
  liquidity: Liquidity | null;
  probeEstimate: FeeEstimate | null;
  /** Route fees per destination and amount (fees.ts). */
  readonly feeCache: AnswerCache<RouteFee>;
  readonly recent: { ok: boolean; latencyMs: number; feeMsat: bigint }[];
};

/** Rejects with a LightningRailError when `promise` has not settled within the rail's rpcTimeoutMs. */
export const withTimeout = <T>(s: LightningRailState, promise: Promise<T>, what: string): Promise<T> =>
  new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new LightningRailError(`${what} timed out`, { details: `${s.limits.rpcTimeoutMs} ms` })),
      s.limits.rpcTimeoutMs,
    );
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
