// The Lightning rail: LND through the `lightning` package. The two calls on a payment's path (AddInvoice,
// SendPaymentV2) go straight to its authenticated gRPC clients, without the package's wrappers (see
// invoices.ts and send.ts); everything else uses the wrappers.
//   In:  invoices (amount, expiry, memo or description hash) and a subscription to their settlement,
//        caught up by settle index after any disconnect; each settled invoice is one "received" event.
//   Out: BOLT11 and keysend payments with the router's maximum fee. Each attempt's payment hash is
//        written to the store before LND sees the payment, so that a retry or a restarted gateway
//        follows the payment LND already has instead of paying again (LND refuses a second payment of
//        one hash; keysend preimages are derived from the attempt id, so a retry has the same hash). The
//        gateway has it written (`prepare`) while it writes the attempt's reservation.
//   Quote: routing fee estimates from route queries, cached with their age; liquidity; health.
// The rail is one state (state.ts) and four modules of functions over it: the event pump (events.ts), send
// (send.ts), invoices (invoices.ts) and the monitor (monitor.ts). This file builds the state, wires the
// modules into the Rail contract, and starts and stops them.
import { authenticatedLndGrpc, getPendingPayments } from "lightning";
import type { Logger, OutgoingAttempt, Rail, UsdRate } from "../../core/index.ts";
import { assets, silentLogger } from "../../core/index.ts";
import { LightningRailError, lndError } from "./errors.ts";
import { lookupSettled, pump } from "./events.ts";
import { lndErrorText } from "./failures.ts";
import { createAnswerCache } from "./fee-cache.ts";
import { estimateFee, estimateNetworkFee, type FeeEstimateResult } from "./fees.ts";
import {
  type CreatedInvoice,
  type CreateInvoiceParams,
  createInvoice,
  invoicesSetAside,
  receive,
} from "./invoices.ts";
import type { LnurlFetch } from "./lnurl.ts";
import { health, refreshLiquidity, scheduleTick, snapshot, tick } from "./monitor.ts";
import { decide, emitOutcome, execute, newTracker, prepare, track, withdraw } from "./send.ts";
import {
  type LightningHealth,
  type LightningRailLimits,
  type LightningRailState,
  type Liquidity,
  type LndConnection,
  lightningRailLimitsDefault,
  withTimeout,
} from "./state.ts";
import type { LightningRailStore } from "./store.ts";

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
  /** Where the rail logs (a child of the app's logger, from the composition root); silent by default. */
  readonly logger?: Logger;
  /**
   * How Lightning Addresses' LNURL servers are asked (the composition root gives the gateway's egress guard).
   * Without it no Lightning Address is asked: each is refused as unreachable.
   */
  readonly lnurlFetch?: LnurlFetch;
};

export type LightningRail = Rail & {
  receive: NonNullable<Rail["receive"]>;
  estimateNetworkFee: NonNullable<Rail["estimateNetworkFee"]>;
  createInvoice(params: CreateInvoiceParams): Promise<CreatedInvoice>;
  estimateFee(params: {
    destination: OutgoingAttempt["destination"];
    amountMsat: bigint;
  }): Promise<FeeEstimateResult>;
  health(): LightningHealth;
  liquidity(): Liquidity | null;
  /** Payments LND has in flight that no stored attempt accounts for (found on start). */
  unattributedInFlight(): readonly string[];
  /**
   * Every invoice of this rail that expired before this moment was paid and delivered, is set aside (invoicesSetAside),
   * or is known never to be paid; null until the rail has asked LND since its start (state.ts), and once another
   * process took its journal over (the store's held). Not moved while LND is out of reach.
   */
  invoicesKnownBeforeMs(): number | null;
  /**
   * The references of the invoices set aside (paid, their settlement refused by the handler again and again): the
   * point moves past them, so whoever records it records these with it, read together (invoices.ts noteInvoicesKnown).
   */
  invoicesSetAside(): readonly string[];
};

export function createLightningRail(params: LightningRailParams): LightningRail {
  const s = createState(params);
  return {
    id: s.id,
    kind: "lightning",
    asset: s.asset,
    start: () => start(s),
    stop: () => stop(s),
    snapshot: () => snapshot(s),
    execute: (attempt) => execute(s, attempt),
    prepare: (attempt) => prepare(s, attempt),
    withdraw: (attemptId) => withdraw(s, attemptId),
    estimateNetworkFee: (request) => estimateNetworkFee(s, request),
    onEvent(eventHandler) {
      s.handler = eventHandler;
      void pump(s);
    },
    async balance() {
      let channels: readonly LndChannel[];
      try {
        // The snapshot's liquidity is refreshed whenever the balance is read, as it was when it was the balance; the
        // figure is ListChannels' alone, one read of LND, so a channel opened or closed meanwhile cannot skew it.
        await refreshLiquidity(s);
        channels = await withTimeout(s, listChannels(s), "listChannels");
      } catch (error) {
        throw lndError("LND did not report its channel balance", error);
      }
      return heldInChannels(channels);
    },
    receive: (request) => receive(s, request),
    lookupReceived: (paymentHash) => lookupSettled(s, paymentHash),
    createInvoice: (invoiceParams) => createInvoice(s, invoiceParams),
    estimateFee: (feeParams) => estimateFee(s, feeParams),
    health: () => health(s),
    liquidity: () => s.liquidity,
    unattributedInFlight: () => s.unattributed,
    // None once another process took the journal over (this one's lease lapsed while it went on): that one follows the
    // invoices now. Recorded, this one's point replaced the list of invoices that one sets aside by this one's, and
    // the prune deleted one only that one held (its payer paid, never credited). The list is recorded only with a
    // point (gateway/l402/tokens.ts startInvoicesKnownRecord): left as it is, it can never go out empty with one.
    invoicesKnownBeforeMs: () => (s.store.held() ? s.invoicesKnownBeforeMs : null),
    invoicesSetAside: () => invoicesSetAside(s),
  };
}

function createState(params: LightningRailParams): LightningRailState {
  const limits: LightningRailLimits = { ...lightningRailLimitsDefault, ...params.limits };
  const now = params.now ?? Date.now;
  const s: LightningRailState = {
    id: params.id ?? "lightning",
    asset: assets.BTC,
    limits,
    connection: params.lnd,
    store: params.store,
    now,
    logger: params.logger ?? silentLogger,
    usdRate: params.usdRate ?? (() => usdRateDefault),
    feeProbe: params.feeProbe,
    receiveForeignInvoices: params.receiveForeignInvoices ?? false,
    lnurlFetch: params.lnurlFetch ?? noLnurlFetch,
    scheduleTick: (delayMs) => scheduleTick(s, delayMs),
    lnd: authenticatedLndGrpc(params.lnd).lnd,
    running: false,
    handler: null,
    keysendSecret: params.keysendSecret ? Buffer.from(params.keysendSecret) : null,
    attempts: new Map(),
    attemptByHash: new Map(),
    forgottenSends: new Map(),
    saidOnce: new Map(),
    invoices: new Map(),
    expiredInvoicesCheckedAtMs: 0,
    expiredInvoicesChecking: false,
    invoicesKnownBeforeMs: null,
    settleIndexDelivered: 0,
    settleIndexQueued: 0,
    trackers: new Map(),
    unattributed: [],
    invoicesQueued: new Set(),
    queue: [],
    pumping: false,
    pumpIdle: Promise.resolve(),
    invoiceSubscription: null,
    invoiceBacklog: false,
    outcomesSetAside: new Map(),
    setAsideRetriedAtMs: 0,
    tickTimer: null,
    reconnectDelayMs: limits.reconnectDelayMinMs,
    health: {
      connected: false,
      syncedToChain: false,
      checkedAtMs: 0,
      lastError: null,
      invoiceSubscription: false,
    },
    tearSaid: null,
    lockLostSaid: false,
    liquidity: null,
    probeEstimate: null,
    invoiceNetwork: null,
    feeCache: createAnswerCache({
      limits: { entriesMax: limits.feeCacheEntriesMax, loadingMax: limits.feeQueriesInFlightMax },
      ttlMs: (fee) => (fee.kind === "route" ? limits.feeCacheTtlMs : limits.feeCacheUnreachableTtlMs),
      now,
    }),
    recent: [],
  };
  return s;
}

// ---- lifecycle ---------------------------------------------------------------------------------

async function start(s: LightningRailState): Promise<void> {
  if (s.running) return;
  const state = await s.store.load();
  for (const { message, details } of state.warnings) s.logger.warn({ details }, message);
  s.attempts = state.attempts;
  s.forgottenSends = state.forgottenSends;
  // Per hash, an attempt that paid it or is paying it, before one that failed (execute only sends a hash again once
  // its attempt failed).
  s.attemptByHash = new Map();
  for (const attempt of s.attempts.values()) {
    const kept = s.attempts.get(s.attemptByHash.get(attempt.paymentHash) ?? "");
    if (kept === undefined || kept.outcome?.status === "failed")
      s.attemptByHash.set(attempt.paymentHash, attempt.attemptId);
  }
  s.invoices = state.invoices;
  s.settleIndexDelivered = state.settleIndex;
  s.settleIndexQueued = state.settleIndex;
  // The lock load took is this run's: losing it again is said again.
  s.lockLostSaid = false;
  s.running = true;
  await tick(s);
  for (const attempt of s.attempts.values()) {
    if (attempt.outcome === null) {
      const tracker = newTracker(s, attempt, {
        feeMaxMsat: attempt.feeMaxMsat,
        destination: attempt.destination,
        request: attempt.request,
        // Whoever called execute before the restart may not have the outcome: it comes as an event.
        eventWanted: true,
      });
      tracker.detached = true;
      if (s.health.connected) track(s, tracker);
    } else if (!attempt.reported) emitOutcome(s, attempt, attempt.outcome);
  }
  if (s.health.connected) {
    try {
      const pending = await withTimeout(s, getPendingPayments({ lnd: s.lnd }), "getPendingPayments");
      const known = new Set([...s.attempts.values()].map((attempt) => attempt.paymentHash));
      s.unattributed = pending.payments.map((payment) => payment.id).filter((hash) => !known.has(hash));
      if (s.unattributed.length > 0)
        s.logger.warn(
          { paymentHashes: s.unattributed },
          "LND has payments in flight that no attempt accounts for",
        );
    } catch (error) {
      s.logger.warn({ error: lndErrorText(error) }, "listing in-flight payments failed");
    }
  }
}

async function stop(s: LightningRailState): Promise<void> {
  if (!s.running) return;
  s.running = false;
  if (s.tickTimer !== null) clearTimeout(s.tickTimer);
  s.tickTimer = null;
  s.invoiceSubscription?.removeAllListeners();
  s.invoiceSubscription = null;
  for (const tracker of s.trackers.values()) {
    tracker.subscription?.removeAllListeners();
    tracker.subscription = null;
    if (tracker.unsent?.expiry) clearTimeout(tracker.unsent.expiry);
    decide(tracker);
  }
  s.trackers.clear();
  // Events whose handlers have started are delivered (journal, settle index) before the journal closes; a
  // handler that does not finish in time is left to the replay after a restart.
  let timer: NodeJS.Timeout | null = null;
  await Promise.race([
    s.pumpIdle,
    new Promise((resolve) => {
      timer = setTimeout(resolve, s.limits.stopWaitMs);
    }),
  ]);
  if (timer !== null) clearTimeout(timer);
  s.queue.length = 0;
  s.invoicesQueued.clear();
  await s.store.close();
}

// ---- balance ---------------------------------------------------------------------------------

/**
 * What the node holds in its open channels (one ListChannels), in msat. In a channel another node opened, its balance
 * there. In one it opened, the capacity less the peer's balance and the HTLCs in flight: the node's balance, and the
 * commitment's fee and anchor outputs it set aside out of it (the opener pays them), which LND's balance leaves out
 * yet are the operator's (a cooperative close gives them back), so that a channel opened with the operator's capital
 * holds what was booked for it whatever fee rate its commitment is signed at and however many HTLCs it carries. Not
 * LND's commit_fee and 2 × 330 sat: commit_fee is the capacity less the outputs of the node's commitment, so it also
 * takes in an anchor the commitment leaves out (the peer's, while the peer has no output and no HTLC: a channel just
 * opened), balances and HTLCs below the dust limit and the sub-sat parts; and the anchors would hang on a commitment
 * type a newer LND may name otherwise. The capacity less what is the peer's needs neither.
 *   An HTLC in flight is in neither side's balance until the commitment that removes it is signed: a payout in flight
 * has left the figure while the ledger still posts it, holding it as pending out, so the difference is the payout
 * (and its routing fee) until it settles; a payment to the node counts once its HTLC is settled into the node's
 * balance, a moment after LND reports the invoice paid and the ledger posts it.
 *   LND keeps balances in msat and answers whole sat, rounded down: the sub-sat part of the node's own balance is left
 * out in another's channel, and that of the peer's balance and of each HTLC counted in one the node opened; the
 * figure is within a sat of the msat booked, per channel and HTLC.
 */
export function heldInChannels(channels: readonly LndChannel[]): bigint {
  let totalSat = 0n;
  for (const channel of channels) {
    const sat = (value: unknown): bigint => {
      const text = String(value);
      if (!/^\d+$/.test(text))
        throw new LightningRailError("LND answered a channel whose balance the rail cannot read", {
          details: `${String(channel.channel_point)}: ${text}`,
        });
      return BigInt(text);
    };
    if (channel.initiator !== true) {
      totalSat += sat(channel.local_balance);
      continue;
    }
    if (!Array.isArray(channel.pending_htlcs))
      throw new LightningRailError("LND answered a channel without its HTLCs", {
        details: String(channel.channel_point),
      });
    let heldSat = sat(channel.capacity) - sat(channel.remote_balance);
    for (const htlc of channel.pending_htlcs as readonly { readonly amount?: unknown }[])
      heldSat -= sat(htlc.amount);
    totalSat += heldSat;
  }
  return totalSat * 1_000n;
}

/** What the balance reads of a channel of ListChannels (its numbers as strings: `lightning`'s gRPC options). */
export type LndChannel = {
  readonly channel_point?: unknown;
  readonly initiator?: unknown;
  readonly capacity?: unknown;
  readonly local_balance?: unknown;
  readonly remote_balance?: unknown;
  readonly pending_htlcs?: unknown;
};

/**
 * LND's open channels (ListChannels), asked directly: `lightning`'s getChannels turns the amounts into Numbers, and
 * refuses every channel for one whose answer lacks a field it expects.
 */
const listChannels = (s: LightningRailState): Promise<readonly LndChannel[]> =>
  new Promise((resolve, reject) => {
    s.lnd.default.listChannels(
      {},
      { deadline: Date.now() + s.limits.rpcTimeoutMs },
      (error: unknown, response: { channels?: unknown } | undefined) => {
        if (error) return reject(error);
        if (!Array.isArray(response?.channels))
          return reject(new LightningRailError("LND answered ListChannels without its channels"));
        resolve(response.channels as LndChannel[]);
      },
    );
  });

/** The LNURL fetch of a rail given none: nothing is asked, so no address can reach a host nobody vetted. */
const noLnurlFetch: LnurlFetch = () =>
  Promise.reject(
    new LightningRailError("no egress guard was given to the Lightning rail for LNURL requests"),
  );
