// The event pump: every event the rail reports goes through one queue, whose handlers run up to
// eventsConcurrentMax at once and are delivered (journal line, settle index) in arrival order. Settled invoices
// reach it from LND's invoice subscription, caught up by settle index after any disconnect (or, with no settle
// index yet, by looking up each open invoice; invoices long expired are looked up too, before they are forgotten);
// payment outcomes reach it from send.ts. A stream that breaks marks LND disconnected, and the monitor's tick
// reconnects.
import { getInvoice, subscribeToInvoices } from "lightning";
import type { RailEventHandler } from "../../core/index.ts";
import { LightningRailError } from "./errors.ts";
import { lndErrorText } from "./failures.ts";
import { noteInvoicesKnown } from "./invoices.ts";
import { emitOutcome } from "./send.ts";
import { type LightningRailState, type QueuedEvent, withTimeout } from "./state.ts";
import type { StoredInvoice } from "./store.ts";

type LndInvoice = {
  id: string;
  is_confirmed: boolean;
  confirmed_index?: number;
  received_mtokens: string;
  secret: string;
};

export function enqueue(s: LightningRailState, item: QueuedEvent): void {
  s.queue.push(item);
  void pump(s);
}

/** Runs the handler; resolves with null when it succeeded, with what it threw or rejected with otherwise. */
const handle = (current: RailEventHandler, item: QueuedEvent): Promise<unknown | null> => {
  const { event } = item;
  if (event === null) return Promise.resolve(null);
  return Promise.resolve()
    .then(() => current(event))
    .then(
      () => null,
      (error: unknown) => {
        item.failures = (item.failures ?? 0) + 1;
        return error ?? new LightningRailError("event handler failed", { details: String(error) });
      },
    );
};

/**
 * Starts the handlers of the first events (a settlement burst is handled together, so the ledger writes it as
 * one batch) and delivers the oldest once its handler is done, so the journal and the settle index move in
 * arrival order. A failed handler runs again. Once the rail stops, it starts nothing new but still delivers
 * the events whose handlers it had started, in order, up to the first that is not done: `stop` waits for that.
 */
export async function pump(s: LightningRailState): Promise<void> {
  if (s.pumping) return;
  s.pumping = true;
  let drained: () => void = () => {};
  s.pumpIdle = new Promise((resolve) => {
    drained = resolve;
  });
  const concurrent = Math.max(1, s.limits.eventsConcurrentMax);
  try {
    while (s.handler !== null && s.queue.length > 0) {
      if (s.running) {
        const current = s.handler;
        for (const item of s.queue.slice(0, concurrent)) item.handled ??= handle(current, item);
      }
      const item = s.queue[0] as QueuedEvent;
      if (item.handled === undefined) break; // stopped: left for the replay after a restart
      try {
        const failure = await item.handled;
        if (failure !== null) throw failure;
        await item.delivered();
        if (s.queue[0] === item) s.queue.shift();
      } catch (error) {
        item.handled = undefined; // run it again
        if (!s.running) break;
        // Failed eventAttemptsMax times: set aside, so that one event that cannot be applied does not hold every
        // later one (a gateway that cannot apply any sets each aside in turn, and each is tried again later).
        if ((item.failures ?? 0) >= s.limits.eventAttemptsMax && (await setAside(s, item, error))) continue;
        s.logger.warn({ error: lndErrorText(error) }, "event handler failed; retrying");
        await new Promise((resolve) => setTimeout(resolve, s.limits.eventRetryDelayMs));
      }
    }
  } finally {
    s.pumping = false;
    drained();
  }
  if (s.running && s.invoiceBacklog && s.queue.length < s.limits.pendingEventsMax / 2) {
    s.invoiceBacklog = false;
    resubscribeInvoices(s);
  }
}

/** Takes the head out of the queue once its set-aside record is written; false (left at the head) if it is not. */
async function setAside(s: LightningRailState, item: QueuedEvent, error: unknown): Promise<boolean> {
  if (item.setAside === undefined) return false;
  try {
    await item.setAside();
  } catch (failure) {
    s.logger.warn({ error: lndErrorText(failure) }, "setting an event aside failed");
    return false;
  }
  if (s.queue[0] === item) s.queue.shift();
  s.logger.error(
    {
      error: lndErrorText(error),
      event: item.event?.kind,
      reference: item.event?.kind === "received" ? item.event.reference : undefined,
      attemptId: item.event !== null && "attemptId" in item.event ? item.event.attemptId : undefined,
      failures: item.failures,
      retryInMs: s.limits.setAsideRetryMs,
    },
    "an event's handler keeps failing; set aside so that the events behind it go on, to be tried again",
  );
  return true;
}

/**
 * Tries what was set aside again: each outcome is emitted anew, each invoice asked of LND and delivered as paid.
 * A retried event is set aside again at its first failure. Never rejects (logged).
 */
export async function retrySetAside(s: LightningRailState): Promise<void> {
  s.setAsideRetriedAtMs = s.now();
  for (const [attemptId, { attempt, outcome }] of s.outcomesSetAside) {
    s.outcomesSetAside.delete(attemptId);
    emitOutcome(s, attempt, outcome, s.limits.eventAttemptsMax - 1);
  }
  await askInvoices(
    s,
    [...s.invoices.values()].filter((invoice) => invoice.setAside === true),
    "asking for an invoice set aside failed; tried again later",
  );
}

/** An invoice set aside, asked again by any pass, is set aside again at its first failure. */
const retriedFailures = (s: LightningRailState, invoice: StoredInvoice) =>
  invoice.setAside === true ? s.limits.eventAttemptsMax - 1 : 0;

/** A stream broke: LND is unreachable until the monitor's next tick (soon) says otherwise. */
export function markDisconnected(s: LightningRailState, text: string): void {
  if (s.health.connected) s.logger.warn({ error: text }, "LND connection lost");
  s.health = { ...s.health, connected: false, lastError: text };
  s.scheduleTick(s.reconnectDelayMs);
}

// ---- settled invoices --------------------------------------------------------------------------

const advance = async (s: LightningRailState, settled: number) => {
  if (settled > s.settleIndexDelivered) {
    s.settleIndexDelivered = settled;
    await s.store.append({ t: "settle_index", value: settled });
  }
};

function onInvoice(
  s: LightningRailState,
  invoice: LndInvoice,
  source: "subscription" | "lookup",
  failures = 0,
): void {
  if (!invoice.is_confirmed || s.invoicesQueued.has(invoice.id)) return;
  const index = invoice.confirmed_index ?? 0;
  if (source === "subscription") {
    if (index <= s.settleIndexQueued) return;
    if (s.queue.length >= s.limits.pendingEventsMax) {
      // Stop listening; the settle index replays what we skip once the handler has caught up.
      s.invoiceBacklog = true;
      s.invoiceSubscription?.removeAllListeners();
      s.invoiceSubscription = null;
      return;
    }
    s.settleIndexQueued = index;
  } else if (!s.invoices.has(invoice.id)) return;
  const known = s.invoices.get(invoice.id);
  if (known === undefined && !s.receiveForeignInvoices) {
    // Not ours (made outside the rail): nothing to mirror; move the cursor past it once the queue is.
    enqueue(s, { event: null, delivered: () => advance(s, index) });
    return;
  }
  const reference = known?.reference ?? invoice.id;
  s.invoicesQueued.add(invoice.id);
  enqueue(s, {
    event: {
      kind: "received",
      reference,
      amount: BigInt(invoice.received_mtokens),
      evidence: { rail: "lightning", paymentHash: invoice.id, preimage: invoice.secret },
    },
    failures,
    delivered: async () => {
      s.invoicesQueued.delete(invoice.id);
      if (known !== undefined) {
        s.invoices.delete(invoice.id);
        await s.store.append({ t: "invoice_done", paymentHash: invoice.id });
      }
      if (source === "subscription") await advance(s, index);
    },
    // Kept as an invoice of ours marked set aside (one made outside the rail is journalled so, its expiry
    // unknown: now), so that the retry, and a restart past its settle index, ask LND for it again.
    setAside: async () => {
      if (known === undefined) {
        const stored: StoredInvoice = {
          paymentHash: invoice.id,
          reference,
          expiresAtMs: s.now(),
          setAside: true,
        };
        await s.store.append({ t: "invoice", ...stored });
        s.invoices.set(invoice.id, stored);
      } else if (known.setAside !== true) {
        await s.store.append({ t: "invoice_set_aside", paymentHash: invoice.id });
        known.setAside = true;
      }
      s.invoicesQueued.delete(invoice.id);
      if (source === "subscription") await advance(s, index);
    },
  });
}

/**
 * With no settle index yet, LND cannot replay: ask for the open invoices of ours, the openInvoicesCheckMax made last
 * (the map keeps the journal's order, the order they were made in: those paid while the rail was away are among the
 * newest; by expiry, a short-lived one made last came after older long-lived ones). One left out is the expired
 * pass's, once it expires.
 */
async function checkOpenInvoices(s: LightningRailState): Promise<void> {
  const open = [...s.invoices.values()].slice(-s.limits.openInvoicesCheckMax).reverse();
  await askInvoices(s, open, "checking an open invoice failed");
}

/**
 * Asks LND for each invoice, one by one, and takes what it holds as paid (onInvoice); one already queued is not asked,
 * and one that cannot be asked now is logged (`failed`) and left to the next pass.
 */
async function askInvoices(
  s: LightningRailState,
  invoices: readonly StoredInvoice[],
  failed: string,
): Promise<void> {
  for (const invoice of invoices) {
    if (!s.running) return;
    if (s.invoicesQueued.has(invoice.paymentHash)) continue;
    try {
      const found = await withTimeout(s, getInvoice({ lnd: s.lnd, id: invoice.paymentHash }), "getInvoice");
      onInvoice(
        s,
        { ...found, id: invoice.paymentHash } as LndInvoice,
        "lookup",
        retriedFailures(s, invoice),
      );
    } catch (error) {
      s.logger.warn({ error: lndErrorText(error), paymentHash: invoice.paymentHash }, failed);
    }
  }
}

/**
 * Long-expired invoices asked of LND at once. One after another, a pass took a round trip per invoice (every unpaid
 * L402 challenge leaves one: thousands a day), one lookup timing out held every one behind it for rpcTimeoutMs, and
 * the point up to which invoices are known waited for all of them. LND serves unary calls concurrently (a lookup is a
 * read of its invoice store): 8 take an eighth of the time where the round trip dominates (a remote LND), and a slow
 * answer holds one place of 8; more would gain little and take LND's database and the one connection from the
 * payments and invoices of the moment, for work that can wait (the event handlers run eventsConcurrentMax, 16).
 */
const expiredInvoiceLookupsMax = 8;

/**
 * Invoices past their expiry by more than expiredInvoiceAskAfterMs, asked of LND expiredInvoiceLookupsMax at once, the
 * first expired first: one LND holds as paid is delivered (paid just before it expired, while the rail was stopped,
 * its event is still owed); one LND holds as never paid (cancelled, or expired with nothing held) or does not know is
 * forgotten. One that cannot be asked now stays for the next pass. Each answer is taken as it comes, in no order: an
 * invoice's answer touches only its own entry (a lookup's delivery moves no settle index). The point up to which
 * invoices are known is moved as the pass goes, every refreshIntervalMs (the invoices not answered yet hold it back),
 * so that a long backlog does not hold it until the end. The due ones are found once a pass (invoices made and never
 * paid, an L402 challenge's, pile up: a scan of all of them per page made a pass quadratic). Never rejects (logged).
 */
export async function retireExpiredInvoices(s: LightningRailState): Promise<void> {
  if (s.expiredInvoicesChecking) return;
  s.expiredInvoicesChecking = true;
  s.expiredInvoicesCheckedAtMs = s.now();
  try {
    const expiredBefore = s.now() - s.limits.expiredInvoiceAskAfterMs;
    const due: StoredInvoice[] = [];
    for (const invoice of s.invoices.values()) if (invoice.expiresAtMs < expiredBefore) due.push(invoice);
    due.sort((a, b) => a.expiresAtMs - b.expiresAtMs);
    let next = 0;
    let notedAtMs = s.now();
    // A journal write failed: no asker takes another invoice, and the pass ends with the first failure once the lookups
    // in flight are answered (the guard is held until then: no second pass asks them again meanwhile).
    const failures: unknown[] = [];
    const asker = async () => {
      while (s.running && failures.length === 0 && next < due.length) {
        const invoice = due[next++] as StoredInvoice;
        try {
          await retireExpiredInvoice(s, invoice);
        } catch (error) {
          failures.push(error);
        }
        if (s.now() - notedAtMs >= s.limits.refreshIntervalMs) {
          notedAtMs = s.now();
          noteInvoicesKnown(s);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(expiredInvoiceLookupsMax, due.length) }, asker));
    if (failures.length > 0) throw failures[0];
  } catch (error) {
    // Started without a waiter (the monitor's tick): what fails is logged here, and the next pass tries again.
    s.logger.warn({ error: lndErrorText(error) }, "retiring expired invoices failed; tried again next pass");
  } finally {
    s.expiredInvoicesChecking = false;
  }
}

async function retireExpiredInvoice(s: LightningRailState, invoice: StoredInvoice): Promise<void> {
  const id = invoice.paymentHash;
  let found: LndInvoiceState | null;
  try {
    found = (await withTimeout(s, getInvoice({ lnd: s.lnd, id }), "getInvoice")) as LndInvoiceState;
  } catch (error) {
    if (error instanceof LightningRailError || !invoiceUnknown(error)) {
      s.logger.warn({ error: lndErrorText(error), paymentHash: id }, "checking an expired invoice failed");
      return;
    }
    found = null;
  }
  // Stopped meanwhile: its journal is closed.
  if (!s.running) return;
  if (found?.is_confirmed === true) {
    onInvoice(s, { ...found, id }, "lookup", retriedFailures(s, invoice));
    return;
  }
  const payable =
    found !== null &&
    found.is_canceled !== true &&
    (found.is_held === true || Date.parse(found.expires_at) > s.now());
  // Still payable as LND sees it, or delivered while LND was asked.
  if (payable || s.invoices.get(id) !== invoice) return;
  s.invoices.delete(id);
  await s.store.append({ t: "invoice_done", paymentHash: id });
}

type LndInvoiceState = Omit<LndInvoice, "id"> & {
  readonly is_canceled?: boolean;
  readonly is_held?: boolean;
  readonly expires_at: string;
};

const invoiceUnknown = (error: unknown) => /unable to locate invoice|not found/i.test(lndErrorText(error));

/**
 * Whether LND holds the invoice of this payment hash as settled: one lookup, bounded by rpcTimeoutMs (it rejects
 * with a LightningRailError when LND does not answer). An invoice LND does not know is not settled.
 */
export async function lookupSettled(s: LightningRailState, paymentHash: string): Promise<boolean> {
  if (!/^[0-9a-f]{64}$/.test(paymentHash)) return false;
  try {
    const found = await withTimeout(s, getInvoice({ lnd: s.lnd, id: paymentHash }), "getInvoice");
    return (found as { is_confirmed?: boolean }).is_confirmed === true;
  } catch (error) {
    if (error instanceof LightningRailError) throw error;
    if (invoiceUnknown(error)) return false;
    throw new LightningRailError("LND did not look up the invoice", { details: lndErrorText(error) });
  }
}

/** Subscribes to settled invoices after the last delivered settle index, unless subscribed or backlogged. */
export function resubscribeInvoices(s: LightningRailState): void {
  if (!s.running || s.invoiceSubscription !== null || s.invoiceBacklog) return;
  const subscription = subscribeToInvoices({
    lnd: s.lnd,
    ...(s.settleIndexDelivered > 0 ? { confirmed_after: s.settleIndexDelivered } : {}),
  });
  s.invoiceSubscription = subscription;
  s.health = { ...s.health, invoiceSubscription: true };
  subscription.on("invoice_updated", (invoice: LndInvoice) => onInvoice(s, invoice, "subscription"));
  subscription.on("error", (error: unknown) => {
    subscription.removeAllListeners();
    if (s.invoiceSubscription === subscription) s.invoiceSubscription = null;
    s.health = { ...s.health, invoiceSubscription: false };
    markDisconnected(s, lndErrorText(error));
  });
  if (s.settleIndexDelivered === 0 && s.invoices.size > 0) void checkOpenInvoices(s);
}
