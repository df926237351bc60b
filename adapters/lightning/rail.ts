// The Lightning rail: LND through the `lightning` package. The two calls on a payment's path (AddInvoice,
// SendPaymentV2) go straight to its authenticated gRPC clients, without the package's wrappers (see addInvoice
// and sendPayment); everything else uses the wrappers.
//   In:  invoices (amount, expiry, memo or description hash) and a subscription to their settlement,
//        caught up by settle index after any disconnect; each settled invoice is one "received" event.
//   Out: BOLT11 and keysend payments with the router's maximum fee. Each attempt's payment hash is
//        written to the store before LND sees the payment, so that a retry or a restarted gateway
//        follows the payment LND already has instead of paying again (LND refuses a second payment of
//        one hash; keysend preimages are derived from the attempt id, so a retry has the same hash).
//   Quote: routing fee estimates from route queries, cached with their age; liquidity; health.
import { createHash, createHmac } from "node:crypto";
import { EventEmitter } from "node:events";
import {
  type AuthenticatedLnd,
  authenticatedLndGrpc,
  decodePaymentRequest,
  getChannelBalance,
  getInvoice,
  getPendingPayments,
  getRouteToDestination,
  getWalletInfo,
  signMessage,
  subscribeToInvoices,
  subscribeToPastPayment,
} from "lightning";
import type {
  AttemptOutcome,
  DestinationKind,
  OutgoingAttempt,
  Rail,
  RailEvent,
  RailEventHandler,
  RailSnapshot,
  UsdRate,
} from "../../core/index.ts";
import { type Asset, assets, divCeil } from "../../core/index.ts";
import { parseBolt11 } from "./bolt11.ts";
import {
  classifyLndError,
  type Failure,
  failureFromFlags,
  flagsFromFailureReason,
  lndErrorText,
} from "./failures.ts";
import {
  type LightningRailStore,
  outcomeRecord,
  type PaymentKind,
  type StoredAttempt,
  type StoredInvoice,
  type StoredOutcome,
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
  /** LND's time to find and try routes for one payment. */
  readonly paymentTimeoutMs: number;
  readonly amountMinMsat: bigint;
  readonly amountMaxMsat: bigint;
  readonly feeCacheTtlMs: number;
  readonly feeCacheEntriesMax: number;
  /** Health, liquidity and the background fee estimate are refreshed this often. */
  readonly refreshIntervalMs: number;
  readonly reconnectDelayMinMs: number;
  readonly reconnectDelayMaxMs: number;
  readonly inFlightMax: number;
  /** Recent outcomes (and latencies) the snapshot counts. */
  readonly outcomeWindowMax: number;
  readonly eventRetryDelayMs: number;
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
  /** Open invoices checked one by one when the settle index cannot replay them (settle index 0). */
  readonly openInvoicesCheckMax: number;
};

export const lightningRailLimitsDefault: LightningRailLimits = {
  executeWaitMs: 15_000,
  paymentTimeoutMs: 60_000,
  amountMinMsat: 1n,
  amountMaxMsat: 4_294_967_295_000n, // 0.043 BTC, the pre-wumbo payment ceiling
  feeCacheTtlMs: 60_000,
  feeCacheEntriesMax: 1_000,
  refreshIntervalMs: 5_000,
  reconnectDelayMinMs: 250,
  reconnectDelayMaxMs: 5_000,
  inFlightMax: 1_000,
  outcomeWindowMax: 100,
  eventRetryDelayMs: 1_000,
  eventsConcurrentMax: 16,
  stopWaitMs: 5_000,
  pendingEventsMax: 1_000,
  rpcTimeoutMs: 15_000,
  invoiceExpirySecondsMax: 30 * 24 * 3600,
  memoLengthMax: 639,
  referenceLengthMax: 200,
  openInvoicesCheckMax: 1_000,
};

/** 100,000 USD per BTC: one millisatoshi is one micro-USD. Used when no rate is passed. */
export const usdRateDefault: UsdRate = { microUsd: 1n, perMinorUnits: 1n };

export type LightningRailParams = {
  readonly id?: string;
  readonly lnd: LndConnection;
  readonly store: LightningRailStore;
  /** USD value of one millisatoshi, for the snapshot's network fee. */
  readonly usdRate?: () => UsdRate;
  /** 32 bytes for keysend preimages; by default derived from a signature of LND's node key. */
  readonly keysendSecret?: Uint8Array;
  /** A node whose route fee stands for "a typical payment" in the snapshot. */
  readonly feeProbe?: { readonly destination: string; readonly amountMsat: bigint };
  /** Also report invoices the rail did not create (reference: the payment hash). Default false. */
  readonly receiveForeignInvoices?: boolean;
  readonly limits?: Partial<LightningRailLimits>;
  readonly now?: () => number;
  readonly log?: (entry: { level: "info" | "warn" | "error"; message: string; detail?: unknown }) => void;
};

export type CreateInvoiceParams = {
  readonly amountMsat: bigint;
  readonly expirySeconds: number;
  /** The gateway's id for what this invoice pays; it comes back on the "received" event. */
  readonly reference: string;
} & (
  | { readonly memo: string; readonly descriptionHash?: never }
  | { readonly descriptionHash: string; readonly memo?: never }
);

export type CreatedInvoice = {
  readonly paymentHash: string;
  readonly request: string;
  readonly amountMsat: bigint;
  readonly expiresAtMs: number;
  readonly reference: string;
};

export type FeeEstimate = { readonly feeMsat: bigint; readonly takenAtMs: number; readonly ageMs: number };

export type FeeEstimateResult =
  | { ok: true; value: FeeEstimate }
  | { ok: false; code: "unreachable_destination" | "rail_unavailable" | "rejected"; message: string };

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

export type LightningRail = Rail & {
  createInvoice(params: CreateInvoiceParams): Promise<CreatedInvoice>;
  estimateFee(params: {
    destination: OutgoingAttempt["destination"];
    amountMsat: bigint;
  }): Promise<FeeEstimateResult>;
  health(): LightningHealth;
  liquidity(): Liquidity | null;
  /** Payments LND has in flight that no stored attempt accounts for (found on start). */
  unattributedInFlight(): readonly string[];
};

export class LightningRailError extends Error {
  override readonly name = "LightningRailError";
  readonly details: string;
  constructor(message: string, details: string, options?: { cause?: unknown }) {
    super(message, options);
    this.details = details;
  }
}

const keysendRecordType = "5482373484";
/** The final hop's CLTV delta of a keysend payment (what `lightning` uses when there is no invoice to say). */
const keysendFinalCltvDelta = 43;
const reaches: readonly DestinationKind[] = ["bolt11", "lightning_node"];
const latencyDefaultMs = 2_000;
const keysendSecretMessage = "switchyard lightning rail keysend secret v1";

type Tracker = {
  readonly attempt: StoredAttempt;
  readonly settled: Promise<StoredOutcome>;
  resolve(outcome: StoredOutcome): void;
  subscription: EventEmitter | null;
  /** The caller was told in_flight (or cannot know): the outcome goes out as an event. */
  eventWanted: boolean;
  /** Sent, but the connection broke: follow it again once LND answers. */
  detached: boolean;
  /** How many execute calls wait for the outcome (awaitOutcome). */
  waiting: number;
  lastErrorText: string | null;
  feeMaxMsat: bigint;
  destination: string | null;
  request: string | null;
  readonly startedAtMs: number;
};

/** event null: nothing for the handler, only `delivered` to run in order (a cursor to move). */
type QueuedEvent = {
  event: RailEvent | null;
  delivered: () => Promise<void>;
  /** The handler's run, once started: resolves with null, or with its failure. */
  handled?: Promise<unknown | null>;
};

export function createLightningRail(params: LightningRailParams): LightningRail {
  const limits: LightningRailLimits = { ...lightningRailLimitsDefault, ...params.limits };
  const id = params.id ?? "lightning";
  const asset: Asset = assets.BTC;
  const now = params.now ?? Date.now;
  const log = params.log ?? (() => {});
  const usdRate = params.usdRate ?? (() => usdRateDefault);
  const store = params.store;

  let lnd: AuthenticatedLnd = authenticatedLndGrpc(params.lnd).lnd;
  let running = false;
  let handler: RailEventHandler | null = null;
  let keysendSecret: Buffer | null = params.keysendSecret ? Buffer.from(params.keysendSecret) : null;

  let attempts = new Map<string, StoredAttempt>();
  let invoices = new Map<string, StoredInvoice>();
  /** Highest settle index whose invoice the handler has taken. */
  let settleIndexDelivered = 0;
  /** Highest settle index whose invoice is queued (or delivered). */
  let settleIndexQueued = 0;
  const trackers = new Map<string, Tracker>();
  /** Settled invoices queued for the handler, so that a lookup and the subscription do not both report one. */
  const invoicesQueued = new Set<string>();
  const queue: QueuedEvent[] = [];
  let pumping = false;
  /** Settles when the pump has stopped (at once if it is not running). */
  let pumpIdle: Promise<void> = Promise.resolve();
  let invoiceSubscription: EventEmitter | null = null;
  let invoiceBacklog = false;
  let tickTimer: NodeJS.Timeout | null = null;
  let reconnectDelayMs = limits.reconnectDelayMinMs;
  let unattributed: string[] = [];

  let health: LightningHealth = {
    connected: false,
    syncedToChain: false,
    checkedAtMs: 0,
    lastError: null,
    invoiceSubscription: false,
  };
  let liquidityState: Liquidity | null = null;
  let probeEstimate: FeeEstimate | null = null;
  const feeCache = new Map<string, FeeEstimate>();
  const recent: { ok: boolean; latencyMs: number; feeMsat: bigint }[] = [];

  const withTimeout = <T>(promise: Promise<T>, what: string): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new LightningRailError(`${what} timed out`, `${limits.rpcTimeoutMs} ms`)),
        limits.rpcTimeoutMs,
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

  // ---- events ------------------------------------------------------------------------------------

  const enqueue = (item: QueuedEvent) => {
    queue.push(item);
    void pump();
  };

  /** Runs the handler; resolves with null when it succeeded, with what it threw or rejected with otherwise. */
  const handle = (current: RailEventHandler, event: RailEvent | null): Promise<unknown | null> =>
    event === null
      ? Promise.resolve(null)
      : Promise.resolve()
          .then(() => current(event))
          .then(
            () => null,
            (error: unknown) => error ?? new LightningRailError("event handler failed", String(error)),
          );

  /**
   * Starts the handlers of the first events (a settlement burst is handled together, so the ledger writes it as
   * one batch) and delivers the oldest once its handler is done, so the journal and the settle index move in
   * arrival order. A failed handler runs again. Once the rail stops, it starts nothing new but still delivers
   * the events whose handlers it had started, in order, up to the first that is not done: `stop` waits for that.
   */
  const pump = async () => {
    if (pumping) return;
    pumping = true;
    let drained: () => void = () => {};
    pumpIdle = new Promise((resolve) => {
      drained = resolve;
    });
    const concurrent = Math.max(1, limits.eventsConcurrentMax);
    try {
      while (handler !== null && queue.length > 0) {
        if (running) {
          const current = handler;
          for (const item of queue.slice(0, concurrent)) item.handled ??= handle(current, item.event);
        }
        const item = queue[0] as QueuedEvent;
        if (item.handled === undefined) break; // stopped: left for the replay after a restart
        try {
          const failure = await item.handled;
          if (failure !== null) throw failure;
          await item.delivered();
          if (queue[0] === item) queue.shift();
        } catch (error) {
          item.handled = undefined; // run it again
          if (!running) break;
          log({ level: "warn", message: "event handler failed; retrying", detail: lndErrorText(error) });
          await new Promise((resolve) => setTimeout(resolve, limits.eventRetryDelayMs));
        }
      }
    } finally {
      pumping = false;
      drained();
    }
    if (running && invoiceBacklog && queue.length < limits.pendingEventsMax / 2) {
      invoiceBacklog = false;
      resubscribeInvoices();
    }
  };

  // ---- outgoing ----------------------------------------------------------------------------------

  const outcomeToResult = (attempt: StoredAttempt, outcome: StoredOutcome): AttemptOutcome =>
    outcome.status === "succeeded"
      ? {
          status: "succeeded",
          evidence: { rail: "lightning", paymentHash: attempt.paymentHash, preimage: outcome.preimage },
          fee: outcome.feeMsat,
        }
      : {
          status: "failed",
          code: outcome.code,
          message: outcome.message,
          retryElsewhere: outcome.retryElsewhere,
        };

  const outcomeToEvent = (attempt: StoredAttempt, outcome: StoredOutcome): RailEvent =>
    outcome.status === "succeeded"
      ? {
          kind: "attempt_succeeded",
          attemptId: attempt.attemptId,
          evidence: { rail: "lightning", paymentHash: attempt.paymentHash, preimage: outcome.preimage },
          fee: outcome.feeMsat,
        }
      : {
          kind: "attempt_failed",
          attemptId: attempt.attemptId,
          code: outcome.code,
          message: outcome.message,
          retryElsewhere: outcome.retryElsewhere,
        };

  const emitOutcome = (attempt: StoredAttempt, outcome: StoredOutcome) =>
    enqueue({
      event: outcomeToEvent(attempt, outcome),
      delivered: async () => {
        attempt.reported = true;
        await store.append({ t: "reported", attemptId: attempt.attemptId });
      },
    });

  const remember = (ok: boolean, latencyMs: number, feeMsat: bigint) => {
    recent.push({ ok, latencyMs, feeMsat });
    if (recent.length > limits.outcomeWindowMax) recent.shift();
  };

  const finish = async (tracker: Tracker, outcome: StoredOutcome) => {
    const { attempt } = tracker;
    if (attempt.outcome !== null) return;
    attempt.outcome = outcome;
    tracker.subscription?.removeAllListeners();
    tracker.subscription = null;
    trackers.delete(attempt.attemptId);
    remember(
      outcome.status === "succeeded",
      now() - tracker.startedAtMs,
      outcome.status === "succeeded" ? outcome.feeMsat : 0n,
    );
    // Written in order before any later line; the caller need not wait for the disk: were it lost in a
    // crash, the restarted rail asks LND again and gets the same outcome. A caller waiting in execute gets it
    // now, so it is reported in the same write (awaitOutcome then has nothing to add).
    const record = outcomeRecord(attempt.attemptId, outcome);
    const reportedNow = tracker.waiting > 0 && !tracker.eventWanted && !attempt.reported;
    if (reportedNow) attempt.reported = true;
    const written = reportedNow
      ? store.append(record, { t: "reported", attemptId: attempt.attemptId })
      : store.append(record);
    tracker.resolve(outcome);
    if (tracker.eventWanted) emitOutcome(attempt, outcome);
    await written;
  };

  const fail = (tracker: Tracker, failure: Failure) =>
    finish(tracker, { status: "failed", ...failure }).catch((error: unknown) =>
      log({ level: "error", message: "storing an outcome failed", detail: lndErrorText(error) }),
    );

  /** LND found no route: was it the fee limit or the graph? Ask for a route without the limit. */
  const classifyNoRoute = async (tracker: Tracker): Promise<Failure> => {
    try {
      let destination = tracker.destination;
      if (destination === null && tracker.request !== null) {
        destination = (await withTimeout(decodePaymentRequest({ lnd, request: tracker.request }), "decode"))
          .destination;
      }
      if (destination === null) throw new LightningRailError("no destination", "");
      const { route } = await withTimeout(
        getRouteToDestination({ lnd, destination, mtokens: tracker.attempt.amountMsat.toString() }),
        "route query",
      );
      if (route && BigInt(route.fee_mtokens) > tracker.feeMaxMsat)
        return {
          code: "fee_above_max",
          message: `the cheapest route costs ${route.fee_mtokens} msat, above the maximum ${tracker.feeMaxMsat} msat`,
          retryElsewhere: true,
        };
    } catch (error) {
      log({ level: "info", message: "route query after no-route failure", detail: lndErrorText(error) });
    }
    return { code: "unreachable_destination", message: "no route to the destination", retryElsewhere: true };
  };

  const onPaymentFailed = (tracker: Tracker, flags: Parameters<typeof failureFromFlags>[0]) => {
    const failure = failureFromFlags(flags);
    if (failure !== null) return void fail(tracker, failure);
    void classifyNoRoute(tracker).then((classified) => fail(tracker, classified));
  };

  const onConfirmed = (tracker: Tracker, payment: { secret: string; fee_mtokens: string }) =>
    void finish(tracker, {
      status: "succeeded",
      preimage: payment.secret,
      feeMsat: BigInt(payment.fee_mtokens),
    }).catch((error: unknown) =>
      log({ level: "error", message: "storing an outcome failed", detail: lndErrorText(error) }),
    );

  const attach = (tracker: Tracker, subscription: EventEmitter, mode: "send" | "track") => {
    tracker.subscription = subscription;
    tracker.detached = false;
    subscription.on("confirmed", (payment: { secret: string; fee_mtokens: string }) =>
      onConfirmed(tracker, payment),
    );
    subscription.on("failed", (flags: Parameters<typeof failureFromFlags>[0]) =>
      onPaymentFailed(tracker, flags),
    );
    subscription.on("error", (error: unknown) => {
      subscription.removeAllListeners();
      if (tracker.subscription === subscription) tracker.subscription = null;
      if (tracker.attempt.outcome !== null) return;
      const text = lndErrorText(error);
      if (mode === "track" && Array.isArray(error) && error[0] === 404) {
        // LND has no payment with this hash: it never took the payment, so nothing was paid.
        const previous = tracker.lastErrorText === null ? null : classifyLndError(tracker.lastErrorText);
        return void fail(
          tracker,
          previous?.kind === "failed"
            ? previous.failure
            : { code: "rail_unavailable", message: "LND never took the payment", retryElsewhere: true },
        );
      }
      tracker.lastErrorText = text;
      const classified = classifyLndError(text);
      if (classified.kind === "failed" && mode === "send") return void fail(tracker, classified.failure);
      // Either LND already knows the hash, or the connection broke: follow the payment LND has.
      tracker.detached = true;
      if (classified.kind === "track" && health.connected) return track(tracker);
      markDisconnected(text);
    });
  };

  const track = (tracker: Tracker) => {
    if (!running || tracker.attempt.outcome !== null) return;
    tracker.subscription?.removeAllListeners();
    attach(tracker, subscribeToPastPayment({ lnd, id: tracker.attempt.paymentHash }), "track");
  };

  const newTracker = (
    attempt: StoredAttempt,
    extra: { feeMaxMsat: bigint; destination: string | null; request: string | null; eventWanted: boolean },
  ): Tracker => {
    let resolve: (outcome: StoredOutcome) => void = () => {};
    const settled = new Promise<StoredOutcome>((done) => {
      resolve = done;
    });
    const tracker: Tracker = {
      attempt,
      settled,
      resolve,
      subscription: null,
      eventWanted: extra.eventWanted,
      detached: false,
      waiting: 0,
      lastErrorText: null,
      feeMaxMsat: extra.feeMaxMsat,
      destination: extra.destination,
      request: extra.request,
      startedAtMs: now(),
    };
    trackers.set(attempt.attemptId, tracker);
    return tracker;
  };

  const deriveKeysendSecret = async (): Promise<Buffer> => {
    if (keysendSecret !== null) return keysendSecret;
    // A signature by LND's node key is deterministic (RFC 6979) and only this node can make it.
    const { signature } = await withTimeout(
      signMessage({ lnd, message: keysendSecretMessage }),
      "signMessage",
    );
    keysendSecret = createHash("sha256").update(signature).digest();
    return keysendSecret;
  };

  /** Waits for the outcome up to executeWaitMs; then the outcome goes out as an event instead. */
  const awaitOutcome = async (tracker: Tracker): Promise<AttemptOutcome> => {
    let timer: NodeJS.Timeout | null = null;
    const timedOut = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), limits.executeWaitMs);
    });
    tracker.waiting += 1;
    const outcome = await Promise.race([tracker.settled, timedOut]);
    tracker.waiting -= 1;
    if (timer !== null) clearTimeout(timer);
    const { attempt } = tracker;
    if (outcome === null && attempt.outcome === null) {
      tracker.eventWanted = true;
      return { status: "in_flight", reference: attempt.paymentHash };
    }
    const final = attempt.outcome as StoredOutcome;
    if (tracker.eventWanted) return outcomeToResult(attempt, final); // the event is on its way too
    if (!attempt.reported) {
      attempt.reported = true;
      // Not awaited: lost in a crash, it only means the outcome is also sent as an event after restart.
      store
        .append({ t: "reported", attemptId: attempt.attemptId })
        .catch((error: unknown) =>
          log({ level: "error", message: "journal write failed", detail: lndErrorText(error) }),
        );
    }
    return outcomeToResult(attempt, final);
  };

  const failedOutcome = (
    code: Failure["code"],
    message: string,
    retryElsewhere: boolean,
  ): AttemptOutcome => ({
    status: "failed",
    code,
    message,
    retryElsewhere,
  });

  /**
   * LND's SendPaymentV2, asked directly for the final update only. `lightning`'s subscribeToPayViaRequest
   * decodes the request three times (each recovering its signing key) and every in-flight update, none of which
   * the rail reads: about a millisecond of this process's time per payment. The final update becomes the events
   * `lightning` emits, which attach() follows: "confirmed" (preimage, fee) or "failed" (the reason's flags); LND
   * refusing the call is an "error".
   */
  const sendPayment = (request: Record<string, unknown>, feeMaxMsat: bigint): EventEmitter => {
    const emitter = new EventEmitter();
    const stream = lnd.router.sendPaymentV2({
      ...request,
      fee_limit_msat: feeMaxMsat.toString(),
      timeout_seconds: Math.max(1, Math.round(limits.paymentTimeoutMs / 1000)),
      max_parts: 1,
      allow_self_payment: true,
      cancelable: true,
      no_inflight_updates: true,
    }) as EventEmitter;
    // Once the outcome is in, nobody listens: a late error of the stream is nobody's news.
    const report = (error: unknown) => {
      if (emitter.listenerCount("error") > 0) emitter.emit("error", error);
    };
    stream.on(
      "data",
      (payment: {
        status?: string;
        failure_reason?: string;
        payment_preimage?: string;
        fee_msat?: string;
      }) => {
        try {
          if (payment.status === "SUCCEEDED")
            emitter.emit("confirmed", {
              secret: payment.payment_preimage ?? "",
              fee_mtokens: payment.fee_msat ?? "0",
            });
          else if (payment.status === "FAILED")
            emitter.emit("failed", flagsFromFailureReason(payment.failure_reason ?? ""));
        } catch (error) {
          report(error);
        }
      },
    );
    stream.on("error", report);
    return emitter;
  };

  const execute = async (attempt: OutgoingAttempt): Promise<AttemptOutcome> => {
    if (!running) return failedOutcome("rail_unavailable", "the Lightning rail is not started", true);
    const known = attempts.get(attempt.id);
    if (known !== undefined) {
      if (known.outcome !== null) {
        if (!known.reported) {
          known.reported = true;
          await store.append({ t: "reported", attemptId: known.attemptId });
        }
        return outcomeToResult(known, known.outcome);
      }
      const tracker = trackers.get(known.attemptId);
      if (tracker === undefined) return { status: "in_flight", reference: known.paymentHash };
      return await awaitOutcome(tracker);
    }

    const { destination } = attempt;
    if (destination.kind !== "bolt11" && destination.kind !== "lightning_node")
      return failedOutcome("unreachable_destination", `Lightning cannot pay a ${destination.kind}`, true);
    if (attempt.amount < limits.amountMinMsat || attempt.amount > limits.amountMaxMsat)
      return failedOutcome(
        "rejected",
        `amount outside ${limits.amountMinMsat}..${limits.amountMaxMsat} msat`,
        true,
      );
    if (attempt.feeMax < 0n) return failedOutcome("rejected", "negative maximum fee", false);
    if (!health.connected)
      return failedOutcome("rail_unavailable", `LND unreachable: ${health.lastError ?? ""}`, true);
    if (trackers.size >= limits.inFlightMax)
      return failedOutcome("rail_unavailable", `${limits.inFlightMax} payments already in flight`, true);

    let kind: PaymentKind;
    let paymentHash: string;
    let preimage: string | null = null;
    let invoiceHasAmount = false;
    if (destination.kind === "bolt11") {
      const parsed = parseBolt11(destination.invoice);
      if (!parsed.ok) return failedOutcome("rejected", parsed.error, false);
      if (parsed.value.amountMsat !== null && parsed.value.amountMsat !== attempt.amount)
        return failedOutcome(
          "rejected",
          `the invoice asks ${parsed.value.amountMsat} msat, the attempt pays ${attempt.amount} msat`,
          false,
        );
      kind = "bolt11";
      paymentHash = parsed.value.paymentHash;
      invoiceHasAmount = parsed.value.amountMsat !== null;
    } else {
      if (!/^0[23][0-9a-f]{64}$/.test(destination.pubkey))
        return failedOutcome("rejected", "not a node public key", false);
      let secret: Buffer;
      try {
        secret = await deriveKeysendSecret();
      } catch (error) {
        return failedOutcome("rail_unavailable", `no keysend secret: ${lndErrorText(error)}`, true);
      }
      const image = createHmac("sha256", secret).update(`keysend:${attempt.id}`).digest();
      kind = "keysend";
      preimage = image.toString("hex");
      paymentHash = createHash("sha256").update(image).digest("hex");
    }
    // Another execute for this id may have started while we awaited.
    if (attempts.has(attempt.id)) return await execute(attempt);

    const stored: StoredAttempt = {
      attemptId: attempt.id,
      paymentId: attempt.paymentId,
      paymentHash,
      kind,
      amountMsat: attempt.amount,
      createdAtMs: now(),
      feeMaxMsat: attempt.feeMax,
      destination: destination.kind === "lightning_node" ? destination.pubkey : null,
      request: destination.kind === "bolt11" ? destination.invoice : null,
      outcome: null,
      reported: false,
    };
    attempts.set(attempt.id, stored);
    const tracker = newTracker(stored, {
      feeMaxMsat: stored.feeMaxMsat,
      destination: stored.destination,
      request: stored.request,
      eventWanted: false,
    });
    // Write-ahead: the hash is on disk before LND sees the payment.
    await store.append({
      t: "attempt",
      attemptId: stored.attemptId,
      paymentId: stored.paymentId,
      paymentHash,
      kind,
      amountMsat: stored.amountMsat.toString(),
      createdAtMs: stored.createdAtMs,
      feeMaxMsat: stored.feeMaxMsat.toString(),
      destination: stored.destination,
      request: stored.request,
    });

    try {
      const subscription = sendPayment(
        destination.kind === "bolt11"
          ? {
              payment_request: destination.invoice,
              ...(invoiceHasAmount ? {} : { amt_msat: attempt.amount.toString() }),
            }
          : {
              dest: Buffer.from(destination.pubkey, "hex"),
              payment_hash: Buffer.from(paymentHash, "hex"),
              amt_msat: attempt.amount.toString(),
              final_cltv_delta: keysendFinalCltvDelta,
              dest_custom_records: { [keysendRecordType]: Buffer.from(preimage as string, "hex") },
            },
        attempt.feeMax,
      );
      attach(tracker, subscription, "send");
    } catch (error) {
      // Thrown before anything was sent (the gRPC client's checks of the request).
      void fail(tracker, { code: "rejected", message: lndErrorText(error), retryElsewhere: false });
    }
    return await awaitOutcome(tracker);
  };

  // ---- incoming ----------------------------------------------------------------------------------

  type LndInvoice = {
    id: string;
    is_confirmed: boolean;
    confirmed_index?: number;
    received_mtokens: string;
    secret: string;
  };

  const advance = async (settled: number) => {
    if (settled > settleIndexDelivered) {
      settleIndexDelivered = settled;
      await store.append({ t: "settle_index", value: settled });
    }
  };

  const onInvoice = (invoice: LndInvoice, source: "subscription" | "lookup") => {
    if (!invoice.is_confirmed || invoicesQueued.has(invoice.id)) return;
    const index = invoice.confirmed_index ?? 0;
    if (source === "subscription") {
      if (index <= settleIndexQueued) return;
      if (queue.length >= limits.pendingEventsMax) {
        // Stop listening; the settle index replays what we skip once the handler has caught up.
        invoiceBacklog = true;
        invoiceSubscription?.removeAllListeners();
        invoiceSubscription = null;
        return;
      }
      settleIndexQueued = index;
    } else if (!invoices.has(invoice.id)) return;
    const known = invoices.get(invoice.id);
    if (known === undefined && !params.receiveForeignInvoices) {
      // Not ours (made outside the rail): nothing to mirror; move the cursor past it once the queue is.
      enqueue({ event: null, delivered: () => advance(index) });
      return;
    }
    const reference = known?.reference ?? invoice.id;
    invoicesQueued.add(invoice.id);
    enqueue({
      event: {
        kind: "received",
        reference,
        amount: BigInt(invoice.received_mtokens),
        evidence: { rail: "lightning", paymentHash: invoice.id, preimage: invoice.secret },
      },
      delivered: async () => {
        invoicesQueued.delete(invoice.id);
        if (known !== undefined) {
          invoices.delete(invoice.id);
          await store.append({ t: "invoice_done", paymentHash: invoice.id });
        }
        if (source === "subscription") await advance(index);
      },
    });
  };

  /** With no settle index yet, LND cannot replay: ask for each open invoice of ours. */
  const checkOpenInvoices = async () => {
    const open = [...invoices.values()].slice(0, limits.openInvoicesCheckMax);
    for (const invoice of open) {
      if (!running) return;
      try {
        const found = await withTimeout(getInvoice({ lnd, id: invoice.paymentHash }), "getInvoice");
        onInvoice({ ...found, id: invoice.paymentHash } as LndInvoice, "lookup");
      } catch (error) {
        log({ level: "warn", message: "checking an open invoice failed", detail: lndErrorText(error) });
      }
    }
  };

  const resubscribeInvoices = () => {
    if (!running || invoiceSubscription !== null || invoiceBacklog) return;
    const subscription = subscribeToInvoices({
      lnd,
      ...(settleIndexDelivered > 0 ? { confirmed_after: settleIndexDelivered } : {}),
    });
    invoiceSubscription = subscription;
    health = { ...health, invoiceSubscription: true };
    subscription.on("invoice_updated", (invoice: LndInvoice) => onInvoice(invoice, "subscription"));
    subscription.on("error", (error: unknown) => {
      subscription.removeAllListeners();
      if (invoiceSubscription === subscription) invoiceSubscription = null;
      health = { ...health, invoiceSubscription: false };
      markDisconnected(lndErrorText(error));
    });
    if (settleIndexDelivered === 0 && invoices.size > 0) void checkOpenInvoices();
  };

  /**
   * LND's AddInvoice, asked directly. `lightning`'s createInvoice makes a second call (a lookup of the invoice
   * it just made) and recovers the invoice's signing key twice, none of which the rail uses; at 16 invoices in
   * flight that was a third of the time to make one. What LND answers is checked here instead: the request must
   * decode, for the amount asked, with the payment hash LND gave.
   */
  const addInvoice = (invoice: CreateInvoiceParams): Promise<{ id: string; request: string }> =>
    new Promise((resolve, reject) => {
      const request = {
        value_msat: invoice.amountMsat.toString(),
        expiry: invoice.expirySeconds,
        ...(invoice.memo !== undefined ? { memo: invoice.memo } : {}),
        ...(invoice.descriptionHash !== undefined
          ? { description_hash: Buffer.from(invoice.descriptionHash, "hex") }
          : {}),
      };
      lnd.default.addInvoice(
        request,
        { deadline: Date.now() + limits.rpcTimeoutMs },
        (error: unknown, response: { r_hash?: unknown; payment_request?: unknown } | undefined) => {
          if (error) return reject(error);
          const id = Buffer.isBuffer(response?.r_hash) ? response.r_hash.toString("hex") : "";
          const paymentRequest =
            typeof response?.payment_request === "string" ? response.payment_request : "";
          const parsed = parseBolt11(paymentRequest);
          if (!parsed.ok || id.length !== 64 || parsed.value.paymentHash !== id)
            return reject(
              new LightningRailError("LND answered an invoice that does not decode", paymentRequest),
            );
          if (parsed.value.amountMsat !== invoice.amountMsat)
            return reject(
              new LightningRailError(
                "LND answered an invoice for another amount",
                `${parsed.value.amountMsat} msat`,
              ),
            );
          resolve({ id, request: paymentRequest });
        },
      );
    });

  const createInvoice = async (invoiceParams: CreateInvoiceParams): Promise<CreatedInvoice> => {
    if (!running) throw new LightningRailError("the Lightning rail is not started", "");
    const { amountMsat, expirySeconds, reference } = invoiceParams;
    if (amountMsat < limits.amountMinMsat || amountMsat > limits.amountMaxMsat)
      throw new LightningRailError("invoice amount out of range", `${amountMsat} msat`);
    if (
      !Number.isSafeInteger(expirySeconds) ||
      expirySeconds < 1 ||
      expirySeconds > limits.invoiceExpirySecondsMax
    )
      throw new LightningRailError("invoice expiry out of range", `${expirySeconds} s`);
    if (reference.length === 0 || reference.length > limits.referenceLengthMax)
      throw new LightningRailError("invoice reference length out of range", `${reference.length}`);
    if (invoiceParams.memo !== undefined && Buffer.byteLength(invoiceParams.memo) > limits.memoLengthMax)
      throw new LightningRailError("memo too long", `${Buffer.byteLength(invoiceParams.memo)} bytes`);
    if (invoiceParams.descriptionHash !== undefined && !/^[0-9a-f]{64}$/.test(invoiceParams.descriptionHash))
      throw new LightningRailError("description hash must be 32 bytes hex", invoiceParams.descriptionHash);
    const expiresAtMs = now() + expirySeconds * 1000;
    let created: { id: string; request: string };
    try {
      created = await addInvoice(invoiceParams);
    } catch (error) {
      throw new LightningRailError("LND did not create the invoice", lndErrorText(error), { cause: error });
    }
    const stored: StoredInvoice = { paymentHash: created.id, reference, expiresAtMs };
    invoices.set(created.id, stored);
    await store.append({ t: "invoice", ...stored });
    return { paymentHash: created.id, request: created.request, amountMsat, expiresAtMs, reference };
  };

  // ---- quotes, liquidity, health -----------------------------------------------------------------

  const estimateFee = async (feeParams: {
    destination: OutgoingAttempt["destination"];
    amountMsat: bigint;
  }): Promise<FeeEstimateResult> => {
    const { destination, amountMsat } = feeParams;
    let key: string;
    if (destination.kind === "lightning_node") key = destination.pubkey;
    else if (destination.kind === "bolt11") key = destination.invoice;
    else
      return {
        ok: false,
        code: "unreachable_destination",
        message: `Lightning cannot pay a ${destination.kind}`,
      };
    const cacheKey = `${key}:${amountMsat}`;
    const cached = feeCache.get(cacheKey);
    if (cached !== undefined && now() - cached.takenAtMs < limits.feeCacheTtlMs)
      return { ok: true, value: { ...cached, ageMs: now() - cached.takenAtMs } };
    try {
      const pubkey =
        destination.kind === "lightning_node"
          ? destination.pubkey
          : (await withTimeout(decodePaymentRequest({ lnd, request: destination.invoice }), "decode"))
              .destination;
      const { route } = await withTimeout(
        getRouteToDestination({ lnd, destination: pubkey, mtokens: amountMsat.toString() }),
        "route query",
      );
      if (!route) return { ok: false, code: "unreachable_destination", message: "no route" };
      const estimate: FeeEstimate = { feeMsat: BigInt(route.fee_mtokens), takenAtMs: now(), ageMs: 0 };
      if (feeCache.size >= limits.feeCacheEntriesMax) {
        const oldest = feeCache.keys().next();
        if (!oldest.done) feeCache.delete(oldest.value);
      }
      feeCache.set(cacheKey, estimate);
      return { ok: true, value: estimate };
    } catch (error) {
      const text = lndErrorText(error);
      const classified = classifyLndError(text);
      if (classified.kind === "disconnected") return { ok: false, code: "rail_unavailable", message: text };
      return { ok: false, code: "unreachable_destination", message: text };
    }
  };

  const markDisconnected = (text: string) => {
    if (health.connected) log({ level: "warn", message: "LND connection lost", detail: text });
    health = { ...health, connected: false, lastError: text };
    scheduleTick(reconnectDelayMs);
  };

  const onConnected = () => {
    reconnectDelayMs = limits.reconnectDelayMinMs;
    resubscribeInvoices();
    for (const tracker of trackers.values()) if (tracker.detached) track(tracker); // not one between its journal write and its send
  };

  const refreshLiquidity = async () => {
    const balance = await withTimeout(getChannelBalance({ lnd }), "getChannelBalance");
    liquidityState = {
      outboundMsat: BigInt(balance.channel_balance_mtokens ?? String(balance.channel_balance * 1000)),
      inboundMsat: BigInt(balance.inbound_mtokens ?? String((balance.inbound ?? 0) * 1000)),
      takenAtMs: now(),
    };
  };

  const tick = async () => {
    tickTimer = null;
    if (!running) return;
    let healthy = false;
    try {
      const info = await withTimeout(getWalletInfo({ lnd }), "getWalletInfo");
      const wasConnected = health.connected;
      health = {
        ...health,
        connected: true,
        syncedToChain: info.is_synced_to_chain,
        checkedAtMs: now(),
        lastError: null,
      };
      healthy = true;
      if (!wasConnected) log({ level: "info", message: "LND connected", detail: params.lnd.socket });
      onConnected();
      await refreshLiquidity();
      if (
        params.feeProbe !== undefined &&
        (probeEstimate === null || now() - probeEstimate.takenAtMs >= limits.feeCacheTtlMs)
      ) {
        const result = await estimateFee({
          destination: { kind: "lightning_node", pubkey: params.feeProbe.destination },
          amountMsat: params.feeProbe.amountMsat,
        });
        if (result.ok) probeEstimate = result.value;
      }
    } catch (error) {
      const text = lndErrorText(error);
      if (healthy) log({ level: "warn", message: "refresh failed", detail: text });
      else {
        health = { ...health, connected: false, checkedAtMs: now(), lastError: text };
        // A fresh client connects at once instead of waiting out gRPC's own reconnect backoff.
        lnd = authenticatedLndGrpc(params.lnd).lnd;
        invoiceSubscription?.removeAllListeners();
        invoiceSubscription = null;
        for (const tracker of trackers.values()) {
          tracker.subscription?.removeAllListeners();
          tracker.subscription = null;
          tracker.detached = true;
        }
        reconnectDelayMs = Math.min(reconnectDelayMs * 2, limits.reconnectDelayMaxMs);
      }
    }
    scheduleTick(health.connected ? limits.refreshIntervalMs : reconnectDelayMs);
  };

  const scheduleTick = (delayMs: number) => {
    if (!running) return;
    if (tickTimer !== null) {
      if (delayMs >= limits.refreshIntervalMs) return;
      clearTimeout(tickTimer);
    }
    tickTimer = setTimeout(() => void tick(), delayMs);
  };

  const snapshot = (): RailSnapshot => {
    const latencies = recent
      .filter((entry) => entry.ok)
      .map((entry) => entry.latencyMs)
      .sort((a, b) => a - b);
    const fees = recent
      .filter((entry) => entry.ok)
      .map((entry) => entry.feeMsat)
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const feeMsat = probeEstimate?.feeMsat ?? fees[Math.floor(fees.length / 2)] ?? 0n;
    const rate = usdRate();
    const successes = recent.filter((entry) => entry.ok).length;
    return {
      rail: id,
      kind: "lightning",
      asset,
      available: running && health.connected && health.syncedToChain,
      reaches,
      amountMin: limits.amountMinMsat,
      amountMax: limits.amountMaxMsat,
      liquidity: liquidityState?.outboundMsat ?? 0n,
      feeFixed: 0n,
      feePpm: 0n,
      // Rounded up: the estimate must not look cheaper than it is.
      networkFeeMicroUsd: divCeil(feeMsat * rate.microUsd, rate.perMinorUnits),
      latencyMs: latencies[Math.floor(latencies.length / 2)] ?? latencyDefaultMs,
      successes,
      failures: recent.length - successes,
      takenAtMs: now(),
    };
  };

  // ---- lifecycle ---------------------------------------------------------------------------------

  const start = async () => {
    if (running) return;
    const state = await store.load();
    attempts = state.attempts;
    invoices = state.invoices;
    settleIndexDelivered = state.settleIndex;
    settleIndexQueued = state.settleIndex;
    running = true;
    await tick();
    for (const attempt of attempts.values()) {
      if (attempt.outcome === null) {
        const tracker = newTracker(attempt, {
          feeMaxMsat: attempt.feeMaxMsat,
          destination: attempt.destination,
          request: attempt.request,
          // Whoever called execute before the restart may not have the outcome: it comes as an event.
          eventWanted: true,
        });
        tracker.detached = true;
        if (health.connected) track(tracker);
      } else if (!attempt.reported) emitOutcome(attempt, attempt.outcome);
    }
    if (health.connected) {
      try {
        const pending = await withTimeout(getPendingPayments({ lnd }), "getPendingPayments");
        const known = new Set([...attempts.values()].map((attempt) => attempt.paymentHash));
        unattributed = pending.payments.map((payment) => payment.id).filter((hash) => !known.has(hash));
        if (unattributed.length > 0)
          log({
            level: "warn",
            message: "LND has payments in flight that no attempt accounts for",
            detail: unattributed,
          });
      } catch (error) {
        log({ level: "warn", message: "listing in-flight payments failed", detail: lndErrorText(error) });
      }
    }
  };

  const stop = async () => {
    if (!running) return;
    running = false;
    if (tickTimer !== null) clearTimeout(tickTimer);
    tickTimer = null;
    invoiceSubscription?.removeAllListeners();
    invoiceSubscription = null;
    for (const tracker of trackers.values()) {
      tracker.subscription?.removeAllListeners();
      tracker.subscription = null;
    }
    trackers.clear();
    // Events whose handlers have started are delivered (journal, settle index) before the journal closes; a
    // handler that does not finish in time is left to the replay after a restart.
    let timer: NodeJS.Timeout | null = null;
    await Promise.race([
      pumpIdle,
      new Promise((resolve) => {
        timer = setTimeout(resolve, limits.stopWaitMs);
      }),
    ]);
    if (timer !== null) clearTimeout(timer);
    queue.length = 0;
    invoicesQueued.clear();
    await store.close();
  };

  return {
    id,
    kind: "lightning",
    asset,
    start,
    stop,
    snapshot,
    execute,
    onEvent(eventHandler) {
      handler = eventHandler;
      void pump();
    },
    async balance() {
      await refreshLiquidity();
      return liquidityState?.outboundMsat ?? 0n;
    },
    createInvoice,
    estimateFee,
    health: () => health,
    liquidity: () => liquidityState,
    unattributedInFlight: () => unattributed,
  };
}
