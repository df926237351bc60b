// Watching LND: a tick every refreshIntervalMs asks for its health (and, when it answers again after a
// disconnect, resubscribes to invoices and follows the payments whose streams broke), its channel balance and
// the background fee estimate; when it does not answer, a fresh client is tried with a backoff between
// reconnectDelayMinMs and reconnectDelayMaxMs. The snapshot the router reads is made from what the tick
// found and the recent outcomes; its routing fee model is for a destination nobody has asked about (fees.ts
// answers per destination and amount).
import { authenticatedLndGrpc, getChannelBalance, getWalletInfo } from "lightning";
import type { DestinationKind, RailSnapshot, RailUnavailable } from "../../core/index.ts";
import { divCeil } from "../../core/index.ts";
import { invoiceNetworkOf } from "./bolt11.ts";
import { resubscribeInvoices, retireExpiredInvoices, retrySetAside } from "./events.ts";
import { lndErrorText } from "./failures.ts";
import { estimateFee, snapshotRoutingFee } from "./fees.ts";
import { noteInvoicesKnown } from "./invoices.ts";
import { track } from "./send.ts";
import { type LightningHealth, type LightningRailState, withTimeout } from "./state.ts";
import { errorCodeOf } from "./store.ts";

const reaches: readonly DestinationKind[] = ["bolt11", "lightning_node", "lightning_address"];
const latencyDefaultMs = 2_000;

const onConnected = (s: LightningRailState) => {
  s.reconnectDelayMs = s.limits.reconnectDelayMinMs;
  resubscribeInvoices(s);
  // Once LND has been asked about the long-expired invoices, the rail knows the fate of every invoice up to the
  // earliest it still holds (retireExpiredInvoices never rejects).
  if (s.now() - s.expiredInvoicesCheckedAtMs >= s.limits.expiredInvoicesCheckIntervalMs)
    void retireExpiredInvoices(s).then(() => noteInvoicesKnown(s));
  if (s.now() - s.setAsideRetriedAtMs >= s.limits.setAsideRetryMs) void retrySetAside(s);
  for (const tracker of s.trackers.values()) if (tracker.detached) track(s, tracker);
};

export async function refreshLiquidity(s: LightningRailState): Promise<void> {
  const balance = await withTimeout(s, getChannelBalance({ lnd: s.lnd }), "getChannelBalance");
  s.liquidity = {
    outboundMsat: BigInt(balance.channel_balance_mtokens ?? String(balance.channel_balance * 1000)),
    inboundMsat: BigInt(balance.inbound_mtokens ?? String((balance.inbound ?? 0) * 1000)),
    takenAtMs: s.now(),
  };
}

export async function tick(s: LightningRailState): Promise<void> {
  s.tickTimer = null;
  if (!s.running) return;
  // Said within a tick of the tear or the lock's loss, though nobody reads the snapshot or the health.
  journalTear(s);
  journalLockLost(s);
  let healthy = false;
  try {
    const info = await withTimeout(s, getWalletInfo({ lnd: s.lnd }), "getWalletInfo");
    const wasConnected = s.health.connected;
    s.health = {
      ...s.health,
      connected: true,
      syncedToChain: info.is_synced_to_chain,
      checkedAtMs: s.now(),
      lastError: null,
    };
    healthy = true;
    s.invoiceNetwork = invoiceNetworkOf(info.chains);
    if (!wasConnected) s.logger.info({ socket: s.connection.socket }, "LND connected");
    onConnected(s);
    await refreshLiquidity(s);
    if (
      s.feeProbe !== undefined &&
      (s.probeEstimate === null || s.now() - s.probeEstimate.takenAtMs >= s.limits.feeCacheTtlMs)
    ) {
      const result = await estimateFee(s, {
        destination: { kind: "lightning_node", pubkey: s.feeProbe.destination },
        amountMsat: s.feeProbe.amountMsat,
      });
      if (result.ok) s.probeEstimate = result.value;
    }
  } catch (error) {
    const text = lndErrorText(error);
    if (healthy) s.logger.warn({ error: text }, "refresh failed");
    else {
      // Logged once: when a connection is lost (a broken stream has said so already) or the first check fails.
      if (s.health.connected || s.health.checkedAtMs === 0)
        s.logger.warn(
          { error: text, socket: s.connection.socket },
          s.health.connected ? "LND connection lost" : "LND unreachable",
        );
      s.health = { ...s.health, connected: false, checkedAtMs: s.now(), lastError: text };
      // A fresh client connects at once instead of waiting out gRPC's own reconnect backoff.
      s.lnd = authenticatedLndGrpc(s.connection).lnd;
      s.invoiceSubscription?.removeAllListeners();
      s.invoiceSubscription = null;
      for (const tracker of s.trackers.values()) {
        if (!tracker.asked) continue; // not sent yet: its send asks LND, and fails there if LND is still away
        tracker.subscription?.removeAllListeners();
        tracker.subscription = null;
        tracker.detached = true;
      }
      s.reconnectDelayMs = Math.min(s.reconnectDelayMs * 2, s.limits.reconnectDelayMaxMs);
    }
  }
  scheduleTick(s, s.health.connected ? s.limits.refreshIntervalMs : s.reconnectDelayMs);
}

export function scheduleTick(s: LightningRailState, delayMs: number): void {
  if (!s.running) return;
  if (s.tickTimer !== null) {
    if (delayMs >= s.limits.refreshIntervalMs) return;
    clearTimeout(s.tickTimer);
  }
  s.tickTimer = setTimeout(() => void tick(s), delayMs);
}

/**
 * Why the journal refuses every write (the store's torn: a failed write's part not cut off, a cut or a sync that
 * failed), or null; each tear logged once, at error. Only a start loads the journal again, so until the gateway
 * restarts every payout is refused, no invoice is made and the event pump retries its head event: the rail is not
 * available (the router routes elsewhere), and its health says why. Before, it went on offering itself.
 */
export function journalTear(s: LightningRailState): unknown | null {
  const tornBy = s.store.torn?.() ?? null;
  if (tornBy !== null && tornBy !== s.tearSaid) {
    s.tearSaid = tornBy;
    s.logger.error(
      { code: errorCodeOf(tornBy), error: lndErrorText(tornBy) },
      "journal torn: the rail refuses payouts and invoices until the gateway restarts",
    );
  }
  return tornBy;
}

/**
 * Whether another process took the journal over while the rail runs (the store's held: this one's lease lapsed, and
 * another took the lock), logged once at error, naming the lock file. The store then refuses every write (lines
 * written here would be lost to the other's compaction): the rail is not available. Before, nothing said so.
 */
export function journalLockLost(s: LightningRailState): boolean {
  if (!s.running || s.store.held()) return false;
  if (!s.lockLostSaid) {
    s.lockLostSaid = true;
    s.logger.error(
      { lock: s.store.lockFile ?? null },
      "journal lock lost: another process took the journal over; the rail refuses payouts and invoices",
    );
  }
  return true;
}

/**
 * Why the rail is not available, or null when it is: the journal's state before LND's, since a torn or lost journal
 * needs the operator (a restart) while LND is reconnected to by the rail itself. The message names no path or socket
 * (core/rail.ts RailUnavailable): the log lines say those.
 */
function unavailableOf(s: LightningRailState): RailUnavailable | null {
  if (!s.running) return { code: "not_started", message: "the Lightning rail is not started" };
  const tornBy = journalTear(s);
  if (tornBy !== null) {
    const code = errorCodeOf(tornBy);
    return {
      code: "journal_torn",
      message: `the journal refuses every write since a write, cut or sync failed${code === null ? "" : ` (${code})`}; restart the gateway to reload it`,
    };
  }
  if (journalLockLost(s))
    return {
      code: "journal_lock_lost",
      message: "another process took the journal over: this one writes nothing more to it",
    };
  // Its first check of LND not answered yet (start awaits it): starting, not unreachable.
  if (s.health.checkedAtMs === 0) return { code: "not_started", message: "the Lightning rail is starting" };
  if (!s.health.connected)
    return {
      code: "node_unreachable",
      message: "LND did not answer the rail's last check; the rail reconnects",
    };
  if (!s.health.syncedToChain) return { code: "node_not_synced", message: "LND is not synced to its chain" };
  return null;
}

/**
 * The rail's health, its lastError the journal's tear while it is torn (journalTear; a file system's error names its
 * code: "EIO: i/o error, fdatasync").
 */
export function health(s: LightningRailState): LightningHealth {
  const tornBy = journalTear(s);
  if (tornBy === null) return s.health;
  return {
    ...s.health,
    lastError: `journal torn: ${lndErrorText(tornBy)}; restart the gateway to reload the journal`,
  };
}

export function snapshot(s: LightningRailState): RailSnapshot {
  const latencies = s.recent
    .filter((entry) => entry.ok)
    .map((entry) => entry.latencyMs)
    .sort((a, b) => a - b);
  const fees = s.recent
    .filter((entry) => entry.ok)
    .map((entry) => entry.feeMsat)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const networkFee = snapshotRoutingFee(
    s,
    s.probeEstimate?.feeMsat ?? fees[Math.floor(fees.length / 2)] ?? null,
  );
  const rate = s.usdRate();
  // Not while the journal refuses every write: torn (journalTear), or taken over by another process.
  const unavailable = unavailableOf(s);
  return {
    rail: s.id,
    kind: "lightning",
    asset: s.asset,
    available: unavailable === null,
    ...(unavailable === null ? {} : { unavailable }),
    reaches,
    amountMin: s.limits.amountMinMsat,
    amountMax: s.limits.amountMaxMsat,
    liquidity: s.liquidity?.outboundMsat ?? 0n,
    feeFixed: 0n,
    feePpm: 0n,
    // The model's base, for a reader that does not take the model; rounded up: not cheaper than it is.
    networkFeeMicroUsd: divCeil(networkFee.base * rate.microUsd, rate.perMinorUnits),
    networkFee,
    latencyMs: latencies[Math.floor(latencies.length / 2)] ?? latencyDefaultMs,
    takenAtMs: s.now(),
  };
}
